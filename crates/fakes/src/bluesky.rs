//! A Bluesky PDS and an atproto OAuth authorization server on one loopback
//! origin (as a self-hosted PDS is its own authorization server).
//!
//! PDS: `POST /xrpc/com.atproto.server.refreshSession` and
//! `GET /xrpc/com.atproto.server.getSession` with bearer JWTs; answers
//! `{accessJwt, refreshJwt, handle, did, active}`; errors as XRPC
//! `{error, message}`: 400 `ExpiredToken` ("Token has expired" / "Token has
//! been revoked"), 400 `InvalidToken`, 401 `AccountTakedown`, 502
//! `UpstreamFailure`. A deactivated account's session still refreshes, with
//! `"active": false, "status": "deactivated"` in the answer, as the reference
//! PDS does. Refresh JWTs
//! rotate; by default a spent one presented again revokes the session
//! (strict, so a client that replays is caught), or, with a reuse grace, it
//! yields the same next session, as the reference PDS does for 2 hours.
//!
//! Authorization server: `/.well-known/oauth-authorization-server` and
//! `POST /oauth/token`, which verifies the DPoP proof (ES256 signature by the
//! header's JWK, typ, htm, htu, iat, jti not seen before, and the current
//! nonce, demanded with `use_dpop_nonce` and a `DPoP-Nonce` header), binds
//! each session to its key, and rotates refresh tokens strictly: a replay
//! revokes the session.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use p256::ecdsa::signature::Verifier;
use p256::ecdsa::{Signature, VerifyingKey};
use serde_json::{Value, json};
use url::Url;

use super::ScriptedResponse;
use super::server::{Running, Script, token};

const TOKEN_PATH: &str = "/oauth/token";
/// How far a proof's `iat` may stray from the server's clock.
const IAT_SKEW_SECS: i64 = 60;

/// How one app-password session behaves.
#[derive(Clone, Debug)]
pub struct SessionSpec {
    /// Seconds until an access JWT's `exp`.
    pub access_lifetime: i64,
    /// Seconds until a refresh JWT's `exp`; zero or less mints it expired.
    pub refresh_lifetime: i64,
    /// The session is revoked (app password deleted) after this many refreshes.
    pub revoke_after: Option<u32>,
    /// Every n-th refresh call of the session fails with 502 UpstreamFailure.
    pub fail_every: Option<u32>,
}

impl Default for SessionSpec {
    fn default() -> Self {
        Self {
            access_lifetime: 2 * 3600,
            refresh_lifetime: 90 * 86_400,
            revoke_after: None,
            fail_every: None,
        }
    }
}

#[derive(Clone, Debug)]
pub struct IssuedSession {
    pub did: String,
    pub access_jwt: String,
    pub refresh_jwt: String,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BlueskyAccountState {
    Active,
    TakenDown,
    Deactivated,
}

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

struct Session {
    did: String,
    state: BlueskyAccountState,
    revoked: bool,
    refreshes: u32,
    calls: u32,
    spec: SessionSpec,
}

struct RefreshJwt {
    session: usize,
    exp: i64,
    /// When it was spent, and the refresh JWT it was exchanged for.
    spent: Option<(Instant, String)>,
}

struct Family {
    did: String,
    /// The public key (JWK x, y) the session is bound to.
    bound: (String, String),
    revoked: bool,
    refreshes: u32,
    calls: u32,
    spec: OAuthSessionSpec,
}

#[derive(Default)]
struct Inner {
    sessions: Vec<Session>,
    refresh_jwts: HashMap<String, RefreshJwt>,
    access_jwts: HashMap<String, (usize, i64)>,
    reuse_grace: Option<Duration>,
    families: Vec<Family>,
    /// refresh token -> (family, still live)
    oauth_tokens: HashMap<String, (usize, bool)>,
    nonce: String,
    seen_jti: HashSet<String>,
    nonce_challenges: u32,
    proof_rejections: Vec<String>,
    reuse_detected: u64,
    pds_calls: u32,
    token_calls: u32,
}

struct Shared {
    client_id: String,
    origin: OnceLock<String>,
    inner: Mutex<Inner>,
    script: Script,
}

impl Shared {
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().expect("fake state poisoned")
    }

