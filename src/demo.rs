//! `tokenwarden demo`: the main job end to end on one machine. Fake
//! platforms on loopback issue short-lived tokens (some rotating, some
//! revoked along the way, some flaky; Bluesky through its own PDS and
//! DPoP-checking authorization server); a few hundred accounts are seeded into
//! a schema of the demo's own and refreshed live through the real engine.
//! At the end it checks that every rotating account still holds a refresh
//! token the platform accepts, and that no spent token was ever replayed.
//!
//! Logs default to errors only so the progress lines stay readable;
//! `RUST_LOG=info` shows every refresh.

use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use chrono::{TimeDelta, Utc};
use clap::Args;
use secrecy::ExposeSecret;
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;

use crate::app::{self, App};
use crate::config::{ClientAuth, Flow, Settings};
use crate::crypto::{Field, Keyring};
use crate::daemon::Role;
use crate::domain::{AccessToken, AccountStatus, ConnectionType, Outcome, Provider, RefreshToken};
use crate::fake::{FakeBluesky, FakeOAuthServer, FamilySpec, OAuthSessionSpec, SessionSpec};
use crate::policy::RefreshPolicy;
use crate::providers::DpopKey;
use crate::store::accounts::{self, NewAccount};

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

/// The platforms the demo exercises, with the behaviour their real
/// counterparts have.
const DEMO_PLATFORMS: &[(Provider, &str, ClientAuth, bool, bool)] = &[
    // provider, path, client auth, rotates, returns a refresh token
    (
        Provider::X,
        "/x/2/oauth2/token",
        ClientAuth::Basic,
        true,
        true,
    ),
    (
        Provider::Pinterest,
        "/pinterest/v5/oauth/token",
        ClientAuth::Basic,
        true,
        true,
    ),
    (
        Provider::LinkedinPerson,
        "/linkedin/oauth/v2/accessToken",
        ClientAuth::Body,
        false,
        true,
    ),
    (
        Provider::Youtube,
        "/google/token",
        ClientAuth::Body,
        false,
        false,
    ),
];

/// The demo's atproto OAuth client id (a client-metadata URL; never fetched).
const BLUESKY_CLIENT_ID: &str = "https://tokenwarden.invalid/oauth-client-metadata.json";

/// Bluesky accounts are seeded in these extra slots after `DEMO_PLATFORMS`:
/// an app-password session, then an atproto OAuth session.
const BLUESKY_SLOTS: usize = 2;

/// The demo's fake platforms.
struct Fakes {
    oauth: FakeOAuthServer,
    bluesky: FakeBluesky,
}

impl Fakes {
    fn calls(&self) -> u64 {
        self.oauth.call_count() as u64
            + u64::from(self.bluesky.pds_calls())
            + u64::from(self.bluesky.token_calls())
    }
}

