//! End-to-end daemon benchmark: seeds N accounts whose refreshes fall due
//! over a spread of time, runs `tokenwarden run` as a separate process
//! against a fake platform with a given latency and error mix, and prints
//! throughput, lateness, provider calls per refresh, tokens that expired
//! un-refreshed, and the daemon's memory. In the same run, on the same
//! schema, pgbench measures PostgreSQL's ceiling for one refresh outcome, so
//! the throughput is also given as a ratio.
//!
//!   scripts/bench.sh [--accounts 100000] [--latency-ms 0] [--error-rate 0.0]
//!                    [--spread-secs N] [--concurrency 512] [--claim-rows 1000000]

use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine as _;
use chrono::{DateTime, TimeDelta, Utc};
use secrecy::SecretString;
use sqlx::PgPool;
use tokenwarden::crypto::{Field, Keyring};
use tokenwarden::domain::AccountId;
use tokenwarden_fakes::{FakeOAuthServer, FamilySpec};

struct Args {
    accounts: usize,
    latency_ms: u64,
    error_rate: f64,
    spread_secs: u64,
    concurrency: usize,
    claim_rows: i64,
}

fn parse_args() -> Args {
    let raw: Vec<String> = std::env::args().skip(1).collect();
    let get = |name: &str| {
        raw.iter()
            .position(|a| a == name)
            .and_then(|i| raw.get(i + 1))
            .cloned()
    };
    let accounts: usize = get("--accounts")
        .and_then(|v| v.parse().ok())
        .unwrap_or(100_000);
    Args {
        accounts,
        latency_ms: get("--latency-ms")
            .and_then(|v| v.parse().ok())
            .unwrap_or(0),
        error_rate: get("--error-rate")
            .and_then(|v| v.parse().ok())
            .unwrap_or(0.0),
        // Demand of about 1,500 refreshes/s by default.
        spread_secs: get("--spread-secs")
            .and_then(|v| v.parse().ok())
            .unwrap_or((accounts as u64 / 1_500).max(5)),
        concurrency: get("--concurrency")
            .and_then(|v| v.parse().ok())
            .unwrap_or(512),
        claim_rows: get("--claim-rows")
            .and_then(|v| v.parse().ok())
            .unwrap_or(1_000_000),
    }
}

fn database_url() -> String {
    std::env::var("TOKENWARDEN_TEST_DATABASE_URL").unwrap_or_else(|_| {
        "postgres://tokenwarden:tokenwarden@127.0.0.1:5432/tokenwarden_test".into()
    })
}

fn schema_url(schema: &str) -> String {
    let base = database_url();
    let sep = if base.contains('?') { '&' } else { '?' };
    format!("{base}{sep}options=-c%20search_path%3D{schema}")
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = parse_args();
    let schema = format!("tw_bench_{:08x}", rand::random::<u32>());
    let admin = PgPool::connect(&database_url()).await?;
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!("CREATE SCHEMA {schema}")))
        .execute(&admin)
        .await?;
    let result = run(&args, &schema).await;
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!("DROP SCHEMA {schema} CASCADE")))
        .execute(&admin)
        .await?;
    if args.claim_rows > 0 {
        claim_timing(&admin, args.claim_rows).await?;
    }
    result
}

