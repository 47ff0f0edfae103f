//! Status rules 2 to 5: configuration errors leave the account alone, a
//! rejection of replaced credentials is ignored, every status change is one
//! event, and every attempt is recorded. (Rule 1 is in `backoff`.)

use std::time::Duration;

use serde_json::json;
use tokenwarden::domain::{AccountStatus, Outcome, Provider, Trigger};
use tokenwarden::store::attempts;
use tokenwarden_fakes::{FamilySpec, ScriptedResponse};

use crate::common::{TestEnv, rotating};
use crate::support::{spawn_refresh, x_account, x_account_with};

#[tokio::test]
async fn rule2_invalid_client_never_touches_the_account_status_or_failures() {
    let (env, id, _) = x_account().await;
    env.fake.script_next(ScriptedResponse::json(
        401,
        json!({"error": "invalid_client", "error_description": "Client authentication failed"}),
    ));
    let report = env.refresh(&id, Trigger::Scheduled).await;
    assert_eq!(report.outcome, Outcome::ConfigError);
    let row = env.row(&id).await;
    assert_eq!(row.status, AccountStatus::Active);
    assert_eq!(row.consecutive_failures, 0);
    assert_eq!(row.last_refresh_error_status, Some(401));
    assert_eq!(env.events(&id).await.len(), 1);
}

#[tokio::test]
async fn rule2_unauthorized_client_and_wrong_secret_are_config_errors() {
    let env =
        TestEnv::with(|s| s.providers.x.client_secret = Some("wrong".to_owned().into())).await;
    let (id, _) = env.connect(Provider::X, rotating()).await;
    let report = env.refresh(&id, Trigger::Scheduled).await;
    assert_eq!(report.outcome, Outcome::ConfigError, "{:?}", report.message);
    env.fake.script_next(ScriptedResponse::json(
        400,
        json!({"error": "unauthorized_client"}),
    ));
    let report = env.refresh(&id, Trigger::Forced).await;
    assert_eq!(report.outcome, Outcome::ConfigError);
    assert_eq!(env.row(&id).await.status, AccountStatus::Active);
}

#[tokio::test]
async fn rule2_unconfigured_platform_is_a_config_error() {
    let env = TestEnv::new().await;
    let (id, _) = env
        .connect_expiring_now(Provider::FacebookPage, rotating())
        .await;
    let report = env.refresh(&id, Trigger::Scheduled).await;
    assert_eq!(report.outcome, Outcome::ConfigError);
    assert!(
        report
            .message
            .unwrap()
            .contains("providers.facebook_page.client_id")
    );
    assert_eq!(env.row(&id).await.status, AccountStatus::Active);
}

#[tokio::test]
async fn rule3_stale_rejection_is_ignored_when_the_user_reconnected_meanwhile() {
    let (env, id, _) = x_account().await;
    env.fake.script_next(ScriptedResponse::json(
        400,
        json!({"error": "invalid_grant", "error_description": "expired"}),
    ));
    env.fake.set_answer_delay(Duration::from_millis(800));

    let refresh = spawn_refresh(&env.engine, &id, Trigger::Scheduled);
    tokio::time::sleep(Duration::from_millis(300)).await;
    // The user reconnects while the provider call is in flight.
    let (_, fresh) = env.connect_x_fresh().await;

    let report = refresh.await.unwrap().unwrap();
    assert_eq!(report.status, AccountStatus::Active);
    assert!(report.message.unwrap().contains("ignored"));
    let row = env.row(&id).await;
    assert_eq!(row.status, AccountStatus::Active);
    assert_eq!(
        env.stored_refresh_token(&id).await.unwrap(),
        fresh.refresh_token
    );
    assert_eq!(env.events(&id).await.len(), 1, "no TOKEN_EXPIRED event");
}

#[tokio::test]
async fn rule4_every_status_change_writes_exactly_one_event() {
    let (env, id, _) = x_account_with(FamilySpec {
        revoke_after: Some(1),
        ..rotating()
    })
    .await;
    env.refresh(&id, Trigger::Forced).await; // ACTIVE -> ACTIVE: no event
    env.refresh(&id, Trigger::Forced).await; // -> TOKEN_EXPIRED
    env.refresh(&id, Trigger::Forced).await; // TOKEN_EXPIRED -> same: no event
    let events = env.events(&id).await;
    let statuses: Vec<_> = events.iter().map(|e| e.1.as_str()).collect();
    assert_eq!(statuses, vec!["ACTIVE", "TOKEN_EXPIRED"]);
}

#[tokio::test]
async fn rule5_attempt_time_is_written_every_time_and_success_clears_errors() {
    let (env, id, _) = x_account().await;
    env.fake
        .script_next(ScriptedResponse::raw(500, "text/plain", "oops"));
    env.refresh(&id, Trigger::Scheduled).await;
    let failed = env.row(&id).await;
    let first_attempt = failed.last_refresh_attempt_at.unwrap();
    assert_eq!(failed.last_refresh_error_status, Some(500));

    env.refresh(&id, Trigger::Forced).await;
    let ok = env.row(&id).await;
    assert!(ok.last_refresh_attempt_at.unwrap() > first_attempt);
    assert!(ok.last_refresh_error.is_none());
    assert!(ok.last_refresh_error_status.is_none());
    assert_eq!(ok.consecutive_failures, 0);
    let history = attempts::for_account(env.pool(), &id, 10).await.unwrap();
    let outcomes: Vec<_> = history.iter().map(|a| a.outcome).collect();
    assert_eq!(outcomes, vec![Outcome::Refreshed, Outcome::TransientError]);
}
