//! PostgreSQL's own ceilings, measured with pgbench alone on the benchmark's
//! schema: what the daemon's throughput is held against.

use sqlx::PgPool;

use crate::fixture::database_url;

/// The flags of every ceiling run.
pub const FLAGS: [&str; 7] = ["-n", "-c", "16", "-j", "2", "-T", "15"];

/// The smallest durable record of a refresh: a narrow account row with the
/// new token, and one attempt row (no index besides the account's key).
pub const MINIMAL_TABLES: &str = "
    CREATE TABLE bench_min_account (id TEXT PRIMARY KEY, token TEXT, expires_at TIMESTAMPTZ, version BIGINT);
    CREATE TABLE bench_min_attempt (account_id TEXT, started_at TIMESTAMPTZ, finished_at TIMESTAMPTZ,
                                    outcome TEXT, http_status INT);";

pub async fn seed_minimal(pool: &PgPool, accounts: usize) -> anyhow::Result<()> {
    sqlx::query(
        "INSERT INTO bench_min_account
         SELECT 'acc_' || g, md5(g::text), now() + interval '1 hour', 1 FROM generate_series(1, $1) g",
    )
    .bind(accounts as i64)
    .execute(pool)
    .await?;
    sqlx::raw_sql("ANALYZE bench_min_account")
        .execute(pool)
        .await?;
    Ok(())
}

/// One transaction: UPDATE a random narrow account row, INSERT one attempt.
pub async fn minimal_outcome(schema: &str, accounts: usize) -> anyhow::Result<f64> {
    let script = format!(
        "\\set n random(1, {accounts})\n\
         BEGIN;\n\
         UPDATE bench_min_account SET token = md5(random()::text), expires_at = now() + interval '1 hour', version = version + 1 WHERE id = 'acc_' || :n;\n\
         INSERT INTO bench_min_attempt (account_id, started_at, finished_at, outcome, http_status) VALUES ('acc_' || :n, now(), now(), 'refreshed', 200);\n\
         COMMIT;\n"
    );
    run(schema, "minimal", &script).await
}

/// tokenwarden's own tables: one UPDATE of a `social_accounts` row and one
/// INSERT into `refresh_attempts`, with every index the daemon has.
pub async fn own_write(schema: &str, accounts: usize) -> anyhow::Result<f64> {
    let script = format!(
        "\\set n random(0, {})\n\
         BEGIN;\n\
         UPDATE social_accounts SET last_refresh_attempt_at = now(), consecutive_failures = 0, updated_at = now() WHERE id = (SELECT id FROM bench_plan WHERE n = :n);\n\
         INSERT INTO refresh_attempts (account_id, provider, trigger, started_at, finished_at, outcome, duration_ms) SELECT id, 'X', 'scheduled', now(), now(), 'healthy', 1 FROM bench_plan WHERE n = :n;\n\
         COMMIT;\n",
        accounts - 1
    );
    run(schema, "own", &script).await
}

/// Transactions per second of `script`, pgbench's own count.
async fn run(schema: &str, name: &str, script: &str) -> anyhow::Result<f64> {
    let path = std::env::temp_dir().join(format!("{schema}-{name}.sql"));
    std::fs::write(&path, script)?;
    let url = url::Url::parse(&database_url())?;
    // The ceiling connects as the daemon does: TLS or not, as the URL says
    // (libpq's own default, `prefer`, where it says nothing).
    let sslmode = url
        .query_pairs()
        .find(|(key, _)| key == "sslmode")
        .map_or_else(|| "prefer".to_owned(), |(_, mode)| mode.into_owned());
    let output = tokio::process::Command::new("pgbench")
        .args(FLAGS)
        .arg("-f")
        .arg(&path)
        .arg("-h")
        .arg(url.host_str().unwrap_or("127.0.0.1"))
        .arg("-p")
        .arg(url.port().unwrap_or(5432).to_string())
        .arg("-U")
        .arg(url.username())
        .arg(url.path().trim_start_matches('/'))
        .env("PGPASSWORD", url.password().unwrap_or(""))
        .env("PGOPTIONS", format!("-c search_path={schema}"))
        .env("PGSSLMODE", sslmode)
        .output()
        .await;
    let _ = std::fs::remove_file(&path);
    let output = output?;
    let text = String::from_utf8_lossy(&output.stdout);
    text.lines()
        .find(|l| l.starts_with("tps ="))
        .and_then(|l| l.split_whitespace().nth(2))
        .and_then(|v| v.parse::<f64>().ok())
        .ok_or_else(|| {
            anyhow::anyhow!(
                "pgbench printed no tps: {text}{}",
                String::from_utf8_lossy(&output.stderr)
            )
        })
}
