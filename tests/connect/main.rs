//! The connect flow end to end: `POST /v1/connect`, the platform's consent
//! screen (a fake speaking the platform's wire format, answered by a
//! simulated user), the browser's hop back to the daemon's callback, the
//! registered account, and its first refresh through the engine.

#[path = "../common/mod.rs"]
mod common;
mod support;

mod bluesky;
mod flow;
mod mastodon;
mod meta;
mod oauth2;
mod review;
