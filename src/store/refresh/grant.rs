//! Writing new credentials: the input rows and SET clause shared by the
//! general commit and the one-statement path plain successful refreshes
//! take (for one account or many).

use chrono::{DateTime, Utc};
use sqlx::PgPool;

use super::NewCredentials;
use crate::domain::{AccountId, AccountStatus};
use crate::store::attempts::NewAttempt;

/// The input rows of a credentials write, one element per account in each
/// of `$1..$13`, as `CredentialColumns::bind` binds them; read as
/// `AS i(credentials_columns!())`.
macro_rules! credentials_input {
    () => {
        "$1::text[], $2::bytea[], $3::bytea[], $4::text[], $5::timestamptz[],
         $6::timestamptz[], $7::timestamptz[], $8::text[], $9::timestamptz[],
         $10::timestamptz[], $11::text[], $12::bytea[], $13::timestamptz[]"
    };
}

macro_rules! credentials_columns {
    () => {
        "id, access, refresh, key_id, issued_at, expires_at, refresh_expires_at, granted,
         next_attempt_at, attempted_at, missing, dpop, dead_at"
    };
}

/// The SET clause of a credentials write to `social_accounts a` from input
/// row `i` (its schedule: `schedule_set!()`). Releases the lease when `$14`
/// (this process) holds it: new tokens may land after the lease expired and
/// another process took it; that process's own result is then fenced by the
/// credentials version.
macro_rules! credentials_set {
    () => {
        "access_token_ciphertext = i.access,
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
         last_refresh_attempt_at = i.attempted_at,
         dpop_key_ciphertext = i.dpop,
         unrecognised_answer = false,
         last_refresh_error = NULL,
         last_refresh_error_status = NULL,
         consecutive_failures = 0,
         status = 'ACTIVE',
         status_reason = NULL,
         interrupted_refresh_at = NULL,
         interrupted_refresh_cause = NULL,
         updated_at = now(),
         lease_owner = CASE WHEN a.lease_owner = $14 THEN NULL ELSE a.lease_owner END,
         lease_until = CASE WHEN a.lease_owner = $14 THEN NULL ELSE a.lease_until END,
         lease_started_at = CASE WHEN a.lease_owner = $14 THEN NULL ELSE a.lease_started_at END"
    };
}

/// The schedule of an account whose credentials were written from row `i`
/// (carrying the input's `next_attempt_at`, `expires_at` and `dead_at`):
/// it is ACTIVE, its next attempt is the new plan, its claim done, its
/// copies of the expiries (migration 0013) the new ones.
macro_rules! schedule_set {
    () => {
        "next_attempt_at = i.next_attempt_at, claim_id = NULL, claimed_at = NULL, claimed_by = NULL,
         access_expires_at = i.expires_at, dead_at = i.dead_at"
    };
}

type PgQuery<'q> = sqlx::query::Query<'q, sqlx::Postgres, sqlx::postgres::PgArguments>;

/// The columns of `credentials_input!()` for some accounts.
struct CredentialColumns<'a> {
    ids: Vec<&'a str>,
    access: Vec<&'a [u8]>,
    refresh: Vec<Option<&'a [u8]>>,
    key_ids: Vec<&'a str>,
    issued_at: Vec<DateTime<Utc>>,
    expires_at: Vec<Option<DateTime<Utc>>>,
    refresh_expires_at: Vec<Option<DateTime<Utc>>>,
    granted: Vec<Option<String>>,
    next_attempt_at: Vec<Option<DateTime<Utc>>>,
    attempted_at: Vec<DateTime<Utc>>,
    missing: Vec<Option<String>>,
    dpop: Vec<Option<&'a [u8]>>,
    dead_at: Vec<Option<DateTime<Utc>>>,
}

