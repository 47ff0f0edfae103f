//! TikTok's token endpoint (`POST /v2/oauth/token/`): `client_key` and
//! `client_secret` in the form body, rotating refresh tokens, errors as
//! `{error, error_description, log_id}`. Whether real errors come with a
//! non-2xx status is unconfirmed, so the fake can answer them either way.
//!
//! The consent screen (`GET /v2/auth/authorize/`, `client_key`, scopes
//! comma-separated) and the code grant at the same token endpoint. `GET
//! /v2/user/info/?fields=...` answers the fields asked for, each only with
//! its scope (`user.info.basic`, `user.info.profile`, `user.info.stats`),
//! as `{data:{user:{...}}, error:{code, message, log_id}}`; `error.code`
//! is `ok` on success. With `errors_in_200` its errors come in a 200 too.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{Map, Value, json};
use url::Url;

use super::ScriptedResponse;
use super::authorize::{Desk, Rules, User};
use super::server::{Running, Script, bearer, token};

pub const TIKTOK_ACCESS_LIFETIME: u64 = 86_400;
pub const TIKTOK_REFRESH_LIFETIME: u64 = 31_536_000;

/// Whose tokens these are, and what they may read.
#[derive(Clone, Debug)]
struct Owner {
    user: User,
    scopes: Vec<String>,
}

impl Owner {
    /// Tokens issued without a consent screen (`issue`).
    fn issued() -> Self {
        Self {
            user: User::new("open-id-1", "user1", "User 1"),
            scopes: vec!["user.info.basic".into(), "video.publish".into()],
        }
    }
}

struct Shared {
    client_key: String,
    client_secret: String,
    /// live refresh token -> its owner
    live: Mutex<HashMap<String, Owner>>,
    /// access token -> its owner
    access: Mutex<HashMap<String, Owner>>,
    errors_in_200: AtomicBool,
    script: Script,
    desk: Desk,
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
            live: Mutex::new(HashMap::new()),
            access: Mutex::new(HashMap::new()),
            errors_in_200: AtomicBool::new(false),
            script: Script::default(),
            desk: Desk::default(),
        });
        let app = Router::new()
            .route("/v2/oauth/token/", axum::routing::post(token_endpoint))
            .route("/v2/auth/authorize/", axum::routing::get(authorize))
            .route("/v2/user/info/", axum::routing::get(user_info))
            .with_state(shared.clone());
        Ok(Self {
            server: Running::start(app).await?,
            shared,
        })
    }

    pub fn token_url(&self) -> Url {
        self.server.url("/v2/oauth/token/")
    }

    /// The consent screen (`https://www.tiktok.com/v2/auth/authorize/`).
    pub fn authorize_url(&self) -> Url {
        self.server.url("/v2/auth/authorize/")
    }

    /// The API base (`https://open.tiktokapis.com/v2/`).
    pub fn api_url(&self) -> Url {
        self.server.url("/v2/")
    }

    /// The consent screen and its codes.
    pub fn desk(&self) -> &Desk {
        &self.shared.desk
    }

    pub fn issue(&self) -> (String, String) {
        self.shared.new_tokens(Owner::issued())
    }

    pub fn is_live(&self, refresh_token: &str) -> bool {
        self.shared.live.lock().unwrap().contains_key(refresh_token)
    }

    /// Answer errors with HTTP 200 (the error is only in the body): the
    /// token endpoint's OAuth errors and `user/info`'s API errors alike.
    pub fn errors_in_200(&self, on: bool) {
        self.shared.errors_in_200.store(on, Ordering::SeqCst);
    }

    /// The next call to the token endpoint is answered with exactly this.
    pub fn script_next(&self, response: ScriptedResponse) {
        self.shared.script.push(response);
    }

    /// Requests to the token endpoint so far, scripted answers included.
    pub fn requests(&self) -> u64 {
        self.shared.script.requests()
    }
}

impl Shared {
    /// A new (access, refresh) pair for `owner`.
    fn new_tokens(&self, owner: Owner) -> (String, String) {
        let access = token("act");
        let refresh = token("rft");
        self.access
            .lock()
            .unwrap()
            .insert(access.clone(), owner.clone());
        self.live.lock().unwrap().insert(refresh.clone(), owner);
        (access, refresh)
    }

    fn status(&self, status: StatusCode) -> StatusCode {
        if self.errors_in_200.load(Ordering::SeqCst) {
            StatusCode::OK
        } else {
            status
        }
    }

    fn oauth_error(&self, status: StatusCode, code: &str, description: &str) -> Response {
        (
            self.status(status),
            axum::Json(json!({
                "error": code,
                "error_description": description,
                "log_id": token("log"),
            })),
        )
            .into_response()
    }

    fn api_error(&self, status: StatusCode, code: &str, message: &str) -> Response {
        (
            self.status(status),
            axum::Json(json!({
                "data": {},
                "error": {"code": code, "message": message, "log_id": token("log")},
            })),
        )
            .into_response()
    }
}

