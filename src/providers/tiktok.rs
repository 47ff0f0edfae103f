//! TikTok (business and personal): `POST /v2/oauth/token/` with a form body
//! of `client_key` (TikTok's name for the client id, configured as
//! `client_id`), `client_secret`, `grant_type` and `refresh_token`.
//!
//! Whether the endpoint uses a non-2xx status for errors is unconfirmed, so
//! the `error` field is read whatever the status. Error table:
//!
//! | answer (any status below 500) | kind |
//! |---|---|
//! | `error: invalid_grant` | rejected, expired (refresh token invalid, expired or revoked) |
//! | `error: access_denied` | rejected, revoked (assumption: the user withdrew the grant) |
//! | `error: invalid_client`, `invalid_request`, `invalid_scope`, `unauthorized_client`, `unsupported_grant_type` | config |
//! | 429, or an API-style `{"error":{"code":"rate_limit_exceeded"}}` | rate limited (`Retry-After` if given) |
//! | 5xx, `internal_error` | transient |
//! | any other code, a 4xx without one | unrecognised: the account's own, kept verbatim |
//!
//! A success carries `refresh_expires_in` (read by the generic parser) and a
//! new refresh token, always persisted: the newer docs say the old one dies.

use futures::FutureExt;
use futures::future::BoxFuture;
use secrecy::{ExposeSecret, SecretString};
use serde_json::{Map, Value};
use url::Url;

use crate::config::ProviderSettings;
use crate::providers::token_response::{json_object, parse_grant, short};
use crate::providers::{
    FailureKind, HttpClient, HttpReply, ProviderError, RefreshRequest, TokenGrant, TokenProvider,
};

pub struct TiktokRefresh {
    token_url: Url,
    client_key: String,
    client_secret: Option<SecretString>,
    http: HttpClient,
}

impl TiktokRefresh {
    /// None when no client key is configured.
    pub fn from_settings(settings: &ProviderSettings, http: HttpClient) -> Option<Self> {
        Some(Self {
            token_url: settings.token_url.clone()?,
            client_key: settings.client_id.clone()?,
            client_secret: settings.client_secret.clone(),
            http,
        })
    }

    async fn call(&self, request: RefreshRequest<'_>) -> Result<TokenGrant, ProviderError> {
        let refresh_token = request.refresh_token.ok_or_else(|| {
            ProviderError::new(FailureKind::RejectedExpired, "no refresh token is stored")
        })?;
        let form = [
            ("client_key", self.client_key.as_str()),
            (
                "client_secret",
                self.client_secret
                    .as_ref()
                    .map(|s| s.expose_secret())
                    .unwrap_or(""),
            ),
            ("grant_type", "refresh_token"),
            ("refresh_token", refresh_token.expose()),
        ];
        let builder = self
            .http
            .inner()
            .post(self.token_url.clone())
            .header(reqwest::header::ACCEPT, "application/json")
            .form(&form);
        let reply = self.http.send(builder).await?;
        interpret(&reply)
    }
}

pub(super) fn interpret(reply: &HttpReply) -> Result<TokenGrant, ProviderError> {
    let status = reply.status;
    let retry_after = reply.retry_after();
    if status == 429 {
        return Err(
            ProviderError::new(FailureKind::RateLimited, "rate limited by TikTok")
                .with_status(status)
                .with_retry_after(retry_after),
        );
    }
    if status >= 500 {
        return Err(
            ProviderError::transient("TikTok token endpoint unavailable")
                .with_status(status)
                .with_retry_after(retry_after),
        );
    }
    let body = match json_object(reply) {
        Ok(body) => body,
        // A refusal that is not JSON (an edge proxy's HTML page) is no shape
        // TikTok documents: the account's own until several say otherwise.
        Err(_) if !(200..300).contains(&status) => {
            return Err(ProviderError::unrecognised(status, &reply.body));
        }
        Err(malformed) => return Err(malformed),
    };
    if let Some((code, description)) = tiktok_error(&body) {
        let Some(kind) = classify(&code) else {
            return Err(ProviderError::unrecognised(status, &reply.body).with_code(short(&code)));
        };
        let message = if description.is_empty() {
            code.clone()
        } else {
            short(&description)
        };
        return Err(ProviderError::new(kind, message)
            .with_status(status)
            .with_code(short(&code))
            .with_retry_after(retry_after));
    }
    if !(200..300).contains(&status) {
        return Err(ProviderError::unrecognised(status, &reply.body));
    }
    parse_grant(&body, status)
}

/// The error in either of TikTok's shapes: OAuth's `{error, error_description}`
/// or the API's `{error: {code, message}}`, where code `ok` means success.
fn tiktok_error(body: &Map<String, Value>) -> Option<(String, String)> {
    match body.get("error")? {
        Value::String(code) if !code.is_empty() => {
            let description = body
                .get("error_description")
                .and_then(Value::as_str)
                .unwrap_or("");
            Some((code.clone(), description.to_owned()))
        }
        Value::Object(error) => {
            let code = error.get("code").and_then(Value::as_str)?;
            if code.is_empty() || code == "ok" {
                return None;
            }
            let message = error.get("message").and_then(Value::as_str).unwrap_or("");
            Some((code.to_owned(), message.to_owned()))
        }
        _ => None,
    }
}

fn classify(code: &str) -> Option<FailureKind> {
    Some(match code {
        "invalid_grant" => FailureKind::RejectedExpired,
        "access_denied" => FailureKind::RejectedRevoked,
        "invalid_client"
        | "invalid_request"
        | "invalid_scope"
        | "unauthorized_client"
        | "unsupported_grant_type" => FailureKind::Config,
        "rate_limit_exceeded" => FailureKind::RateLimited,
        "internal_error" | "server_error" | "temporarily_unavailable" => FailureKind::Transient,
        _ => return None,
    })
}

impl TokenProvider for TiktokRefresh {
    fn refresh<'a>(
        &'a self,
        request: RefreshRequest<'a>,
    ) -> BoxFuture<'a, Result<TokenGrant, ProviderError>> {
        self.call(request).boxed()
    }
}
