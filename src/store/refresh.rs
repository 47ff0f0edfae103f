//! The refresh lease and the one transaction that records a refresh's result.

use std::time::Duration;

use chrono::{DateTime, Utc};
use sqlx::PgPool;

use crate::domain::{AccountId, AccountStatus};
use crate::providers::AccountState;
use crate::store::accounts::AccountRow;
use crate::store::attempts::{self, NewAttempt};
use crate::store::events;

/// Takes the account's refresh lease if it is free or expired (and, for a
/// scheduler's job, if its claim is still the account's). Taking over an
/// expired lease means a refresh started and never reported: its start is
/// kept in `interrupted_refresh_at` (SET expressions read the old row).
pub async fn acquire_lease(
    pool: &PgPool,
    id: &AccountId,
    owner: &str,
    lease_for: Duration,
    claim: Option<uuid::Uuid>,
) -> Result<Option<AccountRow>, sqlx::Error> {
    sqlx::query_as(
        "UPDATE social_accounts
         SET lease_owner = $2,
             lease_until = now() + make_interval(secs => $3),
             lease_started_at = now(),
             interrupted_refresh_at = CASE WHEN lease_owner IS NOT NULL
                                           THEN lease_started_at
                                           ELSE interrupted_refresh_at END
         WHERE id = $1
           AND status <> 'DISCONNECTED'
           AND (lease_owner IS NULL OR lease_until < now())
           AND ($4::uuid IS NULL OR (claim_id = $4 AND status = 'ACTIVE'))
         RETURNING *",
    )
    .bind(id.as_str())
    .bind(owner)
    .bind(lease_for.as_secs_f64())
    .bind(claim)
    .fetch_optional(pool)
    .await
}

/// New credentials, encrypted under `key_id`. Both values are always written,
/// so a kept refresh token moves to the newest key with its access token.
#[derive(Debug, Clone)]
pub struct NewCredentials {
    pub access_token_ciphertext: Vec<u8>,
    pub refresh_token_ciphertext: Option<Vec<u8>>,
    pub key_id: String,
    pub issued_at: DateTime<Utc>,
    pub expires_at: Option<DateTime<Utc>>,
    /// The refresh token's expiry as it now stands (None: unknown).
    pub refresh_token_expires_at: Option<DateTime<Utc>>,
    pub granted_scopes: Option<Vec<String>>,
    /// Recomputed with `granted_scopes`; None keeps the stored list.
    pub missing_scopes: Option<Vec<String>>,
    pub next_attempt_at: Option<DateTime<Utc>>,
    /// The account's DPoP key re-encrypted under `key_id` (it must follow
    /// the key id of the row); None where the account has none.
    pub dpop_key_ciphertext: Option<Vec<u8>>,
    /// What the platform's answer said about the account itself.
    pub account: AccountState,
}

/// What a failed attempt does to the account.
#[derive(Debug, Clone)]
pub struct FailureChange {
    pub error: String,
    pub http_status: Option<u16>,
    /// Transient failures count towards backoff; configuration errors do not.
    pub count_failure: bool,
    pub next_attempt_at: Option<DateTime<Utc>>,
    /// A definitive rejection: the status it moves the account to.
    pub new_status: Option<AccountStatus>,
    /// The answer was unrecognised (flagged in health until the next answer).
    pub unrecognised: bool,
    /// What the answer said about the account itself.
    pub account: AccountState,
}

#[derive(Debug, Clone)]
pub enum Change {
    Refreshed(NewCredentials),
    Failed(FailureChange),
    /// Nothing happened at the provider; the lease and the claim are
    /// released and, when given, the next attempt is moved.
    Skipped {
        next_attempt_at: Option<DateTime<Utc>>,
        /// The caller's own claim, released with it; other claims stay.
        claim: Option<uuid::Uuid>,
    },
    /// A health check passed: errors cleared, next check planned.
    Healthy {
        next_attempt_at: DateTime<Utc>,
        account: AccountState,
    },
}

/// What the commit did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Committed {
    Applied {
        from: AccountStatus,
        to: AccountStatus,
    },
    /// The lease was lost or the credentials changed meanwhile: new tokens or
    /// a rejection were not applied (the attempt is still recorded).
    Fenced { status: AccountStatus },
    /// The account no longer exists.
    Gone,
}

