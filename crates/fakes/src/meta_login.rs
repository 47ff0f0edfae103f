//! Meta's login flows, served by a `FakeGraph` built for an app. The tokens
//! they issue live in the same fake's table, so the refresh and
//! `debug_token` routes accept them afterwards.
//!
//! Facebook Login (Facebook Pages, Instagram with Facebook Login):
//! - `GET /dialog/oauth?client_id&redirect_uri&state&response_type=code
//!   &scope=a,b`: the dialog (`Desk`); a refusal carries `error=access_denied
//!   &error_code=200&error_reason=user_denied`.
//! - `GET /oauth/access_token?client_id&redirect_uri&client_secret&code`: a
//!   short-lived user token `{access_token, token_type, expires_in}`. A code
//!   redeemed twice: 100/36009 "This authorization code has been used.";
//!   another redirect URI: 100/36008; an unknown code: 100 "Invalid
//!   verification code format." (subcodes from memory, unconfirmed).
//! - `GET /me/accounts?fields&limit&after&access_token`: the user's Pages
//!   (`give_pages`), `{data:[{id, name, access_token, picture:{data:{url}},
//!   instagram_business_account:{..}}], paging:{cursors:{before, after},
//!   next}}`, only the fields asked for (an unknown one is 100), none
//!   without `pages_show_list`, no linked Instagram account without
//!   `instagram_basic`. A Page token derived from a short-lived user token
//!   lasts an hour; from a long-lived one it never expires.
//! - `GET /me/permissions`: `{data:[{permission, status}]}`.
//!
//! Instagram Login and Threads:
//! - `GET /oauth/authorize?client_id&redirect_uri&response_type=code&scope
//!   &state`: the authorization window (Instagram appends `#_` to the
//!   redirect).
//! - `POST /oauth/access_token` (form: client_id, client_secret,
//!   grant_type=authorization_code, redirect_uri, code): a short-lived
//!   token. Instagram answers `{access_token, user_id, permissions}` (or,
//!   `wrap_code_exchange`, `{data:[{..}]}`) and refuses in its own shape,
//!   `{"error_type":"OAuthException","code":400,"error_message":..}`;
//!   Threads answers `{access_token, user_id}` and refuses with a Graph
//!   error body (assumed: its documentation shows no error).
//! - `GET /access_token?grant_type=ig_exchange_token|th_exchange_token
//!   &client_secret&access_token`: the long-lived token, `{access_token,
//!   token_type, expires_in}`.
//! - `GET /me` (Instagram) or `GET /v1.0/me` (Threads) `?fields&access_token`.
//!
//! Graph calls take the token as `access_token` or a bearer header, and
//! check `appsecret_proof` (HMAC-SHA256 of the token keyed by the app
//! secret, hex) when one is sent.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use axum::Router;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use hmac::{Hmac, KeyInit, Mac};
use serde_json::{Map, Value, json};
use url::Url;

use super::authorize::{Desk, Rules, User};
use super::meta_graph::{
    GraphTokenKind, GraphTokenState, LONG_LIVED_SECONDS, Platform, Shared, TokenInfo,
    graph_failure, token_problem,
};
use super::server::token;

/// Lifetime of the tokens a code exchange issues.
pub const SHORT_LIVED_SECONDS: u64 = 3_600;

/// A Facebook Page a user manages.
#[derive(Clone, Debug)]
pub struct FakePage {
    pub id: String,
    pub name: String,
    /// The Instagram professional account linked to the Page.
    pub instagram: Option<FakeInstagramAccount>,
}

impl FakePage {
    pub fn new(id: &str, name: &str) -> Self {
        Self {
            id: id.into(),
            name: name.into(),
            instagram: None,
        }
    }

    pub fn with_instagram(mut self, id: &str, username: &str, name: &str) -> Self {
        self.instagram = Some(FakeInstagramAccount {
            id: id.into(),
            username: username.into(),
            name: name.into(),
        });
        self
    }
}

