//! The scheduler's queries: claiming due accounts, counting outstanding
//! claims, releasing claims whose job could not be queued, and the sweep of
//! accounts whose credentials died by time.
//!
//! Locking rule for `account_schedule`: every writer but the claim locks the
//! account row first (in id order), so writers of one account queue on that
//! row and never deadlock on the schedule rows; the claim only skips what
//! is locked.

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

/// id, provider, claim (None: not ACTIVE), planned at, consecutive
/// failures, token expiry.
type ClaimRow = (
    String,
    String,
    Option<Uuid>,
    DateTime<Utc>,
    i32,
    Option<DateTime<Utc>>,
);

/// Claims that have not finished and have not timed out: the jobs that are
/// queued or running.
pub async fn outstanding(pool: &PgPool, claim_timeout: Duration) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar(
        "SELECT count(*) FROM account_schedule
         WHERE claim_id IS NOT NULL AND claimed_at > now() - make_interval(secs => $1)",
    )
    .bind(claim_timeout.as_secs_f64())
    .fetch_one(pool)
    .await
}

/// Claims up to `limit` due accounts, oldest plan first. Rows another
/// scheduler is claiming are skipped, never waited for. The claim moves
/// `next_attempt_at` to the claim timeout: a lost job makes the account due
/// again by itself. Only the narrow schedule rows are written; the account
/// rows are read for the job's provider and trigger.
pub async fn claim_due(
    pool: &PgPool,
    owner: &str,
    limit: i64,
    claim_timeout: Duration,
) -> Result<Vec<Claimed>, sqlx::Error> {
    let rows: Vec<ClaimRow> = sqlx::query_as(CLAIM_DUE)
        .bind(owner)
        .bind(limit)
        .bind(claim_timeout.as_secs_f64())
        .fetch_all(pool)
        .await?;
    rows.into_iter()
        // An account that is no longer ACTIVE was left planned by a writer
        // that broke the schedule's rule: its plan is cleared, nothing queued.
        .filter_map(|(id, provider, claim_id, planned_at, failures, expires)| {
            Some((id, provider, claim_id?, planned_at, failures, expires))
        })
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

/// `claim_due`: `$1` owner, `$2` limit, `$3` claim timeout in seconds.
pub(crate) const CLAIM_DUE: &str = "WITH due AS MATERIALIZED (
             SELECT account_id, next_attempt_at AS planned_at FROM account_schedule
             WHERE next_attempt_at <= now()
             ORDER BY next_attempt_at
             LIMIT $2
             FOR UPDATE SKIP LOCKED),
         -- The batch goes on as arrays, unnested: PostgreSQL estimates an
         -- unnested array at ten rows, so each step below reaches its rows
         -- by key. Estimated from the table's statistics instead, the batch
         -- may look large (they were taken when most accounts were due),
         -- and the join to the schedule then reads the whole table.
         batch AS (
             SELECT b.account_id, b.planned_at
             FROM (SELECT array_agg(account_id) AS ids, array_agg(planned_at) AS planned
                   FROM due) d,
                  unnest(d.ids, d.planned) AS b(account_id, planned_at)),
         -- Each claimed account read by its key (OFFSET 0 keeps the lookup
         -- per row; as a join, a generic plan may scan the whole table).
         due_account AS (
             SELECT batch.account_id, batch.planned_at, a.*
             FROM batch CROSS JOIN LATERAL (
                 SELECT provider, consecutive_failures, token_expires_at,
                        status = 'ACTIVE' AS active
                 FROM social_accounts WHERE id = batch.account_id OFFSET 0) a)
         UPDATE account_schedule s
         SET claim_id = CASE WHEN active THEN gen_random_uuid() END,
             claimed_at = CASE WHEN active THEN now() END,
             claimed_by = CASE WHEN active THEN $1 END,
             next_attempt_at = CASE WHEN active THEN now() + make_interval(secs => $3) END
         FROM due_account d
         WHERE s.account_id = d.account_id
         RETURNING d.account_id, d.provider, s.claim_id, d.planned_at,
                   d.consecutive_failures, d.token_expires_at";

