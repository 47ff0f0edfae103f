//! Custody soak: rotating refresh tokens under faults. 1,000 accounts on a
//! strict rotating platform (a reused refresh token kills the family, no
//! grace), short access tokens so each account is refreshed many times,
//! three `tokenwarden run` processes, and over a bounded run: PostgreSQL cut
//! at a proxy for longer than the lease, the queue's Redis keys purged with
//! claims outstanding, SIGTERM + restart of one process, SIGKILL + restart
//! of another (struck while it has calls at the platform), and bursts of 10 parallel forced refreshes split over two
//! processes. Prints grants lost (by cause), provider calls per burst,
//! transient failures and spent tokens presented.
//!
//!   scripts/soak.sh [--accounts 1000] [--duration-secs 540] [--outage-secs 65]
//!                   [--latency-ms 200-800] [--lifetime-secs 20-60] [--keep-logs]
//!
//! The platform is the fake behind a recording front: the front forwards
//! each call, so the fake acts at once, then holds the answer for a random
//! latency (a process killed in that window loses the grant), and records
//! which token family each call was for and which process (by its port)
//! made it. Logs, schema and queue keys are removed at the end; the logs
//! are kept when a loss has no known cause, or with --keep-logs.
//!
//! Over 500 lines on purpose: one soak, its fault schedule and its audit
//! read in order as one program.

use std::collections::{BTreeMap, HashSet};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::{ConnectInfo, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use chrono::{TimeDelta, Utc};
use rand::Rng;
use secrecy::{ExposeSecret, SecretString};
use sqlx::PgPool;
use tokenwarden::crypto::{Field, Keyring};
use tokenwarden::domain::AccountId;
use tokenwarden_fakes::{FakeOAuthServer, FamilySpec};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

#[path = "../tests/common/proxy.rs"]
mod proxy;
use proxy::Proxy;

const API_KEY: &str = "soak-bench-api-key-0123456789";
const KEY_ID: &str = "s1";

struct Args {
    accounts: usize,
    duration: Duration,
    outage: Duration,
    latency_ms: (u64, u64),
    lifetime_secs: (u64, u64),
    keep_logs: bool,
}

fn parse_args() -> Args {
    let raw: Vec<String> = std::env::args().skip(1).collect();
    let get = |name: &str| {
        raw.iter()
            .position(|a| a == name)
            .and_then(|i| raw.get(i + 1))
            .cloned()
    };
    let range = |name: &str, default: (u64, u64)| {
        get(name)
            .and_then(|v| {
                let (a, b) = v.split_once('-')?;
                Some((a.parse().ok()?, b.parse().ok()?))
            })
            .unwrap_or(default)
    };
    let secs = |name: &str, default: u64| {
        Duration::from_secs(get(name).and_then(|v| v.parse().ok()).unwrap_or(default))
    };
    Args {
        accounts: get("--accounts")
            .and_then(|v| v.parse().ok())
            .unwrap_or(1_000),
        duration: secs("--duration-secs", 540).max(Duration::from_secs(120)),
        outage: secs("--outage-secs", 65),
        latency_ms: range("--latency-ms", (200, 800)),
        lifetime_secs: range("--lifetime-secs", (20, 60)),
        keep_logs: raw.iter().any(|a| a == "--keep-logs"),
    }
}

/// One token call as the front saw it.
struct Call {
    family: Option<usize>,
    /// The caller's local port: which process made the call.
    peer_port: u16,
    sent: Instant,
    answered: Instant,
    status: u16,
    reuse_detected: bool,
}

struct Front {
    fake_url: String,
    client: reqwest::Client,
    latency_ms: (u64, u64),
    calls: Mutex<Vec<Call>>,
    /// Callers' ports of the calls the platform is working on.
    pending: Mutex<Vec<u16>>,
}

async fn front_handler(
    State(front): State<Arc<Front>>,
    ConnectInfo(peer): ConnectInfo<std::net::SocketAddr>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    // In a task of its own: like a real platform, the call completes even
    // when the client is gone.
    let task = tokio::spawn(async move { front.forward(peer.port(), headers, body).await });
    task.await
        .unwrap_or_else(|_| StatusCode::BAD_GATEWAY.into_response())
}

impl Front {
    async fn forward(&self, peer_port: u16, headers: HeaderMap, body: Bytes) -> Response {
        let sent = Instant::now();
        self.pending.lock().unwrap().push(peer_port);
        let family = url::form_urlencoded::parse(&body)
            .find(|(k, _)| k == "refresh_token")
            .and_then(|(_, token)| token.split('_').nth(1)?.parse().ok());
        let mut request = self.client.post(&self.fake_url).body(body);
        for name in [header::AUTHORIZATION, header::CONTENT_TYPE] {
            if let Some(value) = headers.get(&name) {
                request = request.header(name, value);
            }
        }
        let (status, answer) = match request.send().await {
            Ok(r) => (r.status().as_u16(), r.bytes().await.unwrap_or_default()),
            Err(_) => (502, Bytes::new()),
        };
        let (low, high) = self.latency_ms;
        let latency = rand::rng().random_range(low..=high.max(low));
        tokio::time::sleep(Duration::from_millis(latency)).await;
        let mut pending = self.pending.lock().unwrap();
        if let Some(at) = pending.iter().position(|p| *p == peer_port) {
            pending.swap_remove(at);
        }
        drop(pending);
        self.calls.lock().unwrap().push(Call {
            family,
            peer_port,
            sent,
            answered: Instant::now(),
            status,
            reuse_detected: String::from_utf8_lossy(&answer).contains("reused"),
        });
        let status = StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_GATEWAY);
        (status, [(header::CONTENT_TYPE, "application/json")], answer).into_response()
    }
}