/// Writes a refresh's result in one transaction: the account row fenced by
/// lease owner and credentials version, the attempt row, and the status
/// event. Releases the lease if this owner still holds it.
pub async fn commit(
    pool: &PgPool,
    leased: &AccountRow,
    owner: &str,
    attempt: &NewAttempt,
    change: &Change,
) -> Result<Committed, sqlx::Error> {
    let mut tx = pool.begin().await?;
    let current: Option<(String, i64, Option<String>)> = sqlx::query_as(
        "SELECT status, credentials_version, lease_owner FROM social_accounts WHERE id = $1 FOR UPDATE",
    )
    .bind(leased.id.as_str())
    .fetch_optional(&mut *tx)
    .await?;
    let Some((status, version, lease_owner)) = current else {
        return Ok(Committed::Gone);
    };
    let from: AccountStatus = status
        .parse()
        .map_err(|e: crate::domain::UnknownVariant| sqlx::Error::Decode(e.into()))?;
    let holds_lease = lease_owner.as_deref() == Some(owner);
    // A disconnected account is never brought back by a refresh in flight.
    let fenced_ok =
        holds_lease && version == leased.credentials_version && from != AccountStatus::Disconnected;

    let mut to = from;
    let mut recorded = attempt.clone();
    match change {
        Change::Refreshed(creds) if fenced_ok => {
            to = AccountStatus::Active;
            write_credentials(&mut tx, &leased.id, creds, attempt.finished_at).await?;
            record_account_state(&mut tx, leased, to, &creds.account).await?;
        }
        Change::Refreshed(_) => {
            recorded.outcome = crate::domain::Outcome::TransientError;
            recorded.message = Some(fenced_message(holds_lease));
            record_attempt_only(&mut tx, &leased.id, holds_lease, attempt.finished_at).await?;
        }
        Change::Failed(failure) => {
            let mut failure = failure.clone();
            if failure.new_status.is_some() && !fenced_ok {
                // Rule: a rejection of credentials that have since changed is
                // stale and must not change the status.
                failure.new_status = None;
                failure.count_failure = false;
                recorded.message = Some(format!(
                    "{} (ignored: {})",
                    attempt.message.as_deref().unwrap_or("rejected"),
                    if holds_lease {
                        "credentials changed meanwhile"
                    } else {
                        "lease lost"
                    }
                ));
            }
            if let Some(new_status) = failure.new_status {
                to = new_status;
            }
            write_failure(
                &mut tx,
                &leased.id,
                &failure,
                holds_lease,
                attempt.finished_at,
            )
            .await?;
            if fenced_ok {
                record_account_state(&mut tx, leased, to, &failure.account).await?;
            }
        }
        Change::Skipped {
            next_attempt_at,
            claim,
        } => {
            release(&mut tx, &leased.id, holds_lease, *next_attempt_at, *claim).await?;
        }
        Change::Healthy {
            next_attempt_at,
            account,
        } => {
            write_healthy(
                &mut tx,
                &leased.id,
                holds_lease,
                *next_attempt_at,
                attempt.finished_at,
            )
            .await?;
            if fenced_ok {
                record_account_state(&mut tx, leased, to, account).await?;
            }
        }
    }
    attempts::insert(&mut tx, &leased.id, leased.provider, &recorded).await?;
    if to != from {
        let reason = match change {
            Change::Refreshed(_) => "refreshed".to_owned(),
            Change::Failed(f) => f.error.clone(),
            Change::Skipped { .. } | Change::Healthy { .. } => unreachable!("never changes status"),
        };
        events::insert(&mut tx, leased, Some(from), to, &reason).await?;
    }
    tx.commit().await?;

    let applied = match change {
        Change::Refreshed(_) => fenced_ok,
        Change::Failed(f) => f.new_status.is_none() || fenced_ok,
        Change::Skipped { .. } | Change::Healthy { .. } => true,
    };
    Ok(if applied {
        Committed::Applied { from, to }
    } else {
        Committed::Fenced { status: from }
    })
}

/// Records what the platform said about the account itself; a change (and
/// only a change) writes an event of its own, the status unchanged.
async fn record_account_state(
    tx: &mut sqlx::PgConnection,
    leased: &AccountRow,
    status: AccountStatus,
    state: &AccountState,
) -> Result<(), sqlx::Error> {
    let reason = match state {
        AccountState::Unreported => return Ok(()),
        AccountState::Active => None,
        AccountState::Inactive(reason) => Some(reason.as_str()),
    };
    // Reads the row under the commit's lock: the flag as it stands now.
    let changed: Option<(String,)> = sqlx::query_as(
        "UPDATE social_accounts SET
             account_inactive_reason = $2,
             account_inactive_since = CASE WHEN $2 IS NULL THEN NULL
                                           ELSE COALESCE(account_inactive_since, now()) END
         WHERE id = $1 AND account_inactive_reason IS DISTINCT FROM $2
         RETURNING id",
    )
    .bind(leased.id.as_str())
    .bind(reason)
    .fetch_optional(&mut *tx)
    .await?;
    if changed.is_some() {
        let (kind, text) = match reason {
            Some(reason) => ("account_inactive", format!("account inactive: {reason}")),
            None => ("account_active", "account active again".to_owned()),
        };
        events::insert_kind(tx, leased, kind, Some(status), status, &text).await?;
    }
    Ok(())
}

