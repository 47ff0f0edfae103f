//! The status-change outbox.

use chrono::{DateTime, Utc};
use sqlx::{FromRow, PgConnection};

use crate::domain::AccountStatus;
use crate::store::accounts::AccountRow;

#[derive(Debug, Clone, FromRow)]
pub struct EventRow {
    pub id: i64,
    pub event_id: uuid::Uuid,
    pub account_id: String,
    pub workspace_id: String,
    pub provider: String,
    pub from_status: Option<String>,
    pub to_status: String,
    pub reason: String,
    pub occurred_at: DateTime<Utc>,
    /// The reading order; None until assigned (see `assign_sequence`).
    pub seq: Option<i64>,
    pub delivery_attempts: i32,
    /// `status`, or a change of the account's own state with the status
    /// unchanged (`account_inactive`, `account_active`), or an
    /// `operator_action` taken in the console.
    pub kind: String,
    /// For `operator_action`: the id of the operator key that acted.
    pub operator_key_id: Option<String>,
}

/// Must run in the transaction that changed the status.
pub async fn insert(
    conn: &mut PgConnection,
    account: &AccountRow,
    from: Option<AccountStatus>,
    to: AccountStatus,
    reason: &str,
) -> Result<(), sqlx::Error> {
    insert_kind(conn, account, "status", from, to, reason).await
}

/// An event of another kind than a status change (see `EventRow::kind`);
/// must run in the transaction that made the change.
pub async fn insert_kind(
    conn: &mut PgConnection,
    account: &AccountRow,
    kind: &str,
    from: Option<AccountStatus>,
    to: AccountStatus,
    reason: &str,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO account_events (event_id, account_id, workspace_id, provider, from_status, to_status, reason, kind)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
    )
    .bind(uuid::Uuid::now_v7())
    .bind(account.id.as_str())
    .bind(&account.workspace_id)
    .bind(account.provider.as_str())
    .bind(from.map(|s| s.as_str()))
    .bind(to.as_str())
    .bind(reason)
    .bind(kind)
    .execute(conn)
    .await?;
    Ok(())
}

/// What an operator did to an account (in `reason`), by which operator
/// key: an event of kind `operator_action`, the status unchanged.
pub async fn insert_operator_action(
    pool: &sqlx::PgPool,
    account: &AccountRow,
    action: &str,
    operator_key_id: &str,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO account_events (event_id, account_id, workspace_id, provider, from_status, to_status,
                                     reason, kind, operator_key_id)
         VALUES ($1, $2, $3, $4, $5, $5, $6, 'operator_action', $7)",
    )
    .bind(uuid::Uuid::now_v7())
    .bind(account.id.as_str())
    .bind(&account.workspace_id)
    .bind(account.provider.as_str())
    .bind(account.status.as_str())
    .bind(action)
    .bind(operator_key_id)
    .execute(pool)
    .await?;
    Ok(())
}

/// The account's newest events, newest first.
pub async fn latest_for_account(
    pool: &sqlx::PgPool,
    account_id: &str,
    limit: i64,
) -> Result<Vec<EventRow>, sqlx::Error> {
    sqlx::query_as("SELECT * FROM account_events WHERE account_id = $1 ORDER BY id DESC LIMIT $2")
        .bind(account_id)
        .bind(limit)
        .fetch_all(pool)
        .await
}

pub async fn for_account(
    pool: &sqlx::PgPool,
    account_id: &str,
) -> Result<Vec<EventRow>, sqlx::Error> {
    sqlx::query_as("SELECT * FROM account_events WHERE account_id = $1 ORDER BY id")
        .bind(account_id)
        .fetch_all(pool)
        .await
}

/// Gives committed events without a sequence number the next ones, in id
/// order. One assigner at a time (an advisory lock), each in its own
/// transaction: numbers become visible only in increasing order, so a
/// reader that saw N never later finds a new event below N.
pub async fn assign_sequence(pool: &sqlx::PgPool) -> Result<u64, sqlx::Error> {
    let mut tx = pool.begin().await?;
    let locked: bool =
        sqlx::query_scalar("SELECT pg_try_advisory_xact_lock(hashtext('tokenwarden.events.seq'))")
            .fetch_one(&mut *tx)
            .await?;
    if !locked {
        // Another process is assigning right now; its numbers will do.
        return Ok(0);
    }
    let assigned = sqlx::query(
        "UPDATE account_events e SET seq = n.seq
         FROM (SELECT id, nextval('account_events_seq') AS seq
               FROM (SELECT id FROM account_events WHERE seq IS NULL ORDER BY id LIMIT 10000) o
               ORDER BY id) n
         WHERE e.id = n.id",
    )
    .execute(&mut *tx)
    .await?
    .rows_affected();
    tx.commit().await?;
    Ok(assigned)
}

/// Sequenced events after `after`, in order.
pub async fn list_after(
    pool: &sqlx::PgPool,
    after: i64,
    limit: i64,
) -> Result<Vec<EventRow>, sqlx::Error> {
    sqlx::query_as(
        "SELECT * FROM account_events WHERE seq > $1 AND seq IS NOT NULL ORDER BY seq LIMIT $2",
    )
    .bind(after)
    .bind(limit)
    .fetch_all(pool)
    .await
}

/// Takes up to `limit` events due for webhook delivery, moving their next
/// delivery time past `lease` so that no other sender takes them meanwhile.
pub async fn claim_for_delivery(
    pool: &sqlx::PgPool,
    limit: i64,
    lease: std::time::Duration,
) -> Result<Vec<EventRow>, sqlx::Error> {
    sqlx::query_as(
        "UPDATE account_events e SET next_delivery_at = now() + $2,
                delivery_attempts = e.delivery_attempts + 1
         FROM (SELECT id FROM account_events
               WHERE delivered_at IS NULL AND seq IS NOT NULL AND next_delivery_at <= now()
               ORDER BY next_delivery_at, seq
               LIMIT $1
               FOR UPDATE SKIP LOCKED) due
         WHERE e.id = due.id
         RETURNING e.*",
    )
    .bind(limit)
    .bind(lease)
    .fetch_all(pool)
    .await
}

pub async fn mark_delivered(pool: &sqlx::PgPool, id: i64) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE account_events SET delivered_at = now(), last_delivery_error = NULL WHERE id = $1",
    )
    .bind(id)
    .execute(pool)
    .await?;
    Ok(())
}

pub async fn mark_failed(
    pool: &sqlx::PgPool,
    id: i64,
    retry_at: DateTime<Utc>,
    error: &str,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE account_events SET next_delivery_at = $2, last_delivery_error = $3
         WHERE id = $1 AND delivered_at IS NULL",
    )
    .bind(id)
    .bind(retry_at)
    .bind(error)
    .execute(pool)
    .await?;
    Ok(())
}

/// Undelivered events and the age of the oldest, in seconds.
pub async fn undelivered(pool: &sqlx::PgPool) -> Result<(i64, f64), sqlx::Error> {
    sqlx::query_as(
        "SELECT count(*), COALESCE(EXTRACT(EPOCH FROM now() - min(occurred_at))::float8, 0)
         FROM account_events WHERE delivered_at IS NULL",
    )
    .fetch_one(pool)
    .await
}