async fn run(args: &Args, schema: &str) -> anyhow::Result<()> {
    let pool = sqlx::postgres::PgPoolOptions::new()
        .max_connections(8)
        .connect(&schema_url(schema))
        .await?;
    tokenwarden::store::migrate(&pool).await?;
    let fake = FakeOAuthServer::start("bench", "bench-secret").await?;
    fake.set_answer_delay(Duration::from_millis(args.latency_ms));
    let key_spec = format!(
        "b1:{}",
        base64::engine::general_purpose::STANDARD.encode([3u8; 32])
    );
    let keyring = Arc::new(Keyring::parse(&SecretString::from(key_spec.clone()))?);

    let start_at = Utc::now() + TimeDelta::seconds(8);
    let seeded = Instant::now();
    seed(&pool, &keyring, &fake, args, start_at).await?;
    println!(
        "seeded {} accounts in {:.1}s; due over {} s",
        args.accounts,
        seeded.elapsed().as_secs_f64(),
        args.spread_secs
    );

    let ceiling = pgbench_ceiling(schema, args.accounts)?;
    // pgbench took its 10 s: move the plan so the first refresh falls due 3 s
    // after the daemon starts.
    let shift: f64 = sqlx::query_scalar("SELECT extract(epoch FROM now() + interval '3 seconds' - min(planned_at))::float8 FROM bench_plan")
        .fetch_one(&pool)
        .await?;
    sqlx::query("UPDATE bench_plan SET planned_at = planned_at + make_interval(secs => $1), expires_at = expires_at + make_interval(secs => $1)")
        .bind(shift)
        .execute(&pool)
        .await?;
    sqlx::query(
        "UPDATE social_accounts a SET next_attempt_at = p.planned_at, token_expires_at = p.expires_at,
             token_issued_at = p.planned_at - interval '40 minutes'
         FROM bench_plan p WHERE p.id = a.id",
    )
    .execute(&pool)
    .await?;

    let queue = format!("{{tw-bench-{:08x}}}:refresh", rand::random::<u32>());
    let mut daemon = Command::new(env!("CARGO_BIN_EXE_tokenwarden"))
        .args(["run", "--role", "scheduler,worker"])
        .env("TOKENWARDEN__API__LISTEN", "127.0.0.1:0")
        .env("TOKENWARDEN__DATABASE__URL", schema_url(schema))
        .env("TOKENWARDEN__DATABASE__MAX_CONNECTIONS", "32")
        .env("TOKENWARDEN__CRYPTO__KEYS", &key_spec)
        .env("TOKENWARDEN__REDIS__QUEUE", &queue)
        .env(
            "TOKENWARDEN__PROVIDERS__X__TOKEN_URL",
            fake.url("/x/token").as_str(),
        )
        .env("TOKENWARDEN__PROVIDERS__X__CLIENT_ID", "bench")
        .env("TOKENWARDEN__PROVIDERS__X__CLIENT_SECRET", "bench-secret")
        .env("TOKENWARDEN__PROVIDERS__X__RATE_PER_SECOND", "100000")
        .env(
            "TOKENWARDEN__PROVIDERS__X__MAX_CONCURRENCY",
            args.concurrency.to_string(),
        )
        .env(
            "TOKENWARDEN__WORKER__CONCURRENCY",
            args.concurrency.to_string(),
        )
        .env("TOKENWARDEN__WORKER__POLL_INTERVAL", "50ms")
        .env("TOKENWARDEN__SCHEDULER__INTERVAL", "250ms")
        .env("TOKENWARDEN__LOG__FILTER", "warn")
        .env_remove("RUST_LOG")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()?;
    let pid = daemon.id();
    let cpu_before = cpu_by_program(pid);

    let began = Instant::now();
    let deadline = began + Duration::from_secs(args.spread_secs + args.accounts as u64 / 300 + 120);
    let mut samples: Vec<(f64, i64)> = Vec::new();
    let mut idle_rss = 0;
    let mut peak_rss = 0;
    loop {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let done: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM social_accounts WHERE last_refreshed_at IS NOT NULL",
        )
        .fetch_one(&pool)
        .await?;
        let rss = rss_kib(pid, "VmRSS:");
        if began.elapsed() < Duration::from_secs(3) {
            idle_rss = rss;
        }
        peak_rss = peak_rss.max(rss);
        samples.push((began.elapsed().as_secs_f64(), done));
        if done as usize >= args.accounts || Instant::now() > deadline {
            break;
        }
    }
    peak_rss = peak_rss.max(rss_kib(pid, "VmHWM:"));
    let cpu_after = cpu_by_program(pid);
    let wall = began.elapsed().as_secs_f64();
    let _ = Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status();
    let _ = daemon.wait();
    let _ = purge_queue(&queue).await;

    // Steady part: per-second deltas between 10 % and 90 % of the work.
    let total = samples.last().map_or(0, |s| s.1);
    let mut rates: Vec<f64> = samples
        .windows(2)
        .filter(|w| w[0].1 as f64 >= 0.1 * total as f64 && (w[1].1 as f64) <= 0.9 * total as f64)
        .map(|w| (w[1].1 - w[0].1) as f64 / (w[1].0 - w[0].0))
        .collect();
    rates.sort_by(f64::total_cmp);
    let median_rate = rates.get(rates.len() / 2).copied().unwrap_or(0.0);

    let (p50, p99, expired, refreshed): (Option<f64>, Option<f64>, i64, i64) = sqlx::query_as(
        "WITH first AS (
             SELECT account_id, min(started_at) AS at FROM refresh_attempts WHERE outcome = 'refreshed' GROUP BY account_id)
         SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY extract(epoch FROM f.at - p.planned_at))::float8,
                percentile_cont(0.99) WITHIN GROUP (ORDER BY extract(epoch FROM f.at - p.planned_at))::float8,
                count(*) FILTER (WHERE f.at IS NULL OR f.at > p.expires_at),
                count(f.at)
         FROM bench_plan p LEFT JOIN first f ON f.account_id = p.id",
    )
    .fetch_one(&pool)
    .await?;
    let calls = fake.call_count();
    println!(
        "provider latency {} ms, error rate {}, worker concurrency {}",
        args.latency_ms, args.error_rate, args.concurrency
    );
    println!(
        "refreshes/s (median, steady part): {median_rate:.0}  = {:.2} x the pgbench ceiling of {ceiling:.0} outcomes/s",
        median_rate / ceiling
    );
    println!(
        "refreshed {refreshed}/{}; provider calls per refresh {:.3}",
        args.accounts,
        calls as f64 / refreshed.max(1) as f64
    );
    println!(
        "lateness (refresh start - planned): p50 {:.2} s, p99 {:.2} s",
        p50.unwrap_or(f64::NAN),
        p99.unwrap_or(f64::NAN)
    );
    println!("tokens that expired un-refreshed: {expired}");
    println!(
        "daemon RSS: idle {:.1} MB, peak {:.1} MB",
        idle_rss as f64 / 1024.0,
        peak_rss as f64 / 1024.0
    );
    // Where the machine's CPU went during the run: the profile behind the
    // throughput.
    let used = |name: &str| {
        let find = |v: &[(String, f64)]| v.iter().find(|(n, _)| n == name).map_or(0.0, |(_, s)| *s);
        find(&cpu_after) - find(&cpu_before)
    };
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get()) as f64;
    println!(
        "CPU over {wall:.0} s wall ({:.0} CPU-s available):",
        wall * cores
    );
    for name in ["daemon", "postgres", "redis", "bench+fake"] {
        let seconds = used(name);
        println!(
            "  {name:<11} {seconds:>6.1} CPU-s  ({:.2} CPU-ms per refresh)",
            seconds / refreshed.max(1) as f64 * 1000.0
        );
    }
    Ok(())
}