/// Gives claims back when their jobs could not be queued; due at once again.
/// `claims`: (account, claim) of each job.
pub async fn release_claims(
    pool: &PgPool,
    claims: &[(AccountId, Uuid)],
) -> Result<u64, sqlx::Error> {
    let ids: Vec<&str> = claims.iter().map(|(id, _)| id.as_str()).collect();
    let claim_ids: Vec<Uuid> = claims.iter().map(|(_, claim)| *claim).collect();
    let done = sqlx::query(RELEASE_CLAIMS)
        .bind(&ids)
        .bind(&claim_ids)
        .execute(pool)
        .await?;
    Ok(done.rows_affected())
}

/// `release_claims`: `$1` accounts, `$2` their claims.
pub(crate) const RELEASE_CLAIMS: &str = "WITH locked AS MATERIALIZED (
             SELECT c.account_id, c.claim_id
             FROM unnest($1::text[], $2::uuid[]) AS c(account_id, claim_id)
                  JOIN social_accounts a ON a.id = c.account_id
             WHERE a.status = 'ACTIVE'
             ORDER BY a.id
             FOR UPDATE OF a)
         UPDATE account_schedule s
         SET claim_id = NULL, claimed_at = NULL, claimed_by = NULL, next_attempt_at = now()
         FROM locked
         WHERE s.account_id = locked.account_id AND s.claim_id = locked.claim_id";

/// Hands back every claim whose job Redis lost (its data was emptied), so
/// the next scan queues those accounts at once instead of after the claim
/// timeout. Accounts with a refresh in flight keep their claim: the refresh
/// ends it.
/// `older_than`: only claims at least that old (a claim just made may not
/// have its job pushed yet).
pub async fn release_lost_claims(pool: &PgPool, older_than: Duration) -> Result<u64, sqlx::Error> {
    // Each step is one keyed lookup of a list (`= ANY(ARRAY(…))`), never a
    // join whose plan could turn into a scan of the account table.
    let done = sqlx::query(RELEASE_LOST_CLAIMS)
        .bind(older_than.as_secs_f64())
        .execute(pool)
        .await?;
    Ok(done.rows_affected())
}

/// `release_lost_claims`: `$1` the minimum age in seconds.
pub(crate) const RELEASE_LOST_CLAIMS: &str = "WITH stale AS (
             SELECT account_id FROM account_schedule
             WHERE claim_id IS NOT NULL AND claimed_at <= now() - make_interval(secs => $1)),
         locked AS (
             SELECT id FROM social_accounts
             WHERE id = ANY(ARRAY(SELECT account_id FROM stale))
               AND status = 'ACTIVE' AND (lease_owner IS NULL OR lease_until < now())
             ORDER BY id FOR UPDATE SKIP LOCKED)
         UPDATE account_schedule
         SET claim_id = NULL, claimed_at = NULL, claimed_by = NULL, next_attempt_at = now()
         WHERE account_id = ANY(ARRAY(SELECT id FROM locked)) AND claim_id IS NOT NULL";

/// Moves ACTIVE accounts whose credentials are dead by time to TOKEN_EXPIRED,
/// with one outbox event each, in one statement: the refresh token's own
/// expiry passed, or the access token expired and nothing can renew it (no
/// refresh token stored, or a platform that cannot refresh an expired
/// token). Accounts with a refresh in flight are left to it.
///
/// Candidates come from the schedule's `dead_at` index (migration 0013);
/// the account row decides. A candidate its row does not find dead (its
/// `dead_at` was computed under another `refreshable_after_expiry`) gets
/// `dead_at` recomputed here, so it cannot hold a place in every sweep.
pub async fn sweep_expired(
    pool: &PgPool,
    not_refreshable_after_expiry: &[Provider],
    limit: i64,
) -> Result<u64, sqlx::Error> {
    let providers: Vec<&str> = not_refreshable_after_expiry
        .iter()
        .map(|p| p.as_str())
        .collect();
    let done = sqlx::query(SWEEP_EXPIRED)
        .bind(&providers)
        .bind(limit)
        .execute(pool)
        .await?;
    Ok(done.rows_affected())
}

