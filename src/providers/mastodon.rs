//! Mastodon: tokens do not expire, so there is no refresh, only a health
//! check, `GET /api/v1/accounts/verify_credentials` with the account's token
//! on the account's own instance (`meta.instance_host`). That host is the
//! user's choice: it goes through `HostGuard` (https, public addresses).
//!
//! The full table, with sources, is docs/platform-answers.md. In short:
//!
//! | answer | kind |
//! |---|---|
//! | 200 with a JSON object | healthy, login active |
//! | 401 "The access token was revoked" | rejected, revoked |
//! | 401 "The access token is invalid", "... expired", "... is invalid, expired or revoked" | rejected, expired: the instance no longer knows the grant |
//! | 403 "This action is outside the authorized scopes" | healthy: the token authenticated; the check needs a `read` scope the user did not grant, so the login state is unknown |
//! | 403 "Your login is currently disabled" / "... pending approval" / "... missing a confirmed e-mail address" | transient, code `account_disabled`, account flagged inactive: no status change |
//! | 429, `X-RateLimit-Reset` as an ISO 8601 timestamp | rate limited until then |
//! | 3xx, 5xx | transient |
//! | anything else (another 401 or 403 text, an error inside a 200) | unrecognised: kept verbatim |
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
    AccountState, Checked, FailureKind, HttpClient, HttpReply, ProviderError, RefreshRequest,
    TokenGrant, TokenProvider,
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
    async fn check(&self, request: RefreshRequest<'_>) -> Result<Checked, ProviderError> {
        self.check_instance(request)
            .await
            .map_err(ProviderError::account_scoped)
    }

    async fn check_instance(&self, request: RefreshRequest<'_>) -> Result<Checked, ProviderError> {
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

/// Doorkeeper's `invalid_token` texts: the user withdrew the app, and the
/// ones for a grant the instance no longer knows (status rule 2a: those are
/// TOKEN_EXPIRED, whatever else they mention).
const TOKEN_REVOKED: &str = "The access token was revoked";
const TOKEN_DEAD: [&str; 3] = [
    "The access token is invalid",
    "The access token expired",
    "The access token is invalid, expired or revoked",
];
/// Doorkeeper's answer when the token is valid but lacks the scope asked for.
const OUTSIDE_SCOPES: &str = "This action is outside the authorized scopes";
/// `Api::BaseController#require_user!`: the login itself cannot act.
const LOGIN_REFUSED: [&str; 3] = [
    "Your login is currently disabled",
    "Your login is currently pending approval",
    "Your login is missing a confirmed e-mail address",
];

pub(super) fn interpret(reply: &HttpReply) -> Result<Checked, ProviderError> {
    let status = reply.status;
    let said = || {
        json_object(reply)
            .ok()
            .and_then(|b| b.get("error").and_then(Value::as_str).map(short))
    };
    match status {
        200..=299 => match json_object(reply) {
            // An error inside a success is no shape Mastodon documents.
            Ok(body) if body.contains_key("error") => {
                Err(ProviderError::unrecognised(status, &reply.body))
            }
            Ok(_) => Ok(Checked::active()),
            Err(malformed) => Err(malformed),
        },
        // Only Doorkeeper's own texts are read; any other is unrecognised.
        401 => match said() {
            Some(text) if text == TOKEN_REVOKED => {
                Err(ProviderError::new(FailureKind::RejectedRevoked, text).with_status(status))
            }
            Some(text) if TOKEN_DEAD.contains(&text.as_str()) => {
                Err(ProviderError::new(FailureKind::RejectedExpired, text).with_status(status))
            }
            _ => Err(ProviderError::unrecognised(status, &reply.body)),
        },
        403 => match said() {
            // Doorkeeper checks the token before its scopes: it works.
            Some(text) if text == OUTSIDE_SCOPES => Ok(Checked {
                account: AccountState::Unreported,
                note: Some(
                    "token valid; the login's state is unknown: verify_credentials needs a read \
                     scope the user did not grant"
                        .into(),
                ),
            }),
            Some(text) if LOGIN_REFUSED.contains(&text.as_str()) => Err(ProviderError::transient(
                format!("account disabled on its instance: {text}"),
            )
            .with_status(status)
            .with_code("account_disabled")
            .inactive()),
            _ => Err(ProviderError::unrecognised(status, &reply.body)),
        },
        429 => Err(
            ProviderError::new(FailureKind::RateLimited, "rate limited by the instance")
                .with_status(status)
                .with_retry_after(rate_limit_reset(reply).or_else(|| reply.retry_after())),
        ),
        300..=399 => Err(ProviderError::transient("redirect refused").with_status(status)),
        500..=599 => Err(ProviderError::transient(format!(
            "instance unavailable ({} bytes)",
            reply.body.len()
        ))
        .with_status(status)
        .with_retry_after(reply.retry_after())),
        _ => Err(ProviderError::unrecognised(status, &reply.body)),
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

    /// Reached only for an account registered with an expiry before
    /// registration refused one (Mastodon tokens do not expire;
    /// Pleroma-style expiring tokens are not supported by this flow). It is
    /// that account's data, never the app's: no pause.
    fn refresh<'a>(
        &'a self,
        _request: RefreshRequest<'a>,
    ) -> BoxFuture<'a, Result<TokenGrant, ProviderError>> {
        futures::future::ready(Err(ProviderError::transient(
            "Mastodon tokens do not expire and cannot be refreshed; register the account again without an expiry",
        )
        .with_code("expiry_not_supported")
        .account_scoped()))
        .boxed()
    }

    fn health_check<'a>(
        &'a self,
        request: RefreshRequest<'a>,
    ) -> Option<BoxFuture<'a, Result<Checked, ProviderError>>> {
        Some(self.check(request).boxed())
    }
}
