//! Refresh-engine throughput against real PostgreSQL and the loopback fake
//! platform: registrations per second, refreshes per second at a given
//! concurrency, and per-refresh latency percentiles.
//!
//!   scripts/services.sh && . scripts/env.sh && cargo bench --bench engine -- [accounts] [concurrency]

use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{TimeDelta, Utc};
use figment::Figment;
use figment::providers::{Format, Toml};
use secrecy::SecretString;
use tokenwarden::config::{DEFAULT_TOML, Flow, Settings};
use tokenwarden::crypto::Keyring;
use tokenwarden::domain::{AccessToken, ConnectionType, Outcome, Provider, RefreshToken, Trigger};
use tokenwarden::engine::{Engine, EngineConfig};
use tokenwarden::policy::RefreshPolicy;
use tokenwarden::providers::ProviderRegistry;
use tokenwarden::store::{self, accounts};
use tokenwarden_fakes::{FakeOAuthServer, FamilySpec};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .collect();
    let count: usize = args.first().and_then(|a| a.parse().ok()).unwrap_or(5_000);
    let concurrency: usize = args.get(1).and_then(|a| a.parse().ok()).unwrap_or(32);
    let url = std::env::var("TOKENWARDEN_TEST_DATABASE_URL").unwrap_or_else(|_| {
        "postgres://tokenwarden:tokenwarden@127.0.0.1:5432/tokenwarden_test".into()
    });
    let schema = format!("tw_bench_{:08x}", rand::random::<u32>());

    let admin = sqlx::PgPool::connect(&url).await?;
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!("CREATE SCHEMA {schema}")))
        .execute(&admin)
        .await?;
    let result = run(&url, &schema, count, concurrency).await;
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!("DROP SCHEMA {schema} CASCADE")))
        .execute(&admin)
        .await?;
    result
}

async fn run(url: &str, schema: &str, count: usize, concurrency: usize) -> anyhow::Result<()> {
    let fake = FakeOAuthServer::start("bench", "bench-secret").await?;
    let mut settings = Settings::from_figment(Figment::new().merge(Toml::string(DEFAULT_TOML)))?;
    settings.database.url = Some(SecretString::from(url.to_owned()));
    settings.database.max_connections = 16;
    let x = settings.providers.get_mut(Provider::X);
    x.flow = Flow::Oauth2Refresh;
    x.token_url = Some(fake.url("/x/token"));
    x.client_id = Some("bench".into());
    x.client_secret = Some(SecretString::from("bench-secret"));

    let pool = store::connect(&settings.database, Some(schema)).await?;
    store::migrate(&pool).await?;
    let keyring = Arc::new(Keyring::generate("bench"));
    let policy = RefreshPolicy::from(settings.providers.get(Provider::X));

    let started = Instant::now();
    let mut ids = Vec::with_capacity(count);
    for i in 0..count {
        let tokens = fake.issue(FamilySpec::default());
        let new = accounts::NewAccount {
            workspace_id: "ws_bench".into(),
            provider: Provider::X,
            external_id: format!("u{i}"),
            handle: None,
            display_name: None,
            avatar_url: None,
            connection_type: ConnectionType::Oauth,
            granted_scopes: vec![],
            meta: serde_json::json!({}),
            default_board_id: None,
            access_token: AccessToken::new(tokens.access_token),
            refresh_token: Some(RefreshToken::new(tokens.refresh_token)),
            token_issued_at: Utc::now() - TimeDelta::hours(2),
            token_expires_at: Some(Utc::now()),
            refresh_token_expires_at: None,
            dpop_key: None,
        };
        ids.push(
            accounts::register(&pool, &keyring, &policy, &new)
                .await?
                .account
                .id,
        );
    }
    let register_rate = count as f64 / started.elapsed().as_secs_f64();

    let providers = ProviderRegistry::from_settings(&settings.providers, &settings.http)?;
    let engine = Engine::new(
        pool.clone(),
        keyring,
        providers,
        EngineConfig::from_settings(&settings),
    );
    let semaphore = Arc::new(tokio::sync::Semaphore::new(concurrency));
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for id in ids {
        let permit = semaphore.clone().acquire_owned().await?;
        let engine: Engine = engine.clone();
        tasks.spawn(async move {
            let began = Instant::now();
            let report = engine.refresh(&id, Trigger::Scheduled).await;
            drop(permit);
            (began.elapsed(), report.map(|r| r.outcome))
        });
    }
    let mut latencies: Vec<Duration> = Vec::with_capacity(count);
    let mut refreshed = 0;
    while let Some(joined) = tasks.join_next().await {
        let (latency, outcome) = joined?;
        latencies.push(latency);
        if matches!(outcome, Ok(Outcome::Refreshed)) {
            refreshed += 1;
        }
    }
    let elapsed = started.elapsed();
    latencies.sort();
    let pct = |p: f64| latencies[((latencies.len() as f64 * p) as usize).min(latencies.len() - 1)];
    println!("accounts {count}, concurrency {concurrency}");
    println!("registrations:  {register_rate:.0}/s (sequential, one transaction each)");
    println!(
        "refreshes:      {refreshed}/{count} refreshed, {:.0}/s; latency p50 {:.1} ms, p99 {:.1} ms",
        refreshed as f64 / elapsed.as_secs_f64(),
        pct(0.50).as_secs_f64() * 1e3,
        pct(0.99).as_secs_f64() * 1e3
    );
    println!(
        "provider calls: {} (spent tokens replayed: {})",
        fake.call_count(),
        fake.reuse_detected()
    );
    Ok(())
}
