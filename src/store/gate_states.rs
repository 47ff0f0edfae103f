//! The circuit breakers' state as the workers report it, and operators'
//! requests to resume a paused platform: the gate lives in each worker's
//! memory, the console in the `api` role, so they meet here.

use chrono::{DateTime, Utc};
use sqlx::{FromRow, PgPool};

/// One platform's breaker in one worker process, as reported.
#[derive(Debug, Clone, FromRow)]
pub struct GateStateRow {
    pub provider: String,
    pub instance: String,
    pub paused_until: Option<DateTime<Utc>>,
    pub pause_reason: Option<String>,
    pub config_error: bool,
    pub reported_at: DateTime<Utc>,
}

/// What a worker reports for one platform.
#[derive(Debug, Clone)]
pub struct GateReport {
    pub provider: &'static str,
    pub paused_until: Option<DateTime<Utc>>,
    pub pause_reason: Option<String>,
    pub config_error: bool,
}

/// Writes this instance's state of every platform in one statement.
pub async fn report(
    pool: &PgPool,
    instance: &str,
    reports: &[GateReport],
) -> Result<(), sqlx::Error> {
    let providers: Vec<&str> = reports.iter().map(|r| r.provider).collect();
    let until: Vec<Option<DateTime<Utc>>> = reports.iter().map(|r| r.paused_until).collect();
    let reasons: Vec<Option<String>> = reports.iter().map(|r| r.pause_reason.clone()).collect();
    let config_errors: Vec<bool> = reports.iter().map(|r| r.config_error).collect();
    sqlx::query(
        "INSERT INTO provider_gate_states (provider, instance, paused_until, pause_reason, config_error, reported_at)
         SELECT p, $1, u, r, c, now()
         FROM unnest($2::text[], $3::timestamptz[], $4::text[], $5::bool[]) AS t(p, u, r, c)
         ON CONFLICT (provider, instance) DO UPDATE SET
             paused_until = EXCLUDED.paused_until, pause_reason = EXCLUDED.pause_reason,
             config_error = EXCLUDED.config_error, reported_at = EXCLUDED.reported_at",
    )
    .bind(instance)
    .bind(providers)
    .bind(until)
    .bind(reasons)
    .bind(config_errors)
    .execute(pool)
    .await?;
    Ok(())
}

/// Reports of the last `fresh_within` (older ones are from processes that
/// are gone), by platform.
pub async fn current(
    pool: &PgPool,
    fresh_within: std::time::Duration,
) -> Result<Vec<GateStateRow>, sqlx::Error> {
    sqlx::query_as(
        "SELECT * FROM provider_gate_states WHERE reported_at > now() - $1
         ORDER BY provider, instance",
    )
    .bind(fresh_within)
    .fetch_all(pool)
    .await
}

/// Records an operator's request to resume `provider`; its id.
pub async fn request_resume(
    pool: &PgPool,
    provider: &str,
    operator_key_id: &str,
) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar(
        "INSERT INTO provider_resumes (provider, operator_key_id) VALUES ($1, $2) RETURNING id",
    )
    .bind(provider)
    .bind(operator_key_id)
    .fetch_one(pool)
    .await
}

#[derive(Debug, Clone, FromRow)]
pub struct ResumeRow {
    pub id: i64,
    pub provider: String,
    pub operator_key_id: String,
    pub requested_at: DateTime<Utc>,
}

/// Resume requests after `after` (an id), oldest first.
pub async fn resumes_after(pool: &PgPool, after: i64) -> Result<Vec<ResumeRow>, sqlx::Error> {
    sqlx::query_as("SELECT * FROM provider_resumes WHERE id > $1 ORDER BY id LIMIT 1000")
        .bind(after)
        .fetch_all(pool)
        .await
}

/// The newest request's id (0 with none): where a starting worker begins
/// to listen, so old requests do not resume its fresh breakers.
pub async fn latest_resume_id(pool: &PgPool) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar("SELECT COALESCE(max(id), 0) FROM provider_resumes")
        .fetch_one(pool)
        .await
}

/// A platform's latest resume requests, newest first.
pub async fn resumes_of(
    pool: &PgPool,
    provider: &str,
    limit: i64,
) -> Result<Vec<ResumeRow>, sqlx::Error> {
    sqlx::query_as("SELECT * FROM provider_resumes WHERE provider = $1 ORDER BY id DESC LIMIT $2")
        .bind(provider)
        .bind(limit)
        .fetch_all(pool)
        .await
}
