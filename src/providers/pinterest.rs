//! Pinterest (API v5): the RFC 6749 refresh at `/v5/oauth/token` with
//! `Authorization: Basic base64(app_id:secret)`, plus
//! `continuous_refresh=true` when `providers.pinterest.continuous_refresh` is
//! set (apps created before 2025-09-25). Each answer carries a new refresh
//! token, always persisted, and `refresh_token_expires_in`, read rather than
//! trusted from config.
//!
//! Pinterest's error bodies for this endpoint are undocumented. Two shapes
//! are read: RFC 6749's `{error, error_description}` (assumed for refused
//! grants) and Pinterest's API shape `{code, message}`:
//!
//! The full table, with sources, is docs/platform-answers.md. In short:
//!
//! | answer | kind |
//! |---|---|
//! | `invalid_grant` | rejected, expired |
//! | `invalid_client`, `unauthorized_client`, `invalid_request` | config |
//! | `{"code":283,"message":"The authorization grant is invalid"}` (seen with 401) | rejected, expired: a dead refresh token, the account's own |
//! | `{"code":2,"message":"Authentication failed."}` at any status | config: Pinterest's refused-client answer |
//! | any other `{code, message}`, a 4xx without a body | unrecognised: the account's own, kept verbatim, never a status change |
//! | 429 | rate limited; 5xx transient |
//!
//! A refresh token that dies without a definitive answer still ends: its
//! `refresh_token_expires_at` passes and the sweep marks the account.

use futures::FutureExt;
use futures::future::BoxFuture;
use serde_json::Value;

use crate::config::{ClientAuth, ProviderSettings};
use crate::providers::graph::as_integer;
use crate::providers::token_response::{json_object, short};
use crate::providers::{
    FailureKind, HttpClient, HttpReply, OAuth2Refresh, ProviderError, RefreshRequest, TokenGrant,
    TokenProvider,
};

pub struct PinterestRefresh {
    inner: OAuth2Refresh,
}

impl PinterestRefresh {
    /// None when no app id is configured. Pinterest documents Basic client
    /// authentication only.
    pub fn from_settings(settings: &ProviderSettings, http: HttpClient) -> Option<Self> {
        let mut settings = settings.clone();
        settings.client_auth = ClientAuth::Basic;
        let mut inner = OAuth2Refresh::from_settings(&settings, http)?;
        if settings.continuous_refresh {
            inner = inner.with_form_field("continuous_refresh", "true");
        }
        Some(Self { inner })
    }
}

/// Pinterest's code for a refresh token it will not accept.
const INVALID_GRANT: i64 = 283;
/// Pinterest's code for a refused app ("Authentication failed.").
const AUTHENTICATION_FAILED: i64 = 2;

pub(super) fn classify(reply: &HttpReply) -> Option<ProviderError> {
    if reply.status == 429 || reply.status >= 500 {
        return None;
    }
    let body = json_object(reply).ok()?;
    if body.contains_key("error") {
        return None;
    }
    let code = body.get("code").and_then(as_integer)?;
    // Pinterest's codes come with refusals; one inside a success is no
    // documented shape.
    if (200..300).contains(&reply.status) {
        return Some(
            ProviderError::unrecognised(reply.status, &reply.body).with_code(code.to_string()),
        );
    }
    let message = short(body.get("message").and_then(Value::as_str).unwrap_or(""));
    let kind = match code {
        INVALID_GRANT => FailureKind::RejectedExpired,
        AUTHENTICATION_FAILED => FailureKind::Config,
        _ => {
            return Some(
                ProviderError::unrecognised(reply.status, &reply.body).with_code(code.to_string()),
            );
        }
    };
    Some(
        ProviderError::new(kind, message)
            .with_status(reply.status)
            .with_code(code.to_string()),
    )
}

impl TokenProvider for PinterestRefresh {
    fn refresh<'a>(
        &'a self,
        request: RefreshRequest<'a>,
    ) -> BoxFuture<'a, Result<TokenGrant, ProviderError>> {
        self.inner.refresh_classified(request, classify).boxed()
    }
}
