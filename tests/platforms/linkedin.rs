//! LinkedIn: a refresh token kept across refreshes whose remaining lifetime
//! the answer gives; apps without programmatic refresh are checked by token
//! introspection until the access token expires.

use chrono::{TimeDelta, Utc};
use tokenwarden::domain::{AccountStatus, Outcome, Provider, Trigger};
use tokenwarden_fakes::LINKEDIN_REFRESH_LIFETIME;

use crate::support::{
    Account, assert_outcome, assert_seconds_until, forced, linkedin_env,
    linkedin_introspecting_env, register,
};

#[tokio::test]
async fn linkedin_keeps_its_refresh_token_and_reads_its_remaining_lifetime() {
    let (env, fake) = linkedin_env().await;
    let (access, refresh) = fake.issue(std::time::Duration::from_secs(59 * 86_400));
    let id = register(
        &env,
        Account::new(Provider::LinkedinPerson, &access, Some(&refresh)),
    )
    .await;
    assert_outcome(&forced(&env, &id).await, Outcome::Refreshed);
    assert_eq!(env.stored_refresh_token(&id).await.unwrap(), refresh);
    // Day 59 of 365: 306 days left, counted from the first login.
    let want = LINKEDIN_REFRESH_LIFETIME as i64 - 59 * 86_400;
    assert_seconds_until(
        env.row(&id).await.refresh_token_expires_at,
        want - 10..=want,
    );
}

#[tokio::test]
async fn linkedin_without_a_refresh_token_is_checked_by_introspection_until_expiry() {
    let (env, fake) = linkedin_introspecting_env().await;
    let access = fake.issue_access_only();
    // An app without programmatic refresh: 30 days left.
    let id = register(
        &env,
        Account {
            issued_at: Utc::now() - TimeDelta::days(30),
            expires_at: Some(Utc::now() + TimeDelta::days(30)),
            ..Account::new(Provider::LinkedinPerson, &access, None)
        },
    )
    .await;
    let report = env.engine.refresh(&id, Trigger::Scheduled).await;
    // Not due yet: registration planned it at 2/3 of the lifetime.
    assert_eq!(report.unwrap().outcome, Outcome::Skipped);
    let report = forced(&env, &id).await;
    assert_outcome(&report, Outcome::Healthy);
    assert!(report.message.unwrap().contains("must reconnect before"));
    assert_eq!(fake.introspections(), 1);
    let row = env.row(&id).await;
    assert_eq!(row.status, AccountStatus::Active);
    // Daily.
    assert_seconds_until(row.next_attempt_at, 86_390..=86_400);
}

#[tokio::test]
async fn linkedin_expired_token_without_refresh_token_is_not_introspected() {
    let (env, fake) = linkedin_introspecting_env().await;
    let access = fake.issue_access_only();
    let id = register(
        &env,
        Account {
            issued_at: Utc::now() - TimeDelta::days(61),
            expires_at: Some(Utc::now() - TimeDelta::days(1)),
            ..Account::new(Provider::LinkedinPerson, &access, None)
        },
    )
    .await;
    assert_outcome(&forced(&env, &id).await, Outcome::RejectedExpired);
    assert_eq!(fake.introspections(), 0);
}
