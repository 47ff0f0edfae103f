//! Write-first custody: the refresh token the daemon holds is never lost.
//! An answer is written before anything else happens; a caller going away,
//! a panic or a database refusing the write never strands an account, and
//! what could not be kept is recorded as lost.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tokenwarden::domain::{AccountStatus, Outcome, Provider, Trigger};
use tokenwarden::engine::{Engine, EngineConfig, EngineError, FaultHook, Phase};
use tokenwarden::providers::ProviderRegistry;
use tokenwarden::store::attempts;

use crate::common::{TestEnv, google_like};
use crate::support::{spawn_refresh, x_account};

#[tokio::test]
async fn response_without_refresh_token_keeps_the_stored_one() {
    let env = TestEnv::new().await;
    let (id, tokens) = env
        .connect_expiring_now(Provider::Youtube, google_like())
        .await;
    let old_access = env.stored_access_token(&id).await;
    let report = env.refresh(&id, Trigger::Scheduled).await;
    assert_eq!(report.outcome, Outcome::Refreshed);
    assert_eq!(
        env.stored_refresh_token(&id).await.unwrap(),
        tokens.refresh_token
    );
    assert_ne!(env.stored_access_token(&id).await, old_access);
}

#[tokio::test]
async fn a_rotated_refresh_token_does_not_inherit_the_spent_tokens_expiry() {
    let (env, id, _) = x_account().await;
    env.update_account(&id, "refresh_token_expires_at = now() + interval '1 day'")
        .await;
    env.refresh(&id, Trigger::Forced).await;
    // X's refresh-token lifetime is unknown (unset): the new token's expiry
    // is unknown too, not the old one's.
    assert_eq!(env.row(&id).await.refresh_token_expires_at, None);
    env.assert_expiry_copies().await;
}

/// A caller that goes away (an HTTP client that hangs up, a job timeout)
/// never cuts the refresh it started: the refresh runs to its write.
#[tokio::test]
async fn a_caller_going_away_does_not_cut_its_refresh() {
    let (env, id, _) = x_account().await;
    env.fake.set_answer_delay(Duration::from_millis(800));
    let caller = spawn_refresh(&env.engine, &id, Trigger::Forced);
    tokio::time::sleep(Duration::from_millis(300)).await;
    caller.abort();
    let _ = caller.await;
    env.engine.refreshes().close();
    tokio::time::timeout(Duration::from_secs(10), env.engine.refreshes().wait())
        .await
        .expect("the refresh finishes");
    let row = env.row(&id).await;
    assert!(row.lease_owner.is_none());
    assert_eq!(row.status, AccountStatus::Active);
    let stored = env.stored_refresh_token(&id).await.unwrap();
    assert!(env.fake.is_live(&stored), "the rotated token was stored");
    assert_eq!(env.fake.call_count(), 1);
}

/// A panic injected at any phase of a refresh ends as a recorded failed
/// attempt with the lease released; the account is never left leased and
/// silently ACTIVE.
#[tokio::test]
async fn a_panic_at_any_phase_ends_as_a_recorded_failure_with_the_lease_released() {
    for phase in [Phase::Leased, Phase::Answered, Phase::Written] {
        let (env, id, _) = x_account().await;
        let fired = Arc::new(AtomicBool::new(false));
        let mut config = EngineConfig::from_settings(&env.settings);
        config.owner = "panicking".into();
        let once = fired.clone();
        config.fault_hook = Some(FaultHook(Arc::new(move |at| {
            if at == phase && !once.swap(true, Ordering::SeqCst) {
                panic!("injected fault at {at:?}");
            }
        })));
        let providers =
            ProviderRegistry::from_settings(&env.settings.providers, &env.settings.http).unwrap();
        let engine = Engine::new(env.db.pool.clone(), env.keyring.clone(), providers, config);

        let report = engine.refresh(&id, Trigger::Forced).await.unwrap();
        assert!(fired.load(Ordering::SeqCst), "{phase:?}");
        assert_eq!(report.outcome, Outcome::TransientError, "{phase:?}");
        assert!(report.message.unwrap().starts_with("internal error"));
        let row = env.row(&id).await;
        assert!(row.lease_owner.is_none(), "{phase:?}: lease released");
        assert_eq!(row.status, AccountStatus::Active);
        assert!(
            row.last_refresh_error
                .unwrap()
                .starts_with("internal error")
        );
        let attempts = attempts::for_account(&env.db.pool, &id, 1).await.unwrap();
        assert_eq!(attempts[0].outcome, Outcome::TransientError, "{phase:?}");
        assert!(engine.grants_in_hand().is_empty());

        // The next refresh (no fault) tells the truth about what was lost.
        let next = engine.refresh(&id, Trigger::Forced).await.unwrap();
        match phase {
            // Before the call, or after the write: nothing was lost.
            Phase::Leased | Phase::Written => {
                assert_eq!(next.outcome, Outcome::Refreshed, "{phase:?}: {next:?}")
            }
            // The platform rotated and the answer died with the panic.
            Phase::Answered => {
                let message = next.message.unwrap();
                assert!(
                    message.contains("interrupted refresh")
                        && message.contains("stopped on an internal error"),
                    "{message}"
                );
            }
        }
        env.assert_expiry_copies().await;
    }
}

