//! Prometheus metrics (names and meaning: docs/metrics.md). Events are
//! counted where they happen; account-state gauges are computed from
//! PostgreSQL on an interval by `store::census`, never on scrape. Labels stay bounded: provider,
//! status, trigger, outcome; never an account.

use std::sync::OnceLock;
use std::time::Duration;

use chrono::Utc;
use metrics::{counter, gauge, histogram};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

use crate::domain::{AccountStatus, Outcome, Provider, Trigger};

pub const REFRESH_DURATION_BUCKETS: &[f64] =
    &[0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0, 30.0];

static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();

/// Installs the process-wide recorder once and returns its handle; later
/// calls (a second server in the same process, tests) share it.
pub fn install() -> PrometheusHandle {
    HANDLE
        .get_or_init(|| {
            let builder = PrometheusBuilder::new()
                .set_buckets_for_metric(
                    Matcher::Full("tokenwarden_refresh_duration_seconds".into()),
                    REFRESH_DURATION_BUCKETS,
                )
                .expect("bucket list is not empty");
            let recorder = builder.build_recorder();
            let handle = recorder.handle();
            // Another recorder may already be installed (an embedding
            // program's): then this handle renders only what it records.
            if metrics::set_global_recorder(recorder).is_err() {
                tracing::warn!("a metrics recorder was already installed; /metrics will be sparse");
            }
            describe();
            gauge!(
                "tokenwarden_build_info",
                "version" => env!("CARGO_PKG_VERSION"),
                "revision" => option_env!("TOKENWARDEN_REVISION").unwrap_or("unknown"),
            )
            .set(1.0);
            handle
        })
        .clone()
}

/// Renders the text exposition; also runs the recorder's upkeep (histogram
/// buffers), which the exporter leaves to its user.
pub fn render() -> String {
    let handle = install();
    handle.run_upkeep();
    handle.render()
}

fn describe() {
    use metrics::{describe_counter, describe_gauge, describe_histogram};
    describe_gauge!("tokenwarden_build_info", "The running build (always 1).");
    describe_gauge!("tokenwarden_accounts", "Accounts by provider and status.");
    describe_gauge!(
        "tokenwarden_accounts_token_expiring",
        "ACTIVE accounts whose access token expires within the window (cumulative)."
    );
    describe_gauge!(
        "tokenwarden_accounts_token_expired",
        "ACTIVE accounts whose access token already expired."
    );
    describe_gauge!(
        "tokenwarden_accounts_overdue",
        "ACTIVE accounts past their planned refresh or check by more than metrics.overdue_after."
    );
    describe_gauge!(
        "tokenwarden_accounts_refresh_token_expiring",
        "ACTIVE accounts whose refresh token ends within the window: reconnect needed soon."
    );
    describe_gauge!(
        "tokenwarden_state_computed_timestamp_seconds",
        "When the account-state gauges were last computed."
    );
    describe_counter!(
        "tokenwarden_refresh_attempts_total",
        "Refresh and health-check attempts finished by this process."
    );
    describe_histogram!(
        "tokenwarden_refresh_duration_seconds",
        metrics::Unit::Seconds,
        "Provider call plus write, per attempt."
    );
    describe_counter!(
        "tokenwarden_status_changes_total",
        "Account status changes written by this process."
    );
    describe_counter!(
        "tokenwarden_connect_started_total",
        "Connect flows started (authorization URLs handed out)."
    );
    describe_counter!(
        "tokenwarden_connect_completed_total",
        "Connect flows finished, by outcome (connected, reconnected, choice_required, or the error code)."
    );
    describe_gauge!(
        "tokenwarden_jobs_outstanding",
        "Accounts claimed by a scheduler whose job has not finished."
    );
    describe_gauge!(
        "tokenwarden_jobs_oldest_age_seconds",
        "Age of the oldest outstanding claim."
    );
    describe_gauge!(
        "tokenwarden_scheduler_last_scan_timestamp_seconds",
        "When this process's scheduler last finished a scan without error."
    );
    describe_gauge!(
        "tokenwarden_provider_paused",
        "1 while the provider's circuit breaker pauses calls in this process."
    );
    describe_gauge!(
        "tokenwarden_provider_config_error",
        "1 while the provider's latest answer was an application-level error."
    );
    describe_counter!(
        "tokenwarden_webhook_deliveries_total",
        "Webhook delivery attempts by outcome."
    );
    describe_gauge!(
        "tokenwarden_events_undelivered",
        "Outbox events not yet acknowledged by the webhook."
    );
    describe_gauge!(
        "tokenwarden_events_oldest_undelivered_age_seconds",
        "Age of the oldest undelivered event."
    );
    describe_counter!("tokenwarden_http_requests_total", "API requests.");
    describe_counter!(
        "tokenwarden_unrecognised_answers_total",
        "Platform answers no row of the platform's table describes (docs/platform-answers.md)."
    );
}

