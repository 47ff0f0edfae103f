//! Google's token endpoint (`POST /token`) as documented: client id and
//! secret in the form body, `{access_token, expires_in, scope, token_type}`
//! without a new refresh token, `refresh_token_expires_in` only for
//! time-based grants, and 400 `invalid_grant` "Token has been expired or
//! revoked." for any refresh token it will not honour.
//!
//! The consent screen (`GET /o/oauth2/v2/auth`, PKCE S256 accepted) and the
//! code grant at the same token endpoint: a refresh token only with
//! `access_type=offline`, and for a user who consented to this client
//! before only with `prompt=consent` too (Google's rule); an `id_token`
//! with the `openid` scope. `GET /youtube/v3/channels?part=...&mine=true`
//! names the user's channel, or none for a Google account without one.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use serde_json::json;
use url::Url;

use super::ScriptedResponse;
use super::authorize::{Desk, Granted, Rules, User};
use super::server::{Running, Script, bearer, token};

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
    /// Who consented, for grants that came through the consent screen.
    owner: Option<User>,
}

/// What an access token issued after consent may see.
#[derive(Clone)]
struct Session {
    user: User,
    scopes: Vec<String>,
}

struct Shared {
    client_id: String,
    client_secret: String,
    grants: Mutex<HashMap<String, Grant>>,
    calls: Mutex<u64>,
    script: Script,
    desk: Desk,
    sessions: Mutex<HashMap<String, Session>>,
    /// Users who already gave this client a refresh token.
    consented: Mutex<HashSet<String>>,
    /// Google accounts with no YouTube channel.
    without_channel: Mutex<HashSet<String>>,
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
            desk: Desk::default(),
            sessions: Mutex::new(HashMap::new()),
            consented: Mutex::new(HashSet::new()),
            without_channel: Mutex::new(HashSet::new()),
        });
        let app = Router::new()
            .route("/token", axum::routing::post(token_endpoint))
            .route("/o/oauth2/v2/auth", axum::routing::get(authorize))
            .route("/youtube/v3/channels", axum::routing::get(channels))
            .with_state(shared.clone());
        Ok(Self {
            server: Running::start(app).await?,
            shared,
        })
    }

    pub fn token_url(&self) -> Url {
        self.server.url("/token")
    }

    /// The consent screen (`https://accounts.google.com/o/oauth2/v2/auth`).
    pub fn authorize_url(&self) -> Url {
        self.server.url("/o/oauth2/v2/auth")
    }

    /// The API base (`https://www.googleapis.com/`).
    pub fn api_url(&self) -> Url {
        self.server.url("/")
    }

    /// The consent screen and its codes.
    pub fn desk(&self) -> &Desk {
        &self.shared.desk
    }

    /// This Google account has no YouTube channel: `channels?mine=true`
    /// lists none.
    pub fn without_channel(&self, user_id: &str) {
        self.shared
            .without_channel
            .lock()
            .unwrap()
            .insert(user_id.to_owned());
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
                owner: None,
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
    if grant_type == "authorization_code" {
        return code_grant(&shared, &form);
    }
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
    let access = token("ya29");
    if let Some(user) = &grant.owner {
        shared.sessions.lock().unwrap().insert(
            access.clone(),
            Session {
                user: user.clone(),
                scopes: grant.spec.scope.split(' ').map(str::to_owned).collect(),
            },
        );
    }
    let mut body = json!({
        "access_token": access,
        "expires_in": grant.spec.access_lifetime,
        "scope": grant.spec.scope,
        "token_type": "Bearer",
    });
    if let Some(left) = grant.spec.refresh_expires_in {
        body["refresh_token_expires_in"] = json!(left);
    }
    axum::Json(body).into_response()
}

async fn authorize(
    State(shared): State<Arc<Shared>>,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    // Google shows an error page (no redirect) for values it does not know.
    if query
        .get("access_type")
        .is_some_and(|v| v != "online" && v != "offline")
    {
        return (
            StatusCode::BAD_REQUEST,
            "Error 400: invalid_request. Invalid access_type",
        )
            .into_response();
    }
    if query.get("prompt").is_some_and(|v| {
        v.split(' ')
            .any(|p| !matches!(p, "none" | "consent" | "select_account"))
    }) {
        return (
            StatusCode::BAD_REQUEST,
            "Error 400: invalid_request. Invalid prompt",
        )
            .into_response();
    }
    shared
        .desk
        .authorize(&query, &shared.client_id, Rules::default())
}

/// `grant_type=authorization_code`, with the PKCE verifier when the
/// authorization carried a challenge.
fn code_grant(shared: &Shared, form: &HashMap<String, String>) -> Response {
    let granted = match shared.desk.redeem(
        form.get("code").map(String::as_str).unwrap_or(""),
        form.get("redirect_uri").map(String::as_str),
        form.get("code_verifier").map(String::as_str),
    ) {
        Ok(granted) => granted,
        Err(why) => return error(StatusCode::BAD_REQUEST, "invalid_grant", why),
    };
    let scope = granted.scopes.join(" ");
    let access = token("ya29");
    shared.sessions.lock().unwrap().insert(
        access.clone(),
        Session {
            user: granted.user.clone(),
            scopes: granted.scopes.clone(),
        },
    );
    let mut answer = json!({
        "access_token": access,
        "expires_in": 3599,
        "scope": scope,
        "token_type": "Bearer",
    });
    if issues_refresh_token(shared, &granted) {
        let refresh = token("1//0g");
        shared.grants.lock().unwrap().insert(
            refresh.clone(),
            Grant {
                spec: GoogleGrant {
                    scope: scope.clone(),
                    ..GoogleGrant::default()
                },
                live: true,
                calls: 0,
                owner: Some(granted.user.clone()),
            },
        );
        answer["refresh_token"] = json!(refresh);
    }
    if granted.has_scope("openid") {
        answer["id_token"] = json!(id_token(&shared.client_id, &granted.user));
    }
    axum::Json(answer).into_response()
}

