//! The instance's OAuth server, as Mastodon runs it (Doorkeeper): apps
//! registered by anyone at `POST /api/v1/apps`, the authorization page at
//! `/oauth/authorize` (its user simulated by the shared `Desk`), and
//! `/oauth/token` for `authorization_code` and `client_credentials`, and
//! `/oauth/revoke`. Strict as Doorkeeper is: an unknown client is refused
//! on the page itself (no redirect) and with 401 `invalid_client` at the
//! token endpoint; a redirect URI or scope the app did not register is
//! refused.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::Mutex;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use serde_json::{Value, json};
use url::Url;

use super::Shared;
use crate::authorize::Rules;
use crate::server::token;

/// Scopes Mastodon knows (its Doorkeeper `optional_scopes`, the
/// granular ones the connect flow asks for among them).
const KNOWN_SCOPES: &[&str] = &[
    "read",
    "write",
    "follow",
    "push",
    "profile",
    "read:accounts",
    "read:blocks",
    "read:bookmarks",
    "read:favourites",
    "read:filters",
    "read:follows",
    "read:lists",
    "read:mutes",
    "read:notifications",
    "read:search",
    "read:statuses",
    "write:accounts",
    "write:blocks",
    "write:bookmarks",
    "write:conversations",
    "write:favourites",
    "write:filters",
    "write:follows",
    "write:lists",
    "write:media",
    "write:mutes",
    "write:notifications",
    "write:reports",
    "write:statuses",
];

const INVALID_CLIENT: &str = "Client authentication failed due to unknown client, no client \
                              authentication included, or unsupported authentication method.";
const INVALID_GRANT: &str = "The provided authorization grant is invalid, expired, revoked, does \
                             not match the redirection URI used in the authorization request, or \
                             was issued to another client.";
const INVALID_SCOPE: &str = "The requested scope is invalid, unknown, or malformed.";

/// An app as the instance keeps it.
#[derive(Clone, Debug)]
pub struct RegisteredApp {
    pub client_id: String,
    pub client_secret: String,
    pub name: String,
    pub redirect_uris: Vec<String>,
    pub scopes: Vec<String>,
    pub website: Option<String>,
}

#[derive(Default)]
pub(super) struct OAuthState {
    apps: Mutex<HashMap<String, RegisteredApp>>,
    registrations: Mutex<u32>,
    /// App tokens (client credentials) and the app they belong to.
    app_tokens: Mutex<HashMap<String, String>>,
}

impl OAuthState {
    pub(super) fn registrations(&self) -> u32 {
        *self.registrations.lock().unwrap()
    }

    pub(super) fn apps(&self) -> Vec<RegisteredApp> {
        self.apps.lock().unwrap().values().cloned().collect()
    }

    /// Removes every app and its app tokens; returns their client ids.
    pub(super) fn forget_apps(&self) -> HashSet<String> {
        let gone: HashSet<String> = self
            .apps
            .lock()
            .unwrap()
            .drain()
            .map(|(id, _)| id)
            .collect();
        self.app_tokens
            .lock()
            .unwrap()
            .retain(|_, client| !gone.contains(client));
        gone
    }

    pub(super) fn live_app_tokens(&self) -> usize {
        self.app_tokens.lock().unwrap().len()
    }

    pub(super) fn is_app_token(&self, token: &str) -> bool {
        self.app_tokens.lock().unwrap().contains_key(token)
    }

    fn app(&self, client_id: &str) -> Option<RegisteredApp> {
        self.apps.lock().unwrap().get(client_id).cloned()
    }

    /// Client authentication as Doorkeeper accepts it: in the body or with
    /// HTTP Basic.
    fn authenticate(
        &self,
        headers: &HeaderMap,
        form: &HashMap<String, String>,
    ) -> Option<RegisteredApp> {
        let (id, secret) = basic(headers).or_else(|| {
            Some((
                form.get("client_id")?.clone(),
                form.get("client_secret")?.clone(),
            ))
        })?;
        self.app(&id).filter(|app| app.client_secret == secret)
    }
}

pub(super) fn routes() -> Router<Arc<Shared>> {
    Router::new()
        .route("/api/v1/apps", axum::routing::post(register))
        .route("/oauth/authorize", axum::routing::get(authorize))
        .route("/oauth/token", axum::routing::post(token_endpoint))
        .route("/oauth/revoke", axum::routing::post(revoke))
}

fn oauth_error(status: StatusCode, code: &str, description: &str) -> Response {
    (
        status,
        axum::Json(json!({"error": code, "error_description": description})),
    )
        .into_response()
}

