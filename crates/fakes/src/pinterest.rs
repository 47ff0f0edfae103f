//! Pinterest's token endpoint (`POST /v5/oauth/token`): Basic client
//! authentication, a new refresh token on every refresh with the old one
//! dead at once (the strict reading: whether it dies at once is
//! unconfirmed), `refresh_token_expires_in` counting 60 days. A refused
//! client gets Pinterest's API error shape `{"code":2,"message":
//! "Authentication failed."}`; a refused refresh token gets RFC 6749's
//! `invalid_grant` (assumption: Pinterest documents no error body here).
//! A spent token presented again revokes its whole family.
//!
//! The consent screen (`GET /oauth/`, scopes comma-separated) and the code
//! grant at the same token endpoint (Basic auth, `continuous_refresh`
//! recorded as for a refresh) start a family; `GET /v5/user_account` names
//! its user to the family's access tokens.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use serde_json::json;
use url::Url;

use super::ScriptedResponse;
use super::authorize::{Desk, Rules, User};
use super::server::{Running, Script, bearer, token};

pub const PINTEREST_REFRESH_LIFETIME: u64 = 60 * 86_400;

#[derive(Clone, Debug)]
pub struct PinterestGrant {
    pub access_lifetime: u64,
    /// Every n-th refresh of this family fails with a 503.
    pub fail_every: Option<u32>,
    /// The user disconnects the app after this many refreshes.
    pub revoke_after: Option<u32>,
}

impl Default for PinterestGrant {
    fn default() -> Self {
        Self {
            access_lifetime: 30 * 86_400,
            fail_every: None,
            revoke_after: None,
        }
    }
}

/// The scopes a family issued without a consent screen (`issue`) holds.
const ISSUED_SCOPE: &str = "boards:read pins:read pins:write user_accounts:read";

struct Family {
    spec: PinterestGrant,
    revoked: bool,
    calls: u32,
    refreshes: u32,
    /// Who consented, for families that came through the consent screen.
    owner: Option<User>,
    scopes: Vec<String>,
}

#[derive(Default)]
struct FakeState {
    families: Vec<Family>,
    /// refresh token -> (family, still valid)
    tokens: HashMap<String, (usize, bool)>,
    reuse_detected: u64,
    calls: u64,
    continuous_refresh_seen: Vec<Option<String>>,
    /// refresh token -> the answer its every refresh gets (one account's own
    /// trouble, whatever order concurrent calls arrive in).
    answers: HashMap<String, ScriptedResponse>,
    /// access token -> its family, for the API
    access: HashMap<String, usize>,
}

struct Shared {
    client_id: String,
    client_secret: String,
    state: Mutex<FakeState>,
    script: Script,
    desk: Desk,
}

pub struct FakePinterest {
    server: Running,
    shared: Arc<Shared>,
}

impl FakePinterest {
    pub async fn start(client_id: &str, client_secret: &str) -> std::io::Result<Self> {
        let shared = Arc::new(Shared {
            client_id: client_id.into(),
            client_secret: client_secret.into(),
            state: Mutex::new(FakeState::default()),
            script: Script::default(),
            desk: Desk::default(),
        });
        let app = Router::new()
            .route("/v5/oauth/token", axum::routing::post(token_endpoint))
            .route("/oauth/", axum::routing::get(authorize))
            .route("/v5/user_account", axum::routing::get(user_account))
            .with_state(shared.clone());
        Ok(Self {
            server: Running::start(app).await?,
            shared,
        })
    }

    pub fn token_url(&self) -> Url {
        self.server.url("/v5/oauth/token")
    }

    /// The consent screen (`https://www.pinterest.com/oauth/`).
    pub fn authorize_url(&self) -> Url {
        self.server.url("/oauth/")
    }

    /// The API base (`https://api.pinterest.com/v5/`).
    pub fn api_url(&self) -> Url {
        self.server.url("/v5/")
    }

    /// The consent screen and its codes.
    pub fn desk(&self) -> &Desk {
        &self.shared.desk
    }

    /// A connected user's (access, refresh) pair.
    pub fn issue(&self, spec: PinterestGrant) -> (String, String) {
        let scopes = ISSUED_SCOPE.split(' ').map(str::to_owned).collect();
        self.shared
            .state
            .lock()
            .unwrap()
            .new_family(spec, None, scopes)
    }

