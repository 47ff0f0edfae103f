//! Connections as production deploys them, against real servers the tests
//! start on loopback: PostgreSQL with TLS only (`verify-full` against a CA
//! the test makes, a wrong CA refused with a clear reason), Redis over TLS,
//! Redis Sentinel and Redis Cluster, each with the primary killed while the
//! daemon refreshes. The servers live in `servers`; the daemon runs the
//! same way for every Redis mode through `support`.

#[path = "../common/mod.rs"]
mod common;
mod servers;
mod support;

mod postgres_tls;
mod redis_cluster;
mod redis_sentinel;
mod redis_tls;
