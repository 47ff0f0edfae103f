//! The operator console over a real socket, against a real PostgreSQL and
//! the strict fake platform: sign-in, CSRF, every page's figures for a
//! seeded set of accounts, every action and its audit event, and that no
//! page holds a secret. The browser tests are in `tests/console_browser`.

#[path = "../common/mod.rs"]
mod common;
mod support;

mod actions;
mod auth;
mod pages;
