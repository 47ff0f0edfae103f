//! Meta's Graph hosts. Instagram Login (`graph.instagram.com`,
//! `ig_refresh_token`) and Threads (`graph.threads.net`, `th_refresh_token`)
//! share `GET /refresh_access_token?grant_type=..&access_token=..`, answered
//! with `{access_token, token_type, expires_in}` or a Graph error body.
//!
//! Facebook Login (`graph.facebook.com`, `FakeGraph::facebook`) adds
//! `GET /debug_token?input_token=..&access_token=<app_id>|<app_secret>`,
//! answered `{"data":{app_id, type, application, expires_at (0: never),
//! data_access_expires_at, is_valid, scopes, user_id, error?}}` (the
//! inspected token's problem in `data.error` with `code`, `message`,
//! `subcode`; a refused app token as a top-level Graph error), and
//! `GET /oauth/access_token?grant_type=fb_exchange_token&client_id
//! &client_secret&fb_exchange_token=..` for long-lived user tokens.
//!
//! A fake built for an app (`facebook`, `instagram_app`, `threads_app`) also
//! serves the login flows that issue these tokens (`meta_login`), so an
//! account connected through it is then refreshed or checked by it.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::json;
use url::Url;

use super::ScriptedResponse;
use super::meta_login::{self, Grantee, Login};
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
    /// The user must log in on facebook.com to clear a checkpoint: 190/459.
    Checkpointed,
}

/// Facebook token kinds, as `debug_token` names them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GraphTokenKind {
    /// Never expires (`expires_at: 0`).
    Page,
    /// A long-lived user token (about 60 days).
    User,
}

/// Which of Meta's hosts a fake plays.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Platform {
    Facebook,
    Instagram,
    Threads,
}

#[derive(Clone, Debug)]
pub(crate) struct TokenInfo {
    pub(crate) state: GraphTokenState,
    pub(crate) kind: GraphTokenKind,
    /// Unix time; 0 = never.
    pub(crate) expires_at: i64,
    /// Issued by a code exchange: about an hour, never refreshable, only
    /// exchangeable for a long-lived one.
    pub(crate) short_lived: bool,
    /// The user (and the permissions granted) behind a token issued through
    /// the login flow; None for tokens a test made with `issue*`.
    pub(crate) grantee: Option<Arc<Grantee>>,
}

impl TokenInfo {
    /// The token's state at `now`: a token past its expiry is expired,
    /// whatever else happened to it.
    pub(crate) fn state_at(&self, now: i64) -> GraphTokenState {
        if self.expires_at != 0 && self.expires_at <= now && self.state == GraphTokenState::Live {
            GraphTokenState::Expired
        } else {
            self.state
        }
    }

    fn issued(kind: GraphTokenKind, expires_at: i64) -> Self {
        Self {
            state: GraphTokenState::Live,
            kind,
            expires_at,
            short_lived: false,
            grantee: None,
        }
    }
}

pub(crate) struct Shared {
    pub(crate) platform: Platform,
    grant_type: &'static str,
    /// The app's id and secret (always for Facebook; for Instagram and
    /// Threads only when the login flow is served).
    pub(crate) app: Option<(String, String)>,
    pub(crate) tokens: Mutex<HashMap<String, TokenInfo>>,
    calls: Mutex<u32>,
    pub(crate) script: Script,
    /// Lifetime of user tokens handed out by fb_exchange_token.
    user_lifetime: Mutex<u64>,
    pub(crate) login: Login,
}

pub struct FakeGraph {
    server: Running,
    shared: Arc<Shared>,
}

impl FakeGraph {
    pub async fn instagram() -> std::io::Result<Self> {
        Self::start(Platform::Instagram, None).await
    }

    pub async fn threads() -> std::io::Result<Self> {
        Self::start(Platform::Threads, None).await
    }

    /// Instagram with Instagram Login for an app with this id and secret:
    /// also the authorization window (www.instagram.com), the code
    /// exchange (api.instagram.com) and the Graph calls of the login flow.
    pub async fn instagram_app(app_id: &str, app_secret: &str) -> std::io::Result<Self> {
        Self::start(
            Platform::Instagram,
            Some((app_id.into(), app_secret.into())),
        )
        .await
    }

