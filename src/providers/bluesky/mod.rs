//! Bluesky: two kinds of session, told apart by the account's meta.
//!
//! **App-password sessions** (`meta.pds_host`, no `meta.auth_server`):
//! `POST https://<pds>/xrpc/com.atproto.server.refreshSession` with no body
//! and `Authorization: Bearer <refreshJwt>`; the answer is
//! `{accessJwt, refreshJwt, handle, did, ...}` and both JWTs are stored (the
//! refresh JWT rotates). Lifetimes come from the JWTs' `exp` claims: the
//! payload is decoded, never verified (the daemon is not the audience, and
//! only the PDS can verify them; an `exp` outside the lifetime range is
//! clamped and noted); a JWT whose payload or `exp` cannot be read
//! refuses the whole answer as a transient "malformed" failure. That is safe
//! on a PDS: the spent refresh JWT stays valid for a 2-hour grace period, and
//! presenting it again yields the same next session.
//!
//! The full table, with sources, is docs/platform-answers.md. In short:
//!
//! | answer | kind |
//! |---|---|
//! | 2xx with two readable JWTs | refreshed; `active: false` flags the account inactive with its `status` |
//! | `ExpiredToken` (any text, "Token has been revoked" included) | rejected, expired: the PDS says "revoked" for any refresh row it no longer holds |
//! | `InvalidToken` | rejected, expired (the PDS does not say why) |
//! | `InvalidRequest` "Could not find user info for account" | rejected, expired: the account is gone from its PDS |
//! | 401 `AccountTakedown` | rejected, revoked (by the platform) |
//! | `AccountDeactivated` | transient, the account flagged inactive: the user can reactivate |
//! | 502 `UpstreamFailure`, other 5xx, 3xx | transient |
//! | 429, `ratelimit-reset` in epoch seconds | rate limited until then |
//! | any other answer | unrecognised: the account's own, kept verbatim |
//!
//! Health check: `GET https://<pds>/xrpc/com.atproto.server.getSession` with
//! the access JWT. There `ExpiredToken`/`InvalidToken` speak of the access
//! JWT, not the session, so they are transient (a refresh decides), except
//! `AccountTakedown`, which is definitive; a session whose `active` is false
//! is healthy (its token works) with the account flagged inactive.
//!
//! **atproto OAuth sessions** (`meta.auth_server`, the authorization server's
//! issuer origin): the token endpoint is read from
//! `<issuer>/.well-known/oauth-authorization-server` (cached for an hour; the
//! metadata must name the same issuer), and refreshed with a form of
//! `grant_type=refresh_token`, `refresh_token`, `client_id` (the configured
//! client-metadata URL) and a `DPoP` proof signed with the account's ES256
//! key. `use_dpop_nonce` (400/401 with a `DPoP-Nonce` header) is retried
//! once with that nonce; nonces are remembered per server. Other answers take
//! the RFC 6749 reading (`invalid_grant` is expired, or revoked when its text
//! says so; a replayed refresh token is `invalid_grant`). These sessions have
//! no health check here: the PDS would want a DPoP-bound request of its own.
//!
//! Both hosts are the user's choice and go through `HostGuard`.
//!
//! The app-password session lives in `session`, the OAuth session in
//! `oauth`; `xrpc` reads the PDS's error answers and `jwt` the JWTs' `exp`.

mod jwt;
mod oauth;
mod session;
mod xrpc;

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Instant;

use futures::FutureExt;
use futures::future::BoxFuture;
use serde_json::Value;
use url::Url;

use crate::config::{HttpSettings, ProviderSettings};
use crate::domain::Provider;
use crate::providers::host_guard::HostGuard;
use crate::providers::{
    Checked, HttpClient, ProviderError, RefreshRequest, TokenGrant, TokenProvider,
};

pub(crate) use jwt::jwt_exp;
pub(crate) use oauth::{dpop_nonce, use_dpop_nonce};
// The answers' property tests read the two interpreters directly.
#[cfg(test)]
pub(super) use oauth::interpret_oauth;
#[cfg(test)]
pub(super) use session::interpret_session;

/// Whether an account's tokens are DPoP-bound and so need a key of its own.
pub fn needs_dpop_key(provider: Provider, meta: &Value) -> bool {
    provider == Provider::Bluesky && meta_str(meta, "auth_server").is_some()
}

fn meta_str<'a>(meta: &'a Value, key: &str) -> Option<&'a str> {
    meta.get(key)
        .and_then(Value::as_str)
        .map(str::trim)
        .filter(|s| !s.is_empty())
}

pub struct BlueskyRefresh {
    guard: HostGuard,
    http: HttpClient,
    /// atproto OAuth's client id: the client-metadata URL.
    client_id: Option<String>,
    /// Token endpoint per issuer origin, with when it was read.
    endpoints: Mutex<HashMap<String, (Url, Instant)>>,
    /// The latest `DPoP-Nonce` per token-endpoint origin.
    nonces: Mutex<HashMap<String, String>>,
}

impl BlueskyRefresh {
    /// A client of its own: its resolver refuses non-public addresses.
    pub fn from_settings(
        settings: &ProviderSettings,
        http: &HttpSettings,
    ) -> Result<Self, reqwest::Error> {
        let guard = HostGuard::new(&settings.allowed_origins);
        Ok(Self {
            http: HttpClient::with_resolver(http, guard.clone())?,
            guard,
            client_id: settings.client_id.clone(),
            endpoints: Mutex::new(HashMap::new()),
            nonces: Mutex::new(HashMap::new()),
        })
    }
}

fn host_refused(why: String) -> ProviderError {
    ProviderError::transient(format!("Bluesky host refused: {why}")).with_code("host_refused")
}

impl TokenProvider for BlueskyRefresh {
    fn refresh<'a>(
        &'a self,
        request: RefreshRequest<'a>,
    ) -> BoxFuture<'a, Result<TokenGrant, ProviderError>> {
        match meta_str(request.meta, "auth_server") {
            Some(auth_server) => self.refresh_oauth(request, auth_server).boxed(),
            None => self.refresh_session(request).boxed(),
        }
    }

    fn health_check<'a>(
        &'a self,
        request: RefreshRequest<'a>,
    ) -> Option<BoxFuture<'a, Result<Checked, ProviderError>>> {
        if meta_str(request.meta, "auth_server").is_some() {
            return None;
        }
        Some(self.check_session(request).boxed())
    }
}
