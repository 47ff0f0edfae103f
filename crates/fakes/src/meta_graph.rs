//! Meta's Graph hosts. Instagram Login (`graph.instagram.com`,
//! `ig_refresh_token`) and Threads (`graph.threads.net`, `th_refresh_token`)
//! share `GET /refresh_access_token?grant_type=..&access_token=..`, answered
//! with `{access_token, token_type, expires_in}` or a Graph error body.
//!
//! Facebook Login (`graph.facebook.com`, `FakeGraph::facebook`) adds
//! `GET /debug_token?input_token=..&access_token=<app_id>|<app_secret>`,
//! answered `{"data":{app_id, type, application, expires_at (0: never),
//! data_access_expires_at, is_valid, scopes, user_id, error?}}` (the
//! inspected token's problem in `data.error` with `code`, `message`,
//! `subcode`; a refused app token as a top-level Graph error), and
//! `GET /oauth/access_token?grant_type=fb_exchange_token&client_id
//! &client_secret&fb_exchange_token=..` for long-lived user tokens.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::json;
use url::Url;

use super::ScriptedResponse;
use super::server::{Running, Script, token};

pub const LONG_LIVED_SECONDS: u64 = 5_184_000;

/// What the platform knows about one long-lived token.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GraphTokenState {
    Live,
    /// Past its 60 days: 190/463.
    Expired,
    /// The user changed their password: 190/460.
    PasswordChanged,
    /// The user removed the app: 190/458.
    AppRemoved,
    /// The user must log in on facebook.com to clear a checkpoint: 190/459.
    Checkpointed,
}

/// Facebook token kinds, as `debug_token` names them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GraphTokenKind {
    /// Never expires (`expires_at: 0`).
    Page,
    /// A long-lived user token (about 60 days).
    User,
}

#[derive(Clone, Copy, Debug)]
struct TokenInfo {
    state: GraphTokenState,
    kind: GraphTokenKind,
    /// Unix time; 0 = never.
    expires_at: i64,
}

struct Shared {
    grant_type: &'static str,
    /// Facebook Login: the app's id and secret.
    app: Option<(String, String)>,
    tokens: Mutex<HashMap<String, TokenInfo>>,
    calls: Mutex<u32>,
    script: Script,
    /// Lifetime of user tokens handed out by fb_exchange_token.
    user_lifetime: Mutex<u64>,
}

pub struct FakeGraph {
    server: Running,
    shared: Arc<Shared>,
}

impl FakeGraph {
    pub async fn instagram() -> std::io::Result<Self> {
        Self::start("ig_refresh_token").await
    }

    pub async fn threads() -> std::io::Result<Self> {
        Self::start("th_refresh_token").await
    }

    /// graph.facebook.com for an app with this id and secret.
    pub async fn facebook(app_id: &str, app_secret: &str) -> std::io::Result<Self> {
        Self::start_with(
            "fb_exchange_token",
            Some((app_id.into(), app_secret.into())),
        )
        .await
    }

    async fn start(grant_type: &'static str) -> std::io::Result<Self> {
        Self::start_with(grant_type, None).await
    }

    async fn start_with(
        grant_type: &'static str,
        app: Option<(String, String)>,
    ) -> std::io::Result<Self> {
        let shared = Arc::new(Shared {
            grant_type,
            app,
            tokens: Mutex::new(HashMap::new()),
            calls: Mutex::new(0),
            script: Script::default(),
            user_lifetime: Mutex::new(LONG_LIVED_SECONDS),
        });
        let app = Router::new()
            .route("/refresh_access_token", axum::routing::get(refresh))
            .route("/debug_token", axum::routing::get(debug_token))
            .route("/oauth/access_token", axum::routing::get(exchange))
            .with_state(shared.clone());
        Ok(Self {
            server: Running::start(app).await?,
            shared,
        })
    }

    pub fn refresh_url(&self) -> Url {
        self.server.url("/refresh_access_token")
    }

    pub fn debug_token_url(&self) -> Url {
        self.server.url("/debug_token")
    }

    pub fn exchange_url(&self) -> Url {
        self.server.url("/oauth/access_token")
    }

    pub fn issue(&self, state: GraphTokenState) -> String {
        self.issue_kind(state, GraphTokenKind::User, LONG_LIVED_SECONDS, "IGQV")
    }

    /// A Page token: never expires.
    pub fn issue_page(&self, state: GraphTokenState) -> String {
        self.issue_kind(state, GraphTokenKind::Page, 0, "EAAP")
    }

