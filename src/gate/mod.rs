//! Per-provider admission for workers: a concurrency cap, a token-bucket
//! rate limit, and a circuit breaker. Only evidence about the platform or
//! the app pauses a provider: an app-level answer (`invalid_client`, ...)
//! seen on `circuit.app_error_accounts` distinct accounts within
//! `circuit.app_error_window`, a failure ratio over distinct accounts, or the
//! platform's own rate-limit reset. An account's own answers (its throttle,
//! its disabled login, an answer the daemon does not recognise) never do.
//! While paused, accounts are postponed, never marked.
//!
//! The gate's state sits behind std mutexes held only for arithmetic that
//! cannot panic (checked time arithmetic, a bucket that tolerates any rate),
//! and a poisoned lock is recovered: the gate never takes the process down.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::config::{CircuitSettings, Settings};
use crate::domain::{AccountId, Outcome, Provider, RefreshReport};
use crate::metrics;

/// No pause, wait or window reaches further than this: a platform's absurd
/// reset, or a setting, cannot overflow the clock.
const MAX_SPAN: Duration = Duration::from_secs(7 * 24 * 3600);

/// Publishes every platform's gate state as gauges every few seconds until
/// `stop` (a pause ends by time, not by an event, so it is sampled).
pub async fn publish_gauges(gates: Arc<ProviderGates>, stop: CancellationToken) {
    let mut tick = tokio::time::interval(Duration::from_secs(5));
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tick.tick() => {}
        }
        for provider in Provider::ALL {
            metrics::record_gate_state(
                *provider,
                gates.is_paused(*provider),
                gates.has_config_error(*provider),
            );
        }
    }
}

/// Every few seconds until `stop`: applies operators' resume requests made
/// since this process started, then reports every platform's breaker to
/// PostgreSQL under `instance`, where the console reads it.
pub async fn share_state(
    gates: Arc<ProviderGates>,
    pool: sqlx::PgPool,
    instance: String,
    stop: CancellationToken,
) {
    let mut seen = None;
    let mut tick = tokio::time::interval(Duration::from_secs(5));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tick.tick() => {}
        }
        if let Err(e) = share_once(&gates, &pool, &instance, &mut seen).await {
            tracing::warn!(error = %e, "circuit-breaker state not shared");
        }
    }
}

/// One round of [`share_state`]; `seen` is the newest resume request
/// applied (None before the first round).
pub async fn share_once(
    gates: &ProviderGates,
    pool: &sqlx::PgPool,
    instance: &str,
    seen: &mut Option<i64>,
) -> Result<(), sqlx::Error> {
    use crate::store::gate_states;
    match *seen {
        None => *seen = Some(gate_states::latest_resume_id(pool).await?),
        Some(after) => {
            for request in gate_states::resumes_after(pool, after).await? {
                *seen = Some(request.id);
                if let Ok(provider) = request.provider.parse::<Provider>() {
                    gates.resume(provider);
                    tracing::info!(%provider, operator_key_id = %request.operator_key_id, "provider resumed by an operator");
                }
            }
        }
    }
    let now = chrono::Utc::now();
    let reports: Vec<gate_states::GateReport> = Provider::ALL
        .iter()
        .map(|p| {
            let snapshot = gates.snapshot(*p);
            gate_states::GateReport {
                provider: p.as_str(),
                paused_until: snapshot
                    .paused_for
                    .and_then(|d| chrono::TimeDelta::from_std(d).ok())
                    .map(|d| now + d),
                pause_reason: snapshot.reason,
                config_error: snapshot.config_error,
            }
        })
        .collect();
    gate_states::report(pool, instance, &reports).await
}

pub struct ProviderGates {
    gates: HashMap<Provider, Gate>,
    circuit: CircuitSettings,
}

struct Gate {
    in_flight: Arc<Semaphore>,
    /// Tokens per second; None when the setting is not a positive finite
    /// number (validation refuses those; the gate then does not limit).
    rate_per_second: Option<f64>,
    state: Mutex<GateState>,
}

/// Who an outcome is about: an account, or nobody known (each such outcome
/// counts as one account of its own).
#[derive(Clone, PartialEq, Eq, Hash)]
enum Who {
    Account(AccountId),
    Anonymous(u64),
}

struct GateState {
    tokens: f64,
    refilled: Instant,
    /// The latest outcomes, oldest first: whether each failed, and whose.
    recent: VecDeque<(Who, bool)>,
    /// App-level answers within the window, oldest first.
    app_errors: VecDeque<(Who, Instant)>,
    anonymous: u64,
    /// Paused until then (circuit open, or the platform's rate-limit reset).
    paused_until: Option<Instant>,
    /// After a pause, one probe call decides; a probe that never reports
    /// (its job was cancelled or superseded) is forgotten after a cooldown.
    probe_started: Option<Instant>,
    /// The provider is paused on app-level evidence (cleared by a success).
    config_error: bool,
    /// Why the latest pause began, for operators.
    pause_reason: Option<String>,
}

