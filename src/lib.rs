//! tokenwarden: keeps the OAuth credentials of connected social-media
//! accounts alive and reports, truthfully and early, which need a reconnect.
//!
//! Layout: `domain` (plain types) → `config` → `crypto` → `store`
//! (PostgreSQL) → `providers` (platform HTTP) → `engine` (one refresh, all
//! the safety rules) → `app` (start-up) → `cli` and `demo`. `fake` holds the
//! loopback platforms the demo and the tests talk to.

pub mod api;
pub mod app;
pub mod config;
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