pub async fn run(mut settings: Settings, args: DemoArgs) -> anyhow::Result<ExitCode> {
    let client_secret = format!("demo-secret-{:016x}", rand::random::<u64>());
    let fake = FakeOAuthServer::start("demo-client", &client_secret).await?;
    // Strict about replays, so the final check would catch one.
    let bluesky = FakeBluesky::start(BLUESKY_CLIENT_ID).await?;
    let section = settings.providers.get_mut(Provider::Bluesky);
    section.flow = Flow::Bluesky;
    section.client_id = Some(BLUESKY_CLIENT_ID.into());
    section.allowed_origins = vec![bluesky.origin().parse()?];
    section.refresh_margin = Duration::from_secs(5);
    for (provider, path, auth, rotates, _) in DEMO_PLATFORMS {
        let section = settings.providers.get_mut(*provider);
        section.flow = Flow::Oauth2Refresh;
        section.token_url = Some(fake.url(path));
        section.client_id = Some("demo-client".into());
        section.client_secret = Some(client_secret.clone().into());
        section.client_auth = *auth;
        section.rotates_refresh_token = *rotates;
        section.refresh_margin = Duration::from_secs(5);
    }
    settings.scheduler.interval = Duration::from_millis(500);
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
    let fakes = Fakes {
        oauth: fake,
        bluesky,
    };
    seed(&app, &fakes, args.accounts).await?;
    println!(
        "demo: {} accounts on {} fake platforms at {} and {}; tokens live 20-45 s; Ctrl-C to stop",
        args.accounts,
        DEMO_PLATFORMS.len() + 1,
        fakes.oauth.url("/"),
        fakes.bluesky.origin(),
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
    let daemon = tokio::spawn(crate::daemon::run(
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
            _ = progress.tick() => print_progress(&app.pool, &fakes, started.elapsed()).await?,
        }
    }
    // Let refreshes in flight commit: a rotated token must not be dropped.
    shutdown.cancel();
    daemon.await.context("the demo daemon panicked")??;
    let _ = crate::queue::purge(&app.settings, &queue).await;
    print_progress(&app.pool, &fakes, started.elapsed()).await?;
    let verdict = verify(&app, &fakes).await;
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
    crate::store::migrate(&pool)
        .await
        .context("migrating the demo schema")?;
    Ok(pool)
}

async fn seed(app: &App, fakes: &Fakes, count: usize) -> anyhow::Result<()> {
    let now = Utc::now();
    let fake = &fakes.oauth;
    for i in 0..count {
        let lifetime = 20 + (i as u64 * 7) % 26;
        let slot = i % (DEMO_PLATFORMS.len() + BLUESKY_SLOTS);
        if slot >= DEMO_PLATFORMS.len() {
            seed_bluesky(
                app,
                &fakes.bluesky,
                i,
                lifetime,
                slot == DEMO_PLATFORMS.len(),
            )
            .await?;
            continue;
        }
        let (provider, _, _, rotating, returns_rt) = DEMO_PLATFORMS[slot];
        let spec = FamilySpec {
            rotating,
            return_refresh_token: returns_rt,
            access_lifetime: Some(lifetime),
            // Roughly: 1 in 20 revoked by the user after a refresh or two,
            // 1 in 25 whose grant expires, 1 in 10 behind a flaky endpoint.
            revoke_after: (i % 20 == 3).then_some(i as u32 % 2),
            expire_after: (i % 25 == 7).then_some(1),
            fail_every: (i % 10 == 5).then_some(3),
        };
        let tokens = fake.issue(spec);
        // A few accounts were connected without a refresh token (LinkedIn
        // apps without programmatic refresh): they expire for good.
        let refresh_token = (i % 50 != 11).then(|| RefreshToken::new(tokens.refresh_token));
        let new = NewAccount {
            workspace_id: format!("ws_demo_{}", i % 7),
            provider,
            external_id: format!("user-{i}"),
            handle: Some(format!("@demo{i}")),
            display_name: Some(format!("Demo account {i}")),
            avatar_url: None,
            connection_type: ConnectionType::Oauth,
            granted_scopes: vec!["read".into(), "write".into()],
            meta: serde_json::json!({}),
            default_board_id: None,
            access_token: AccessToken::new(tokens.access_token),
            refresh_token,
            token_issued_at: now,
            token_expires_at: Some(now + TimeDelta::seconds(tokens.expires_in as i64)),
            refresh_token_expires_at: None,
            dpop_key: None,
        };
        let policy = RefreshPolicy::from(app.settings.providers.get(provider));
        accounts::register(&app.pool, &app.keyring, &policy, &new).await?;
    }
    Ok(())
}

/// A Bluesky account: an app-password session on the fake PDS, or an OAuth
/// session bound to a DPoP key the "API tier" supplies.
async fn seed_bluesky(
    app: &App,
    fake: &FakeBluesky,
    i: usize,
    lifetime: u64,
    app_password: bool,
) -> anyhow::Result<()> {
    let now = Utc::now();
    // The same mix of trouble as the other platforms.
    let revoke_after = (i % 20 == 3).then_some(i as u32 % 2);
    let fail_every = (i % 10 == 5).then_some(3);
    let (external_id, access, refresh, meta, dpop_key) = if app_password {
        let session = fake.issue_session(SessionSpec {
            access_lifetime: lifetime as i64,
            revoke_after,
            fail_every,
            ..SessionSpec::default()
        });
        let meta = serde_json::json!({"pds_host": fake.origin()});
        (
            session.did,
            session.access_jwt,
            session.refresh_jwt,
            meta,
            None,
        )
    } else {
        let key = DpopKey::generate();
        let issued = fake.issue_oauth(
            OAuthSessionSpec {
                access_lifetime: lifetime,
                revoke_after,
                fail_every,
            },
            &key.public_jwk(),
        );
        let meta = serde_json::json!({"pds_host": fake.origin(), "auth_server": fake.origin()});
        (
            issued.did,
            issued.access_token,
            issued.refresh_token,
            meta,
            Some(key),
        )
    };
    let new = NewAccount {
        workspace_id: format!("ws_demo_{}", i % 7),
        provider: Provider::Bluesky,
        external_id,
        handle: Some(format!("@demo{i}.bsky.social")),
        display_name: Some(format!("Demo account {i}")),
        avatar_url: None,
        connection_type: ConnectionType::Oauth,
        granted_scopes: vec![],
        meta,
        default_board_id: None,
        access_token: AccessToken::new(access),
        refresh_token: Some(RefreshToken::new(refresh)),
        token_issued_at: now,
        token_expires_at: Some(now + TimeDelta::seconds(lifetime as i64)),
        refresh_token_expires_at: None,
        dpop_key,
    };
    let policy = RefreshPolicy::from(app.settings.providers.get(Provider::Bluesky));
    accounts::register(&app.pool, &app.keyring, &policy, &new).await?;
    Ok(())
}

async fn print_progress(pool: &PgPool, fakes: &Fakes, elapsed: Duration) -> anyhow::Result<()> {
    let (active, failing, expired, revoked, next_due): (i64, i64, i64, i64, Option<f64>) = sqlx::query_as(
        "SELECT count(*) FILTER (WHERE status = 'ACTIVE'),
                count(*) FILTER (WHERE status = 'ACTIVE' AND consecutive_failures > 0),
                count(*) FILTER (WHERE status = 'TOKEN_EXPIRED'),
                count(*) FILTER (WHERE status = 'REVOKED'),
                extract(epoch FROM min(next_attempt_at) FILTER (WHERE status = 'ACTIVE') - now())::float8
         FROM social_accounts",
    )
    .fetch_one(pool)
    .await?;
    let by_outcome: Vec<(String, i64)> =
        sqlx::query_as("SELECT outcome, count(*) FROM refresh_attempts GROUP BY outcome")
            .fetch_all(pool)
            .await?;
    let count = |o: Outcome| {
        by_outcome
            .iter()
            .find(|(name, _)| name == o.as_str())
            .map_or(0, |(_, n)| *n)
    };
    println!(
        "[{:>4}s] refreshed {:>5} | transient {:>4} | active {:>4} (failing {:>3}) | expired {:>3} | revoked {:>3} | next due {:>5} | provider calls {:>5}",
        elapsed.as_secs(),
        count(Outcome::Refreshed),
        count(Outcome::TransientError) + count(Outcome::RateLimited),
        active,
        failing,
        expired,
        revoked,
        next_due
            .map(|s| format!("{:.0}s", s.max(0.0)))
            .unwrap_or_else(|| "-".into()),
        fakes.calls(),
    );
    Ok(())
}

/// The demo's own proof that rotation was handled: every ACTIVE account on a
/// rotating platform holds a refresh token the platform still accepts, and
/// the platform never saw a spent token again.
async fn verify(app: &App, fakes: &Fakes) -> anyhow::Result<ExitCode> {
    let rows = accounts::list(
        &app.pool,
        &accounts::ListFilter {
            status: Some(AccountStatus::Active),
            limit: i64::MAX,
            ..Default::default()
        },
    )
    .await?;
    let mut checked = 0;
    let mut stranded = 0;
    for row in rows.iter().filter(|r| {
        matches!(
            r.provider,
            Provider::X | Provider::Pinterest | Provider::Bluesky
        )
    }) {
        let (Some(blob), Some(key_id)) = (&row.refresh_token_ciphertext, &row.credentials_key_id)
        else {
            continue;
        };
        let refresh = app
            .keyring
            .decrypt(&row.id, Field::RefreshToken, key_id, blob)?;
        checked += 1;
        let refresh = refresh.expose_secret();
        let live = match row.provider {
            Provider::Bluesky if row.meta.get("auth_server").is_some() => {
                fakes.bluesky.is_live_oauth(refresh)
            }
            Provider::Bluesky => fakes.bluesky.is_live_session(refresh),
            _ => fakes.oauth.is_live(refresh),
        };
        if !live {
            stranded += 1;
        }
    }
    let replays = fakes.oauth.reuse_detected() + fakes.bluesky.reuse_detected();
    println!(
        "rotating accounts holding a live refresh token: {}/{checked}; spent tokens replayed: {replays}",
        checked - stranded
    );
    Ok(if stranded == 0 && replays == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