    /// A long-lived Facebook user token living `lifetime` seconds.
    pub fn issue_user(&self, state: GraphTokenState, lifetime: u64) -> String {
        self.issue_kind(state, GraphTokenKind::User, lifetime, "EAAU")
    }

    fn issue_kind(
        &self,
        state: GraphTokenState,
        kind: GraphTokenKind,
        lifetime: u64,
        prefix: &str,
    ) -> String {
        let access = token(prefix);
        let expires_at = match kind {
            GraphTokenKind::Page => 0,
            GraphTokenKind::User => chrono::Utc::now().timestamp() + lifetime as i64,
        };
        self.shared.tokens.lock().unwrap().insert(
            access.clone(),
            TokenInfo {
                state,
                kind,
                expires_at,
            },
        );
        access
    }

    /// Moves a token to `state` (the user changed their password, removed
    /// the app, ...).
    pub fn set_state(&self, access_token: &str, state: GraphTokenState) {
        if let Some(info) = self.shared.tokens.lock().unwrap().get_mut(access_token) {
            info.state = state;
        }
    }

    /// Lifetime of user tokens handed out by fb_exchange_token.
    pub fn set_user_lifetime(&self, seconds: u64) {
        *self.shared.user_lifetime.lock().unwrap() = seconds;
    }

    pub fn is_live(&self, access_token: &str) -> bool {
        self.shared
            .tokens
            .lock()
            .unwrap()
            .get(access_token)
            .is_some_and(|t| t.state == GraphTokenState::Live)
    }

    pub fn calls(&self) -> u32 {
        *self.shared.calls.lock().unwrap()
    }

    pub fn script_next(&self, response: ScriptedResponse) {
        self.shared.script.push(response);
    }

    /// Requests to any route so far, scripted answers included.
    pub fn requests(&self) -> u64 {
        self.shared.script.requests()
    }
}

pub fn graph_error_body(code: u32, subcode: Option<u32>, message: &str) -> serde_json::Value {
    let mut error = json!({
        "message": message,
        "type": "OAuthException",
        "code": code,
        "fbtrace_id": token("trace"),
    });
    if let Some(subcode) = subcode {
        error["error_subcode"] = json!(subcode);
    }
    json!({ "error": error })
}

async fn refresh(
    State(shared): State<Arc<Shared>>,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    *shared.calls.lock().unwrap() += 1;
    if let Some(response) = shared.script.next() {
        return response;
    }
    let fail = |code, subcode, message: &str| {
        (
            StatusCode::BAD_REQUEST,
            axum::Json(graph_error_body(code, subcode, message)),
        )
            .into_response()
    };
    if query.get("grant_type").map(String::as_str) != Some(shared.grant_type) {
        return fail(100, None, "Unsupported grant_type");
    }
    let presented = query.get("access_token").cloned().unwrap_or_default();
    let mut tokens = shared.tokens.lock().unwrap();
    match tokens.get(&presented).map(|t| t.state) {
        None => fail(
            190,
            None,
            "Invalid OAuth access token - Cannot parse access token",
        ),
        Some(GraphTokenState::Checkpointed) => fail(190, Some(459), CHECKPOINT),
        Some(GraphTokenState::Expired) => fail(
            190,
            Some(463),
            "Error validating access token: Session has expired on Sunday, 01-Nov-26 10:00:00 PST.",
        ),
        Some(GraphTokenState::PasswordChanged) => fail(
            190,
            Some(460),
            "Error validating access token: The session has been invalidated because the user changed their password or Facebook has changed the session for security reasons.",
        ),
        Some(GraphTokenState::AppRemoved) => fail(
            190,
            Some(458),
            "Error validating access token: The user has not authorized application.",
        ),
        Some(GraphTokenState::Live) => {
            let next = token("IGQV");
            tokens.insert(
                next.clone(),
                TokenInfo {
                    state: GraphTokenState::Live,
                    kind: GraphTokenKind::User,
                    expires_at: chrono::Utc::now().timestamp() + LONG_LIVED_SECONDS as i64,
                },
            );
            axum::Json(json!({
                "access_token": next,
                "token_type": "bearer",
                "expires_in": LONG_LIVED_SECONDS,
            }))
            .into_response()
        }
    }
}

const CHECKPOINT: &str = "Error validating access token: You cannot access the app till you log in to www.facebook.com and follow the instructions given.";

