//! A Mastodon instance's `GET /api/v1/accounts/verify_credentials`: 200 with
//! the account, 401 for an invalid or revoked token, 403 for a disabled
//! login, 429 with `X-RateLimit-Reset` as an ISO 8601 timestamp.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use serde_json::json;

use super::ScriptedResponse;
use super::server::{Running, Script, token};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MastodonTokenState {
    Live,
    Revoked,
    Disabled,
}

#[derive(Default)]
struct Shared {
    tokens: Mutex<HashMap<String, MastodonTokenState>>,
    calls: Mutex<u32>,
    script: Script,
}

pub struct FakeMastodon {
    server: Running,
    shared: Arc<Shared>,
}

impl FakeMastodon {
    pub async fn start() -> std::io::Result<Self> {
        let shared = Arc::new(Shared::default());
        let app = Router::new()
            .route(
                "/api/v1/accounts/verify_credentials",
                axum::routing::get(verify_credentials),
            )
            .with_state(shared.clone());
        Ok(Self {
            server: Running::start(app).await?,
            shared,
        })
    }

    /// `http://127.0.0.1:<port>`, the instance's origin.
    pub fn origin(&self) -> String {
        format!("http://{}", self.server.addr)
    }

    pub fn issue(&self, state: MastodonTokenState) -> String {
        let access = token("mast");
        self.shared
            .tokens
            .lock()
            .unwrap()
            .insert(access.clone(), state);
        access
    }

    pub fn calls(&self) -> u32 {
        *self.shared.calls.lock().unwrap()
    }

    /// The next call is answered with exactly this.
    pub fn script_next(&self, response: ScriptedResponse) {
        self.shared.script.push(response);
    }

    /// Requests to any route so far, scripted answers included.
    pub fn requests(&self) -> u64 {
        self.shared.script.requests()
    }

    pub fn rate_limit_next(&self, reset: DateTime<Utc>) {
        self.shared.script.push(
            ScriptedResponse::json(429, json!({"error": "Too many requests"}))
                .header("x-ratelimit-limit", "300")
                .header("x-ratelimit-remaining", "0")
                .header(
                    "x-ratelimit-reset",
                    reset.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
                ),
        );
    }
}

async fn verify_credentials(State(shared): State<Arc<Shared>>, headers: HeaderMap) -> Response {
    *shared.calls.lock().unwrap() += 1;
    if let Some(response) = shared.script.next() {
        return response;
    }
    let presented = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("");
    let state = shared.tokens.lock().unwrap().get(presented).copied();
    let fail =
        |status, message: &str| (status, axum::Json(json!({"error": message}))).into_response();
    match state {
        None => fail(StatusCode::UNAUTHORIZED, "The access token is invalid"),
        Some(MastodonTokenState::Revoked) => {
            fail(StatusCode::UNAUTHORIZED, "The access token was revoked")
        }
        Some(MastodonTokenState::Disabled) => {
            fail(StatusCode::FORBIDDEN, "Your login is currently disabled")
        }
        Some(MastodonTokenState::Live) => axum::Json(json!({
            "id": "109",
            "username": "tester",
            "acct": "tester",
            "display_name": "Tester",
        }))
        .into_response(),
    }
}
