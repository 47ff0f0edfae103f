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
}

/// Must run in the transaction that changed the status.
pub async fn insert(
    conn: &mut PgConnection,
    account: &AccountRow,
    from: Option<AccountStatus>,
    to: AccountStatus,
    reason: &str,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO account_events (event_id, account_id, workspace_id, provider, from_status, to_status, reason)
         VALUES ($1, $2, $3, $4, $5, $6, $7)",
    )
    .bind(uuid::Uuid::now_v7())
    .bind(account.id.as_str())
    .bind(&account.workspace_id)
    .bind(account.provider.as_str())
    .bind(from.map(|s| s.as_str()))
    .bind(to.as_str())
    .bind(reason)
    .execute(conn)
    .await?;
    Ok(())
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
