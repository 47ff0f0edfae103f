//! Scheduler and workers against real PostgreSQL and Redis: every due
//! account refreshed exactly once (one daemon or three), backpressure, a
//! queue that loses its jobs, the expiry sweep, and SIGTERM with refreshes
//! in flight.
//!
//! Over 500 lines on purpose: each test is a whole daemon run (seed, run,
//! wait, audit every account) over one shared harness at the top.

mod common;

use std::sync::Arc;
use std::time::Duration;

use chrono::{TimeDelta, Utc};
use common::{TestEnv, new_account, redis_url, rotating};
use secrecy::SecretString;
use tokenwarden::app::App;
use tokenwarden::config::Settings;
use tokenwarden::daemon::{self, Role};
use tokenwarden::domain::{AccountId, AccountStatus, Provider};
use tokenwarden::policy::RefreshPolicy;
use tokenwarden::scheduler::Scheduler;
use tokenwarden::store::accounts;
use tokenwarden_fakes::IssuedTokens;
use tokio_util::sync::CancellationToken;

fn unique_queue() -> String {
    format!("{{tw-test-{:08x}}}:refresh", rand::random::<u32>())
}

fn tune(settings: &mut Settings) {
    settings.redis.url = Some(SecretString::from(redis_url()));
    settings.scheduler.interval = Duration::from_millis(200);
    settings.scheduler.claim_timeout = Duration::from_secs(8);
    settings.worker.job_timeout = Duration::from_secs(7);
    settings.worker.concurrency = 64;
    settings.worker.poll_interval = Duration::from_millis(50);
    settings.shutdown.grace = Duration::from_secs(10);
}

async fn seed(env: &TestEnv, count: usize) -> Vec<(AccountId, IssuedTokens)> {
    let policy = RefreshPolicy::from(env.settings.providers.get(Provider::X));
    let mut out = Vec::with_capacity(count);
    for i in 0..count {
        let tokens = env.fake.issue(rotating());
        let new = new_account(
            Provider::X,
            &format!("ext-{i}"),
            &tokens,
            Utc::now() - TimeDelta::hours(2),
            Some(Utc::now() + TimeDelta::minutes(1)),
        );
        out.push((
            accounts::register(env.pool(), &env.keyring, &policy, &new)
                .await
                .unwrap()
                .account
                .id,
            tokens,
        ));
    }
    out
}

fn app_for(env: &TestEnv, owner: &str) -> App {
    let engine = env.other_engine(owner);
    App {
        settings: env.settings.clone(),
        pool: env.pool().clone(),
        keyring: env.keyring.clone(),
        engine,
    }
}

