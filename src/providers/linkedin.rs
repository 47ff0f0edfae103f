//! LinkedIn (member and organization): the RFC 6749 refresh with the client
//! credentials in the form body. The refresh token does not rotate and has a
//! lifetime of its own, read from `refresh_token_expires_in` (the generic
//! parser does). LinkedIn's error table, read before the generic one:
//!
//! | answer | kind |
//! |---|---|
//! | 400 `invalid_request` "The provided authorization grant or refresh token is invalid, expired or revoked" | rejected, expired |
//! | anything else | the generic RFC 6749 reading (`invalid_client` = config, 429 = rate limited, 5xx = transient) |
//!
//! Assumption: that wording comes from third-party notes, not from
//! LinkedIn's documentation; any other `invalid_request` stays a config
//! error (a malformed request is ours to fix).
//!
//! Health check (accounts without programmatic refresh, which face the
//! 60-day cliff): `POST introspectToken` with `client_id`, `client_secret`
//! and `token`, answered with `active`, `status`, `expires_at`, `scope`, ...:
//!
//! | answer | kind |
//! |---|---|
//! | `active: true` | healthy |
//! | `status: "revoked"` | rejected, revoked |
//! | `status: "expired"` | rejected, expired |
//! | `active: false` without a status | rejected, expired (the token does not work; LinkedIn did not say why) |
//! | an OAuth error body | the generic reading (`invalid_client` = config) |
//! | 429 rate limited; 5xx, 200 without a boolean `active` | transient |

use futures::FutureExt;
use futures::future::BoxFuture;

use secrecy::{ExposeSecret, SecretString};
use serde_json::Value;
use url::Url;

use crate::config::{ClientAuth, ProviderSettings};
use crate::providers::token_response::{json_object, oauth_error, short};
use crate::providers::{
    Checked, FailureKind, HttpClient, HttpReply, OAuth2Refresh, ProviderError, RefreshRequest,
    TokenGrant, TokenProvider,
};

const DEAD_GRANT: &str = "authorization grant or refresh token is invalid, expired or revoked";

pub struct LinkedinRefresh {
    inner: OAuth2Refresh,
    introspection: Option<Introspection>,
}

struct Introspection {
    url: Url,
    client_id: String,
    client_secret: Option<SecretString>,
    http: HttpClient,
}

impl LinkedinRefresh {
    /// None when no client id is configured. LinkedIn documents credentials
    /// in the body only, whatever `client_auth` says.
    pub fn from_settings(settings: &ProviderSettings, http: HttpClient) -> Option<Self> {
        let mut settings = settings.clone();
        settings.client_auth = ClientAuth::Body;
        let introspection = settings.health_url.clone().map(|url| Introspection {
            url,
            client_id: settings.client_id.clone().unwrap_or_default(),
            client_secret: settings.client_secret.clone(),
            http: http.clone(),
        });
        Some(Self {
            inner: OAuth2Refresh::from_settings(&settings, http)?,
            introspection,
        })
    }
}

impl Introspection {
    async fn check(&self, request: RefreshRequest<'_>) -> Result<Checked, ProviderError> {
        let form = [
            ("client_id", self.client_id.as_str()),
            (
                "client_secret",
                self.client_secret
                    .as_ref()
                    .map(|s| s.expose_secret())
                    .unwrap_or(""),
            ),
            ("token", request.access_token.expose()),
        ];
        let builder = self
            .http
            .inner()
            .post(self.url.clone())
            .header(reqwest::header::ACCEPT, "application/json")
            .form(&form);
        let reply = self.http.send(builder).await?;
        interpret_introspection(&reply)
    }
}

pub(super) fn interpret_introspection(reply: &HttpReply) -> Result<Checked, ProviderError> {
    let status = reply.status;
    if !(200..300).contains(&status) {
        // Errors are RFC 6749 shaped (invalid_client, 429, 5xx, ...).
        return match OAuth2Refresh::interpret(reply) {
            Err(error) => Err(error),
            Ok(_) => {
                Err(ProviderError::transient("unexpected introspection answer").with_status(status))
            }
        };
    }
    let body = json_object(reply)?;
    let Some(active) = body.get("active").and_then(Value::as_bool) else {
        return Err(
            ProviderError::transient("malformed introspection answer: active is missing")
                .with_status(status),
        );
    };
    if active {
        return Ok(Checked::default());
    }
    let said = body.get("status").and_then(Value::as_str).unwrap_or("");
    let (kind, message) = match said {
        "revoked" => (FailureKind::RejectedRevoked, "the token has been revoked"),
        "expired" => (FailureKind::RejectedExpired, "the token has expired"),
        _ => (
            FailureKind::RejectedExpired,
            "the token is not active (no reason given)",
        ),
    };
    let error = ProviderError::new(kind, message).with_status(status);
    Err(if said.is_empty() {
        error.with_code("inactive")
    } else {
        error.with_code(short(said))
    })
}

pub(super) fn classify(reply: &HttpReply) -> Option<ProviderError> {
    if reply.status != 400 {
        return None;
    }
    let (code, description) = json_object(reply).ok().and_then(|b| oauth_error(&b))?;
    (code == "invalid_request" && description.to_ascii_lowercase().contains(DEAD_GRANT)).then(
        || {
            ProviderError::new(FailureKind::RejectedExpired, short(&description))
                .with_status(reply.status)
                .with_code(short(&code))
        },
    )
}

impl TokenProvider for LinkedinRefresh {
    fn refresh<'a>(
        &'a self,
        request: RefreshRequest<'a>,
    ) -> BoxFuture<'a, Result<TokenGrant, ProviderError>> {
        self.inner.refresh_classified(request, classify).boxed()
    }

    fn health_check<'a>(
        &'a self,
        request: RefreshRequest<'a>,
    ) -> Option<BoxFuture<'a, Result<Checked, ProviderError>>> {
        let introspection = self.introspection.as_ref()?;
        Some(introspection.check(request).boxed())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::HeaderMap;

    fn reply(status: u16, body: &str) -> HttpReply {
        HttpReply {
            status,
            headers: HeaderMap::new(),
            body: body.as_bytes().to_vec(),
        }
    }

    #[test]
    fn introspection_without_a_boolean_active_or_with_5xx_is_transient() {
        for (status, body) in [
            (200, r#"{"status":"revoked"}"#),
            (200, r#"{"active":"false"}"#),
            (200, "<html>"),
            (503, "unavailable"),
        ] {
            let error = interpret_introspection(&reply(status, body)).unwrap_err();
            assert_eq!(error.kind, FailureKind::Transient, "{status} {body}");
        }
        assert!(
            interpret_introspection(&reply(200, r#"{"active":true,"status":"active"}"#)).is_ok()
        );
        let limited = interpret_introspection(&reply(429, "{}")).unwrap_err();
        assert_eq!(limited.kind, FailureKind::RateLimited);
    }
}
