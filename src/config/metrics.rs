//! `[metrics]`: how often the account-state gauges are computed.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::ConfigError;
use super::checks::{POSITIVE, duration_at_least};

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct MetricsSettings {
    /// How often the account-state gauges are computed from PostgreSQL.
    #[serde(with = "humantime_serde")]
    pub state_interval: Duration,
    /// An account whose planned refresh is this far in the past, unclaimed,
    /// counts as overdue.
    #[serde(with = "humantime_serde")]
    pub overdue_after: Duration,
}

impl Default for MetricsSettings {
    fn default() -> Self {
        Self {
            state_interval: Duration::from_secs(15),
            overdue_after: Duration::from_secs(300),
        }
    }
}

impl MetricsSettings {
    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        duration_at_least("metrics.state_interval", self.state_interval, POSITIVE)?;
        duration_at_least("metrics.overdue_after", self.overdue_after, Duration::ZERO)?;
        Ok(())
    }
}
