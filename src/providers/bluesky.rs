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
//! | answer | kind |
//! |---|---|
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

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use futures::FutureExt;
use futures::future::BoxFuture;
use serde_json::{Map, Value};
use url::Url;

use crate::config::{HttpSettings, ProviderSettings};
use crate::domain::{AccessToken, Provider, RefreshToken};
use crate::providers::host_guard::HostGuard;
use crate::providers::lifetime;
use crate::providers::token_response::{json_object, short};
use crate::providers::{
    AccountState, Checked, DpopKey, FailureKind, HttpClient, HttpReply, OAuth2Refresh,
    ProviderError, RefreshRequest, TokenGrant, TokenProvider,
};

const REFRESH_PATH: &str = "/xrpc/com.atproto.server.refreshSession";
const SESSION_PATH: &str = "/xrpc/com.atproto.server.getSession";
const METADATA_PATH: &str = "/.well-known/oauth-authorization-server";
/// Authorization-server metadata rarely changes; an hour bounds how long a
/// moved token endpoint goes unnoticed.
const METADATA_TTL: Duration = Duration::from_secs(3600);

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

/// Whose token an XRPC error speaks of.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Asked {
    /// refreshSession: the refresh JWT, i.e. the session itself.
    Refresh,
    /// getSession: the access JWT, which a refresh can replace.
    Check,
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

    /// The account's PDS. Missing or refused hosts are this account's
    /// problem (the user chose them), never the app's: transient, flagged.
    fn pds(&self, meta: &Value, path: &str) -> Result<Url, ProviderError> {
        let host = meta_str(meta, "pds_host").ok_or_else(|| {
            ProviderError::transient("the account has no meta.pds_host: its PDS is unknown")
                .with_code("pds_unknown")
        })?;
        let origin = self.guard.origin(host).map_err(host_refused)?;
        origin
            .join(path)
            .map_err(|_| host_refused("cannot build the URL".into()))
    }

    async fn refresh_session(
        &self,
        request: RefreshRequest<'_>,
    ) -> Result<TokenGrant, ProviderError> {
        let refresh = request.refresh_token.ok_or_else(|| {
            ProviderError::new(FailureKind::RejectedExpired, "no refresh token is stored")
        })?;
        let url = self.pds(request.meta, REFRESH_PATH)?;
        let builder = self
            .http
            .inner()
            .post(url)
            .bearer_auth(refresh.expose())
            .header(reqwest::header::ACCEPT, "application/json");
        let reply = self.http.send(builder).await?;
        interpret_session(&reply)
    }

    async fn check_session(&self, request: RefreshRequest<'_>) -> Result<Checked, ProviderError> {
        let url = self.pds(request.meta, SESSION_PATH)?;
        let builder = self
            .http
            .inner()
            .get(url)
            .bearer_auth(request.access_token.expose())
            .header(reqwest::header::ACCEPT, "application/json");
        let reply = self.http.send(builder).await?;
        if !(200..300).contains(&reply.status) {
            return Err(xrpc_error(&reply, Asked::Check));
        }
        let body = json_object(&reply)?;
        Ok(Checked {
            account: session_state(&body),
            note: None,
        })
    }

    async fn refresh_oauth(
        &self,
        request: RefreshRequest<'_>,
        auth_server: &str,
    ) -> Result<TokenGrant, ProviderError> {
        let refresh = request.refresh_token.ok_or_else(|| {
            ProviderError::new(FailureKind::RejectedExpired, "no refresh token is stored")
        })?;
        let client_id = self.client_id.as_deref().ok_or_else(|| {
            ProviderError::new(
                FailureKind::Config,
                "providers.bluesky.client_id (the OAuth client-metadata URL) is not set",
            )
        })?;
        let key = request.dpop_key.ok_or_else(|| {
            ProviderError::transient("the account has no DPoP key for its OAuth session")
                .with_code("dpop_key_missing")
        })?;
        let issuer = self.guard.origin(auth_server).map_err(host_refused)?;
        let endpoint = self.token_endpoint(&issuer).await?;
        let server = endpoint.origin().ascii_serialization();
        let remembered = self
            .nonces
            .lock()
            .expect("nonces poisoned")
            .get(&server)
            .cloned();
        let reply = self
            .send_token_request(&endpoint, &server, key, refresh, client_id, remembered)
            .await?;
        let reply = match (use_dpop_nonce(&reply), dpop_nonce(&reply)) {
            // The server wants a (newer) nonce: one retry with it. The grant
            // was not looked at, so the refresh token is still unspent.
            (true, Some(nonce)) => {
                self.send_token_request(&endpoint, &server, key, refresh, client_id, Some(nonce))
                    .await?
            }
            _ => reply,
        };
        if use_dpop_nonce(&reply) {
            return Err(ProviderError::transient(
                "the authorization server kept asking for a DPoP nonce",
            )
            .with_status(reply.status)
            .with_code("use_dpop_nonce"));
        }
        interpret_oauth(&reply)
    }

    async fn send_token_request(
        &self,
        endpoint: &Url,
        server: &str,
        key: &DpopKey,
        refresh: &RefreshToken,
        client_id: &str,
        nonce: Option<String>,
    ) -> Result<HttpReply, ProviderError> {
        let proof = key.proof(
            "POST",
            endpoint,
            nonce.as_deref(),
            chrono::Utc::now().timestamp(),
        );
        let form = [
            ("grant_type", "refresh_token"),
            ("refresh_token", refresh.expose()),
            ("client_id", client_id),
        ];
        let builder = self
            .http
            .inner()
            .post(endpoint.clone())
            .header("DPoP", proof)
            .header(reqwest::header::ACCEPT, "application/json")
            .form(&form);
        let reply = self.http.send(builder).await?;
        // Servers hand out fresh nonces on any answer; the next call uses it.
        if let Some(nonce) = dpop_nonce(&reply) {
            self.nonces
                .lock()
                .expect("nonces poisoned")
                .insert(server.to_owned(), nonce);
        }
        Ok(reply)
    }

    /// The issuer's token endpoint, from its metadata (cached).
    async fn token_endpoint(&self, issuer: &Url) -> Result<Url, ProviderError> {
        let origin = issuer.origin().ascii_serialization();
        if let Some((url, read_at)) = self
            .endpoints
            .lock()
            .expect("endpoints poisoned")
            .get(&origin)
            && read_at.elapsed() < METADATA_TTL
        {
            return Ok(url.clone());
        }
        let url = issuer
            .join(METADATA_PATH)
            .map_err(|_| host_refused("cannot build the URL".into()))?;
        let builder = self
            .http
            .inner()
            .get(url)
            .header(reqwest::header::ACCEPT, "application/json");
        let reply = self.http.send(builder).await?;
        let unusable = |what: &str| {
            ProviderError::transient(format!("authorization server metadata: {what}"))
                .with_status(reply.status)
                .with_code("metadata_unusable")
        };
        if !(200..300).contains(&reply.status) {
            return Err(unusable("not available").with_retry_after(reply.retry_after()));
        }
        let body = json_object(&reply)?;
        let named = body.get("issuer").and_then(Value::as_str);
        if named.map(|s| s.trim_end_matches('/')) != Some(origin.as_str()) {
            return Err(unusable("it names another issuer"));
        }
        let endpoint = body
            .get("token_endpoint")
            .and_then(Value::as_str)
            .ok_or_else(|| unusable("no token_endpoint"))?;
        let endpoint = self.guard.endpoint(endpoint).map_err(host_refused)?;
        self.endpoints
            .lock()
            .expect("endpoints poisoned")
            .insert(origin, (endpoint.clone(), Instant::now()));
        Ok(endpoint)
    }
}

