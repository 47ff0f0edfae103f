//! `[database]`: the PostgreSQL pool.

use std::path::PathBuf;
use std::time::Duration;

use secrecy::SecretString;
use serde::{Deserialize, Serialize};

use super::ConfigError;
use super::checks::{POSITIVE, duration_at_least, whole_number};

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
        }
    }
}

impl DatabaseSettings {
    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        whole_number("database.max_connections", self.max_connections, 1, 10_000)?;
        duration_at_least("database.acquire_timeout", self.acquire_timeout, POSITIVE)?;
        if self.url.is_none() {
            return Err(ConfigError::invalid(
                "database.url",
                "is required (or database.url_file)",
            ));
        }
        Ok(())
    }
}