async fn wait_until_all_refreshed(env: &TestEnv, count: i64, within: Duration) {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        let refreshed: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM social_accounts WHERE last_refreshed_at IS NOT NULL",
        )
        .fetch_one(env.pool())
        .await
        .unwrap();
        if refreshed >= count {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "only {refreshed}/{count} refreshed in time"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn assert_each_refreshed_exactly_once(env: &TestEnv, seeded: &[(AccountId, IssuedTokens)]) {
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
    for (id, _) in seeded.iter().take(20) {
        assert!(
            env.fake
                .is_live(&env.stored_refresh_token(id).await.unwrap())
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_daemon_refreshes_every_due_account_once() {
    let env = TestEnv::with(tune).await;
    let seeded = seed(&env, 300).await;
    let queue = unique_queue();
    let stop = CancellationToken::new();
    let run = tokio::spawn(daemon::run(
        app_for(&env, "d1"),
        vec![Role::Scheduler, Role::Worker],
        queue.clone(),
        stop.clone(),
    ));
    wait_until_all_refreshed(&env, 300, Duration::from_secs(60)).await;
    // A few more scans trim the queue's bookkeeping of finished jobs.
    tokio::time::sleep(Duration::from_secs(1)).await;
    stop.cancel();
    run.await.unwrap().unwrap();
    assert_each_refreshed_exactly_once(&env, &seeded).await;
    let client = redis::Client::open(redis_url()).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let leftovers: Vec<String> = redis::cmd("KEYS")
        .arg(format!("{queue}:meta:*"))
        .query_async(&mut conn)
        .await
        .unwrap();
    assert!(
        leftovers.len() <= 10,
        "{} finished jobs still kept in Redis",
        leftovers.len()
    );
    tokenwarden::queue::purge(&env.settings, &queue)
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_daemons_share_the_work_without_duplicates() {
    let env = TestEnv::with(tune).await;
    let seeded = seed(&env, 400).await;
    let queue = unique_queue();
    let stop = CancellationToken::new();
    let runs: Vec<_> = ["d1", "d2", "d3"]
        .iter()
        .map(|owner| {
            tokio::spawn(daemon::run(
                app_for(&env, owner),
                vec![Role::Scheduler, Role::Worker],
                queue.clone(),
                stop.clone(),
            ))
        })
        .collect();
    wait_until_all_refreshed(&env, 400, Duration::from_secs(60)).await;
    // Give any duplicate a chance to show up before counting.
    tokio::time::sleep(Duration::from_secs(1)).await;
    stop.cancel();
    for run in runs {
        run.await.unwrap().unwrap();
    }
    assert_each_refreshed_exactly_once(&env, &seeded).await;
    tokenwarden::queue::purge(&env.settings, &queue)
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outstanding_jobs_are_bounded_and_lost_jobs_come_back_after_the_claim_timeout() {
    let env = TestEnv::with(|s| {
        tune(s);
        s.scheduler.max_outstanding = 50;
        s.scheduler.batch_size = 20;
    })
    .await;
    let seeded = seed(&env, 120).await;
    let queue = unique_queue();
    let storage = tokenwarden::queue::connect(&env.settings, &queue)
        .await
        .unwrap();
    let mut scheduler = Scheduler::new(&env.settings, env.pool().clone(), storage, "s1");
    let first = scheduler.tick().await.unwrap();
    assert_eq!(
        first.queued, 50,
        "backpressure: never more than max_outstanding"
    );
    let second = scheduler.tick().await.unwrap();
    assert_eq!((second.outstanding_before, second.queued), (50, 0));

    // Redis loses everything (as FLUSHALL or a restart without persistence
    // would; only this test's keys are dropped so parallel tests live on).
    tokenwarden::queue::purge(&env.settings, &queue)
        .await
        .unwrap();
    let stop = CancellationToken::new();
    let run = tokio::spawn(daemon::run(
        app_for(&env, "d1"),
        vec![Role::Scheduler, Role::Worker],
        queue.clone(),
        stop.clone(),
    ));
    // The 70 unclaimed accounts flow at once; the 50 lost ones after the
    // claim timeout (8 s).
    wait_until_all_refreshed(&env, 120, Duration::from_secs(40)).await;
    stop.cancel();
    run.await.unwrap().unwrap();
    assert_each_refreshed_exactly_once(&env, &seeded).await;
    tokenwarden::queue::purge(&env.settings, &queue)
        .await
        .unwrap();
}

#[tokio::test]
async fn sweep_expires_accounts_whose_credentials_died_by_time() {
    let env = TestEnv::with(tune).await;
    let policy = RefreshPolicy::from(env.settings.providers.get(Provider::Pinterest));
    let tokens = env.fake.issue(rotating());
    let mut dead_rt = new_account(
        Provider::Pinterest,
        "rt-dead",
        &tokens,
        Utc::now() - TimeDelta::days(70),
        Some(Utc::now() + TimeDelta::days(1)),
    );
    dead_rt.refresh_token_expires_at = Some(Utc::now() - TimeDelta::minutes(1));
    let dead_rt = accounts::register(env.pool(), &env.keyring, &policy, &dead_rt)
        .await
        .unwrap()
        .account
        .id;
    let ig_policy = RefreshPolicy::from(env.settings.providers.get(Provider::InstagramLogin));
    let ig = new_account(
        Provider::InstagramLogin,
        "ig",
        &tokens,
        Utc::now() - TimeDelta::days(61),
        Some(Utc::now() - TimeDelta::hours(1)),
    );
    let ig = accounts::register(env.pool(), &env.keyring, &ig_policy, &ig)
        .await
        .unwrap()
        .account
        .id;
    let alive = new_account(
        Provider::X,
        "alive",
        &tokens,
        Utc::now() - TimeDelta::hours(3),
        Some(Utc::now() - TimeDelta::hours(1)),
    );
    let alive = accounts::register(env.pool(), &env.keyring, &policy, &alive)
        .await
        .unwrap()
        .account
        .id;

    let queue = unique_queue();
    let storage = tokenwarden::queue::connect(&env.settings, &queue)
        .await
        .unwrap();
    let mut scheduler = Scheduler::new(&env.settings, env.pool().clone(), storage, "s1");
    let tick = scheduler.tick().await.unwrap();
    assert_eq!(tick.expired, 2);
    for id in [&dead_rt, &ig] {
        let row = env.row(id).await;
        assert_eq!(row.status, AccountStatus::TokenExpired);
        assert!(row.status_reason.unwrap().contains("reconnect"));
        assert_eq!(env.events(id).await.last().unwrap().1, "TOKEN_EXPIRED");
    }
    // An X token past expiry can still be refreshed: it stays ACTIVE.
    assert_eq!(env.row(&alive).await.status, AccountStatus::Active);
    env.assert_expiry_copies().await;
    tokenwarden::queue::purge(&env.settings, &queue)
        .await
        .unwrap();
}

/// An Instagram Login account whose access token expired an hour ago: dead.
async fn register_dead_instagram(env: &TestEnv, tokens: &IssuedTokens) -> AccountId {
    register_dead_instagram_as(env, tokens, "ig", TimeDelta::hours(1)).await
}

/// The sweep finds candidates by the schedule's `dead_at`; the account row
/// decides. A `dead_at` the row does not bear out (written under another
/// `refreshable_after_expiry`) never expires a live account, is recomputed,
/// and cannot keep the sweep's places from an account that is dead.
#[tokio::test]
async fn a_stale_dead_instant_is_recomputed_and_never_holds_the_sweep() {
    let env = TestEnv::with(|s| {
        tune(s);
        s.scheduler.sweep_batch_size = 2;
    })
    .await;
    let policy = RefreshPolicy::from(env.settings.providers.get(Provider::X));
    let tokens = env.fake.issue(rotating());
    let mut alive = Vec::new();
    for n in 0..3 {
        let new = new_account(
            Provider::X,
            &format!("alive-{n}"),
            &tokens,
            Utc::now() - TimeDelta::hours(1),
            Some(Utc::now() + TimeDelta::hours(1)),
        );
        let id = accounts::register(env.pool(), &env.keyring, &policy, &new)
            .await
            .unwrap()
            .account
            .id;
        // Older than the real death below: first in the sweep's order.
        env.update_schedule(&id, "dead_at = now() - interval '1 day'")
            .await;
        alive.push(id);
    }
    let dead = register_dead_instagram(&env, &tokens).await;

    let queue = unique_queue();
    let storage = tokenwarden::queue::connect(&env.settings, &queue)
        .await
        .unwrap();
    let mut scheduler = Scheduler::new(&env.settings, env.pool().clone(), storage, "s1");
    // Two stale candidates fill the first sweep and are put right; the
    // second reaches the dead account.
    assert_eq!(scheduler.tick().await.unwrap().expired, 0);
    assert_eq!(scheduler.tick().await.unwrap().expired, 1);
    assert_eq!(env.row(&dead).await.status, AccountStatus::TokenExpired);
    for id in &alive {
        assert_eq!(env.row(id).await.status, AccountStatus::Active);
    }
    env.assert_expiry_copies().await;
    tokenwarden::queue::purge(&env.settings, &queue)
        .await
        .unwrap();
}

/// A dead account with a refresh in flight is left to that refresh, and
/// keeps its place: the sweep takes it once the lease has expired.
#[tokio::test]
async fn a_dead_account_in_flight_is_swept_once_its_lease_expires() {
    let env = TestEnv::with(tune).await;
    let tokens = env.fake.issue(rotating());
    let dead = register_dead_instagram(&env, &tokens).await;
    env.update_account(
        &dead,
        "lease_owner = 'elsewhere', lease_until = now() + interval '1 minute',
         lease_started_at = now()",
    )
    .await;
    let queue = unique_queue();
    let storage = tokenwarden::queue::connect(&env.settings, &queue)
        .await
        .unwrap();
    let mut scheduler = Scheduler::new(&env.settings, env.pool().clone(), storage, "s1");
    assert_eq!(scheduler.tick().await.unwrap().expired, 0);
    assert_eq!(env.row(&dead).await.status, AccountStatus::Active);
    env.update_account(&dead, "lease_until = now() - interval '1 second'")
        .await;
    assert_eq!(scheduler.tick().await.unwrap().expired, 1);
    assert_eq!(env.row(&dead).await.status, AccountStatus::TokenExpired);
    tokenwarden::queue::purge(&env.settings, &queue)
        .await
        .unwrap();
}

/// Platforms whose access-token expiry is final, as the scheduler passes them.
fn final_expiry(env: &TestEnv) -> Vec<Provider> {
    Provider::ALL
        .iter()
        .copied()
        .filter(|p| !env.settings.providers.get(*p).refreshable_after_expiry)
        .collect()
}

/// An Instagram Login account whose access token expired `ago` ago.
async fn register_dead_instagram_as(
    env: &TestEnv,
    tokens: &IssuedTokens,
    external_id: &str,
    ago: TimeDelta,
) -> AccountId {
    let policy = RefreshPolicy::from(env.settings.providers.get(Provider::InstagramLogin));
    let new = new_account(
        Provider::InstagramLogin,
        external_id,
        tokens,
        Utc::now() - TimeDelta::days(61),
        Some(Utc::now() - ago),
    );
    accounts::register(env.pool(), &env.keyring, &policy, &new)
        .await
        .unwrap()
        .account
        .id
}

/// One sweep with room for one account, as the scheduler runs it: how many
/// it expired.
async fn sweep_one(env: &TestEnv) -> u64 {
    tokenwarden::store::scheduling::sweep_expired(env.pool(), &final_expiry(env), 1)
        .await
        .unwrap()
}

/// A dead account left to its refresh in flight takes no place in the
/// sweep's batch: the dead accounts behind it are swept.
#[tokio::test]
async fn a_dead_account_in_flight_holds_no_place_in_the_sweep() {
    let env = TestEnv::with(tune).await;
    let tokens = env.fake.issue(rotating());
    let in_flight =
        register_dead_instagram_as(&env, &tokens, "ig-leased", TimeDelta::hours(2)).await;
    env.update_account(
        &in_flight,
        "lease_owner = 'elsewhere', lease_until = now() + interval '1 minute',
         lease_started_at = now()",
    )
    .await;
    let dead = register_dead_instagram_as(&env, &tokens, "ig-dead", TimeDelta::hours(1)).await;
    let expired = sweep_one(&env).await;
    assert_eq!(env.row(&in_flight).await.status, AccountStatus::Active);
    assert_eq!(
        (expired, env.row(&dead).await.status),
        (1, AccountStatus::TokenExpired),
        "the dead account behind the one in flight was not swept"
    );
}

/// Scheduler replicas sweeping at once divide the dead accounts: one whose
/// first candidate another holds locked sweeps the next instead.
#[tokio::test]
async fn concurrent_sweeps_divide_the_dead_accounts() {
    let env = TestEnv::with(tune).await;
    let tokens = env.fake.issue(rotating());
    let first = register_dead_instagram_as(&env, &tokens, "ig-first", TimeDelta::hours(2)).await;
    let second = register_dead_instagram_as(&env, &tokens, "ig-second", TimeDelta::hours(1)).await;
    // Another replica's sweep holds the first candidate's row lock.
    let mut other = env.pool().begin().await.unwrap();
    sqlx::query("SELECT id FROM social_accounts WHERE id = $1 FOR UPDATE")
        .bind(first.as_str())
        .execute(&mut *other)
        .await
        .unwrap();
    let expired = sweep_one(&env).await;
    other.rollback().await.unwrap();
    assert_eq!(
        (expired, env.row(&second).await.status),
        (1, AccountStatus::TokenExpired),
        "a concurrent sweep expired nothing while another dead account waited"
    );
}

#[tokio::test]
async fn a_paused_provider_postpones_its_accounts_without_touching_status() {
    let env = TestEnv::with(tune).await;
    let gates = Arc::new(tokenwarden::gate::ProviderGates::from_settings(
        &env.settings,
    ));
    gates.record(
        Provider::X,
        tokenwarden::domain::Outcome::RateLimited,
        Some(Duration::from_secs(120)),
    );
    assert!(gates.is_paused(Provider::X));
    assert!(
        !gates.is_paused(Provider::Pinterest),
        "other providers unaffected"
    );
    let seeded = seed(&env, 1).await;
    let queue = unique_queue();
    let storage = tokenwarden::queue::connect(&env.settings, &queue)
        .await
        .unwrap();
    let mut scheduler = Scheduler::new(&env.settings, env.pool().clone(), storage, "s1");
    assert_eq!(scheduler.tick().await.unwrap().queued, 1);
    let row = env.row(&seeded[0].0).await;
    let job = tokenwarden::queue::RefreshJob {
        account_id: row.id.clone(),
        provider: Provider::X,
        trigger: tokenwarden::domain::Trigger::Scheduled,
        claim_id: row.claim_id.unwrap(),
        planned_at: Utc::now(),
    };
    let ctx = tokenwarden::queue::worker::JobContext {
        engine: env.engine.clone(),
        gates,
        pool: env.pool().clone(),
        job_timeout: Duration::from_secs(7),
        refreshes: tokio_util::task::TaskTracker::new(),
    };
    ctx.process(job).await;
    assert_eq!(
        env.fake.call_count(),
        0,
        "no request before the provider's deadline"
    );
    let row = env.row(&seeded[0].0).await;
    assert_eq!(row.status, AccountStatus::Active);
    assert!(row.claim_id.is_none());
    let wait = (row.next_attempt_at.unwrap() - Utc::now()).num_seconds();
    assert!(
        (110..=121).contains(&wait),
        "postponed to the reset, got {wait}s"
    );
    tokenwarden::queue::purge(&env.settings, &queue)
        .await
        .unwrap();
}

/// Inserts `count` X accounts due now in bulk (registration one by one is
/// measured elsewhere and would dominate this test's time).
async fn seed_bulk(env: &TestEnv, count: usize) {
    use tokenwarden::crypto::Field;
    for start in (0..count).step_by(5_000) {
        let end = (start + 5_000).min(count);
        let (mut ids, mut ats, mut rts) = (Vec::new(), Vec::new(), Vec::new());
        for _ in start..end {
            let tokens = env.fake.issue(rotating());
            let id = AccountId::generate();
            ats.push(
                env.keyring
                    .encrypt(&id, Field::AccessToken, &tokens.access_token),
            );
            rts.push(
                env.keyring
                    .encrypt(&id, Field::RefreshToken, &tokens.refresh_token),
            );
            ids.push(id.to_string());
        }
        sqlx::query(
            "WITH a AS (
                 INSERT INTO social_accounts (id, workspace_id, provider, external_id, token_issued_at, token_expires_at,
                     access_token_ciphertext, refresh_token_ciphertext, credentials_key_id)
                 SELECT u.id, 'ws', 'X', u.id, now() - interval '1 hour', now() + interval '20 minutes', u.at, u.rt, $4
                 FROM unnest($1::text[], $2::bytea[], $3::bytea[]) AS u(id, at, rt)
                 RETURNING id)
             INSERT INTO account_schedule (account_id, next_attempt_at) SELECT id, now() FROM a",
        )
        .bind(&ids)
        .bind(&ats)
        .bind(&rts)
        .bind(env.keyring.primary_key_id())
        .execute(env.pool())
        .await
        .unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_thousand_accounts_due_at_once_all_refresh_and_the_queue_never_fails() {
    let env = TestEnv::with(|s| {
        tune(s);
        s.scheduler.claim_timeout = Duration::from_secs(120);
        s.worker.concurrency = 256;
        s.providers.x.rate_per_second = 100_000.0;
        s.providers.x.max_concurrency = 256;
        s.database.max_connections = 16;
    })
    .await;
    seed_bulk(&env, 50_000).await;
    let queue = unique_queue();
    let stop = CancellationToken::new();
    let run = tokio::spawn(daemon::run(
        app_for(&env, "d1"),
        vec![Role::Scheduler, Role::Worker],
        queue.clone(),
        stop.clone(),
    ));
    wait_until_all_refreshed(&env, 50_000, Duration::from_secs(600)).await;
    stop.cancel();
    // The daemon's roles ran to the end without an error (a failing queue
    // would have stopped the worker pool).
    run.await.unwrap().unwrap();
    assert_eq!(env.fake.call_count(), 50_000);
    assert_eq!(env.fake.reuse_detected(), 0);
    tokenwarden::queue::purge(&env.settings, &queue)
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_platform_down_for_minutes_is_paused_without_status_changes_and_others_carry_on() {
    let env = TestEnv::with(|s| {
        tune(s);
        s.circuit.min_calls = 10;
        s.circuit.window = 20;
        s.circuit.cooldown = Duration::from_secs(4);
    })
    .await;
    // X answers 503 to everything; Pinterest is healthy.
    let policy = RefreshPolicy::from(env.settings.providers.get(Provider::X));
    for i in 0..30 {
        let tokens = env.fake.issue(tokenwarden_fakes::FamilySpec {
            fail_every: Some(1),
            ..rotating()
        });
        let new = new_account(
            Provider::X,
            &format!("x-{i}"),
            &tokens,
            Utc::now() - TimeDelta::hours(2),
            Some(Utc::now() + TimeDelta::minutes(1)),
        );
        accounts::register(env.pool(), &env.keyring, &policy, &new)
            .await
            .unwrap();
    }
    let pinterest = RefreshPolicy::from(env.settings.providers.get(Provider::Pinterest));
    for i in 0..10 {
        let tokens = env.fake.issue(rotating());
        let new = new_account(
            Provider::Pinterest,
            &format!("p-{i}"),
            &tokens,
            Utc::now() - TimeDelta::hours(2),
            Some(Utc::now() + TimeDelta::minutes(1)),
        );
        accounts::register(env.pool(), &env.keyring, &pinterest, &new)
            .await
            .unwrap();
    }
    let queue = unique_queue();
    let stop = CancellationToken::new();
    let run = tokio::spawn(daemon::run(
        app_for(&env, "d1"),
        vec![Role::Scheduler, Role::Worker],
        queue.clone(),
        stop.clone(),
    ));
    tokio::time::sleep(Duration::from_secs(12)).await;
    stop.cancel();
    run.await.unwrap().unwrap();

    let calls = env.fake.calls();
    let x_calls = calls.iter().filter(|c| c.path == "/x/token").count();
    let pinterest_calls = calls
        .iter()
        .filter(|c| c.path == "/pinterest/token")
        .count();
    // Without the breaker each X account would be retried every ~2 s
    // (Retry-After): about 30 x 6 calls in 12 s.
    assert!(x_calls <= 30 + 6, "X was not paused: {x_calls} calls");
    assert_eq!(pinterest_calls, 10, "other platforms unaffected");
    let statuses: Vec<(String, i64)> =
        sqlx::query_as("SELECT status, count(*) FROM social_accounts GROUP BY status")
            .fetch_all(env.pool())
            .await
            .unwrap();
    assert_eq!(
        statuses,
        vec![("ACTIVE".to_owned(), 40)],
        "no status change"
    );
    let refreshed: i64 = sqlx::query_scalar("SELECT count(*) FROM social_accounts WHERE provider = 'PINTEREST' AND last_refreshed_at IS NOT NULL")
        .fetch_one(env.pool())
        .await
        .unwrap();
    assert_eq!(refreshed, 10);
    tokenwarden::queue::purge(&env.settings, &queue)
        .await
        .unwrap();
}

#[tokio::test]
async fn with_workers_down_timed_out_claims_do_not_pile_up_in_the_queue() {
    let env = TestEnv::with(|s| {
        tune(s);
        s.scheduler.max_outstanding = 50;
    })
    .await;
    seed(&env, 120).await;
    let queue = unique_queue();
    let storage = tokenwarden::queue::connect(&env.settings, &queue)
        .await
        .unwrap();
    let mut scheduler = Scheduler::new(&env.settings, env.pool().clone(), storage.clone(), "s1");
    assert_eq!(scheduler.tick().await.unwrap().queued, 50);
    // No worker runs; the claims time out.
    sqlx::query(
        "UPDATE account_schedule SET claimed_at = now() - interval '1 hour', next_attempt_at = now() - interval '1 second'
         WHERE claim_id IS NOT NULL",
    )
    .execute(env.pool())
    .await
    .unwrap();
    let again = scheduler.tick().await.unwrap();
    assert_eq!(
        again.queued, 0,
        "the 50 jobs still queued count against the bound"
    );
    let mut storage = storage;
    assert_eq!(tokenwarden::queue::depth(&mut storage).await.unwrap(), 50);
    tokenwarden::queue::purge(&env.settings, &queue)
        .await
        .unwrap();
}

/// Issue 10: one platform, one account answering each account-scoped
/// Pinterest row of docs/platform-answers.md, three good accounts due at the
/// same moment. The scheduler claims them all, the workers run them through
/// the gate: the good accounts are refreshed on time and the platform is
/// never paused. Then app-level answers (`invalid_client`) from
/// `circuit.app_error_accounts` distinct accounts pause it, and the gauge the
/// TokenwardenProviderConfigError alert watches goes to 1.
#[tokio::test]
async fn an_accounts_own_answers_never_pause_the_platform_but_several_accounts_app_errors_do() {
    use tokenwarden::config::Flow;
    use tokenwarden::gate::ProviderGates;
    use tokenwarden::queue::RefreshJob;
    use tokenwarden::queue::worker::JobContext;
    use tokenwarden_fakes::{FakePinterest, PinterestGrant, ScriptedResponse};

    tokenwarden::metrics::install();
    let fake = FakePinterest::start(common::CLIENT_ID, common::CLIENT_SECRET)
        .await
        .unwrap();
    let url = fake.token_url();
    let env = TestEnv::with(|s| {
        tune(s);
        let section = s.providers.get_mut(Provider::Pinterest);
        section.flow = Flow::Pinterest;
        section.token_url = Some(url);
        section.client_id = Some(common::CLIENT_ID.into());
        section.client_secret = Some(SecretString::from(common::CLIENT_SECRET));
    })
    .await;
    let policy = RefreshPolicy::from(env.settings.providers.get(Provider::Pinterest));
    let register = |name: String, access: String, refresh: String| {
        let (env, policy) = (&env, &policy);
        async move {
            let tokens = IssuedTokens {
                access_token: access,
                refresh_token: refresh,
                expires_in: 0,
            };
            // Due now: the access token expires in two minutes.
            let new = new_account(
                Provider::Pinterest,
                &name,
                &tokens,
                Utc::now() - TimeDelta::days(29),
                Some(Utc::now() + TimeDelta::minutes(2)),
            );
            accounts::register(env.pool(), &env.keyring, policy, &new)
                .await
                .unwrap()
                .account
                .id
        }
    };

    // The account-scoped failure rows of the table, one account each.
    let table = include_str!("../docs/platform-answers.md");
    let rows: Vec<(u16, String, String)> = table
        .lines()
        .filter_map(|line| {
            let cells: Vec<&str> = line.trim().trim_matches('|').split(" | ").collect();
            (cells.len() == 8 && cells[0].trim() == "pinterest" && cells[5].starts_with("account"))
                .then(|| {
                    let body = cells[2].trim().trim_matches('`').to_owned();
                    (
                        cells[1].trim().parse().unwrap(),
                        body,
                        cells[4].trim().to_owned(),
                    )
                })
        })
        .collect();
    assert!(rows.len() >= 4, "{rows:?}");
    let mut bad = Vec::new();
    for (i, (http, body, status)) in rows.iter().enumerate() {
        let (access, refresh) = fake.issue(PinterestGrant::default());
        let kind = if body.starts_with('{') {
            "application/json"
        } else {
            "text/html"
        };
        fake.answer_for(&refresh, ScriptedResponse::raw(*http, kind, body.clone()));
        bad.push((
            register(format!("bad-{i}"), access, refresh).await,
            status.clone(),
        ));
    }
    let mut good = Vec::new();
    for i in 0..3 {
        let (access, refresh) = fake.issue(PinterestGrant::default());
        good.push(register(format!("good-{i}"), access, refresh).await);
    }

    let gates = Arc::new(ProviderGates::from_settings(&env.settings));
    let queue = unique_queue();
    let storage = tokenwarden::queue::connect(&env.settings, &queue)
        .await
        .unwrap();
    let mut scheduler = Scheduler::new(&env.settings, env.pool().clone(), storage, "s1");
    let ctx = Arc::new(JobContext {
        engine: env.engine.clone(),
        gates: gates.clone(),
        pool: env.pool().clone(),
        job_timeout: Duration::from_secs(7),
        refreshes: tokio_util::task::TaskTracker::new(),
    });
    let job_of = |row: &tokenwarden::store::accounts::AccountRow| RefreshJob {
        account_id: row.id.clone(),
        provider: Provider::Pinterest,
        trigger: tokenwarden::domain::Trigger::Scheduled,
        claim_id: row.claim_id.expect("claimed"),
        planned_at: Utc::now(),
    };
    let started = Utc::now();
    assert_eq!(
        scheduler.tick().await.unwrap().queued,
        bad.len() + good.len(),
        "all due at the same moment"
    );
    // The failing accounts go first, twice (their retries), then the good.
    for (id, _) in &bad {
        ctx.process(job_of(&env.row(id).await)).await;
        assert!(!gates.is_paused(Provider::Pinterest), "paused by {id}");
    }
    for (id, _) in &bad {
        sqlx::query(
            "UPDATE account_schedule SET next_attempt_at = now() - interval '1 second'
             FROM social_accounts WHERE id = $1 AND account_id = id AND status = 'ACTIVE'",
        )
        .bind(id.as_str())
        .execute(env.pool())
        .await
        .unwrap();
    }
    scheduler.tick().await.unwrap();
    let mut jobs = Vec::new();
    for id in bad.iter().map(|(id, _)| id).chain(&good) {
        let row = env.row(id).await;
        if row.claim_id.is_some() {
            jobs.push(job_of(&row));
        }
    }
    let handles: Vec<_> = jobs
        .into_iter()
        .map(|job| {
            let ctx = ctx.clone();
            tokio::spawn(async move { ctx.process(job).await })
        })
        .collect();
    for handle in handles {
        handle.await.unwrap();
    }
    assert!(!gates.is_paused(Provider::Pinterest));
    assert!(!gates.has_config_error(Provider::Pinterest));
    for id in &good {
        let row = env.row(id).await;
        let refreshed = row
            .last_refreshed_at
            .expect("the good account was refreshed");
        assert!(refreshed >= started && refreshed - started < TimeDelta::seconds(30));
        assert!(row.token_expires_at.unwrap() > Utc::now() + TimeDelta::days(29));
    }
    for (id, status) in &bad {
        let row = env.row(id).await;
        assert_eq!(
            row.status.as_str(),
            status,
            "{id}: {:?}",
            row.last_refresh_error
        );
        assert!(row.last_refreshed_at.is_none());
    }
    let rendered = tokenwarden::metrics::render();
    assert!(
        rendered.contains(
            r#"tokenwarden_unrecognised_answers_total{provider="pinterest",http_status="400"}"#
        ),
        "{rendered}"
    );

    // invalid_client from distinct accounts: the app's problem, on evidence.
    let needed = env.settings.circuit.app_error_accounts;
    for i in 0..needed {
        assert!(!gates.is_paused(Provider::Pinterest), "{i} accounts");
        let (access, refresh) = fake.issue(PinterestGrant::default());
        fake.answer_for(
            &refresh,
            ScriptedResponse::json(
                401,
                serde_json::json!({"error": "invalid_client", "error_description": "Client authentication failed"}),
            ),
        );
        let id = register(format!("app-{i}"), access, refresh).await;
        scheduler.tick().await.unwrap();
        ctx.process(job_of(&env.row(&id).await)).await;
        assert_eq!(env.row(&id).await.status, AccountStatus::Active);
    }
    assert!(gates.is_paused(Provider::Pinterest));
    assert!(gates.has_config_error(Provider::Pinterest));
    let stop = CancellationToken::new();
    let watcher = tokio::spawn(tokenwarden::gate::publish_gauges(
        gates.clone(),
        stop.clone(),
    ));
    tokio::time::sleep(Duration::from_millis(200)).await;
    stop.cancel();
    watcher.await.unwrap();
    let rendered = tokenwarden::metrics::render();
    assert!(
        rendered.contains(r#"tokenwarden_provider_config_error{provider="pinterest"} 1"#),
        "the alert's input: {rendered}"
    );
    tokenwarden::queue::purge(&env.settings, &queue)
        .await
        .unwrap();
}
