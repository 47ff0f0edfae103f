//! The refresh lease: taken (or taken over when expired) before a refresh,
//! given back with or without a result.

use std::time::Duration;

use chrono::{DateTime, Utc};
use sqlx::PgPool;

use crate::domain::AccountId;
use crate::store::accounts::{AccountRow, schedule_columns};

/// Takes the account's refresh lease if it is free or expired (and, for a
/// scheduler's job, if its claim is still the account's). Taking over an
/// expired lease means a refresh started and never reported: its start is
/// kept in `interrupted_refresh_at` (SET expressions read the old row).
///
/// `took_over` says the lease was taken from a holder whose lease expired:
/// that holder may still be alive with new tokens it could not yet store
/// (the database was out of its reach).
pub async fn acquire_lease(
    pool: &PgPool,
    id: &AccountId,
    owner: &str,
    lease_for: Duration,
    claim: Option<uuid::Uuid>,
) -> Result<Option<Leased>, sqlx::Error> {
    let mut taken = acquire_leases(pool, owner, lease_for, &[(id, claim)]).await?;
    Ok(taken.pop())
}

/// `acquire_lease` for many accounts in one statement: the leases taken.
/// An account appears at most once.
pub(super) async fn acquire_leases(
    pool: &PgPool,
    owner: &str,
    lease_for: Duration,
    requests: &[(&AccountId, Option<uuid::Uuid>)],
) -> Result<Vec<Leased>, sqlx::Error> {
    let ids: Vec<&str> = requests.iter().map(|(id, _)| id.as_str()).collect();
    let claims: Vec<Option<uuid::Uuid>> = requests.iter().map(|(_, claim)| *claim).collect();
    let rows = sqlx::query(ACQUIRE_LEASES)
        .bind(&ids)
        .bind(owner)
        .bind(lease_for.as_secs_f64())
        .bind(&claims)
        .fetch_all(pool)
        .await?;
    rows.iter().map(Leased::from_row).collect()
}

/// `acquire_leases`: `$1` ids, `$2` owner, `$3` lease seconds, `$4` claims.
/// The account rows are read by key and locked in id order, each with the
/// lease it had. The claim is read from the schedule row without a lock:
/// every other writer of it holds the account row's lock first, and a
/// claim taken meanwhile by a scheduler only makes its own job find the
/// lease taken.
pub(crate) const ACQUIRE_LEASES: &str = concat!(
    "WITH locked AS MATERIALIZED (
             SELECT i.id, i.claim, a.lease_owner AS previous_owner
             FROM unnest($1::text[], $4::uuid[]) AS i(id, claim)
                  JOIN social_accounts a ON a.id = i.id
             ORDER BY a.id
             FOR UPDATE OF a)
         UPDATE social_accounts
         SET lease_owner = $2,
             lease_until = now() + make_interval(secs => $3),
             lease_started_at = now(),
             interrupted_refresh_at = CASE WHEN lease_owner IS NOT NULL
                                           THEN lease_started_at
                                           ELSE interrupted_refresh_at END,
             interrupted_refresh_cause = CASE WHEN lease_owner IS NOT NULL
                                              THEN 'ended without a result (its lease expired)'
                                              ELSE interrupted_refresh_cause END
         FROM locked LEFT JOIN account_schedule s ON s.account_id = locked.id
         WHERE social_accounts.id = locked.id
           AND status <> 'DISCONNECTED'
           AND (lease_owner IS NULL OR lease_until < now())
           AND (locked.claim IS NULL OR (s.claim_id = locked.claim AND status = 'ACTIVE'))
         RETURNING social_accounts.*, ",
    schedule_columns!(),
    ", locked.previous_owner"
);

/// A lease just taken, and the account as it then stood.
pub struct Leased {
    pub row: AccountRow,
    pub took_over: bool,
}

impl Leased {
    /// From a row of `social_accounts.*`, the schedule columns and
    /// `previous_owner`.
    pub(super) fn from_row(row: &sqlx::postgres::PgRow) -> Result<Self, sqlx::Error> {
        use sqlx::{FromRow, Row};
        Ok(Leased {
            took_over: row
                .try_get::<Option<String>, _>("previous_owner")?
                .is_some(),
            row: AccountRow::from_row(row)?,
        })
    }
}

pub(super) async fn release(
    tx: &mut sqlx::PgConnection,
    id: &AccountId,
    holds_lease: bool,
    next_attempt_at: Option<DateTime<Utc>>,
    claim: Option<uuid::Uuid>,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "WITH a AS (
             UPDATE social_accounts SET
                 lease_owner = CASE WHEN $2 THEN NULL ELSE lease_owner END,
                 lease_until = CASE WHEN $2 THEN NULL ELSE lease_until END,
                 lease_started_at = CASE WHEN $2 THEN NULL ELSE lease_started_at END
             WHERE id = $1
             RETURNING id, status)
         UPDATE account_schedule s SET
             next_attempt_at = CASE WHEN a.status = 'ACTIVE'
                                    THEN COALESCE($3, s.next_attempt_at) END,
             claimed_at = CASE WHEN s.claim_id = $4 THEN NULL ELSE s.claimed_at END,
             claimed_by = CASE WHEN s.claim_id = $4 THEN NULL ELSE s.claimed_by END,
             claim_id = CASE WHEN s.claim_id = $4 THEN NULL ELSE s.claim_id END
         FROM a WHERE s.account_id = a.id",
    )
    .bind(id.as_str())
    .bind(holds_lease)
    .bind(next_attempt_at)
    .bind(claim)
    .execute(tx)
    .await?;
    Ok(())
}

/// Releases this process's lease without recording anything (the caller
/// found its answer in a refresh that finished meanwhile).
pub async fn release_lease(pool: &PgPool, id: &AccountId, owner: &str) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE social_accounts
         SET lease_owner = NULL, lease_until = NULL, lease_started_at = NULL
         WHERE id = $1 AND lease_owner = $2",
    )
    .bind(id.as_str())
    .bind(owner)
    .execute(pool)
    .await?;
    Ok(())
}