#[derive(Clone, Debug)]
pub struct FakeInstagramAccount {
    pub id: String,
    pub username: String,
    pub name: String,
}

/// Who a login-flow token speaks for, and what they granted.
#[derive(Debug)]
pub(crate) struct Grantee {
    pub(crate) user: User,
    pub(crate) scopes: Vec<String>,
}

impl Grantee {
    fn granted(&self, scope: &str) -> bool {
        self.scopes.iter().any(|s| s == scope)
    }
}

pub(crate) struct Login {
    pub(crate) desk: Desk,
    pages: Mutex<HashMap<String, Vec<FakePage>>>,
    page_size: Mutex<usize>,
    wrapped: AtomicBool,
    calls: AtomicU32,
    base: OnceLock<Url>,
}

impl Default for Login {
    fn default() -> Self {
        Self {
            desk: Desk::default(),
            pages: Mutex::new(HashMap::new()),
            page_size: Mutex::new(25),
            wrapped: AtomicBool::new(false),
            calls: AtomicU32::new(0),
            base: OnceLock::new(),
        }
    }
}

impl Login {
    pub(crate) fn set_base(&self, base: Url) {
        let _ = self.base.set(base);
    }

    pub(crate) fn give_pages(&self, user_id: &str, pages: Vec<FakePage>) {
        self.pages.lock().unwrap().insert(user_id.to_owned(), pages);
    }

    pub(crate) fn set_page_size(&self, size: usize) {
        *self.page_size.lock().unwrap() = size.max(1);
    }

    pub(crate) fn wrap_code_exchange(&self, wrapped: bool) {
        self.wrapped.store(wrapped, Ordering::SeqCst);
    }

    pub(crate) fn calls(&self) -> u32 {
        self.calls.load(Ordering::SeqCst)
    }

    fn picture(&self, id: &str) -> String {
        self.base
            .get()
            .and_then(|b| b.join(&format!("pictures/{id}.jpg")).ok())
            .map_or_else(String::new, |u| u.to_string())
    }
}

/// The login routes of one platform, added to the fake's router.
pub(crate) fn routes(router: Router<Arc<Shared>>, platform: Platform) -> Router<Arc<Shared>> {
    use axum::routing::get;
    match platform {
        Platform::Facebook => router
            .route("/dialog/oauth", get(authorize))
            .route("/me/accounts", get(accounts))
            .route("/me/permissions", get(permissions)),
        Platform::Instagram => router
            .route("/oauth/authorize", get(authorize))
            .route("/access_token", get(long_lived_exchange))
            .route("/me", get(profile)),
        Platform::Threads => router
            .route("/oauth/authorize", get(authorize))
            .route("/access_token", get(long_lived_exchange))
            .route("/v1.0/me", get(profile)),
    }
}

/// Counts a login-flow Graph call and serves a scripted answer if one is
/// queued.
fn scripted(shared: &Shared) -> Option<Response> {
    shared.login.calls.fetch_add(1, Ordering::SeqCst);
    shared.script.next()
}

async fn authorize(
    State(shared): State<Arc<Shared>>,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    let Some((app_id, _)) = &shared.app else {
        return StatusCode::NOT_FOUND.into_response();
    };
    // Meta's login dialogs take scopes comma-separated.
    let rules = Rules {
        scope_separator: ',',
        ..Rules::default()
    };
    let answer = shared.login.desk.authorize(&query, app_id, rules);
    if answer.status() != StatusCode::FOUND {
        return answer;
    }
    let Some(mut target) = answer
        .headers()
        .get(header::LOCATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| Url::parse(v).ok())
    else {
        return answer;
    };
    let denied = target.query_pairs().any(|(k, _)| k == "error");
    if denied {
        let mut pairs = target.query_pairs_mut();
        if shared.platform == Platform::Facebook {
            pairs.append_pair("error_code", "200");
        }
        pairs.append_pair("error_reason", "user_denied");
    } else if shared.platform == Platform::Instagram {
        target.set_fragment(Some("_"));
    }
    (StatusCode::FOUND, [(header::LOCATION, target.to_string())]).into_response()
}

