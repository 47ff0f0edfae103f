//! The scheduler's queries: claiming due accounts, counting outstanding
//! claims, releasing claims whose job could not be queued, and the sweep of
//! accounts whose credentials died by time.

use std::time::Duration;

use chrono::{DateTime, Utc};
use sqlx::PgPool;
use uuid::Uuid;

use crate::domain::{AccountId, Provider, Trigger};

/// One claimed account: the job to queue for it.
#[derive(Debug, Clone)]
pub struct Claimed {
    pub account_id: AccountId,
    pub provider: Provider,
    pub claim_id: Uuid,
    pub trigger: Trigger,
    /// When the attempt was planned (for lateness).
    pub planned_at: DateTime<Utc>,
}

/// id, provider, claim, planned at, consecutive failures, token expiry.
type ClaimRow = (
    String,
    String,
    Uuid,
    DateTime<Utc>,
    i32,
    Option<DateTime<Utc>>,
);

/// Claims that have not finished and have not timed out: the jobs that are
/// queued or running.
pub async fn outstanding(pool: &PgPool, claim_timeout: Duration) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar(
        "SELECT count(*) FROM social_accounts
         WHERE claim_id IS NOT NULL AND claimed_at > now() - make_interval(secs => $1)",
    )
    .bind(claim_timeout.as_secs_f64())
    .fetch_one(pool)
    .await
}

/// Claims up to `limit` due accounts, oldest plan first. Rows another
/// scheduler is claiming are skipped, never waited for. The claim moves
/// `next_attempt_at` to the claim timeout: a lost job makes the account due
/// again by itself.
pub async fn claim_due(
    pool: &PgPool,
    owner: &str,
    limit: i64,
    claim_timeout: Duration,
) -> Result<Vec<Claimed>, sqlx::Error> {
    let rows: Vec<ClaimRow> = sqlx::query_as(
        "WITH due AS (
             SELECT id, next_attempt_at AS planned_at FROM social_accounts
             WHERE status = 'ACTIVE' AND next_attempt_at IS NOT NULL AND next_attempt_at <= now()
             ORDER BY next_attempt_at
             LIMIT $2
             FOR UPDATE SKIP LOCKED)
         UPDATE social_accounts a
         SET claim_id = gen_random_uuid(), claimed_at = now(), claimed_by = $1,
             next_attempt_at = now() + make_interval(secs => $3)
         FROM due WHERE a.id = due.id
         RETURNING a.id, a.provider, a.claim_id, due.planned_at, a.consecutive_failures, a.token_expires_at",
    )
    .bind(owner)
    .bind(limit)
    .bind(claim_timeout.as_secs_f64())
    .fetch_all(pool)
    .await?;
    rows.into_iter()
        .map(|(id, provider, claim_id, planned_at, failures, expires)| {
            let decode = |e: Box<dyn std::error::Error + Send + Sync>| sqlx::Error::Decode(e);
            let trigger = if expires.is_none() {
                Trigger::HealthCheck
            } else if failures > 0 {
                Trigger::Retry
            } else {
                Trigger::Scheduled
            };
            Ok(Claimed {
                account_id: id
                    .parse()
                    .map_err(|e: crate::domain::InvalidAccountId| decode(e.into()))?,
                provider: provider
                    .parse()
                    .map_err(|e: crate::domain::UnknownVariant| decode(e.into()))?,
                claim_id,
                trigger,
                planned_at,
            })
        })
        .collect()
}

/// Gives claims back when their jobs could not be queued; due at once again.
pub async fn release_claims(pool: &PgPool, claims: &[Uuid]) -> Result<u64, sqlx::Error> {
    let done = sqlx::query(
        "UPDATE social_accounts SET claim_id = NULL, claimed_at = NULL, claimed_by = NULL, next_attempt_at = now()
         WHERE claim_id = ANY($1)",
    )
    .bind(claims)
    .execute(pool)
    .await?;
    Ok(done.rows_affected())
}

/// Hands back every claim whose job Redis lost (its data was emptied), so
/// the next scan queues those accounts at once instead of after the claim
/// timeout. Accounts with a refresh in flight keep their claim: the refresh
/// ends it.
/// `older_than`: only claims at least that old (a claim just made may not
/// have its job pushed yet).
pub async fn release_lost_claims(pool: &PgPool, older_than: Duration) -> Result<u64, sqlx::Error> {
    let done = sqlx::query(
        "UPDATE social_accounts SET claim_id = NULL, claimed_at = NULL, claimed_by = NULL,
                                    next_attempt_at = now()
         WHERE claim_id IS NOT NULL AND (lease_owner IS NULL OR lease_until < now())
           AND claimed_at <= now() - make_interval(secs => $1)",
    )
    .bind(older_than.as_secs_f64())
    .execute(pool)
    .await?;
    Ok(done.rows_affected())
}

/// Moves ACTIVE accounts whose credentials are dead by time to TOKEN_EXPIRED,
/// with one outbox event each, in one statement: the refresh token's own
/// expiry passed, or the access token expired and nothing can renew it (no
/// refresh token stored, or a platform that cannot refresh an expired
/// token). Accounts with a refresh in flight are left to it.
pub async fn sweep_expired(
    pool: &PgPool,
    not_refreshable_after_expiry: &[Provider],
    limit: i64,
) -> Result<u64, sqlx::Error> {
    let providers: Vec<&str> = not_refreshable_after_expiry
        .iter()
        .map(|p| p.as_str())
        .collect();
    let done = sqlx::query(
        "WITH dead AS (
             SELECT id,
                    CASE WHEN refresh_token_expires_at <= now()
                           THEN 'the refresh token expired; the user must reconnect'
                         WHEN refresh_token_ciphertext IS NULL
                           THEN 'the access token expired and no refresh token is stored; the user must reconnect'
                         ELSE 'the access token expired and this platform cannot refresh an expired token; the user must reconnect'
                    END AS reason
             FROM social_accounts
             WHERE status = 'ACTIVE'
               AND (lease_owner IS NULL OR lease_until < now())
               AND (refresh_token_expires_at <= now()
                    OR (token_expires_at <= now()
                        AND (refresh_token_ciphertext IS NULL OR provider = ANY($1))))
             LIMIT $2
             FOR UPDATE SKIP LOCKED),
         expired AS (
             UPDATE social_accounts a
             SET status = 'TOKEN_EXPIRED', status_reason = dead.reason,
                 claim_id = NULL, claimed_at = NULL, claimed_by = NULL, updated_at = now()
             FROM dead WHERE a.id = dead.id
             RETURNING a.id, a.workspace_id, a.provider, dead.reason)
         INSERT INTO account_events (event_id, account_id, workspace_id, provider, from_status, to_status, reason)
         SELECT gen_random_uuid(), id, workspace_id, provider, 'ACTIVE', 'TOKEN_EXPIRED', reason FROM expired",
    )
    .bind(&providers)
    .bind(limit)
    .execute(pool)
    .await?;
    Ok(done.rows_affected())
}

/// Moves a claimed account's next attempt (its provider is paused) and gives
/// the claim back; no status change, no failure counted.
pub async fn postpone(pool: &PgPool, claim: Uuid, until: DateTime<Utc>) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE social_accounts SET claim_id = NULL, claimed_at = NULL, claimed_by = NULL, next_attempt_at = $2
         WHERE claim_id = $1",
    )
    .bind(claim)
    .bind(until)
    .execute(pool)
    .await?;
    Ok(())
}