fn host_refused(why: String) -> ProviderError {
    ProviderError::transient(format!("Bluesky host refused: {why}")).with_code("host_refused")
}

fn dpop_nonce(reply: &HttpReply) -> Option<String> {
    reply
        .headers
        .get("dpop-nonce")
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|v| !v.is_empty())
        .map(str::to_owned)
}

fn use_dpop_nonce(reply: &HttpReply) -> bool {
    matches!(reply.status, 400 | 401)
        && json_object(reply)
            .ok()
            .is_some_and(|b| b.get("error").and_then(Value::as_str) == Some("use_dpop_nonce"))
}

pub(super) fn interpret_oauth(reply: &HttpReply) -> Result<TokenGrant, ProviderError> {
    if reply.status == 429 {
        return Err(ProviderError::new(
            FailureKind::RateLimited,
            "rate limited by the authorization server",
        )
        .with_status(reply.status)
        .with_retry_after(rate_limit_reset(reply).or_else(|| reply.retry_after())));
    }
    OAuth2Refresh::interpret(reply)
}

/// A refreshSession answer.
pub(super) fn interpret_session(reply: &HttpReply) -> Result<TokenGrant, ProviderError> {
    if !(200..300).contains(&reply.status) {
        return Err(xrpc_error(reply, Asked::Refresh));
    }
    let body = json_object(reply)?;
    let malformed = |what: String| {
        ProviderError::transient(format!("malformed session: {what}"))
            .with_status(reply.status)
            .with_code("malformed")
    };
    let access = jwt_field(&body, "accessJwt").map_err(&malformed)?;
    let refresh = jwt_field(&body, "refreshJwt").map_err(&malformed)?;
    let now = chrono::Utc::now().timestamp();
    // A JWT that cannot be read is garbage and refuses the answer (see the
    // module docs); an odd `exp` is clamped and noted.
    let expires = remaining("accessJwt", access, now).map_err(&malformed)?;
    let refresh_expires = remaining("refreshJwt", refresh, now).map_err(&malformed)?;
    Ok(TokenGrant {
        access_token: AccessToken::new(access),
        refresh_token: Some(RefreshToken::new(refresh)),
        expires_in: expires.value,
        refresh_token_expires_in: refresh_expires.value,
        scopes: None,
        notes: [expires.oddity, refresh_expires.oddity]
            .into_iter()
            .flatten()
            .collect(),
        account: session_state(&body),
    })
}

