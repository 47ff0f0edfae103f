//! The HTTP API (role `api`): `/v1` for the API tier behind bearer keys,
//! and unauthenticated `/healthz`, `/readyz`, `/metrics`, `/openapi.json`.
//! Every `/v1` route is declared through utoipa, so `/openapi.json` is
//! generated from the same code that routes.

mod accounts;
mod auth;
mod connect;
mod error;
mod events;
mod extract;
mod health;
mod import;
mod params;
pub mod server;
pub mod views;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use axum::Router;
use axum::extract::{DefaultBodyLimit, MatchedPath, Request};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use futures::FutureExt;
use secrecy::SecretString;
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;
use utoipa::openapi::OpenApi;
use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};
use utoipa_axum::router::OpenApiRouter;

pub use accounts::{ForcedRefresh, forced_refresh};
pub use connect::CallbackQuery;
pub use error::ApiError;
pub use params::{decode_list_cursor, encode_list_cursor};

use crate::config::Settings;
use crate::engine::Engine;

/// What every handler shares.
#[derive(Clone)]
pub struct ApiState {
    inner: Arc<Inner>,
}

struct Inner {
    engine: Engine,
    pool: PgPool,
    redis: Option<crate::queue::Connector>,
    /// For `/readyz` to say why PostgreSQL is unreachable (a fresh connection
    /// shows a TLS failure the pool only reports as a timeout).
    database: Option<sqlx::postgres::PgConnectOptions>,
    keys: Vec<SecretString>,
    force_refresh_min_interval: Duration,
    openapi: String,
    import: import::ImportLimits,
    connect: crate::connect::ConnectService,
}

impl ApiState {
    pub fn new(settings: &Settings, engine: Engine) -> anyhow::Result<Self> {
        let redis = crate::queue::Connector::new(&settings.redis).ok();
        let database = crate::store::connect_options(&settings.database, None).ok();
        let keys = settings
            .api
            .keys
            .as_ref()
            .map(|keys| {
                crate::config::api_keys(keys)
                    .into_iter()
                    .map(|k| SecretString::from(k.to_owned()))
                    .collect()
            })
            .unwrap_or_default();
        let openapi = document_json();
        let connect = crate::connect::ConnectService::new(settings, engine.clone())
            .context("building the connect flow's HTTP client")?;
        Ok(Self {
            inner: Arc::new(Inner {
                connect,
                pool: engine.pool().clone(),
                engine,
                redis,
                database,
                keys,
                force_refresh_min_interval: settings.api.force_refresh_min_interval,
                openapi: serde_json::to_string(&openapi)
                    .context("rendering the OpenAPI document")?,
                import: import::ImportLimits {
                    permits: Arc::new(tokio::sync::Semaphore::new(import::CONCURRENT_IMPORTS)),
                    max_line_bytes: settings.api.max_body_bytes,
                    stall_timeout: settings.api.idle_timeout,
                },
            }),
        })
    }
}

fn base_document() -> OpenApi {
    let mut doc = OpenApi::default();
    doc.info.title = "tokenwarden".to_owned();
    doc.info.version = env!("CARGO_PKG_VERSION").to_owned();
    doc.info.description = Some(
        "Keeps OAuth credentials of connected social-media accounts alive and reports their \
         health. Every /v1 request needs `Authorization: Bearer <api key>`, except the connect \
         callback, which browsers reach and whose single-use `state` is its credential. Errors are \
         `{\"error\": {\"code\", \"message\"}}`."
            .to_owned(),
    );
    let components = doc.components.get_or_insert_with(Default::default);
    components.add_security_scheme(
        "bearer",
        SecurityScheme::Http(Http::new(HttpAuthScheme::Bearer)),
    );
    doc
}

/// The `/v1` routes, for the API tier.
fn v1_routes() -> OpenApiRouter<ApiState> {
    OpenApiRouter::new()
        .routes(utoipa_axum::routes!(accounts::register, accounts::list))
        .routes(utoipa_axum::routes!(import::import))
        .routes(utoipa_axum::routes!(accounts::show, accounts::disconnect))
        .routes(utoipa_axum::routes!(accounts::refresh))
        .routes(utoipa_axum::routes!(accounts::access_token))
        .routes(utoipa_axum::routes!(accounts::attempts))
        .routes(utoipa_axum::routes!(events::list))
        .routes(utoipa_axum::routes!(connect::start))
        .routes(utoipa_axum::routes!(connect::exchange))
        .routes(utoipa_axum::routes!(connect::select))
}

