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

use futures::FutureExt;
use futures::future::BoxFuture;

use crate::config::{ClientAuth, ProviderSettings};
use crate::providers::token_response::{json_object, oauth_error, short};
use crate::providers::{
    FailureKind, HttpClient, HttpReply, OAuth2Refresh, ProviderError, RefreshRequest, TokenGrant,
    TokenProvider,
};

const DEAD_GRANT: &str = "authorization grant or refresh token is invalid, expired or revoked";

pub struct LinkedinRefresh {
    inner: OAuth2Refresh,
}

impl LinkedinRefresh {
    /// None when no client id is configured. LinkedIn documents credentials
    /// in the body only, whatever `client_auth` says.
    pub fn from_settings(settings: &ProviderSettings, http: HttpClient) -> Option<Self> {
        let mut settings = settings.clone();
        settings.client_auth = ClientAuth::Body;
        Some(Self {
            inner: OAuth2Refresh::from_settings(&settings, http)?,
        })
    }
}

fn classify(reply: &HttpReply) -> Option<ProviderError> {
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
}
