//! The refresh engine against real PostgreSQL and a strict fake platform:
//! ARCHITECTURE.md's status table, status rules and refresh-safety rules,
//! one case each, plus malformed answers. One module per topic; the setup
//! they share is in `support`.

#[path = "../common/mod.rs"]
mod common;
mod support;

mod answers;
mod backoff;
mod custody;
mod leases;
mod single_flight;
mod status_rules;
mod status_table;
