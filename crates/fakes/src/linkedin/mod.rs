//! LinkedIn's token endpoint (`POST /oauth/v2/accessToken`): client
//! credentials in the form body; the refresh token does not rotate, and
//! `refresh_token_expires_in` counts down from the first login. Token
//! introspection (`POST /oauth/v2/introspectToken`, form `client_id`,
//! `client_secret`, `token`) answers `{active, client_id, authorized_at,
//! created_at, status, expires_at, scope, auth_type}`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::json;
use url::Url;

use super::ScriptedResponse;
use super::server::{Running, Script, token};

pub const LINKEDIN_REFRESH_LIFETIME: u64 = 365 * 86_400;

/// What LinkedIn knows about one access token.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LinkedinTokenState {
    Active,
    Expired,
    Revoked,
}

struct AccessInfo {
    state: LinkedinTokenState,
    created_at: i64,
    expires_at: i64,
}

struct Shared {
    client_id: String,
    client_secret: String,
    /// refresh token -> when it was issued (first login)
    issued: Mutex<HashMap<String, Instant>>,
    access: Mutex<HashMap<String, AccessInfo>>,
    introspections: Mutex<u64>,
    refreshes: Mutex<u64>,
    /// Access-token lifetime handed out (60 days; the demo shortens it).
    access_lifetime: Mutex<u64>,
    /// Canned answers for either endpoint, served first.
    script: Script,
}

pub struct FakeLinkedin {
    server: Running,
    shared: Arc<Shared>,
}

impl FakeLinkedin {
    pub async fn start(client_id: &str, client_secret: &str) -> std::io::Result<Self> {
        let shared = Arc::new(Shared {
            client_id: client_id.into(),
            client_secret: client_secret.into(),
            issued: Mutex::new(HashMap::new()),
            access: Mutex::new(HashMap::new()),
            introspections: Mutex::new(0),
            refreshes: Mutex::new(0),
            access_lifetime: Mutex::new(ACCESS_LIFETIME),
            script: Script::default(),
        });
        let app = Router::new()
            .route("/oauth/v2/accessToken", axum::routing::post(token_endpoint))
            .route(
                "/oauth/v2/introspectToken",
                axum::routing::post(introspect_endpoint),
            )
            .with_state(shared.clone());
        Ok(Self {
            server: Running::start(app).await?,
            shared,
        })
    }

    /// The next call to either endpoint is answered with exactly this.
    pub fn script_next(&self, response: ScriptedResponse) {
        self.shared.script.push(response);
    }

    /// Requests to any route so far, scripted answers included.
    pub fn requests(&self) -> u64 {
        self.shared.script.requests()
    }

    pub fn token_url(&self) -> Url {
        self.server.url("/oauth/v2/accessToken")
    }

    pub fn introspect_url(&self) -> Url {
        self.server.url("/oauth/v2/introspectToken")
    }

    /// Lifetime of access tokens issued from now on.
    pub fn set_access_lifetime(&self, seconds: u64) {
        *self.shared.access_lifetime.lock().unwrap() = seconds;
    }

    /// A login `age` ago: the refresh token's lifetime has run down by that.
    pub fn issue(&self, age: Duration) -> (String, String) {
        let refresh = token("AQX");
        let at = Instant::now().checked_sub(age).unwrap_or_else(Instant::now);
        self.shared
            .issued
            .lock()
            .unwrap()
            .insert(refresh.clone(), at);
        (self.shared.new_access(), refresh)
    }

    /// An app without programmatic refresh: an access token only.
    pub fn issue_access_only(&self) -> String {
        self.shared.new_access()
    }

    /// Moves an access token to `state` (the member revoked the app, or
    /// its 60 days ran out).
    pub fn set_access_state(&self, access_token: &str, state: LinkedinTokenState) {
        if let Some(info) = self.shared.access.lock().unwrap().get_mut(access_token) {
            info.state = state;
        }
    }

    pub fn introspections(&self) -> u64 {
        *self.shared.introspections.lock().unwrap()
    }

