//! LinkedIn's OAuth server and the API calls that name a connected member or
//! page, on one loopback origin (www.linkedin.com and api.linkedin.com).
//!
//! Token endpoint (`POST /oauth/v2/accessToken`): client credentials in the
//! form body; the refresh token does not rotate, and
//! `refresh_token_expires_in` counts down from the first login. Apps
//! without programmatic refresh tokens get an access token only. Token
//! introspection (`POST /oauth/v2/introspectToken`, form `client_id`,
//! `client_secret`, `token`) answers `{active, client_id, authorized_at,
//! created_at, status, expires_at, scope, auth_type}`.
//!
//! Authorization (`GET /oauth/v2/authorization`): the consent screen, scopes
//! space-separated; its code is redeemed once at the token endpoint. The
//! token answer lists scopes comma-separated, as LinkedIn's does.
//!
//! This file holds the OAuth side; `api` serves `/v2/userinfo` and the
//! versioned `/rest/` calls.

mod api;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::json;
use url::Url;

use super::ScriptedResponse;
use super::authorize::{Desk, Rules, User};
use super::server::{Running, Script, token};

pub const LINKEDIN_REFRESH_LIFETIME: u64 = 365 * 86_400;

/// The scopes a refresh answer names for tokens issued without a consent
/// screen (`issue`).
const ISSUED_SCOPE: &str = "openid,profile,w_member_social";

/// What LinkedIn knows about one access token.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LinkedinTokenState {
    Active,
    Expired,
    Revoked,
}

/// An organization page, as `/rest/organizations/{id}` describes it.
#[derive(Clone, Debug)]
pub struct LinkedinOrganization {
    pub id: u64,
    pub localized_name: String,
    pub vanity_name: String,
}

impl LinkedinOrganization {
    pub fn new(id: u64, localized_name: &str, vanity_name: &str) -> Self {
        Self {
            id,
            localized_name: localized_name.into(),
            vanity_name: vanity_name.into(),
        }
    }
}

/// The member who consented, and what they granted.
#[derive(Clone, Debug)]
struct Member {
    user: User,
    scopes: Vec<String>,
}

impl Member {
    fn has_scope(&self, scope: &str) -> bool {
        self.scopes.iter().any(|s| s == scope)
    }
}

struct AccessInfo {
    state: LinkedinTokenState,
    created_at: i64,
    expires_at: i64,
    /// None for tokens issued without a consent screen (`issue`).
    member: Option<Member>,
}

/// One member's role on one page (`organizationAcls`).
#[derive(Clone, Debug)]
struct Role {
    member_id: String,
    organization: LinkedinOrganization,
    role: String,
}

