//! `[circuit]`: when a failing provider is paused, and for how long.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::ConfigError;
use super::checks::{POSITIVE, duration_at_least, fraction, whole_number};

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct CircuitSettings {
    /// Outcomes remembered per provider.
    pub window: usize,
    /// The provider pauses when this share of the window failed...
    pub failure_ratio: f64,
    /// ...once at least this many calls are in the window.
    pub min_calls: usize,
    /// How long a paused provider rests before one probe call.
    #[serde(with = "humantime_serde")]
    pub cooldown: Duration,
    /// An app-level answer (`invalid_client`, ...) pauses the provider only
    /// once this many distinct accounts got one within `app_error_window`:
    /// one account's answer is evidence about its grant, not the app.
    pub app_error_accounts: usize,
    #[serde(with = "humantime_serde")]
    pub app_error_window: Duration,
}

impl Default for CircuitSettings {
    fn default() -> Self {
        Self {
            window: 50,
            failure_ratio: 0.5,
            min_calls: 20,
            cooldown: Duration::from_secs(30),
            app_error_accounts: 3,
            app_error_window: Duration::from_secs(15 * 60),
        }
    }
}

impl CircuitSettings {
    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        whole_number("circuit.window", self.window, 1, 100_000)?;
        fraction("circuit.failure_ratio", self.failure_ratio)?;
        whole_number("circuit.min_calls", self.min_calls, 1, 100_000)?;
        duration_at_least("circuit.cooldown", self.cooldown, POSITIVE)?;
        whole_number(
            "circuit.app_error_accounts",
            self.app_error_accounts,
            1,
            100_000,
        )?;
        duration_at_least("circuit.app_error_window", self.app_error_window, POSITIVE)?;
        if self.min_calls > self.window {
            return Err(ConfigError::invalid(
                "circuit.min_calls",
                "must be between 1 and circuit.window",
            ));
        }
        Ok(())
    }
}
