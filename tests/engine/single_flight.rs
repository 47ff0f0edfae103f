//! Single flight: however many callers ask at once, in one process or
//! several, the platform sees one refresh call.

use std::time::Duration;

use tokenwarden::domain::{Outcome, Trigger};

use crate::support::x_account;

#[tokio::test]
async fn two_tasks_racing_make_one_provider_call() {
    let (env, id, _) = x_account().await;
    env.fake.set_answer_delay(Duration::from_millis(300));
    let (a, b) = tokio::join!(
        env.engine.refresh(&id, Trigger::Forced),
        env.engine.refresh(&id, Trigger::Forced)
    );
    let (a, b) = (a.unwrap(), b.unwrap());
    assert_eq!(env.fake.call_count(), 1);
    assert_eq!(
        (a.outcome, b.outcome),
        (Outcome::Refreshed, Outcome::Refreshed)
    );
    assert!(a.joined ^ b.joined, "one led, one joined");
    let stored = env.stored_refresh_token(&id).await.unwrap();
    assert!(
        env.fake.is_live(&stored),
        "the account still holds a working refresh token"
    );
}

#[tokio::test]
async fn two_engines_racing_on_the_database_lease_make_one_provider_call() {
    let (env, id, _) = x_account().await;
    let other = env.other_engine("engine-b");
    env.fake.set_answer_delay(Duration::from_millis(500));
    let (a, b) = tokio::join!(
        env.engine.refresh(&id, Trigger::Forced),
        other.refresh(&id, Trigger::Forced)
    );
    let (a, b) = (a.unwrap(), b.unwrap());
    assert_eq!(
        env.fake.call_count(),
        1,
        "one provider call across both engines"
    );
    assert_eq!(env.fake.reuse_detected(), 0);
    assert_eq!(
        (a.outcome, b.outcome),
        (Outcome::Refreshed, Outcome::Refreshed)
    );
    assert!(a.joined ^ b.joined);
    assert!(
        env.fake
            .is_live(&env.stored_refresh_token(&id).await.unwrap())
    );
}

/// Ten simultaneous forced refreshes per round, 50 rounds, split over two
/// engines (two processes' worth of leases and flight tables) and all to
/// one: exactly one platform call per round. A caller that reaches the
/// lease just after another refresh released it takes that refresh, which
/// finished after the caller asked, as its answer.
#[tokio::test]
async fn every_forced_burst_makes_exactly_one_platform_call() {
    let (env, id, _) = x_account().await;
    let engines = [env.engine.clone(), env.other_engine("engine-b")];
    for split in [true, false] {
        for round in 0..50 {
            let before = env.fake.call_count();
            let requested_at = chrono::Utc::now();
            let callers: Vec<_> = (0..10)
                .map(|i| {
                    let engine = engines[if split { i % 2 } else { 0 }].clone();
                    let id = id.clone();
                    tokio::spawn(async move {
                        engine
                            .refresh_requested_at(&id, Trigger::Forced, requested_at)
                            .await
                    })
                })
                .collect();
            for caller in callers {
                let report = caller.await.unwrap().unwrap();
                assert!(report.succeeded(), "{report:?}");
            }
            assert_eq!(
                env.fake.call_count() - before,
                1,
                "round {round} (split over two engines: {split})"
            );
        }
    }
    assert_eq!(env.fake.reuse_detected(), 0);
    let stored = env.stored_refresh_token(&id).await.unwrap();
    assert!(env.fake.is_live(&stored));
}