/// Accounts inserted in bulk (the registration path is measured by the
/// engine bench); each has a live token family at the fake.
async fn seed(
    pool: &PgPool,
    keyring: &Keyring,
    fake: &FakeOAuthServer,
    args: &Args,
    start_at: DateTime<Utc>,
) -> anyhow::Result<()> {
    sqlx::query("CREATE TABLE bench_plan (n BIGINT PRIMARY KEY, id TEXT NOT NULL, planned_at TIMESTAMPTZ NOT NULL, expires_at TIMESTAMPTZ NOT NULL)")
        .execute(pool)
        .await?;
    let spread_ms = (args.spread_secs * 1000) as f64;
    for chunk_start in (0..args.accounts).step_by(5_000) {
        let end = (chunk_start + 5_000).min(args.accounts);
        let (mut ns, mut ids, mut planned, mut expires, mut ats, mut rts) =
            (vec![], vec![], vec![], vec![], vec![], vec![]);
        for n in chunk_start..end {
            let spec = FamilySpec {
                fail_every: (args.error_rate > 0.0)
                    .then(|| (1.0 / args.error_rate).round().max(1.0) as u32),
                ..FamilySpec::default()
            };
            let tokens = fake.issue(spec);
            let id = AccountId::generate();
            let at = start_at
                + TimeDelta::milliseconds((n as f64 / args.accounts as f64 * spread_ms) as i64);
            ats.push(keyring.encrypt(&id, Field::AccessToken, &tokens.access_token));
            rts.push(keyring.encrypt(&id, Field::RefreshToken, &tokens.refresh_token));
            ns.push(n as i64);
            planned.push(at);
            expires.push(at + TimeDelta::minutes(20));
            ids.push(id.to_string());
        }
        sqlx::query(
            "INSERT INTO social_accounts (id, workspace_id, provider, external_id, token_issued_at, token_expires_at,
                 next_attempt_at, access_token_ciphertext, refresh_token_ciphertext, credentials_key_id)
             SELECT u.id, 'ws_bench', 'X', u.id, u.planned - interval '40 minutes', u.expires, u.planned, u.at, u.rt, 'b1'
             FROM unnest($1::text[], $2::timestamptz[], $3::timestamptz[], $4::bytea[], $5::bytea[]) AS u(id, planned, expires, at, rt)",
        )
        .bind(&ids)
        .bind(&planned)
        .bind(&expires)
        .bind(&ats)
        .bind(&rts)
        .execute(pool)
        .await?;
        sqlx::query("INSERT INTO bench_plan SELECT * FROM unnest($1::bigint[], $2::text[], $3::timestamptz[], $4::timestamptz[])")
            .bind(&ns)
            .bind(&ids)
            .bind(&planned)
            .bind(&expires)
            .execute(pool)
            .await?;
    }
    sqlx::query("ANALYZE").execute(pool).await?;
    Ok(())
}