/// The routes a browser reaches: no API key, their own credential.
fn public_routes() -> OpenApiRouter<ApiState> {
    OpenApiRouter::new()
        .routes(utoipa_axum::routes!(connect::callback))
        .routes(utoipa_axum::routes!(connect::client_metadata))
}

/// Every documented route, unlayered: the source of `/openapi.json`.
pub fn document() -> OpenApi {
    OpenApiRouter::with_openapi(base_document())
        .merge(v1_routes())
        .merge(public_routes())
        .merge(health::probe_routes())
        .merge(health::metrics_routes())
        .into_openapi()
}

/// The document as served: [`document`] plus the error answers every
/// route shares, written once here instead of on every operation.
pub fn document_json() -> serde_json::Value {
    let mut doc = serde_json::to_value(document()).unwrap_or_default();
    let error = |description: &str| {
        serde_json::json!({
            "description": description,
            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorBody"}}}
        })
    };
    let retry_after = serde_json::json!({
        "Retry-After": {
            "description": "Seconds to wait before trying again",
            "schema": {"type": "integer", "minimum": 1}
        }
    });
    // Said in prose on the fields; said here so that clients and fuzzers
    // know it too.
    if let Some(credentials) = doc.pointer_mut("/components/schemas/CredentialsSpec")
        && let Some(credentials) = credentials.as_object_mut()
    {
        credentials.insert(
            "not".to_owned(),
            serde_json::json!({"required": ["expires_in", "token_expires_at"]}),
        );
    }
    // The platforms' own expiry rules: a Mastodon token has no expiry; a
    // Bluesky session needs one (or, beyond what a schema can say, an
    // access token that is a JWT with an exp claim).
    if let Some(spec) = doc
        .pointer_mut("/components/schemas/AccountSpec")
        .and_then(|s| s.as_object_mut())
    {
        let provider_is = |name: &str| serde_json::json!({"properties": {"provider": {"const": name}}, "required": ["provider"]});
        spec.insert(
            "allOf".to_owned(),
            serde_json::json!([
                {
                    "if": provider_is("MASTODON"),
                    "then": {"properties": {"credentials": {"properties": {
                        "expires_in": {"type": "null"},
                        "token_expires_at": {"type": "null"}
                    }}}}
                },
                {
                    "if": provider_is("BLUESKY"),
                    "then": {"properties": {"credentials": {"anyOf": [
                        {"required": ["expires_in"], "properties": {"expires_in": {"type": "integer"}}},
                        {"required": ["token_expires_at"], "properties": {"token_expires_at": {"type": "string"}}}
                    ]}}}
                }
            ]),
        );
    }
    // `meta`: any JSON object whose strings (keys too) hold no NUL, as
    // deep as the server accepts; spelled out level by level, as the
    // document's consumers do not all follow recursive references.
    if let Some(meta) = doc.pointer_mut("/components/schemas/AccountSpec/properties/meta")
        && let Some(meta) = meta.as_object_mut()
    {
        let object = meta_schema(1);
        meta.insert("propertyNames".to_owned(), object["propertyNames"].clone());
        meta.insert(
            "additionalProperties".to_owned(),
            object["additionalProperties"].clone(),
        );
    }
    let Some(paths) = doc.get_mut("paths").and_then(|p| p.as_object_mut()) else {
        return doc;
    };
    for (path, item) in paths.iter_mut() {
        let Some(item) = item.as_object_mut() else {
            continue;
        };
        for (method, operation) in item.iter_mut() {
            let Some(responses) = operation
                .get_mut("responses")
                .and_then(|r| r.as_object_mut())
            else {
                continue;
            };
            let mut add = |status: &str, description: &str| {
                responses
                    .entry(status.to_owned())
                    .or_insert_with(|| error(description));
            };
            if path.starts_with("/v1/") {
                if path != "/v1/connect/callback" {
                    add("401", "No or an unknown API key");
                }
                add("422", "A parameter is invalid; `error.field` names it");
                add(
                    "503",
                    "The database is unreachable, or a refresh in flight did not finish in time; see Retry-After",
                );
                if path.contains("{id}") {
                    add("404", "No such account");
                }
                let json_body = path == "/v1/accounts" || path.starts_with("/v1/connect");
                if method == "post" && json_body {
                    add("400", "The body is not JSON (`invalid_json`)");
                    add(
                        "413",
                        "The body is larger than api.max_body_bytes (`payload_too_large`)",
                    );
                    add(
                        "415",
                        "The body is not sent as application/json (`unsupported_media_type`)",
                    );
                }
            }
            if method == "post" && path == "/v1/accounts" {
                // Stateful clients (and fuzzers) follow a registration to
                // the routes of the account it created.
                let links: serde_json::Map<String, serde_json::Value> = [
                    ("GetAccount", "show"),
                    ("RefreshAccount", "refresh"),
                    ("GetAccessToken", "access_token"),
                    ("GetAttempts", "attempts"),
                    ("DisconnectAccount", "disconnect"),
                ]
                .into_iter()
                .map(|(name, operation)| {
                    (
                        name.to_owned(),
                        serde_json::json!({
                            "operationId": operation,
                            "parameters": {"id": "$response.body#/id"}
                        }),
                    )
                })
                .collect();
                for status in ["200", "201"] {
                    if let Some(response) =
                        responses.get_mut(status).and_then(|r| r.as_object_mut())
                    {
                        response.insert("links".to_owned(), links.clone().into());
                    }
                }
            }
            for status in ["429", "503"] {
                if let Some(response) = responses.get_mut(status).and_then(|r| r.as_object_mut()) {
                    response.insert("headers".to_owned(), retry_after.clone());
                }
            }
        }
    }
    doc
}

