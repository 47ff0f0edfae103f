//! Mastodon: tokens do not expire, so there is no refresh, only a health
//! check, `GET /api/v1/accounts/verify_credentials` with the account's token
//! on the account's own instance (`meta.instance_host`). That host is the
//! user's choice: it goes through `HostGuard` (https, public addresses).
//!
//! | answer | kind |
//! |---|---|
//! | 200 with a JSON object | healthy |
//! | 401 ("The access token is invalid" / "was revoked") | rejected, revoked |
//! | 403 ("Your login is currently disabled") | transient, code `account_disabled`: no status change, but flagged |
//! | 429, `X-RateLimit-Reset` as an ISO 8601 timestamp | rate limited until then |
//! | 3xx, 5xx, anything else | transient |
//!
//! Every failure is this account's own (`account_scoped`): instances are
//! separate servers, so one's trouble never pauses Mastodon as a whole.

use std::time::Duration;

use chrono::Utc;
use futures::FutureExt;
use futures::future::BoxFuture;
use serde_json::Value;

use crate::config::{HttpSettings, ProviderSettings};
use crate::providers::host_guard::HostGuard;
use crate::providers::token_response::{json_object, short};
use crate::providers::{
    FailureKind, HttpClient, HttpReply, ProviderError, RefreshRequest, TokenGrant, TokenProvider,
};

const VERIFY_PATH: &str = "/api/v1/accounts/verify_credentials";

pub struct MastodonCheck {
    guard: HostGuard,
    http: HttpClient,
}

impl MastodonCheck {
    /// A client of its own: its resolver refuses non-public addresses.
    pub fn from_settings(
        settings: &ProviderSettings,
        http: &HttpSettings,
    ) -> Result<Self, reqwest::Error> {
        let guard = HostGuard::new(&settings.allowed_origins);
        Ok(Self {
            http: HttpClient::with_resolver(http, guard.clone())?,
            guard,
        })
    }

    /// Every failure here is the account's own: an instance is one user's
    /// choice, and its outage, throttle or refusal says nothing about the
    /// others.
    async fn check(&self, request: RefreshRequest<'_>) -> Result<(), ProviderError> {
        self.check_instance(request)
            .await
            .map_err(ProviderError::account_scoped)
    }

    async fn check_instance(&self, request: RefreshRequest<'_>) -> Result<(), ProviderError> {
        let host = request
            .meta
            .get("instance_host")
            .and_then(Value::as_str)
            .filter(|h| !h.trim().is_empty())
            // One account's missing data, not the app's: a config error would
            // pause every Mastodon account.
            .ok_or_else(|| {
                ProviderError::transient(
                    "the account has no meta.instance_host: its instance is unknown",
                )
                .with_code("instance_unknown")
            })?;
        // A refused host is this account's problem (the user chose it), not
        // the app's: no status change, retried later, reason recorded.
        let origin = self.guard.origin(host).map_err(|why| {
            ProviderError::transient(format!("instance host refused: {why}"))
                .with_code("host_refused")
        })?;
        let url = origin.join(VERIFY_PATH).map_err(|_| {
            ProviderError::transient("instance host refused: cannot build the URL")
                .with_code("host_refused")
        })?;
        let builder = self
            .http
            .inner()
            .get(url)
            .bearer_auth(request.access_token.expose())
            .header(reqwest::header::ACCEPT, "application/json");
        let reply = self.http.send(builder).await?;
        interpret(&reply)
    }
}

fn interpret(reply: &HttpReply) -> Result<(), ProviderError> {
    let status = reply.status;
    let said = || {
        json_object(reply)
            .ok()
            .and_then(|b| b.get("error").and_then(Value::as_str).map(short))
    };
    match status {
        200..=299 => json_object(reply).map(|_| ()),
        401 => Err(ProviderError::new(
            FailureKind::RejectedRevoked,
            said().unwrap_or_else(|| "the access token is invalid or revoked".into()),
        )
        .with_status(status)),
        403 => Err(ProviderError::transient(format!(
            "account disabled on its instance: {}",
            said().unwrap_or_else(|| "forbidden".into())
        ))
        .with_status(status)
        .with_code("account_disabled")),
        429 => Err(
            ProviderError::new(FailureKind::RateLimited, "rate limited by the instance")
                .with_status(status)
                .with_retry_after(rate_limit_reset(reply).or_else(|| reply.retry_after())),
        ),
        300..=399 => Err(ProviderError::transient("redirect refused").with_status(status)),
        _ => Err(ProviderError::transient(format!(
            "unexpected answer ({} bytes)",
            reply.body.len()
        ))
        .with_status(status)
        .with_retry_after(reply.retry_after())),
    }
}

/// `X-RateLimit-Reset`: an ISO 8601 timestamp, not epoch seconds.
fn rate_limit_reset(reply: &HttpReply) -> Option<Duration> {
    let value = reply.headers.get("x-ratelimit-reset")?.to_str().ok()?;
    crate::providers::rate_limit::iso_reset(value, Utc::now())
}

impl TokenProvider for MastodonCheck {
    fn needs_refresh_token(&self) -> bool {
        false
    }

    /// Reached only for an account registered with an expiry, which a
    /// Mastodon token does not have (Pleroma-style expiring tokens are not
    /// supported by this flow).
    fn refresh<'a>(
        &'a self,
        _request: RefreshRequest<'a>,
    ) -> BoxFuture<'a, Result<TokenGrant, ProviderError>> {
        futures::future::ready(Err(ProviderError::new(
            FailureKind::Config,
            "Mastodon tokens do not expire and cannot be refreshed; register the account without an expiry",
        )))
        .boxed()
    }

    fn health_check<'a>(
        &'a self,
        request: RefreshRequest<'a>,
    ) -> Option<BoxFuture<'a, Result<(), ProviderError>>> {
        Some(self.check(request).boxed())
    }
}
