//! What one refresh (or health check) came to. The engine produces it; the
//! gate, the API and the workers read it, so it lives below all of them.

use chrono::{DateTime, Utc};
use serde::Serialize;

use super::{AccountId, AccountStatus, Outcome, Provider, Trigger};

/// The result of one refresh call, as callers (CLI, API, workers) see it.
#[derive(Clone, Debug, Serialize)]
pub struct RefreshReport {
    pub account_id: AccountId,
    pub provider: Provider,
    pub trigger: Trigger,
    pub outcome: Outcome,
    /// The account's status after the attempt.
    pub status: AccountStatus,
    pub http_status: Option<u16>,
    pub provider_error_code: Option<String>,
    pub message: Option<String>,
    /// When the daemon will try again after a failure.
    pub retry_at: Option<DateTime<Utc>>,
    pub token_expires_at: Option<DateTime<Utc>>,
    /// True when this caller waited for a refresh started by another caller
    /// and reports that refresh's result.
    pub joined: bool,
    /// The failure was this account's own (its instance, its throttle, its
    /// disabled login): it says nothing about the platform's health.
    pub account_only: bool,
    /// The platform's answer matched no row of its table: recorded
    /// verbatim, counted, never a status change or a platform pause.
    pub unrecognised: bool,
}

impl RefreshReport {
    pub fn succeeded(&self) -> bool {
        self.outcome.is_success()
    }
}