impl<'a> CredentialColumns<'a> {
    fn new(rows: &[(&'a AccountId, &'a NewCredentials, DateTime<Utc>)]) -> Self {
        // Scope lists travel as JSON: a text[] of text[] cannot be unnested.
        let as_json = |scopes: &Option<Vec<String>>| {
            scopes
                .as_ref()
                .map(|s| serde_json::to_string(s).expect("strings serialize"))
        };
        Self {
            ids: rows.iter().map(|(id, _, _)| id.as_str()).collect(),
            access: rows
                .iter()
                .map(|(_, c, _)| c.access_token_ciphertext.as_slice())
                .collect(),
            refresh: rows
                .iter()
                .map(|(_, c, _)| c.refresh_token_ciphertext.as_deref())
                .collect(),
            key_ids: rows.iter().map(|(_, c, _)| c.key_id.as_str()).collect(),
            issued_at: rows.iter().map(|(_, c, _)| c.issued_at).collect(),
            expires_at: rows.iter().map(|(_, c, _)| c.expires_at).collect(),
            refresh_expires_at: rows
                .iter()
                .map(|(_, c, _)| c.refresh_token_expires_at)
                .collect(),
            granted: rows
                .iter()
                .map(|(_, c, _)| as_json(&c.granted_scopes))
                .collect(),
            next_attempt_at: rows.iter().map(|(_, c, _)| c.next_attempt_at).collect(),
            attempted_at: rows.iter().map(|(_, _, at)| *at).collect(),
            missing: rows
                .iter()
                .map(|(_, c, _)| as_json(&c.missing_scopes))
                .collect(),
            dpop: rows
                .iter()
                .map(|(_, c, _)| c.dpop_key_ciphertext.as_deref())
                .collect(),
            dead_at: rows.iter().map(|(_, c, _)| c.dead_at).collect(),
        }
    }

    /// Binds `$1..$13`.
    fn bind<'q>(&'q self, query: PgQuery<'q>) -> PgQuery<'q> {
        query
            .bind(&self.ids)
            .bind(&self.access)
            .bind(&self.refresh)
            .bind(&self.key_ids)
            .bind(&self.issued_at)
            .bind(&self.expires_at)
            .bind(&self.refresh_expires_at)
            .bind(&self.granted)
            .bind(&self.next_attempt_at)
            .bind(&self.attempted_at)
            .bind(&self.missing)
            .bind(&self.dpop)
            .bind(&self.dead_at)
    }
}

pub(super) async fn write_credentials(
    tx: &mut sqlx::PgConnection,
    id: &AccountId,
    owner: &str,
    creds: &NewCredentials,
    attempted_at: DateTime<Utc>,
) -> Result<(), sqlx::Error> {
    let columns = CredentialColumns::new(&[(id, creds, attempted_at)]);
    let query = sqlx::query(concat!(
        "WITH input AS (SELECT * FROM unnest(",
        credentials_input!(),
        ") AS i(",
        credentials_columns!(),
        ")),
         upd AS (UPDATE social_accounts a SET ",
        credentials_set!(),
        " FROM input i WHERE a.id = i.id
             RETURNING a.id, i.next_attempt_at, i.expires_at, i.dead_at)
         UPDATE account_schedule s SET ",
        schedule_set!(),
        " FROM upd i WHERE s.account_id = i.id"
    ));
    columns.bind(query).bind(owner).execute(tx).await?;
    Ok(())
}

/// One successful refresh to store: its account, the credentials version
/// its lease saw (the fence), the attempt and the new credentials.
pub(super) struct Refreshed<'a> {
    pub id: &'a AccountId,
    pub version: i64,
    pub attempt: &'a NewAttempt,
    pub credentials: &'a NewCredentials,
}

