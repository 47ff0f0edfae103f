//! The progress line the demo prints every few seconds, from the database.

use std::time::Duration;

use sqlx::PgPool;

use tokenwarden::domain::Outcome;

use super::fakes::DemoFakes;

pub(super) async fn print_progress(
    pool: &PgPool,
    fake: &DemoFakes,
    elapsed: Duration,
) -> anyhow::Result<()> {
    let (active, failing, expired, revoked, next_due): (i64, i64, i64, i64, Option<f64>) = sqlx::query_as(
        "SELECT count(*) FILTER (WHERE status = 'ACTIVE'),
                count(*) FILTER (WHERE status = 'ACTIVE' AND consecutive_failures > 0),
                count(*) FILTER (WHERE status = 'TOKEN_EXPIRED'),
                count(*) FILTER (WHERE status = 'REVOKED'),
                extract(epoch FROM min(next_attempt_at) FILTER (WHERE status = 'ACTIVE') - now())::float8
         FROM social_accounts LEFT JOIN account_schedule ON account_id = id",
    )
    .fetch_one(pool)
    .await?;
    let by_outcome: Vec<(String, i64)> =
        sqlx::query_as("SELECT outcome, count(*) FROM refresh_attempts GROUP BY outcome")
            .fetch_all(pool)
            .await?;
    let count = |o: Outcome| {
        by_outcome
            .iter()
            .find(|(name, _)| name == o.as_str())
            .map_or(0, |(_, n)| *n)
    };
    println!(
        "[{:>4}s] refreshed {:>5} | healthy {:>4} | transient {:>4} | active {:>4} (failing {:>3}) | expired {:>3} | revoked {:>3} | next due {:>5} | provider calls {:>5}",
        elapsed.as_secs(),
        count(Outcome::Refreshed),
        count(Outcome::Healthy),
        count(Outcome::TransientError) + count(Outcome::RateLimited),
        active,
        failing,
        expired,
        revoked,
        next_due
            .map(|s| format!("{:.0}s", s.max(0.0)))
            .unwrap_or_else(|| "-".into()),
        fake.calls(),
    );
    Ok(())
}