fn validation_failed(what: &str) -> Response {
    (
        StatusCode::UNPROCESSABLE_ENTITY,
        axum::Json(json!({"error": format!("Validation failed: {what}")})),
    )
        .into_response()
}

/// A request body as Rails reads it: a form, or JSON. Arrays (JSON, or
/// `name[]=` form fields) are kept as one value per element.
fn params(headers: &HeaderMap, body: &[u8]) -> HashMap<String, Vec<String>> {
    let json = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    let mut out: HashMap<String, Vec<String>> = HashMap::new();
    if json {
        if let Ok(Value::Object(map)) = serde_json::from_slice::<Value>(body) {
            for (key, value) in map {
                let values = match value {
                    Value::String(s) => vec![s],
                    Value::Array(items) => items
                        .into_iter()
                        .filter_map(|v| v.as_str().map(str::to_owned))
                        .collect(),
                    Value::Null => continue,
                    other => vec![other.to_string()],
                };
                out.insert(key, values);
            }
        }
    } else {
        for (key, value) in url::form_urlencoded::parse(body).into_owned() {
            let key = key.strip_suffix("[]").map(str::to_owned).unwrap_or(key);
            out.entry(key).or_default().push(value);
        }
    }
    out
}

fn form(body: &[u8]) -> HashMap<String, String> {
    url::form_urlencoded::parse(body).into_owned().collect()
}

fn basic(headers: &HeaderMap) -> Option<(String, String)> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let encoded = value.strip_prefix("Basic ")?;
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded)
        .ok()?;
    let text = String::from_utf8(decoded).ok()?;
    let (id, secret) = text.split_once(':')?;
    let unescape = |s: &str| {
        url::form_urlencoded::parse(format!("v={s}").as_bytes())
            .next()
            .map(|(_, v)| v.into_owned())
    };
    Some((unescape(id)?, unescape(secret)?))
}

fn scope_list(text: &str) -> Vec<String> {
    text.split_whitespace().map(str::to_owned).collect()
}

async fn register(State(shared): State<Arc<Shared>>, headers: HeaderMap, body: Bytes) -> Response {
    if let Some(response) = shared.script.next() {
        return response;
    }
    let params = params(&headers, &body);
    let first = |key: &str| {
        params
            .get(key)
            .and_then(|v| v.first())
            .map(|s| s.trim().to_owned())
            .filter(|s| !s.is_empty())
    };
    let Some(name) = first("client_name") else {
        return validation_failed("Name can't be blank");
    };
    // One URI per line (Doorkeeper), or one per array element.
    let redirect_uris: Vec<String> = params
        .get("redirect_uris")
        .map(|values| {
            values
                .iter()
                .flat_map(|v| v.split_whitespace())
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default();
    if redirect_uris.is_empty() {
        return validation_failed("Redirect URI can't be blank");
    }
    for uri in &redirect_uris {
        match Url::parse(uri) {
            Ok(url) if url.fragment().is_some() => {
                return validation_failed("Redirect URI cannot contain a fragment.");
            }
            Ok(_) => {}
            Err(_) => return validation_failed("Redirect URI must be an absolute URI."),
        }
    }
    let scopes = scope_list(&first("scopes").unwrap_or_else(|| "read".to_owned()));
    if scopes.iter().any(|s| !KNOWN_SCOPES.contains(&s.as_str())) {
        return validation_failed("Scopes doesn't match configured on the server.");
    }
    let app = RegisteredApp {
        client_id: token("mastodon_client").replace('_', "-"),
        client_secret: token("mastodon_secret").replace('_', "-"),
        name,
        redirect_uris,
        scopes,
        website: first("website"),
    };
    *shared.oauth.registrations.lock().unwrap() += 1;
    shared
        .oauth
        .apps
        .lock()
        .unwrap()
        .insert(app.client_id.clone(), app.clone());
    let id = shared.oauth.registrations();
    axum::Json(json!({
        "id": id.to_string(),
        "name": app.name,
        "website": app.website,
        "scopes": app.scopes,
        "redirect_uri": app.redirect_uris.join("\n"),
        "redirect_uris": app.redirect_uris,
        "client_id": app.client_id,
        "client_secret": app.client_secret,
        "client_secret_expires_at": 0,
    }))
    .into_response()
}

/// Doorkeeper's error page: shown to the user, no redirect to a client it
/// cannot trust.
fn error_page(status: StatusCode, description: &str) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
        format!("<h1>An error has occurred</h1><p>{description}</p>"),
    )
        .into_response()
}

