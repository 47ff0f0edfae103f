//! Bluesky through the engine against the fake PDS and authorization server.
//!
//! What the PDS or the authorization server answers, and what that makes of
//! the account, is rows of `docs/platform-answers.md` (flows `bluesky`,
//! `bluesky_check`, `bluesky_oauth`), run by `tests/platforms/answers.rs`.
//! The modules here hold what a row cannot say: rotation and the reuse
//! grace, the expiries read from the JWTs, rate-limit and retry headers,
//! malformed sessions (`sessions`); DPoP nonces and proofs, the metadata and
//! the client id (`oauth`); per-account hosts and the host guard
//! (`host_guard`); the DPoP key at rest (`dpop_keys`). Canary tokens and
//! keys: `tests/bluesky_secrets.rs`.

#[path = "../common/mod.rs"]
mod common;
mod support;

mod dpop_keys;
mod host_guard;
mod oauth;
mod sessions;