/// `sweep_expired`: `$1` platforms whose access-token expiry is final, `$2` limit.
pub(crate) const SWEEP_EXPIRED: &str = "WITH judged AS MATERIALIZED (
             SELECT j.*
             FROM (SELECT account_id FROM account_schedule
                   WHERE dead_at <= now()
                   ORDER BY dead_at) candidate
             -- Each candidate's account read by its key and locked, one at a
             -- time in the candidates' order until the batch is full: rows
             -- another sweep or a writer holds are passed over, and so is a
             -- dead account with a refresh in flight (left to that refresh),
             -- so neither takes a place in the batch.
             CROSS JOIN LATERAL (
                 SELECT id, dead_at,
                        COALESCE(dead_at <= now(), false) AND free AS expire,
                        -- Not ACTIVE: left planned by a writer that broke the
                        -- schedule's rule (migration 0009); nothing to plan.
                        NOT active AS inactive,
                        CASE WHEN refresh_token_expires_at <= now()
                               THEN 'the refresh token expired; the user must reconnect'
                             WHEN refresh_token_ciphertext IS NULL
                               THEN 'the access token expired and no refresh token is stored; the user must reconnect'
                             ELSE 'the access token expired and this platform cannot refresh an expired token; the user must reconnect'
                        END AS reason
                 FROM (SELECT id, refresh_token_expires_at, refresh_token_ciphertext,
                              status = 'ACTIVE' AS active,
                              lease_owner IS NULL OR lease_until < now() AS free,
                              CASE WHEN status = 'ACTIVE' THEN
                                  LEAST(refresh_token_expires_at,
                                        CASE WHEN refresh_token_ciphertext IS NULL OR provider = ANY($1)
                                             THEN token_expires_at END)
                              END AS dead_at
                       FROM social_accounts
                       WHERE id = candidate.account_id
                       FOR UPDATE SKIP LOCKED) account
                 WHERE free OR NOT COALESCE(dead_at <= now(), false)
                 OFFSET 0) j
             LIMIT $2),
         -- The batch as arrays, unnested, so the writes below reach their
         -- rows by key (see `CLAIM_DUE`).
         batch AS (
             SELECT b.*
             FROM (SELECT array_agg(id) AS ids, array_agg(dead_at) AS deads,
                          array_agg(expire) AS expires, array_agg(inactive) AS inactives,
                          array_agg(reason) AS reasons
                   FROM judged) j,
                  unnest(j.ids, j.deads, j.expires, j.inactives, j.reasons)
                      AS b(id, dead_at, expire, inactive, reason)),
         expired AS (
             UPDATE social_accounts a
             SET status = 'TOKEN_EXPIRED', status_reason = batch.reason, updated_at = now()
             FROM batch
             WHERE a.id = batch.id AND batch.expire
             RETURNING a.id, a.workspace_id, a.provider, batch.reason),
         rescheduled AS (
             UPDATE account_schedule s
             SET next_attempt_at = CASE WHEN j.expire OR j.inactive THEN NULL ELSE s.next_attempt_at END,
                 claim_id = CASE WHEN j.expire OR j.inactive THEN NULL ELSE s.claim_id END,
                 claimed_at = CASE WHEN j.expire OR j.inactive THEN NULL ELSE s.claimed_at END,
                 claimed_by = CASE WHEN j.expire OR j.inactive THEN NULL ELSE s.claimed_by END,
                 access_expires_at = CASE WHEN j.expire OR j.inactive THEN NULL
                                          ELSE s.access_expires_at END,
                 dead_at = CASE WHEN j.expire THEN NULL ELSE j.dead_at END
             FROM batch j
             -- Expired, or not dead at all (its dead_at put right).
             WHERE s.account_id = j.id AND (j.expire OR j.dead_at IS NULL OR j.dead_at > now()))
         INSERT INTO account_events (event_id, account_id, workspace_id, provider, from_status, to_status, reason)
         SELECT gen_random_uuid(), id, workspace_id, provider, 'ACTIVE', 'TOKEN_EXPIRED', reason FROM expired";

/// Moves a claimed account's next attempt (its provider is paused) and gives
/// the claim back; no status change, no failure counted.
pub async fn postpone(
    pool: &PgPool,
    id: &AccountId,
    claim: Uuid,
    until: DateTime<Utc>,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "WITH locked AS (
             SELECT id FROM social_accounts WHERE id = $1 AND status = 'ACTIVE' FOR UPDATE)
         UPDATE account_schedule
         SET claim_id = NULL, claimed_at = NULL, claimed_by = NULL, next_attempt_at = $3
         FROM locked WHERE account_id = locked.id AND claim_id = $2",
    )
    .bind(id.as_str())
    .bind(claim)
    .bind(until)
    .execute(pool)
    .await?;
    Ok(())
}
