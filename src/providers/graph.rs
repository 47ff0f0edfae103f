//! Meta Graph API error bodies, `{"error":{"message","type","code",
//! "error_subcode","fbtrace_id"}}`, classified by code and subcode
//! (Graph API error-handling guide):
//!
//! | code / subcode | kind |
//! |---|---|
//! | 190 / 458 (app not installed) | rejected, revoked |
//! | 190 / any other (459 checkpoint, 460 password changed, 463 expired, 464 unconfirmed user, 467 invalid, none) | rejected, expired: the user must log in again |
//! | 4, 17, 32, 613, 80001-80014 | rate limited; reset from `X-Business-Use-Case-Usage` (minutes) |
//! | 1, 2, 368, unknown codes | transient |
//! | 10, 200-299 (permissions), 100 (invalid parameter: our request) | config |

use std::time::Duration;

use serde_json::Value;

use crate::providers::token_response::{json_object, short};
use crate::providers::{FailureKind, HttpReply, ProviderError};

/// The classified Graph error in `reply`, or None when the body is not one.
pub fn graph_error(reply: &HttpReply) -> Option<ProviderError> {
    let body = json_object(reply).ok()?;
    let error = body.get("error")?.as_object()?;
    let code = error.get("code").and_then(as_integer)?;
    let subcode = error.get("error_subcode").and_then(as_integer);
    let message = error.get("message").and_then(Value::as_str).unwrap_or("");
    let kind = match (code, subcode) {
        (190, Some(458)) => FailureKind::RejectedRevoked,
        (190, _) => FailureKind::RejectedExpired,
        (4 | 17 | 32 | 613 | 80001..=80014, _) => FailureKind::RateLimited,
        (10 | 100 | 200..=299, _) => FailureKind::Config,
        _ => FailureKind::Transient,
    };
    let code_text = match subcode {
        Some(sub) => format!("{code}/{sub}"),
        None => code.to_string(),
    };
    let retry_after = match kind {
        FailureKind::RateLimited => usage_reset(reply).or_else(|| reply.retry_after()),
        _ => reply.retry_after(),
    };
    Some(
        ProviderError::new(kind, short(message))
            .with_status(reply.status)
            .with_code(code_text)
            .with_retry_after(retry_after),
    )
}

/// Graph sends codes as numbers; tolerate numeric strings.
fn as_integer(value: &Value) -> Option<i64> {
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
    let usage: Value = serde_json::from_str(header).ok()?;
    let minutes = usage
        .as_object()?
        .values()
        .filter_map(Value::as_array)
        .flatten()
        .filter_map(|entry| entry.get("estimated_time_to_regain_access")?.as_u64())
        .max()?;
    (minutes > 0).then(|| Duration::from_secs(minutes * 60))
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
        assert_eq!(kind(r#"{"error":"invalid_grant"}"#), None);
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
}
