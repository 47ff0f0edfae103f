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
//! Authorization server: `/.well-known/oauth-authorization-server`,
//! `POST /oauth/par` (pushed authorization requests: a DPoP proof with the
//! server's nonce, PKCE S256, a redirect URI and scopes the client's
//! metadata declares, the metadata fetched from the client id and checked),
//! `GET /oauth/authorize` (reached with the `request_uri` alone; a simulated
//! user consents; the redirect carries `code`, `state` and `iss`) and
//! `POST /oauth/token`, which verifies the DPoP proof (ES256 signature by the
//! header's JWK, typ, htm, htu, iat, jti not seen before, and the current
//! nonce, demanded with `use_dpop_nonce` and a `DPoP-Nonce` header), redeems
//! each code once with the PAR's key and PKCE verifier, binds each session
//! to its key and client, and rotates refresh tokens strictly: a replay
//! revokes the session.
//!
//! Identity: accounts with a handle and a DID; the handle's
//! `/.well-known/atproto-did` and did:web documents (by `Host`), a PLC
//! directory at `/plc/<did>`, and the PDS's protected-resource metadata.
//!
//! This file holds the state all share and starts the server; `pds` serves
//! the sessions, `identity` the identity documents, `authorization` PAR,
//! consent and codes, `oauth` the metadata and token endpoint, `dpop`
//! checks its proofs.

mod authorization;
mod dpop;
mod identity;
mod oauth;
mod pds;

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use axum::Router;
use url::Url;

use crate::ScriptedResponse;
use crate::authorize::Consent;
use crate::server::{Running, Script, token};
use authorization::{AUTHORIZE_PATH, Code, PAR_PATH, Pushed, authorize, par};
use identity::{Identity, PLC_PREFIX, handle_did, plc_document, protected_resource, web_document};
use oauth::{TOKEN_PATH, metadata, token_endpoint};
use pds::{get_session, refresh_session};

pub use identity::BlueskyAccount;
pub use oauth::{IssuedOAuth, OAuthSessionSpec};
pub use pds::{BlueskyAccountState, IssuedSession, SessionSpec};

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
    /// The client the session was issued to: only it may refresh.
    client_id: String,
    scope: String,
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
    identities: Vec<Identity>,
    identity_requests: Vec<String>,
    authorization_server: Option<String>,
    /// Client ids whose metadata was fetched and accepted.
    known_clients: HashSet<String>,
    metadata_fetches: Vec<String>,
    pushed: HashMap<String, Pushed>,
    pushed_forms: Vec<HashMap<String, String>>,
    codes: HashMap<String, Code>,
    consents: VecDeque<Consent>,
    par_nonce_challenges: u32,
    code_redemptions: u32,
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
            .route(PAR_PATH, axum::routing::post(par))
            .route(AUTHORIZE_PATH, axum::routing::get(authorize))
            .route(
                "/.well-known/oauth-protected-resource",
                axum::routing::get(protected_resource),
            )
            .route("/.well-known/atproto-did", axum::routing::get(handle_did))
            .route("/.well-known/did.json", axum::routing::get(web_document))
            .route(
                &format!("{PLC_PREFIX}/{{did}}"),
                axum::routing::get(plc_document),
            )
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

    /// Queues a canned answer for the next call to any route.
    pub fn script_next(&self, response: ScriptedResponse) {
        self.shared.script.push(response);
    }

    /// Requests to any route so far, scripted answers included.
    pub fn requests(&self) -> u64 {
        self.shared.script.requests()
    }

    /// Spent refresh tokens (either kind) presented again.
    pub fn reuse_detected(&self) -> u64 {
        self.shared.lock().reuse_detected
    }
}
