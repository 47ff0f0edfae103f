//! Facebook Login: Facebook Pages and Instagram with Facebook Login.
//!
//! Page tokens (derived from a long-lived user token) do not expire, so they
//! are never refreshed, only checked: `GET debug_token?input_token=<token>
//! &access_token=<client_id>|<client_secret>` (the app access token). An
//! account that stores a long-lived user token (an access token with an
//! expiry) is re-extended with `GET oauth/access_token?grant_type=
//! fb_exchange_token&client_id&client_secret&fb_exchange_token=<token>`;
//! Meta refuses to exchange an expired token, so expiry is final
//! (`refreshable_after_expiry = false`).
//!
//! Both calls carry secrets in the query string: no URL of this flow may
//! reach an error or a log line (`HttpClient` keeps URLs out of transport
//! errors; the errors built here never mention one).
//!
//! `debug_token` answers:
//!
//! | answer | kind |
//! |---|---|
//! | 200 `data.is_valid: true` | healthy |
//! | 200 `data.is_valid: false`, `data.error` 190 with a subcode | as the Graph table in `graph` (458 revoked; 459 transient for this account; 460, 463, 464, 467 expired) |
//! | 200 `data.is_valid: false` without a usable error | rejected, expired (Meta says the token does not work) |
//! | top-level Graph error 190, 10, 100, 200-299 | config: it concerns our request or the app token (a wrong app secret), never the page token |
//! | top-level throttling (4, 17, 32, 613, 80001-80014) or 1, 2 | as the Graph table (rate limited / transient) |
//! | 429, or `X-App-Usage` at 100 without a Graph body | rate limited |
//! | 200 without `data.is_valid`, anything else | transient |
//!
//! `fb_exchange_token` answers are read as Graph refreshes (`long_lived`),
//! except that an error naming the client secret is config (assumption:
//! Meta's text for a wrong secret is "Error validating client secret.", with
//! code 1, which the Graph table would call transient).

use futures::FutureExt;
use futures::future::BoxFuture;
use secrecy::{ExposeSecret, SecretString};
use serde_json::Value;
use url::Url;

use crate::config::ProviderSettings;
use crate::providers::graph::{app_usage, error_object, graph_error};
use crate::providers::token_response::json_object;
use crate::providers::{
    Checked, FailureKind, HttpClient, HttpReply, ProviderError, RefreshRequest, TokenGrant,
    TokenProvider,
};

pub struct FacebookFlow {
    exchange_url: Url,
    debug_url: Url,
    client_id: String,
    client_secret: SecretString,
    http: HttpClient,
}

impl FacebookFlow {
    /// None unless client id, client secret and both URLs are configured:
    /// the app access token is made of id and secret.
    pub fn from_settings(settings: &ProviderSettings, http: HttpClient) -> Option<Self> {
        Some(Self {
            exchange_url: settings.token_url.clone()?,
            debug_url: settings.health_url.clone()?,
            client_id: settings.client_id.clone()?,
            client_secret: settings.client_secret.clone()?,
            http,
        })
    }

    async fn check(&self, request: RefreshRequest<'_>) -> Result<Checked, ProviderError> {
        let mut url = self.debug_url.clone();
        url.query_pairs_mut()
            .append_pair("input_token", request.access_token.expose())
            .append_pair(
                "access_token",
                &format!("{}|{}", self.client_id, self.client_secret.expose_secret()),
            );
        let reply = self.get(url).await?;
        interpret_debug(&reply).map_err(|e| self.redact(e))
    }

    /// Meta's text could quote the app access token back; the engine scrubs
    /// user tokens, this flow scrubs its own secret.
    fn redact(&self, mut error: ProviderError) -> ProviderError {
        let secret = self.client_secret.expose_secret();
        if !secret.is_empty() {
            error.message = error.message.replace(secret, "[redacted]");
        }
        error
    }

