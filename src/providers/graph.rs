//! Meta Graph API error bodies, `{"error":{"message","type","code",
//! "error_subcode","fbtrace_id"}}`, classified by code and subcode
//! (Graph API error-handling guide):
//!
//! | code / subcode | kind |
//! |---|---|
//! | 190 / 458 (app not installed) | rejected, revoked |
//! | 190 / 459 (user checkpointed: must log in on facebook.com, recoverable) | transient, this account only, code `190/459`: no status change |
//! | 190 / any other (460 password changed, 463 expired, 464 unconfirmed user, 467 invalid, none) | rejected, expired: the user must log in again |
//! | 4 (app), 613 | rate limited, the whole platform; reset from `X-Business-Use-Case-Usage` (minutes) |
//! | 17 (user), 32 (page), 80001-80014 (business use case) | rate limited, this account only |
//! | 368 (temporary policy block) | transient, this account only |
//! | 1, 2 | transient |
//! | any other code | unrecognised: the account's own, kept verbatim |
//! | 10, 200-299 (permissions), 100 (invalid parameter: our request) | config |
//!
//! `X-App-Usage` (`{call_count,total_cputime,total_time}`, percentages) is
//! reported in the message of a throttling answer; at 100 an answer without
//! a Graph body is read as the app's throttle.

use std::time::Duration;

use serde_json::{Map, Value};

use crate::providers::token_response::{json_object, short};
use crate::providers::{FailureKind, HttpReply, ProviderError};

/// The classified Graph error in `reply`, or None when the body is not one.
pub fn graph_error(reply: &HttpReply) -> Option<ProviderError> {
    let body = json_object(reply).ok()?;
    let error = body.get("error")?.as_object()?;
    error_object(error, reply)
}

/// Classifies one Graph error object (a body's `error`, or the `data.error`
/// of a `debug_token` answer, which spells the subcode `subcode`).
pub fn error_object(error: &Map<String, Value>, reply: &HttpReply) -> Option<ProviderError> {
    let code = error.get("code").and_then(as_integer)?;
    let subcode = error
        .get("error_subcode")
        .or_else(|| error.get("subcode"))
        .and_then(as_integer);
    let message = error.get("message").and_then(Value::as_str).unwrap_or("");
    let code_text = match subcode {
        Some(sub) => format!("{code}/{sub}"),
        None => code.to_string(),
    };
    let Some((kind, account_only)) = classify(code, subcode) else {
        return Some(ProviderError::unrecognised(reply.status, &reply.body).with_code(code_text));
    };
    let (retry_after, message) = match kind {
        FailureKind::RateLimited => (
            usage_reset(reply).or_else(|| reply.retry_after()),
            match app_usage(reply) {
                Some(percent) => format!("{} (app usage {percent}%)", short(message)),
                None => short(message),
            },
        ),
        _ => (reply.retry_after(), short(message)),
    };
    let error = ProviderError::new(kind, message)
        .with_status(reply.status)
        .with_code(code_text)
        .with_retry_after(retry_after);
    Some(if account_only {
        error.account_scoped()
    } else {
        error
    })
}

/// The kind of a Graph code/subcode, and whether it concerns one account
/// only; None for a code the table does not know.
pub fn classify(code: i64, subcode: Option<i64>) -> Option<(FailureKind, bool)> {
    Some(match (code, subcode) {
        (190, Some(458)) => (FailureKind::RejectedRevoked, false),
        (190, Some(459)) => (FailureKind::Transient, true),
        (190, _) => (FailureKind::RejectedExpired, false),
        (4 | 613, _) => (FailureKind::RateLimited, false),
        (17 | 32 | 80001..=80014, _) => (FailureKind::RateLimited, true),
        (368, _) => (FailureKind::Transient, true),
        (10 | 100 | 200..=299, _) => (FailureKind::Config, false),
        (1 | 2, _) => (FailureKind::Transient, false),
        _ => return None,
    })
}

/// The highest percentage in `X-App-Usage: {"call_count":..,"total_cputime":..,"total_time":..}`.
pub fn app_usage(reply: &HttpReply) -> Option<u64> {
    let header = reply.headers.get("x-app-usage")?.to_str().ok()?;
    crate::providers::rate_limit::app_usage_percent(header)
}