    /// Threads for an app with this id and secret, with its login flow.
    pub async fn threads_app(app_id: &str, app_secret: &str) -> std::io::Result<Self> {
        Self::start(Platform::Threads, Some((app_id.into(), app_secret.into()))).await
    }

    /// graph.facebook.com for an app with this id and secret, with the
    /// Facebook Login dialog and the Page listing of the login flow.
    pub async fn facebook(app_id: &str, app_secret: &str) -> std::io::Result<Self> {
        Self::start(Platform::Facebook, Some((app_id.into(), app_secret.into()))).await
    }

    async fn start(platform: Platform, app: Option<(String, String)>) -> std::io::Result<Self> {
        let shared = Arc::new(Shared {
            platform,
            grant_type: match platform {
                Platform::Facebook => "fb_exchange_token",
                Platform::Instagram => "ig_refresh_token",
                Platform::Threads => "th_refresh_token",
            },
            app,
            tokens: Mutex::new(HashMap::new()),
            calls: Mutex::new(0),
            script: Script::default(),
            user_lifetime: Mutex::new(LONG_LIVED_SECONDS),
            login: Login::default(),
        });
        let routes = Router::new()
            .route("/refresh_access_token", axum::routing::get(refresh))
            .route("/debug_token", axum::routing::get(debug_token))
            .route(
                "/oauth/access_token",
                axum::routing::get(exchange).post(meta_login::code_exchange),
            );
        let app = meta_login::routes(routes, platform).with_state(shared.clone());
        let server = Running::start(app).await?;
        shared.login.set_base(server.url("/"));
        Ok(Self { server, shared })
    }

    pub fn refresh_url(&self) -> Url {
        self.server.url("/refresh_access_token")
    }

    pub fn debug_token_url(&self) -> Url {
        self.server.url("/debug_token")
    }

    /// Facebook: the token endpoint (code exchange and fb_exchange_token);
    /// Instagram and Threads: the code exchange (POST).
    pub fn exchange_url(&self) -> Url {
        self.server.url("/oauth/access_token")
    }

    /// The login dialog: Facebook's `dialog/oauth`, or the Instagram and
    /// Threads authorization window.
    pub fn authorize_url(&self) -> Url {
        match self.shared.platform {
            Platform::Facebook => self.server.url("/dialog/oauth"),
            Platform::Instagram | Platform::Threads => self.server.url("/oauth/authorize"),
        }
    }

    /// The Graph API base the profile and Page calls go under (Threads'
    /// is versioned; its token exchanges sit at the host's root).
    pub fn api_url(&self) -> Url {
        match self.shared.platform {
            Platform::Threads => self.server.url("/v1.0/"),
            Platform::Facebook | Platform::Instagram => self.server.url("/"),
        }
    }

    pub fn issue(&self, state: GraphTokenState) -> String {
        self.issue_kind(state, GraphTokenKind::User, LONG_LIVED_SECONDS, "IGQV")
    }

    /// A Page token: never expires.
    pub fn issue_page(&self, state: GraphTokenState) -> String {
        self.issue_kind(state, GraphTokenKind::Page, 0, "EAAP")
    }

    /// A long-lived Facebook user token living `lifetime` seconds.
    pub fn issue_user(&self, state: GraphTokenState, lifetime: u64) -> String {
        self.issue_kind(state, GraphTokenKind::User, lifetime, "EAAU")
    }

    fn issue_kind(
        &self,
        state: GraphTokenState,
        kind: GraphTokenKind,
        lifetime: u64,
        prefix: &str,
    ) -> String {
        let access = token(prefix);
        let expires_at = match kind {
            GraphTokenKind::Page => 0,
            GraphTokenKind::User => chrono::Utc::now().timestamp() + lifetime as i64,
        };
        self.shared.tokens.lock().unwrap().insert(
            access.clone(),
            TokenInfo {
                state,
                ..TokenInfo::issued(kind, expires_at)
            },
        );
        access
    }

    /// Moves a token to `state` (the user changed their password, removed
    /// the app, ...).
    pub fn set_state(&self, access_token: &str, state: GraphTokenState) {
        if let Some(info) = self.shared.tokens.lock().unwrap().get_mut(access_token) {
            info.state = state;
        }
    }