// ---- the database refusing the write of new tokens ------------------------

/// Makes every write of new credentials in this test's schema fail with
/// `sqlstate` while the `refuse_credentials` table holds a row.
async fn refuse_credential_writes(env: &TestEnv, sqlstate: &str) {
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
        "CREATE TABLE refuse_credentials (on_ boolean);
         INSERT INTO refuse_credentials VALUES (true);
         CREATE FUNCTION refuse_credentials() RETURNS trigger LANGUAGE plpgsql AS $$
         BEGIN
             IF NEW.credentials_version <> OLD.credentials_version
                AND EXISTS (SELECT 1 FROM refuse_credentials) THEN
                 RAISE EXCEPTION 'refused by the test' USING ERRCODE = '{sqlstate}';
             END IF;
             RETURN NEW;
         END $$;
         CREATE TRIGGER refuse_credentials BEFORE UPDATE ON social_accounts
             FOR EACH ROW EXECUTE FUNCTION refuse_credentials();"
    )))
    .execute(env.pool())
    .await
    .unwrap();
}

/// Lets the database take credential writes again.
async fn accept_credential_writes(env: &TestEnv) {
    sqlx::query("DELETE FROM refuse_credentials")
        .execute(env.pool())
        .await
        .unwrap();
}

/// A disk-full (53100) refusal passes: the new tokens are kept in hand and
/// land once the database takes writes again.
#[tokio::test]
async fn a_full_disk_is_waited_out_with_the_grant_in_hand() {
    let (env, id, _) = x_account().await;
    refuse_credential_writes(&env, "53100").await;
    let refresh = spawn_refresh(&env.engine, &id, Trigger::Forced);
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(env.engine.grants_in_hand(), vec![id.clone()]);
    accept_credential_writes(&env).await;
    let report = tokio::time::timeout(Duration::from_secs(10), refresh)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(report.outcome, Outcome::Refreshed);
    assert!(env.engine.grants_in_hand().is_empty());
    let stored = env.stored_refresh_token(&id).await.unwrap();
    assert!(env.fake.is_live(&stored));
}

/// A refusal the database will repeat (an integrity violation) loses the
/// grant; the record says so, and a later rejection names it.
#[tokio::test]
async fn a_grant_the_database_refuses_for_good_is_recorded_as_lost() {
    let (env, id, _) = x_account().await;
    refuse_credential_writes(&env, "23514").await;
    let err = env.engine.refresh(&id, Trigger::Forced).await.unwrap_err();
    assert!(matches!(err, EngineError::Database(_)), "{err}");
    let row = env.row(&id).await;
    assert!(row.lease_owner.is_none());
    assert_eq!(row.status, AccountStatus::Active);
    assert_eq!(
        row.last_refresh_error.as_deref(),
        Some("the platform answered, but the database refused the new tokens (SQLSTATE 23514)")
    );
    assert!(row.interrupted_refresh_at.is_some());
    accept_credential_writes(&env).await;
    let report = env.refresh(&id, Trigger::Forced).await;
    let message = report.message.unwrap();
    assert!(
        message.contains("was answered, but the database refused its new tokens"),
        "{message}"
    );
}
