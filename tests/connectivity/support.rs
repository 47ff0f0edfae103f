//! The daemon (scheduler and workers) against the test database, the fake
//! platform and whichever Redis a test started, and the audit afterwards.

use std::time::{Duration, Instant};

use chrono::{TimeDelta, Utc};
use secrecy::SecretString;
use tokenwarden::app::App;
use tokenwarden::config::Settings;
use tokenwarden::daemon::{self, Role};
use tokenwarden::domain::{AccountId, Provider};
use tokenwarden::policy::RefreshPolicy;
use tokenwarden::store::accounts;
use tokenwarden_fakes::IssuedTokens;
use tokio_util::sync::CancellationToken;

use crate::common::{TestEnv, new_account, rotating};

/// Short intervals so a test sees many scheduler ticks and worker polls.
pub fn tune(settings: &mut Settings, redis_url: &str) {
    settings.redis.url = Some(SecretString::from(redis_url.to_owned()));
    settings.redis.response_timeout = Duration::from_secs(2);
    settings.scheduler.interval = Duration::from_millis(200);
    settings.scheduler.claim_timeout = Duration::from_secs(8);
    settings.worker.job_timeout = Duration::from_secs(7);
    settings.worker.concurrency = 16;
    settings.worker.poll_interval = Duration::from_millis(50);
    settings.worker.heartbeat_interval = Duration::from_secs(1);
    settings.shutdown.grace = Duration::from_secs(10);
}

/// Accounts due now, named `{prefix}-{i}`.
pub async fn seed(env: &TestEnv, prefix: &str, count: usize) -> Vec<(AccountId, IssuedTokens)> {
    let policy = RefreshPolicy::from(env.settings.providers.get(Provider::X));
    let mut out = Vec::with_capacity(count);
    for i in 0..count {
        let tokens = env.fake.issue(rotating());
        let new = new_account(
            Provider::X,
            &format!("{prefix}-{i}"),
            &tokens,
            Utc::now() - TimeDelta::hours(2),
            Some(Utc::now() + TimeDelta::minutes(1)),
        );
        let id = accounts::register(env.pool(), &env.keyring, &policy, &new)
            .await
            .unwrap()
            .account
            .id;
        out.push((id, tokens));
    }
    out
}

pub async fn refreshed(env: &TestEnv) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM social_accounts WHERE last_refreshed_at IS NOT NULL")
        .fetch_one(env.pool())
        .await
        .unwrap()
}

/// Waits until `count` accounts are refreshed; returns how long it took.
pub async fn wait_until_refreshed(env: &TestEnv, count: i64, within: Duration) -> Duration {
    let started = Instant::now();
    loop {
        let done = refreshed(env).await;
        if done >= count {
            return started.elapsed();
        }
        assert!(
            started.elapsed() < within,
            "only {done}/{count} refreshed within {within:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// One provider call and one `refreshed` attempt per account, and the
/// stored token is the live one: nothing lost, nothing done twice.
pub async fn assert_each_refreshed_exactly_once(
    env: &TestEnv,
    seeded: &[(AccountId, IssuedTokens)],
) {
    assert_eq!(
        env.fake.call_count(),
        seeded.len(),
        "one provider call per account"
    );
    assert_eq!(env.fake.reuse_detected(), 0);
    let attempts: i64 =
        sqlx::query_scalar("SELECT count(*) FROM refresh_attempts WHERE outcome = 'refreshed'")
            .fetch_one(env.pool())
            .await
            .unwrap();
    assert_eq!(attempts as usize, seeded.len());
    for (id, _) in seeded {
        assert!(
            env.fake
                .is_live(&env.stored_refresh_token(id).await.unwrap())
        );
    }
}

/// A daemon with the scheduler and worker roles.
pub struct Daemon {
    stop: CancellationToken,
    run: tokio::task::JoinHandle<anyhow::Result<()>>,
}

impl Daemon {
    pub fn start(env: &TestEnv, queue: &str) -> Self {
        let app = App {
            settings: env.settings.clone(),
            pool: env.pool().clone(),
            keyring: env.keyring.clone(),
            engine: env.other_engine("connectivity"),
        };
        let stop = CancellationToken::new();
        let run = tokio::spawn(daemon::run(
            app,
            vec![Role::Scheduler, Role::Worker],
            queue.to_owned(),
            stop.clone(),
        ));
        Self { stop, run }
    }

    pub async fn stop(self) {
        self.stop.cancel();
        self.run.await.unwrap().unwrap();
    }
}
