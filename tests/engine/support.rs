//! Setup the engine tests share: an X account connected to the fake, a
//! refresh that must return a report, and a refresh left running while a
//! test changes the world under it.

use chrono::{DateTime, TimeDelta, Utc};
use tokenwarden::domain::{AccountId, Provider, RefreshReport, Trigger};
use tokenwarden::engine::{Engine, EngineError};
use tokenwarden_fakes::{FamilySpec, IssuedTokens};
use tokio::task::JoinHandle;

use crate::common::{TestEnv, rotating};

/// A world of its own with one X account of a rotating family, due now.
pub async fn x_account() -> (TestEnv, AccountId, IssuedTokens) {
    x_account_with(rotating()).await
}

/// As `x_account`, with the fake's family behaving as `spec` says.
pub async fn x_account_with(spec: FamilySpec) -> (TestEnv, AccountId, IssuedTokens) {
    let env = TestEnv::new().await;
    let (id, tokens) = env.connect(Provider::X, spec).await;
    (env, id, tokens)
}

impl TestEnv {
    /// A refresh by this environment's engine that must end in a report
    /// (an engine error fails the test).
    pub async fn refresh(&self, id: &AccountId, trigger: Trigger) -> RefreshReport {
        self.engine.refresh(id, trigger).await.unwrap()
    }

    /// Connects X with new tokens issued now and expiring in two hours: not
    /// due for a scheduled refresh. Again on a connected account, it is the
    /// user reconnecting (same workspace, provider and external id).
    pub async fn connect_x_fresh(&self) -> (AccountId, IssuedTokens) {
        let tokens = self.fake.issue(rotating());
        let id = self
            .register(
                Provider::X,
                &tokens,
                Utc::now(),
                Some(Utc::now() + TimeDelta::hours(2)),
            )
            .await;
        (id, tokens)
    }

    /// Connects `provider` with new tokens issued an hour ago that expire now.
    pub async fn connect_expiring_now(
        &self,
        provider: Provider,
        spec: FamilySpec,
    ) -> (AccountId, IssuedTokens) {
        let tokens = self.fake.issue(spec);
        let id = self
            .register(
                provider,
                &tokens,
                Utc::now() - TimeDelta::hours(1),
                Some(Utc::now()),
            )
            .await;
        (id, tokens)
    }
}

/// Starts a refresh on a task of its own, for tests that act while it is
/// in flight.
pub fn spawn_refresh(
    engine: &Engine,
    id: &AccountId,
    trigger: Trigger,
) -> JoinHandle<Result<RefreshReport, EngineError>> {
    let (engine, id) = (engine.clone(), id.clone());
    tokio::spawn(async move { engine.refresh(&id, trigger).await })
}

/// `at` lies within ten seconds of `expected`.
#[track_caller]
pub fn assert_near(at: DateTime<Utc>, expected: DateTime<Utc>) {
    assert!((at - expected).num_seconds().abs() < 10);
}
