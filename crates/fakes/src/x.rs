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
use super::authorize::{Desk, Rules, User};
use super::server::{Running, Script, token};

struct Shared {
    client_id: String,
    client_secret: String,
    live: Mutex<HashSet<String>>,
    script: Script,
    desk: Desk,
    /// Access tokens issued by a code exchange, and whose they are.
    users: Mutex<HashMap<String, User>>,
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
            desk: Desk::default(),
            users: Mutex::new(HashMap::new()),
        });
        let app = Router::new()
            .route("/2/oauth2/token", axum::routing::post(token_endpoint))
            .route("/i/oauth2/authorize", axum::routing::get(authorize))
            .route("/2/users/me", axum::routing::get(users_me))
            .with_state(shared.clone());
        Ok(Self {
            server: Running::start(app).await?,
            shared,
        })
    }

    pub fn token_url(&self) -> Url {
        self.server.url("/2/oauth2/token")
    }

    /// The consent screen (`https://x.com/i/oauth2/authorize`).
    pub fn authorize_url(&self) -> Url {
        self.server.url("/i/oauth2/authorize")
    }

    /// The API base (`https://api.x.com/2/`).
    pub fn api_url(&self) -> Url {
        self.server.url("/2/")
    }

    /// The consent screen and its codes.
    pub fn desk(&self) -> &Desk {
        &self.shared.desk
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
    if form.get("grant_type").map(String::as_str) == Some("authorization_code") {
        return code_grant(&shared, &form);
    }
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

async fn authorize(
    State(shared): State<Arc<Shared>>,
    axum::extract::Query(query): axum::extract::Query<HashMap<String, String>>,
) -> Response {
    // X requires PKCE for every client.
    let rules = Rules {
        pkce_required: true,
        ..Rules::default()
    };
    shared.desk.authorize(&query, &shared.client_id, rules)
}

/// `grant_type=authorization_code`: a refresh token only with the
/// `offline.access` scope, as X documents.
fn code_grant(shared: &Shared, form: &HashMap<String, String>) -> Response {
    let granted = match shared.desk.redeem(
        form.get("code").map(String::as_str).unwrap_or(""),
        form.get("redirect_uri").map(String::as_str),
        form.get("code_verifier").map(String::as_str),
    ) {
        Ok(granted) => granted,
        Err(why) => return error(StatusCode::BAD_REQUEST, "invalid_request", why),
    };
    let access = token("xat");
    shared
        .users
        .lock()
        .unwrap()
        .insert(access.clone(), granted.user.clone());
    let mut answer = json!({
        "token_type": "bearer",
        "expires_in": 7200,
        "access_token": access,
        "scope": granted.scope,
    });
    if granted.scope.split(' ').any(|s| s == "offline.access") {
        let refresh = token("xrt");
        shared.live.lock().unwrap().insert(refresh.clone());
        answer["refresh_token"] = json!(refresh);
    }
    axum::Json(answer).into_response()
}

async fn users_me(State(shared): State<Arc<Shared>>, headers: HeaderMap) -> Response {
    let presented = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("");
    let Some(user) = shared.users.lock().unwrap().get(presented).cloned() else {
        return (
            StatusCode::UNAUTHORIZED,
            axum::Json(json!({"title": "Unauthorized", "type": "about:blank", "status": 401, "detail": "Unauthorized"})),
        )
            .into_response();
    };
    axum::Json(json!({"data": {
        "id": user.id,
        "name": user.name,
        "username": user.handle,
        "profile_image_url": format!("https://pbs.twimg.com/profile_images/{}/normal.jpg", user.id),
    }}))
    .into_response()
}
