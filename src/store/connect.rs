//! Started connect flows (`connect_sessions`) and the apps the daemon
//! registered itself on users' servers (`connect_apps`).

use chrono::{DateTime, Utc};
use sqlx::PgPool;

/// A connect flow as started.
pub struct NewSession<'a> {
    pub state_hash: &'a [u8],
    pub provider: &'a str,
    pub workspace_id: &'a str,
    pub redirect_after: &'a str,
    pub scopes: &'a [String],
    pub account_id: Option<&'a str>,
    pub extras: &'a serde_json::Value,
    pub context: &'a serde_json::Value,
    pub secrets: Option<(&'a [u8], &'a str)>,
    pub expires_at: DateTime<Utc>,
}

#[derive(Debug, sqlx::FromRow)]
pub struct SessionRow {
    pub provider: String,
    pub workspace_id: String,
    pub redirect_after: String,
    pub scopes: Vec<String>,
    pub account_id: Option<String>,
    pub extras: serde_json::Value,
    pub context: serde_json::Value,
    pub secrets: Option<Vec<u8>>,
    pub secrets_key_id: Option<String>,
    pub choice: Option<serde_json::Value>,
}

/// What happened to a state presented once more.
pub enum Taken {
    Fresh(Box<SessionRow>),
    Unknown,
    Expired,
    Reused,
}

pub async fn insert(pool: &PgPool, new: &NewSession<'_>) -> Result<(), sqlx::Error> {
    // Old sessions go as new ones come: cheap by the expiry index, and no
    // task of its own is needed. A day's grace, so that a late or repeated
    // callback is told "expired" or "reused" rather than "unknown".
    sqlx::query("DELETE FROM connect_sessions WHERE expires_at < now() - interval '1 day'")
        .execute(pool)
        .await?;
    sqlx::query(
        "INSERT INTO connect_sessions (state_hash, provider, workspace_id, redirect_after, \
         scopes, account_id, extras, context, secrets, secrets_key_id, expires_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
    )
    .bind(new.state_hash)
    .bind(new.provider)
    .bind(new.workspace_id)
    .bind(new.redirect_after)
    .bind(new.scopes)
    .bind(new.account_id)
    .bind(new.extras)
    .bind(new.context)
    .bind(new.secrets.map(|(bytes, _)| bytes))
    .bind(new.secrets.map(|(_, key_id)| key_id))
    .bind(new.expires_at)
    .execute(pool)
    .await?;
    Ok(())
}

macro_rules! session_columns {
    () => {
        "provider, workspace_id, redirect_after, scopes, account_id, extras, context, secrets, \
         secrets_key_id, choice"
    };
}

/// Consumes a state: the first caller gets the session, every later one
/// learns why not. Single use holds across replicas: the row lock orders
/// concurrent callers and the second sees `consumed_at` set.
pub async fn take(pool: &PgPool, state_hash: &[u8]) -> Result<Taken, sqlx::Error> {
    let fresh: Option<SessionRow> = sqlx::query_as(concat!(
        "UPDATE connect_sessions SET consumed_at = now() \
         WHERE state_hash = $1 AND consumed_at IS NULL AND expires_at > now() \
         RETURNING ",
        session_columns!()
    ))
    .bind(state_hash)
    .fetch_optional(pool)
    .await?;
    if let Some(row) = fresh {
        return Ok(Taken::Fresh(Box::new(row)));
    }
    why_not(pool, state_hash).await
}

async fn why_not(pool: &PgPool, state_hash: &[u8]) -> Result<Taken, sqlx::Error> {
    let found: Option<(bool, bool)> = sqlx::query_as(
        "SELECT consumed_at IS NOT NULL, expires_at <= now() \
         FROM connect_sessions WHERE state_hash = $1",
    )
    .bind(state_hash)
    .fetch_optional(pool)
    .await?;
    Ok(match found {
        None => Taken::Unknown,
        Some((true, _)) => Taken::Reused,
        Some((false, _)) => Taken::Expired,
    })
}

/// Keeps the choice the user must make (and the secrets it needs) with a
/// consumed session.
pub async fn save_choice(
    pool: &PgPool,
    state_hash: &[u8],
    choice: &serde_json::Value,
    secrets: (&[u8], &str),
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE connect_sessions SET choice = $2, secrets = $3, secrets_key_id = $4 \
         WHERE state_hash = $1",
    )
    .bind(state_hash)
    .bind(choice)
    .bind(secrets.0)
    .bind(secrets.1)
    .execute(pool)
    .await?;
    Ok(())
}