/// The three daemon processes; killed on drop whatever happened.
struct Daemons {
    children: Vec<Option<Child>>,
    ports: Vec<u16>,
    env: Vec<(String, String)>,
    logs: std::path::PathBuf,
}

impl Daemons {
    fn spawn(&mut self, i: usize) -> anyhow::Result<()> {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_tokenwarden"));
        for (key, _) in std::env::vars().filter(|(k, _)| k.starts_with("TOKENWARDEN")) {
            cmd.env_remove(key);
        }
        let log = std::fs::File::options()
            .create(true)
            .append(true)
            .open(self.logs.join(format!("daemon-{i}.log")))?;
        cmd.env_remove("RUST_LOG")
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .env(
                "TOKENWARDEN__API__LISTEN",
                format!("127.0.0.1:{}", self.ports[i]),
            )
            .env(
                "TOKENWARDEN__ENGINE__INSTANCE_NAME",
                format!("soak-{i}-{}", rand::random::<u16>()),
            )
            .arg("run")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log);
        self.children[i] = Some(cmd.spawn()?);
        Ok(())
    }

    fn signal(&self, i: usize, signal: &str) {
        if let Some(child) = &self.children[i] {
            let _ = Command::new("kill")
                .args([signal, &child.id().to_string()])
                .status();
        }
    }

    /// The local ports of process `i`'s TCP sockets (from /proc).
    fn tcp_ports(&self, i: usize) -> HashSet<u16> {
        let Some(pid) = self.children[i].as_ref().map(Child::id) else {
            return HashSet::new();
        };
        let inodes: HashSet<String> = std::fs::read_dir(format!("/proc/{pid}/fd"))
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|fd| std::fs::read_link(fd.path()).ok())
            .filter_map(|link| {
                let link = link.to_string_lossy().into_owned();
                Some(link.strip_prefix("socket:[")?.strip_suffix(']')?.to_owned())
            })
            .collect();
        let tables = ["/proc/net/tcp", "/proc/net/tcp6"]
            .map(|t| std::fs::read_to_string(t).unwrap_or_default());
        tables
            .iter()
            .flat_map(|t| t.lines().skip(1))
            .filter_map(|line| {
                let fields: Vec<&str> = line.split_whitespace().collect();
                let port = fields.get(1)?.rsplit(':').next()?;
                inodes
                    .contains(*fields.get(9)?)
                    .then(|| u16::from_str_radix(port, 16).ok())?
            })
            .collect()
    }

    /// Waits for process `i` to exit; its exit code.
    async fn wait(&mut self, i: usize) -> Option<i32> {
        let mut child = self.children[i].take()?;
        tokio::task::spawn_blocking(move || child.wait().ok()?.code())
            .await
            .ok()?
    }
}

