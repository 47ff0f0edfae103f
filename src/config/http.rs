//! `[http]`: the client that calls the platforms.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::ConfigError;
use super::checks::{POSITIVE, duration_at_least, whole_number};

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct HttpSettings {
    #[serde(with = "humantime_serde")]
    pub connect_timeout: Duration,
    #[serde(with = "humantime_serde")]
    pub request_timeout: Duration,
    /// Whole-request timeout of refresh calls on platforms whose refresh
    /// tokens rotate: giving up early is what loses a grant.
    #[serde(with = "humantime_serde")]
    pub rotating_request_timeout: Duration,
    /// Pooled connections idle longer than this are not reused.
    #[serde(with = "humantime_serde")]
    pub pool_idle_timeout: Duration,
    pub max_response_bytes: usize,
    pub user_agent: String,
}

impl Default for HttpSettings {
    fn default() -> Self {
        Self {
            connect_timeout: Duration::from_secs(5),
            request_timeout: Duration::from_secs(20),
            rotating_request_timeout: Duration::from_secs(45),
            pool_idle_timeout: Duration::from_millis(500),
            max_response_bytes: 1024 * 1024,
            user_agent: concat!("tokenwarden/", env!("CARGO_PKG_VERSION")).to_owned(),
        }
    }
}

impl HttpSettings {
    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        duration_at_least("http.connect_timeout", self.connect_timeout, POSITIVE)?;
        duration_at_least("http.request_timeout", self.request_timeout, POSITIVE)?;
        duration_at_least(
            "http.rotating_request_timeout",
            self.rotating_request_timeout,
            POSITIVE,
        )?;
        duration_at_least("http.pool_idle_timeout", self.pool_idle_timeout, POSITIVE)?;
        whole_number(
            "http.max_response_bytes",
            self.max_response_bytes,
            1024,
            64 * 1024 * 1024,
        )?;
        if self.connect_timeout > self.request_timeout {
            return Err(ConfigError::invalid(
                "http.connect_timeout",
                "must not exceed http.request_timeout",
            ));
        }
        if reqwest::header::HeaderValue::from_str(&self.user_agent).is_err() {
            return Err(ConfigError::invalid(
                "http.user_agent",
                "must be printable ASCII (it is sent as a header)",
            ));
        }
        Ok(())
    }
}
