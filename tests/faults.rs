//! Process and dependency faults with the daemon as real processes: workers
//! killed with SIGKILL at every stage of a refresh, and PostgreSQL out of
//! reach for 30 s (cut at a TCP proxy so parallel tests keep their database).
//!
//! Over 500 lines on purpose: each fault is one scenario written out in
//! order (start, strike, restart, audit custody) over one shared harness;
//! splitting would separate the scenarios from the harness they read as.

mod common;

use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine as _;
use chrono::{TimeDelta, Utc};
use common::proxy::Proxy;
use common::{CLIENT_ID, CLIENT_SECRET, TestDb, new_account, redis_url, rotating};
use secrecy::SecretString;
use tokenwarden::crypto::Keyring;
use tokenwarden::domain::{AccountId, AccountStatus, Outcome, Provider, Trigger};
use tokenwarden::policy::RefreshPolicy;
use tokenwarden::store::accounts;
use tokenwarden_fakes::FakeOAuthServer;

const BIN: &str = env!("CARGO_BIN_EXE_tokenwarden");

struct World {
    db: TestDb,
    fake: FakeOAuthServer,
    key_spec: String,
    keyring: Arc<Keyring>,
    queue: String,
}

impl World {
    async fn new(accounts: usize, spread: TimeDelta) -> (Self, Vec<AccountId>) {
        let db = TestDb::new().await;
        let fake = FakeOAuthServer::start(CLIENT_ID, CLIENT_SECRET)
            .await
            .unwrap();
        let key_spec = format!(
            "f1:{}",
            base64::engine::general_purpose::STANDARD.encode([6u8; 32])
        );
        let keyring = Arc::new(Keyring::parse(&SecretString::from(key_spec.clone())).unwrap());
        let settings = common::settings_for(&fake);
        let policy = RefreshPolicy::from(settings.providers.get(Provider::X));
        let mut ids = Vec::new();
        for i in 0..accounts {
            let tokens = fake.issue(rotating());
            let new = new_account(
                Provider::X,
                &format!("ext-{i}"),
                &tokens,
                Utc::now() - TimeDelta::hours(2),
                Some(Utc::now() + TimeDelta::minutes(10)),
            );
            let id = accounts::register(&db.pool, &keyring, &policy, &new)
                .await
                .unwrap()
                .account
                .id;
            // Due times spread over `spread` from now.
            let offset = spread * i as i32 / accounts as i32;
            sqlx::query("UPDATE account_schedule SET next_attempt_at = now() + make_interval(secs => $2) WHERE account_id = $1")
                .bind(id.as_str())
                .bind(offset.num_milliseconds() as f64 / 1000.0)
                .execute(&db.pool)
                .await
                .unwrap();
            ids.push(id);
        }
        let queue = format!("{{tw-test-{:08x}}}:refresh", rand::random::<u32>());
        (
            Self {
                db,
                fake,
                key_spec,
                keyring,
                queue,
            },
            ids,
        )
    }

    fn daemon(&self, database_url: &str, extra: &[(&str, &str)]) -> Child {
        self.command(database_url, extra).spawn().unwrap()
    }

    /// The daemon as `daemon` starts it, with its log (stderr) in `log`.
    fn daemon_logged(
        &self,
        database_url: &str,
        extra: &[(&str, &str)],
        log: &std::path::Path,
    ) -> Child {
        self.command(database_url, extra)
            .stderr(std::fs::File::create(log).unwrap())
            .spawn()
            .unwrap()
    }

