//! X (OAuth 2.0 user context): the RFC 6749 refresh with Basic client
//! authentication, read through X's own error table first:
//!
//! | answer | kind |
//! |---|---|
//! | 400 `invalid_request` "Value passed for the token was invalid." | rejected, expired (X's word for a spent, revoked or unknown refresh token) |
//! | 401 `unauthorized_client` | config (the app's credentials or header) |
//! | 429, `x-rate-limit-reset` in epoch seconds | rate limited until that reset |
//! | anything else | the generic RFC 6749 reading |
//!
//! X does not tell a revoked token from a spent one, so both are
//! TOKEN_EXPIRED: the user must reconnect either way.

use std::time::Duration;

use futures::FutureExt;
use futures::future::BoxFuture;

use crate::config::ProviderSettings;
use crate::providers::token_response::{json_object, oauth_error, short};
use crate::providers::{
    FailureKind, HttpClient, HttpReply, OAuth2Refresh, ProviderError, RefreshRequest, TokenGrant,
    TokenProvider,
};

/// The description X gives for every refresh token it will not accept.
const INVALID_TOKEN: &str = "value passed for the token was invalid";

pub struct XRefresh {
    inner: OAuth2Refresh,
}

impl XRefresh {
    /// None when no client id is configured.
    pub fn from_settings(settings: &ProviderSettings, http: HttpClient) -> Option<Self> {
        Some(Self {
            inner: OAuth2Refresh::from_settings(settings, http)?,
        })
    }
}

/// X's own rows; None leaves the answer to the generic reading.
pub(super) fn classify(reply: &HttpReply) -> Option<ProviderError> {
    let status = reply.status;
    if status == 429 {
        let code = json_object(reply).ok().and_then(|body| {
            body.get("errors")?
                .as_array()?
                .first()?
                .get("code")
                .map(|c| c.to_string())
        });
        let mut error = ProviderError::new(
            FailureKind::RateLimited,
            "rate limited by the X token endpoint",
        )
        .with_status(status)
        .with_retry_after(rate_limit_reset(reply).or_else(|| reply.retry_after()));
        if let Some(code) = code {
            error = error.with_code(short(&code));
        }
        return Some(error);
    }
    let (code, description) = json_object(reply).ok().and_then(|b| oauth_error(&b))?;
    let kind = match (status, code.as_str()) {
        (400, "invalid_request") if description.to_ascii_lowercase().contains(INVALID_TOKEN) => {
            FailureKind::RejectedExpired
        }
        (401, "unauthorized_client") => FailureKind::Config,
        _ => return None,
    };
    Some(
        ProviderError::new(kind, short(&description))
            .with_status(status)
            .with_code(short(&code)),
    )
}

/// `x-rate-limit-reset`: the Unix time (seconds) at which the window resets.
fn rate_limit_reset(reply: &HttpReply) -> Option<Duration> {
    let value = reply.headers.get("x-rate-limit-reset")?.to_str().ok()?;
    crate::providers::rate_limit::epoch_reset(value, chrono::Utc::now())
}

impl TokenProvider for XRefresh {
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
    use reqwest::header::{HeaderMap, HeaderValue};

    fn reply(status: u16, body: &str, headers: &[(&'static str, &str)]) -> HttpReply {
        let mut map = HeaderMap::new();
        for (k, v) in headers {
            map.insert(*k, HeaderValue::from_str(v).unwrap());
        }
        HttpReply {
            status,
            headers: map,
            body: body.as_bytes().to_vec(),
        }
    }

    #[test]
    fn reset_in_the_past_retries_at_once_and_garbage_is_ignored() {
        let past = reply(429, "{}", &[("x-rate-limit-reset", "1000")]);
        assert_eq!(rate_limit_reset(&past), Some(Duration::from_secs(1)));
        let garbage = reply(429, "{}", &[("x-rate-limit-reset", "soon")]);
        assert_eq!(rate_limit_reset(&garbage), None);
    }

    #[test]
    fn other_invalid_requests_are_left_to_the_generic_reading() {
        let other = reply(
            400,
            r#"{"error":"invalid_request","error_description":"Missing required parameter [refresh_token]."}"#,
            &[],
        );
        assert!(classify(&other).is_none());
    }
}
