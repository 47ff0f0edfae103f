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

/// The common case of a successful refresh: `commit_refreshed_many` for
/// one. Returns the status the account had, or None when the fence did not
/// match; the caller then takes the general path, which records that case.
pub async fn commit_refreshed(
    pool: &PgPool,
    leased: &AccountRow,
    owner: &str,
    attempt: &NewAttempt,
    creds: &NewCredentials,
) -> Result<Option<AccountStatus>, sqlx::Error> {
    let applied = commit_refreshed_many(pool, owner, &[(leased, attempt, creds)]).await?;
    Ok(applied.first().map(|(_, status)| *status))
}

/// Successful refreshes in one statement (one round trip, one
/// transaction): the credentials writes fenced by each row's credentials
/// version, the attempt rows and, where the status changes, the outbox
/// events. Returns the accounts the fence matched, with the status each
/// had. An account appears at most once.
pub(super) async fn commit_refreshed_many(
    pool: &PgPool,
    owner: &str,
    batch: &[(&AccountRow, &NewAttempt, &NewCredentials)],
) -> Result<Vec<(String, AccountStatus)>, sqlx::Error> {
    let ids: Vec<&str> = batch
        .iter()
        .map(|(leased, _, _)| leased.id.as_str())
        .collect();
    let access: Vec<&[u8]> = batch
        .iter()
        .map(|(_, _, credentials)| credentials.access_token_ciphertext.as_slice())
        .collect();
    let refresh: Vec<Option<&[u8]>> = batch
        .iter()
        .map(|(_, _, credentials)| credentials.refresh_token_ciphertext.as_deref())
        .collect();
    let key_ids: Vec<&str> = batch
        .iter()
        .map(|(_, _, credentials)| credentials.key_id.as_str())
        .collect();
    let issued_at: Vec<_> = batch
        .iter()
        .map(|(_, _, credentials)| credentials.issued_at)
        .collect();
    let expires_at: Vec<_> = batch
        .iter()
        .map(|(_, _, credentials)| credentials.expires_at)
        .collect();
    let refresh_expires_at: Vec<_> = batch
        .iter()
        .map(|(_, _, credentials)| credentials.refresh_token_expires_at)
        .collect();
    // Scope lists travel as JSON: a text[] of text[] cannot be unnested.
    let as_json = |scopes: &Option<Vec<String>>| {
        scopes
            .as_ref()
            .map(|s| serde_json::to_string(s).expect("strings serialize"))
    };
    let granted: Vec<Option<String>> = batch
        .iter()
        .map(|(_, _, credentials)| as_json(&credentials.granted_scopes))
        .collect();
    let missing: Vec<Option<String>> = batch
        .iter()
        .map(|(_, _, credentials)| as_json(&credentials.missing_scopes))
        .collect();
    let next_attempt_at: Vec<_> = batch
        .iter()
        .map(|(_, _, credentials)| credentials.next_attempt_at)
        .collect();
    let finished_at: Vec<_> = batch
        .iter()
        .map(|(_, attempt, _)| attempt.finished_at)
        .collect();
    let dpop: Vec<Option<&[u8]>> = batch
        .iter()
        .map(|(_, _, credentials)| credentials.dpop_key_ciphertext.as_deref())
        .collect();
    let versions: Vec<i64> = batch
        .iter()
        .map(|(leased, _, _)| leased.credentials_version)
        .collect();
    let triggers: Vec<&str> = batch
        .iter()
        .map(|(_, attempt, _)| attempt.trigger.as_str())
        .collect();
    let started_at: Vec<_> = batch
        .iter()
        .map(|(_, attempt, _)| attempt.started_at)
        .collect();
    let messages: Vec<Option<&str>> = batch
        .iter()
        .map(|(_, attempt, _)| attempt.message.as_deref())
        .collect();
    let durations: Vec<i32> = batch
        .iter()
        .map(|(_, attempt, _)| {
            (attempt.finished_at - attempt.started_at)
                .num_milliseconds()
                .clamp(0, i32::MAX as i64) as i32
        })
        .collect();
    let event_ids: Vec<uuid::Uuid> = batch.iter().map(|_| uuid::Uuid::now_v7()).collect();

    let rows: Vec<(String, String)> = sqlx::query_as(
        "WITH input AS (
             SELECT * FROM unnest($1::text[], $2::bytea[], $3::bytea[], $4::text[],
                                  $5::timestamptz[], $6::timestamptz[], $7::timestamptz[],
                                  $8::text[], $9::timestamptz[], $10::timestamptz[], $11::text[],
                                  $12::bytea[], $13::int8[], $14::text[], $15::timestamptz[],
                                  $16::text[], $17::int4[], $18::uuid[])
                 AS i(id, access, refresh, key_id, issued_at, expires_at, refresh_expires_at,
                      granted, next_attempt_at, finished_at, missing, dpop, version, trigger,
                      started_at, message, duration_ms, event_id)),
         upd AS (
             UPDATE social_accounts a SET
                 access_token_ciphertext = i.access,
                 refresh_token_ciphertext = i.refresh,
                 credentials_key_id = i.key_id,
                 credentials_version = a.credentials_version + 1,
                 token_issued_at = i.issued_at,
                 last_refreshed_at = i.issued_at,
                 token_expires_at = i.expires_at,
                 refresh_token_expires_at = i.refresh_expires_at,
                 granted_scopes = CASE WHEN i.granted IS NULL THEN a.granted_scopes
                     ELSE ARRAY(SELECT jsonb_array_elements_text(i.granted::jsonb)) END,
                 missing_scopes = CASE WHEN i.missing IS NULL THEN a.missing_scopes
                     ELSE ARRAY(SELECT jsonb_array_elements_text(i.missing::jsonb)) END,
                 next_attempt_at = i.next_attempt_at,
                 last_refresh_attempt_at = i.finished_at,
                 dpop_key_ciphertext = i.dpop,
                 unrecognised_answer = false,
                 last_refresh_error = NULL,
                 last_refresh_error_status = NULL,
                 consecutive_failures = 0,
                 status = 'ACTIVE',
                 status_reason = NULL,
                 interrupted_refresh_at = NULL,
                 interrupted_refresh_cause = NULL,
                 claim_id = NULL, claimed_at = NULL, claimed_by = NULL,
                 updated_at = now(),
                 lease_owner = CASE WHEN a.lease_owner = $19 THEN NULL ELSE a.lease_owner END,
                 lease_until = CASE WHEN a.lease_owner = $19 THEN NULL ELSE a.lease_until END,
                 lease_started_at = CASE WHEN a.lease_owner = $19 THEN NULL
                                         ELSE a.lease_started_at END
             FROM input i,
                  -- Locked in one order (no deadlock between batches), and
                  -- read before the update: the status the account had.
                  (SELECT id, status FROM social_accounts WHERE id = ANY($1)
                   ORDER BY id FOR UPDATE) prev
             WHERE a.id = i.id AND prev.id = a.id AND a.credentials_version = i.version
               AND a.status <> 'DISCONNECTED'
             RETURNING a.id, prev.status, a.workspace_id, a.provider, i.trigger, i.started_at,
                       i.finished_at, i.message, i.duration_ms, i.event_id),
         attempt AS (
             INSERT INTO refresh_attempts
                 (account_id, provider, trigger, started_at, finished_at, outcome, message, duration_ms)
             SELECT id, provider, trigger, started_at, finished_at, 'refreshed', message, duration_ms
             FROM upd),
         event AS (
             INSERT INTO account_events (event_id, account_id, workspace_id, provider, from_status, to_status, reason)
             SELECT event_id, id, workspace_id, provider, status, 'ACTIVE', 'refreshed'
             FROM upd WHERE status <> 'ACTIVE')
         SELECT id, status FROM upd",
    )
    .bind(&ids)
    .bind(&access)
    .bind(&refresh)
    .bind(&key_ids)
    .bind(&issued_at)
    .bind(&expires_at)
    .bind(&refresh_expires_at)
    .bind(&granted)
    .bind(&next_attempt_at)
    .bind(&finished_at)
    .bind(&missing)
    .bind(&dpop)
    .bind(&versions)
    .bind(&triggers)
    .bind(&started_at)
    .bind(&messages)
    .bind(&durations)
    .bind(&event_ids)
    .bind(owner)
    .fetch_all(pool)
    .await?;
    rows.into_iter()
        .map(|(id, status)| {
            let status = status
                .parse()
                .map_err(|e: crate::domain::UnknownVariant| sqlx::Error::Decode(e.into()))?;
            Ok((id, status))
        })
        .collect()
}