    fn command(&self, database_url: &str, extra: &[(&str, &str)]) -> Command {
        let mut cmd = Command::new(BIN);
        for (key, _) in std::env::vars().filter(|(k, _)| k.starts_with("TOKENWARDEN")) {
            cmd.env_remove(key);
        }
        cmd.env_remove("RUST_LOG")
            .env("TOKENWARDEN__DATABASE__URL", database_url)
            .env("TOKENWARDEN__DATABASE__ACQUIRE_TIMEOUT", "2s")
            .env("TOKENWARDEN__CRYPTO__KEYS", &self.key_spec)
            .env("TOKENWARDEN__REDIS__URL", redis_url())
            .env("TOKENWARDEN__REDIS__QUEUE", &self.queue)
            .env(
                "TOKENWARDEN__PROVIDERS__X__TOKEN_URL",
                self.fake.url("/x/token").as_str(),
            )
            .env("TOKENWARDEN__PROVIDERS__X__CLIENT_ID", CLIENT_ID)
            .env("TOKENWARDEN__PROVIDERS__X__CLIENT_SECRET", CLIENT_SECRET)
            .env("TOKENWARDEN__HTTP__REQUEST_TIMEOUT", "5s")
            .env("TOKENWARDEN__HTTP__ROTATING_REQUEST_TIMEOUT", "5s")
            .env("TOKENWARDEN__ENGINE__LEASE_MARGIN", "1s")
            .env("TOKENWARDEN__SCHEDULER__INTERVAL", "200ms")
            .env("TOKENWARDEN__SCHEDULER__CLAIM_TIMEOUT", "10s")
            .env("TOKENWARDEN__WORKER__JOB_TIMEOUT", "8s")
            .env("TOKENWARDEN__WORKER__POLL_INTERVAL", "50ms")
            .env("TOKENWARDEN__WORKER__HEARTBEAT_INTERVAL", "1s")
            .env("TOKENWARDEN__WORKER__MISSED_HEARTBEATS", "3")
            .env("TOKENWARDEN__PROVIDERS__X__RATE_PER_SECOND", "1000")
            // Every role runs, the API on a port of its own.
            .env("TOKENWARDEN__API__LISTEN", "127.0.0.1:0")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        for (key, value) in extra {
            cmd.env(key, value);
        }
        cmd.arg("run");
        cmd
    }

    async fn count(&self, sql: &str) -> i64 {
        sqlx::query_scalar(sqlx::AssertSqlSafe(sql.to_owned()))
            .fetch_one(&self.db.pool)
            .await
            .unwrap()
    }

    async fn purge(&self) {
        common::purge_queue(&self.queue).await;
    }
}

fn stop(mut child: Child) {
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let _ = child.wait();
}