/// One platform's breaker as an operator sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct GateSnapshot {
    /// How much longer the pause lasts; None when not paused.
    pub paused_for: Option<Duration>,
    pub reason: Option<String>,
    pub config_error: bool,
}

pub enum Admission {
    /// Go ahead; hold the permit for the duration of the call.
    Go(OwnedSemaphorePermit),
    /// The provider is paused; try the account again after this long.
    Paused { retry_in: Duration },
}

fn later(now: Instant, span: Duration) -> Instant {
    now.checked_add(span.min(MAX_SPAN)).unwrap_or(now)
}

impl Gate {
    fn lock(&self) -> MutexGuard<'_, GateState> {
        // Every update leaves the state consistent at each step, so a
        // panic elsewhere while holding it leaves nothing half-written.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Takes a rate token, or says how long until one is available.
    fn take_token(&self) -> Option<Duration> {
        let rate = self.rate_per_second?;
        let mut state = self.lock();
        let now = Instant::now();
        let burst = rate.max(1.0);
        let elapsed = now.saturating_duration_since(state.refilled).as_secs_f64();
        state.tokens = (state.tokens + elapsed * rate).min(burst);
        state.refilled = now;
        if state.tokens >= 1.0 {
            state.tokens -= 1.0;
            return None;
        }
        let wait = Duration::try_from_secs_f64((1.0 - state.tokens) / rate).unwrap_or(MAX_SPAN);
        Some(wait.clamp(Duration::from_millis(1), MAX_SPAN))
    }
}