/// Graph sends codes as numbers; tolerate numeric strings.
pub fn as_integer(value: &Value) -> Option<i64> {
    match value {
        Value::Number(n) => n.as_i64(),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

/// The longest `estimated_time_to_regain_access` (minutes) in
/// `X-Business-Use-Case-Usage: {"<id>":[{"type":..,"estimated_time_to_regain_access":N}]}`.
fn usage_reset(reply: &HttpReply) -> Option<Duration> {
    let header = reply
        .headers
        .get("x-business-use-case-usage")?
        .to_str()
        .ok()?;
    crate::providers::rate_limit::business_use_case_wait(header)
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::{HeaderMap, HeaderValue};

    fn reply(body: &str, usage: Option<&str>) -> HttpReply {
        let mut headers = HeaderMap::new();
        if let Some(usage) = usage {
            headers.insert(
                "x-business-use-case-usage",
                HeaderValue::from_str(usage).unwrap(),
            );
        }
        HttpReply {
            status: 400,
            headers,
            body: body.as_bytes().to_vec(),
        }
    }

    #[test]
    fn codes_and_subcodes() {
        let kind = |body: &str| graph_error(&reply(body, None)).map(|e| e.kind);
        assert_eq!(
            kind(r#"{"error":{"code":190,"error_subcode":458}}"#),
            Some(FailureKind::RejectedRevoked)
        );
        assert_eq!(
            kind(r#"{"error":{"code":"190","error_subcode":"463"}}"#),
            Some(FailureKind::RejectedExpired)
        );
        assert_eq!(
            kind(r#"{"error":{"code":80002}}"#),
            Some(FailureKind::RateLimited)
        );
        assert_eq!(
            kind(r#"{"error":{"code":2}}"#),
            Some(FailureKind::Transient)
        );
        assert_eq!(
            kind(r#"{"error":{"code":368}}"#),
            Some(FailureKind::Transient)
        );
        assert_eq!(kind(r#"{"error":{"code":10}}"#), Some(FailureKind::Config));
        assert_eq!(kind(r#"{"error":{"code":250}}"#), Some(FailureKind::Config));
        assert_eq!(
            kind(r#"{"error":{"code":190,"error_subcode":459}}"#),
            Some(FailureKind::Transient)
        );
        assert_eq!(kind(r#"{"error":"invalid_grant"}"#), None);
        let unknown =
            graph_error(&reply(r#"{"error":{"code":12345,"message":"new"}}"#, None)).unwrap();
        assert!(unknown.unrecognised && unknown.account_only);
        assert_eq!(unknown.code.as_deref(), Some("12345"));
        assert_eq!(kind("<html>"), None);
    }

    #[test]
    fn usage_header_reset_is_in_minutes() {
        let r = reply(
            r#"{"error":{"code":80002}}"#,
            Some(
                r#"{"123":[{"type":"instagram","call_count":100,"estimated_time_to_regain_access":7},{"estimated_time_to_regain_access":3}]}"#,
            ),
        );
        assert_eq!(
            graph_error(&r).unwrap().retry_after,
            Some(Duration::from_secs(420))
        );
    }

    #[test]
    fn user_page_and_business_throttles_are_the_accounts_own() {
        let scoped = |body: &str| graph_error(&reply(body, None)).unwrap().account_only;
        assert!(scoped(r#"{"error":{"code":17}}"#));
        assert!(scoped(r#"{"error":{"code":32}}"#));
        assert!(scoped(r#"{"error":{"code":80001}}"#));
        assert!(scoped(r#"{"error":{"code":190,"error_subcode":459}}"#));
        assert!(!scoped(r#"{"error":{"code":4}}"#));
        assert!(!scoped(r#"{"error":{"code":613}}"#));
        assert!(!scoped(r#"{"error":{"code":1}}"#));
    }

    #[test]
    fn app_usage_is_reported_with_a_throttle() {
        let mut r = reply(
            r#"{"error":{"code":4,"message":"Application request limit reached"}}"#,
            None,
        );
        r.headers.insert(
            "x-app-usage",
            HeaderValue::from_static(r#"{"call_count":100,"total_cputime":12,"total_time":40}"#),
        );
        assert_eq!(app_usage(&r), Some(100));
        let error = graph_error(&r).unwrap();
        assert_eq!(error.kind, FailureKind::RateLimited);
        assert!(
            error.message.contains("app usage 100%"),
            "{}",
            error.message
        );
    }
}
