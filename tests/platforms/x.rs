//! X: Basic client authentication, single-use rotating refresh tokens, and
//! the rate-limit reset header.

use chrono::Utc;
use tokenwarden::domain::{Outcome, Provider};

use crate::support::{
    Account, assert_active, assert_outcome, assert_seconds_until, forced, register, x_env,
};

#[tokio::test]
async fn x_refresh_rotates_and_the_spent_token_is_dead() {
    let (env, fake) = x_env().await;
    let (access, refresh) = fake.issue();
    let id = register(&env, Account::new(Provider::X, &access, Some(&refresh))).await;
    assert_outcome(&forced(&env, &id).await, Outcome::Refreshed);
    let stored = env.stored_refresh_token(&id).await.unwrap();
    assert_ne!(stored, refresh);
    assert!(fake.is_live(&stored) && !fake.is_live(&refresh));
    assert_seconds_until(env.row(&id).await.token_expires_at, 7195..=7205);
}

#[tokio::test]
async fn x_429_waits_for_x_rate_limit_reset() {
    let (env, fake) = x_env().await;
    let (access, refresh) = fake.issue();
    let id = register(&env, Account::new(Provider::X, &access, Some(&refresh))).await;
    fake.rate_limit_next(Utc::now().timestamp() + 900);
    let report = forced(&env, &id).await;
    assert_outcome(&report, Outcome::RateLimited);
    assert_eq!(report.provider_error_code.as_deref(), Some("88"));
    assert_seconds_until(report.retry_at, 895..=905);
    assert_active(&env, &id, &report).await;
}