fn grant_answer(access: String, refresh: String, owner: &Owner) -> Response {
    axum::Json(json!({
        "access_token": access,
        "expires_in": TIKTOK_ACCESS_LIFETIME,
        "open_id": owner.user.id,
        "refresh_expires_in": TIKTOK_REFRESH_LIFETIME,
        "refresh_token": refresh,
        "scope": owner.scopes.join(","),
        "token_type": "Bearer",
    }))
    .into_response()
}

async fn token_endpoint(State(shared): State<Arc<Shared>>, body: Bytes) -> Response {
    if let Some(response) = shared.script.next() {
        return response;
    }
    let form: HashMap<String, String> = url::form_urlencoded::parse(&body).into_owned().collect();
    if form.get("client_key") != Some(&shared.client_key)
        || form.get("client_secret") != Some(&shared.client_secret)
    {
        return shared.oauth_error(
            StatusCode::UNAUTHORIZED,
            "invalid_client",
            "Client key or secret is incorrect.",
        );
    }
    match form.get("grant_type").map(String::as_str) {
        Some("refresh_token") => refresh_grant(&shared, &form),
        Some("authorization_code") => code_grant(&shared, &form),
        _ => shared.oauth_error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "grant_type is invalid.",
        ),
    }
}

fn refresh_grant(shared: &Shared, form: &HashMap<String, String>) -> Response {
    let presented = form.get("refresh_token").cloned().unwrap_or_default();
    let Some(owner) = shared.live.lock().unwrap().remove(&presented) else {
        return shared.oauth_error(
            StatusCode::BAD_REQUEST,
            "invalid_grant",
            "Refresh token is invalid or expired.",
        );
    };
    let (access, refresh) = shared.new_tokens(owner.clone());
    grant_answer(access, refresh, &owner)
}

/// `grant_type=authorization_code`: the code is redeemed once, with the
/// redirect URI it was issued for.
fn code_grant(shared: &Shared, form: &HashMap<String, String>) -> Response {
    let granted = match shared.desk.redeem(
        form.get("code").map(String::as_str).unwrap_or(""),
        form.get("redirect_uri").map(String::as_str),
        form.get("code_verifier").map(String::as_str),
    ) {
        Ok(granted) => granted,
        Err(why) => return shared.oauth_error(StatusCode::BAD_REQUEST, "invalid_grant", why),
    };
    let owner = Owner {
        user: granted.user,
        scopes: granted.scopes,
    };
    let (access, refresh) = shared.new_tokens(owner.clone());
    grant_answer(access, refresh, &owner)
}

async fn authorize(
    State(shared): State<Arc<Shared>>,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    let rules = Rules {
        client_id_param: "client_key",
        scope_separator: ',',
        ..Rules::default()
    };
    shared.desk.authorize(&query, &shared.client_key, rules)
}

/// The scope each user field needs.
fn field_scope(field: &str) -> Option<&'static str> {
    Some(match field {
        "open_id" | "union_id" | "avatar_url" | "avatar_url_100" | "avatar_large_url"
        | "display_name" => "user.info.basic",
        "bio_description" | "profile_deep_link" | "is_verified" | "username" => "user.info.profile",
        "follower_count" | "following_count" | "likes_count" | "video_count" => "user.info.stats",
        _ => return None,
    })
}

async fn user_info(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    let owner = bearer(&headers).and_then(|t| shared.access.lock().unwrap().get(t).cloned());
    let Some(owner) = owner else {
        return shared.api_error(
            StatusCode::UNAUTHORIZED,
            "access_token_invalid",
            "The access token is invalid or not found in the request.",
        );
    };
    let fields: Vec<&str> = query
        .get("fields")
        .map(|f| f.split(',').filter(|f| !f.is_empty()).collect())
        .unwrap_or_default();
    if fields.is_empty() {
        return shared.api_error(
            StatusCode::BAD_REQUEST,
            "invalid_params",
            "fields is required",
        );
    }
    let user = &owner.user;
    let mut answer = Map::new();
    for field in fields {
        let Some(scope) = field_scope(field) else {
            return shared.api_error(
                StatusCode::BAD_REQUEST,
                "invalid_params",
                &format!("invalid field: {field}"),
            );
        };
        if !owner.scopes.iter().any(|s| s == scope) {
            return shared.api_error(
                StatusCode::UNAUTHORIZED,
                "scope_not_authorized",
                "The user did not authorize the scope required for completing this request.",
            );
        }
        let value = match field {
            "open_id" => json!(user.id),
            "union_id" => json!(format!("union-{}", user.id)),
            "avatar_url" | "avatar_url_100" | "avatar_large_url" => json!(format!(
                "https://p16-sign.tiktokcdn-us.com/{}/{field}.jpeg",
                user.id
            )),
            "display_name" => json!(user.name),
            "username" => json!(user.handle),
            "bio_description" => json!(""),
            "profile_deep_link" => json!(format!("https://www.tiktok.com/@{}", user.handle)),
            "is_verified" => json!(false),
            _ => json!(0),
        };
        answer.insert(field.to_owned(), value);
    }
    axum::Json(json!({
        "data": {"user": Value::Object(answer)},
        "error": {"code": "ok", "message": "", "log_id": token("log")},
    }))
    .into_response()
}