impl ProviderGates {
    pub fn from_settings(settings: &Settings) -> Self {
        let gates = Provider::ALL
            .iter()
            .map(|p| {
                let section = settings.providers.get(*p);
                let rate = section.rate_per_second;
                let rate = (rate.is_finite() && rate > 0.0).then_some(rate);
                let gate = Gate {
                    // A cap of 0 would hold every job forever.
                    in_flight: Arc::new(Semaphore::new(section.max_concurrency.max(1))),
                    rate_per_second: rate,
                    state: Mutex::new(GateState {
                        tokens: rate.unwrap_or(1.0).max(1.0),
                        refilled: Instant::now(),
                        recent: VecDeque::new(),
                        app_errors: VecDeque::new(),
                        anonymous: 0,
                        paused_until: None,
                        probe_started: None,
                        config_error: false,
                        pause_reason: None,
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
        let Ok(permit) = gate.in_flight.clone().acquire_owned().await else {
            // Never closed; were it, letting the call wait a cooldown is safe.
            return Admission::Paused {
                retry_in: self.circuit.cooldown,
            };
        };
        while let Some(wait) = gate.take_token() {
            tokio::time::sleep(wait).await;
        }
        // A pause may have begun while this call waited.
        let paused_meanwhile = gate
            .lock()
            .paused_until
            .and_then(|until| until.checked_duration_since(Instant::now()));
        if let Some(retry_in) = paused_meanwhile {
            return Admission::Paused { retry_in };
        }
        Admission::Go(permit)
    }

    fn paused(&self, gate: &Gate) -> Option<Duration> {
        let mut state = gate.lock();
        let until = state.paused_until?;
        let now = Instant::now();
        if now < until {
            return Some(until - now);
        }
        if state
            .probe_started
            .is_some_and(|at| now.saturating_duration_since(at) < self.circuit.cooldown)
        {
            // A probe is out: everyone else waits for its verdict.
            return Some(self.circuit.cooldown.min(Duration::from_secs(5)));
        }
        state.probe_started = Some(now);
        None
    }

    /// Feeds a refresh's result back. A failure that was the account's own
    /// (`account_only`, unrecognised answers included) says nothing about
    /// the platform: it neither counts towards the failure ratio nor pauses
    /// the provider; if it was a probe's, the next call probes instead.
    pub fn record_report(&self, report: &RefreshReport) {
        if (report.account_only || report.unrecognised) && !report.outcome.is_success() {
            let gate = &self.gates[&report.provider];
            gate.lock().probe_started = None;
            return;
        }
        let retry_after = report
            .retry_at
            .map(|at| (at - chrono::Utc::now()).to_std().unwrap_or_default());
        self.record_for(
            report.provider,
            Some(&report.account_id),
            report.outcome,
            retry_after,
        );
    }

    /// Feeds back an outcome whose account is unknown; `retry_after` is the
    /// platform's own reset.
    pub fn record(&self, provider: Provider, outcome: Outcome, retry_after: Option<Duration>) {
        self.record_for(provider, None, outcome, retry_after);
    }

    fn record_for(
        &self,
        provider: Provider,
        account: Option<&AccountId>,
        outcome: Outcome,
        retry_after: Option<Duration>,
    ) {
        let gate = &self.gates[&provider];
        let circuit = &self.circuit;
        let mut state = gate.lock();
        let who = match account {
            Some(id) => Who::Account(id.clone()),
            None => {
                state.anonymous = state.anonymous.wrapping_add(1);
                Who::Anonymous(state.anonymous)
            }
        };
        let now = Instant::now();
        let failed = matches!(
            outcome,
            Outcome::TransientError | Outcome::RateLimited | Outcome::ConfigError
        );
        let was_probe = state.probe_started.take().is_some();
        if was_probe {
            state.paused_until = failed.then(|| later(now, circuit.cooldown));
            if failed {
                state.pause_reason = Some(format!(
                    "the probe call after a pause failed ({outcome}); paused again"
                ));
            }
            state.recent.clear();
        }
        match outcome {
            Outcome::Refreshed | Outcome::Healthy => {
                state.config_error = false;
                state.app_errors.clear();
            }
            Outcome::ConfigError => {
                let window_start = now.checked_sub(circuit.app_error_window.min(MAX_SPAN));
                while state
                    .app_errors
                    .front()
                    .is_some_and(|(_, at)| window_start.is_some_and(|start| *at < start))
                {
                    state.app_errors.pop_front();
                }
                state.app_errors.retain(|(seen, _)| *seen != who);
                state.app_errors.push_back((who.clone(), now));
                let accounts = state.app_errors.len();
                // A probe's app-level answer continues a pause begun on evidence.
                if accounts >= circuit.app_error_accounts || (was_probe && state.config_error) {
                    state.config_error = true;
                    state.paused_until = Some(later(now, circuit.cooldown));
                    state.pause_reason = Some(format!(
                        "app-level answers (such as invalid_client) from {accounts} accounts: \
                         check the platform's client configuration"
                    ));
                    drop(state);
                    tracing::error!(%provider, accounts, "provider paused: app-level answers from several accounts (check its client configuration)");
                    return;
                }
                drop(state);
                tracing::warn!(%provider, accounts, needed = circuit.app_error_accounts, "app-level answer; not pausing on too few accounts");
                return;
            }
            Outcome::RateLimited => {
                let until = later(now, retry_after.unwrap_or(circuit.cooldown));
                state.paused_until = Some(state.paused_until.map_or(until, |u| u.max(until)));
                state.pause_reason =
                    Some("the platform's rate limit: waiting for its reset".to_owned());
            }
            _ => {}
        }
        if matches!(outcome, Outcome::Skipped) {
            return;
        }
        state.recent.retain(|(seen, _)| *seen != who);
        state.recent.push_back((who, failed));
        while state.recent.len() > circuit.window {
            state.recent.pop_front();
        }
        // One entry per account (its latest outcome): the ratio is over
        // distinct accounts, so one account retried again and again weighs one.
        let accounts = state.recent.len();
        let failures = state.recent.iter().filter(|(_, f)| *f).count();
        if accounts >= circuit.min_calls
            && failures as f64 >= circuit.failure_ratio * accounts as f64
            && state.paused_until.is_none_or(|u| u <= now)
        {
            state.paused_until = Some(later(now, circuit.cooldown));
            state.pause_reason = Some(format!(
                "{failures} of the latest {accounts} accounts' refreshes failed (failure ratio over circuit.failure_ratio)"
            ));
            state.recent.clear();
            drop(state);
            tracing::warn!(%provider, failures, accounts, "provider paused: failure ratio over threshold");
        }
    }

    /// Whether the provider is paused on app-level evidence.
    pub fn has_config_error(&self, provider: Provider) -> bool {
        self.gates[&provider].lock().config_error
    }

    /// The breaker as an operator sees it.
    pub fn snapshot(&self, provider: Provider) -> GateSnapshot {
        let state = self.gates[&provider].lock();
        let paused_for = state
            .paused_until
            .and_then(|u| u.checked_duration_since(Instant::now()))
            .filter(|d| !d.is_zero());
        GateSnapshot {
            paused_for,
            reason: state.pause_reason.clone().filter(|_| paused_for.is_some()),
            config_error: state.config_error,
        }
    }

    /// An operator's resume: the pause ends now and the evidence behind it
    /// is forgotten, so the next calls run as after a fresh start.
    pub fn resume(&self, provider: Provider) {
        let mut state = self.gates[&provider].lock();
        state.paused_until = None;
        state.probe_started = None;
        state.recent.clear();
        state.app_errors.clear();
        state.config_error = false;
        state.pause_reason = None;
    }

    /// Whether the provider is paused now (for metrics and logs).
    pub fn is_paused(&self, provider: Provider) -> bool {
        let state = self.gates[&provider].lock();
        state.paused_until.is_some_and(|u| Instant::now() < u)
    }
}

#[cfg(test)]
mod tests;
