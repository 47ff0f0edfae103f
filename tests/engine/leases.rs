//! Leases and fencing: a lease held elsewhere is waited for only so long, a
//! lost lease does not drop the grant but newer credentials fence it out,
//! and a lease that expired without a result is reported by the next
//! attempt.

use std::time::Duration;

use tokenwarden::domain::{AccountStatus, Outcome, Provider, Trigger};
use tokenwarden::engine::EngineError;

use crate::common::{TestEnv, engine_for, rotating};
use crate::support::{spawn_refresh, x_account};

#[tokio::test]
async fn waiting_for_a_lease_held_elsewhere_is_bounded() {
    let env = TestEnv::with(|s| s.engine.single_flight_wait = Duration::from_secs(1)).await;
    let (id, _) = env.connect(Provider::X, rotating()).await;
    env.update_account(
        &id,
        "lease_owner = 'ghost', lease_until = now() + interval '1 hour', lease_started_at = now()",
    )
    .await;
    let started = std::time::Instant::now();
    let err = env.engine.refresh(&id, Trigger::Forced).await.unwrap_err();
    assert!(matches!(err, EngineError::InFlightTimeout { .. }), "{err}");
    assert!(started.elapsed() < Duration::from_secs(5));
    assert_eq!(
        env.fake.call_count(),
        0,
        "no provider call without the lease"
    );
}

#[tokio::test]
async fn fenced_write_lands_after_a_lost_lease_and_yields_to_newer_credentials() {
    let (env, id, tokens) = x_account().await;
    env.fake.set_answer_delay(Duration::from_millis(800));
    let refresh = spawn_refresh(&env.engine, &id, Trigger::Forced);
    tokio::time::sleep(Duration::from_millis(300)).await;
    // Someone else now holds the lease (as after an expiry and takeover).
    env.update_account(
        &id,
        "lease_owner = 'usurper', lease_until = now() + interval '1 minute'",
    )
    .await;
    // The new tokens are the only copy of the grant: they land because no
    // newer credentials were written (the credentials version is the
    // fence), and the other process's lease is left to it.
    let report = refresh.await.unwrap().unwrap();
    assert_eq!(report.outcome, Outcome::Refreshed);
    let stored = env.stored_refresh_token(&id).await.unwrap();
    assert_ne!(stored, tokens.refresh_token);
    assert!(env.fake.is_live(&stored));
    assert_eq!(
        env.row(&id).await.lease_owner.as_deref(),
        Some("usurper"),
        "the other lease untouched"
    );
    // Newer credentials (a reconnect) do fence a result out.
    env.update_account(&id, "lease_owner = NULL, lease_until = NULL")
        .await;
    let before = env.stored_refresh_token(&id).await.unwrap();
    env.fake.set_answer_delay(Duration::from_millis(800));
    let refresh = spawn_refresh(&env.engine, &id, Trigger::Forced);
    tokio::time::sleep(Duration::from_millis(300)).await;
    env.update_account(&id, "credentials_version = credentials_version + 1")
        .await;
    let report = refresh.await.unwrap().unwrap();
    assert_eq!(report.outcome, Outcome::TransientError);
    assert_eq!(
        env.stored_refresh_token(&id).await.unwrap(),
        before,
        "nothing written"
    );
    env.fake.set_answer_delay(Duration::ZERO);
}

#[tokio::test]
async fn aborted_refresh_is_reported_as_interrupted_by_the_next_attempt() {
    // request timeout 2 s + margin 1 s: the lease lasts 3 s.
    let env = TestEnv::with(|s| {
        s.http.request_timeout = Duration::from_secs(2);
        s.http.rotating_request_timeout = Duration::from_secs(2);
    })
    .await;
    let (id, _) = env.connect(Provider::X, rotating()).await;
    // The platform rotates, then the answer is lost with the process: an
    // engine on a runtime of its own (its own pool) that dies mid-call.
    env.fake.set_answer_delay(Duration::from_millis(1500));
    let (url, settings, keyring, refresh_id) = (
        env.db.url(),
        env.settings.clone(),
        env.keyring.clone(),
        id.clone(),
    );
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Runtime::new().unwrap();
        runtime.spawn(async move {
            let pool = sqlx::PgPool::connect(&url).await.unwrap();
            let engine = engine_for(&pool, &settings, keyring, "dying-process");
            let _ = engine.refresh(&refresh_id, Trigger::Forced).await;
        });
        std::thread::sleep(Duration::from_millis(700));
        runtime.shutdown_background();
    })
    .join()
    .unwrap();
    env.fake.set_answer_delay(Duration::ZERO);
    assert!(
        env.row(&id).await.lease_owner.is_some(),
        "the lease outlives the dead process"
    );

    tokio::time::sleep(Duration::from_millis(3200)).await;
    let report = env
        .other_engine("engine-b")
        .refresh(&id, Trigger::Forced)
        .await
        .unwrap();
    // The strict platform saw the spent token again and revoked the family;
    // its invalid_grant says the grant is dead, not that the user withdrew it.
    assert_eq!(report.outcome, Outcome::RejectedExpired);
    let message = report.message.unwrap();
    assert!(message.contains("interrupted refresh"), "{message}");
    let row = env.row(&id).await;
    assert_eq!(row.status, AccountStatus::TokenExpired);
    assert!(
        row.last_refresh_error
            .unwrap()
            .contains("interrupted refresh")
    );
}

#[tokio::test]
async fn interrupted_flag_clears_after_a_successful_refresh() {
    let (env, id, _) = x_account().await;
    // A lease that expired without a result (the process died before calling out).
    env.update_account(
        &id,
        "lease_owner = 'dead', lease_until = now() - interval '1 second', lease_started_at = now() - interval '30 seconds'",
    )
    .await;
    let report = env.refresh(&id, Trigger::Forced).await;
    assert_eq!(report.outcome, Outcome::Refreshed);
    let row = env.row(&id).await;
    assert!(row.interrupted_refresh_at.is_none());
    assert!(row.lease_owner.is_none());
}