/// A pending choice, read without taking it: what the user may choose.
pub async fn pending_choice(
    pool: &PgPool,
    state_hash: &[u8],
) -> Result<Option<serde_json::Value>, sqlx::Error> {
    sqlx::query_scalar(
        "SELECT choice FROM connect_sessions \
         WHERE state_hash = $1 AND choice IS NOT NULL AND chosen_at IS NULL \
           AND expires_at > now()",
    )
    .bind(state_hash)
    .fetch_optional(pool)
    .await
}

/// Takes a pending choice, once, before the session expires.
pub async fn take_choice(pool: &PgPool, state_hash: &[u8]) -> Result<Taken, sqlx::Error> {
    let fresh: Option<SessionRow> = sqlx::query_as(concat!(
        "UPDATE connect_sessions SET chosen_at = now() \
         WHERE state_hash = $1 AND choice IS NOT NULL AND chosen_at IS NULL \
           AND expires_at > now() \
         RETURNING ",
        session_columns!()
    ))
    .bind(state_hash)
    .fetch_optional(pool)
    .await?;
    if let Some(row) = fresh {
        return Ok(Taken::Fresh(Box::new(row)));
    }
    let found: Option<(bool, bool, bool)> = sqlx::query_as(
        "SELECT choice IS NOT NULL, chosen_at IS NOT NULL, expires_at <= now() \
         FROM connect_sessions WHERE state_hash = $1",
    )
    .bind(state_hash)
    .fetch_optional(pool)
    .await?;
    Ok(match found {
        None | Some((false, _, _)) => Taken::Unknown,
        Some((true, true, _)) => Taken::Reused,
        Some((true, false, _)) => Taken::Expired,
    })
}

/// An app registered on a user's server.
#[derive(Debug, sqlx::FromRow)]
pub struct AppRow {
    pub client_id: String,
    pub client_secret: Vec<u8>,
    pub client_secret_key_id: String,
}

/// The key of an app registration: one per server, callback and scope set.
pub struct AppKey<'a> {
    pub provider: &'a str,
    pub origin: &'a str,
    pub redirect_uri: &'a str,
    pub scopes: &'a str,
}

pub async fn find_app(pool: &PgPool, key: &AppKey<'_>) -> Result<Option<AppRow>, sqlx::Error> {
    sqlx::query_as(
        "SELECT client_id, client_secret, client_secret_key_id FROM connect_apps \
         WHERE provider = $1 AND origin = $2 AND redirect_uri = $3 AND scopes = $4",
    )
    .bind(key.provider)
    .bind(key.origin)
    .bind(key.redirect_uri)
    .bind(key.scopes)
    .fetch_optional(pool)
    .await
}

/// Stores a new registration unless another replica stored one first; the
/// one stored is returned either way, so every replica uses the same app.
pub async fn save_app(
    pool: &PgPool,
    key: &AppKey<'_>,
    app: &AppRow,
) -> Result<AppRow, sqlx::Error> {
    sqlx::query(
        "INSERT INTO connect_apps (provider, origin, redirect_uri, scopes, client_id, \
         client_secret, client_secret_key_id) VALUES ($1, $2, $3, $4, $5, $6, $7) \
         ON CONFLICT DO NOTHING",
    )
    .bind(key.provider)
    .bind(key.origin)
    .bind(key.redirect_uri)
    .bind(key.scopes)
    .bind(&app.client_id)
    .bind(&app.client_secret)
    .bind(&app.client_secret_key_id)
    .execute(pool)
    .await?;
    find_app(pool, key)
        .await?
        .ok_or_else(|| sqlx::Error::RowNotFound)
}

/// Forgets an app its server no longer knows, so the next start registers
/// a new one. Only the app named is removed: another replica may already
/// have replaced it.
pub async fn drop_app(
    pool: &PgPool,
    key: &AppKey<'_>,
    client_id: &str,
) -> Result<bool, sqlx::Error> {
    let removed = sqlx::query(
        "DELETE FROM connect_apps \
         WHERE provider = $1 AND origin = $2 AND redirect_uri = $3 AND scopes = $4 \
           AND client_id = $5",
    )
    .bind(key.provider)
    .bind(key.origin)
    .bind(key.redirect_uri)
    .bind(key.scopes)
    .bind(client_id)
    .execute(pool)
    .await?;
    Ok(removed.rows_affected() > 0)
}