fn scopes_of(granted: &str) -> Vec<String> {
    granted
        .split([',', ' '])
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect()
}

/// Issues a short-lived user token for a redeemed code.
fn issue_short_lived(shared: &Shared, user: User, scope: &str, prefix: &str) -> String {
    let access = token(prefix);
    let grantee = Arc::new(Grantee {
        user,
        scopes: scopes_of(scope),
    });
    shared.tokens.lock().unwrap().insert(
        access.clone(),
        TokenInfo {
            state: GraphTokenState::Live,
            kind: GraphTokenKind::User,
            expires_at: chrono::Utc::now().timestamp() + SHORT_LIVED_SECONDS as i64,
            short_lived: true,
            grantee: Some(grantee),
        },
    );
    access
}

/// Facebook's code exchange: a GET on the token endpoint.
pub(crate) fn facebook_code_exchange(shared: &Shared, query: &HashMap<String, String>) -> Response {
    if let Some(response) = scripted(shared) {
        return response;
    }
    let Some((app_id, app_secret)) = &shared.app else {
        return StatusCode::NOT_FOUND.into_response();
    };
    if query.get("client_id") != Some(app_id) {
        return graph_failure(
            101,
            None,
            "Error validating application. Invalid application ID.",
        );
    }
    if query.get("client_secret") != Some(app_secret) {
        return graph_failure(1, None, "Error validating client secret.");
    }
    let code = query.get("code").map_or("", String::as_str);
    let granted = match shared.login.desk.redeem(
        code,
        query.get("redirect_uri").map(String::as_str),
        None,
    ) {
        Ok(granted) => granted,
        Err(refusal) => {
            let (subcode, message) = if refusal.contains("already redeemed") {
                (Some(36009), "This authorization code has been used.")
            } else if refusal.contains("redirect_uri") {
                (
                    Some(36008),
                    "Error validating verification code. Please make sure your redirect_uri is identical to the one you used in the OAuth dialog request",
                )
            } else {
                (None, "Invalid verification code format.")
            };
            let mut response = graph_failure(100, subcode, message);
            if let Ok(value) =
                format!("OAuth \"Facebook Platform\" \"invalid_code\" \"{message}\"").parse()
            {
                response
                    .headers_mut()
                    .insert(header::WWW_AUTHENTICATE, value);
            }
            return response;
        }
    };
    let access = issue_short_lived(shared, granted.user, &granted.scope, "EAAS");
    axum::Json(json!({
        "access_token": access,
        "token_type": "bearer",
        "expires_in": SHORT_LIVED_SECONDS,
    }))
    .into_response()
}

