//! `[api]`: the HTTP API's listeners, keys and connection limits.

use std::path::PathBuf;
use std::time::Duration;

use secrecy::SecretString;
use serde::{Deserialize, Serialize};

use super::ConfigError;
use super::secrets::api_keys;

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct ApiSettings {
    /// Where the HTTP API (and, unless `metrics_listen` is set, `/metrics`)
    /// listens.
    pub listen: String,
    /// A separate address for `/metrics`, `/healthz` and `/readyz`; empty:
    /// served on `listen`.
    pub metrics_listen: String,
    /// Bearer API keys, comma-separated; any one is accepted, so keys can
    /// rotate. Secret.
    #[serde(skip_serializing)]
    pub keys: Option<SecretString>,
    pub keys_file: Option<PathBuf>,
    /// Larger request bodies are refused with 413.
    pub max_body_bytes: usize,
    /// Forced refreshes of one account closer together than this get 429.
    #[serde(with = "humantime_serde")]
    pub force_refresh_min_interval: Duration,
    /// A new connection, or one that started sending a request, must have
    /// sent the whole request head within this; otherwise it is closed.
    #[serde(with = "humantime_serde")]
    pub header_read_timeout: Duration,
    /// A kept-alive connection with no request for this long is closed.
    #[serde(with = "humantime_serde")]
    pub idle_timeout: Duration,
    /// Connections served at once per listener; further ones wait to be
    /// accepted until one closes.
    pub max_connections: usize,
}

impl Default for ApiSettings {
    fn default() -> Self {
        Self {
            listen: "0.0.0.0:8080".to_owned(),
            metrics_listen: String::new(),
            keys: None,
            keys_file: None,
            max_body_bytes: 64 * 1024,
            force_refresh_min_interval: Duration::from_secs(10),
            header_read_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
            max_connections: 1024,
        }
    }
}

impl ApiSettings {
    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        for (key, value) in [
            ("api.listen", &self.listen),
            ("api.metrics_listen", &self.metrics_listen),
        ] {
            if (key == "api.listen" || !value.is_empty())
                && value.parse::<std::net::SocketAddr>().is_err()
            {
                return Err(ConfigError::invalid(
                    key,
                    format!("{value:?} is not an address like 0.0.0.0:8080"),
                ));
            }
        }
        if let Some(keys) = &self.keys {
            let keys = api_keys(keys);
            if keys.is_empty() {
                return Err(ConfigError::invalid("api.keys", "holds no key"));
            }
            if keys.iter().any(|k| k.len() < 16) {
                return Err(ConfigError::invalid(
                    "api.keys",
                    "every key must be at least 16 characters",
                ));
            }
        }
        if !(1024..=64 * 1024 * 1024).contains(&self.max_body_bytes) {
            return Err(ConfigError::invalid(
                "api.max_body_bytes",
                "must be between 1024 and 67108864",
            ));
        }
        // Beyond a day the limit is a typo, and its Retry-After absurd.
        if self.force_refresh_min_interval > Duration::from_secs(86_400) {
            return Err(ConfigError::invalid(
                "api.force_refresh_min_interval",
                "must be at most 1 day",
            ));
        }
        for (key, value) in [
            ("api.header_read_timeout", self.header_read_timeout),
            ("api.idle_timeout", self.idle_timeout),
        ] {
            if value < Duration::from_millis(100) || value > Duration::from_secs(3600) {
                return Err(ConfigError::invalid(key, "must be between 100ms and 1h"));
            }
        }
        if !(1..=1_000_000).contains(&self.max_connections) {
            return Err(ConfigError::invalid(
                "api.max_connections",
                "must be between 1 and 1000000",
            ));
        }
        Ok(())
    }
}
