//! ARCHITECTURE.md's status table: how an account becomes ACTIVE,
//! TOKEN_EXPIRED or DISCONNECTED, and back.

use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use tokenwarden::domain::{AccountId, AccountStatus, Outcome, Provider, Trigger};
use tokenwarden::engine::EngineError;
use tokenwarden::policy::RefreshPolicy;
use tokenwarden::store::accounts;
use tokenwarden_fakes::FamilySpec;

use crate::common::{self, TestEnv, rotating};
use crate::support::{assert_near, spawn_refresh, x_account, x_account_with};

#[tokio::test]
async fn registration_sets_active_and_emits_one_event() {
    let (env, id, _) = x_account().await;
    let row = env.row(&id).await;
    assert_eq!(row.status, AccountStatus::Active);
    assert_eq!(
        env.events(&id).await,
        vec![(None, "ACTIVE".into(), "connected".into())]
    );
    env.assert_expiry_copies().await;
}

#[tokio::test]
async fn successful_refresh_rotates_and_persists_the_new_refresh_token() {
    let (env, id, first) = x_account().await;

    let report = env.refresh(&id, Trigger::Scheduled).await;
    assert_eq!(report.outcome, Outcome::Refreshed);
    let stored = env.stored_refresh_token(&id).await.unwrap();
    assert_ne!(
        stored, first.refresh_token,
        "the rotated refresh token is stored"
    );
    assert!(env.fake.is_live(&stored));
    assert!(!env.fake.is_live(&first.refresh_token));

    let row = env.row(&id).await;
    assert_eq!(row.status, AccountStatus::Active);
    assert_eq!(row.credentials_version, 2);
    assert!(row.last_refreshed_at.is_some());
    assert_near(
        row.token_expires_at.unwrap(),
        Utc::now() + TimeDelta::hours(1),
    );
    // Next refresh planned at 2/3 of the new lifetime, spread up to the
    // configured jitter (5 min) earlier.
    let next = (row.next_attempt_at.unwrap() - Utc::now()).num_seconds();
    assert!((35 * 60 - 10..=40 * 60 + 10).contains(&next), "{next}s");

    // The next scheduled refresh uses the new token and works again.
    env.update_schedule(&id, "next_attempt_at = now() - interval '1 second'")
        .await;
    let report = env.refresh(&id, Trigger::Scheduled).await;
    assert_eq!(report.outcome, Outcome::Refreshed);
    assert_eq!(env.fake.reuse_detected(), 0);
    env.assert_expiry_copies().await;
}

#[tokio::test]
async fn invalid_grant_moves_to_token_expired_with_one_event() {
    let (env, id, _) = x_account_with(FamilySpec {
        expire_after: Some(0),
        ..rotating()
    })
    .await;
    let report = env.refresh(&id, Trigger::Scheduled).await;
    assert_eq!(report.outcome, Outcome::RejectedExpired);
    assert_eq!(report.status, AccountStatus::TokenExpired);
    let row = env.row(&id).await;
    assert_eq!(row.status, AccountStatus::TokenExpired);
    assert_eq!(row.last_refresh_error_status, Some(400));
    assert!(row.last_refresh_error.unwrap().contains("invalid_grant"));
    let events = env.events(&id).await;
    assert_eq!(events.len(), 2);
    assert_eq!(events[1].0.as_deref(), Some("ACTIVE"));
    assert_eq!(events[1].1, "TOKEN_EXPIRED");
    env.assert_expiry_copies().await;
}

/// RFC 6749's `invalid_grant` covers "invalid, expired, revoked" alike: the
/// word "revoked" in its text does not say the user withdrew access (rule
/// 2a), so the status is TOKEN_EXPIRED with the platform's text kept.
#[tokio::test]
async fn revoked_grant_is_token_expired_with_the_platforms_text() {
    let (env, id, _) = x_account_with(FamilySpec {
        revoke_after: Some(0),
        ..rotating()
    })
    .await;
    let report = env.refresh(&id, Trigger::Scheduled).await;
    assert_eq!(report.outcome, Outcome::RejectedExpired);
    let row = env.row(&id).await;
    assert_eq!(row.status, AccountStatus::TokenExpired);
    assert!(row.status_reason.unwrap().contains("revoked"));
    assert_eq!(env.events(&id).await.last().unwrap().1, "TOKEN_EXPIRED");
}

