//! atproto OAuth sessions: the token endpoint read from the authorization
//! server's metadata, and a DPoP-bound refresh-token grant with its nonce.

use std::time::{Duration, Instant};

use serde_json::Value;
use url::Url;

use super::xrpc::rate_limit_reset;
use super::{BlueskyRefresh, host_refused};
use crate::domain::RefreshToken;
use crate::providers::token_response::json_object;
use crate::providers::{
    DpopKey, FailureKind, HttpReply, OAuth2Refresh, ProviderError, RefreshRequest, TokenGrant,
};

const METADATA_PATH: &str = "/.well-known/oauth-authorization-server";
/// Authorization-server metadata rarely changes; an hour bounds how long a
/// moved token endpoint goes unnoticed.
const METADATA_TTL: Duration = Duration::from_secs(3600);

impl BlueskyRefresh {
    pub(super) async fn refresh_oauth(
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

/// The server's latest `DPoP-Nonce`, on any answer.
pub(crate) fn dpop_nonce(reply: &HttpReply) -> Option<String> {
    reply
        .headers
        .get("dpop-nonce")
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|v| !v.is_empty())
        .map(str::to_owned)
}

/// A `use_dpop_nonce` error (RFC 9449 section 8): retry with the nonce.
pub(crate) fn use_dpop_nonce(reply: &HttpReply) -> bool {
    matches!(reply.status, 400 | 401)
        && json_object(reply)
            .ok()
            .is_some_and(|b| b.get("error").and_then(Value::as_str) == Some("use_dpop_nonce"))
}

pub(in crate::providers) fn interpret_oauth(
    reply: &HttpReply,
) -> Result<TokenGrant, ProviderError> {
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
