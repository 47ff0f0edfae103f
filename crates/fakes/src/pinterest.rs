//! Pinterest's token endpoint (`POST /v5/oauth/token`): Basic client
//! authentication, a new refresh token on every refresh with the old one
//! dead at once (the strict reading: whether it dies at once is
//! unconfirmed), `refresh_token_expires_in` counting 60 days. A refused
//! client gets Pinterest's API error shape `{"code":2,"message":
//! "Authentication failed."}`; a refused refresh token gets RFC 6749's
//! `invalid_grant` (assumption: Pinterest documents no error body here).
//! A spent token presented again revokes its whole family.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use serde_json::json;
use url::Url;

use super::ScriptedResponse;
use super::server::{Running, Script, token};

pub const PINTEREST_REFRESH_LIFETIME: u64 = 60 * 86_400;

#[derive(Clone, Debug)]
pub struct PinterestGrant {
    pub access_lifetime: u64,
    /// Every n-th refresh of this family fails with a 503.
    pub fail_every: Option<u32>,
    /// The user disconnects the app after this many refreshes.
    pub revoke_after: Option<u32>,
}

impl Default for PinterestGrant {
    fn default() -> Self {
        Self {
            access_lifetime: 30 * 86_400,
            fail_every: None,
            revoke_after: None,
        }
    }
}

struct Family {
    spec: PinterestGrant,
    revoked: bool,
    calls: u32,
    refreshes: u32,
}

#[derive(Default)]
struct FakeState {
    families: Vec<Family>,
    /// refresh token -> (family, still valid)
    tokens: HashMap<String, (usize, bool)>,
    reuse_detected: u64,
    calls: u64,
    continuous_refresh_seen: Vec<Option<String>>,
    /// refresh token -> the answer its every refresh gets (one account's own
    /// trouble, whatever order concurrent calls arrive in).
    answers: HashMap<String, ScriptedResponse>,
}

struct Shared {
    client_id: String,
    client_secret: String,
    state: Mutex<FakeState>,
    script: Script,
}

pub struct FakePinterest {
    server: Running,
    shared: Arc<Shared>,
}

impl FakePinterest {
    pub async fn start(client_id: &str, client_secret: &str) -> std::io::Result<Self> {
        let shared = Arc::new(Shared {
            client_id: client_id.into(),
            client_secret: client_secret.into(),
            state: Mutex::new(FakeState::default()),
            script: Script::default(),
        });
        let app = Router::new()
            .route("/v5/oauth/token", axum::routing::post(token_endpoint))
            .with_state(shared.clone());
        Ok(Self {
            server: Running::start(app).await?,
            shared,
        })
    }

    pub fn token_url(&self) -> Url {
        self.server.url("/v5/oauth/token")
    }

    /// A connected user's (access, refresh) pair.
    pub fn issue(&self, spec: PinterestGrant) -> (String, String) {
        let mut state = self.shared.state.lock().unwrap();
        let family = state.families.len();
        state.families.push(Family {
            spec,
            revoked: false,
            calls: 0,
            refreshes: 0,
        });
        let refresh = token("pinr");
        state.tokens.insert(refresh.clone(), (family, true));
        (token("pina"), refresh)
    }

    pub fn is_live(&self, refresh_token: &str) -> bool {
        let state = self.shared.state.lock().unwrap();
        state
            .tokens
            .get(refresh_token)
            .is_some_and(|(family, valid)| *valid && !state.families[*family].revoked)
    }

    /// The user disconnected the app: the family dies.
    pub fn revoke(&self, refresh_token: &str) {
        let mut state = self.shared.state.lock().unwrap();
        if let Some((family, _)) = state.tokens.get(refresh_token).copied() {
            state.families[family].revoked = true;
        }
    }

    pub fn reuse_detected(&self) -> u64 {
        self.shared.state.lock().unwrap().reuse_detected
    }

    pub fn calls(&self) -> u64 {
        self.shared.state.lock().unwrap().calls
    }

    /// The `continuous_refresh` field of each refresh request, in order.
    pub fn continuous_refresh_seen(&self) -> Vec<Option<String>> {
        self.shared
            .state
            .lock()
            .unwrap()
            .continuous_refresh_seen
            .clone()
    }

    /// Every refresh presenting `refresh_token` is answered with `answer`.
    pub fn answer_for(&self, refresh_token: &str, answer: ScriptedResponse) {
        self.shared
            .state
            .lock()
            .unwrap()
            .answers
            .insert(refresh_token.to_owned(), answer);
    }

    pub fn script_next(&self, response: ScriptedResponse) {
        self.shared.script.push(response);
    }

    /// Requests to any route so far, scripted answers included.
    pub fn requests(&self) -> u64 {
        self.shared.script.requests()
    }
}

fn oauth_error(code: &str, description: &str) -> Response {
    (
        StatusCode::BAD_REQUEST,
        axum::Json(json!({"error": code, "error_description": description})),
    )
        .into_response()
}

async fn token_endpoint(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let form: HashMap<String, String> = url::form_urlencoded::parse(&body).into_owned().collect();
    let mut state = shared.state.lock().unwrap();
    state.calls += 1;
    state
        .continuous_refresh_seen
        .push(form.get("continuous_refresh").cloned());
    if let Some(response) = shared.script.next() {
        return response;
    }
    let presented = form.get("refresh_token").map(String::as_str).unwrap_or("");
    if let Some(answer) = state.answers.get(presented) {
        return answer.clone().into_response();
    }
    let expected = base64::engine::general_purpose::STANDARD
        .encode(format!("{}:{}", shared.client_id, shared.client_secret));
    let authorized = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Basic "))
        .is_some_and(|v| v == expected);
    if !authorized {
        return (
            StatusCode::UNAUTHORIZED,
            axum::Json(json!({"code": 2, "message": "Authentication failed."})),
        )
            .into_response();
    }
    if form.get("grant_type").map(String::as_str) != Some("refresh_token") {
        return oauth_error("unsupported_grant_type", "grant_type must be refresh_token");
    }
    let presented = form.get("refresh_token").cloned().unwrap_or_default();
    let Some((family, valid)) = state.tokens.get(&presented).copied() else {
        return oauth_error("invalid_grant", "Invalid refresh token.");
    };
    if state.families[family].revoked {
        return oauth_error("invalid_grant", "Invalid refresh token.");
    }
    if !valid {
        state.families[family].revoked = true;
        state.reuse_detected += 1;
        return oauth_error("invalid_grant", "Invalid refresh token.");
    }
    let fam = &mut state.families[family];
    fam.calls += 1;
    if fam
        .spec
        .fail_every
        .is_some_and(|n| n > 0 && fam.calls.is_multiple_of(n))
    {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            [(header::RETRY_AFTER, "2")],
            "service unavailable",
        )
            .into_response();
    }
    if fam.spec.revoke_after.is_some_and(|n| fam.refreshes >= n) {
        fam.revoked = true;
        return oauth_error("invalid_grant", "Invalid refresh token.");
    }
    fam.refreshes += 1;
    let lifetime = fam.spec.access_lifetime;
    let next = token("pinr");
    state.tokens.insert(presented, (family, false));
    state.tokens.insert(next.clone(), (family, true));
    axum::Json(json!({
        "access_token": token("pina"),
        "refresh_token": next,
        "response_type": "refresh_token",
        "token_type": "bearer",
        "expires_in": lifetime,
        "refresh_token_expires_in": PINTEREST_REFRESH_LIFETIME,
        "scope": "boards:read pins:read pins:write user_accounts:read",
    }))
    .into_response()
}