    /// Lifetime of user tokens handed out by fb_exchange_token.
    pub fn set_user_lifetime(&self, seconds: u64) {
        *self.shared.user_lifetime.lock().unwrap() = seconds;
    }

    pub fn is_live(&self, access_token: &str) -> bool {
        self.shared
            .tokens
            .lock()
            .unwrap()
            .get(access_token)
            .is_some_and(|t| t.state == GraphTokenState::Live)
    }

    /// Whether the token is one this fake issued that never expires (a
    /// Page token derived from a long-lived user token).
    pub fn never_expires(&self, access_token: &str) -> bool {
        self.shared
            .tokens
            .lock()
            .unwrap()
            .get(access_token)
            .is_some_and(|t| t.expires_at == 0)
    }

    /// Whether the token came from a code exchange (short-lived).
    pub fn is_short_lived(&self, access_token: &str) -> bool {
        self.shared
            .tokens
            .lock()
            .unwrap()
            .get(access_token)
            .is_some_and(|t| t.short_lived)
    }

    /// The login dialog: queue what the next user does there, read the
    /// authorization requests it received.
    pub fn desk(&self) -> &super::Desk {
        &self.shared.login.desk
    }

    /// The Pages `user_id` manages, as `me/accounts` lists them.
    pub fn give_pages(&self, user_id: &str, pages: Vec<super::FakePage>) {
        self.shared.login.give_pages(user_id, pages);
    }

    /// At most this many Pages per `me/accounts` answer (default 25).
    pub fn set_page_size(&self, size: usize) {
        self.shared.login.set_page_size(size);
    }

    /// Instagram Login: answer the code exchange as Business Login's
    /// documentation shows it (`{"data":[{access_token, user_id,
    /// permissions}]}`) instead of the flat `{access_token, user_id,
    /// permissions}`.
    pub fn wrap_code_exchange(&self, wrapped: bool) {
        self.shared.login.wrap_code_exchange(wrapped);
    }

    /// Requests to the login flow's Graph calls (code and long-lived
    /// exchanges, profile, Pages, permissions) so far.
    pub fn login_calls(&self) -> u32 {
        self.shared.login.calls()
    }