    pub fn is_live(&self, refresh_token: &str) -> bool {
        let state = self.shared.state.lock().unwrap();
        state
            .tokens
            .get(refresh_token)
            .is_some_and(|(family, valid)| *valid && !state.families[*family].revoked)
    }

    /// The user disconnected the app: the family dies.
    pub fn revoke(&self, refresh_token: &str) {
        let mut state = self.shared.state.lock().unwrap();
        if let Some((family, _)) = state.tokens.get(refresh_token).copied() {
            state.families[family].revoked = true;
        }
    }

    pub fn reuse_detected(&self) -> u64 {
        self.shared.state.lock().unwrap().reuse_detected
    }

    pub fn calls(&self) -> u64 {
        self.shared.state.lock().unwrap().calls
    }

    /// The `continuous_refresh` field of each refresh request, in order.
    pub fn continuous_refresh_seen(&self) -> Vec<Option<String>> {
        self.shared
            .state
            .lock()
            .unwrap()
            .continuous_refresh_seen
            .clone()
    }

    /// Every refresh presenting `refresh_token` is answered with `answer`.
    pub fn answer_for(&self, refresh_token: &str, answer: ScriptedResponse) {
        self.shared
            .state
            .lock()
            .unwrap()
            .answers
            .insert(refresh_token.to_owned(), answer);
    }

    pub fn script_next(&self, response: ScriptedResponse) {
        self.shared.script.push(response);
    }

    /// Requests to any route so far, scripted answers included.
    pub fn requests(&self) -> u64 {
        self.shared.script.requests()
    }
}

impl FakeState {
    /// A new family's (access, refresh) pair.
    fn new_family(
        &mut self,
        spec: PinterestGrant,
        owner: Option<User>,
        scopes: Vec<String>,
    ) -> (String, String) {
        let family = self.families.len();
        self.families.push(Family {
            spec,
            revoked: false,
            calls: 0,
            refreshes: 0,
            owner,
            scopes,
        });
        let refresh = token("pinr");
        self.tokens.insert(refresh.clone(), (family, true));
        let access = token("pina");
        self.access.insert(access.clone(), family);
        (access, refresh)
    }
}

fn oauth_error(code: &str, description: &str) -> Response {
    (
        StatusCode::BAD_REQUEST,
        axum::Json(json!({"error": code, "error_description": description})),
    )
        .into_response()
}

async fn token_endpoint(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let form: HashMap<String, String> = url::form_urlencoded::parse(&body).into_owned().collect();
    let mut state = shared.state.lock().unwrap();
    state.calls += 1;
    state
        .continuous_refresh_seen
        .push(form.get("continuous_refresh").cloned());
    if let Some(response) = shared.script.next() {
        return response;
    }
    let presented = form.get("refresh_token").map(String::as_str).unwrap_or("");
    if let Some(answer) = state.answers.get(presented) {
        return answer.clone().into_response();
    }
    let expected = base64::engine::general_purpose::STANDARD
        .encode(format!("{}:{}", shared.client_id, shared.client_secret));
    let authorized = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Basic "))
        .is_some_and(|v| v == expected);
    if !authorized {
        return (
            StatusCode::UNAUTHORIZED,
            axum::Json(json!({"code": 2, "message": "Authentication failed."})),
        )
            .into_response();
    }
    match form.get("grant_type").map(String::as_str) {
        Some("refresh_token") => {}
        Some("authorization_code") => return code_grant(&shared.desk, &mut state, &form),
        _ => {
            return oauth_error(
                "unsupported_grant_type",
                "grant_type must be authorization_code or refresh_token",
            );
        }
    }
    let presented = form.get("refresh_token").cloned().unwrap_or_default();
    let Some((family, valid)) = state.tokens.get(&presented).copied() else {
        return oauth_error("invalid_grant", "Invalid refresh token.");
    };
    if state.families[family].revoked {
        return oauth_error("invalid_grant", "Invalid refresh token.");
    }
    if !valid {
        state.families[family].revoked = true;
        state.reuse_detected += 1;
        return oauth_error("invalid_grant", "Invalid refresh token.");
    }
    let fam = &mut state.families[family];
    fam.calls += 1;
    if fam
        .spec
        .fail_every
        .is_some_and(|n| n > 0 && fam.calls.is_multiple_of(n))
    {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            [(header::RETRY_AFTER, "2")],
            "service unavailable",
        )
            .into_response();
    }
    if fam.spec.revoke_after.is_some_and(|n| fam.refreshes >= n) {
        fam.revoked = true;
        return oauth_error("invalid_grant", "Invalid refresh token.");
    }
    fam.refreshes += 1;
    let lifetime = fam.spec.access_lifetime;
    let scope = fam.scopes.join(" ");
    let next = token("pinr");
    let access = token("pina");
    state.tokens.insert(presented, (family, false));
    state.tokens.insert(next.clone(), (family, true));
    state.access.insert(access.clone(), family);
    axum::Json(json!({
        "access_token": access,
        "refresh_token": next,
        "response_type": "refresh_token",
        "token_type": "bearer",
        "expires_in": lifetime,
        "refresh_token_expires_in": PINTEREST_REFRESH_LIFETIME,
        "scope": scope,
    }))
    .into_response()
}

