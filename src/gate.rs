//! Per-provider admission for workers: a concurrency cap, a token-bucket
//! rate limit, and a circuit breaker. A provider that answers with app-level
//! errors, or fails too often, is paused; while paused its accounts are
//! postponed, never marked (their status is not the user's problem).

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;

use crate::config::{CircuitSettings, Settings};
use crate::domain::{Outcome, Provider};
use crate::engine::RefreshReport;

pub struct ProviderGates {
    gates: HashMap<Provider, Gate>,
    circuit: CircuitSettings,
}

struct Gate {
    in_flight: Arc<Semaphore>,
    rate_per_second: f64,
    state: Mutex<GateState>,
}

struct GateState {
    tokens: f64,
    refilled: Instant,
    recent: VecDeque<bool>,
    /// Paused until then (circuit open, or the platform's rate-limit reset).
    paused_until: Option<Instant>,
    /// After a pause, one probe call decides; a probe that never reports
    /// (its job was cancelled or superseded) is forgotten after a cooldown.
    probe_started: Option<Instant>,
    /// The latest verdict was an app-level error (cleared by a success).
    config_error: bool,
}

pub enum Admission {
    /// Go ahead; hold the permit for the duration of the call.
    Go(OwnedSemaphorePermit),
    /// The provider is paused; try the account again after this long.
    Paused { retry_in: Duration },
}

impl ProviderGates {
    pub fn from_settings(settings: &Settings) -> Self {
        let gates = Provider::ALL
            .iter()
            .map(|p| {
                let section = settings.providers.get(*p);
                let gate = Gate {
                    in_flight: Arc::new(Semaphore::new(section.max_concurrency)),
                    rate_per_second: section.rate_per_second,
                    state: Mutex::new(GateState {
                        tokens: section.rate_per_second.max(1.0),
                        refilled: Instant::now(),
                        recent: VecDeque::new(),
                        paused_until: None,
                        probe_started: None,
                        config_error: false,
                    }),
                };
                (*p, gate)
            })
            .collect();
        Self {
            gates,
            circuit: settings.circuit.clone(),
        }
    }

    /// Waits for a concurrency slot and a rate token, unless the provider is paused.
    pub async fn admit(&self, provider: Provider) -> Admission {
        let gate = &self.gates[&provider];
        if let Some(retry_in) = self.paused(gate) {
            return Admission::Paused { retry_in };
        }
        let permit = gate
            .in_flight
            .clone()
            .acquire_owned()
            .await
            .expect("gate semaphores are never closed");
        loop {
            let wait = {
                let mut state = gate.state.lock().expect("gate poisoned");
                let now = Instant::now();
                let burst = gate.rate_per_second.max(1.0);
                state.tokens = (state.tokens
                    + (now - state.refilled).as_secs_f64() * gate.rate_per_second)
                    .min(burst);
                state.refilled = now;
                if state.tokens >= 1.0 {
                    state.tokens -= 1.0;
                    None
                } else {
                    Some(Duration::from_secs_f64(
                        (1.0 - state.tokens) / gate.rate_per_second,
                    ))
                }
            };
            match wait {
                None => break,
                Some(wait) => tokio::time::sleep(wait).await,
            }
        }
        // A pause may have begun while this call waited.
        let paused_meanwhile = {
            let state = gate.state.lock().expect("gate poisoned");
            state
                .paused_until
                .and_then(|until| until.checked_duration_since(Instant::now()))
        };
        if let Some(retry_in) = paused_meanwhile {
            return Admission::Paused { retry_in };
        }
        Admission::Go(permit)
    }

    fn paused(&self, gate: &Gate) -> Option<Duration> {
        let mut state = gate.state.lock().expect("gate poisoned");
        let until = state.paused_until?;
        let now = Instant::now();
        if now < until {
            return Some(until - now);
        }
        if state
            .probe_started
            .is_some_and(|at| now - at < self.circuit.cooldown)
        {
            // A probe is out: everyone else waits for its verdict.
            return Some(self.circuit.cooldown.min(Duration::from_secs(5)));
        }
        state.probe_started = Some(now);
        None
    }

    /// Feeds a refresh's result back. A failure that was the account's own
    /// (`account_only`) says nothing about the platform: it neither counts
    /// towards the failure ratio nor pauses the provider; if it was a
    /// probe's, the next call probes instead.
    pub fn record_report(&self, report: &RefreshReport) {
        if report.account_only && !report.outcome.is_success() {
            let gate = &self.gates[&report.provider];
            gate.state.lock().expect("gate poisoned").probe_started = None;
            return;
        }
        let retry_after = report
            .retry_at
            .map(|at| (at - chrono::Utc::now()).to_std().unwrap_or_default());
        self.record(report.provider, report.outcome, retry_after);
    }