/// Registers a LinkedIn account that holds an access token and no refresh
/// token.
async fn register_without_refresh_token(
    env: &TestEnv,
    issued_at: DateTime<Utc>,
    expires_at: DateTime<Utc>,
) -> AccountId {
    let tokens = env.fake.issue(rotating());
    let mut new = common::new_account(
        Provider::LinkedinPerson,
        "no-rt",
        &tokens,
        issued_at,
        Some(expires_at),
    );
    new.refresh_token = None;
    let policy = RefreshPolicy::from(env.settings.providers.get(Provider::LinkedinPerson));
    accounts::register(env.pool(), &env.keyring, &policy, &new)
        .await
        .unwrap()
        .account
        .id
}

#[tokio::test]
async fn expired_access_token_without_refresh_token_is_token_expired() {
    let env = TestEnv::new().await;
    let id = register_without_refresh_token(
        &env,
        Utc::now() - TimeDelta::days(61),
        Utc::now() - TimeDelta::minutes(1),
    )
    .await;

    let report = env.refresh(&id, Trigger::Scheduled).await;
    assert_eq!(report.outcome, Outcome::RejectedExpired);
    assert_eq!(env.row(&id).await.status, AccountStatus::TokenExpired);
    assert_eq!(
        env.fake.call_count(),
        0,
        "nothing to call without a refresh token"
    );
    env.assert_expiry_copies().await;
}

#[tokio::test]
async fn valid_access_token_without_refresh_token_stays_active_until_expiry() {
    let env = TestEnv::new().await;
    let expires = Utc::now() + TimeDelta::days(10);
    let id = register_without_refresh_token(&env, Utc::now() - TimeDelta::days(50), expires).await;

    let report = env.refresh(&id, Trigger::Scheduled).await;
    assert_eq!(report.outcome, Outcome::Skipped);
    let row = env.row(&id).await;
    assert_eq!(row.status, AccountStatus::Active);
    assert!(row.last_refresh_error.unwrap().contains("reconnect before"));
    assert_eq!(
        row.next_attempt_at.unwrap().timestamp(),
        expires.timestamp(),
        "looked at again at expiry"
    );
}

#[tokio::test]
async fn disconnected_accounts_are_never_refreshed() {
    let (env, id, _) = x_account().await;
    env.update_account(&id, "status = 'DISCONNECTED'").await;
    let err = env.engine.refresh(&id, Trigger::Forced).await.unwrap_err();
    assert!(matches!(err, EngineError::Disconnected(_)), "{err}");
    assert_eq!(env.fake.call_count(), 0);
}

#[tokio::test]
async fn a_refresh_in_flight_never_brings_a_disconnected_account_back() {
    let (env, id, _) = x_account().await;
    env.fake.set_answer_delay(Duration::from_millis(600));
    let refresh = spawn_refresh(&env.engine, &id, Trigger::Forced);
    tokio::time::sleep(Duration::from_millis(200)).await;
    env.update_account(&id, "status = 'DISCONNECTED'").await;
    let _ = refresh.await.unwrap();
    assert_eq!(env.row(&id).await.status, AccountStatus::Disconnected);
    assert_eq!(env.events(&id).await.len(), 1, "no event back to ACTIVE");
    env.assert_expiry_copies().await;
}

#[tokio::test]
async fn unknown_account_is_a_clear_error() {
    let env = TestEnv::new().await;
    let id = AccountId::generate();
    let err = env.engine.refresh(&id, Trigger::Forced).await.unwrap_err();
    assert_eq!(err.to_string(), format!("unknown account {id}"));
}

#[tokio::test]
async fn reconnect_after_expiry_returns_to_active_with_a_recovery_event() {
    let (env, id, _) = x_account_with(FamilySpec {
        expire_after: Some(0),
        ..rotating()
    })
    .await;
    env.refresh(&id, Trigger::Scheduled).await;
    assert_eq!(env.row(&id).await.status, AccountStatus::TokenExpired);

    let (again, _) = env.connect_x_fresh().await;
    assert_eq!(
        again, id,
        "same workspace, provider and external id: same account"
    );
    let row = env.row(&id).await;
    assert_eq!(row.status, AccountStatus::Active);
    assert_eq!(row.consecutive_failures, 0);
    assert!(row.last_refresh_error.is_none());
    let events = env.events(&id).await;
    assert_eq!(
        events.last().unwrap(),
        &(
            Some("TOKEN_EXPIRED".into()),
            "ACTIVE".into(),
            "reconnected".into()
        )
    );
    env.assert_expiry_copies().await;
}

#[tokio::test]
async fn forced_refresh_of_an_expired_account_that_succeeds_recovers_it() {
    let (env, id, _) = x_account().await;
    env.update_account(&id, "status = 'TOKEN_EXPIRED'").await;
    let report = env.refresh(&id, Trigger::Forced).await;
    assert_eq!(report.status, AccountStatus::Active);
    assert_eq!(env.events(&id).await.last().unwrap().1, "ACTIVE");
    env.assert_expiry_copies().await;
}