/// Instagram's and Threads' code exchange: a form POST.
pub(crate) async fn code_exchange(
    State(shared): State<Arc<Shared>>,
    body: axum::body::Bytes,
) -> Response {
    if shared.platform == Platform::Facebook {
        return graph_failure(100, None, "Unsupported post request.");
    }
    if let Some(response) = scripted(&shared) {
        return response;
    }
    let Some((app_id, app_secret)) = &shared.app else {
        return StatusCode::NOT_FOUND.into_response();
    };
    let form: HashMap<String, String> = url::form_urlencoded::parse(&body).into_owned().collect();
    let refuse = |message: &str| match shared.platform {
        Platform::Instagram => (
            StatusCode::BAD_REQUEST,
            axum::Json(json!({
                "error_type": "OAuthException",
                "code": 400,
                "error_message": message,
            })),
        )
            .into_response(),
        _ => graph_failure(100, None, message),
    };
    if form.get("client_id") != Some(app_id) {
        return refuse("Invalid platform app");
    }
    if form.get("client_secret") != Some(app_secret) {
        return refuse("Error validating client secret.");
    }
    if form.get("grant_type").map(String::as_str) != Some("authorization_code") {
        return refuse("Invalid grant_type: authorization_code is required");
    }
    let code = form.get("code").map_or("", String::as_str);
    let granted = match shared.login.desk.redeem(
        code,
        form.get("redirect_uri").map(String::as_str),
        None,
    ) {
        Ok(granted) => granted,
        Err(refusal) if refusal.contains("redirect_uri") => {
            return refuse(
                "Error validating verification code. Please make sure your redirect_uri is identical to the one you used in the OAuth dialog request",
            );
        }
        Err(_) => return refuse("Matching code was not found or was already used."),
    };
    let prefix = if shared.platform == Platform::Threads {
        "THQS"
    } else {
        "IGQS"
    };
    let user_id = granted.user.id.clone();
    let permissions = scopes_of(&granted.scope);
    let access = issue_short_lived(&shared, granted.user, &granted.scope, prefix);
    let answer = match shared.platform {
        Platform::Threads => json!({"access_token": access, "user_id": numeric(&user_id)}),
        _ if shared.login.wrapped.load(Ordering::SeqCst) => json!({"data": [{
            "access_token": access,
            "user_id": user_id,
            "permissions": permissions.join(","),
        }]}),
        _ => json!({
            "access_token": access,
            "user_id": numeric(&user_id),
            "permissions": permissions,
        }),
    };
    axum::Json(answer).into_response()
}

/// Ids go out as numbers where they are numeric, as Meta sends them.
fn numeric(id: &str) -> Value {
    id.parse::<u64>()
        .map_or_else(|_| Value::from(id), Value::from)
}

async fn long_lived_exchange(
    State(shared): State<Arc<Shared>>,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    if let Some(response) = scripted(&shared) {
        return response;
    }
    let Some((_, app_secret)) = &shared.app else {
        return StatusCode::NOT_FOUND.into_response();
    };
    let (grant_type, prefix) = match shared.platform {
        Platform::Threads => ("th_exchange_token", "THQV"),
        _ => ("ig_exchange_token", "IGQV"),
    };
    if query.get("grant_type").map(String::as_str) != Some(grant_type) {
        return graph_failure(100, None, "Unsupported grant_type");
    }
    if query.get("client_secret") != Some(app_secret) {
        return graph_failure(1, None, "Error validating client secret.");
    }
    let presented = query.get("access_token").map_or("", String::as_str);
    let now = chrono::Utc::now().timestamp();
    let mut tokens = shared.tokens.lock().unwrap();
    let Some(info) = tokens.get(presented).cloned() else {
        return graph_failure(
            190,
            None,
            "Invalid OAuth access token - Cannot parse access token",
        );
    };
    if let Some((code, subcode, message)) = token_problem(info.state_at(now)) {
        return graph_failure(code, subcode, message);
    }
    let next = token(prefix);
    tokens.insert(
        next.clone(),
        TokenInfo {
            state: GraphTokenState::Live,
            kind: GraphTokenKind::User,
            expires_at: now + LONG_LIVED_SECONDS as i64,
            short_lived: false,
            grantee: info.grantee,
        },
    );
    axum::Json(json!({
        "access_token": next,
        "token_type": "bearer",
        "expires_in": LONG_LIVED_SECONDS,
    }))
    .into_response()
}

/// A Graph error answer, boxed to keep results small.
fn refusal(code: u32, subcode: Option<u32>, message: &str) -> Box<Response> {
    Box::new(graph_failure(code, subcode, message))
}