/// One successful refresh alone: `commit_refreshed_many` for one. Returns
/// the status the account had, or None when the fence did not match; the
/// caller then takes the general path, which records that case.
pub(super) async fn commit_refreshed(
    pool: &PgPool,
    owner: &str,
    write: Refreshed<'_>,
) -> Result<Option<AccountStatus>, sqlx::Error> {
    let applied = commit_refreshed_many(pool, owner, &[write]).await?;
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
    batch: &[Refreshed<'_>],
) -> Result<Vec<(String, AccountStatus)>, sqlx::Error> {
    let rows: Vec<_> = batch
        .iter()
        .map(|w| (w.id, w.credentials, w.attempt.finished_at))
        .collect();
    let columns = CredentialColumns::new(&rows);
    let versions: Vec<i64> = batch.iter().map(|w| w.version).collect();
    let triggers: Vec<&str> = batch.iter().map(|w| w.attempt.trigger.as_str()).collect();
    let started_at: Vec<_> = batch.iter().map(|w| w.attempt.started_at).collect();
    let messages: Vec<Option<&str>> = batch.iter().map(|w| w.attempt.message.as_deref()).collect();
    let durations: Vec<i32> = batch
        .iter()
        .map(|w| {
            (w.attempt.finished_at - w.attempt.started_at)
                .num_milliseconds()
                .clamp(0, i32::MAX as i64) as i32
        })
        .collect();
    let event_ids: Vec<uuid::Uuid> = batch.iter().map(|_| uuid::Uuid::now_v7()).collect();

    let query = sqlx::query(COMMIT_REFRESHED);
    let rows = columns
        .bind(query)
        .bind(owner)
        .bind(&versions)
        .bind(&triggers)
        .bind(&started_at)
        .bind(&messages)
        .bind(&durations)
        .bind(&event_ids)
        .fetch_all(pool)
        .await?;
    rows.iter()
        .map(|row| {
            use sqlx::Row;
            let status: String = row.try_get("status")?;
            let status = status
                .parse()
                .map_err(|e: crate::domain::UnknownVariant| sqlx::Error::Decode(e.into()))?;
            Ok((row.try_get("id")?, status))
        })
        .collect()
}

/// `commit_refreshed_many`: `$1..$13` the credentials input, `$14` this
/// process (the lease owner), `$15..$20` each row's fence version and attempt.
pub(crate) const COMMIT_REFRESHED: &str = concat!(
        "WITH input AS (
             SELECT * FROM unnest(",
        credentials_input!(),
        ", $15::int8[], $16::text[], $17::timestamptz[], $18::text[], $19::int4[], $20::uuid[])
                 AS i(",
        credentials_columns!(),
        ", version, trigger, started_at, message, duration_ms, event_id)),
         -- Each account read by its key and locked, in one order (no
         -- deadlock between batches), with the status it had before.
         -- Every later step joins one row set to a table by its key: a
         -- join of two row sets, both estimated small, becomes a nested
         -- loop that rescans one per row of the other.
         locked AS MATERIALIZED (
             SELECT i.*, a.status AS prev_status
             FROM input i JOIN social_accounts a ON a.id = i.id
             ORDER BY a.id
             FOR UPDATE OF a),
         upd AS (
             UPDATE social_accounts a SET ",
        credentials_set!(),
        " FROM locked i
             WHERE a.id = i.id AND a.credentials_version = i.version
               AND a.status <> 'DISCONNECTED'
             RETURNING a.id, i.prev_status AS status, a.workspace_id, a.provider, i.trigger,
                       i.started_at, i.attempted_at AS finished_at, i.message, i.duration_ms,
                       i.event_id, i.next_attempt_at, i.expires_at, i.dead_at),
         attempt AS (
             INSERT INTO refresh_attempts
                 (account_id, provider, trigger, started_at, finished_at, outcome, message, duration_ms)
             SELECT id, provider, trigger, started_at, finished_at, 'refreshed', message, duration_ms
             FROM upd),
         event AS (
             INSERT INTO account_events (event_id, account_id, workspace_id, provider, from_status, to_status, reason)
             SELECT event_id, id, workspace_id, provider, status, 'ACTIVE', 'refreshed'
             FROM upd WHERE status <> 'ACTIVE'),
         schedule AS (
             UPDATE account_schedule s SET ",
        schedule_set!(),
        " FROM upd i WHERE s.account_id = i.id)
         SELECT id, status FROM upd"
);
