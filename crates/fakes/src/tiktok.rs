//! TikTok's token endpoint (`POST /v2/oauth/token/`): `client_key` and
//! `client_secret` in the form body, rotating refresh tokens, errors as
//! `{error, error_description, log_id}`. Whether real errors come with a
//! non-2xx status is unconfirmed, so the fake can answer them either way.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::json;
use url::Url;

use super::ScriptedResponse;
use super::server::{Running, Script, token};

pub const TIKTOK_ACCESS_LIFETIME: u64 = 86_400;
pub const TIKTOK_REFRESH_LIFETIME: u64 = 31_536_000;

struct Shared {
    client_key: String,
    client_secret: String,
    live: Mutex<HashSet<String>>,
    errors_in_200: AtomicBool,
    script: Script,
}

pub struct FakeTiktok {
    server: Running,
    shared: Arc<Shared>,
}

impl FakeTiktok {
    pub async fn start(client_key: &str, client_secret: &str) -> std::io::Result<Self> {
        let shared = Arc::new(Shared {
            client_key: client_key.into(),
            client_secret: client_secret.into(),
            live: Mutex::new(HashSet::new()),
            errors_in_200: AtomicBool::new(false),
            script: Script::default(),
        });
        let app = Router::new()
            .route("/v2/oauth/token/", axum::routing::post(token_endpoint))
            .with_state(shared.clone());
        Ok(Self {
            server: Running::start(app).await?,
            shared,
        })
    }

    pub fn token_url(&self) -> Url {
        self.server.url("/v2/oauth/token/")
    }

    pub fn issue(&self) -> (String, String) {
        let refresh = token("rft");
        self.shared.live.lock().unwrap().insert(refresh.clone());
        (token("act"), refresh)
    }

    pub fn is_live(&self, refresh_token: &str) -> bool {
        self.shared.live.lock().unwrap().contains(refresh_token)
    }

    /// Answer OAuth errors with HTTP 200 (the error is only in the body).
    pub fn errors_in_200(&self, on: bool) {
        self.shared.errors_in_200.store(on, Ordering::SeqCst);
    }

    pub fn script_next(&self, response: ScriptedResponse) {
        self.shared.script.push(response);
    }

    /// Requests to any route so far, scripted answers included.
    pub fn requests(&self) -> u64 {
        self.shared.script.requests()
    }
}

async fn token_endpoint(State(shared): State<Arc<Shared>>, body: Bytes) -> Response {
    if let Some(response) = shared.script.next() {
        return response;
    }
    let in_200 = shared.errors_in_200.load(Ordering::SeqCst);
    let error = |status: StatusCode, code: &str, description: &str| {
        let status = if in_200 { StatusCode::OK } else { status };
        (
            status,
            axum::Json(json!({
                "error": code,
                "error_description": description,
                "log_id": token("log"),
            })),
        )
            .into_response()
    };
    let form: HashMap<String, String> = url::form_urlencoded::parse(&body).into_owned().collect();
    if form.get("client_key") != Some(&shared.client_key)
        || form.get("client_secret") != Some(&shared.client_secret)
    {
        return error(
            StatusCode::UNAUTHORIZED,
            "invalid_client",
            "Client key or secret is incorrect.",
        );
    }
    if form.get("grant_type").map(String::as_str) != Some("refresh_token") {
        return error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "grant_type is invalid.",
        );
    }
    let presented = form.get("refresh_token").cloned().unwrap_or_default();
    let mut live = shared.live.lock().unwrap();
    if !live.remove(&presented) {
        return error(
            StatusCode::BAD_REQUEST,
            "invalid_grant",
            "Refresh token is invalid or expired.",
        );
    }
    let next = token("rft");
    live.insert(next.clone());
    axum::Json(json!({
        "access_token": token("act"),
        "expires_in": TIKTOK_ACCESS_LIFETIME,
        "open_id": "open-id-1",
        "refresh_expires_in": TIKTOK_REFRESH_LIFETIME,
        "refresh_token": next,
        "scope": "user.info.basic,video.publish",
        "token_type": "Bearer",
    }))
    .into_response()
}
