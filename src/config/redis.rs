//! `[redis]`: the refresh queue.

use std::path::PathBuf;
use std::time::Duration;

use secrecy::SecretString;
use serde::{Deserialize, Serialize};

use super::ConfigError;
use super::checks::{POSITIVE, duration_at_least};

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct RedisSettings {
    /// Secret: may carry a password.
    #[serde(skip_serializing)]
    pub url: Option<SecretString>,
    pub url_file: Option<PathBuf>,
    /// The queue's name; keep the braces so every key of the queue hashes to
    /// one Redis Cluster slot.
    pub queue: String,
    #[serde(with = "humantime_serde")]
    pub response_timeout: Duration,
}

impl Default for RedisSettings {
    fn default() -> Self {
        Self {
            url: Some(SecretString::from("redis://127.0.0.1:6379")),
            url_file: None,
            queue: "{tokenwarden}:refresh".to_owned(),
            response_timeout: Duration::from_secs(5),
        }
    }
}

impl RedisSettings {
    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        duration_at_least("redis.response_timeout", self.response_timeout, POSITIVE)?;
        if self.url.is_none() {
            return Err(ConfigError::invalid(
                "redis.url",
                "is required (or redis.url_file)",
            ));
        }
        if self.queue.trim().is_empty() {
            return Err(ConfigError::invalid("redis.queue", "must not be empty"));
        }
        Ok(())
    }
}
