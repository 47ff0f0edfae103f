//! Each platform's flow through the engine against a fake that speaks the
//! platform's wire format.
//!
//! What a platform answers and what that makes of the account is a table:
//! `docs/platform-answers.md`, run row by row by `answers`. Adding an answer
//! is one row there. The modules per platform hold what a row cannot say:
//! rotation and lifetimes read from a success, the request sent, rate-limit
//! headers, the Instagram/Threads age rule, Mastodon's host guard, LinkedIn's
//! introspection, Facebook's debug_token checks. `across_platforms` holds
//! missing scopes and which failures may pause a platform.

#[path = "../common/mod.rs"]
mod common;
mod support;

mod across_platforms;
mod answers;
mod graph;
mod linkedin;
mod mastodon;
mod pinterest;
mod tiktok;
mod x;
mod youtube;
