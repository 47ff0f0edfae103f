//! PostgreSQL: the source of truth. One module per aggregate; every query is
//! checked at run time so a fresh clone builds without a database.

pub mod accounts;
pub mod attempts;
pub mod batch;
pub mod bulk;
pub mod census;
pub mod connect;
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

/// The statements that read or write a batch of accounts, by name. Their
/// plans must stay keyed lookups whatever the batch's size: a prepared
/// statement settles on a generic plan that estimates every array at ten
/// elements, and a nested loop that rescans one row set per row of another
/// is quadratic in the batch (the plan-shape test checks these).
pub fn batch_statements() -> [(&'static str, &'static str); 6] {
    [
        ("claim_due", scheduling::CLAIM_DUE),
        ("release_claims", scheduling::RELEASE_CLAIMS),
        ("release_lost_claims", scheduling::RELEASE_LOST_CLAIMS),
        ("sweep_expired", scheduling::SWEEP_EXPIRED),
        ("acquire_leases", refresh::ACQUIRE_LEASES),
        ("commit_refreshed", refresh::COMMIT_REFRESHED),
    ]
}

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
    if let Some(pem) = &settings.ssl_root_cert {
        options = options.ssl_root_cert_from_pem(pem.as_bytes().to_vec());
    }
    if let Some(pem) = &settings.ssl_client_cert {
        options = options.ssl_client_cert_from_pem(pem.as_bytes());
    }
    if let Some(pem) = &settings.ssl_client_key {
        options = options.ssl_client_key_from_pem(pem.expose_secret().as_bytes());
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
        .map_err(explain_tls)
}

/// A failed TLS handshake says what to check; the rustls reason (an unknown
/// issuer, a name mismatch, an expired certificate) carries no secret.
pub fn explain_tls(error: sqlx::Error) -> sqlx::Error {
    match tls_reason(&error) {
        Some(reason) => sqlx::Error::Configuration(
            format!(
                "TLS to PostgreSQL failed: {reason} (check database.ssl_root_cert and the sslmode in \
                 database.url)"
            )
            .into(),
        ),
        None => error,
    }
}

/// The TLS reason in a connection error: sqlx reports a rejected
/// certificate during the handshake as an I/O error carrying rustls's
/// message, and a bad local certificate as a TLS error.
fn tls_reason(error: &sqlx::Error) -> Option<String> {
    match error {
        sqlx::Error::Tls(reason) => Some(reason.to_string()),
        sqlx::Error::Io(io) => {
            let text = io.to_string();
            let lowered = text.to_ascii_lowercase();
            ["certificate", "handshake", "alert", "tls"]
                .iter()
                .any(|word| lowered.contains(word))
                .then_some(text)
        }
        _ => None,
    }
}

/// Why a fresh connection cannot be made right now, in words for `/readyz`:
/// the pool alone only says it timed out.
pub async fn diagnose(options: &PgConnectOptions) -> String {
    use sqlx::Connection;
    match sqlx::PgConnection::connect_with(options).await {
        Ok(conn) => {
            let _ = conn.close().await;
            "ok".to_owned()
        }
        Err(error) => match (tls_reason(&error), error) {
            (Some(reason), _) => format!("TLS failed: {reason}"),
            (None, sqlx::Error::Database(e)) => format!(
                "refused by the server (SQLSTATE {})",
                e.code().as_deref().unwrap_or("unknown")
            ),
            (None, _) => "unreachable".to_owned(),
        },
    }
}

pub async fn migrate(pool: &PgPool) -> Result<(), sqlx::migrate::MigrateError> {
    MIGRATOR.run(pool).await
}