/// The (code, subcode, message) Meta gives for a token that does not work.
fn token_problem(state: GraphTokenState) -> Option<(u32, Option<u32>, &'static str)> {
    match state {
        GraphTokenState::Live => None,
        GraphTokenState::Expired => Some((
            190,
            Some(463),
            "Error validating access token: Session has expired on Sunday, 01-Nov-26 10:00:00 PST.",
        )),
        GraphTokenState::PasswordChanged => Some((
            190,
            Some(460),
            "Error validating access token: The session has been invalidated because the user changed their password or Facebook has changed the session for security reasons.",
        )),
        GraphTokenState::AppRemoved => Some((
            190,
            Some(458),
            "Error validating access token: The user has not authorized application.",
        )),
        GraphTokenState::Checkpointed => Some((190, Some(459), CHECKPOINT)),
    }
}

async fn debug_token(
    State(shared): State<Arc<Shared>>,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    *shared.calls.lock().unwrap() += 1;
    if let Some(response) = shared.script.next() {
        return response;
    }
    let Some((app_id, app_secret)) = &shared.app else {
        return StatusCode::NOT_FOUND.into_response();
    };
    if query.get("access_token") != Some(&format!("{app_id}|{app_secret}")) {
        return (
            StatusCode::BAD_REQUEST,
            axum::Json(graph_error_body(
                190,
                None,
                "Invalid OAuth access token signature.",
            )),
        )
            .into_response();
    }
    let input = query.get("input_token").cloned().unwrap_or_default();
    let Some(info) = shared.tokens.lock().unwrap().get(&input).copied() else {
        return axum::Json(json!({"data": {
            "error": {"code": 190, "message": "Invalid OAuth access token - Cannot parse access token"},
            "is_valid": false,
            "scopes": [],
        }}))
        .into_response();
    };
    let now = chrono::Utc::now().timestamp();
    let mut data = json!({
        "app_id": app_id,
        "type": match info.kind { GraphTokenKind::Page => "PAGE", GraphTokenKind::User => "USER" },
        "application": "tokenwarden test app",
        "data_access_expires_at": now + 90 * 86_400,
        "expires_at": info.expires_at,
        "is_valid": info.state == GraphTokenState::Live,
        "issued_at": now - 86_400,
        "scopes": ["pages_show_list", "pages_manage_posts", "instagram_basic", "instagram_content_publish"],
        "user_id": "10000000000001",
    });
    if info.kind == GraphTokenKind::Page {
        data["profile_id"] = json!("20000000000002");
    }
    if let Some((code, subcode, message)) = token_problem(info.state) {
        data["error"] = json!({"code": code, "message": message, "subcode": subcode});
    }
    axum::Json(json!({ "data": data })).into_response()
}

async fn exchange(
    State(shared): State<Arc<Shared>>,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    *shared.calls.lock().unwrap() += 1;
    if let Some(response) = shared.script.next() {
        return response;
    }
    let fail = |code, subcode, message: &str| {
        (
            StatusCode::BAD_REQUEST,
            axum::Json(graph_error_body(code, subcode, message)),
        )
            .into_response()
    };
    let Some((app_id, app_secret)) = &shared.app else {
        return StatusCode::NOT_FOUND.into_response();
    };
    if query.get("grant_type").map(String::as_str) != Some("fb_exchange_token") {
        return fail(100, None, "Unsupported grant_type");
    }
    if query.get("client_id") != Some(app_id) {
        return fail(
            101,
            None,
            "Error validating application. Invalid application ID.",
        );
    }
    if query.get("client_secret") != Some(app_secret) {
        return fail(1, None, "Error validating client secret.");
    }
    let presented = query.get("fb_exchange_token").cloned().unwrap_or_default();
    let mut tokens = shared.tokens.lock().unwrap();
    let Some(info) = tokens.get(&presented).copied() else {
        return fail(
            190,
            None,
            "Invalid OAuth access token - Cannot parse access token",
        );
    };
    let now = chrono::Utc::now().timestamp();
    let state = if info.kind == GraphTokenKind::User && info.expires_at <= now {
        GraphTokenState::Expired
    } else {
        info.state
    };
    if let Some((code, subcode, message)) = token_problem(state) {
        return fail(code, subcode, message);
    }
    let lifetime = *shared.user_lifetime.lock().unwrap();
    let next = token("EAAU");
    tokens.insert(
        next.clone(),
        TokenInfo {
            state: GraphTokenState::Live,
            kind: GraphTokenKind::User,
            expires_at: now + lifetime as i64,
        },
    );
    axum::Json(json!({
        "access_token": next,
        "token_type": "bearer",
        "expires_in": lifetime,
    }))
    .into_response()
}