    async fn exchange(&self, request: RefreshRequest<'_>) -> Result<TokenGrant, ProviderError> {
        let mut url = self.exchange_url.clone();
        url.query_pairs_mut()
            .append_pair("grant_type", "fb_exchange_token")
            .append_pair("client_id", &self.client_id)
            .append_pair("client_secret", self.client_secret.expose_secret())
            .append_pair("fb_exchange_token", request.access_token.expose());
        let reply = self.get(url).await?;
        crate::providers::long_lived::interpret(&reply)
            .map_err(|error| {
                let names_secret = error.message.to_ascii_lowercase().contains("client secret");
                if names_secret && error.kind != FailureKind::Config {
                    ProviderError {
                        kind: FailureKind::Config,
                        account_only: false,
                        unrecognised: false,
                        ..error
                    }
                } else {
                    error
                }
            })
            .map_err(|e| self.redact(e))
    }

    async fn get(&self, url: Url) -> Result<HttpReply, ProviderError> {
        let builder = self
            .http
            .inner()
            .get(url)
            .header(reqwest::header::ACCEPT, "application/json");
        self.http.send(builder).await
    }
}

pub(super) fn interpret_debug(reply: &HttpReply) -> Result<Checked, ProviderError> {
    let status = reply.status;
    if let Some(error) = graph_error(reply) {
        // A top-level error is about the request or the app token, never the
        // token under inspection (that one is reported in `data`).
        return Err(match error.kind {
            FailureKind::RejectedExpired | FailureKind::RejectedRevoked | FailureKind::Config => {
                ProviderError {
                    kind: FailureKind::Config,
                    account_only: false,
                    unrecognised: false,
                    message: format!("debug_token refused the app's request: {}", error.message),
                    ..error
                }
            }
            _ => error,
        });
    }
    if (200..300).contains(&status) {
        let body = json_object(reply)?;
        let data = body.get("data").and_then(Value::as_object);
        let valid = data
            .and_then(|d| d.get("is_valid"))
            .and_then(Value::as_bool);
        return match (data, valid) {
            (_, Some(true)) => Ok(Checked::default()),
            (Some(data), Some(false)) => {
                let nested = data
                    .get("error")
                    .and_then(Value::as_object)
                    .and_then(|e| error_object(e, reply));
                Err(match nested {
                    Some(error) if error.code.as_deref().is_some_and(|c| c.starts_with("190")) => {
                        error
                    }
                    _ => ProviderError::new(
                        FailureKind::RejectedExpired,
                        "debug_token says the token is not valid",
                    )
                    .with_status(status)
                    .with_code("is_valid_false"),
                })
            }
            _ => Err(ProviderError::transient(
                "malformed debug_token answer: data.is_valid is missing",
            )
            .with_status(status)),
        };
    }
    let retry_after = reply.retry_after();
    if status == 429 || app_usage(reply).is_some_and(|p| p >= 100) {
        return Err(
            ProviderError::new(FailureKind::RateLimited, "throttled by the Graph API")
                .with_status(status)
                .with_retry_after(retry_after),
        );
    }
    if status >= 500 {
        return Err(ProviderError::transient(format!(
            "debug_token unavailable ({} bytes)",
            reply.body.len()
        ))
        .with_status(status)
        .with_retry_after(retry_after));
    }
    Err(ProviderError::unrecognised(status, &reply.body))
}

impl TokenProvider for FacebookFlow {
    fn needs_refresh_token(&self) -> bool {
        false
    }

    fn refresh<'a>(
        &'a self,
        request: RefreshRequest<'a>,
    ) -> BoxFuture<'a, Result<TokenGrant, ProviderError>> {
        self.exchange(request).boxed()
    }

    fn health_check<'a>(
        &'a self,
        request: RefreshRequest<'a>,
    ) -> Option<BoxFuture<'a, Result<Checked, ProviderError>>> {
        Some(self.check(request).boxed())
    }
}