    pub fn calls(&self) -> u32 {
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

/// A 400 with a Graph error body.
pub(crate) fn graph_failure(code: u32, subcode: Option<u32>, message: &str) -> Response {
    (
        StatusCode::BAD_REQUEST,
        axum::Json(graph_error_body(code, subcode, message)),
    )
        .into_response()
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
    let grantee = tokens.get(&presented).and_then(|t| t.grantee.clone());
    if tokens.get(&presented).is_some_and(|t| t.short_lived) {
        // Only long-lived tokens refresh; a short-lived one must first be
        // exchanged (the answer's exact code is undocumented).
        return fail(
            190,
            None,
            "Error validating access token: the token is not a long-lived token",
        );
    }
    match tokens.get(&presented).map(|t| t.state) {
        None => fail(
            190,
            None,
            "Invalid OAuth access token - Cannot parse access token",
        ),
        Some(GraphTokenState::Checkpointed) => fail(190, Some(459), CHECKPOINT),
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
            tokens.insert(
                next.clone(),
                TokenInfo {
                    grantee,
                    ..TokenInfo::issued(
                        GraphTokenKind::User,
                        chrono::Utc::now().timestamp() + LONG_LIVED_SECONDS as i64,
                    )
                },
            );
            axum::Json(json!({
                "access_token": next,
                "token_type": "bearer",
                "expires_in": LONG_LIVED_SECONDS,
            }))
            .into_response()
        }
    }
}

const CHECKPOINT: &str = "Error validating access token: You cannot access the app till you log in to www.facebook.com and follow the instructions given.";

/// The (code, subcode, message) Meta gives for a token that does not work.
pub(crate) fn token_problem(state: GraphTokenState) -> Option<(u32, Option<u32>, &'static str)> {
    match state {
        GraphTokenState::Live => None,
        GraphTokenState::Expired => Some((
            190,
            Some(463),
            "Error validating access token: Session has expired on Sunday, 01-Nov-26 10:00:00 PST.",
        )),
        GraphTokenState::PasswordChanged => Some((
            190,
            Some(460),
            "Error validating access token: The session has been invalidated because the user changed their password or Facebook has changed the session for security reasons.",
        )),
        GraphTokenState::AppRemoved => Some((
            190,
            Some(458),
            "Error validating access token: The user has not authorized application.",
        )),
        GraphTokenState::Checkpointed => Some((190, Some(459), CHECKPOINT)),
    }
}

async fn debug_token(
    State(shared): State<Arc<Shared>>,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    *shared.calls.lock().unwrap() += 1;
    if let Some(response) = shared.script.next() {
        return response;
    }
    let Some((app_id, app_secret)) = &shared.app else {
        return StatusCode::NOT_FOUND.into_response();
    };
    if query.get("access_token") != Some(&format!("{app_id}|{app_secret}")) {
        return (
            StatusCode::BAD_REQUEST,
            axum::Json(graph_error_body(
                190,
                None,
                "Invalid OAuth access token signature.",
            )),
        )
            .into_response();
    }
    let input = query.get("input_token").cloned().unwrap_or_default();
    let Some(info) = shared.tokens.lock().unwrap().get(&input).cloned() else {
        return axum::Json(json!({"data": {
            "error": {"code": 190, "message": "Invalid OAuth access token - Cannot parse access token"},
            "is_valid": false,
            "scopes": [],
        }}))
        .into_response();
    };
    let now = chrono::Utc::now().timestamp();
    let state = info.state_at(now);
    let mut data = json!({
        "app_id": app_id,
        "type": match info.kind { GraphTokenKind::Page => "PAGE", GraphTokenKind::User => "USER" },
        "application": "tokenwarden test app",
        "data_access_expires_at": now + 90 * 86_400,
        "expires_at": info.expires_at,
        "is_valid": state == GraphTokenState::Live,
        "issued_at": now - 86_400,
        "scopes": ["pages_show_list", "pages_manage_posts", "instagram_basic", "instagram_content_publish"],
        "user_id": "10000000000001",
    });
    if info.kind == GraphTokenKind::Page {
        data["profile_id"] = json!("20000000000002");
    }
    if let Some((code, subcode, message)) = token_problem(state) {
        data["error"] = json!({"code": code, "message": message, "subcode": subcode});
    }
    axum::Json(json!({ "data": data })).into_response()
}

async fn exchange(
    State(shared): State<Arc<Shared>>,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    // The same endpoint redeems the login dialog's codes (no grant_type).
    if shared.platform == Platform::Facebook
        && query.contains_key("code")
        && !query.contains_key("grant_type")
    {
        return meta_login::facebook_code_exchange(&shared, &query);
    }
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
    let Some((app_id, app_secret)) = &shared.app else {
        return StatusCode::NOT_FOUND.into_response();
    };
    if shared.platform != Platform::Facebook {
        return fail(100, None, "Unsupported get request.");
    }
    if query.get("grant_type").map(String::as_str) != Some("fb_exchange_token") {
        return fail(100, None, "Unsupported grant_type");
    }
    if query.get("client_id") != Some(app_id) {
        return fail(
            101,
            None,
            "Error validating application. Invalid application ID.",
        );
    }
    if query.get("client_secret") != Some(app_secret) {
        return fail(1, None, "Error validating client secret.");
    }
    let presented = query.get("fb_exchange_token").cloned().unwrap_or_default();
    let mut tokens = shared.tokens.lock().unwrap();
    let Some(info) = tokens.get(&presented).cloned() else {
        return fail(
            190,
            None,
            "Invalid OAuth access token - Cannot parse access token",
        );
    };
    let now = chrono::Utc::now().timestamp();
    let state = if info.kind == GraphTokenKind::User && info.expires_at <= now {
        GraphTokenState::Expired
    } else {
        info.state
    };
    if let Some((code, subcode, message)) = token_problem(state) {
        return fail(code, subcode, message);
    }
    let lifetime = *shared.user_lifetime.lock().unwrap();
    let next = token("EAAU");
    tokens.insert(
        next.clone(),
        TokenInfo {
            grantee: info.grantee.clone(),
            ..TokenInfo::issued(GraphTokenKind::User, now + lifetime as i64)
        },
    );
    axum::Json(json!({
        "access_token": next,
        "token_type": "bearer",
        "expires_in": lifetime,
    }))
    .into_response()
}
