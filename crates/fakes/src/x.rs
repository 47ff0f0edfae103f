//! X's token endpoint (`POST /2/oauth2/token`) as documented and as
//! reported: Basic client authentication required (401 unauthorized_client
//! without it), single-use rotating refresh tokens, and every refused token
//! answered with 400 invalid_request "Value passed for the token was invalid.".

use std::collections::{HashMap, HashSet};
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

struct Shared {
    client_id: String,
    client_secret: String,
    live: Mutex<HashSet<String>>,
    script: Script,
}

pub struct FakeX {
    server: Running,
    shared: Arc<Shared>,
}

impl FakeX {
    pub async fn start(client_id: &str, client_secret: &str) -> std::io::Result<Self> {
        let shared = Arc::new(Shared {
            client_id: client_id.into(),
            client_secret: client_secret.into(),
            live: Mutex::new(HashSet::new()),
            script: Script::default(),
        });
        let app = Router::new()
            .route("/2/oauth2/token", axum::routing::post(token_endpoint))
            .with_state(shared.clone());
        Ok(Self {
            server: Running::start(app).await?,
            shared,
        })
    }

    pub fn token_url(&self) -> Url {
        self.server.url("/2/oauth2/token")
    }

    /// A connected user's (access, refresh) pair.
    pub fn issue(&self) -> (String, String) {
        let refresh = token("xrt");
        self.shared.live.lock().unwrap().insert(refresh.clone());
        (token("xat"), refresh)
    }

    pub fn is_live(&self, refresh_token: &str) -> bool {
        self.shared.live.lock().unwrap().contains(refresh_token)
    }

    /// The next call is answered with exactly this.
    pub fn script_next(&self, response: ScriptedResponse) {
        self.shared.script.push(response);
    }

    /// Requests to any route so far, scripted answers included.
    pub fn requests(&self) -> u64 {
        self.shared.script.requests()
    }

    /// The next call is refused with X's 429 and its rate-limit headers.
    pub fn rate_limit_next(&self, reset_epoch: i64) {
        self.shared.script.push(
            ScriptedResponse::json(
                429,
                json!({"errors": [{"code": 88, "message": "Rate limit exceeded"}]}),
            )
            .header("x-rate-limit-limit", "50")
            .header("x-rate-limit-remaining", "0")
            .header("x-rate-limit-reset", reset_epoch.to_string()),
        );
    }
}

fn error(status: StatusCode, code: &str, description: &str) -> Response {
    (
        status,
        axum::Json(json!({"error": code, "error_description": description})),
    )
        .into_response()
}

async fn token_endpoint(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if let Some(response) = shared.script.next() {
        return response;
    }
    let expected = base64::engine::general_purpose::STANDARD
        .encode(format!("{}:{}", shared.client_id, shared.client_secret));
    let authorized = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Basic "))
        .is_some_and(|v| v == expected);
    if !authorized {
        return error(
            StatusCode::UNAUTHORIZED,
            "unauthorized_client",
            "Missing valid authorization header",
        );
    }
    let form: HashMap<String, String> = url::form_urlencoded::parse(&body).into_owned().collect();
    if form.get("grant_type").map(String::as_str) != Some("refresh_token") {
        return error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "Missing required parameter [grant_type].",
        );
    }
    let presented = form.get("refresh_token").cloned().unwrap_or_default();
    let mut live = shared.live.lock().unwrap();
    if !live.remove(&presented) {
        return error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "Value passed for the token was invalid.",
        );
    }
    let next = token("xrt");
    live.insert(next.clone());
    axum::Json(json!({
        "token_type": "bearer",
        "expires_in": 7200,
        "access_token": token("xat"),
        "scope": "tweet.read tweet.write users.read offline.access",
        "refresh_token": next,
    }))
    .into_response()
}
