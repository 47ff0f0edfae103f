//! The PDS's XRPC error answers (`{"error", "message"}`) as failure kinds,
//! and its `ratelimit-reset` header.

use std::time::Duration;

use serde_json::Value;

use crate::providers::token_response::{json_object, short};
use crate::providers::{FailureKind, HttpReply, ProviderError};

/// Whose token an XRPC error speaks of.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Asked {
    /// refreshSession: the refresh JWT, i.e. the session itself.
    Refresh,
    /// getSession: the access JWT, which a refresh can replace.
    Check,
}

/// An XRPC error answer: `{"error": "<Name>", "message": "..."}`.
pub(super) fn xrpc_error(reply: &HttpReply, asked: Asked) -> ProviderError {
    let status = reply.status;
    let body = json_object(reply).ok();
    let field = |key: &str| {
        body.as_ref()
            .and_then(|b| b.get(key))
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
    };
    let code = field("error");
    let message = field("message");
    let said = message.as_deref().map(short);
    let with_code = |error: ProviderError| match &code {
        Some(code) => error.with_code(short(code)),
        None => error,
    };
    if status == 429 {
        return with_code(
            ProviderError::new(FailureKind::RateLimited, "rate limited by the PDS")
                .with_status(status)
                .with_retry_after(rate_limit_reset(reply).or_else(|| reply.retry_after())),
        );
    }
    let gone = message
        .as_deref()
        .is_some_and(|m| m.starts_with("Could not find user info for account"));
    let (kind, default_text) = match code.as_deref() {
        // The PDS says "Token has been revoked" for any refresh row it no
        // longer holds (spent past its grace, app password deleted, password
        // changed): the session is gone, not necessarily withdrawn.
        Some("ExpiredToken") if asked == Asked::Refresh => {
            (FailureKind::RejectedExpired, "token expired")
        }
        Some("InvalidToken") if asked == Asked::Refresh => {
            (FailureKind::RejectedExpired, "token invalid")
        }
        Some("ExpiredToken" | "InvalidToken") => {
            // This account's access JWT, not the PDS: never the platform's.
            let text = said.unwrap_or_else(|| "the access token was refused".into());
            return with_code(
                ProviderError::transient(format!("{text}; a refresh decides"))
                    .with_status(status)
                    .account_scoped(),
            );
        }
        // The account was deleted on its PDS: nothing left to refresh.
        Some("InvalidRequest") if gone => (FailureKind::RejectedExpired, "account not found"),
        Some("AccountTakedown") => (FailureKind::RejectedRevoked, "account taken down"),
        Some("AccountDeactivated") => {
            let text = said.unwrap_or_else(|| "account deactivated by its owner".into());
            return with_code(
                ProviderError::transient(text)
                    .with_status(status)
                    .with_retry_after(reply.retry_after())
                    .inactive(),
            );
        }
        Some("UpstreamFailure") => (FailureKind::Transient, "upstream failure"),
        _ if (300..400).contains(&status) => (FailureKind::Transient, "redirect refused"),
        _ if status >= 500 => (FailureKind::Transient, "PDS unavailable"),
        _ => {
            let error = ProviderError::unrecognised(status, &reply.body);
            return match &code {
                Some(code) => error.with_code(short(code)),
                None => error,
            };
        }
    };
    let text = match said {
        Some(said) => said,
        None if code.is_none() => format!("{default_text} ({} bytes)", reply.body.len()),
        None => default_text.to_owned(),
    };
    with_code(
        ProviderError::new(kind, text)
            .with_status(status)
            .with_retry_after(reply.retry_after()),
    )
}

/// `ratelimit-reset`: the Unix time (seconds) at which the window resets.
pub(super) fn rate_limit_reset(reply: &HttpReply) -> Option<Duration> {
    let value = reply.headers.get("ratelimit-reset")?.to_str().ok()?;
    crate::providers::rate_limit::epoch_reset(value, chrono::Utc::now())
}