struct Shared {
    client_id: String,
    client_secret: String,
    /// refresh token -> when it was issued (first login), and to whom
    issued: Mutex<HashMap<String, (Instant, Option<Member>)>>,
    access: Mutex<HashMap<String, AccessInfo>>,
    introspections: Mutex<u64>,
    refreshes: Mutex<u64>,
    /// Access-token lifetime handed out (60 days; the demo shortens it).
    access_lifetime: Mutex<u64>,
    /// Whether the app has programmatic refresh tokens (approved partners).
    programmatic_refresh: AtomicBool,
    roles: Mutex<Vec<Role>>,
    /// Canned answers for the token endpoints, served first.
    script: Script,
    desk: Desk,
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
            access: Mutex::new(HashMap::new()),
            introspections: Mutex::new(0),
            refreshes: Mutex::new(0),
            access_lifetime: Mutex::new(ACCESS_LIFETIME),
            programmatic_refresh: AtomicBool::new(true),
            roles: Mutex::new(Vec::new()),
            script: Script::default(),
            desk: Desk::default(),
        });
        let app = Router::new()
            .route("/oauth/v2/accessToken", axum::routing::post(token_endpoint))
            .route(
                "/oauth/v2/introspectToken",
                axum::routing::post(introspect_endpoint),
            )
            .route("/oauth/v2/authorization", axum::routing::get(authorize))
            .merge(api::routes())
            .with_state(shared.clone());
        Ok(Self {
            server: Running::start(app).await?,
            shared,
        })
    }

    /// The next call to either token endpoint is answered with exactly this.
    pub fn script_next(&self, response: ScriptedResponse) {
        self.shared.script.push(response);
    }

    /// Requests to the token endpoints so far, scripted answers included.
    pub fn requests(&self) -> u64 {
        self.shared.script.requests()
    }

    pub fn token_url(&self) -> Url {
        self.server.url("/oauth/v2/accessToken")
    }

    pub fn introspect_url(&self) -> Url {
        self.server.url("/oauth/v2/introspectToken")
    }

    /// The consent screen (`https://www.linkedin.com/oauth/v2/authorization`).
    pub fn authorize_url(&self) -> Url {
        self.server.url("/oauth/v2/authorization")
    }

    /// The API base (`https://api.linkedin.com/`): `v2/userinfo`, `rest/...`.
    pub fn api_url(&self) -> Url {
        self.server.url("/")
    }

    /// The consent screen and its codes.
    pub fn desk(&self) -> &Desk {
        &self.shared.desk
    }

    /// Apps without programmatic refresh (the default for apps that are
    /// not approved partners) get no refresh token from a code exchange.
    pub fn set_programmatic_refresh(&self, on: bool) {
        self.shared.programmatic_refresh.store(on, Ordering::SeqCst);
    }

    /// Makes `member_id` an approved administrator of `organization`.
    pub fn add_organization(&self, member_id: &str, organization: LinkedinOrganization) {
        self.add_organization_role(member_id, organization, "ADMINISTRATOR");
    }

    /// Gives `member_id` an approved `role` (`ADMINISTRATOR`,
    /// `DIRECT_SPONSORED_CONTENT_POSTER`, ...) on `organization`.
    pub fn add_organization_role(
        &self,
        member_id: &str,
        organization: LinkedinOrganization,
        role: &str,
    ) {
        self.shared.roles.lock().unwrap().push(Role {
            member_id: member_id.into(),
            organization,
            role: role.into(),
        });
    }

    /// Lifetime of access tokens issued from now on.
    pub fn set_access_lifetime(&self, seconds: u64) {
        *self.shared.access_lifetime.lock().unwrap() = seconds;
    }

    /// A login `age` ago: the refresh token's lifetime has run down by that.
    pub fn issue(&self, age: Duration) -> (String, String) {
        let refresh = token("AQX");
        let at = Instant::now().checked_sub(age).unwrap_or_else(Instant::now);
        self.shared
            .issued
            .lock()
            .unwrap()
            .insert(refresh.clone(), (at, None));
        (self.shared.new_access(None), refresh)
    }

    /// An app without programmatic refresh: an access token only.
    pub fn issue_access_only(&self) -> String {
        self.shared.new_access(None)
    }

    /// Moves an access token to `state` (the member revoked the app, or
    /// its 60 days ran out).
    pub fn set_access_state(&self, access_token: &str, state: LinkedinTokenState) {
        if let Some(info) = self.shared.access.lock().unwrap().get_mut(access_token) {
            info.state = state;
        }
    }

    pub fn introspections(&self) -> u64 {
        *self.shared.introspections.lock().unwrap()
    }

    /// Calls to either token endpoint.
    pub fn calls(&self) -> u64 {
        *self.shared.introspections.lock().unwrap() + *self.shared.refreshes.lock().unwrap()
    }

    /// Whether LinkedIn would refresh with this token.
    pub fn is_live(&self, refresh_token: &str) -> bool {
        self.shared
            .issued
            .lock()
            .unwrap()
            .contains_key(refresh_token)
    }

    /// The member revoked the app: its refresh token stops working.
    pub fn revoke(&self, refresh_token: &str) {
        self.shared.issued.lock().unwrap().remove(refresh_token);
    }
}

const ACCESS_LIFETIME: u64 = 5_184_000;

impl Shared {
    fn new_access(&self, member: Option<Member>) -> String {
        let access = token("AQV");
        let now = chrono::Utc::now().timestamp();
        let lifetime = *self.access_lifetime.lock().unwrap() as i64;
        self.access.lock().unwrap().insert(
            access.clone(),
            AccessInfo {
                state: LinkedinTokenState::Active,
                created_at: now,
                expires_at: now + lifetime,
                member,
            },
        );
        access
    }

    fn client_authenticated(&self, form: &HashMap<String, String>) -> bool {
        form.get("client_id") == Some(&self.client_id)
            && form.get("client_secret") == Some(&self.client_secret)
    }
}

