//! LinkedIn's token endpoint (`POST /oauth/v2/accessToken`): client
//! credentials in the form body; the refresh token does not rotate, and
//! `refresh_token_expires_in` counts down from the first login.

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

use super::server::{Running, token};

pub const LINKEDIN_REFRESH_LIFETIME: u64 = 365 * 86_400;

struct Shared {
    client_id: String,
    client_secret: String,
    /// refresh token -> when it was issued (first login)
    issued: Mutex<HashMap<String, Instant>>,
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
        });
        let app = Router::new()
            .route("/oauth/v2/accessToken", axum::routing::post(token_endpoint))
            .with_state(shared.clone());
        Ok(Self {
            server: Running::start(app).await?,
            shared,
        })
    }

    pub fn token_url(&self) -> Url {
        self.server.url("/oauth/v2/accessToken")
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
        (token("AQV"), refresh)
    }

    /// The member revoked the app: its refresh token stops working.
    pub fn revoke(&self, refresh_token: &str) {
        self.shared.issued.lock().unwrap().remove(refresh_token);
    }
}

fn error(status: StatusCode, code: &str, description: &str) -> Response {
    (
        status,
        axum::Json(json!({"error": code, "error_description": description})),
    )
        .into_response()
}

async fn token_endpoint(State(shared): State<Arc<Shared>>, body: Bytes) -> Response {
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
    axum::Json(json!({
        "access_token": token("AQV"),
        "expires_in": 5_184_000,
        "refresh_token": presented,
        "refresh_token_expires_in": remaining,
        "scope": "openid,profile,w_member_social",
    }))
    .into_response()
}