/// Offline access only, and to a user who consented before only when the
/// consent screen was shown again.
fn issues_refresh_token(shared: &Shared, granted: &Granted) -> bool {
    let param = |key: &str| granted.request.get(key).map(String::as_str);
    if param("access_type") != Some("offline") {
        return false;
    }
    let prompted = param("prompt").is_some_and(|p| p.split(' ').any(|v| v == "consent"));
    let first_time = shared
        .consented
        .lock()
        .unwrap()
        .insert(granted.user.id.clone());
    first_time || prompted
}

/// An OpenID Connect ID token of Google's shape; its signature is random
/// bytes (nothing here verifies it).
fn id_token(client_id: &str, user: &User) -> String {
    let encode = |value: serde_json::Value| {
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(value.to_string())
    };
    let now = chrono::Utc::now().timestamp();
    let header = encode(json!({"alg": "RS256", "kid": "fake", "typ": "JWT"}));
    let claims = encode(json!({
        "iss": "https://accounts.google.com",
        "azp": client_id,
        "aud": client_id,
        "sub": user.id,
        "iat": now,
        "exp": now + 3599,
    }));
    let signature =
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(rand::random::<[u8; 32]>());
    format!("{header}.{claims}.{signature}")
}

fn youtube_error(status: StatusCode, reason: &str, message: &str) -> Response {
    (
        status,
        axum::Json(json!({"error": {
            "code": status.as_u16(),
            "message": message,
            "errors": [{"message": message, "domain": "global", "reason": reason}],
        }})),
    )
        .into_response()
}

/// Scopes that may read the user's own channel.
const CHANNEL_READERS: [&str; 3] = [
    "https://www.googleapis.com/auth/youtube.readonly",
    "https://www.googleapis.com/auth/youtube",
    "https://www.googleapis.com/auth/youtube.force-ssl",
];

async fn channels(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    let session = bearer(&headers).and_then(|t| shared.sessions.lock().unwrap().get(t).cloned());
    let Some(session) = session else {
        return youtube_error(
            StatusCode::UNAUTHORIZED,
            "authError",
            "Request had invalid authentication credentials. Expected OAuth 2 access token, login cookie or other valid authentication credential.",
        );
    };
    let Some(parts) = query.get("part").filter(|p| !p.is_empty()) else {
        return youtube_error(
            StatusCode::BAD_REQUEST,
            "required",
            "Required parameter: part",
        );
    };
    if query.get("mine").map(String::as_str) != Some("true") {
        return youtube_error(
            StatusCode::BAD_REQUEST,
            "missingRequiredParameter",
            "No filter selected. Expected one of: forUsername, managedByMe, categoryId, mySubscribers, forHandle, mine, id",
        );
    }
    if !session
        .scopes
        .iter()
        .any(|s| CHANNEL_READERS.contains(&s.as_str()))
    {
        return youtube_error(
            StatusCode::FORBIDDEN,
            "insufficientPermissions",
            "Request had insufficient authentication scopes.",
        );
    }
    let etag = token("etag");
    if shared
        .without_channel
        .lock()
        .unwrap()
        .contains(&session.user.id)
    {
        // YouTube leaves `items` out when nothing matches.
        return axum::Json(json!({
            "kind": "youtube#channelListResponse",
            "etag": etag,
            "pageInfo": {"totalResults": 0, "resultsPerPage": 5},
        }))
        .into_response();
    }
    let user = &session.user;
    let mut channel = json!({
        "kind": "youtube#channel",
        "etag": token("etag"),
        "id": user.id,
    });
    if parts.split(',').any(|p| p == "snippet") {
        let thumbnail = |size: u32| {
            json!({
                "url": format!("https://yt3.ggpht.com/{}=s{size}-c-k-c0x00ffffff-no-rj", user.id),
                "width": size,
                "height": size,
            })
        };
        channel["snippet"] = json!({
            "title": user.name,
            "description": "",
            "customUrl": format!("@{}", user.handle.trim_start_matches('@').to_lowercase()),
            "publishedAt": "2015-03-01T00:00:00Z",
            "thumbnails": {
                "default": thumbnail(88),
                "medium": thumbnail(240),
                "high": thumbnail(800),
            },
            "localized": {"title": user.name, "description": ""},
        });
    }
    axum::Json(json!({
        "kind": "youtube#channelListResponse",
        "etag": etag,
        "pageInfo": {"totalResults": 1, "resultsPerPage": 5},
        "items": [channel],
    }))
    .into_response()
}