pub fn provider_label(provider: Provider) -> String {
    provider.config_key()
}

pub fn record_attempt(provider: Provider, trigger: Trigger, outcome: Outcome, took: Duration) {
    counter!(
        "tokenwarden_refresh_attempts_total",
        "provider" => provider_label(provider),
        "trigger" => trigger.as_str(),
        "outcome" => outcome.as_str(),
    )
    .increment(1);
    if outcome != Outcome::Skipped {
        histogram!(
            "tokenwarden_refresh_duration_seconds",
            "provider" => provider_label(provider),
        )
        .record(took.as_secs_f64());
    }
}

pub fn record_connect_started(provider: Provider) {
    counter!("tokenwarden_connect_started_total", "provider" => provider_label(provider))
        .increment(1);
}

/// `outcome` is one of a fixed set (an outcome word or a `ConnectError`
/// code), never free text.
pub fn record_connect_completed(provider: Option<Provider>, outcome: &'static str) {
    let provider = provider
        .map(provider_label)
        .unwrap_or_else(|| "unknown".to_owned());
    counter!(
        "tokenwarden_connect_completed_total",
        "provider" => provider,
        "outcome" => outcome,
    )
    .increment(1);
}

pub fn record_status_change(provider: Provider, to: AccountStatus) {
    counter!(
        "tokenwarden_status_changes_total",
        "provider" => provider_label(provider),
        "to_status" => to.as_str(),
    )
    .increment(1);
}

/// An answer of a shape the daemon does not know: operators see new error
/// shapes per platform and HTTP status (`none`: no HTTP answer).
pub fn record_unrecognised_answer(provider: Provider, http_status: Option<u16>) {
    counter!(
        "tokenwarden_unrecognised_answers_total",
        "provider" => provider_label(provider),
        "http_status" => http_status.map_or_else(|| "none".to_owned(), |s| s.to_string()),
    )
    .increment(1);
}

pub fn record_scan() {
    gauge!("tokenwarden_scheduler_last_scan_timestamp_seconds").set(Utc::now().timestamp() as f64);
}

pub fn record_webhook_delivery(delivered: bool) {
    let outcome = if delivered { "delivered" } else { "failed" };
    counter!("tokenwarden_webhook_deliveries_total", "outcome" => outcome).increment(1);
}

pub fn record_http_request(route: &str, status: u16) {
    counter!(
        "tokenwarden_http_requests_total",
        "route" => route.to_owned(),
        "status" => status.to_string(),
    )
    .increment(1);
}

/// The gate's state for one platform, sampled (a pause ends by time, not by
/// an event, so the gate publishes it periodically rather than on change).
pub fn record_gate_state(provider: Provider, paused: bool, config_error: bool) {
    let label = provider_label(provider);
    gauge!("tokenwarden_provider_paused", "provider" => label.clone())
        .set(f64::from(u8::from(paused)));
    gauge!("tokenwarden_provider_config_error", "provider" => label)
        .set(f64::from(u8::from(config_error)));
}