    /// Feeds an outcome back; `retry_after` is the platform's own reset.
    pub fn record(&self, provider: Provider, outcome: Outcome, retry_after: Option<Duration>) {
        let gate = &self.gates[&provider];
        let mut state = gate.state.lock().expect("gate poisoned");
        let now = Instant::now();
        let failed = matches!(
            outcome,
            Outcome::TransientError | Outcome::RateLimited | Outcome::ConfigError
        );
        if state.probe_started.take().is_some() {
            state.paused_until = failed.then(|| now + self.circuit.cooldown);
            state.recent.clear();
        }
        match outcome {
            Outcome::Refreshed | Outcome::Healthy => state.config_error = false,
            Outcome::ConfigError => {
                state.config_error = true;
                state.paused_until = Some(now + self.circuit.cooldown);
                tracing::error!(%provider, "provider paused: app-level error (check its client configuration)");
            }
            Outcome::RateLimited => {
                let until = now + retry_after.unwrap_or(self.circuit.cooldown);
                state.paused_until = Some(state.paused_until.map_or(until, |u| u.max(until)));
            }
            _ => {}
        }
        if matches!(outcome, Outcome::Skipped) {
            return;
        }
        state.recent.push_back(failed);
        while state.recent.len() > self.circuit.window {
            state.recent.pop_front();
        }
        let failures = state.recent.iter().filter(|f| **f).count();
        if state.recent.len() >= self.circuit.min_calls
            && failures as f64 >= self.circuit.failure_ratio * state.recent.len() as f64
            && state.paused_until.is_none_or(|u| u <= now)
        {
            state.paused_until = Some(now + self.circuit.cooldown);
            state.recent.clear();
            tracing::warn!(%provider, failures, "provider paused: failure ratio over threshold");
        }
    }

    /// Whether the provider's latest verdict was an app-level error.
    pub fn has_config_error(&self, provider: Provider) -> bool {
        let state = self.gates[&provider].state.lock().expect("gate poisoned");
        state.config_error
    }

    /// Whether the provider is paused now (for metrics and logs).
    pub fn is_paused(&self, provider: Provider) -> bool {
        let state = self.gates[&provider].state.lock().expect("gate poisoned");
        state.paused_until.is_some_and(|u| Instant::now() < u)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gates(cooldown_ms: u64) -> ProviderGates {
        let mut settings = Settings::default();
        settings.circuit.cooldown = Duration::from_millis(cooldown_ms);
        ProviderGates::from_settings(&settings)
    }

    #[tokio::test]
    async fn a_pause_ends_with_one_probe_whose_verdict_reopens_the_provider() {
        let gates = gates(100);
        gates.record(Provider::X, Outcome::ConfigError, None);
        assert!(matches!(
            gates.admit(Provider::X).await,
            Admission::Paused { .. }
        ));
        tokio::time::sleep(Duration::from_millis(120)).await;
        let probe = gates.admit(Provider::X).await;
        assert!(
            matches!(probe, Admission::Go(_)),
            "the probe is let through"
        );
        assert!(
            matches!(gates.admit(Provider::X).await, Admission::Paused { .. }),
            "one probe at a time"
        );
        gates.record(Provider::X, Outcome::Refreshed, None);
        assert!(
            matches!(gates.admit(Provider::X).await, Admission::Go(_)),
            "a good probe reopens"
        );
    }

    #[tokio::test]
    async fn a_probe_that_never_reports_is_forgotten() {
        let gates = gates(100);
        gates.record(Provider::X, Outcome::ConfigError, None);
        tokio::time::sleep(Duration::from_millis(120)).await;
        assert!(matches!(gates.admit(Provider::X).await, Admission::Go(_)));
        tokio::time::sleep(Duration::from_millis(120)).await;
        assert!(
            matches!(gates.admit(Provider::X).await, Admission::Go(_)),
            "a new probe after a cooldown"
        );
    }

    fn report(provider: Provider, outcome: Outcome, account_only: bool) -> RefreshReport {
        RefreshReport {
            account_id: crate::domain::AccountId::generate(),
            provider,
            trigger: crate::domain::Trigger::Scheduled,
            outcome,
            status: crate::domain::AccountStatus::Active,
            http_status: None,
            provider_error_code: None,
            message: None,
            retry_at: None,
            token_expires_at: None,
            joined: false,
            account_only,
        }
    }

    #[tokio::test]
    async fn an_accounts_own_failures_never_pause_the_platform() {
        let gates = gates(10_000);
        for _ in 0..50 {
            gates.record_report(&report(Provider::Mastodon, Outcome::TransientError, true));
            gates.record_report(&report(Provider::Mastodon, Outcome::RateLimited, true));
            gates.record_report(&report(Provider::Mastodon, Outcome::RejectedRevoked, false));
        }
        assert!(!gates.is_paused(Provider::Mastodon));
        // The window (50) holds the 50 rejections, answers the platform gave
        // properly; 30 platform failures out of 50 cross the ratio.
        for _ in 0..30 {
            gates.record_report(&report(Provider::Mastodon, Outcome::TransientError, false));
        }
        assert!(
            gates.is_paused(Provider::Mastodon),
            "platform-wide failures still do"
        );
    }

    #[tokio::test]
    async fn a_probe_ending_in_an_accounts_own_failure_lets_the_next_call_probe() {
        let gates = gates(100);
        gates.record(Provider::X, Outcome::ConfigError, None);
        tokio::time::sleep(Duration::from_millis(120)).await;
        assert!(matches!(gates.admit(Provider::X).await, Admission::Go(_)));
        gates.record_report(&report(Provider::X, Outcome::TransientError, true));
        assert!(
            matches!(gates.admit(Provider::X).await, Admission::Go(_)),
            "no verdict: the next call is the probe"
        );
    }

    #[tokio::test]
    async fn a_failure_ratio_over_the_threshold_pauses_only_that_provider() {
        let gates = gates(10_000);
        for _ in 0..20 {
            gates.record(Provider::X, Outcome::TransientError, None);
        }
        assert!(gates.is_paused(Provider::X));
        assert!(!gates.is_paused(Provider::Pinterest));
    }
}