fn fenced_message(holds_lease: bool) -> String {
    if holds_lease {
        "refresh result discarded: the credentials were replaced while the provider call ran".into()
    } else {
        "refresh result discarded: the refresh lease expired before the result could be written; \
         the provider may have consumed the stored refresh token"
            .into()
    }
}

/// The SET clause of a credentials write; `$1` is the account id, `$2..$12`
/// the `NewCredentials` fields and the attempt time, as bound by
/// `bind_credentials`.
macro_rules! credentials_set {
    () => {
        "access_token_ciphertext = $2,
         refresh_token_ciphertext = $3,
         credentials_key_id = $4,
         credentials_version = credentials_version + 1,
         token_issued_at = $5,
         last_refreshed_at = $5,
         token_expires_at = $6,
         refresh_token_expires_at = $7,
         granted_scopes = COALESCE($8, granted_scopes),
         missing_scopes = COALESCE($11, missing_scopes),
         next_attempt_at = $9,
         last_refresh_attempt_at = $10,
         dpop_key_ciphertext = $12,
         unrecognised_answer = false,
         last_refresh_error = NULL,
         last_refresh_error_status = NULL,
         consecutive_failures = 0,
         status = 'ACTIVE',
         status_reason = NULL,
         interrupted_refresh_at = NULL,
         lease_owner = NULL, lease_until = NULL, lease_started_at = NULL,
         claim_id = NULL, claimed_at = NULL, claimed_by = NULL,
         updated_at = now()"
    };
}

type PgQuery<'q> = sqlx::query::Query<'q, sqlx::Postgres, sqlx::postgres::PgArguments>;

fn bind_credentials<'q>(
    query: PgQuery<'q>,
    id: &'q AccountId,
    creds: &'q NewCredentials,
    attempted_at: DateTime<Utc>,
) -> PgQuery<'q> {
    query
        .bind(id.as_str())
        .bind(&creds.access_token_ciphertext)
        .bind(&creds.refresh_token_ciphertext)
        .bind(&creds.key_id)
        .bind(creds.issued_at)
        .bind(creds.expires_at)
        .bind(creds.refresh_token_expires_at)
        .bind(&creds.granted_scopes)
        .bind(creds.next_attempt_at)
        .bind(attempted_at)
        .bind(&creds.missing_scopes)
        .bind(&creds.dpop_key_ciphertext)
}

async fn write_credentials(
    tx: &mut sqlx::PgConnection,
    id: &AccountId,
    creds: &NewCredentials,
    attempted_at: DateTime<Utc>,
) -> Result<(), sqlx::Error> {
    let query = sqlx::query(concat!(
        "UPDATE social_accounts SET ",
        credentials_set!(),
        " WHERE id = $1"
    ));
    bind_credentials(query, id, creds, attempted_at)
        .execute(tx)
        .await?;
    Ok(())
}

/// The common case of a successful refresh in one statement (one round
/// trip, its own transaction): the fenced credentials write, the attempt
/// row and, if the status changes, the outbox event. Returns the status the
/// account had, or None when the fence did not match; the caller then takes
/// the general path, which records that case.
pub async fn commit_refreshed(
    pool: &PgPool,
    leased: &AccountRow,
    owner: &str,
    attempt: &NewAttempt,
    creds: &NewCredentials,
) -> Result<Option<AccountStatus>, sqlx::Error> {
    let query = sqlx::query(concat!(
        "WITH cur AS (
             SELECT id, status, workspace_id, provider FROM social_accounts WHERE id = $1 FOR UPDATE),
         upd AS (
             UPDATE social_accounts SET ",
        credentials_set!(),
        " WHERE id = $1 AND lease_owner = $13 AND credentials_version = $14
               AND status <> 'DISCONNECTED'
             RETURNING id),
         attempt AS (
             INSERT INTO refresh_attempts
                 (account_id, provider, trigger, started_at, finished_at, outcome, message, duration_ms)
             SELECT cur.id, cur.provider, $15, $16, $10, 'refreshed', $17, $18 FROM cur JOIN upd ON upd.id = cur.id),
         event AS (
             INSERT INTO account_events (event_id, account_id, workspace_id, provider, from_status, to_status, reason)
             SELECT $19, cur.id, cur.workspace_id, cur.provider, cur.status, 'ACTIVE', 'refreshed'
             FROM cur JOIN upd ON upd.id = cur.id WHERE cur.status <> 'ACTIVE')
         SELECT cur.status FROM cur JOIN upd ON upd.id = cur.id"
    ));
    let duration_ms = (attempt.finished_at - attempt.started_at)
        .num_milliseconds()
        .clamp(0, i32::MAX as i64) as i32;
    let row = bind_credentials(query, &leased.id, creds, attempt.finished_at)
        .bind(owner)
        .bind(leased.credentials_version)
        .bind(attempt.trigger.as_str())
        .bind(attempt.started_at)
        .bind(&attempt.message)
        .bind(duration_ms)
        .bind(uuid::Uuid::now_v7())
        .fetch_optional(pool)
        .await?;
    row.map(|row| sqlx::Row::try_get::<String, _>(&row, 0))
        .transpose()?
        .map(|s| {
            s.parse()
                .map_err(|e: crate::domain::UnknownVariant| sqlx::Error::Decode(e.into()))
        })
        .transpose()
}

