//! `[database]`: the PostgreSQL pool.

use std::path::PathBuf;
use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};

use super::ConfigError;
use super::checks::{POSITIVE, duration_at_least, whole_number};
use super::tls::{check_certificates, check_client_pair, check_private_key};

/// The `sslmode` values of libpq, weakest first.
pub const SSL_MODES: [&str; 6] = [
    "disable",
    "allow",
    "prefer",
    "require",
    "verify-ca",
    "verify-full",
];

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct DatabaseSettings {
    #[serde(skip_serializing)]
    pub url: Option<SecretString>,
    pub url_file: Option<PathBuf>,
    pub max_connections: u32,
    #[serde(with = "humantime_serde")]
    pub acquire_timeout: Duration,
    pub migrate_on_start: bool,
    /// PEM CA certificates the server's certificate must chain to (with
    /// `sslmode=verify-ca` or `verify-full` in the URL).
    pub ssl_root_cert: Option<String>,
    pub ssl_root_cert_file: Option<PathBuf>,
    /// PEM client certificate, for servers that ask for one.
    pub ssl_client_cert: Option<String>,
    pub ssl_client_cert_file: Option<PathBuf>,
    /// Secret: the client certificate's PEM private key.
    #[serde(skip_serializing)]
    pub ssl_client_key: Option<SecretString>,
    pub ssl_client_key_file: Option<PathBuf>,
}

impl Default for DatabaseSettings {
    fn default() -> Self {
        Self {
            url: Some(SecretString::from(
                "postgres://tokenwarden@127.0.0.1:5432/tokenwarden",
            )),
            url_file: None,
            max_connections: 16,
            acquire_timeout: Duration::from_secs(5),
            migrate_on_start: true,
            ssl_root_cert: None,
            ssl_root_cert_file: None,
            ssl_client_cert: None,
            ssl_client_cert_file: None,
            ssl_client_key: None,
            ssl_client_key_file: None,
        }
    }
}

impl DatabaseSettings {
    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        whole_number("database.max_connections", self.max_connections, 1, 10_000)?;
        duration_at_least("database.acquire_timeout", self.acquire_timeout, POSITIVE)?;
        let Some(url) = &self.url else {
            return Err(ConfigError::invalid(
                "database.url",
                "is required (or database.url_file)",
            ));
        };
        ssl_mode_in_url(url.expose_secret())?;
        check_certificates("database.ssl_root_cert", self.ssl_root_cert.as_deref())?;
        check_certificates("database.ssl_client_cert", self.ssl_client_cert.as_deref())?;
        check_private_key("database.ssl_client_key", self.ssl_client_key.as_ref())?;
        check_client_pair(
            "database.ssl_client_cert",
            self.ssl_client_cert.is_some(),
            "database.ssl_client_key",
            self.ssl_client_key.is_some(),
        )
    }

    /// The `sslmode` the URL asks for, if it names one.
    pub fn ssl_mode(&self) -> Option<&'static str> {
        self.url
            .as_ref()
            .and_then(|url| ssl_mode_in_url(url.expose_secret()).ok().flatten())
    }

    /// A CA given while the URL's mode does not check the server's
    /// certificate protects nothing: worth a warning.
    pub(super) fn warnings(&self) -> Vec<String> {
        let verifies = matches!(self.ssl_mode(), Some("verify-ca" | "verify-full"));
        if self.ssl_root_cert.is_some() && !verifies {
            vec![format!(
                "database.ssl_root_cert is set but database.url has sslmode={}: the server's \
                 certificate is not checked against it (use sslmode=verify-full)",
                self.ssl_mode().unwrap_or("prefer (the default)")
            )]
        } else {
            Vec::new()
        }
    }
}

/// The URL's `sslmode` (or sqlx's spelling `ssl-mode`), checked against the
/// libpq values. The URL may hold a password: errors name only the mode.
fn ssl_mode_in_url(url: &str) -> Result<Option<&'static str>, ConfigError> {
    let Ok(parsed) = url::Url::parse(url) else {
        return Err(ConfigError::invalid(
            "database.url",
            "is not a valid URL (expected postgres://user@host:port/database?sslmode=...)",
        ));
    };
    let mut mode = None;
    for (name, value) in parsed.query_pairs() {
        if name == "sslmode" || name == "ssl-mode" {
            let value = value.to_ascii_lowercase();
            let Some(known) = SSL_MODES.iter().find(|m| **m == value) else {
                return Err(ConfigError::invalid(
                    "database.url",
                    format!("sslmode={value:?} is not one of {}", SSL_MODES.join(", ")),
                ));
            };
            mode = Some(*known);
        }
    }
    Ok(mode)
}
