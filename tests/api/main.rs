//! The HTTP API over a real socket, against a real PostgreSQL and Redis and
//! the strict fake platform: every endpoint, its auth and its errors. One
//! module per topic; the server under test and its client are in `support`.

#[path = "../common/mod.rs"]
mod common;
mod support;

mod accounts;
mod auth;
mod connections;
mod errors;
mod history;
mod import;
mod openapi;
mod probes;
mod refresh;
mod registration;
mod untrusted_input;
