//! `[engine]`: refresh leases, single flight and retry backoff.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::ConfigError;
use super::checks::{POSITIVE, duration_at_least};

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct EngineSettings {
    /// Names this process in leases; empty: host name, pid and a random suffix.
    pub instance_name: String,
    /// How much longer than `http.request_timeout` a refresh lease lasts.
    #[serde(with = "humantime_serde")]
    pub lease_margin: Duration,
    /// How long a caller waits for a refresh already in flight elsewhere.
    #[serde(with = "humantime_serde")]
    pub single_flight_wait: Duration,
    #[serde(with = "humantime_serde")]
    pub retry_base: Duration,
    #[serde(with = "humantime_serde")]
    pub retry_cap: Duration,
}

impl Default for EngineSettings {
    fn default() -> Self {
        Self {
            instance_name: String::new(),
            lease_margin: Duration::from_secs(15),
            single_flight_wait: Duration::from_secs(60),
            retry_base: Duration::from_secs(30),
            retry_cap: Duration::from_secs(3600),
        }
    }
}

impl EngineSettings {
    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        // The lease has to outlive the HTTP timeout by something.
        duration_at_least(
            "engine.lease_margin",
            self.lease_margin,
            Duration::from_secs(1),
        )?;
        duration_at_least(
            "engine.single_flight_wait",
            self.single_flight_wait,
            POSITIVE,
        )?;
        duration_at_least("engine.retry_base", self.retry_base, POSITIVE)?;
        duration_at_least("engine.retry_cap", self.retry_cap, POSITIVE)?;
        if self.retry_cap < self.retry_base {
            return Err(ConfigError::invalid(
                "engine.retry_cap",
                "must not be below engine.retry_base",
            ));
        }
        Ok(())
    }
}