async fn authorize(
    State(shared): State<Arc<Shared>>,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    let rules = Rules {
        scope_separator: ',',
        ..Rules::default()
    };
    shared.desk.authorize(&query, &shared.client_id, rules)
}

/// `grant_type=authorization_code`: a new family for the user who
/// consented. Pinterest documents no error body for a refused code; RFC
/// 6749's `invalid_grant` is assumed, as for a refused refresh token.
fn code_grant(desk: &Desk, state: &mut FakeState, form: &HashMap<String, String>) -> Response {
    let granted = match desk.redeem(
        form.get("code").map(String::as_str).unwrap_or(""),
        form.get("redirect_uri").map(String::as_str),
        form.get("code_verifier").map(String::as_str),
    ) {
        Ok(granted) => granted,
        Err(why) => return oauth_error("invalid_grant", why),
    };
    let spec = PinterestGrant::default();
    let lifetime = spec.access_lifetime;
    let scope = granted.scopes.join(" ");
    let (access, refresh) = state.new_family(spec, Some(granted.user), granted.scopes);
    axum::Json(json!({
        "access_token": access,
        "refresh_token": refresh,
        "response_type": "authorization_code",
        "token_type": "bearer",
        "expires_in": lifetime,
        "refresh_token_expires_in": PINTEREST_REFRESH_LIFETIME,
        "scope": scope,
    }))
    .into_response()
}

/// `GET /v5/user_account`: the token's user. Pinterest's error body for a
/// token without `user_accounts:read` is not documented; its generic
/// `{code, message}` shape is assumed.
async fn user_account(State(shared): State<Arc<Shared>>, headers: HeaderMap) -> Response {
    let state = shared.state.lock().unwrap();
    let family = bearer(&headers)
        .and_then(|t| state.access.get(t))
        .map(|f| &state.families[*f])
        .filter(|f| !f.revoked);
    let Some(family) = family else {
        return (
            StatusCode::UNAUTHORIZED,
            axum::Json(json!({"code": 2, "message": "Authentication failed."})),
        )
            .into_response();
    };
    if !family.scopes.iter().any(|s| s == "user_accounts:read") {
        return (
            StatusCode::FORBIDDEN,
            axum::Json(json!({"code": 3, "message": "Not authorized to access the user account: missing scope user_accounts:read"})),
        )
            .into_response();
    }
    let Some(user) = &family.owner else {
        return (
            StatusCode::UNAUTHORIZED,
            axum::Json(json!({"code": 2, "message": "Authentication failed."})),
        )
            .into_response();
    };
    axum::Json(json!({
        "account_type": "BUSINESS",
        "id": user.id,
        "profile_image": format!("https://i.pinimg.com/600x600_R/{}.jpg", user.id),
        "website_url": format!("https://{}.example", user.handle),
        "username": user.handle,
        "about": "",
        "business_name": user.name,
        "board_count": 3,
        "pin_count": 42,
        "follower_count": 17,
        "following_count": 5,
        "monthly_views": 1200,
    }))
    .into_response()
}