impl Drop for Daemons {
    fn drop(&mut self) {
        for child in self.children.iter_mut().flatten() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

fn database_url() -> String {
    std::env::var("TOKENWARDEN_TEST_DATABASE_URL").unwrap_or_else(|_| {
        "postgres://tokenwarden:tokenwarden@127.0.0.1:5432/tokenwarden_test".into()
    })
}

fn redis_url() -> String {
    std::env::var("TOKENWARDEN_TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into())
}

fn in_schema(url: &url::Url, schema: &str) -> String {
    let mut url = url.clone();
    url.query_pairs_mut()
        .append_pair("options", &format!("-c search_path={schema}"));
    url.to_string()
}

async fn purge_queue(queue: &str) -> anyhow::Result<u64> {
    let mut settings = tokenwarden::config::Settings::from_figment(figment::Figment::new())?;
    settings.redis.url = Some(SecretString::from(redis_url()));
    tokenwarden::queue::purge(&settings, queue).await
}

struct Burst {
    family: usize,
    started: Instant,
    ended: Instant,
    answers: Vec<u16>,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = parse_args();
    let schema = format!("tw_bench_soak_{:08x}", rand::random::<u32>());
    let queue = format!("{{tw-bench-soak-{:08x}}}:refresh", rand::random::<u32>());
    let logs = std::env::temp_dir().join(&schema);
    std::fs::create_dir_all(&logs)?;
    let admin = PgPool::connect(&database_url()).await?;
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!("CREATE SCHEMA {schema}")))
        .execute(&admin)
        .await?;
    let result = soak(&args, &schema, &queue, &logs).await;
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!("DROP SCHEMA {schema} CASCADE")))
        .execute(&admin)
        .await?;
    purge_queue(&queue).await?;
    match &result {
        // Daemon logs stay only when something unexplained needs reading.
        Ok(unexplained) if *unexplained || args.keep_logs => {
            println!("daemon logs kept for investigation: {}", logs.display())
        }
        _ => std::fs::remove_dir_all(&logs)?,
    }
    result.map(|_| ())
}

