//! `tokenwarden demo`: the main job end to end on one machine. Fake
//! platforms on loopback (X-style rotating, Pinterest, Google, LinkedIn with
//! token introspection, Facebook Pages with debug_token, a Bluesky PDS and
//! DPoP-checking authorization server) issue short-lived tokens (some
//! rotating, some revoked along the way, some flaky); a few
//! hundred accounts are seeded into a schema of the demo's own and refreshed
//! or health-checked live through the real engine.
//! At the end it checks that every rotating account still holds a refresh
//! token the platform accepts, and that no spent token was ever replayed.
//!
//! Logs default to errors only so the progress lines stay readable;
//! `RUST_LOG=info` shows every refresh.

use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::Args;
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;

use tokenwarden::app::{self, App};
use tokenwarden::config::Settings;
use tokenwarden::crypto::Keyring;
use tokenwarden::daemon::Role;

mod fakes;
mod progress;
mod seed;
mod verify;

use fakes::DemoFakes;
use progress::print_progress;
use seed::{DEMO_PLATFORMS, seed};
use verify::verify;

#[derive(Args, Debug, Clone)]
pub struct DemoArgs {
    /// Accounts to seed.
    #[arg(long, default_value_t = 300)]
    pub accounts: usize,
    /// Stop after this long (e.g. 90s); default: until Ctrl-C.
    #[arg(long, value_parser = humantime::parse_duration)]
    pub duration: Option<Duration>,
    /// Refreshes in flight at once.
    #[arg(long, default_value_t = 32)]
    pub concurrency: usize,
    /// Seconds between progress lines.
    #[arg(long, default_value_t = 2)]
    pub progress_every: u64,
    /// Schema the demo recreates and works in (kept afterwards for a look).
    #[arg(long, default_value = "tokenwarden_demo", value_parser = parse_schema)]
    pub schema: String,
    /// Drop the schema when the demo ends.
    #[arg(long)]
    pub drop_schema: bool,
}

fn parse_schema(s: &str) -> Result<String, String> {
    let valid = !s.is_empty()
        && s.len() <= 63
        && s.starts_with(|c: char| c.is_ascii_lowercase() || c == '_')
        && s.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
    if valid {
        Ok(s.to_owned())
    } else {
        Err("a schema name is 1-63 characters of a-z 0-9 _".into())
    }
}

pub async fn run(mut settings: Settings, args: DemoArgs) -> anyhow::Result<ExitCode> {
    let client_secret = format!("demo-secret-{:016x}", rand::random::<u64>());
    let fake = DemoFakes::start(&client_secret).await?;
    fake.configure(&mut settings, &client_secret);
    settings.scheduler.interval = Duration::from_millis(500);
    // Probes and metrics on a loopback port of the demo's own (logged).
    settings.api.listen = "127.0.0.1:0".into();
    settings.api.metrics_listen = String::new();
    settings.worker.concurrency = args.concurrency.max(1);
    // Short backoff so failures visibly recover within the demo.
    settings.engine.retry_base = Duration::from_secs(2);
    settings.engine.retry_cap = Duration::from_secs(15);

    let keyring = match &settings.crypto.keys {
        Some(_) => app::keyring(&settings)?,
        None => {
            println!("demo: crypto.keys is not set; using a throwaway key for this run");
            Keyring::generate("demo")
        }
    };
    let pool = fresh_schema(&settings, &args.schema).await?;
    let app = App::with_pool(settings, pool, Arc::new(keyring)).await?;
    seed(&app, &fake, args.accounts).await?;
    println!(
        "demo: {} accounts on {} fake platforms on loopback; tokens live 20-45 s, page tokens never expire; Ctrl-C to stop",
        args.accounts,
        DEMO_PLATFORMS.len() + 2,
    );

    // The real daemon: scheduler and workers over Redis, on a queue of this
    // run's own.
    let queue = format!("{{tokenwarden-demo-{:08x}}}:refresh", rand::random::<u32>());
    let shutdown = CancellationToken::new();
    let daemon_app = App {
        settings: app.settings.clone(),
        pool: app.pool.clone(),
        keyring: app.keyring.clone(),
        engine: app.engine.clone(),
    };
    let daemon = tokio::spawn(tokenwarden::daemon::run(
        daemon_app,
        vec![Role::Scheduler, Role::Worker],
        queue.clone(),
        shutdown.clone(),
    ));

    let started = tokio::time::Instant::now();
    let stop_at = args.duration.map(|d| started + d);
    let mut progress = tokio::time::interval(Duration::from_secs(args.progress_every.max(1)));
    let ctrl_c = tokio::signal::ctrl_c();
    tokio::pin!(ctrl_c);
    loop {
        tokio::select! {
            _ = &mut ctrl_c => break,
            _ = async { tokio::time::sleep_until(stop_at.unwrap()).await }, if stop_at.is_some() => break,
            _ = progress.tick() => print_progress(&app.pool, &fake, started.elapsed()).await?,
        }
    }
    // Let refreshes in flight commit: a rotated token must not be dropped.
    shutdown.cancel();
    daemon.await.context("the demo daemon panicked")??;
    let _ = tokenwarden::queue::purge(&app.settings, &queue).await;
    print_progress(&app.pool, &fake, started.elapsed()).await?;
    let verdict = verify(&app, &fake).await;
    app.pool.close().await;
    if args.drop_schema {
        let admin = app::connect(&app.settings, None).await?;
        sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
            "DROP SCHEMA IF EXISTS {} CASCADE",
            args.schema
        )))
        .execute(&admin)
        .await?;
    } else {
        println!(
            "the demo's accounts stay in schema {} until the next run",
            args.schema
        );
    }
    verdict
}

/// Recreates the demo's schema so each run starts clean.
async fn fresh_schema(settings: &Settings, schema: &str) -> anyhow::Result<PgPool> {
    let admin = app::connect(settings, None).await?;
    // `schema` passed parse_schema: safe to splice.
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
        "DROP SCHEMA IF EXISTS {schema} CASCADE; CREATE SCHEMA {schema};"
    )))
    .execute(&admin)
    .await
    .context("creating the demo schema")?;
    admin.close().await;
    let pool = app::connect(settings, Some(schema)).await?;
    tokenwarden::store::migrate(&pool)
        .await
        .context("migrating the demo schema")?;
    Ok(pool)
}