/// The schema of a `meta` container at `depth` (the object itself is 1):
/// strings without NUL, containers down to
/// [`crate::registration::MAX_META_DEPTH`].
fn meta_schema(depth: usize) -> serde_json::Value {
    let no_nul = serde_json::json!({"type": "string", "pattern": "^[^\\x00]*$"});
    let value = if depth >= crate::registration::MAX_META_DEPTH {
        serde_json::json!({"anyOf": [no_nul, {"type": ["number", "boolean", "null"]}]})
    } else {
        let inner = meta_schema(depth + 1);
        serde_json::json!({"anyOf": [
            no_nul,
            {"type": ["number", "boolean", "null"]},
            {"type": "array", "items": inner["additionalProperties"].clone()},
            inner,
        ]})
    };
    serde_json::json!({
        "type": "object",
        "propertyNames": {"pattern": "^[^\\x00]*$"},
        "additionalProperties": value,
    })
}

/// The whole application: authenticated `/v1`, probes, the OpenAPI
/// document, and `/metrics` unless it has a listener of its own; request
/// ids, logging and counting around all of it.
pub fn router(state: ApiState, max_body_bytes: usize, with_metrics: bool) -> Router {
    let v1 = v1_routes().route_layer(middleware::from_fn_with_state(
        state.clone(),
        auth::require_api_key,
    ));
    let mut app = OpenApiRouter::new()
        .merge(v1)
        .merge(public_routes())
        .merge(health::probe_routes());
    if with_metrics {
        app = app.merge(health::metrics_routes());
    }
    let (app, _) = app.split_for_parts();
    app.fallback(|| async { ApiError::not_found("no such route") })
        .layer(DefaultBodyLimit::max(max_body_bytes))
        .layer(middleware::from_fn(json_errors))
        .layer(middleware::from_fn(catch_panic))
        .layer(middleware::from_fn(observe))
        .with_state(state)
}

/// `/metrics` and the probes alone, for `api.metrics_listen`.
pub fn metrics_router(state: ApiState) -> Router {
    let (app, _) = health::probe_routes()
        .merge(health::metrics_routes())
        .split_for_parts();
    app.fallback(|| async { ApiError::not_found("no such route") })
        .layer(middleware::from_fn(json_errors))
        .layer(middleware::from_fn(catch_panic))
        .layer(middleware::from_fn(observe))
        .with_state(state)
}

/// Every error is `{"error": {...}}`: answers made below the handlers (405
/// from the router, rejections of extractors this API does not wrap) are
/// rewritten, keeping their status and headers (such as `Allow`) and never
/// their text, which may quote the request.
pub async fn json_errors(request: Request, next: Next) -> Response {
    let response = next.run(request).await;
    let status = response.status();
    let is_json = response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    if !(status.is_client_error() || status.is_server_error()) || is_json {
        return response;
    }
    let (code, message) = match status {
        StatusCode::BAD_REQUEST => ("bad_request", "the request is malformed"),
        StatusCode::NOT_FOUND => ("not_found", "no such route"),
        StatusCode::METHOD_NOT_ALLOWED => (
            "method_not_allowed",
            "this route does not answer this method; see the Allow header",
        ),
        StatusCode::PAYLOAD_TOO_LARGE => (
            "payload_too_large",
            "the request body is larger than api.max_body_bytes allows",
        ),
        StatusCode::UNSUPPORTED_MEDIA_TYPE => (
            "unsupported_media_type",
            "send the body as Content-Type: application/json",
        ),
        StatusCode::UNPROCESSABLE_ENTITY => ("invalid_field", "the request is invalid"),
        s if s.is_server_error() => ("internal", "internal error; see the daemon's log"),
        _ => ("error", "the request was refused"),
    };
    let (mut parts, _) = response.into_parts();
    let body = ApiError::new(status, code, message).into_response();
    parts.headers.remove(header::CONTENT_LENGTH);
    let (body_parts, body) = body.into_parts();
    parts.headers.insert(
        header::CONTENT_TYPE,
        body_parts
            .headers
            .get(header::CONTENT_TYPE)
            .cloned()
            .unwrap_or_else(|| HeaderValue::from_static("application/json")),
    );
    Response::from_parts(parts, body)
}