    /// Calls to either endpoint.
    pub fn calls(&self) -> u64 {
        *self.shared.introspections.lock().unwrap() + *self.shared.refreshes.lock().unwrap()
    }

    /// The member revoked the app: its refresh token stops working.
    pub fn revoke(&self, refresh_token: &str) {
        self.shared.issued.lock().unwrap().remove(refresh_token);
    }
}

const ACCESS_LIFETIME: u64 = 5_184_000;

impl Shared {
    fn new_access(&self) -> String {
        let access = token("AQV");
        let now = chrono::Utc::now().timestamp();
        let lifetime = *self.access_lifetime.lock().unwrap() as i64;
        self.access.lock().unwrap().insert(
            access.clone(),
            AccessInfo {
                state: LinkedinTokenState::Active,
                created_at: now,
                expires_at: now + lifetime,
            },
        );
        access
    }
}

async fn introspect_endpoint(State(shared): State<Arc<Shared>>, body: Bytes) -> Response {
    if let Some(response) = shared.script.next() {
        return response;
    }
    *shared.introspections.lock().unwrap() += 1;
    let form: HashMap<String, String> = url::form_urlencoded::parse(&body).into_owned().collect();
    if form.get("client_id") != Some(&shared.client_id)
        || form.get("client_secret") != Some(&shared.client_secret)
    {
        return error(
            StatusCode::UNAUTHORIZED,
            "invalid_client",
            "Client authentication failed",
        );
    }
    let presented = form.get("token").cloned().unwrap_or_default();
    let access = shared.access.lock().unwrap();
    let Some(info) = access.get(&presented) else {
        return axum::Json(json!({"active": false})).into_response();
    };
    let now = chrono::Utc::now().timestamp();
    let state = match info.state {
        LinkedinTokenState::Active if info.expires_at <= now => LinkedinTokenState::Expired,
        other => other,
    };
    let status = match state {
        LinkedinTokenState::Active => "active",
        LinkedinTokenState::Expired => "expired",
        LinkedinTokenState::Revoked => "revoked",
    };
    axum::Json(json!({
        "active": state == LinkedinTokenState::Active,
        "client_id": shared.client_id,
        "authorized_at": info.created_at,
        "created_at": info.created_at,
        "status": status,
        "expires_at": info.expires_at,
        "scope": "openid,profile,w_member_social",
        "auth_type": "3L",
    }))
    .into_response()
}

fn error(status: StatusCode, code: &str, description: &str) -> Response {
    (
        status,
        axum::Json(json!({"error": code, "error_description": description})),
    )
        .into_response()
}

async fn token_endpoint(State(shared): State<Arc<Shared>>, body: Bytes) -> Response {
    if let Some(response) = shared.script.next() {
        return response;
    }
    *shared.refreshes.lock().unwrap() += 1;
    let form: HashMap<String, String> = url::form_urlencoded::parse(&body).into_owned().collect();
    if form.get("client_id") != Some(&shared.client_id)
        || form.get("client_secret") != Some(&shared.client_secret)
    {
        return error(
            StatusCode::UNAUTHORIZED,
            "invalid_client",
            "Client authentication failed",
        );
    }
    if form.get("grant_type").map(String::as_str) != Some("refresh_token") {
        return error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "A required parameter \"grant_type\" is missing",
        );
    }
    let presented = form.get("refresh_token").cloned().unwrap_or_default();
    let Some(issued) = shared.issued.lock().unwrap().get(&presented).copied() else {
        return error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "The provided authorization grant or refresh token is invalid, expired or revoked",
        );
    };
    let remaining = LINKEDIN_REFRESH_LIFETIME.saturating_sub(issued.elapsed().as_secs());
    let lifetime = *shared.access_lifetime.lock().unwrap();
    axum::Json(json!({
        "access_token": shared.new_access(),
        "expires_in": lifetime,
        "refresh_token": presented,
        "refresh_token_expires_in": remaining,
        "scope": "openid,profile,w_member_social",
    }))
    .into_response()
}