async fn write_failure(
    tx: &mut sqlx::PgConnection,
    id: &AccountId,
    failure: &FailureChange,
    release_lease: bool,
    attempted_at: DateTime<Utc>,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE social_accounts SET
             last_refresh_attempt_at = $2,
             last_refresh_error = $3,
             last_refresh_error_status = $4,
             consecutive_failures = consecutive_failures + $5,
             next_attempt_at = COALESCE($6, next_attempt_at),
             status = COALESCE($7, status),
             status_reason = CASE WHEN $7 IS NULL THEN status_reason ELSE $3 END,
             unrecognised_answer = $9,
             lease_owner = CASE WHEN $8 THEN NULL ELSE lease_owner END,
             lease_until = CASE WHEN $8 THEN NULL ELSE lease_until END,
             lease_started_at = CASE WHEN $8 THEN NULL ELSE lease_started_at END,
             claim_id = NULL, claimed_at = NULL, claimed_by = NULL,
             updated_at = now()
         WHERE id = $1",
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
    .execute(tx)
    .await?;
    Ok(())
}

async fn record_attempt_only(
    tx: &mut sqlx::PgConnection,
    id: &AccountId,
    release_lease: bool,
    attempted_at: DateTime<Utc>,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE social_accounts SET
             last_refresh_attempt_at = $2,
             lease_owner = CASE WHEN $3 THEN NULL ELSE lease_owner END,
             lease_until = CASE WHEN $3 THEN NULL ELSE lease_until END,
             lease_started_at = CASE WHEN $3 THEN NULL ELSE lease_started_at END,
             claim_id = NULL, claimed_at = NULL, claimed_by = NULL,
             updated_at = now()
         WHERE id = $1",
    )
    .bind(id.as_str())
    .bind(attempted_at)
    .bind(release_lease)
    .execute(tx)
    .await?;
    Ok(())
}

async fn release(
    tx: &mut sqlx::PgConnection,
    id: &AccountId,
    holds_lease: bool,
    next_attempt_at: Option<DateTime<Utc>>,
    claim: Option<uuid::Uuid>,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE social_accounts SET
             lease_owner = CASE WHEN $2 THEN NULL ELSE lease_owner END,
             lease_until = CASE WHEN $2 THEN NULL ELSE lease_until END,
             lease_started_at = CASE WHEN $2 THEN NULL ELSE lease_started_at END,
             next_attempt_at = COALESCE($3, next_attempt_at),
             claimed_at = CASE WHEN claim_id = $4 THEN NULL ELSE claimed_at END,
             claimed_by = CASE WHEN claim_id = $4 THEN NULL ELSE claimed_by END,
             claim_id = CASE WHEN claim_id = $4 THEN NULL ELSE claim_id END
         WHERE id = $1",
    )
    .bind(id.as_str())
    .bind(holds_lease)
    .bind(next_attempt_at)
    .bind(claim)
    .execute(tx)
    .await?;
    Ok(())
}

async fn write_healthy(
    tx: &mut sqlx::PgConnection,
    id: &AccountId,
    holds_lease: bool,
    next_attempt_at: DateTime<Utc>,
    attempted_at: DateTime<Utc>,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE social_accounts SET
             last_refresh_attempt_at = $4,
             last_refresh_error = NULL,
             last_refresh_error_status = NULL,
             unrecognised_answer = false,
             consecutive_failures = 0,
             lease_owner = CASE WHEN $2 THEN NULL ELSE lease_owner END,
             lease_until = CASE WHEN $2 THEN NULL ELSE lease_until END,
             lease_started_at = CASE WHEN $2 THEN NULL ELSE lease_started_at END,
             next_attempt_at = $3,
             claim_id = NULL, claimed_at = NULL, claimed_by = NULL,
             updated_at = now()
         WHERE id = $1",
    )
    .bind(id.as_str())
    .bind(holds_lease)
    .bind(next_attempt_at)
    .bind(attempted_at)
    .execute(tx)
    .await?;
    Ok(())
}
