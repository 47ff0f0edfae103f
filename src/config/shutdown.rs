//! `[shutdown]`: the grace given to refreshes in flight.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::ConfigError;
use super::checks::{POSITIVE, duration_at_least};

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct ShutdownSettings {
    /// How long refreshes in flight may take to finish after SIGTERM.
    #[serde(with = "humantime_serde")]
    pub grace: Duration,
}

impl Default for ShutdownSettings {
    fn default() -> Self {
        Self {
            grace: Duration::from_secs(60),
        }
    }
}

impl ShutdownSettings {
    /// The grace against the refresh lease is checked in `Settings`.
    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        duration_at_least("shutdown.grace", self.grace, POSITIVE)
    }
}