/// PostgreSQL's ceiling for one refresh outcome (one account UPDATE and one
/// attempt INSERT in a transaction), 16 clients, 10 s, on this schema.
fn pgbench_ceiling(schema: &str, accounts: usize) -> anyhow::Result<f64> {
    let script = std::env::temp_dir().join(format!("{schema}.sql"));
    std::fs::write(
        &script,
        format!(
            "\\set n random(0, {})\n\
             BEGIN;\n\
             UPDATE social_accounts SET last_refresh_attempt_at = now(), consecutive_failures = 0, updated_at = now() WHERE id = (SELECT id FROM bench_plan WHERE n = :n);\n\
             INSERT INTO refresh_attempts (account_id, provider, trigger, started_at, finished_at, outcome, duration_ms) SELECT id, 'X', 'scheduled', now(), now(), 'healthy', 1 FROM bench_plan WHERE n = :n;\n\
             COMMIT;\n",
            accounts - 1
        ),
    )?;
    let url = url::Url::parse(&database_url())?;
    let output = Command::new("pgbench")
        .args(["-n", "-c", "16", "-j", "2", "-T", "10", "-f"])
        .arg(&script)
        .arg("-h")
        .arg(url.host_str().unwrap_or("127.0.0.1"))
        .arg("-p")
        .arg(url.port().unwrap_or(5432).to_string())
        .arg("-U")
        .arg(url.username())
        .arg(url.path().trim_start_matches('/'))
        .env("PGPASSWORD", url.password().unwrap_or(""))
        .env("PGOPTIONS", format!("-c search_path={schema}"))
        .output()?;
    let _ = std::fs::remove_file(&script);
    let text = String::from_utf8_lossy(&output.stdout);
    let tps = text
        .lines()
        .find(|l| l.starts_with("tps ="))
        .and_then(|l| l.split_whitespace().nth(2))
        .and_then(|v| v.parse::<f64>().ok())
        .ok_or_else(|| {
            anyhow::anyhow!(
                "pgbench printed no tps: {text}{}",
                String::from_utf8_lossy(&output.stderr)
            )
        })?;
    println!("pgbench ceiling for one refresh outcome: {tps:.0}/s");
    Ok(tps)
}