    fn origin(&self) -> &str {
        self.origin.get().map(String::as_str).unwrap_or("")
    }
}

pub struct FakeBluesky {
    server: Running,
    shared: Arc<Shared>,
}

impl FakeBluesky {
    /// `client_id` is the OAuth client-metadata URL the server expects.
    pub async fn start(client_id: &str) -> std::io::Result<Self> {
        let shared = Arc::new(Shared {
            client_id: client_id.to_owned(),
            origin: OnceLock::new(),
            inner: Mutex::new(Inner {
                nonce: token("nonce"),
                ..Inner::default()
            }),
            script: Script::default(),
        });
        let app = Router::new()
            .route(
                "/xrpc/com.atproto.server.refreshSession",
                axum::routing::post(refresh_session),
            )
            .route(
                "/xrpc/com.atproto.server.getSession",
                axum::routing::get(get_session),
            )
            .route(
                "/.well-known/oauth-authorization-server",
                axum::routing::get(metadata),
            )
            .route(TOKEN_PATH, axum::routing::post(token_endpoint))
            .with_state(shared.clone());
        let server = Running::start(app).await?;
        let _ = shared.origin.set(format!("http://{}", server.addr));
        Ok(Self { server, shared })
    }

    /// `http://127.0.0.1:<port>`: the PDS host and the issuer.
    pub fn origin(&self) -> String {
        self.shared.origin().to_owned()
    }

    pub fn token_endpoint(&self) -> Url {
        self.server.url(TOKEN_PATH)
    }

    /// With a grace, a spent refresh JWT presented again within it yields
    /// the same next session (the reference PDS); without (the default), it
    /// revokes the session.
    pub fn set_reuse_grace(&self, grace: Option<Duration>) {
        self.shared.lock().reuse_grace = grace;
    }

    /// A session created with an app password (`createSession`).
    pub fn issue_session(&self, spec: SessionSpec) -> IssuedSession {
        let mut inner = self.shared.lock();
        let index = inner.sessions.len();
        let did = format!("did:plc:fake{index:06}{:08x}", rand::random::<u32>());
        inner.sessions.push(Session {
            did: did.clone(),
            state: BlueskyAccountState::Active,
            revoked: false,
            refreshes: 0,
            calls: 0,
            spec,
        });
        let (access_jwt, refresh_jwt) = mint_session(&mut inner, index);
        IssuedSession {
            did,
            access_jwt,
            refresh_jwt,
        }
    }

    pub fn set_account_state(&self, did: &str, state: BlueskyAccountState) {
        let mut inner = self.shared.lock();
        for session in inner.sessions.iter_mut().filter(|s| s.did == did) {
            session.state = state;
        }
    }

    /// Revokes the session of a refresh JWT (its app password was deleted).
    pub fn revoke_session(&self, refresh_jwt: &str) {
        let mut inner = self.shared.lock();
        if let Some(session) = inner.refresh_jwts.get(refresh_jwt).map(|r| r.session) {
            inner.sessions[session].revoked = true;
        }
    }

