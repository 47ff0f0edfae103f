//! The operator console: server-rendered pages for on-call, served by the
//! `api` role next to `/v1` under `console.path`. Overview, accounts,
//! platforms; Refresh now, Health check now, Disconnect, Resume. Every page
//! is HTML from the server, usable without JavaScript; the one stylesheet
//! and the one script are compiled into the binary and served under a
//! strict Content-Security-Policy. Nothing is shown before sign-in with an
//! operator key, every form carries a CSRF token, and every action is
//! written to the events outbox with the operator key's id.
//!
//! The console sits above the API: it reads accounts through the API's
//! view (so it shows what the API shows, never a token) and forces
//! refreshes through the API's rate limit.

mod accounts;
mod auth;
mod error;
mod layout;
mod overview;
mod platforms;
mod session;
mod sparkline;
mod throttle;

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{HeaderValue, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use secrecy::SecretString;
use serde::de::DeserializeOwned;
use sqlx::PgPool;

pub use error::ConsoleError;
use session::Keys;

use crate::config::Settings;
use crate::engine::Engine;

/// What every console handler shares.
#[derive(Clone)]
pub struct ConsoleState {
    inner: Arc<Inner>,
}

struct Inner {
    engine: Engine,
    pool: PgPool,
    settings: Settings,
    keys: Keys,
    base: String,
    cookie_secure: bool,
    session_ttl: Duration,
    sign_ins: throttle::SignInThrottle,
}

impl ConsoleState {
    /// None when the console is turned off or no operator key is configured
    /// (then nobody could sign in, so nothing is served).
    pub fn new(settings: &Settings, engine: Engine) -> Option<Self> {
        let console = &settings.console;
        if !console.enabled {
            return None;
        }
        let Some(configured) = console.operator_keys.as_ref() else {
            tracing::info!("operator console not served: console.operator_keys is not set");
            return None;
        };
        // Validation refused malformed keys before start; none left here.
        let keys = crate::config::operator_keys(configured)
            .ok()?
            .into_iter()
            .map(|k| (k.id.to_owned(), SecretString::from(k.key.to_owned())))
            .collect();
        Some(Self {
            inner: Arc::new(Inner {
                pool: engine.pool().clone(),
                engine,
                settings: settings.clone(),
                keys: Keys::new(keys),
                base: console.path.clone(),
                cookie_secure: console.cookie_secure,
                session_ttl: console.session_ttl,
                sign_ins: throttle::SignInThrottle::default(),
            }),
        })
    }

    fn base(&self) -> &str {
        &self.inner.base
    }
}

/// Forms are small: a key, a token, a confirmation.
const MAX_FORM_BYTES: usize = 16 * 1024;

/// The console's routes under its path, with its own layers: sign-in
/// required on every page but the sign-in form and the two assets, the
/// security headers on every answer, and the API's request logging.
pub fn router(state: ConsoleState) -> Router {
    let base = state.base().to_owned();
    let at = |path: &str| format!("{base}{path}");
    let signed_in = Router::new()
        .route(&base, get(overview::show))
        .route(&at("/"), get(overview::show))
        .route(&at("/accounts"), get(accounts::list))
        .route(&at("/accounts/{id}"), get(accounts::show))
        .route(&at("/accounts/{id}/refresh"), post(accounts::refresh))
        .route(
            &at("/accounts/{id}/health-check"),
            post(accounts::health_check),
        )
        .route(&at("/accounts/{id}/disconnect"), post(accounts::disconnect))
        .route(&at("/platforms/{name}"), get(platforms::show))
        .route(&at("/platforms/{name}/resume"), post(platforms::resume))
        .route(&at("/sign-out"), post(auth::sign_out))
        .route(&at("/{*rest}"), get(not_found).post(not_found))
        .route_layer(middleware::from_fn_with_state(
            state.clone(),
            auth::require_operator,
        ));
    Router::new()
        .route(&at("/sign-in"), get(auth::form).post(auth::sign_in))
        .route(&at("/static/console.css"), get(stylesheet))
        .route(&at("/static/console.js"), get(script))
        .merge(signed_in)
        .layer(DefaultBodyLimit::max(MAX_FORM_BYTES))
        .layer(middleware::from_fn(security_headers))
        .layer(middleware::from_fn(crate::api::catch_panic))
        .layer(middleware::from_fn(crate::api::observe))
        .with_state(state)
}

async fn not_found() -> ConsoleError {
    ConsoleError::not_found("There is no such page.")
}

/// Only this origin's own stylesheet and script; no inline script or
/// style, no framing, forms only to this origin.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; \
     style-src 'self'; img-src 'self' data:; connect-src 'self'; form-action 'self'; \
     frame-ancestors 'none'; base-uri 'none'";

async fn security_headers(request: Request, next: Next) -> Response {
    let mut response = next.run(request).await;
    let headers = response.headers_mut();
    for (name, value) in [
        (header::CONTENT_SECURITY_POLICY, CONTENT_SECURITY_POLICY),
        (header::X_FRAME_OPTIONS, "DENY"),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        (header::REFERRER_POLICY, "no-referrer"),
    ] {
        headers.insert(name, HeaderValue::from_static(value));
    }
    headers
        .entry(header::CACHE_CONTROL)
        .or_insert(HeaderValue::from_static("no-store"));
    response
}

async fn stylesheet() -> Response {
    asset(
        "text/css; charset=utf-8",
        include_str!("assets/console.css"),
    )
}

async fn script() -> Response {
    asset(
        "text/javascript; charset=utf-8",
        include_str!("assets/console.js"),
    )
}

fn asset(content_type: &'static str, body: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CACHE_CONTROL, "public, max-age=3600"),
        ],
        body,
    )
        .into_response()
}

/// The signed-in operator, put in place by [`auth::require_operator`].
#[derive(Clone)]
pub struct Operator {
    pub key_id: String,
    pub csrf: String,
    /// The session's row in `console_sessions`.
    pub session_id: String,
}

impl<S: Send + Sync> FromRequestParts<S> for Operator {
    type Rejection = ConsoleError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, ConsoleError> {
        parts
            .extensions
            .get::<Operator>()
            .cloned()
            .ok_or_else(|| ConsoleError::internal("a page was served without sign-in"))
    }
}

/// A query string as `T`; a malformed one is a 400 page, not quoting it.
pub fn parse_query<T: DeserializeOwned>(raw: Option<&str>) -> Result<T, ConsoleError> {
    serde_urlencoded::from_str(raw.unwrap_or(""))
        .map_err(|_| ConsoleError::bad_request("The query string is malformed."))
}

/// A form body as `T`, after its CSRF token is checked against `expected`.
pub fn parse_form<T: DeserializeOwned>(
    body: &Bytes,
    expected_csrf: &str,
) -> Result<T, ConsoleError> {
    #[derive(serde::Deserialize)]
    struct Token {
        csrf: Option<String>,
    }
    let token: Token = serde_urlencoded::from_bytes(body)
        .map_err(|_| ConsoleError::bad_request("The form is malformed."))?;
    if !Keys::token_matches(expected_csrf, token.csrf.as_deref().unwrap_or("")) {
        return Err(ConsoleError::forbidden(
            "The form's security token is missing or stale. Go back, reload the page and try again.",
        ));
    }
    serde_urlencoded::from_bytes(body)
        .map_err(|_| ConsoleError::bad_request("The form is malformed."))
}
