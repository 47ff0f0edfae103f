//! The long-lived token refresh of Meta's Graph hosts, which Instagram Login
//! (`graph.instagram.com`, `ig_refresh_token`) and Threads
//! (`graph.threads.net`, `th_refresh_token`) share: `GET
//! /refresh_access_token?grant_type=..&access_token=..`, answered with
//! `{access_token, token_type, expires_in}` or a Graph error body.

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
}

struct Shared {
    grant_type: &'static str,
    tokens: Mutex<HashMap<String, GraphTokenState>>,
    calls: Mutex<u32>,
    script: Script,
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

    async fn start(grant_type: &'static str) -> std::io::Result<Self> {
        let shared = Arc::new(Shared {
            grant_type,
            tokens: Mutex::new(HashMap::new()),
            calls: Mutex::new(0),
            script: Script::default(),
        });
        let app = Router::new()
            .route("/refresh_access_token", axum::routing::get(refresh))
            .with_state(shared.clone());
        Ok(Self {
            server: Running::start(app).await?,
            shared,
        })
    }

    pub fn refresh_url(&self) -> Url {
        self.server.url("/refresh_access_token")
    }

    pub fn issue(&self, state: GraphTokenState) -> String {
        let access = token("IGQV");
        self.shared
            .tokens
            .lock()
            .unwrap()
            .insert(access.clone(), state);
        access
    }

    pub fn is_live(&self, access_token: &str) -> bool {
        self.shared.tokens.lock().unwrap().get(access_token) == Some(&GraphTokenState::Live)
    }

    pub fn calls(&self) -> u32 {
        *self.shared.calls.lock().unwrap()
    }

    pub fn script_next(&self, response: ScriptedResponse) {
        self.shared.script.push(response);
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
    match tokens.get(&presented).copied() {
        None => fail(
            190,
            None,
            "Invalid OAuth access token - Cannot parse access token",
        ),
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
            tokens.insert(next.clone(), GraphTokenState::Live);
            axum::Json(json!({
                "access_token": next,
                "token_type": "bearer",
                "expires_in": LONG_LIVED_SECONDS,
            }))
            .into_response()
        }
    }
}
