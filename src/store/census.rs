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

/// Accounts of one provider and status, with the expiry counts among them.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct StateRow {
    pub provider: String,
    pub status: String,
    pub accounts: i64,
    pub expiring_1h: i64,
    pub expiring_24h: i64,
    pub expiring_7d: i64,
    pub expired: i64,
    pub overdue: i64,
    pub rt_expiring_7d: i64,
    pub rt_expiring_30d: i64,
}

/// One pass over the accounts; every provider × status series is written,
/// zeros included, so that alert expressions never see a series vanish.
pub async fn compute_state(
    pool: &PgPool,
    overdue_after: Duration,
    webhooks_enabled: bool,
) -> Result<(), sqlx::Error> {
    let rows = state_rows(pool, overdue_after).await?;
    let claims = claims(pool).await?;
    let (outstanding, oldest) = (claims.outstanding, claims.oldest_age_seconds);
    let undelivered = if webhooks_enabled {
        Some(super::events::undelivered(pool).await?)
    } else {
        None
    };
    publish(&rows, outstanding, oldest, undelivered);
    Ok(())
}

/// Accounts by provider and status, with how many expire soon (un-refreshed:
/// a refresh moves the expiry) and how many are overdue.
pub async fn state_rows(
    pool: &PgPool,
    overdue_after: Duration,
) -> Result<Vec<StateRow>, sqlx::Error> {
    sqlx::query_as(
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
    .await
}

/// The refresh queue as PostgreSQL sees it.
#[derive(Debug, Clone, Copy, sqlx::FromRow)]
pub struct Claims {
    /// Accounts claimed for a job that has not finished.
    pub outstanding: i64,
    /// Age of the oldest such claim; 0 with none.
    pub oldest_age_seconds: f64,
    /// ACTIVE accounts due now and not yet claimed.
    pub due_unclaimed: i64,
}

pub async fn claims(pool: &PgPool) -> Result<Claims, sqlx::Error> {
    sqlx::query_as(
        "SELECT count(*) FILTER (WHERE claim_id IS NOT NULL) AS outstanding,
                COALESCE(EXTRACT(EPOCH FROM now() - min(claimed_at) FILTER (WHERE claim_id IS NOT NULL))::float8, 0)
                    AS oldest_age_seconds,
                count(*) FILTER (WHERE claim_id IS NULL AND next_attempt_at <= now())
                    AS due_unclaimed
         FROM account_schedule JOIN social_accounts ON id = account_id",
    )
    .fetch_one(pool)
    .await
}

/// Accounts by provider and health word (see
/// [`super::accounts::HEALTH_SQL`]), with how many of each lack publish
/// scopes or gave an unrecognised answer last.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct HealthRow {
    pub provider: String,
    pub health: String,
    pub accounts: i64,
    pub missing_scopes: i64,
    pub unrecognised: i64,
}

pub async fn health_rows(pool: &PgPool) -> Result<Vec<HealthRow>, sqlx::Error> {
    let sql = format!(
        "SELECT provider, {health} AS health, count(*) AS accounts,
                count(*) FILTER (WHERE status = 'ACTIVE' AND cardinality(missing_scopes) > 0) AS missing_scopes,
                count(*) FILTER (WHERE unrecognised_answer) AS unrecognised
         FROM social_accounts GROUP BY 1, 2 ORDER BY 1, 2",
        health = super::accounts::HEALTH_SQL
    );
    sqlx::query_as(sqlx::AssertSqlSafe(sql))
        .fetch_all(pool)
        .await
}

fn publish(rows: &[StateRow], outstanding: i64, oldest: f64, undelivered: Option<(i64, f64)>) {
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
}
