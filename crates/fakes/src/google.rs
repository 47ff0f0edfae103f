//! Google's token endpoint (`POST /token`) as documented: client id and
//! secret in the form body, `{access_token, expires_in, scope, token_type}`
//! without a new refresh token, `refresh_token_expires_in` only for
//! time-based grants, and 400 `invalid_grant` "Token has been expired or
//! revoked." for any refresh token it will not honour.

use std::collections::HashMap;
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

pub const YOUTUBE_UPLOAD_SCOPE: &str = "https://www.googleapis.com/auth/youtube.upload";

/// One user's grant.
#[derive(Clone, Debug)]
pub struct GoogleGrant {
    pub access_lifetime: u64,
    pub scope: String,
    /// Time-based access: the grant's remaining seconds.
    pub refresh_expires_in: Option<u64>,
    /// Every n-th refresh of this grant fails with a 503.
    pub fail_every: Option<u32>,
}

impl Default for GoogleGrant {
    fn default() -> Self {
        Self {
            access_lifetime: 3599,
            scope: format!(
                "{YOUTUBE_UPLOAD_SCOPE} https://www.googleapis.com/auth/youtube.readonly"
            ),
            refresh_expires_in: None,
            fail_every: None,
        }
    }
}

struct Grant {
    spec: GoogleGrant,
    live: bool,
    calls: u32,
}

struct Shared {
    client_id: String,
    client_secret: String,
    grants: Mutex<HashMap<String, Grant>>,
    calls: Mutex<u64>,
    script: Script,
}

pub struct FakeGoogle {
    server: Running,
    shared: Arc<Shared>,
}

impl FakeGoogle {
    pub async fn start(client_id: &str, client_secret: &str) -> std::io::Result<Self> {
        let shared = Arc::new(Shared {
            client_id: client_id.into(),
            client_secret: client_secret.into(),
            grants: Mutex::new(HashMap::new()),
            calls: Mutex::new(0),
            script: Script::default(),
        });
        let app = Router::new()
            .route("/token", axum::routing::post(token_endpoint))
            .with_state(shared.clone());
        Ok(Self {
            server: Running::start(app).await?,
            shared,
        })
    }

    pub fn token_url(&self) -> Url {
        self.server.url("/token")
    }

    /// A user's consent: (access token, refresh token).
    pub fn issue(&self, grant: GoogleGrant) -> (String, String) {
        let refresh = token("1//0g");
        self.shared.grants.lock().unwrap().insert(
            refresh.clone(),
            Grant {
                spec: grant,
                live: true,
                calls: 0,
            },
        );
        (token("ya29"), refresh)
    }

    /// The user removed the app's access (or the grant expired).
    pub fn revoke(&self, refresh_token: &str) {
        if let Some(grant) = self.shared.grants.lock().unwrap().get_mut(refresh_token) {
            grant.live = false;
        }
    }

    pub fn is_live(&self, refresh_token: &str) -> bool {
        self.shared
            .grants
            .lock()
            .unwrap()
            .get(refresh_token)
            .is_some_and(|g| g.live)
    }

    pub fn calls(&self) -> u64 {
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

fn error(status: StatusCode, code: &str, description: &str) -> Response {
    (
        status,
        axum::Json(json!({"error": code, "error_description": description})),
    )
        .into_response()
}

async fn token_endpoint(State(shared): State<Arc<Shared>>, body: Bytes) -> Response {
    *shared.calls.lock().unwrap() += 1;
    if let Some(response) = shared.script.next() {
        return response;
    }
    let form: HashMap<String, String> = url::form_urlencoded::parse(&body).into_owned().collect();
    if form.get("client_id") != Some(&shared.client_id)
        || form.get("client_secret") != Some(&shared.client_secret)
    {
        return error(StatusCode::UNAUTHORIZED, "invalid_client", "Unauthorized");
    }
    let grant_type = form.get("grant_type").map(String::as_str).unwrap_or("");
    if grant_type != "refresh_token" {
        return error(
            StatusCode::BAD_REQUEST,
            "unsupported_grant_type",
            &format!("Invalid grant_type: {grant_type}"),
        );
    }
    let presented = form.get("refresh_token").cloned().unwrap_or_default();
    let mut grants = shared.grants.lock().unwrap();
    let Some(grant) = grants.get_mut(&presented).filter(|g| g.live) else {
        return error(
            StatusCode::BAD_REQUEST,
            "invalid_grant",
            "Token has been expired or revoked.",
        );
    };
    grant.calls += 1;
    if grant
        .spec
        .fail_every
        .is_some_and(|n| n > 0 && grant.calls.is_multiple_of(n))
    {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            [(axum::http::header::RETRY_AFTER, "2")],
            "backend unavailable",
        )
            .into_response();
    }
    let mut body = json!({
        "access_token": token("ya29"),
        "expires_in": grant.spec.access_lifetime,
        "scope": grant.spec.scope,
        "token_type": "Bearer",
    });
    if let Some(left) = grant.spec.refresh_expires_in {
        body["refresh_token_expires_in"] = json!(left);
    }
    axum::Json(body).into_response()
}
