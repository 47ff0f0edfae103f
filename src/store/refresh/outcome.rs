//! The row writes of a result without new tokens: a failure, a fenced
//! result, a passed health check, and a refresh abandoned on a panic.

use chrono::{DateTime, Utc};
use sqlx::PgPool;

use super::FailureChange;
use crate::domain::AccountId;
use crate::store::accounts::{AccountRow, schedule_columns};
use crate::store::attempts::{self, NewAttempt};

pub(super) async fn write_failure(
    tx: &mut sqlx::PgConnection,
    id: &AccountId,
    failure: &FailureChange,
    release_lease: bool,
    attempted_at: DateTime<Utc>,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "WITH a AS (
         UPDATE social_accounts SET
             last_refresh_attempt_at = $2,
             last_refresh_error = $3,
             last_refresh_error_status = $4,
             consecutive_failures = consecutive_failures + $5,
             status = COALESCE($7, status),
             status_reason = CASE WHEN $7 IS NULL THEN status_reason ELSE $3 END,
             unrecognised_answer = $9,
             lease_owner = CASE WHEN $8 THEN NULL ELSE lease_owner END,
             lease_until = CASE WHEN $8 THEN NULL ELSE lease_until END,
             lease_started_at = CASE WHEN $8 THEN NULL ELSE lease_started_at END,
             interrupted_refresh_at = COALESCE($10, interrupted_refresh_at),
             interrupted_refresh_cause = CASE WHEN $10 IS NULL THEN interrupted_refresh_cause
                                              ELSE $11 END,
             updated_at = now()
         WHERE id = $1
         RETURNING id, status)
         UPDATE account_schedule s SET
             next_attempt_at = CASE WHEN a.status = 'ACTIVE'
                                    THEN COALESCE($6, s.next_attempt_at) END,
             access_expires_at = CASE WHEN a.status = 'ACTIVE' THEN s.access_expires_at END,
             dead_at = CASE WHEN a.status = 'ACTIVE' THEN s.dead_at END,
             claim_id = NULL, claimed_at = NULL, claimed_by = NULL
         FROM a WHERE s.account_id = a.id",
    )
    .bind(id.as_str())
    .bind(attempted_at)
    .bind(&failure.error)
    .bind(failure.http_status.map(i32::from))
    .bind(i32::from(failure.count_failure))
    .bind(failure.next_attempt_at)
    .bind(failure.new_status.map(|s| s.as_str()))
    .bind(release_lease)
    .bind(failure.unrecognised)
    .bind(failure.interrupted.as_ref().map(|(at, _)| *at))
    .bind(
        failure
            .interrupted
            .as_ref()
            .map(|(_, cause)| cause.as_str()),
    )
    .execute(tx)
    .await?;
    Ok(())
}

pub(super) async fn record_attempt_only(
    tx: &mut sqlx::PgConnection,
    id: &AccountId,
    release_lease: bool,
    attempted_at: DateTime<Utc>,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "WITH a AS (
         UPDATE social_accounts SET
             last_refresh_attempt_at = $2,
             lease_owner = CASE WHEN $3 THEN NULL ELSE lease_owner END,
             lease_until = CASE WHEN $3 THEN NULL ELSE lease_until END,
             lease_started_at = CASE WHEN $3 THEN NULL ELSE lease_started_at END,
             updated_at = now()
         WHERE id = $1
         RETURNING id)
         UPDATE account_schedule s SET claim_id = NULL, claimed_at = NULL, claimed_by = NULL
         FROM a WHERE s.account_id = a.id",
    )
    .bind(id.as_str())
    .bind(attempted_at)
    .bind(release_lease)
    .execute(tx)
    .await?;
    Ok(())
}

pub(super) async fn write_healthy(
    tx: &mut sqlx::PgConnection,
    id: &AccountId,
    holds_lease: bool,
    next_attempt_at: DateTime<Utc>,
    attempted_at: DateTime<Utc>,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "WITH a AS (
         UPDATE social_accounts SET
             last_refresh_attempt_at = $4,
             last_refresh_error = NULL,
             last_refresh_error_status = NULL,
             unrecognised_answer = false,
             consecutive_failures = 0,
             lease_owner = CASE WHEN $2 THEN NULL ELSE lease_owner END,
             lease_until = CASE WHEN $2 THEN NULL ELSE lease_until END,
             lease_started_at = CASE WHEN $2 THEN NULL ELSE lease_started_at END,
             updated_at = now()
         WHERE id = $1
         RETURNING id, status)
         UPDATE account_schedule s SET
             next_attempt_at = CASE WHEN a.status = 'ACTIVE' THEN $3 END,
             claim_id = NULL, claimed_at = NULL, claimed_by = NULL
         FROM a WHERE s.account_id = a.id",
    )
    .bind(id.as_str())
    .bind(holds_lease)
    .bind(next_attempt_at)
    .bind(attempted_at)
    .execute(tx)
    .await?;
    Ok(())
}

/// Ends a refresh that stopped on a panic: the failure and its attempt are
/// recorded, the lease and claim released, and, where this process held
/// the lease (so the platform may have been called), the refresh is marked
/// interrupted so a later rejection says so. Returns the account as it now
/// stands, or None if it no longer exists.
pub async fn abandon(
    pool: &PgPool,
    id: &AccountId,
    owner: &str,
    trigger: crate::domain::Trigger,
    started_at: DateTime<Utc>,
    message: &str,
    retry_at: DateTime<Utc>,
) -> Result<Option<AccountRow>, sqlx::Error> {
    let mut tx = pool.begin().await?;
    let row: Option<AccountRow> = sqlx::query_as(concat!(
        "WITH a AS (
         UPDATE social_accounts SET
             interrupted_refresh_at = CASE WHEN lease_owner = $2 THEN lease_started_at
                                           ELSE interrupted_refresh_at END,
             interrupted_refresh_cause = CASE WHEN lease_owner = $2
                                              THEN 'stopped on an internal error'
                                              ELSE interrupted_refresh_cause END,
             lease_owner = CASE WHEN lease_owner = $2 THEN NULL ELSE lease_owner END,
             lease_until = CASE WHEN lease_owner = $2 THEN NULL ELSE lease_until END,
             lease_started_at = CASE WHEN lease_owner = $2 THEN NULL ELSE lease_started_at END,
             last_refresh_attempt_at = now(),
             last_refresh_error = $3,
             last_refresh_error_status = NULL,
             consecutive_failures = consecutive_failures + 1,
             updated_at = now()
         WHERE id = $1
         RETURNING *),
         s AS (
         UPDATE account_schedule s SET
             next_attempt_at = CASE WHEN a.status = 'ACTIVE' THEN $4 END,
             claim_id = NULL, claimed_at = NULL, claimed_by = NULL
         FROM a WHERE s.account_id = a.id
         RETURNING s.*)
         SELECT a.*, ",
        schedule_columns!(),
        " FROM a LEFT JOIN s ON s.account_id = a.id"
    ))
    .bind(id.as_str())
    .bind(owner)
    .bind(message)
    .bind(retry_at)
    .fetch_optional(&mut *tx)
    .await?;
    if let Some(row) = &row {
        let attempt = NewAttempt {
            trigger,
            started_at,
            finished_at: Utc::now(),
            outcome: crate::domain::Outcome::TransientError,
            http_status: None,
            provider_error_code: None,
            message: Some(message.to_owned()),
        };
        attempts::insert(&mut tx, id, row.provider, &attempt).await?;
    }
    tx.commit().await?;
    Ok(row)
}