    /// Whether this refresh JWT would be accepted now without a replay.
    pub fn is_live_session(&self, refresh_jwt: &str) -> bool {
        let inner = self.shared.lock();
        inner.refresh_jwts.get(refresh_jwt).is_some_and(|r| {
            r.spent.is_none()
                && r.exp > chrono::Utc::now().timestamp()
                && !inner.sessions[r.session].revoked
        })
    }

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
        inner.families.push(Family {
            did: did.clone(),
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

    /// Queues a canned answer for the next call to any route.
    pub fn script_next(&self, response: ScriptedResponse) {
        self.shared.script.push(response);
    }

    /// Spent refresh tokens (either kind) presented again.
    pub fn reuse_detected(&self) -> u64 {
        self.shared.lock().reuse_detected
    }

    /// refreshSession and getSession calls.
    pub fn pds_calls(&self) -> u32 {
        self.shared.lock().pds_calls
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

/// A JWT shaped like the PDS's (HS256, which only the PDS could verify;
/// the signature here is random bytes).
fn jwt(typ: &str, claims: Value) -> String {
    let header = json!({"typ": typ, "alg": "HS256"});
    format!(
        "{}.{}.{}",
        URL_SAFE_NO_PAD.encode(header.to_string()),
        URL_SAFE_NO_PAD.encode(claims.to_string()),
        URL_SAFE_NO_PAD.encode(rand::random::<[u8; 32]>())
    )
}

fn mint_session(inner: &mut Inner, index: usize) -> (String, String) {
    let now = chrono::Utc::now().timestamp();
    let session = &inner.sessions[index];
    let (did, spec) = (session.did.clone(), session.spec.clone());
    let access_exp = now + spec.access_lifetime;
    let refresh_exp = now + spec.refresh_lifetime;
    let access = jwt(
        "at+jwt",
        json!({"scope": "com.atproto.appPass", "sub": did, "aud": "did:web:pds.fake",
               "iat": now, "exp": access_exp}),
    );
    let refresh = jwt(
        "refresh+jwt",
        json!({"scope": "com.atproto.refresh", "sub": did, "aud": "did:web:pds.fake",
               "jti": token("jti"), "iat": now, "exp": refresh_exp}),
    );
    inner
        .access_jwts
        .insert(access.clone(), (index, access_exp));
    inner.refresh_jwts.insert(
        refresh.clone(),
        RefreshJwt {
            session: index,
            exp: refresh_exp,
            spent: None,
        },
    );
    (access, refresh)
}

fn xrpc_error(status: StatusCode, error: &str, message: &str) -> Response {
    (
        status,
        axum::Json(json!({"error": error, "message": message})),
    )
        .into_response()
}

fn bearer(headers: &HeaderMap) -> Option<&str> {
    headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
}

fn session_body(inner: &Inner, index: usize, access: &str, refresh: &str) -> Response {
    let session = &inner.sessions[index];
    let did = &session.did;
    let mut body = json!({
        "accessJwt": access,
        "refreshJwt": refresh,
        "handle": format!("{}.fake.test", &did[8..]),
        "did": did,
        "active": true,
    });
    if session.state == BlueskyAccountState::Deactivated {
        body["active"] = json!(false);
        body["status"] = json!("deactivated");
    }
    axum::Json(body).into_response()
}

async fn refresh_session(State(shared): State<Arc<Shared>>, headers: HeaderMap) -> Response {
    let mut inner = shared.lock();
    inner.pds_calls += 1;
    if let Some(response) = shared.script.next() {
        return response;
    }
    let Some(presented) = bearer(&headers) else {
        return xrpc_error(
            StatusCode::UNAUTHORIZED,
            "AuthMissing",
            "Authentication Required",
        );
    };
    let Some(record) = inner.refresh_jwts.get(presented) else {
        return xrpc_error(
            StatusCode::BAD_REQUEST,
            "InvalidToken",
            "Token could not be verified",
        );
    };
    let (index, exp, spent) = (record.session, record.exp, record.spent.clone());
    let now = chrono::Utc::now().timestamp();
    inner.sessions[index].calls += 1;
    let session = &inner.sessions[index];
    if session.revoked {
        return xrpc_error(
            StatusCode::BAD_REQUEST,
            "ExpiredToken",
            "Token has been revoked",
        );
    }
    if exp <= now {
        return xrpc_error(StatusCode::BAD_REQUEST, "ExpiredToken", "Token has expired");
    }
    match session.state {
        BlueskyAccountState::TakenDown => {
            return xrpc_error(
                StatusCode::UNAUTHORIZED,
                "AccountTakedown",
                "Account has been taken down",
            );
        }
        // The reference PDS still refreshes a deactivated account's session
        // and says so in the answer (posting is what fails, 401
        // `AccountDeactivated`).
        BlueskyAccountState::Deactivated | BlueskyAccountState::Active => {}
    }
    if let Some((spent_at, next)) = spent {
        inner.reuse_detected += 1;
        return match inner.reuse_grace {
            Some(grace) if spent_at.elapsed() < grace => {
                // The same next refresh JWT, with a fresh access JWT.
                let (access, _) = mint_session(&mut inner, index);
                session_body(&inner, index, &access, &next)
            }
            Some(_) => xrpc_error(StatusCode::BAD_REQUEST, "ExpiredToken", "Token has expired"),
            None => {
                inner.sessions[index].revoked = true;
                xrpc_error(
                    StatusCode::BAD_REQUEST,
                    "ExpiredToken",
                    "Token has been revoked",
                )
            }
        };
    }
    let session = &inner.sessions[index];
    if session
        .spec
        .fail_every
        .is_some_and(|n| n > 0 && session.calls.is_multiple_of(n))
    {
        return xrpc_error(
            StatusCode::BAD_GATEWAY,
            "UpstreamFailure",
            "Upstream Failure",
        );
    }
    if session
        .spec
        .revoke_after
        .is_some_and(|n| session.refreshes >= n)
    {
        inner.sessions[index].revoked = true;
        return xrpc_error(
            StatusCode::BAD_REQUEST,
            "ExpiredToken",
            "Token has been revoked",
        );
    }
    let (access, refresh) = mint_session(&mut inner, index);
    inner.sessions[index].refreshes += 1;
    if let Some(record) = inner.refresh_jwts.get_mut(presented) {
        record.spent = Some((Instant::now(), refresh.clone()));
    }
    session_body(&inner, index, &access, &refresh)
}

async fn get_session(State(shared): State<Arc<Shared>>, headers: HeaderMap) -> Response {
    let mut inner = shared.lock();
    inner.pds_calls += 1;
    if let Some(response) = shared.script.next() {
        return response;
    }
    let Some((index, exp)) = bearer(&headers).and_then(|t| inner.access_jwts.get(t).copied())
    else {
        return xrpc_error(
            StatusCode::BAD_REQUEST,
            "InvalidToken",
            "Token could not be verified",
        );
    };
    let session = &inner.sessions[index];
    if session.revoked {
        return xrpc_error(
            StatusCode::BAD_REQUEST,
            "ExpiredToken",
            "Token has been revoked",
        );
    }
    if exp <= chrono::Utc::now().timestamp() {
        return xrpc_error(StatusCode::BAD_REQUEST, "ExpiredToken", "Token has expired");
    }
    let handle = format!("{}.fake.test", &session.did[8..]);
    match session.state {
        BlueskyAccountState::TakenDown => xrpc_error(
            StatusCode::UNAUTHORIZED,
            "AccountTakedown",
            "Account has been taken down",
        ),
        BlueskyAccountState::Deactivated => axum::Json(json!({
            "handle": handle, "did": session.did, "active": false, "status": "deactivated",
        }))
        .into_response(),
        BlueskyAccountState::Active => axum::Json(json!({
            "handle": handle, "did": session.did, "active": true,
        }))
        .into_response(),
    }
}

async fn metadata(State(shared): State<Arc<Shared>>) -> Response {
    if let Some(response) = shared.script.next() {
        return response;
    }
    let origin = shared.origin();
    axum::Json(json!({
        "issuer": origin,
        "token_endpoint": format!("{origin}{TOKEN_PATH}"),
        "grant_types_supported": ["authorization_code", "refresh_token"],
        "token_endpoint_auth_methods_supported": ["none", "private_key_jwt"],
        "dpop_signing_alg_values_supported": ["ES256"],
        "scopes_supported": ["atproto", "transition:generic"],
    }))
    .into_response()
}

fn oauth_error(status: StatusCode, code: &str, description: &str) -> Response {
    (
        status,
        axum::Json(json!({"error": code, "error_description": description})),
    )
        .into_response()
}

/// What a verified proof says.
struct Proof {
    key: (String, String),
    nonce: Option<String>,
}

/// Checks a DPoP proof as RFC 9449 section 4.3 asks (nonce aside).
fn verify_proof(inner: &mut Inner, proof: &str, htu: &str) -> Result<Proof, String> {
    let parts: Vec<&str> = proof.split('.').collect();
    let [header_b64, claims_b64, signature_b64] = parts[..] else {
        return Err("not a JWS".into());
    };
    let decode = |part: &str| -> Result<Value, String> {
        let bytes = URL_SAFE_NO_PAD
            .decode(part)
            .map_err(|_| "not base64url".to_owned())?;
        serde_json::from_slice(&bytes).map_err(|_| "not JSON".to_owned())
    };
    let header = decode(header_b64)?;
    let claims = decode(claims_b64)?;
    if header["typ"] != "dpop+jwt" {
        return Err("typ is not dpop+jwt".into());
    }
    if header["alg"] != "ES256" {
        return Err("alg is not ES256".into());
    }
    let jwk = &header["jwk"];
    if jwk.get("d").is_some() {
        return Err("the header's JWK holds a private key".into());
    }
    let public = p256::PublicKey::from_jwk_str(&jwk.to_string())
        .map_err(|_| "the header's JWK is not a P-256 public key".to_owned())?;
    let signature = URL_SAFE_NO_PAD
        .decode(signature_b64)
        .ok()
        .and_then(|bytes| Signature::from_slice(&bytes).ok())
        .ok_or_else(|| "the signature is not an ES256 signature".to_owned())?;
    VerifyingKey::from(&public)
        .verify(format!("{header_b64}.{claims_b64}").as_bytes(), &signature)
        .map_err(|_| "the signature does not verify".to_owned())?;
    if claims["htm"] != "POST" {
        return Err("htm is not POST".into());
    }
    if claims["htu"] != htu {
        return Err(format!("htu is not {htu}"));
    }
    let iat = claims["iat"]
        .as_i64()
        .ok_or_else(|| "iat is missing".to_owned())?;
    if (iat - chrono::Utc::now().timestamp()).abs() > IAT_SKEW_SECS {
        return Err("iat is too far from now".into());
    }
    let jti = claims["jti"]
        .as_str()
        .filter(|j| !j.is_empty())
        .ok_or_else(|| "jti is missing".to_owned())?;
    if !inner.seen_jti.insert(jti.to_owned()) {
        return Err("jti was used before".into());
    }
    Ok(Proof {
        key: (
            jwk["x"].as_str().unwrap_or_default().to_owned(),
            jwk["y"].as_str().unwrap_or_default().to_owned(),
        ),
        nonce: claims["nonce"].as_str().map(str::to_owned),
    })
}

async fn token_endpoint(
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
    let with_nonce = |mut response: Response| {
        if let Ok(value) = header::HeaderValue::from_str(&nonce) {
            response.headers_mut().insert("dpop-nonce", value);
        }
        response
    };
    if proof.nonce.as_deref() != Some(nonce.as_str()) {
        inner.nonce_challenges += 1;
        return with_nonce(oauth_error(
            StatusCode::BAD_REQUEST,
            "use_dpop_nonce",
            "Authorization server requires nonce in DPoP proof",
        ));
    }
    let form: HashMap<String, String> = url::form_urlencoded::parse(&body).into_owned().collect();
    if form.get("client_id") != Some(&shared.client_id) {
        return with_nonce(oauth_error(
            StatusCode::BAD_REQUEST,
            "invalid_client",
            "Unknown client",
        ));
    }
    if form.get("grant_type").map(String::as_str) != Some("refresh_token") {
        return with_nonce(oauth_error(
            StatusCode::BAD_REQUEST,
            "unsupported_grant_type",
            "grant_type must be refresh_token",
        ));
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
    let (did, lifetime) = (family.did.clone(), family.spec.access_lifetime);
    let next = token("bsky_rt");
    inner.oauth_tokens.insert(presented, (index, false));
    inner.oauth_tokens.insert(next.clone(), (index, true));
    with_nonce(
        axum::Json(json!({
            "access_token": token("bsky_at"),
            "token_type": "DPoP",
            "expires_in": lifetime,
            "refresh_token": next,
            "scope": "atproto transition:generic",
            "sub": did,
        }))
        .into_response(),
    )
}