/// A session's `active` and `status` (com.atproto.server.defs): `active:
/// false` means the account cannot act (deactivated by its owner, suspended,
/// taken down); an answer without `active` says nothing.
fn session_state(body: &Map<String, Value>) -> AccountState {
    match body.get("active") {
        Some(Value::Bool(true)) => AccountState::Active,
        Some(Value::Bool(false)) => {
            let status = body
                .get("status")
                .and_then(Value::as_str)
                .map(short)
                .filter(|s| !s.is_empty())
                .unwrap_or_else(|| "no status given".into());
            AccountState::Inactive(format!("inactive on its PDS: {status}"))
        }
        _ => AccountState::Unreported,
    }
}

fn jwt_field<'a>(body: &'a Map<String, Value>, key: &str) -> Result<&'a str, String> {
    match body.get(key) {
        Some(Value::String(s)) if !s.trim().is_empty() => Ok(s),
        Some(Value::String(_)) => Err(format!("{key} is empty")),
        Some(_) => Err(format!("{key} is not a string")),
        None => Err(format!("{key} is missing")),
    }
}

/// Time left until a JWT's `exp`, clamped to the lifetime range. A token
/// already expired on arrival refuses the answer like an unreadable one
/// (safe here: the PDS honours the spent refresh JWT for its grace period).
fn remaining(name: &str, jwt: &str, now: i64) -> Result<lifetime::Stated, String> {
    let exp = jwt_exp(jwt).map_err(|why| format!("{name} {why}"))?;
    if exp <= now {
        return Err(format!("{name} has already expired"));
    }
    Ok(lifetime::until_epoch(
        &format!("{name} exp"),
        exp as f64,
        now,
    ))
}

/// The `exp` claim (seconds since the epoch) of a JWT, read without
/// verifying it. Errors say what was wrong, never what the token holds.
pub(crate) fn jwt_exp(jwt: &str) -> Result<i64, String> {
    let mut parts = jwt.split('.');
    let (Some(_), Some(payload), Some(_), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err("is not a JWT (three dot-separated parts)".into());
    };
    let bytes = URL_SAFE_NO_PAD
        .decode(payload.trim_end_matches('='))
        .map_err(|_| "payload is not base64url".to_owned())?;
    let claims: Value =
        serde_json::from_slice(&bytes).map_err(|_| "payload is not JSON".to_owned())?;
    let exp = claims
        .as_object()
        .ok_or_else(|| "payload is not a JSON object".to_owned())?
        .get("exp")
        .ok_or_else(|| "has no exp claim".to_owned())?;
    // NumericDate may carry a fraction (RFC 7519 2); whole seconds suffice.
    match exp.as_i64() {
        Some(secs) => Ok(secs),
        None => exp
            .as_f64()
            .filter(|f| f.is_finite() && *f > 0.0 && *f < i64::MAX as f64)
            .map(|f| f.floor() as i64)
            .ok_or_else(|| "exp is not a number of seconds".into()),
    }
}

