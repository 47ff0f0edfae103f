//! The atproto OAuth authorization server: its metadata and a token
//! endpoint that demands DPoP proofs and nonces and rotates refresh tokens
//! strictly, and the controls the tests turn.

use std::collections::HashMap;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use super::authorization::{AUTHORIZE_PATH, PAR_PATH, redeem, with_nonce};
use super::dpop::verify_proof;
use super::{FakeBluesky, Family, Shared};
use crate::server::token;

pub(super) const TOKEN_PATH: &str = "/oauth/token";

/// How one OAuth session behaves.
#[derive(Clone, Debug)]
pub struct OAuthSessionSpec {
    pub access_lifetime: u64,
    pub revoke_after: Option<u32>,
    pub fail_every: Option<u32>,
}

impl Default for OAuthSessionSpec {
    fn default() -> Self {
        Self {
            access_lifetime: 3600,
            revoke_after: None,
            fail_every: None,
        }
    }
}

#[derive(Clone, Debug)]
pub struct IssuedOAuth {
    pub did: String,
    pub access_token: String,
    pub refresh_token: String,
    pub expires_in: u64,
}

impl FakeBluesky {
    /// An OAuth session bound to the public key `jwk` (kty EC, crv P-256).
    pub fn issue_oauth(&self, spec: OAuthSessionSpec, jwk: &Value) -> IssuedOAuth {
        let bound = (
            jwk["x"].as_str().unwrap_or_default().to_owned(),
            jwk["y"].as_str().unwrap_or_default().to_owned(),
        );
        let mut inner = self.shared.lock();
        let family = inner.families.len();
        let did = format!("did:plc:oauth{family:06}{:08x}", rand::random::<u32>());
        let expires_in = spec.access_lifetime;
        let client_id = self.shared.client_id.clone();
        inner.families.push(Family {
            did: did.clone(),
            client_id,
            scope: "atproto transition:generic".into(),
            bound,
            revoked: false,
            refreshes: 0,
            calls: 0,
            spec,
        });
        let refresh_token = token("bsky_rt");
        inner
            .oauth_tokens
            .insert(refresh_token.clone(), (family, true));
        IssuedOAuth {
            did,
            access_token: token("bsky_at"),
            refresh_token,
            expires_in,
        }
    }

    pub fn is_live_oauth(&self, refresh_token: &str) -> bool {
        let inner = self.shared.lock();
        inner
            .oauth_tokens
            .get(refresh_token)
            .is_some_and(|(family, live)| *live && !inner.families[*family].revoked)
    }

    pub fn revoke_oauth(&self, refresh_token: &str) {
        let mut inner = self.shared.lock();
        if let Some((family, _)) = inner.oauth_tokens.get(refresh_token).copied() {
            inner.families[family].revoked = true;
        }
    }

    /// Starts demanding a new nonce, as servers do every few minutes.
    pub fn rotate_nonce(&self) {
        self.shared.lock().nonce = token("nonce");
    }

    /// Token endpoint calls, nonce challenges included.
    pub fn token_calls(&self) -> u32 {
        self.shared.lock().token_calls
    }

    pub fn nonce_challenges(&self) -> u32 {
        self.shared.lock().nonce_challenges
    }

    /// Why DPoP proofs were refused, oldest first.
    pub fn proof_rejections(&self) -> Vec<String> {
        self.shared.lock().proof_rejections.clone()
    }
}

pub(super) async fn metadata(State(shared): State<Arc<Shared>>) -> Response {
    if let Some(response) = shared.script.next() {
        return response;
    }
    let origin = shared.origin();
    axum::Json(json!({
        "issuer": origin,
        "authorization_endpoint": format!("{origin}{AUTHORIZE_PATH}"),
        "token_endpoint": format!("{origin}{TOKEN_PATH}"),
        "pushed_authorization_request_endpoint": format!("{origin}{PAR_PATH}"),
        "require_pushed_authorization_requests": true,
        "authorization_response_iss_parameter_supported": true,
        "client_id_metadata_document_supported": true,
        "response_types_supported": ["code"],
        "response_modes_supported": ["query", "fragment"],
        "code_challenge_methods_supported": ["S256"],
        "grant_types_supported": ["authorization_code", "refresh_token"],
        "token_endpoint_auth_methods_supported": ["none", "private_key_jwt"],
        "token_endpoint_auth_signing_alg_values_supported": ["ES256"],
        "dpop_signing_alg_values_supported": ["ES256"],
        "scopes_supported": ["atproto", "transition:generic"],
        "protected_resources": [origin],
    }))
    .into_response()
}

pub(super) fn oauth_error(status: StatusCode, code: &str, description: &str) -> Response {
    (
        status,
        axum::Json(json!({"error": code, "error_description": description})),
    )
        .into_response()
}