/// The token a Graph call presents, and what the fake knows of it; or the
/// Graph error to answer.
fn caller(
    shared: &Shared,
    query: &HashMap<String, String>,
    headers: &HeaderMap,
) -> Result<(TokenInfo, String), Box<Response>> {
    let bearer = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            v.strip_prefix("Bearer ")
                .or_else(|| v.strip_prefix("OAuth "))
        })
        .map(str::to_owned);
    let Some(presented) = query.get("access_token").cloned().or(bearer) else {
        return Err(refusal(
            104,
            None,
            "An access token is required to request this resource.",
        ));
    };
    if let (Some(proof), Some((_, secret))) = (query.get("appsecret_proof"), &shared.app)
        && *proof != appsecret_proof(&presented, secret)
    {
        return Err(refusal(
            100,
            None,
            "Invalid appsecret_proof provided in the API argument",
        ));
    }
    let now = chrono::Utc::now().timestamp();
    let Some(info) = shared.tokens.lock().unwrap().get(&presented).cloned() else {
        return Err(refusal(
            190,
            None,
            "Invalid OAuth access token - Cannot parse access token",
        ));
    };
    if let Some((code, subcode, message)) = token_problem(info.state_at(now)) {
        return Err(refusal(code, subcode, message));
    }
    Ok((info, presented))
}

