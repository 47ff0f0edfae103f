//! Google (YouTube): the RFC 6749 refresh at `oauth2.googleapis.com/token`
//! with the client credentials in the form body. Google usually returns no
//! new refresh token; the engine then keeps the stored one. A time-based
//! grant carries `refresh_token_expires_in` (read by the generic parser).
//! Error table, read before the generic one:
//!
//! | answer | kind |
//! |---|---|
//! | 400 `invalid_grant` ("Token has been expired or revoked.", or any other text) | rejected, expired: Google's text does not tell revoked from expired, and either way the user must reconnect |
//! | 401 `deleted_client` (the OAuth client was deleted) | config |
//! | Google API error `{"error":{"errors":[{"reason":..}]}}` with `quotaExceeded` / `dailyLimitExceeded` | rate limited until the daily quota resets (midnight Pacific: retried at the next 08:00 UTC, which is after it in both PST and PDT) |
//! | same with `rateLimitExceeded` | rate limited, the whole platform |
//! | same with `userRateLimitExceeded` | rate limited, this account only |
//! | anything else | the generic RFC 6749 reading (`invalid_client`, `unauthorized_client`, `invalid_request` = config; 429 = rate limited; 5xx = transient) |
//!
//! Quota rows are YouTube Data API answers; they are read here too so that a
//! quota answer is never taken for an auth failure.

use std::time::Duration;

use chrono::{DateTime, TimeDelta, Timelike, Utc};
use futures::FutureExt;
use futures::future::BoxFuture;
use serde_json::Value;

use crate::config::{ClientAuth, ProviderSettings};
use crate::providers::token_response::{json_object, oauth_error, short};
use crate::providers::{
    FailureKind, HttpClient, HttpReply, OAuth2Refresh, ProviderError, RefreshRequest, TokenGrant,
    TokenProvider,
};

pub struct GoogleRefresh {
    inner: OAuth2Refresh,
}

impl GoogleRefresh {
    /// None when no client id is configured. Credentials travel in the body
    /// as Google documents, whatever `client_auth` says.
    pub fn from_settings(settings: &ProviderSettings, http: HttpClient) -> Option<Self> {
        let mut settings = settings.clone();
        settings.client_auth = ClientAuth::Body;
        Some(Self {
            inner: OAuth2Refresh::from_settings(&settings, http)?,
        })
    }
}

pub(super) fn classify(reply: &HttpReply) -> Option<ProviderError> {
    // An error inside a success is no shape Google documents: the generic
    // reading records it as unrecognised.
    if (200..300).contains(&reply.status) {
        return None;
    }
    let body = json_object(reply).ok()?;
    if let Some(error) = body.get("error").and_then(Value::as_object) {
        return api_error(error, reply);
    }
    let (code, description) = oauth_error(&body)?;
    let kind = match code.as_str() {
        "invalid_grant" => FailureKind::RejectedExpired,
        "deleted_client" => FailureKind::Config,
        _ => return None,
    };
    let message = if description.is_empty() {
        code.clone()
    } else {
        short(&description)
    };
    Some(
        ProviderError::new(kind, message)
            .with_status(reply.status)
            .with_code(short(&code)),
    )
}

/// Google's API error shape: `{"error":{"code","message","status","errors":[{"reason"}]}}`.
fn api_error(error: &serde_json::Map<String, Value>, reply: &HttpReply) -> Option<ProviderError> {
    let reason = error
        .get("errors")?
        .as_array()?
        .iter()
        .find_map(|e| e.get("reason")?.as_str())?;
    let message = short(
        error
            .get("message")
            .and_then(Value::as_str)
            .unwrap_or(reason),
    );
    let limited = |retry_after| {
        ProviderError::new(FailureKind::RateLimited, message.clone())
            .with_status(reply.status)
            .with_code(reason)
            .with_retry_after(retry_after)
    };
    match reason {
        "quotaExceeded" | "dailyLimitExceeded" => {
            Some(limited(Some(until_quota_reset(Utc::now()))))
        }
        "rateLimitExceeded" => Some(limited(reply.retry_after())),
        "userRateLimitExceeded" => Some(limited(reply.retry_after()).account_scoped()),
        _ => None,
    }
}

/// Time until the next 08:00 UTC: Google's daily quotas reset at midnight
/// Pacific time, which is 08:00 UTC in winter and 07:00 UTC in summer.
fn until_quota_reset(now: DateTime<Utc>) -> Duration {
    let today = now
        .with_hour(8)
        .and_then(|t| t.with_minute(0))
        .and_then(|t| t.with_second(0))
        .and_then(|t| t.with_nanosecond(0))
        .unwrap_or(now);
    let next = if today > now {
        today
    } else {
        today + TimeDelta::days(1)
    };
    (next - now).to_std().unwrap_or_default()
}

impl TokenProvider for GoogleRefresh {
    fn refresh<'a>(
        &'a self,
        request: RefreshRequest<'a>,
    ) -> BoxFuture<'a, Result<TokenGrant, ProviderError>> {
        self.inner.refresh_classified(request, classify).boxed()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quota_resets_at_the_next_0800_utc() {
        let at = |s: &str| s.parse::<DateTime<Utc>>().unwrap();
        assert_eq!(
            until_quota_reset(at("2026-03-01T07:00:00Z")),
            Duration::from_secs(3600)
        );
        assert_eq!(
            until_quota_reset(at("2026-03-01T09:00:00Z")),
            Duration::from_secs(23 * 3600)
        );
    }
}