async fn introspect_endpoint(State(shared): State<Arc<Shared>>, body: Bytes) -> Response {
    if let Some(response) = shared.script.next() {
        return response;
    }
    *shared.introspections.lock().unwrap() += 1;
    let form: HashMap<String, String> = url::form_urlencoded::parse(&body).into_owned().collect();
    if !shared.client_authenticated(&form) {
        return error(
            StatusCode::UNAUTHORIZED,
            "invalid_client",
            "Client authentication failed",
        );
    }
    let presented = form.get("token").cloned().unwrap_or_default();
    let access = shared.access.lock().unwrap();
    let Some(info) = access.get(&presented) else {
        return axum::Json(json!({"active": false})).into_response();
    };
    let now = chrono::Utc::now().timestamp();
    let state = match info.state {
        LinkedinTokenState::Active if info.expires_at <= now => LinkedinTokenState::Expired,
        other => other,
    };
    let status = match state {
        LinkedinTokenState::Active => "active",
        LinkedinTokenState::Expired => "expired",
        LinkedinTokenState::Revoked => "revoked",
    };
    let scope = info
        .member
        .as_ref()
        .map_or_else(|| ISSUED_SCOPE.to_owned(), |m| m.scopes.join(","));
    axum::Json(json!({
        "active": state == LinkedinTokenState::Active,
        "client_id": shared.client_id,
        "authorized_at": info.created_at,
        "created_at": info.created_at,
        "status": status,
        "expires_at": info.expires_at,
        "scope": scope,
        "auth_type": "3L",
    }))
    .into_response()
}

fn error(status: StatusCode, code: &str, description: &str) -> Response {
    (
        status,
        axum::Json(json!({"error": code, "error_description": description})),
    )
        .into_response()
}

async fn authorize(
    State(shared): State<Arc<Shared>>,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    shared
        .desk
        .authorize(&query, &shared.client_id, Rules::default())
}

async fn token_endpoint(State(shared): State<Arc<Shared>>, body: Bytes) -> Response {
    if let Some(response) = shared.script.next() {
        return response;
    }
    *shared.refreshes.lock().unwrap() += 1;
    let form: HashMap<String, String> = url::form_urlencoded::parse(&body).into_owned().collect();
    if !shared.client_authenticated(&form) {
        return error(
            StatusCode::UNAUTHORIZED,
            "invalid_client",
            "Client authentication failed",
        );
    }
    match form.get("grant_type").map(String::as_str) {
        Some("refresh_token") => refresh_grant(&shared, &form),
        Some("authorization_code") => code_grant(&shared, &form),
        _ => error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "A required parameter \"grant_type\" is missing",
        ),
    }
}

fn refresh_grant(shared: &Shared, form: &HashMap<String, String>) -> Response {
    let presented = form.get("refresh_token").cloned().unwrap_or_default();
    let Some((issued, member)) = shared.issued.lock().unwrap().get(&presented).cloned() else {
        return error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "The provided authorization grant or refresh token is invalid, expired or revoked",
        );
    };
    let remaining = LINKEDIN_REFRESH_LIFETIME.saturating_sub(issued.elapsed().as_secs());
    let lifetime = *shared.access_lifetime.lock().unwrap();
    let scope = member
        .as_ref()
        .map_or_else(|| ISSUED_SCOPE.to_owned(), |m| m.scopes.join(","));
    axum::Json(json!({
        "access_token": shared.new_access(member),
        "expires_in": lifetime,
        "refresh_token": presented,
        "refresh_token_expires_in": remaining,
        "scope": scope,
    }))
    .into_response()
}

/// `grant_type=authorization_code`: the code from the consent screen,
/// redeemed once with the redirect URI it was issued for.
fn code_grant(shared: &Shared, form: &HashMap<String, String>) -> Response {
    let granted = match shared.desk.redeem(
        form.get("code").map(String::as_str).unwrap_or(""),
        form.get("redirect_uri").map(String::as_str),
        form.get("code_verifier").map(String::as_str),
    ) {
        Ok(granted) => granted,
        // LinkedIn gives one text for every refused code.
        Err(_) => {
            return error(
                StatusCode::BAD_REQUEST,
                "invalid_request",
                "Unable to retrieve access token: appid/redirect uri/code verifier does not match authorization code. Or authorization code expired. Or external member binding exists",
            );
        }
    };
    let member = Member {
        user: granted.user,
        scopes: granted.scopes,
    };
    let scope = member.scopes.join(",");
    let lifetime = *shared.access_lifetime.lock().unwrap();
    let mut answer = json!({
        "access_token": shared.new_access(Some(member.clone())),
        "expires_in": lifetime,
        "scope": scope,
    });
    if shared.programmatic_refresh.load(Ordering::SeqCst) {
        let refresh = token("AQX");
        shared
            .issued
            .lock()
            .unwrap()
            .insert(refresh.clone(), (Instant::now(), Some(member)));
        answer["refresh_token"] = json!(refresh);
        answer["refresh_token_expires_in"] = json!(LINKEDIN_REFRESH_LIFETIME);
    }
    axum::Json(answer).into_response()
}
