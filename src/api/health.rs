//! Unauthenticated endpoints for probes and scrapers.

use std::time::Duration;

use axum::Json;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use serde::Serialize;
use utoipa_axum::router::OpenApiRouter;

use super::ApiState;

pub fn probe_routes() -> OpenApiRouter<ApiState> {
    OpenApiRouter::new()
        .routes(utoipa_axum::routes!(healthz))
        .routes(utoipa_axum::routes!(readyz))
        .routes(utoipa_axum::routes!(openapi))
}

pub fn metrics_routes() -> OpenApiRouter<ApiState> {
    OpenApiRouter::new().routes(utoipa_axum::routes!(metrics))
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct Liveness {
    /// Always `ok`.
    status: &'static str,
}

/// The process is alive. Never checks dependencies: a database outage must
/// not get every replica restarted.
#[utoipa::path(get, path = "/healthz", tag = "operations",
    responses((status = 200, body = Liveness)))]
async fn healthz() -> Json<Liveness> {
    Json(Liveness { status: "ok" })
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct Readiness {
    /// `ready` or `not_ready`.
    status: &'static str,
    /// Each dependency: `ok`, or what is wrong with it.
    checks: Checks,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct Checks {
    postgres: String,
    migrations: String,
    redis: String,
}

const CHECK_TIMEOUT: Duration = Duration::from_secs(2);

/// PostgreSQL and Redis reachable and every migration applied; 503 naming
/// what failed otherwise.
#[utoipa::path(get, path = "/readyz", tag = "operations",
    responses((status = 200, body = Readiness), (status = 503, body = Readiness)))]
async fn readyz(State(state): State<ApiState>) -> impl IntoResponse {
    let pool = &state.inner.pool;
    let applied = tokio::time::timeout(
        CHECK_TIMEOUT,
        sqlx::query_scalar::<_, i64>("SELECT version FROM _sqlx_migrations WHERE success")
            .fetch_all(pool),
    )
    .await;
    let (postgres, migrations) = match applied {
        Err(_) | Ok(Err(sqlx::Error::PoolTimedOut | sqlx::Error::Io(_) | sqlx::Error::Tls(_))) => {
            (diagnose_postgres(&state).await, "unknown".to_owned())
        }
        Ok(Err(sqlx::Error::Database(e))) if e.code().as_deref() == Some("42P01") => (
            "ok".to_owned(),
            "not applied (run tokenwarden migrate)".to_owned(),
        ),
        Ok(Err(_)) => ("unreachable".to_owned(), "unknown".to_owned()),
        Ok(Ok(versions)) => {
            let pending: Vec<String> = crate::store::MIGRATOR
                .iter()
                .filter(|m| !versions.contains(&m.version))
                .map(|m| m.version.to_string())
                .collect();
            let migrations = if pending.is_empty() {
                "ok".to_owned()
            } else {
                format!("pending: {}", pending.join(", "))
            };
            ("ok".to_owned(), migrations)
        }
    };
    let redis = match &state.inner.redis {
        None => "not configured".to_owned(),
        Some(connector) => match tokio::time::timeout(CHECK_TIMEOUT, ping(connector)).await {
            Ok(Ok(())) => "ok".to_owned(),
            Ok(Err(problem)) => problem,
            Err(_) => "timed out".to_owned(),
        },
    };
    let ready = postgres == "ok" && migrations == "ok" && redis == "ok";
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    let body = Readiness {
        status: if ready { "ready" } else { "not_ready" },
        checks: Checks {
            postgres,
            migrations,
            redis,
        },
    };
    (status, Json(body))
}

/// The pool failed: a fresh connection says why (a rejected certificate
/// rather than just a timeout). "timed out" when that hangs too.
async fn diagnose_postgres(state: &ApiState) -> String {
    let Some(options) = &state.inner.database else {
        return "unreachable".to_owned();
    };
    match tokio::time::timeout(CHECK_TIMEOUT, crate::store::diagnose(options)).await {
        // The pool failed but a new connection works: it was busy.
        Ok(reason) if reason == "ok" => "timed out".to_owned(),
        Ok(reason) => reason,
        Err(_) => "timed out".to_owned(),
    }
}

/// PING in the configured mode; a TLS failure is named, anything else is
/// "unreachable".
async fn ping(connector: &crate::queue::Connector) -> Result<(), String> {
    let mut conn = connector.connect().await.map_err(|e| {
        let text = format!("{e:#}");
        if text.contains("TLS to Redis failed") {
            text
        } else {
            "unreachable".to_owned()
        }
    })?;
    redis::cmd("PING")
        .query_async::<String>(&mut conn)
        .await
        .map_err(|_| "unreachable".to_owned())?;
    Ok(())
}

/// Prometheus text format; names and labels in docs/metrics.md.
#[utoipa::path(get, path = "/metrics", tag = "operations",
    responses((status = 200, description = "Prometheus text exposition format", content_type = "text/plain")))]
async fn metrics() -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        crate::metrics::render(),
    )
}

/// This document.
#[utoipa::path(get, path = "/openapi.json", tag = "operations",
    responses((status = 200, description = "The OpenAPI 3 document of this API", content_type = "application/json")))]
async fn openapi(State(state): State<ApiState>) -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "application/json")],
        state.inner.openapi.clone(),
    )
}
