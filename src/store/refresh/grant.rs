//! Writing new credentials: the SET clause shared by the general commit and
//! the one-statement path a plain successful refresh takes.

use chrono::{DateTime, Utc};
use sqlx::PgPool;

use super::NewCredentials;
use crate::domain::{AccountId, AccountStatus};
use crate::store::accounts::AccountRow;
use crate::store::attempts::NewAttempt;

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
         interrupted_refresh_cause = NULL,
         claim_id = NULL, claimed_at = NULL, claimed_by = NULL,
         updated_at = now()"
    };
}

/// Releases the lease when `$13` (this process) holds it. New tokens may
/// land after the lease expired and another process took it: that
/// process's own result is then fenced by the credentials version.
macro_rules! release_own_lease {
    () => {
        ", lease_owner = CASE WHEN lease_owner = $13 THEN NULL ELSE lease_owner END,
           lease_until = CASE WHEN lease_owner = $13 THEN NULL ELSE lease_until END,
           lease_started_at = CASE WHEN lease_owner = $13 THEN NULL ELSE lease_started_at END"
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

pub(super) async fn write_credentials(
    tx: &mut sqlx::PgConnection,
    id: &AccountId,
    owner: &str,
    creds: &NewCredentials,
    attempted_at: DateTime<Utc>,
) -> Result<(), sqlx::Error> {
    let query = sqlx::query(concat!(
        "UPDATE social_accounts SET ",
        credentials_set!(),
        release_own_lease!(),
        " WHERE id = $1"
    ));
    bind_credentials(query, id, creds, attempted_at)
        .bind(owner)
        .execute(tx)
        .await?;
    Ok(())
}

/// The common case of a successful refresh in one statement (one round
/// trip, its own transaction): the credentials write fenced by the
/// credentials version, the attempt row and, if the status changes, the
/// outbox event. Returns the status the account had, or None when the fence
/// did not match; the caller then takes the general path, which records
/// that case.
pub async fn commit_refreshed(
    pool: &PgPool,
    leased: &AccountRow,
    owner: &str,
    attempt: &NewAttempt,
    creds: &NewCredentials,
) -> Result<Option<AccountStatus>, sqlx::Error> {
    let query = sqlx::query(concat!(
        "WITH upd AS (
             UPDATE social_accounts SET ",
        credentials_set!(),
        release_own_lease!(),
        // The row is locked and read before the update in one plan: the
        // status it had. (A separate locking CTE may run after the update
        // and then skip the row the update changed.)
        " FROM (SELECT id, status FROM social_accounts WHERE id = $1 FOR UPDATE) prev
             WHERE social_accounts.id = prev.id AND credentials_version = $14
               AND social_accounts.status <> 'DISCONNECTED'
             RETURNING social_accounts.id, prev.status, social_accounts.workspace_id,
                       social_accounts.provider),
         attempt AS (
             INSERT INTO refresh_attempts
                 (account_id, provider, trigger, started_at, finished_at, outcome, message, duration_ms)
             SELECT id, provider, $15, $16, $10, 'refreshed', $17, $18 FROM upd),
         event AS (
             INSERT INTO account_events (event_id, account_id, workspace_id, provider, from_status, to_status, reason)
             SELECT $19, id, workspace_id, provider, status, 'ACTIVE', 'refreshed'
             FROM upd WHERE status <> 'ACTIVE')
         SELECT status FROM upd"
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
