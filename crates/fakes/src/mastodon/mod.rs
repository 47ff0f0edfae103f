//! A Mastodon instance: `GET /api/v1/accounts/verify_credentials` (200 with
//! the account, 401 for an invalid or revoked token, 403 for a disabled
//! login, 422 for an app token, 429 with `X-RateLimit-Reset` as an ISO 8601
//! timestamp), and the OAuth server behind the connect flow (`oauth`): app
//! registration, the authorization page, the token and revocation
//! endpoints.

mod oauth;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use serde_json::json;

use super::ScriptedResponse;
use super::authorize::{Consent, Desk, User};
use super::server::{Running, Script, token};

pub use oauth::RegisteredApp as MastodonApp;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MastodonTokenState {
    Live,
    Revoked,
    Disabled,
}

/// A user token: its state, and whom and which app it was issued to (none
/// for tokens issued directly by a test).
#[derive(Clone, Debug)]
struct UserToken {
    state: MastodonTokenState,
    user: Option<User>,
    client_id: Option<String>,
}

#[derive(Default)]
struct Shared {
    origin: OnceLock<String>,
    tokens: Mutex<HashMap<String, UserToken>>,
    calls: Mutex<u32>,
    script: Script,
    oauth: oauth::OAuthState,
    desk: Desk,
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
            .merge(oauth::routes())
            .with_state(shared.clone());
        let server = Running::start(app).await?;
        let _ = shared.origin.set(format!("http://{}", server.addr));
        Ok(Self { server, shared })
    }

    /// `http://127.0.0.1:<port>`, the instance's origin.
    pub fn origin(&self) -> String {
        format!("http://{}", self.server.addr)
    }

    pub fn issue(&self, state: MastodonTokenState) -> String {
        let access = token("mast");
        self.shared.tokens.lock().unwrap().insert(
            access.clone(),
            UserToken {
                state,
                user: None,
                client_id: None,
            },
        );
        access
    }

    /// Changes a token's state (the user revokes the app, an admin disables
    /// the login).
    pub fn set_state(&self, access: &str, state: MastodonTokenState) {
        if let Some(issued) = self.shared.tokens.lock().unwrap().get_mut(access) {
            issued.state = state;
        }
    }

    /// Calls to verify_credentials so far.
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

    /// The next authorization page is answered this way (a random user
    /// approves when nothing is queued).
    pub fn next_consent(&self, consent: Consent) {
        self.shared.desk.next_consent(consent);
    }

    /// The authorization page's desk: every request it saw.
    pub fn desk(&self) -> &Desk {
        &self.shared.desk
    }

    /// `POST /api/v1/apps` calls that registered an app.
    pub fn registrations(&self) -> u32 {
        self.shared.oauth.registrations()
    }

    /// The apps the instance knows now.
    pub fn apps(&self) -> Vec<MastodonApp> {
        self.shared.oauth.apps()
    }

    /// The instance loses every app, and the tokens issued to them (an
    /// admin removed them, the server was rebuilt).
    pub fn forget_apps(&self) {
        let forgotten = self.shared.oauth.forget_apps();
        self.shared.tokens.lock().unwrap().retain(|_, issued| {
            issued
                .client_id
                .as_ref()
                .is_none_or(|id| !forgotten.contains(id))
        });
    }

    /// App tokens (client-credentials grants) not revoked.
    pub fn live_app_tokens(&self) -> usize {
        self.shared.oauth.live_app_tokens()
    }

    /// Whether a user token issued by the token endpoint is still live.
    pub fn is_live(&self, access: &str) -> bool {
        self.shared
            .tokens
            .lock()
            .unwrap()
            .get(access)
            .is_some_and(|t| t.state == MastodonTokenState::Live)
    }
}

impl Shared {
    fn issue_for(&self, user: User, client_id: &str) -> String {
        let access = token("mast");
        self.tokens.lock().unwrap().insert(
            access.clone(),
            UserToken {
                state: MastodonTokenState::Live,
                user: Some(user),
                client_id: Some(client_id.to_owned()),
            },
        );
        access
    }
}

fn bearer(headers: &HeaderMap) -> &str {
    headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("")
}

async fn verify_credentials(State(shared): State<Arc<Shared>>, headers: HeaderMap) -> Response {
    *shared.calls.lock().unwrap() += 1;
    if let Some(response) = shared.script.next() {
        return response;
    }
    let presented = bearer(&headers);
    let issued = shared.tokens.lock().unwrap().get(presented).cloned();
    let fail =
        |status, message: &str| (status, axum::Json(json!({"error": message}))).into_response();
    let Some(issued) = issued else {
        if shared.oauth.is_app_token(presented) {
            return fail(
                StatusCode::UNPROCESSABLE_ENTITY,
                "This method requires an authenticated user",
            );
        }
        return fail(StatusCode::UNAUTHORIZED, "The access token is invalid");
    };
    match issued.state {
        MastodonTokenState::Revoked => {
            fail(StatusCode::UNAUTHORIZED, "The access token was revoked")
        }
        MastodonTokenState::Disabled => {
            fail(StatusCode::FORBIDDEN, "Your login is currently disabled")
        }
        MastodonTokenState::Live => {
            let user = issued
                .user
                .unwrap_or_else(|| User::new("109", "tester", "Tester"));
            let origin = shared.origin.get().cloned().unwrap_or_default();
            axum::Json(json!({
                "id": user.id,
                "username": user.handle,
                "acct": user.handle,
                "display_name": user.name,
                "url": format!("{origin}/@{}", user.handle),
                "avatar": format!("{origin}/avatars/original/{}.png", user.id),
            }))
            .into_response()
        }
    }
}
