//! `[worker]`: the queue's consumers and their liveness.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::ConfigError;
use super::checks::{POSITIVE, duration, duration_at_least, whole_number};

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct WorkerSettings {
    /// Refreshes in flight per process.
    pub concurrency: usize,
    /// A job still running after this is abandoned (its lease then expires).
    #[serde(with = "humantime_serde")]
    pub job_timeout: Duration,
    /// How often an idle worker asks Redis for work.
    #[serde(with = "humantime_serde")]
    pub poll_interval: Duration,
    /// Worker liveness in Redis: jobs of a worker silent for
    /// heartbeat_interval x missed_heartbeats are handed to others.
    #[serde(with = "humantime_serde")]
    pub heartbeat_interval: Duration,
    pub missed_heartbeats: usize,
}

impl Default for WorkerSettings {
    fn default() -> Self {
        Self {
            concurrency: 256,
            job_timeout: Duration::from_secs(90),
            poll_interval: Duration::from_millis(200),
            heartbeat_interval: Duration::from_secs(5),
            missed_heartbeats: 3,
        }
    }
}

impl WorkerSettings {
    /// Its job timeout against the refresh lease is checked in `Settings`.
    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        whole_number("worker.concurrency", self.concurrency, 1, 100_000)?;
        duration_at_least("worker.job_timeout", self.job_timeout, POSITIVE)?;
        duration_at_least("worker.poll_interval", self.poll_interval, POSITIVE)?;
        // Multiplied by missed_heartbeats for the liveness deadline.
        duration(
            "worker.heartbeat_interval",
            self.heartbeat_interval,
            POSITIVE,
            Duration::from_secs(3600),
        )?;
        whole_number("worker.missed_heartbeats", self.missed_heartbeats, 1, 1_000)?;
        Ok(())
    }
}
