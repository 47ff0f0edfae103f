//! The refresh of Meta's long-lived user tokens (Instagram Login, Threads):
//! `GET <refresh_access_token>?grant_type=<ig|th>_refresh_token&access_token=<token>`.
//! There is no refresh token and no client secret: the access token itself
//! is exchanged for a new one valid 60 days. The platform refuses tokens
//! younger than 24 h and can never revive an expired one, so expiry is final
//! (`refreshable_after_expiry = false` in the policy).
//!
//! The token travels in the query string: no URL of this flow may reach an
//! error or a log line. `HttpClient` keeps URLs out of transport errors; the
//! errors built here never mention one.
//!
//! Error table: Graph error bodies as read by `graph::graph_error`; without
//! one, 429 is rate limited, 5xx transient, and anything else unrecognised
//! (the account's own). Rows: docs/platform-answers.md.

use std::time::Duration;

use chrono::Utc;
use futures::FutureExt;
use futures::future::BoxFuture;
use url::Url;

use crate::config::ProviderSettings;
use crate::policy::delta;
use crate::providers::graph::graph_error;
use crate::providers::token_response::{json_object, parse_grant};
use crate::providers::{
    FailureKind, HttpClient, HttpReply, ProviderError, RefreshRequest, TokenGrant, TokenProvider,
};

pub struct LongLivedRefresh {
    platform: &'static str,
    grant_type: &'static str,
    refresh_url: Url,
    min_age: Duration,
    http: HttpClient,
}

impl LongLivedRefresh {
    /// None when no refresh URL is configured.
    pub fn new(
        platform: &'static str,
        grant_type: &'static str,
        settings: &ProviderSettings,
        http: HttpClient,
    ) -> Option<Self> {
        Some(Self {
            platform,
            grant_type,
            refresh_url: settings.token_url.clone()?,
            min_age: settings.min_token_age,
            http,
        })
    }

    async fn call(&self, request: RefreshRequest<'_>) -> Result<TokenGrant, ProviderError> {
        // A forced refresh can come before the platform's minimum age; asking
        // anyway would only earn an error whose code is undocumented.
        if let Some(issued) = request.token_issued_at {
            let ready_at = issued + delta(self.min_age);
            let now = Utc::now();
            if ready_at > now {
                let wait = (ready_at - now).to_std().unwrap_or_default();
                return Err(ProviderError::transient(format!(
                    "{} refuses to refresh tokens younger than {}; retrying when it is old enough",
                    self.platform,
                    humantime::format_duration(self.min_age)
                ))
                .with_code("token_too_young")
                .with_retry_after(Some(wait))
                .account_scoped());
            }
        }
        let mut url = self.refresh_url.clone();
        url.query_pairs_mut()
            .append_pair("grant_type", self.grant_type)
            .append_pair("access_token", request.access_token.expose());
        let builder = self
            .http
            .inner()
            .get(url)
            .header(reqwest::header::ACCEPT, "application/json");
        let reply = self.http.send(builder).await?;
        interpret(&reply)
    }
}

pub(crate) fn interpret(reply: &HttpReply) -> Result<TokenGrant, ProviderError> {
    let status = reply.status;
    if let Some(error) = graph_error(reply) {
        return Err(error);
    }
    if (200..300).contains(&status) {
        let grant = parse_grant(&json_object(reply)?, status)?;
        // Nothing to rotate: a refresh token in this answer would be a
        // misreading, and storing it would be wrong.
        return Ok(TokenGrant {
            refresh_token: None,
            refresh_token_expires_in: None,
            ..grant
        });
    }
    let retry_after = reply.retry_after();
    if status == 429 {
        return Err(ProviderError::new(
            FailureKind::RateLimited,
            "rate limited by the refresh endpoint",
        )
        .with_status(status)
        .with_retry_after(retry_after));
    }
    if status >= 500 {
        return Err(ProviderError::transient(format!(
            "refresh endpoint unavailable ({} bytes)",
            reply.body.len()
        ))
        .with_status(status)
        .with_retry_after(retry_after));
    }
    Err(ProviderError::unrecognised(status, &reply.body))
}

impl TokenProvider for LongLivedRefresh {
    fn needs_refresh_token(&self) -> bool {
        false
    }

    fn refresh<'a>(
        &'a self,
        request: RefreshRequest<'a>,
    ) -> BoxFuture<'a, Result<TokenGrant, ProviderError>> {
        self.call(request).boxed()
    }
}
