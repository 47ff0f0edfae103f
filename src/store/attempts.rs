//! The refresh attempt history.

use chrono::{DateTime, Utc};
use sqlx::{FromRow, PgConnection, PgPool};

use crate::domain::{AccountId, Outcome, Provider, Trigger};

/// What one attempt did; `message` is provider text already scrubbed of
/// credentials.
#[derive(Debug, Clone)]
pub struct NewAttempt {
    pub trigger: Trigger,
    pub started_at: DateTime<Utc>,
    pub finished_at: DateTime<Utc>,
    pub outcome: Outcome,
    pub http_status: Option<u16>,
    pub provider_error_code: Option<String>,
    pub message: Option<String>,
}

#[derive(Debug, Clone, FromRow)]
pub struct AttemptRow {
    pub id: i64,
    pub account_id: String,
    pub provider: String,
    #[sqlx(try_from = "String")]
    pub trigger: Trigger,
    pub started_at: DateTime<Utc>,
    pub finished_at: DateTime<Utc>,
    #[sqlx(try_from = "String")]
    pub outcome: Outcome,
    pub http_status: Option<i32>,
    pub provider_error_code: Option<String>,
    pub message: Option<String>,
    pub duration_ms: i32,
}

pub async fn insert(
    conn: &mut PgConnection,
    account: &AccountId,
    provider: Provider,
    attempt: &NewAttempt,
) -> Result<(), sqlx::Error> {
    let duration_ms = (attempt.finished_at - attempt.started_at)
        .num_milliseconds()
        .clamp(0, i32::MAX as i64) as i32;
    sqlx::query(
        "INSERT INTO refresh_attempts
             (account_id, provider, trigger, started_at, finished_at, outcome,
              http_status, provider_error_code, message, duration_ms)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
    )
    .bind(account.as_str())
    .bind(provider.as_str())
    .bind(attempt.trigger.as_str())
    .bind(attempt.started_at)
    .bind(attempt.finished_at)
    .bind(attempt.outcome.as_str())
    .bind(attempt.http_status.map(i32::from))
    .bind(&attempt.provider_error_code)
    .bind(&attempt.message)
    .bind(duration_ms)
    .execute(conn)
    .await?;
    Ok(())
}

/// The newest attempt that finished at or after `since` and actually ran
/// (not skipped): the result a waiting caller joins.
pub async fn latest_finished_since(
    pool: &PgPool,
    account: &AccountId,
    since: DateTime<Utc>,
) -> Result<Option<AttemptRow>, sqlx::Error> {
    sqlx::query_as(
        "SELECT * FROM refresh_attempts
         WHERE account_id = $1 AND finished_at >= $2 AND outcome <> 'skipped'
         ORDER BY id DESC LIMIT 1",
    )
    .bind(account.as_str())
    .bind(since)
    .fetch_optional(pool)
    .await
}

pub async fn for_account(
    pool: &PgPool,
    account: &AccountId,
    limit: i64,
) -> Result<Vec<AttemptRow>, sqlx::Error> {
    sqlx::query_as("SELECT * FROM refresh_attempts WHERE account_id = $1 ORDER BY id DESC LIMIT $2")
        .bind(account.as_str())
        .bind(limit)
        .fetch_all(pool)
        .await
}

/// One page of an account's attempts, newest first, strictly before
/// `before` (an attempt id) when given.
pub async fn page(
    pool: &PgPool,
    account: &AccountId,
    before: Option<i64>,
    limit: i64,
) -> Result<Vec<AttemptRow>, sqlx::Error> {
    sqlx::query_as(
        "SELECT * FROM refresh_attempts
         WHERE account_id = $1 AND ($2::bigint IS NULL OR id < $2)
         ORDER BY id DESC LIMIT $3",
    )
    .bind(account.as_str())
    .bind(before)
    .bind(limit)
    .fetch_all(pool)
    .await
}

/// How many attempts the account has had, by outcome.
pub async fn counts_by_outcome(
    pool: &PgPool,
    account: &AccountId,
) -> Result<Vec<(String, i64)>, sqlx::Error> {
    sqlx::query_as(
        "SELECT outcome, count(*) FROM refresh_attempts WHERE account_id = $1
         GROUP BY outcome ORDER BY outcome",
    )
    .bind(account.as_str())
    .fetch_all(pool)
    .await
}

/// When the account's latest forced refresh that reached the platform
/// finished.
pub async fn last_forced(
    pool: &PgPool,
    account: &AccountId,
) -> Result<Option<DateTime<Utc>>, sqlx::Error> {
    sqlx::query_scalar(
        "SELECT finished_at FROM refresh_attempts
         WHERE account_id = $1 AND trigger = 'forced' AND outcome <> 'skipped'
         ORDER BY id DESC LIMIT 1",
    )
    .bind(account.as_str())
    .fetch_optional(pool)
    .await
}

/// Attempts that finished since `since`, by minute and outcome (skips left
/// out: they reached no platform).
pub async fn per_minute(
    pool: &PgPool,
    since: DateTime<Utc>,
) -> Result<Vec<(DateTime<Utc>, String, i64)>, sqlx::Error> {
    sqlx::query_as(
        "SELECT date_trunc('minute', finished_at) AS minute, outcome, count(*)
         FROM refresh_attempts WHERE finished_at >= $1 AND outcome <> 'skipped'
         GROUP BY 1, 2 ORDER BY 1, 2",
    )
    .bind(since)
    .fetch_all(pool)
    .await
}

/// One class of a provider's answers: an outcome with its HTTP status and
/// platform error code.
#[derive(Debug, Clone, FromRow)]
pub struct ErrorClass {
    pub outcome: String,
    pub http_status: Option<i32>,
    pub provider_error_code: Option<String>,
    pub attempts: i64,
    pub accounts: i64,
    pub last_at: DateTime<Utc>,
}

/// The provider's failed attempts since `since`, by class, most frequent
/// first.
pub async fn error_classes(
    pool: &PgPool,
    provider: Provider,
    since: DateTime<Utc>,
) -> Result<Vec<ErrorClass>, sqlx::Error> {
    sqlx::query_as(
        "SELECT outcome, http_status, provider_error_code, count(*) AS attempts,
                count(DISTINCT account_id) AS accounts, max(finished_at) AS last_at
         FROM refresh_attempts
         WHERE finished_at >= $1 AND provider = $2
           AND outcome NOT IN ('refreshed', 'healthy', 'skipped')
         GROUP BY 1, 2, 3 ORDER BY attempts DESC, outcome LIMIT 50",
    )
    .bind(since)
    .bind(provider.as_str())
    .fetch_all(pool)
    .await
}

/// One attempt of an account, by id.
pub async fn get(
    pool: &PgPool,
    account: &AccountId,
    id: i64,
) -> Result<Option<AttemptRow>, sqlx::Error> {
    sqlx::query_as("SELECT * FROM refresh_attempts WHERE account_id = $1 AND id = $2")
        .bind(account.as_str())
        .bind(id)
        .fetch_optional(pool)
        .await
}
