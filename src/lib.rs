//! tokenwarden: keeps the OAuth credentials of connected social-media
//! accounts alive and reports, truthfully and early, which need a reconnect.
//!
//! Layers, bottom to top (imports flow only downward; `tests/layers.rs`
//! holds the table and fails on an upward import): `domain`, `scrub`,
//! `scopes` → `crypto` → `config` → `policy`, `metrics`, `telemetry`,
//! `systemd` → `providers` (platform HTTP) → `store` (PostgreSQL) → `engine`
//! (one refresh, all the safety rules), `registration` → `gate`, `webhooks`,
//! `bulk` (import and export) → `queue` → `scheduler`, `api` → `console`
//! (the operator pages, above the API whose view and rate limit they use)
//! → `app` (start-up) → `daemon`. The binary
//! (`src/bin/tokenwarden`) holds the command line and the demo; the fake
//! platforms are a crate of their own (`crates/fakes`).

pub mod api;
pub mod app;
pub mod bulk;
pub mod config;
pub mod connect;
pub mod console;
pub mod crypto;
pub mod daemon;
pub mod domain;
pub mod engine;
pub mod gate;
#[cfg(test)]
mod json_strategy;
pub mod metrics;
pub mod policy;
pub mod providers;
pub mod queue;
pub mod registration;
pub mod scheduler;
pub mod scopes;
pub mod scrub;
pub mod store;
pub mod systemd;
pub mod telemetry;
pub mod webhooks;