/// Claiming 1,000 due rows out of a large table, median of five claims.
async fn claim_timing(admin: &PgPool, rows: i64) -> anyhow::Result<()> {
    let schema = format!("tw_bench_claim_{:08x}", rand::random::<u32>());
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!("CREATE SCHEMA {schema}")))
        .execute(admin)
        .await?;
    let pool = sqlx::postgres::PgPoolOptions::new()
        .max_connections(2)
        .connect(&schema_url(&schema))
        .await?;
    let result = async {
        tokenwarden::store::migrate(&pool).await?;
        let started = Instant::now();
        // Most rows are planned in the future; 1 % are due.
        sqlx::query(
            "INSERT INTO social_accounts (id, workspace_id, provider, external_id, token_expires_at, next_attempt_at)
             SELECT 'acc_' || lpad(to_hex(g), 32, '0'), 'ws', 'X', g::text, now() + interval '1 day',
                    CASE WHEN g % 100 = 0 THEN now() - interval '1 minute' ELSE now() + (g % 86400) * interval '1 second' END
             FROM generate_series(1, $1) g",
        )
        .bind(rows)
        .execute(&pool)
        .await?;
        sqlx::query("ANALYZE social_accounts").execute(&pool).await?;
        println!("claim table: {rows} rows in {:.0} s", started.elapsed().as_secs_f64());
        let mut times = Vec::new();
        for _ in 0..5 {
            let t = Instant::now();
            let claimed = tokenwarden::store::scheduling::claim_due(&pool, "bench", 1_000, Duration::from_secs(120)).await?;
            times.push(t.elapsed());
            anyhow::ensure!(claimed.len() == 1_000, "claimed {}", claimed.len());
        }
        times.sort();
        println!("claiming 1,000 due rows of {rows}: median {:.1} ms (min {:.1}, max {:.1})",
            times[2].as_secs_f64() * 1e3, times[0].as_secs_f64() * 1e3, times[4].as_secs_f64() * 1e3);
        anyhow::Ok(())
    }
    .await;
    pool.close().await;
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!("DROP SCHEMA {schema} CASCADE")))
        .execute(admin)
        .await?;
    result
}

/// CPU seconds used so far by the daemon, PostgreSQL's processes, Redis,
/// and this process (which also runs the fake platform).
fn cpu_by_program(daemon: u32) -> Vec<(String, f64)> {
    let ticks = 100.0; // USER_HZ on Linux
    let mut totals = vec![
        ("daemon".to_owned(), 0.0),
        ("postgres".to_owned(), 0.0),
        ("redis".to_owned(), 0.0),
        ("bench+fake".to_owned(), 0.0),
    ];
    let me = std::process::id();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return totals;
    };
    for entry in entries.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<u32>().ok())
        else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        let (Some(open), Some(close)) = (stat.find('('), stat.rfind(')')) else {
            continue;
        };
        let comm = &stat[open + 1..close];
        let fields: Vec<&str> = stat[close + 2..].split_whitespace().collect();
        let cpu = fields
            .get(11)
            .and_then(|u| u.parse::<f64>().ok())
            .unwrap_or(0.0)
            + fields
                .get(12)
                .and_then(|s| s.parse::<f64>().ok())
                .unwrap_or(0.0);
        let slot = if pid == daemon {
            0
        } else if comm == "postgres" {
            1
        } else if comm.starts_with("redis-server") {
            2
        } else if pid == me {
            3
        } else {
            continue;
        };
        totals[slot].1 += cpu / ticks;
    }
    totals
}

fn rss_kib(pid: u32, field: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(field))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

async fn purge_queue(queue: &str) -> anyhow::Result<()> {
    let mut settings = tokenwarden::config::Settings::from_figment(figment::Figment::new())?;
    settings.redis.url = Some(SecretString::from(
        std::env::var("TOKENWARDEN_TEST_REDIS_URL")
            .unwrap_or_else(|_| "redis://127.0.0.1:6379".into()),
    ));
    tokenwarden::queue::purge(&settings, queue).await?;
    Ok(())
}