pub(super) async fn token_endpoint(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let mut inner = shared.lock();
    inner.token_calls += 1;
    if let Some(response) = shared.script.next() {
        return response;
    }
    let htu = format!("{}{TOKEN_PATH}", shared.origin());
    let proof = headers.get("dpop").and_then(|v| v.to_str().ok());
    let verified = match proof {
        None => Err("no DPoP proof".to_owned()),
        Some(proof) => verify_proof(&mut inner, proof, &htu),
    };
    let proof = match verified {
        Ok(proof) => proof,
        Err(why) => {
            inner.proof_rejections.push(why.clone());
            return oauth_error(StatusCode::BAD_REQUEST, "invalid_dpop_proof", &why);
        }
    };
    let nonce = inner.nonce.clone();
    let with_nonce = |response: Response| with_nonce(response, &nonce);
    if proof.nonce.as_deref() != Some(nonce.as_str()) {
        inner.nonce_challenges += 1;
        return with_nonce(oauth_error(
            StatusCode::BAD_REQUEST,
            "use_dpop_nonce",
            "Authorization server requires nonce in DPoP proof",
        ));
    }
    let form: HashMap<String, String> = url::form_urlencoded::parse(&body).into_owned().collect();
    let client_id = form.get("client_id").cloned().unwrap_or_default();
    if client_id != shared.client_id && !inner.known_clients.contains(&client_id) {
        return with_nonce(oauth_error(
            StatusCode::BAD_REQUEST,
            "invalid_client",
            "Unknown client",
        ));
    }
    match form.get("grant_type").map(String::as_str) {
        Some("refresh_token") => {}
        Some("authorization_code") => {
            return with_nonce(match redeem(&mut inner, &form, &proof.key) {
                Ok(redeemed) => {
                    let issued = issue_family(&mut inner, redeemed, proof.key);
                    axum::Json(issued).into_response()
                }
                Err(why) => oauth_error(StatusCode::BAD_REQUEST, "invalid_grant", why),
            });
        }
        _ => {
            return with_nonce(oauth_error(
                StatusCode::BAD_REQUEST,
                "unsupported_grant_type",
                "grant_type must be authorization_code or refresh_token",
            ));
        }
    }
    let presented = form.get("refresh_token").cloned().unwrap_or_default();
    let Some((index, live)) = inner.oauth_tokens.get(&presented).copied() else {
        return with_nonce(oauth_error(
            StatusCode::BAD_REQUEST,
            "invalid_grant",
            "Invalid refresh token",
        ));
    };
    inner.families[index].calls += 1;
    if inner.families[index].client_id != client_id {
        return with_nonce(oauth_error(
            StatusCode::BAD_REQUEST,
            "invalid_grant",
            "client_id does not match the session's client",
        ));
    }
    if inner.families[index].revoked {
        return with_nonce(oauth_error(
            StatusCode::BAD_REQUEST,
            "invalid_grant",
            "Token has been revoked",
        ));
    }
    // A session is bound to the key it was issued for (assumed answer: the
    // grant cannot be used, so invalid_grant).
    if proof.key != inner.families[index].bound {
        return with_nonce(oauth_error(
            StatusCode::BAD_REQUEST,
            "invalid_grant",
            "DPoP key does not match the session's key",
        ));
    }
    if !live {
        inner.families[index].revoked = true;
        inner.reuse_detected += 1;
        return with_nonce(oauth_error(
            StatusCode::BAD_REQUEST,
            "invalid_grant",
            "refresh token replayed",
        ));
    }
    let family = &mut inner.families[index];
    if family
        .spec
        .fail_every
        .is_some_and(|n| n > 0 && family.calls.is_multiple_of(n))
    {
        return with_nonce(
            (
                StatusCode::SERVICE_UNAVAILABLE,
                [(header::RETRY_AFTER, "2")],
                "unavailable",
            )
                .into_response(),
        );
    }
    if family
        .spec
        .revoke_after
        .is_some_and(|n| family.refreshes >= n)
    {
        family.revoked = true;
        return with_nonce(oauth_error(
            StatusCode::BAD_REQUEST,
            "invalid_grant",
            "Token has been revoked",
        ));
    }
    family.refreshes += 1;
    let (did, lifetime, scope) = (
        family.did.clone(),
        family.spec.access_lifetime,
        family.scope.clone(),
    );
    let next = token("bsky_rt");
    inner.oauth_tokens.insert(presented, (index, false));
    inner.oauth_tokens.insert(next.clone(), (index, true));
    with_nonce(
        axum::Json(json!({
            "access_token": token("bsky_at"),
            "token_type": "DPoP",
            "expires_in": lifetime,
            "refresh_token": next,
            "scope": scope,
            "sub": did,
        }))
        .into_response(),
    )
}

/// A session for a redeemed code, bound to the key that redeemed it.
fn issue_family(
    inner: &mut super::Inner,
    redeemed: super::authorization::Redeemed,
    key: (String, String),
) -> Value {
    let family = inner.families.len();
    let spec = OAuthSessionSpec::default();
    let lifetime = spec.access_lifetime;
    inner.families.push(Family {
        did: redeemed.did.clone(),
        client_id: redeemed.client_id,
        scope: redeemed.scope.clone(),
        bound: key,
        revoked: false,
        refreshes: 0,
        calls: 0,
        spec,
    });
    let refresh_token = token("bsky_rt");
    inner
        .oauth_tokens
        .insert(refresh_token.clone(), (family, true));
    json!({
        "access_token": token("bsky_at"),
        "token_type": "DPoP",
        "expires_in": lifetime,
        "refresh_token": refresh_token,
        "scope": redeemed.scope,
        "sub": redeemed.did,
    })
}