/// HMAC-SHA256 of the token keyed by the app secret, in lowercase hex.
fn appsecret_proof(access_token: &str, app_secret: &str) -> String {
    let mut mac =
        Hmac::<sha2::Sha256>::new_from_slice(app_secret.as_bytes()).expect("HMAC takes any key");
    mac.update(access_token.as_bytes());
    mac.finalize()
        .into_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// One requested field: its name and, for `field{a,b}`, its subfields.
type Field = (String, Vec<String>);

/// Splits Graph's `fields` parameter at the commas outside braces.
fn parse_fields(raw: &str) -> Option<Vec<Field>> {
    let mut fields = Vec::new();
    let mut depth = 0usize;
    let mut current = String::new();
    for c in raw.chars().chain(std::iter::once(',')) {
        match c {
            '{' => {
                depth += 1;
                current.push(c);
            }
            '}' => {
                depth = depth.checked_sub(1)?;
                current.push(c);
            }
            ',' if depth == 0 => {
                let item = current.trim().to_owned();
                current.clear();
                if item.is_empty() {
                    continue;
                }
                match item.split_once('{') {
                    Some((name, rest)) => {
                        let inner = rest.strip_suffix('}')?;
                        let subfields = inner
                            .split(',')
                            .map(|s| s.trim().to_owned())
                            .filter(|s| !s.is_empty())
                            .collect();
                        fields.push((name.trim().to_owned(), subfields));
                    }
                    None => fields.push((item, Vec::new())),
                }
            }
            _ => current.push(c),
        }
    }
    (depth == 0).then_some(fields)
}

fn nonexisting(field: &str, node: &str) -> Response {
    graph_failure(
        100,
        None,
        &format!("(#100) Tried accessing nonexisting field ({field}) on node type ({node})"),
    )
}

/// The requested fields, or the Graph error for one the node lacks.
fn requested(
    query: &HashMap<String, String>,
    default: &str,
    known: &[&str],
    node: &str,
) -> Result<Vec<Field>, Box<Response>> {
    let raw = query.get("fields").map_or(default, String::as_str);
    let fields = parse_fields(raw)
        .ok_or_else(|| refusal(100, None, "(#100) Syntax error in the fields parameter"))?;
    match fields
        .iter()
        .find(|(name, _)| !known.contains(&name.as_str()))
    {
        Some((unknown, _)) => Err(Box::new(nonexisting(unknown, node))),
        None => Ok(fields),
    }
}

async fn profile(
    State(shared): State<Arc<Shared>>,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Response {
    if let Some(response) = scripted(&shared) {
        return response;
    }
    let (info, _) = match caller(&shared, &query, &headers) {
        Ok(found) => found,
        Err(response) => return *response,
    };
    let Some(grantee) = info.grantee else {
        return graph_failure(
            190,
            None,
            "Invalid OAuth access token - Cannot parse access token",
        );
    };
    let user = &grantee.user;
    let (known, node): (&[&str], &str) = match shared.platform {
        Platform::Threads => (
            &[
                "id",
                "username",
                "name",
                "threads_profile_picture_url",
                "threads_biography",
            ],
            "ThreadsUser",
        ),
        _ => (
            &[
                "id",
                "user_id",
                "username",
                "name",
                "profile_picture_url",
                "account_type",
            ],
            "User",
        ),
    };
    let fields = match requested(&query, "id", known, node) {
        Ok(fields) => fields,
        Err(response) => return *response,
    };
    // Instagram's `id` is app-scoped; `user_id` is the professional
    // account's own id.
    let id = match shared.platform {
        Platform::Threads => user.id.clone(),
        _ => format!("9{}", user.id),
    };
    let mut answer = Map::new();
    answer.insert("id".into(), Value::from(id));
    for (name, _) in &fields {
        let value = match name.as_str() {
            "user_id" => Value::from(user.id.clone()),
            "username" => Value::from(user.handle.clone()),
            "name" => Value::from(user.name.clone()),
            "profile_picture_url" | "threads_profile_picture_url" => {
                Value::from(shared.login.picture(&user.id))
            }
            "account_type" => Value::from("BUSINESS"),
            "threads_biography" => Value::from(""),
            _ => continue,
        };
        answer.insert(name.clone(), value);
    }
    axum::Json(Value::Object(answer)).into_response()
}

async fn permissions(
    State(shared): State<Arc<Shared>>,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Response {
    if let Some(response) = scripted(&shared) {
        return response;
    }
    let (info, _) = match caller(&shared, &query, &headers) {
        Ok(found) => found,
        Err(response) => return *response,
    };
    let Some(grantee) = info.grantee else {
        return graph_failure(
            190,
            None,
            "Invalid OAuth access token - Cannot parse access token",
        );
    };
    let mut data = vec![json!({"permission": "public_profile", "status": "granted"})];
    data.extend(
        grantee
            .scopes
            .iter()
            .filter(|s| *s != "public_profile")
            .map(|s| json!({"permission": s, "status": "granted"})),
    );
    axum::Json(json!({ "data": data })).into_response()
}

const PAGE_FIELDS: &[&str] = &[
    "id",
    "name",
    "access_token",
    "picture",
    "category",
    "tasks",
    "instagram_business_account",
];
const INSTAGRAM_FIELDS: &[&str] = &["id", "username", "name", "profile_picture_url"];

/// Opaque-looking cursors naming a position in the user's Page list.
fn cursor(index: usize) -> String {
    format!("QVFIU{index:08x}")
}

fn position(cursor: &str) -> Option<usize> {
    usize::from_str_radix(cursor.strip_prefix("QVFIU")?, 16).ok()
}

async fn accounts(
    State(shared): State<Arc<Shared>>,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Response {
    if let Some(response) = scripted(&shared) {
        return response;
    }
    let (info, presented) = match caller(&shared, &query, &headers) {
        Ok(found) => found,
        Err(response) => return *response,
    };
    if info.kind == GraphTokenKind::Page {
        return nonexisting("accounts", "Page");
    }
    let Some(grantee) = info.grantee.clone() else {
        return axum::Json(json!({"data": []})).into_response();
    };
    let fields = match requested(
        &query,
        "id,name,access_token,category,tasks",
        PAGE_FIELDS,
        "Page",
    ) {
        Ok(fields) => fields,
        Err(response) => return *response,
    };
    if let Some((_, sub)) = fields
        .iter()
        .find(|(n, _)| n == "instagram_business_account")
        && let Some(unknown) = sub.iter().find(|s| !INSTAGRAM_FIELDS.contains(&s.as_str()))
    {
        return nonexisting(unknown, "IGUser");
    }
    // Without pages_show_list, Meta lists nothing rather than refusing.
    let pages = if grantee.granted("pages_show_list") {
        shared
            .login
            .pages
            .lock()
            .unwrap()
            .get(&grantee.user.id)
            .cloned()
            .unwrap_or_default()
    } else {
        Vec::new()
    };
    let start = match query.get("after") {
        Some(after) => match position(after) {
            Some(index) => index + 1,
            None => return graph_failure(100, None, "(#100) The after cursor is invalid"),
        },
        None => 0,
    };
    let cap = *shared.login.page_size.lock().unwrap();
    let limit = query
        .get("limit")
        .and_then(|l| l.parse::<usize>().ok())
        .unwrap_or(25)
        .clamp(1, cap);
    let end = (start + limit).min(pages.len());
    let now = chrono::Utc::now().timestamp();
    // A Page token lasts as long as the user token it came from allows:
    // an hour from a short-lived one, forever from a long-lived one.
    let page_expiry = if info.short_lived { now + 3_600 } else { 0 };
    let mut data = Vec::new();
    for page in pages.get(start..end).unwrap_or_default() {
        let mut entry = Map::new();
        entry.insert("id".into(), Value::from(page.id.clone()));
        for (name, sub) in &fields {
            let value = match name.as_str() {
                "name" => Value::from(page.name.clone()),
                "category" => Value::from("Brand"),
                "tasks" => json!([
                    "ANALYZE",
                    "ADVERTISE",
                    "MODERATE",
                    "CREATE_CONTENT",
                    "MANAGE"
                ]),
                "picture" => json!({"data": {
                    "height": 50,
                    "is_silhouette": false,
                    "url": shared.login.picture(&page.id),
                    "width": 50,
                }}),
                "access_token" => {
                    let page_token = token("EAAP");
                    shared.tokens.lock().unwrap().insert(
                        page_token.clone(),
                        TokenInfo {
                            state: GraphTokenState::Live,
                            kind: GraphTokenKind::Page,
                            expires_at: page_expiry,
                            short_lived: false,
                            grantee: Some(grantee.clone()),
                        },
                    );
                    Value::from(page_token)
                }
                "instagram_business_account" => {
                    let Some(ig) = page
                        .instagram
                        .as_ref()
                        .filter(|_| grantee.granted("instagram_basic"))
                    else {
                        continue;
                    };
                    let mut account = Map::new();
                    account.insert("id".into(), Value::from(ig.id.clone()));
                    for subfield in sub {
                        let value = match subfield.as_str() {
                            "username" => Value::from(ig.username.clone()),
                            "name" => Value::from(ig.name.clone()),
                            "profile_picture_url" => Value::from(shared.login.picture(&ig.id)),
                            _ => continue,
                        };
                        account.insert(subfield.clone(), value);
                    }
                    Value::Object(account)
                }
                _ => continue,
            };
            entry.insert(name.clone(), value);
        }
        data.push(Value::Object(entry));
    }
    let mut answer = json!({ "data": data });
    if end > start {
        let mut paging = json!({"cursors": {"before": cursor(start), "after": cursor(end - 1)}});
        let next = shared
            .login
            .base
            .get()
            .and_then(|b| b.join("me/accounts").ok());
        if let Some(mut next) = next.filter(|_| end < pages.len()) {
            next.query_pairs_mut()
                .append_pair("access_token", &presented)
                .append_pair("fields", query.get("fields").map_or("", String::as_str))
                .append_pair("limit", &limit.to_string())
                .append_pair("after", &cursor(end - 1));
            paging["next"] = Value::from(next.to_string());
        }
        answer["paging"] = paging;
    }
    axum::Json(answer).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_split_outside_braces() {
        let fields =
            parse_fields("id,name,instagram_business_account{id,username},picture").unwrap();
        assert_eq!(
            fields,
            vec![
                ("id".to_owned(), vec![]),
                ("name".to_owned(), vec![]),
                (
                    "instagram_business_account".to_owned(),
                    vec!["id".to_owned(), "username".to_owned()]
                ),
                ("picture".to_owned(), vec![]),
            ]
        );
        assert!(parse_fields("a{b").is_none());
        assert!(parse_fields("a}").is_none());
    }

    #[test]
    fn cursors_round_trip() {
        assert_eq!(position(&cursor(41)), Some(41));
        assert_eq!(position("elsewhere"), None);
    }
}
