//! The account census behind the state gauges: how many accounts per
//! platform and status, how many expire soon, how old the oldest claim and
//! the oldest undelivered event are. Computed from PostgreSQL on a timer.

use std::time::Duration;

use chrono::Utc;
use metrics::gauge;
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;

use crate::domain::{AccountStatus, Provider};
use crate::metrics::provider_label;

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
         FROM social_accounts LEFT JOIN account_schedule ON account_id = id
         GROUP BY provider, status",
    )
    .bind(overdue_after)
    .fetch_all(pool)
    .await?;
    let (outstanding, oldest): (i64, f64) = sqlx::query_as(
        "SELECT count(*), COALESCE(EXTRACT(EPOCH FROM now() - min(claimed_at))::float8, 0)
         FROM account_schedule WHERE claim_id IS NOT NULL",
    )
    .fetch_one(pool)
    .await?;
    let undelivered = if webhooks_enabled {
        Some(super::events::undelivered(pool).await?)
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