/// A panic in a handler is a defect, but the caller still gets a JSON 500
/// (not a dropped connection), and the defect is logged and counted.
pub async fn catch_panic(request: Request, next: Next) -> Response {
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_else(|| "unmatched".to_owned());
    match std::panic::AssertUnwindSafe(next.run(request))
        .catch_unwind()
        .await
    {
        Ok(response) => response,
        Err(panic) => {
            let what = panic
                .downcast_ref::<&str>()
                .map(|s| (*s).to_owned())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "(no message)".to_owned());
            tracing::error!(%route, panic = %what, "a request handler panicked");
            metrics::counter!("tokenwarden_http_panics_total", "route" => route).increment(1);
            ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal",
                "internal error; see the daemon's log",
            )
            .into_response()
        }
    }
}

/// A request id (the caller's `x-request-id`, or a new one) on the span of
/// every log line of the request and on the response; one log line and one
/// counter per request, labelled by route template, never by path.
pub async fn observe(request: Request, next: Next) -> Response {
    let request_id = request
        .headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.is_empty() && v.len() <= 128 && v.chars().all(|c| c.is_ascii_graphic()))
        .map(str::to_owned)
        .unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_else(|| "unmatched".to_owned());
    let method = request.method().clone();
    let span = tracing::info_span!("http", %request_id, %method, %route);
    let started = Instant::now();
    let mut response = next.run(request).instrument(span.clone()).await;
    let status = response.status().as_u16();
    span.in_scope(|| tracing::info!(status, ms = started.elapsed().as_millis() as u64, "request"));
    crate::metrics::record_http_request(&route, status);
    if let Ok(value) = HeaderValue::from_str(&request_id) {
        response.headers_mut().insert("x-request-id", value);
    }
    response
}

/// Serves until `stop`, then lets requests in flight finish. Without the
/// `api` role (`with_v1` false) a process still serves its probes and
/// metrics, so every replica can be probed and scraped alike. `beside` is
/// served on the same listener next to `/v1` (the operator console): with
/// its own layers, outside the API's JSON error handling, and never in the
/// OpenAPI document.
pub async fn serve(
    settings: &Settings,
    state: ApiState,
    with_v1: bool,
    beside: Option<Router>,
    stop: CancellationToken,
) -> anyhow::Result<()> {
    crate::metrics::install();
    let listen: SocketAddr = settings.api.listen.parse().context("api.listen")?;
    let separate_metrics = !settings.api.metrics_listen.is_empty();
    let app = if with_v1 {
        let app = router(
            state.clone(),
            settings.api.max_body_bytes,
            !separate_metrics,
        );
        match beside {
            Some(beside) => app.merge(beside),
            None => app,
        }
    } else {
        metrics_router(state.clone())
    };
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| format!("cannot listen on {listen} (api.listen)"))?;
    tracing::info!(address = %listener.local_addr()?, "HTTP API listening");
    let limits = server::ConnectionLimits::from(&settings.api);
    let mut servers = tokio::task::JoinSet::new();
    let stopped = stop.clone();
    servers.spawn(async move {
        server::serve(listener, app, limits, stopped)
            .await
            .context("HTTP API server")
    });
    if separate_metrics {
        let address: SocketAddr = settings
            .api
            .metrics_listen
            .parse()
            .context("api.metrics_listen")?;
        let listener = tokio::net::TcpListener::bind(address)
            .await
            .with_context(|| format!("cannot listen on {address} (api.metrics_listen)"))?;
        tracing::info!(address = %listener.local_addr()?, "metrics and probes listening");
        let metrics = metrics_router(state);
        let stopped = stop.clone();
        servers.spawn(async move {
            server::serve(listener, metrics, limits, stopped)
                .await
                .context("metrics server")
        });
    }
    while let Some(done) = servers.join_next().await {
        done.context("an HTTP server task panicked")??;
    }
    Ok(())
}