/// Runs the soak and prints its figures; true when a loss has no known cause.
async fn soak(
    args: &Args,
    schema: &str,
    queue: &str,
    logs: &std::path::Path,
) -> anyhow::Result<bool> {
    let direct = url::Url::parse(&database_url())?;
    let pool = sqlx::postgres::PgPoolOptions::new()
        .max_connections(4)
        .connect(&in_schema(&direct, schema))
        .await?;
    tokenwarden::store::migrate(&pool).await?;
    let fake = FakeOAuthServer::start("soak", "soak-secret").await?;
    let front = Arc::new(Front {
        fake_url: fake.url("/x/token").to_string(),
        client: reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .build()?,
        latency_ms: args.latency_ms,
        calls: Mutex::new(Vec::new()),
        pending: Mutex::new(Vec::new()),
    });
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let front_url = format!("http://{}/x/token", listener.local_addr()?);
    let app = axum::Router::new()
        .fallback(front_handler)
        .with_state(front.clone());
    let app = app.into_make_service_with_connect_info::<std::net::SocketAddr>();
    tokio::spawn(async move { axum::serve(listener, app).await });

    // Seed: each account a live family with its own short lifetime, first
    // refresh spread over the first two thirds of it.
    let key_spec = format!(
        "{KEY_ID}:{}",
        base64::engine::general_purpose::STANDARD.encode([9u8; 32])
    );
    let keyring = Keyring::parse(&SecretString::from(key_spec.clone()))?;
    let mut accounts: Vec<(AccountId, usize)> = Vec::new();
    let now = Utc::now();
    for _ in 0..args.accounts {
        let lifetime = rand::rng().random_range(args.lifetime_secs.0..=args.lifetime_secs.1);
        let tokens = fake.issue(FamilySpec {
            access_lifetime: Some(lifetime),
            ..FamilySpec::default()
        });
        let family: usize = tokens
            .refresh_token
            .split('_')
            .nth(1)
            .unwrap_or("")
            .parse()?;
        let id = AccountId::generate();
        let due = now
            + TimeDelta::milliseconds(5_000 + rand::rng().random_range(0..lifetime * 667) as i64);
        sqlx::query(
            "WITH a AS (
                 INSERT INTO social_accounts (id, workspace_id, provider, external_id, token_issued_at, token_expires_at,
                     access_token_ciphertext, refresh_token_ciphertext, credentials_key_id)
                 VALUES ($1, 'ws_soak', 'X', $1, $2, $3, $5, $6, $7)
                 RETURNING id)
             INSERT INTO account_schedule (account_id, next_attempt_at) SELECT id, $4 FROM a",
        )
        .bind(id.as_str())
        .bind(now)
        .bind(now + TimeDelta::seconds(lifetime as i64))
        .bind(due)
        .bind(keyring.encrypt(&id, Field::AccessToken, &tokens.access_token))
        .bind(keyring.encrypt(&id, Field::RefreshToken, &tokens.refresh_token))
        .bind(KEY_ID)
        .execute(&pool)
        .await?;
        accounts.push((id, family));
    }

    let proxy = Proxy::start(format!(
        "{}:{}",
        direct.host_str().unwrap_or("127.0.0.1"),
        direct.port().unwrap_or(5432)
    ))
    .await;
    let mut proxied = direct.clone();
    proxied
        .set_port(Some(proxy.port))
        .map_err(|()| anyhow::anyhow!("database URL takes no port"))?;
    let env: Vec<(String, String)> = [
        ("DATABASE__URL", in_schema(&proxied, schema)),
        ("DATABASE__ACQUIRE_TIMEOUT", "2s".into()),
        ("CRYPTO__KEYS", key_spec),
        ("REDIS__URL", redis_url()),
        ("REDIS__QUEUE", queue.to_owned()),
        ("API__KEYS", API_KEY.into()),
        ("PROVIDERS__X__TOKEN_URL", front_url),
        ("PROVIDERS__X__CLIENT_ID", "soak".into()),
        ("PROVIDERS__X__CLIENT_SECRET", "soak-secret".into()),
        ("PROVIDERS__X__REFRESH_MARGIN", "5s".into()),
        ("PROVIDERS__X__JITTER", "3s".into()),
        ("PROVIDERS__X__RATE_PER_SECOND", "1000".into()),
        ("PROVIDERS__X__MAX_CONCURRENCY", "256".into()),
        // Lease = 5 s + 1 s; claims, jobs and the shutdown grace outlast it.
        ("HTTP__REQUEST_TIMEOUT", "5s".into()),
        ("HTTP__ROTATING_REQUEST_TIMEOUT", "5s".into()),
        ("ENGINE__LEASE_MARGIN", "1s".into()),
        ("ENGINE__RETRY_BASE", "2s".into()),
        ("ENGINE__RETRY_CAP", "20s".into()),
        ("ENGINE__SINGLE_FLIGHT_WAIT", "20s".into()),
        ("SCHEDULER__INTERVAL", "500ms".into()),
        ("SCHEDULER__CLAIM_TIMEOUT", "15s".into()),
        ("WORKER__JOB_TIMEOUT", "10s".into()),
        ("WORKER__POLL_INTERVAL", "100ms".into()),
        ("WORKER__HEARTBEAT_INTERVAL", "1s".into()),
        ("WORKER__MISSED_HEARTBEATS", "3".into()),
        ("SHUTDOWN__GRACE", "10s".into()),
        ("LOG__FILTER", "info,sqlx=warn".into()),
    ]
    .into_iter()
    .map(|(k, v)| (format!("TOKENWARDEN__{k}"), v))
    .collect();
    let mut daemons = Daemons {
        children: vec![None, None, None],
        ports: vec![free_port()?, free_port()?, free_port()?],
        env,
        logs: logs.to_owned(),
    };
    for i in 0..3 {
        daemons.spawn(i)?;
    }
    let began = Instant::now();
    println!(
        "seeded {} accounts; lifetimes {}-{} s, platform latency {}-{} ms; run {} s",
        args.accounts,
        args.lifetime_secs.0,
        args.lifetime_secs.1,
        args.latency_ms.0,
        args.latency_ms.1,
        args.duration.as_secs()
    );

    // Bursts on processes 0 and 1, one account each, never during the cut.
    let quiet = Arc::new(AtomicBool::new(false));
    let stop_bursts = CancellationToken::new();
    let burst_task = {
        let (quiet, stop, ports) = (quiet.clone(), stop_bursts.clone(), daemons.ports.clone());
        let mut pool_of_ids: Vec<(AccountId, usize)> = accounts.clone();
        tokio::spawn(async move {
            use rand::seq::SliceRandom;
            pool_of_ids.shuffle(&mut rand::rng());
            let client = reqwest::Client::builder()
                .timeout(Duration::from_secs(40))
                .build()
                .unwrap();
            let mut bursts = Vec::new();
            for (id, family) in pool_of_ids {
                tokio::select! { _ = stop.cancelled() => break, _ = tokio::time::sleep(Duration::from_secs(5)) => {} }
                if quiet.load(Ordering::SeqCst) {
                    continue;
                }
                let started = Instant::now();
                let requests = (0..10).map(|n| {
                    let url = format!("http://127.0.0.1:{}/v1/accounts/{id}/refresh", ports[n % 2]);
                    let request = client.post(url).bearer_auth(API_KEY).send();
                    async move { request.await.map_or(0, |r| r.status().as_u16()) }
                });
                let answers = futures::future::join_all(requests).await;
                bursts.push(Burst {
                    family,
                    started,
                    ended: Instant::now(),
                    answers,
                });
            }
            bursts
        })
    };

    // The faults, at fixed fractions of the run.
    let at = |fraction: f64| began + args.duration.mul_f64(fraction);
    let progress = |label: &str| println!("[{:>4.0} s] {label}", began.elapsed().as_secs_f64());
    let mut sigkill = None;
    let mut exit_codes = Vec::new();
    for (fraction, fault) in [
        (0.10, "purge"),
        (0.18, "sigterm"),
        (0.28, "cut"),
        (0.55, "purge"),
        (0.65, "sigkill"),
        (0.80, "purge"),
    ] {
        tokio::time::sleep_until(at(fraction).into()).await;
        match fault {
            "purge" => {
                let claimed: i64 = sqlx::query_scalar(
                    "SELECT count(*) FROM account_schedule WHERE claim_id IS NOT NULL",
                )
                .fetch_one(&pool)
                .await?;
                let keys = purge_queue(queue).await?;
                progress(&format!(
                    "Redis queue keys purged ({keys} keys, {claimed} claims outstanding)"
                ));
            }
            "sigterm" => {
                daemons.signal(1, "-TERM");
                let code = daemons.wait(1).await;
                exit_codes.push(("SIGTERM", code));
                daemons.spawn(1)?;
                progress(&format!(
                    "process 1 stopped with SIGTERM (exit {code:?}) and restarted"
                ));
            }
            "cut" => {
                quiet.store(true, Ordering::SeqCst);
                proxy.cut();
                progress(&format!(
                    "PostgreSQL cut at the proxy for {} s",
                    args.outage.as_secs()
                ));
                tokio::time::sleep(args.outage).await;
                proxy.restore();
                progress("PostgreSQL restored");
                tokio::time::sleep(Duration::from_secs(10)).await;
                quiet.store(false, Ordering::SeqCst);
            }
            _ => {
                // Strike while the process has calls at the platform (the
                // window the daemon cannot protect), waiting up to 30 s.
                let waiting = Instant::now();
                let ports = loop {
                    let ports = daemons.tcp_ports(2);
                    let pending = front
                        .pending
                        .lock()
                        .unwrap()
                        .iter()
                        .filter(|p| ports.contains(p))
                        .count();
                    if pending >= 3 || waiting.elapsed() > Duration::from_secs(30) {
                        break ports;
                    }
                    tokio::time::sleep(Duration::from_millis(10)).await;
                };
                daemons.signal(2, "-KILL");
                sigkill = Some((Instant::now(), ports));
                let _ = daemons.wait(2).await;
                tokio::time::sleep(Duration::from_secs(1)).await;
                daemons.spawn(2)?;
                progress("process 2 killed with SIGKILL and restarted");
            }
        }
    }
    tokio::time::sleep_until(at(0.95).into()).await;
    stop_bursts.cancel();
    let bursts = burst_task.await?;
    tokio::time::sleep_until(at(1.0).into()).await;
    for i in 0..3 {
        daemons.signal(i, "-TERM");
    }
    for i in 0..3 {
        exit_codes.push(("final SIGTERM", daemons.wait(i).await));
    }
    progress("all processes stopped");

    report(
        &pool,
        &keyring,
        &fake,
        &front,
        &accounts,
        &bursts,
        sigkill,
        &exit_codes,
    )
    .await
}

