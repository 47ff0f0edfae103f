//! PostgreSQL: the source of truth. One module per aggregate; every query is
//! checked at run time so a fresh clone builds without a database.

pub mod accounts;
pub mod attempts;
pub mod batch;
pub mod census;
pub mod events;
pub mod gate_states;
pub mod keys;
pub mod refresh;
pub mod scheduling;

use secrecy::ExposeSecret;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{ConnectOptions, PgPool};

use crate::config::DatabaseSettings;

pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

/// Connection options from the configured URL, optionally scoped to a schema
/// (the demo and the tests each work in a schema of their own).
pub fn connect_options(
    settings: &DatabaseSettings,
    schema: Option<&str>,
) -> Result<PgConnectOptions, sqlx::Error> {
    let url = settings
        .url
        .as_ref()
        .ok_or_else(|| sqlx::Error::Configuration("database.url is not set".into()))?;
    // The URL may carry a password: report only that it failed to parse.
    let mut options: PgConnectOptions = url.expose_secret().parse().map_err(|_| {
        sqlx::Error::Configuration("database.url is not a valid PostgreSQL URL".into())
    })?;
    if let Some(schema) = schema {
        options = options.options([("search_path", schema)]);
    }
    Ok(options.log_statements(tracing::log::LevelFilter::Trace))
}

pub async fn connect(
    settings: &DatabaseSettings,
    schema: Option<&str>,
) -> Result<PgPool, sqlx::Error> {
    PgPoolOptions::new()
        .max_connections(settings.max_connections)
        .acquire_timeout(settings.acquire_timeout)
        .connect_with(connect_options(settings, schema)?)
        .await
}

pub async fn migrate(pool: &PgPool) -> Result<(), sqlx::migrate::MigrateError> {
    MIGRATOR.run(pool).await
}