#[tokio::test]
async fn sigkill_at_every_stage_loses_nothing_silently() {
    let (world, ids) = World::new(60, TimeDelta::zero()).await;
    // The platform acts at once and answers 3 s later; a slow gate keeps
    // other jobs waiting before their lease or their call.
    world.fake.set_answer_delay(Duration::from_secs(3));
    let first = world.daemon(
        &world.db.url(),
        &[("TOKENWARDEN__PROVIDERS__X__RATE_PER_SECOND", "10")],
    );
    let started = Instant::now();
    while world.fake.call_count() < 10 && started.elapsed() < Duration::from_secs(20) {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let mut first = first;
    first.kill().unwrap(); // SIGKILL: before, during and after provider calls
    first.wait().unwrap();
    // Requests the killed process had already written may reach the fake's
    // handler a moment later (more so on a loaded machine): count them too.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let consumed = world.fake.call_count();
    assert!(consumed >= 10, "calls before the kill: {consumed}");
    world.fake.set_answer_delay(Duration::ZERO);

    let killed_at = Instant::now();
    let second = world.daemon(&world.db.url(), &[]);
    // Heartbeat 1 s x 3 + claim timeout 10 s + lease 6 s, with slack.
    let deadline = killed_at + Duration::from_secs(40);
    loop {
        let settled = world
            .count("SELECT count(*) FROM social_accounts WHERE last_refreshed_at IS NOT NULL OR status <> 'ACTIVE'")
            .await;
        if settled == ids.len() as i64 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{settled}/{} settled in time",
            ids.len()
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    stop(second);
    for id in &ids {
        let row = accounts::get(&world.db.pool, id).await.unwrap().unwrap();
        if row.status == AccountStatus::Active {
            let blob = row.refresh_token_ciphertext.unwrap();
            let rt = world
                .keyring
                .decrypt(id, tokenwarden::crypto::Field::RefreshToken, "f1", &blob)
                .unwrap();
            assert!(
                world
                    .fake
                    .is_live(secrecy::ExposeSecret::expose_secret(&rt)),
                "ACTIVE with a dead refresh token"
            );
        } else {
            // Its refresh token was consumed by the killed process: flagged.
            let error = row.last_refresh_error.unwrap_or_default();
            assert!(
                error.contains("interrupted refresh"),
                "{:?}: {error}",
                row.status
            );
        }
    }
    let flagged = world
        .count("SELECT count(*) FROM social_accounts WHERE status <> 'ACTIVE'")
        .await;
    assert!(
        flagged as usize <= consumed,
        "only accounts whose call was lost are flagged"
    );
    world.purge().await;
}

#[tokio::test]
async fn postgres_out_of_reach_for_30s_means_no_call_without_a_lease_and_recovery_without_restart()
{
    let (world, ids) = World::new(90, TimeDelta::seconds(50)).await;
    let proxy = Proxy::start("127.0.0.1:5432".into()).await;
    let base = common::database_url();
    let url = base.replacen("127.0.0.1:5432", &format!("127.0.0.1:{}", proxy.port), 1);
    assert_ne!(
        url, base,
        "the test database URL must point at 127.0.0.1:5432"
    );
    let sep = if url.contains('?') { '&' } else { '?' };
    let url = format!("{url}{sep}options=-c%20search_path%3D{}", world.db.schema);
    let daemon = world.daemon(&url, &[]);

    let started = Instant::now();
    while world
        .count("SELECT count(*) FROM social_accounts WHERE last_refreshed_at IS NOT NULL")
        .await
        < 10
    {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "daemon never started refreshing"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    proxy.cut();
    let cut_at = Instant::now();
    tokio::time::sleep(Duration::from_secs(30)).await;
    let calls_during_cut = world
        .fake
        .calls()
        .iter()
        .filter(|c| {
            c.at > cut_at + Duration::from_millis(500) && c.at < cut_at + Duration::from_secs(30)
        })
        .count();
    proxy.restore();
    assert_eq!(calls_during_cut, 0, "no provider call without a lease");

    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let done = world
            .count("SELECT count(*) FROM social_accounts WHERE last_refreshed_at IS NOT NULL")
            .await;
        if done == ids.len() as i64 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "only {done}/{} refreshed after recovery",
            ids.len()
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    stop(daemon);
    assert_eq!(world.fake.call_count(), ids.len(), "one call per account");
    assert_eq!(world.fake.reuse_detected(), 0);
    assert_eq!(
        world
            .count("SELECT count(*) FROM social_accounts WHERE status <> 'ACTIVE'")
            .await,
        0
    );
    world.purge().await;
}

#[tokio::test]
async fn redis_out_of_reach_and_emptied_costs_a_delay_never_a_refresh() {
    let (world, ids) = World::new(60, TimeDelta::seconds(25)).await;
    let proxy = Proxy::start("127.0.0.1:6379".into()).await;
    let redis_via_proxy = format!("redis://127.0.0.1:{}", proxy.port);
    let daemon = world.daemon(
        &world.db.url(),
        &[("TOKENWARDEN__REDIS__URL", &redis_via_proxy)],
    );

    let started = Instant::now();
    while world
        .count("SELECT count(*) FROM social_accounts WHERE last_refreshed_at IS NOT NULL")
        .await
        < 10
    {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "daemon never started refreshing"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // Redis goes away and comes back empty, as after a restart without
    // persistence: every queued job is gone.
    proxy.cut();
    tokio::time::sleep(Duration::from_secs(8)).await;
    world.purge().await;
    proxy.restore();

    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let done = world
            .count("SELECT count(*) FROM social_accounts WHERE last_refreshed_at IS NOT NULL")
            .await;
        if done == ids.len() as i64 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "only {done}/{} refreshed after Redis came back",
            ids.len()
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    stop(daemon);
    assert_eq!(
        world.fake.call_count(),
        ids.len(),
        "no account got two provider calls"
    );
    assert_eq!(world.fake.reuse_detected(), 0);
    world.purge().await;
}

#[tokio::test]
async fn three_daemon_processes_refresh_each_account_exactly_once() {
    let (world, ids) = World::new(300, TimeDelta::seconds(5)).await;
    let daemons: Vec<Child> = (0..3).map(|_| world.daemon(&world.db.url(), &[])).collect();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let done = world
            .count("SELECT count(*) FROM social_accounts WHERE last_refreshed_at IS NOT NULL")
            .await;
        if done == ids.len() as i64 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "only {done}/{} refreshed",
            ids.len()
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    // Time for any duplicate to show before counting.
    tokio::time::sleep(Duration::from_secs(2)).await;
    for daemon in daemons {
        stop(daemon);
    }
    assert_eq!(world.fake.call_count(), ids.len());
    assert_eq!(world.fake.reuse_detected(), 0);
    let refreshed = world
        .count("SELECT count(*) FROM refresh_attempts WHERE outcome = 'refreshed'")
        .await;
    assert_eq!(refreshed as usize, ids.len());
    world.purge().await;
}

impl World {
    /// The refresh token an account holds, decrypted.
    async fn stored_refresh_token(&self, id: &AccountId) -> String {
        use secrecy::ExposeSecret;
        let row = accounts::get(&self.db.pool, id).await.unwrap().unwrap();
        self.keyring
            .decrypt(
                id,
                tokenwarden::crypto::Field::RefreshToken,
                row.credentials_key_id.as_deref().unwrap(),
                row.refresh_token_ciphertext.as_deref().unwrap(),
            )
            .unwrap()
            .expose_secret()
            .to_owned()
    }

    /// This test's schema, reached through `proxy`.
    fn url_through(&self, proxy: &Proxy) -> String {
        let base = common::database_url();
        let url = base.replacen("127.0.0.1:5432", &format!("127.0.0.1:{}", proxy.port), 1);
        assert_ne!(
            url, base,
            "the test database URL must point at 127.0.0.1:5432"
        );
        let sep = if url.contains('?') { '&' } else { '?' };
        format!("{url}{sep}options=-c%20search_path%3D{}", self.db.schema)
    }
}

/// The outage of ARCHITECTURE.md's custody rule 6, longer than the lease:
/// the platform answered, then PostgreSQL went out of reach for 90 s (both
/// processes lose it, as in a real outage). The new tokens are the only
/// copy; they must be stored when the database returns, and the second
/// process, waiting for the account all along, must not present the spent
/// token once it can take the expired lease.
#[tokio::test]
async fn a_grant_in_hand_survives_a_database_outage_longer_than_the_lease() {
    const OUTAGE: Duration = Duration::from_secs(90);
    let (world, ids) = World::new(1, TimeDelta::zero()).await;
    let id = ids[0].clone();
    let proxy = Proxy::start("127.0.0.1:5432".into()).await;
    let url = world.url_through(&proxy);
    let settings = common::settings_for(&world.fake);
    let connect = || {
        sqlx::postgres::PgPoolOptions::new()
            .max_connections(4)
            .acquire_timeout(Duration::from_secs(1))
            .connect(&url)
    };
    let (pool_a, pool_b) = (connect().await.unwrap(), connect().await.unwrap());
    let engine_a = common::engine_for(&pool_a, &settings, world.keyring.clone(), "process-a");
    let engine_b = common::engine_for(&pool_b, &settings, world.keyring.clone(), "process-b");
    let lease = engine_a.config().lease_duration;
    assert!(OUTAGE > lease * 5);

    // The platform takes 2 s; the database goes away once the request left.
    world.fake.set_answer_delay(Duration::from_secs(2));
    let refresh_id = id.clone();
    let first = tokio::spawn(async move { engine_a.refresh(&refresh_id, Trigger::Forced).await });
    let started = Instant::now();
    while world.fake.call_count() == 0 {
        assert!(started.elapsed() < Duration::from_secs(10), "no call");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    proxy.cut();
    world.fake.set_answer_delay(Duration::ZERO);

    // Process B asks for the account throughout, as a retrying caller would.
    let refresh_id = id.clone();
    let second = tokio::spawn(async move {
        loop {
            match engine_b.refresh(&refresh_id, Trigger::Forced).await {
                Ok(report) => return report,
                Err(_) => tokio::time::sleep(Duration::from_millis(250)).await,
            }
        }
    });
    tokio::time::sleep(OUTAGE).await;
    proxy.restore();

    let first = tokio::time::timeout(Duration::from_secs(30), first)
        .await
        .expect("the write lands once the database is back")
        .unwrap()
        .unwrap();
    assert_eq!(first.outcome, Outcome::Refreshed, "{first:?}");
    let second = tokio::time::timeout(Duration::from_secs(30), second)
        .await
        .unwrap()
        .unwrap();
    assert!(second.succeeded(), "{second:?}");
    assert_eq!(world.fake.reuse_detected(), 0, "no spent token presented");
    let row = accounts::get(&world.db.pool, &id).await.unwrap().unwrap();
    assert_eq!(row.status, AccountStatus::Active);
    let stored = world.stored_refresh_token(&id).await;
    assert!(world.fake.is_live(&stored), "the live token is stored");
}

/// SIGTERM while a grant in hand cannot be stored: the daemon waits out
/// `shutdown.grace`, then exits non-zero and names the account (never the
/// token) in its log.
#[tokio::test]
async fn sigterm_during_an_outage_reports_each_grant_in_hand_and_exits_non_zero() {
    let (world, ids) = World::new(1, TimeDelta::zero()).await;
    let proxy = Proxy::start("127.0.0.1:5432".into()).await;
    let url = world.url_through(&proxy);
    world.fake.set_answer_delay(Duration::from_secs(2));
    let log_path = std::env::temp_dir().join(format!("tw-grant-log-{}", world.db.schema));
    let mut daemon = world.daemon_logged(
        &url,
        &[
            ("TOKENWARDEN__SHUTDOWN__GRACE", "7s"),
            ("TOKENWARDEN__LOG__FILTER", "info"),
        ],
        &log_path,
    );
    let started = Instant::now();
    while world.fake.call_count() == 0 {
        assert!(started.elapsed() < Duration::from_secs(30), "no call");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    proxy.cut();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let _ = Command::new("kill")
        .args(["-TERM", &daemon.id().to_string()])
        .status();
    let stopping = Instant::now();
    let status = loop {
        if let Some(status) = daemon.try_wait().unwrap() {
            break status;
        }
        assert!(stopping.elapsed() < Duration::from_secs(30), "no exit");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(!status.success(), "a grant in hand was not stored");
    assert!(
        stopping.elapsed() >= Duration::from_secs(5),
        "waited for the grace"
    );
    let log = std::fs::read_to_string(&log_path).unwrap();
    let _ = std::fs::remove_file(&log_path);
    assert!(
        log.lines()
            .any(|l| l.contains("a grant in hand could not be stored")
                && l.contains(ids[0].as_str())),
        "{log}"
    );
    proxy.restore();
    // The stored (spent) token never reaches the log either.
    let stored = world.stored_refresh_token(&ids[0]).await;
    assert!(!log.contains(&stored), "token in the log");
    world.purge().await;
}

/// Redis emptied (FLUSHALL, or a restart without persistence) while claims
/// are outstanding: the scheduler notices the queue's marker is gone and
/// re-queues the claimed accounts at once, instead of after
/// `scheduler.claim_timeout` (here 2 minutes).
#[tokio::test]
async fn jobs_lost_with_redis_data_are_requeued_within_seconds() {
    jobs_lost_are_requeued_within_seconds(false).await;
}

/// As above, but only the jobs go (eviction under `maxmemory`): the queue's
/// marker survives, and the scheduler sees a queue holding no job while
/// claims wait.
#[tokio::test]
async fn jobs_evicted_from_redis_are_requeued_within_seconds() {
    jobs_lost_are_requeued_within_seconds(true).await;
}

async fn jobs_lost_are_requeued_within_seconds(keep_marker: bool) {
    let (world, ids) = World::new(40, TimeDelta::zero()).await;
    let url = world.db.url();
    let long_claims = [
        ("TOKENWARDEN__SCHEDULER__CLAIM_TIMEOUT", "2m"),
        ("TOKENWARDEN__WORKER__JOB_TIMEOUT", "1m"),
    ];
    // A scheduler alone claims every account and queues its job.
    let scheduler = world
        .command(&url, &long_claims)
        .args(["--role", "scheduler"])
        .spawn()
        .unwrap();
    let started = Instant::now();
    while world
        .count("SELECT count(*) FROM account_schedule WHERE claim_id IS NOT NULL")
        .await
        < ids.len() as i64
    {
        assert!(started.elapsed() < Duration::from_secs(30), "never claimed");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Redis loses everything of this queue (a FLUSHALL limited to the
    // test's own keys, so parallel tests keep theirs) while the scheduler
    // runs; workers come up after it.
    if keep_marker {
        let client = redis::Client::open(common::redis_url()).unwrap();
        let mut conn = client.get_multiplexed_async_connection().await.unwrap();
        let keys: Vec<String> = redis::cmd("KEYS")
            .arg(format!(
                "{}*",
                world.queue.replace('{', "\\{").replace('}', "\\}")
            ))
            .query_async(&mut conn)
            .await
            .unwrap();
        let jobs: Vec<&String> = keys.iter().filter(|k| !k.ends_with(":marker")).collect();
        assert!(keys.iter().any(|k| k.ends_with(":marker")), "{keys:?}");
        let _: () = redis::cmd("DEL")
            .arg(&jobs)
            .query_async(&mut conn)
            .await
            .unwrap();
    } else {
        world.purge().await;
    }
    let workers = world
        .command(&url, &long_claims)
        .args(["--role", "worker"])
        .spawn()
        .unwrap();
    let restarted = Instant::now();
    loop {
        let done = world
            .count("SELECT count(*) FROM social_accounts WHERE last_refreshed_at IS NOT NULL")
            .await;
        if done == ids.len() as i64 {
            break;
        }
        assert!(
            restarted.elapsed() < Duration::from_secs(10),
            "only {done}/{} refreshed 10 s after Redis lost the jobs",
            ids.len()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    stop(workers);
    stop(scheduler);
    assert_eq!(world.fake.call_count(), ids.len(), "one call per account");
    assert_eq!(world.fake.reuse_detected(), 0);
    world.purge().await;
}