/// An XRPC error answer: `{"error": "<Name>", "message": "..."}`.
fn xrpc_error(reply: &HttpReply, asked: Asked) -> ProviderError {
    let status = reply.status;
    let body = json_object(reply).ok();
    let field = |key: &str| {
        body.as_ref()
            .and_then(|b| b.get(key))
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
    };
    let code = field("error");
    let message = field("message");
    let said = message.as_deref().map(short);
    let with_code = |error: ProviderError| match &code {
        Some(code) => error.with_code(short(code)),
        None => error,
    };
    if status == 429 {
        return with_code(
            ProviderError::new(FailureKind::RateLimited, "rate limited by the PDS")
                .with_status(status)
                .with_retry_after(rate_limit_reset(reply).or_else(|| reply.retry_after())),
        );
    }
    let gone = message
        .as_deref()
        .is_some_and(|m| m.starts_with("Could not find user info for account"));
    let (kind, default_text) = match code.as_deref() {
        // The PDS says "Token has been revoked" for any refresh row it no
        // longer holds (spent past its grace, app password deleted, password
        // changed): the session is gone, not necessarily withdrawn.
        Some("ExpiredToken") if asked == Asked::Refresh => {
            (FailureKind::RejectedExpired, "token expired")
        }
        Some("InvalidToken") if asked == Asked::Refresh => {
            (FailureKind::RejectedExpired, "token invalid")
        }
        Some("ExpiredToken" | "InvalidToken") => {
            // This account's access JWT, not the PDS: never the platform's.
            let text = said.unwrap_or_else(|| "the access token was refused".into());
            return with_code(
                ProviderError::transient(format!("{text}; a refresh decides"))
                    .with_status(status)
                    .account_scoped(),
            );
        }
        // The account was deleted on its PDS: nothing left to refresh.
        Some("InvalidRequest") if gone => (FailureKind::RejectedExpired, "account not found"),
        Some("AccountTakedown") => (FailureKind::RejectedRevoked, "account taken down"),
        Some("AccountDeactivated") => {
            let text = said.unwrap_or_else(|| "account deactivated by its owner".into());
            return with_code(
                ProviderError::transient(text)
                    .with_status(status)
                    .with_retry_after(reply.retry_after())
                    .inactive(),
            );
        }
        Some("UpstreamFailure") => (FailureKind::Transient, "upstream failure"),
        _ if (300..400).contains(&status) => (FailureKind::Transient, "redirect refused"),
        _ if status >= 500 => (FailureKind::Transient, "PDS unavailable"),
        _ => {
            let error = ProviderError::unrecognised(status, &reply.body);
            return match &code {
                Some(code) => error.with_code(short(code)),
                None => error,
            };
        }
    };
    let text = match said {
        Some(said) => said,
        None if code.is_none() => format!("{default_text} ({} bytes)", reply.body.len()),
        None => default_text.to_owned(),
    };
    with_code(
        ProviderError::new(kind, text)
            .with_status(status)
            .with_retry_after(reply.retry_after()),
    )
}

/// `ratelimit-reset`: the Unix time (seconds) at which the window resets.
fn rate_limit_reset(reply: &HttpReply) -> Option<Duration> {
    let value = reply.headers.get("ratelimit-reset")?.to_str().ok()?;
    crate::providers::rate_limit::epoch_reset(value, chrono::Utc::now())
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

#[cfg(test)]
mod tests {
    use super::*;

    fn jwt(payload: &str) -> String {
        format!(
            "eyJhbGciOiJIUzI1NiJ9.{}.c2ln",
            URL_SAFE_NO_PAD.encode(payload)
        )
    }

    #[test]
    fn exp_is_read_from_the_payload() {
        assert_eq!(
            jwt_exp(&jwt(r#"{"exp":1700000000,"sub":"did:plc:x"}"#)),
            Ok(1_700_000_000)
        );
        assert_eq!(jwt_exp(&jwt(r#"{"exp":1700000000.75}"#)), Ok(1_700_000_000));
        // Padded base64url is tolerated.
        let padded = format!(
            "h.{}.s",
            base64::engine::general_purpose::URL_SAFE.encode(r#"{"exp":12}"#)
        );
        assert_eq!(jwt_exp(&padded), Ok(12));
    }

    #[test]
    fn bad_jwts_are_errors_that_do_not_echo_the_token() {
        let secret = "sekrit-token-value";
        for bad in [
            secret.to_owned(),
            format!("a.{secret}.c"),
            "a.b.c.d".to_owned(),
            jwt("not json"),
            jwt("[1,2]"),
            jwt(r#"{"sub":"x"}"#),
            jwt(r#"{"exp":"soon"}"#),
            jwt(r#"{"exp":-1.5}"#),
            jwt(r#"{"exp":1e400}"#),
            "..".to_owned(),
            format!("a.{}.c", URL_SAFE_NO_PAD.encode([0xff, 0xfe])),
        ] {
            let err = jwt_exp(&bad).unwrap_err();
            assert!(!err.contains(secret), "{err}");
        }
    }

    #[test]
    fn far_expiries_are_clamped_and_expired_ones_refused() {
        let now = 1_700_000_000;
        assert!(remaining("accessJwt", &jwt(r#"{"exp":1700000000}"#), now).is_err());
        assert_eq!(
            remaining("accessJwt", &jwt(r#"{"exp":1700000060}"#), now),
            Ok(lifetime::Stated {
                value: Some(Duration::from_secs(60)),
                oddity: None
            })
        );
        for far in [r#"{"exp":9223372036854775807}"#, r#"{"exp":8.2e12}"#] {
            let far = remaining("accessJwt", &jwt(far), now).unwrap();
            assert_eq!(far.value, Some(lifetime::MAX));
        }
        assert!(remaining("accessJwt", &jwt(r#"{"exp":-9223372036854775808}"#), now).is_err());
        let unreadable = remaining("refreshJwt", "not-a-jwt", now).unwrap_err();
        assert!(unreadable.starts_with("refreshJwt is not a JWT"));
    }
}
