//! Many accounts written at once (bulk import): `accounts::register`'s
//! upsert and outbox events, as one multi-row statement per batch inside
//! one transaction. The caller looks the batch's accounts up first (locked,
//! in the same transaction), decides what each line does, encrypts, and
//! hands the rows here.

use chrono::{DateTime, Utc};
use sqlx::PgConnection;

use crate::domain::{AccountId, AccountStatus, ConnectionType, Provider};
use crate::store::accounts::{AccountRow, schedule_columns};

/// The natural key of an account.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Identity {
    pub workspace_id: String,
    pub provider: Provider,
    pub external_id: String,
}

/// What an export carries besides profile and credentials. A registration
/// keeps the account's refresh times and clears the rest, as `register`.
#[derive(Debug, Clone, Default)]
pub struct History {
    pub connected_at: Option<DateTime<Utc>>,
    pub last_refreshed_at: Option<DateTime<Utc>>,
    pub last_refresh_attempt_at: Option<DateTime<Utc>>,
    pub last_refresh_error: Option<String>,
    pub last_refresh_error_status: Option<i32>,
    pub consecutive_failures: i32,
    pub account_inactive_reason: Option<String>,
    pub account_inactive_since: Option<DateTime<Utc>>,
}

/// One account of a batch, ready to write: id chosen, credentials
/// encrypted under the primary key for that id, next attempt planned.
#[derive(Debug, Clone)]
pub struct BulkAccount {
    pub id: AccountId,
    pub identity: Identity,
    pub handle: Option<String>,
    pub display_name: Option<String>,
    pub avatar_url: Option<String>,
    pub status: AccountStatus,
    pub status_reason: Option<String>,
    pub connection_type: ConnectionType,
    pub granted_scopes: Vec<String>,
    pub missing_scopes: Vec<String>,
    pub meta: serde_json::Value,
    pub default_board_id: Option<String>,
    pub token_issued_at: Option<DateTime<Utc>>,
    pub token_expires_at: Option<DateTime<Utc>>,
    pub refresh_token_expires_at: Option<DateTime<Utc>>,
    pub next_attempt_at: Option<DateTime<Utc>>,
    /// When the credentials die by time (`RefreshPolicy::dead_at`).
    pub dead_at: Option<DateTime<Utc>>,
    /// None only for a DISCONNECTED account (its credentials were wiped).
    pub access_token_ciphertext: Option<Vec<u8>>,
    pub refresh_token_ciphertext: Option<Vec<u8>>,
    pub dpop_key_ciphertext: Option<Vec<u8>>,
    /// An export's history, or (a registration) what the account had.
    pub history: History,
    /// The outbox event to write: the status before (None: new) and why.
    pub event: Option<(Option<AccountStatus>, &'static str)>,
}

/// The batch's accounts that exist already, found by identity or (for
/// restored accounts, which keep their id) by id, locked for the rest of
/// the transaction in id order, so two imports cannot deadlock.
pub async fn lock_existing(
    conn: &mut PgConnection,
    identities: &[&Identity],
    ids: &[&str],
) -> Result<Vec<AccountRow>, sqlx::Error> {
    let workspaces: Vec<&str> = identities.iter().map(|i| i.workspace_id.as_str()).collect();
    let providers: Vec<&str> = identities.iter().map(|i| i.provider.as_str()).collect();
    let externals: Vec<&str> = identities.iter().map(|i| i.external_id.as_str()).collect();
    // Two lookups joined by UNION rather than one OR, so that each uses
    // its index (the identity constraint, the primary key).
    sqlx::query_as(concat!(
        "SELECT a.*, ",
        schedule_columns!(),
        " FROM social_accounts a LEFT JOIN account_schedule s ON s.account_id = a.id
             WHERE a.id IN (
                 SELECT a.id FROM social_accounts a
                 JOIN unnest($1::text[], $2::text[], $3::text[]) AS k(w, p, e)
                   ON a.workspace_id = k.w AND a.provider = k.p AND a.external_id = k.e
                 UNION
                 SELECT id FROM social_accounts WHERE id = ANY($4::text[]))
             ORDER BY a.id
             FOR UPDATE OF a"
    ))
    .bind(&workspaces)
    .bind(&providers)
    .bind(&externals)
    .bind(ids)
    .fetch_all(conn)
    .await
}

/// Inserts or updates every account of the batch in one statement (each id
/// at most once), with `register`'s reconnect semantics: credentials
/// replaced, version bumped (a refresh in flight is fenced out), failures
/// and claims cleared; then writes their outbox events. Must run in the
/// transaction of [`lock_existing`].
pub async fn upsert(
    conn: &mut PgConnection,
    key_id: &str,
    batch: &[BulkAccount],
) -> Result<(), sqlx::Error> {
    if batch.is_empty() {
        return Ok(());
    }
    // Scope lists travel as JSON: a text[] of text[] cannot be unnested.
    let json = |scopes: &Vec<String>| serde_json::to_string(scopes).expect("strings serialize");
    let col = |f: fn(&BulkAccount) -> Option<&str>| batch.iter().map(f).collect::<Vec<_>>();
    let ids: Vec<&str> = batch.iter().map(|a| a.id.as_str()).collect();
    let workspaces = col(|a| Some(a.identity.workspace_id.as_str()));
    let providers = col(|a| Some(a.identity.provider.as_str()));
    let externals = col(|a| Some(a.identity.external_id.as_str()));
    let handles = col(|a| a.handle.as_deref());
    let names = col(|a| a.display_name.as_deref());
    let avatars = col(|a| a.avatar_url.as_deref());
    let statuses = col(|a| Some(a.status.as_str()));
    let reasons = col(|a| a.status_reason.as_deref());
    let connection_types = col(|a| Some(a.connection_type.as_str()));
    let granted: Vec<String> = batch.iter().map(|a| json(&a.granted_scopes)).collect();
    let missing: Vec<String> = batch.iter().map(|a| json(&a.missing_scopes)).collect();
    let metas: Vec<&serde_json::Value> = batch.iter().map(|a| &a.meta).collect();
    let boards = col(|a| a.default_board_id.as_deref());
    let issued: Vec<_> = batch.iter().map(|a| a.token_issued_at).collect();
    let expires: Vec<_> = batch.iter().map(|a| a.token_expires_at).collect();
    let refresh_expires: Vec<_> = batch.iter().map(|a| a.refresh_token_expires_at).collect();
    let next: Vec<_> = batch.iter().map(|a| a.next_attempt_at).collect();
    let dead: Vec<_> = batch.iter().map(|a| a.dead_at).collect();
    let access: Vec<Option<&[u8]>> = batch
        .iter()
        .map(|a| a.access_token_ciphertext.as_deref())
        .collect();
    let refresh: Vec<Option<&[u8]>> = batch
        .iter()
        .map(|a| a.refresh_token_ciphertext.as_deref())
        .collect();
    let dpop: Vec<Option<&[u8]>> = batch
        .iter()
        .map(|a| a.dpop_key_ciphertext.as_deref())
        .collect();
    let histories: Vec<&History> = batch.iter().map(|a| &a.history).collect();
    let connected: Vec<_> = histories.iter().map(|h| h.connected_at).collect();
    let refreshed: Vec<_> = histories.iter().map(|h| h.last_refreshed_at).collect();
    let attempted: Vec<_> = histories
        .iter()
        .map(|h| h.last_refresh_attempt_at)
        .collect();
    let errors: Vec<_> = histories
        .iter()
        .map(|h| h.last_refresh_error.as_deref())
        .collect();
    let error_statuses: Vec<_> = histories
        .iter()
        .map(|h| h.last_refresh_error_status)
        .collect();
    let failures: Vec<i32> = histories.iter().map(|h| h.consecutive_failures).collect();
    let inactive: Vec<_> = histories
        .iter()
        .map(|h| h.account_inactive_reason.as_deref())
        .collect();
    let inactive_since: Vec<_> = histories.iter().map(|h| h.account_inactive_since).collect();

    // The schedule rows follow in the same statement: a plan only for an
    // ACTIVE account, any claim cleared (see migration 0009).
    sqlx::query(
        "WITH a AS (
         INSERT INTO social_accounts (
             id, workspace_id, provider, external_id, handle, display_name, avatar_url,
             status, status_reason, connection_type, granted_scopes, missing_scopes, meta,
             default_board_id, token_issued_at, token_expires_at, refresh_token_expires_at,
             access_token_ciphertext, refresh_token_ciphertext,
             credentials_key_id, dpop_key_ciphertext, connected_at, last_refreshed_at,
             last_refresh_attempt_at, last_refresh_error, last_refresh_error_status,
             consecutive_failures, account_inactive_reason, account_inactive_since)
         SELECT id, w, p, e, handle, name, avatar, status, reason, ctype,
                ARRAY(SELECT jsonb_array_elements_text(granted::jsonb)),
                ARRAY(SELECT jsonb_array_elements_text(missing::jsonb)),
                meta, board, issued, expires, rexpires, access, refresh,
                CASE WHEN access IS NULL THEN NULL ELSE $30 END, dpop,
                COALESCE(connected, now()), refreshed, attempted, error, error_status,
                failures, inactive, inactive_since
         FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[],
                     $7::text[], $8::text[], $9::text[], $10::text[], $11::text[], $12::text[],
                     $13::jsonb[], $14::text[], $15::timestamptz[], $16::timestamptz[],
                     $17::timestamptz[], $18::timestamptz[], $19::bytea[], $20::bytea[],
                     $21::bytea[], $22::timestamptz[], $23::timestamptz[],
                     $24::timestamptz[], $25::text[], $26::int4[], $27::int4[], $28::text[],
                     $29::timestamptz[])
              AS i(id, w, p, e, handle, name, avatar, status, reason, ctype, granted, missing,
                   meta, board, issued, expires, rexpires, next, access, refresh, dpop,
                   connected, refreshed, attempted, error, error_status, failures,
                   inactive, inactive_since)
         ON CONFLICT (id) DO UPDATE SET
             handle = EXCLUDED.handle,
             display_name = EXCLUDED.display_name,
             avatar_url = EXCLUDED.avatar_url,
             status = EXCLUDED.status,
             status_reason = EXCLUDED.status_reason,
             connection_type = EXCLUDED.connection_type,
             granted_scopes = EXCLUDED.granted_scopes,
             missing_scopes = EXCLUDED.missing_scopes,
             meta = EXCLUDED.meta,
             default_board_id = EXCLUDED.default_board_id,
             connected_at = EXCLUDED.connected_at,
             token_issued_at = EXCLUDED.token_issued_at,
             token_expires_at = EXCLUDED.token_expires_at,
             refresh_token_expires_at = EXCLUDED.refresh_token_expires_at,
             last_refreshed_at = EXCLUDED.last_refreshed_at,
             last_refresh_attempt_at = EXCLUDED.last_refresh_attempt_at,
             last_refresh_error = EXCLUDED.last_refresh_error,
             last_refresh_error_status = EXCLUDED.last_refresh_error_status,
             consecutive_failures = EXCLUDED.consecutive_failures,
             access_token_ciphertext = EXCLUDED.access_token_ciphertext,
             refresh_token_ciphertext = EXCLUDED.refresh_token_ciphertext,
             credentials_key_id = EXCLUDED.credentials_key_id,
             dpop_key_ciphertext = EXCLUDED.dpop_key_ciphertext,
             credentials_version = social_accounts.credentials_version + 1,
             interrupted_refresh_at = NULL,
             interrupted_refresh_cause = NULL,
             account_inactive_reason = EXCLUDED.account_inactive_reason,
             account_inactive_since = EXCLUDED.account_inactive_since,
             unrecognised_answer = false,
             updated_at = now()
         RETURNING id, status, token_expires_at)
         INSERT INTO account_schedule (account_id, next_attempt_at, access_expires_at, dead_at)
         SELECT a.id, CASE WHEN a.status = 'ACTIVE' THEN n.next END,
                CASE WHEN a.status = 'ACTIVE' THEN a.token_expires_at END,
                CASE WHEN a.status = 'ACTIVE' THEN n.dead END
         FROM a JOIN unnest($1::text[], $18::timestamptz[], $31::timestamptz[]) AS n(id, next, dead)
              ON n.id = a.id
         ON CONFLICT (account_id) DO UPDATE SET
             next_attempt_at = EXCLUDED.next_attempt_at,
             access_expires_at = EXCLUDED.access_expires_at,
             dead_at = EXCLUDED.dead_at,
             claim_id = NULL, claimed_at = NULL, claimed_by = NULL",
    )
    .bind(&ids)
    .bind(&workspaces)
    .bind(&providers)
    .bind(&externals)
    .bind(&handles)
    .bind(&names)
    .bind(&avatars)
    .bind(&statuses)
    .bind(&reasons)
    .bind(&connection_types)
    .bind(&granted)
    .bind(&missing)
    .bind(&metas)
    .bind(&boards)
    .bind(&issued)
    .bind(&expires)
    .bind(&refresh_expires)
    .bind(&next)
    .bind(&access)
    .bind(&refresh)
    .bind(&dpop)
    .bind(&connected)
    .bind(&refreshed)
    .bind(&attempted)
    .bind(&errors)
    .bind(&error_statuses)
    .bind(&failures)
    .bind(&inactive)
    .bind(&inactive_since)
    .bind(key_id)
    .bind(&dead)
    .execute(&mut *conn)
    .await?;

    let events: Vec<_> = batch
        .iter()
        .filter_map(|a| a.event.map(|(from, reason)| (a, from, reason)))
        .collect();
    if events.is_empty() {
        return Ok(());
    }
    let event_ids: Vec<uuid::Uuid> = events.iter().map(|_| uuid::Uuid::now_v7()).collect();
    let accounts: Vec<&str> = events.iter().map(|(a, _, _)| a.id.as_str()).collect();
    let workspaces: Vec<&str> = events
        .iter()
        .map(|(a, _, _)| a.identity.workspace_id.as_str())
        .collect();
    let providers: Vec<&str> = events
        .iter()
        .map(|(a, _, _)| a.identity.provider.as_str())
        .collect();
    let from: Vec<Option<&str>> = events
        .iter()
        .map(|(_, from, _)| from.map(|s| s.as_str()))
        .collect();
    let to: Vec<&str> = events.iter().map(|(a, _, _)| a.status.as_str()).collect();
    let reasons: Vec<&str> = events.iter().map(|(_, _, reason)| *reason).collect();
    sqlx::query(
        "INSERT INTO account_events (event_id, account_id, workspace_id, provider, from_status, to_status, reason)
         SELECT * FROM unnest($1::uuid[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[])",
    )
    .bind(&event_ids)
    .bind(&accounts)
    .bind(&workspaces)
    .bind(&providers)
    .bind(&from)
    .bind(&to)
    .bind(&reasons)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// Accounts in id order after `after`, at most `limit`: the export's pages.
pub async fn page_after(
    pool: &sqlx::PgPool,
    after: Option<&str>,
    workspace_id: Option<&str>,
    provider: Option<Provider>,
    limit: i64,
) -> Result<Vec<AccountRow>, sqlx::Error> {
    sqlx::query_as(concat!(
        "SELECT a.*, ",
        schedule_columns!(),
        " FROM social_accounts a LEFT JOIN account_schedule s ON s.account_id = a.id
         WHERE ($1::text IS NULL OR id > $1)
           AND ($2::text IS NULL OR workspace_id = $2)
           AND ($3::text IS NULL OR provider = $3)
         ORDER BY id
         LIMIT $4"
    ))
    .bind(after)
    .bind(workspace_id)
    .bind(provider.map(|p| p.as_str()))
    .bind(limit)
    .fetch_all(pool)
    .await
}

/// Fresh planner statistics after a large write (autovacuum may be off,
/// and the due-account scan's plan depends on them).
pub async fn analyze(pool: &sqlx::PgPool) -> Result<(), sqlx::Error> {
    sqlx::query("ANALYZE social_accounts, account_schedule, account_events")
        .execute(pool)
        .await?;
    Ok(())
}