async fn authorize(
    State(shared): State<Arc<Shared>>,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    if let Some(response) = shared.script.next() {
        return response;
    }
    let client_id = query.get("client_id").cloned().unwrap_or_default();
    let Some(app) = shared.oauth.app(&client_id) else {
        return error_page(StatusCode::UNAUTHORIZED, INVALID_CLIENT);
    };
    let redirect = query.get("redirect_uri").cloned().unwrap_or_default();
    if !app.redirect_uris.contains(&redirect) {
        return error_page(
            StatusCode::BAD_REQUEST,
            "The requested redirect uri is malformed or doesn't match client redirect URI.",
        );
    }
    let asked = query
        .get("scope")
        .map(|s| scope_list(s))
        .unwrap_or_else(|| vec!["read".to_owned()]);
    if asked.is_empty() || asked.iter().any(|s| !app.scopes.contains(s)) {
        let mut target = Url::parse(&redirect).expect("checked at registration");
        {
            let mut pairs = target.query_pairs_mut();
            pairs
                .append_pair("error", "invalid_scope")
                .append_pair("error_description", INVALID_SCOPE);
            if let Some(state) = query.get("state") {
                pairs.append_pair("state", state);
            }
        }
        return (StatusCode::FOUND, [(header::LOCATION, target.to_string())]).into_response();
    }
    shared
        .desk
        .authorize(&query, &app.client_id, Rules::default())
}

async fn token_endpoint(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if let Some(response) = shared.script.next() {
        return response;
    }
    let form = form(&body);
    let Some(app) = shared.oauth.authenticate(&headers, &form) else {
        return oauth_error(StatusCode::UNAUTHORIZED, "invalid_client", INVALID_CLIENT);
    };
    let created_at = chrono::Utc::now().timestamp();
    match form.get("grant_type").map(String::as_str) {
        Some("authorization_code") => {
            let code = form.get("code").map(String::as_str).unwrap_or("");
            let granted = match shared.desk.redeem(
                code,
                form.get("redirect_uri").map(String::as_str),
                form.get("code_verifier").map(String::as_str),
            ) {
                Ok(granted) if granted.client_id == app.client_id => granted,
                _ => return oauth_error(StatusCode::BAD_REQUEST, "invalid_grant", INVALID_GRANT),
            };
            let access = shared.issue_for(granted.user, &app.client_id);
            axum::Json(json!({
                "access_token": access,
                "token_type": "Bearer",
                "scope": granted.scope,
                "created_at": created_at,
            }))
            .into_response()
        }
        Some("client_credentials") => {
            let asked = form
                .get("scope")
                .map(|s| scope_list(s))
                .unwrap_or_else(|| vec!["read".to_owned()]);
            if asked.iter().any(|s| !app.scopes.contains(s)) {
                return oauth_error(StatusCode::BAD_REQUEST, "invalid_scope", INVALID_SCOPE);
            }
            let access = token("mastapp");
            shared
                .oauth
                .app_tokens
                .lock()
                .unwrap()
                .insert(access.clone(), app.client_id.clone());
            axum::Json(json!({
                "access_token": access,
                "token_type": "Bearer",
                "scope": asked.join(" "),
                "created_at": created_at,
            }))
            .into_response()
        }
        _ => oauth_error(
            StatusCode::BAD_REQUEST,
            "unsupported_grant_type",
            "The authorization grant type is not supported by the authorization server.",
        ),
    }
}

/// RFC 7009: 200 whether or not the token was known; only the app's own
/// tokens are revoked.
async fn revoke(State(shared): State<Arc<Shared>>, headers: HeaderMap, body: Bytes) -> Response {
    if let Some(response) = shared.script.next() {
        return response;
    }
    let form = form(&body);
    let Some(app) = shared.oauth.authenticate(&headers, &form) else {
        return oauth_error(StatusCode::FORBIDDEN, "unauthorized_client", INVALID_CLIENT);
    };
    let presented = form.get("token").cloned().unwrap_or_default();
    let mut app_tokens = shared.oauth.app_tokens.lock().unwrap();
    if app_tokens.get(&presented) == Some(&app.client_id) {
        app_tokens.remove(&presented);
    }
    drop(app_tokens);
    let mut tokens = shared.tokens.lock().unwrap();
    if tokens
        .get(&presented)
        .is_some_and(|t| t.client_id.as_deref() == Some(app.client_id.as_str()))
    {
        tokens.remove(&presented);
    }
    axum::Json(json!({})).into_response()
}
