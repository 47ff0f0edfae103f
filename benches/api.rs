//! HTTP API figures against real PostgreSQL, over a real socket: requests per
//! second and latency percentiles of the calls the API tier makes most
//! (a valid access token; one account; a page of the listing).
//!
//!   scripts/services.sh && . scripts/env.sh && cargo bench --bench api -- [accounts] [concurrency] [seconds]

use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{TimeDelta, Utc};
use figment::Figment;
use figment::providers::{Format, Toml};
use secrecy::SecretString;
use tokenwarden::api::{self, ApiState};
use tokenwarden::config::{DEFAULT_TOML, Settings};
use tokenwarden::crypto::Keyring;
use tokenwarden::domain::{AccessToken, ConnectionType, Provider, RefreshToken};
use tokenwarden::engine::{Engine, EngineConfig};
use tokenwarden::policy::RefreshPolicy;
use tokenwarden::providers::ProviderRegistry;
use tokenwarden::store::{self, accounts};

const KEY: &str = "bench-api-key-0123456789";

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .collect();
    let count: usize = args.first().and_then(|a| a.parse().ok()).unwrap_or(2_000);
    let concurrency: usize = args.get(1).and_then(|a| a.parse().ok()).unwrap_or(32);
    let seconds: u64 = args.get(2).and_then(|a| a.parse().ok()).unwrap_or(10);
    let url = std::env::var("TOKENWARDEN_TEST_DATABASE_URL").unwrap_or_else(|_| {
        "postgres://tokenwarden:tokenwarden@127.0.0.1:5432/tokenwarden_test".into()
    });
    let schema = format!("tw_bench_{:08x}", rand::random::<u32>());
    let admin = sqlx::PgPool::connect(&url).await?;
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!("CREATE SCHEMA {schema}")))
        .execute(&admin)
        .await?;
    let result = run(
        &url,
        &schema,
        count,
        concurrency,
        Duration::from_secs(seconds),
    )
    .await;
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!("DROP SCHEMA {schema} CASCADE")))
        .execute(&admin)
        .await?;
    result
}

async fn run(
    url: &str,
    schema: &str,
    count: usize,
    concurrency: usize,
    duration: Duration,
) -> anyhow::Result<()> {
    let mut settings = Settings::from_figment(Figment::new().merge(Toml::string(DEFAULT_TOML)))?;
    settings.database.url = Some(SecretString::from(url.to_owned()));
    settings.api.keys = Some(SecretString::from(KEY));
    let pool = store::connect(&settings.database, Some(schema)).await?;
    store::migrate(&pool).await?;
    let keyring = Arc::new(Keyring::generate("bench"));
    let policy = RefreshPolicy::from(settings.providers.get(Provider::X));
    let mut ids = Vec::with_capacity(count);
    for i in 0..count {
        let new = accounts::NewAccount {
            workspace_id: "ws_bench".into(),
            provider: Provider::X,
            external_id: format!("u{i}"),
            handle: Some(format!("@user{i}")),
            display_name: None,
            avatar_url: None,
            connection_type: ConnectionType::Oauth,
            granted_scopes: vec![],
            meta: serde_json::json!({}),
            default_board_id: None,
            access_token: AccessToken::new(format!("at-{i:032x}")),
            refresh_token: Some(RefreshToken::new(format!("rt-{i:032x}"))),
            token_issued_at: Utc::now(),
            token_expires_at: Some(Utc::now() + TimeDelta::hours(2)),
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
    let providers = ProviderRegistry::from_settings(&settings.providers, &settings.http)?;
    let engine = Engine::new(
        pool,
        keyring,
        providers,
        EngineConfig::from_settings(&settings),
    );
    let app = api::router(ApiState::new(&settings, engine)?, 65536, true);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let base = format!("http://{}", listener.local_addr()?);
    tokio::spawn(async move { axum::serve(listener, app).await });
    let http = reqwest::Client::new();
    let ids = Arc::new(ids);

    println!("{count} accounts, {concurrency} concurrent clients, {duration:?} per endpoint");
    for (name, path) in [
        ("GET access-token", "/v1/accounts/{id}/access-token"),
        ("GET account", "/v1/accounts/{id}"),
        ("GET accounts?limit=50", "/v1/accounts?limit=50"),
    ] {
        let stop = Instant::now() + duration;
        let mut clients = tokio::task::JoinSet::new();
        for c in 0..concurrency {
            let (http, base, ids) = (http.clone(), base.clone(), ids.clone());
            clients.spawn(async move {
                let mut latencies = Vec::new();
                let mut i = c;
                while Instant::now() < stop {
                    let id = &ids[i % ids.len()];
                    let url = format!("{base}{}", path.replace("{id}", id.as_str()));
                    let started = Instant::now();
                    let reply = http.get(url).bearer_auth(KEY).send().await.expect("reply");
                    assert!(reply.status().is_success(), "{}", reply.status());
                    reply.bytes().await.expect("body");
                    latencies.push(started.elapsed());
                    i += concurrency;
                }
                latencies
            });
        }
        let mut all: Vec<Duration> = clients.join_all().await.into_iter().flatten().collect();
        all.sort();
        let pct = |p: f64| all[((all.len() as f64 * p) as usize).min(all.len() - 1)];
        println!(
            "{name:<24} {:>7.0} req/s   p50 {:>6.2} ms   p99 {:>6.2} ms",
            all.len() as f64 / duration.as_secs_f64(),
            pct(0.50).as_secs_f64() * 1e3,
            pct(0.99).as_secs_f64() * 1e3,
        );
    }
    Ok(())
}
