//! Prometheus metrics (names and meaning: docs/metrics.md). Events are
//! counted where they happen; account-state gauges are computed from
//! PostgreSQL on an interval, never on scrape. Labels stay bounded: provider,
//! status, trigger, outcome; never an account.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use chrono::Utc;
use metrics::{counter, gauge, histogram};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;

use crate::domain::{AccountStatus, Outcome, Provider, Trigger};
use crate::gate::ProviderGates;

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

fn provider_label(provider: Provider) -> String {
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

/// Mirrors the worker's gates into gauges every few seconds (a pause ends
/// by time, not by an event, so it is sampled rather than pushed).
pub async fn watch_gates(gates: Arc<ProviderGates>, stop: CancellationToken) {
    let mut tick = tokio::time::interval(Duration::from_secs(5));
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tick.tick() => {}
        }
        for provider in Provider::ALL {
            let label = provider_label(*provider);
            gauge!("tokenwarden_provider_paused", "provider" => label.clone())
                .set(f64::from(u8::from(gates.is_paused(*provider))));
            gauge!("tokenwarden_provider_config_error", "provider" => label)
                .set(f64::from(u8::from(gates.has_config_error(*provider))));
        }
    }
}

/// Computes the account-state gauges from PostgreSQL every `interval` until
/// `stop`. A failed computation leaves the previous values (and their
/// timestamp, which an alert watches).
pub async fn collect_state(
    pool: PgPool,
    interval: Duration,
    overdue_after: Duration,
    webhooks_enabled: bool,
    stop: CancellationToken,
) {
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tick.tick() => {}
        }
        if let Err(e) = compute_state(&pool, overdue_after, webhooks_enabled).await {
            tracing::warn!(error = %e, "account-state metrics not computed");
        }
    }
}

#[derive(sqlx::FromRow)]
struct StateRow {
    provider: String,
    status: String,
    accounts: i64,
    expiring_1h: i64,
    expiring_24h: i64,
    expiring_7d: i64,
    expired: i64,
    overdue: i64,
    rt_expiring_7d: i64,
    rt_expiring_30d: i64,
}

/// One pass over the accounts; every provider × status series is written,
/// zeros included, so that alert expressions never see a series vanish.
pub async fn compute_state(
    pool: &PgPool,
    overdue_after: Duration,
    webhooks_enabled: bool,
) -> Result<(), sqlx::Error> {
    let rows: Vec<StateRow> = sqlx::query_as(
        "SELECT provider, status, count(*) AS accounts,
            count(*) FILTER (WHERE status = 'ACTIVE' AND token_expires_at > now()
                             AND token_expires_at <= now() + interval '1 hour') AS expiring_1h,
            count(*) FILTER (WHERE status = 'ACTIVE' AND token_expires_at > now()
                             AND token_expires_at <= now() + interval '24 hours') AS expiring_24h,
            count(*) FILTER (WHERE status = 'ACTIVE' AND token_expires_at > now()
                             AND token_expires_at <= now() + interval '7 days') AS expiring_7d,
            count(*) FILTER (WHERE status = 'ACTIVE' AND token_expires_at <= now()) AS expired,
            count(*) FILTER (WHERE status = 'ACTIVE' AND next_attempt_at < now() - $1) AS overdue,
            count(*) FILTER (WHERE status = 'ACTIVE' AND refresh_token_expires_at > now()
                             AND refresh_token_expires_at <= now() + interval '7 days') AS rt_expiring_7d,
            count(*) FILTER (WHERE status = 'ACTIVE' AND refresh_token_expires_at > now()
                             AND refresh_token_expires_at <= now() + interval '30 days') AS rt_expiring_30d
         FROM social_accounts GROUP BY provider, status",
    )
    .bind(overdue_after)
    .fetch_all(pool)
    .await?;
    let (outstanding, oldest): (i64, f64) = sqlx::query_as(
        "SELECT count(*), COALESCE(EXTRACT(EPOCH FROM now() - min(claimed_at))::float8, 0)
         FROM social_accounts WHERE claim_id IS NOT NULL",
    )
    .fetch_one(pool)
    .await?;
    let undelivered = if webhooks_enabled {
        Some(crate::store::events::undelivered(pool).await?)
    } else {
        None
    };

    for provider in Provider::ALL {
        let mine = || rows.iter().filter(|r| r.provider == provider.as_str());
        let sum = |f: fn(&StateRow) -> i64| mine().map(f).sum::<i64>() as f64;
        let label = provider_label(*provider);
        for status in AccountStatus::ALL {
            let count = mine()
                .filter(|r| r.status == status.as_str())
                .map(|r| r.accounts)
                .sum::<i64>();
            gauge!("tokenwarden_accounts", "provider" => label.clone(), "status" => status.as_str())
                .set(count as f64);
        }
        for (within, value) in [
            ("1h", sum(|r| r.expiring_1h)),
            ("24h", sum(|r| r.expiring_24h)),
            ("7d", sum(|r| r.expiring_7d)),
        ] {
            gauge!("tokenwarden_accounts_token_expiring", "provider" => label.clone(), "within" => within)
                .set(value);
        }
        gauge!("tokenwarden_accounts_token_expired", "provider" => label.clone())
            .set(sum(|r| r.expired));
        gauge!("tokenwarden_accounts_overdue", "provider" => label.clone()).set(sum(|r| r.overdue));
        for (within, value) in [
            ("7d", sum(|r| r.rt_expiring_7d)),
            ("30d", sum(|r| r.rt_expiring_30d)),
        ] {
            gauge!("tokenwarden_accounts_refresh_token_expiring", "provider" => label.clone(), "within" => within)
                .set(value);
        }
    }
    gauge!("tokenwarden_jobs_outstanding").set(outstanding as f64);
    gauge!("tokenwarden_jobs_oldest_age_seconds").set(oldest);
    let (count, age) = undelivered.unwrap_or((0, 0.0));
    gauge!("tokenwarden_events_undelivered").set(count as f64);
    gauge!("tokenwarden_events_oldest_undelivered_age_seconds").set(age);
    gauge!("tokenwarden_state_computed_timestamp_seconds").set(Utc::now().timestamp() as f64);
    Ok(())
}