#[allow(clippy::too_many_arguments)]
async fn report(
    pool: &PgPool,
    keyring: &Keyring,
    fake: &FakeOAuthServer,
    front: &Front,
    accounts: &[(AccountId, usize)],
    bursts: &[Burst],
    sigkill: Option<(Instant, HashSet<u16>)>,
    exit_codes: &[(&str, Option<i32>)],
) -> anyhow::Result<bool> {
    let calls = std::mem::take(&mut *front.calls.lock().unwrap());
    let reused: HashSet<usize> = calls
        .iter()
        .filter(|c| c.reuse_detected)
        .filter_map(|c| c.family)
        .collect();
    // A grant the killed process could not store: its call was at the
    // platform at the kill (or answered within the last second before it).
    let at_kill = |c: &&Call| {
        sigkill.as_ref().is_some_and(|(kill, _)| {
            c.status == 200 && c.sent <= *kill && c.answered + Duration::from_secs(1) >= *kill
        })
    };
    let all_at_kill = calls.iter().filter(at_kill).count();
    let in_flight_at_kill: HashSet<usize> = calls
        .iter()
        .filter(at_kill)
        .filter(|c| {
            sigkill
                .as_ref()
                .is_some_and(|(_, ports)| ports.contains(&c.peer_port))
        })
        .filter_map(|c| c.family)
        .collect();

    let (mut lost_kill_flagged, mut lost_kill_unflagged, mut lost_other) = (0, 0, Vec::new());
    for (id, family) in accounts {
        let (status, key_id, blob, error): (String, Option<String>, Option<Vec<u8>>, Option<String>) = sqlx::query_as(
            "SELECT status, credentials_key_id, refresh_token_ciphertext, last_refresh_error FROM social_accounts WHERE id = $1",
        )
        .bind(id.as_str())
        .fetch_one(pool)
        .await?;
        let stored = blob.and_then(|b| {
            keyring
                .decrypt(id, Field::RefreshToken, key_id.as_deref()?, &b)
                .ok()
        });
        let live = stored.is_some_and(|t| fake.is_live(t.expose_secret()));
        if live && !reused.contains(family) {
            continue;
        }
        let flagged = error
            .as_deref()
            .unwrap_or("")
            .contains("interrupted refresh");
        match (in_flight_at_kill.contains(family), flagged) {
            (true, true) => lost_kill_flagged += 1,
            (true, false) => lost_kill_unflagged += 1,
            _ => lost_other.push(format!(
                "  {id} (family {family}): status {status}, live {live}, reuse {}, error {:?}",
                reused.contains(family),
                error
            )),
        }
    }
    let lost = lost_kill_flagged + lost_kill_unflagged + lost_other.len();
    println!("grants lost: {lost} of {}", accounts.len());
    println!(
        "  killed with SIGKILL while the request was at the platform, flagged 'interrupted refresh': {lost_kill_flagged}"
    );
    println!(
        "  killed with SIGKILL while the request was at the platform, not flagged: {lost_kill_unflagged}"
    );
    println!("  any other cause: {}", lost_other.len());
    for line in &lost_other {
        println!("{line}");
    }
    println!(
        "calls at the platform when the SIGKILL struck (or answered within 1 s before): {} of the killed process, {all_at_kill} of all processes",
        in_flight_at_kill.len()
    );

    let mut distribution: BTreeMap<usize, usize> = BTreeMap::new();
    for burst in bursts {
        let made = calls
            .iter()
            .filter(|c| {
                c.family == Some(burst.family) && c.sent < burst.ended && c.answered > burst.started
            })
            .count();
        *distribution.entry(made).or_default() += 1;
    }
    let shown: Vec<String> = distribution
        .iter()
        .map(|(made, n)| format!("{made} call(s): {n}"))
        .collect();
    println!(
        "forced bursts (10 parallel, split over two processes): {}; provider calls per burst: {}",
        bursts.len(),
        shown.join(", ")
    );
    let mut answers: BTreeMap<u16, usize> = BTreeMap::new();
    for status in bursts.iter().flat_map(|b| &b.answers) {
        *answers.entry(*status).or_default() += 1;
    }
    println!("forced refresh answers by HTTP status (0 = no answer): {answers:?}");

    let outcomes: Vec<(String, i64)> = sqlx::query_as(
        "SELECT outcome, count(*) FROM refresh_attempts GROUP BY outcome ORDER BY outcome",
    )
    .fetch_all(pool)
    .await?;
    println!("attempts by outcome: {outcomes:?}");
    let transient: Vec<(Option<String>, i64)> = sqlx::query_as(
        "SELECT left(message, 110), count(*) FROM refresh_attempts WHERE outcome = 'transient_error' GROUP BY 1 ORDER BY 2 DESC LIMIT 8",
    )
    .fetch_all(pool)
    .await?;
    let transient_total: i64 = transient.iter().map(|(_, n)| n).sum();
    println!("transient failures: {transient_total}");
    for (message, n) in transient {
        println!("  {n:>5}  {}", message.unwrap_or_default());
    }
    println!(
        "spent tokens presented (platform's reuse counter): {}",
        fake.reuse_detected()
    );
    println!(
        "platform calls: {} (fake) / {} (front); families killed by reuse: {}",
        fake.call_count(),
        calls.len(),
        reused.len()
    );
    let statuses: Vec<(String, i64)> = sqlx::query_as(
        "SELECT status, count(*) FROM social_accounts GROUP BY status ORDER BY status",
    )
    .fetch_all(pool)
    .await?;
    println!("accounts by status: {statuses:?}");
    println!("process exit codes: {exit_codes:?}");
    Ok(!lost_other.is_empty())
}
