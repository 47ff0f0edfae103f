//! `[scheduler]`: the scans that claim due accounts and sweep expired ones.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::ConfigError;
use super::checks::{POSITIVE, duration_at_least, whole_number};

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct SchedulerSettings {
    /// Time between scans for due accounts.
    #[serde(with = "humantime_serde")]
    pub interval: Duration,
    /// Accounts claimed per transaction.
    pub batch_size: i64,
    /// Upper bound on claimed accounts whose job has not finished.
    pub max_outstanding: i64,
    /// A claim whose job has not finished by then is claimed again.
    #[serde(with = "humantime_serde")]
    pub claim_timeout: Duration,
    /// Accounts moved to TOKEN_EXPIRED per sweep statement.
    pub sweep_batch_size: i64,
}

impl Default for SchedulerSettings {
    fn default() -> Self {
        Self {
            interval: Duration::from_secs(1),
            batch_size: 500,
            max_outstanding: 4_000,
            claim_timeout: Duration::from_secs(120),
            sweep_batch_size: 1_000,
        }
    }
}

impl SchedulerSettings {
    /// Its claim timeout against the refresh lease is checked in `Settings`.
    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        duration_at_least("scheduler.interval", self.interval, POSITIVE)?;
        whole_number("scheduler.batch_size", self.batch_size, 1, 100_000)?;
        whole_number(
            "scheduler.max_outstanding",
            self.max_outstanding,
            1,
            10_000_000,
        )?;
        duration_at_least("scheduler.claim_timeout", self.claim_timeout, POSITIVE)?;
        whole_number(
            "scheduler.sweep_batch_size",
            self.sweep_batch_size,
            1,
            100_000,
        )?;
        Ok(())
    }
}
