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
use chrono::{TimeDelta, Utc};
use clap::Args;
use secrecy::ExposeSecret;
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;

use tokenwarden::app::{self, App};
use tokenwarden::config::{ClientAuth, Flow, Settings};
use tokenwarden::crypto::{Field, Keyring};
use tokenwarden::daemon::Role;
use tokenwarden::domain::{
    AccessToken, AccountStatus, ConnectionType, Outcome, Provider, RefreshToken,
};
use tokenwarden::policy::RefreshPolicy;
use tokenwarden::providers::DpopKey;
use tokenwarden::store::accounts::{self, NewAccount};
use tokenwarden_fakes::{FakeBluesky, OAuthSessionSpec, SessionSpec};
use tokenwarden_fakes::{
    FakeGoogle, FakeGraph, FakeLinkedin, FakeOAuthServer, FakePinterest, FamilySpec, GoogleGrant,
    GraphTokenState, LinkedinTokenState, PinterestGrant,
};

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

/// The platforms the demo cycles through; one account in ten is a Facebook
/// Page, whose token never expires and is health-checked instead.
const DEMO_PLATFORMS: &[Provider] = &[
    Provider::X,
    Provider::Pinterest,
    Provider::LinkedinPerson,
    Provider::Youtube,
];

const DEMO_CLIENT: &str = "demo-client";

/// The fakes, one per platform wire format.
struct DemoFakes {
    /// X-style strict rotating endpoint.
    oauth: FakeOAuthServer,
    pinterest: FakePinterest,
    google: FakeGoogle,
    linkedin: FakeLinkedin,
    graph: FakeGraph,
    /// PDS and atproto authorization server; strict about replays, so the
    /// final check would catch one.
    bluesky: FakeBluesky,
}

/// The demo's atproto OAuth client id (a client-metadata URL; never fetched).
const BLUESKY_CLIENT_ID: &str = "https://tokenwarden.invalid/oauth-client-metadata.json";

impl DemoFakes {
    async fn start(secret: &str) -> std::io::Result<Self> {
        let linkedin = FakeLinkedin::start(DEMO_CLIENT, secret).await?;
        linkedin.set_access_lifetime(LINKEDIN_DEMO_LIFETIME);
        Ok(Self {
            oauth: FakeOAuthServer::start(DEMO_CLIENT, secret).await?,
            pinterest: FakePinterest::start(DEMO_CLIENT, secret).await?,
            google: FakeGoogle::start(DEMO_CLIENT, secret).await?,
            linkedin,
            graph: FakeGraph::facebook(DEMO_CLIENT, secret).await?,
            bluesky: FakeBluesky::start(BLUESKY_CLIENT_ID).await?,
        })
    }

    fn configure(&self, settings: &mut Settings, secret: &str) {
        let endpoints = [
            (
                Provider::X,
                Flow::X,
                self.oauth.url("/x/2/oauth2/token"),
                None,
            ),
            (
                Provider::Pinterest,
                Flow::Pinterest,
                self.pinterest.token_url(),
                None,
            ),
            (
                Provider::Youtube,
                Flow::Google,
                self.google.token_url(),
                None,
            ),
            (
                Provider::LinkedinPerson,
                Flow::Linkedin,
                self.linkedin.token_url(),
                Some(self.linkedin.introspect_url()),
            ),
            (
                Provider::FacebookPage,
                Flow::Facebook,
                self.graph.exchange_url(),
                Some(self.graph.debug_token_url()),
            ),
        ];
        for (provider, flow, token_url, health_url) in endpoints {
            let section = settings.providers.get_mut(provider);
            section.flow = flow;
            section.token_url = Some(token_url);
            section.health_url = health_url;
            section.client_id = Some(DEMO_CLIENT.into());
            section.client_secret = Some(secret.to_owned().into());
            section.refresh_margin = Duration::from_secs(5);
            // Never-expiring tokens and LinkedIn accounts without a refresh
            // token are checked every few seconds instead of daily.
            section.health_check_interval = Duration::from_secs(8);
        }
        // The generic fake checks X's Basic client authentication.
        settings.providers.x.client_auth = ClientAuth::Basic;
        let bluesky = settings.providers.get_mut(Provider::Bluesky);
        bluesky.flow = Flow::Bluesky;
        bluesky.client_id = Some(BLUESKY_CLIENT_ID.into());
        bluesky.allowed_origins = vec![
            self.bluesky
                .origin()
                .parse()
                .expect("the fake's origin is a URL"),
        ];
        bluesky.refresh_margin = Duration::from_secs(5);
    }

    fn calls(&self) -> u64 {
        self.oauth.call_count() as u64
            + self.pinterest.calls()
            + self.google.calls()
            + self.linkedin.calls()
            + u64::from(self.graph.calls())
            + u64::from(self.bluesky.pds_calls())
            + u64::from(self.bluesky.token_calls())
    }
}

/// LinkedIn's fake hands out access tokens this short-lived in the demo.
const LINKEDIN_DEMO_LIFETIME: u64 = 30;

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

async fn seed(app: &App, fake: &DemoFakes, count: usize) -> anyhow::Result<()> {
    let now = Utc::now();
    for i in 0..count {
        let provider = if i % 10 == 9 {
            Provider::FacebookPage
        } else {
            DEMO_PLATFORMS[i % DEMO_PLATFORMS.len()]
        };
        let lifetime = 20 + (i as u64 * 7) % 26;
        // Two in ten on Bluesky: an app-password session, an OAuth session.
        if matches!(i % 10, 4 | 8) {
            seed_bluesky(app, &fake.bluesky, i, lifetime, i % 10 == 4).await?;
            continue;
        }
        // Roughly: 1 in 23 revoked by the user after a refresh or two,
        // 1 in 25 whose grant expires, 1 in 11 behind a flaky endpoint (the
        // moduli are prime to the platform cycle, so every platform gets some).
        let revoke_after = (i % 23 == 3).then_some(i as u32 % 2);
        let fail_every = (i % 11 == 5).then_some(3);
        let (access, refresh, expires_in) = match provider {
            Provider::X => {
                let tokens = fake.oauth.issue(FamilySpec {
                    rotating: true,
                    return_refresh_token: true,
                    access_lifetime: Some(lifetime),
                    revoke_after,
                    expire_after: (i % 25 == 7).then_some(1),
                    fail_every,
                });
                (tokens.access_token, tokens.refresh_token, Some(lifetime))
            }
            Provider::Pinterest => {
                let (access, refresh) = fake.pinterest.issue(PinterestGrant {
                    access_lifetime: lifetime,
                    fail_every,
                    revoke_after,
                });
                (access, refresh, Some(lifetime))
            }
            Provider::Youtube => {
                let (access, refresh) = fake.google.issue(GoogleGrant {
                    access_lifetime: lifetime,
                    fail_every,
                    ..GoogleGrant::default()
                });
                if revoke_after.is_some() {
                    fake.google.revoke(&refresh);
                }
                (access, refresh, Some(lifetime))
            }
            Provider::LinkedinPerson => {
                let (access, refresh) = fake.linkedin.issue(Duration::ZERO);
                if revoke_after.is_some() {
                    fake.linkedin.revoke(&refresh);
                    fake.linkedin
                        .set_access_state(&access, LinkedinTokenState::Revoked);
                }
                (access, refresh, Some(LINKEDIN_DEMO_LIFETIME))
            }
            _ => {
                // One page in four has had the app removed by its admin.
                let state = if i % 40 == 19 {
                    GraphTokenState::AppRemoved
                } else {
                    GraphTokenState::Live
                };
                (fake.graph.issue_page(state), String::new(), None)
            }
        };
        // A few accounts were connected without a refresh token (LinkedIn
        // apps without programmatic refresh are introspected until their
        // token expires; the others simply expire).
        let refresh_token =
            (!matches!(i % 50, 10 | 24) && !refresh.is_empty()).then(|| RefreshToken::new(refresh));
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
            access_token: AccessToken::new(access),
            refresh_token,
            token_issued_at: now,
            token_expires_at: expires_in.map(|s| now + TimeDelta::seconds(s as i64)),
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
    // Some trouble here too (seeded slots are i % 10 == 4 or 8).
    let revoke_after = (i % 40 == 14).then_some(i as u32 % 2);
    let fail_every = (i % 30 == 8).then_some(3);
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

async fn print_progress(pool: &PgPool, fake: &DemoFakes, elapsed: Duration) -> anyhow::Result<()> {
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
        "[{:>4}s] refreshed {:>5} | healthy {:>4} | transient {:>4} | active {:>4} (failing {:>3}) | expired {:>3} | revoked {:>3} | next due {:>5} | provider calls {:>5}",
        elapsed.as_secs(),
        count(Outcome::Refreshed),
        count(Outcome::Healthy),
        count(Outcome::TransientError) + count(Outcome::RateLimited),
        active,
        failing,
        expired,
        revoked,
        next_due
            .map(|s| format!("{:.0}s", s.max(0.0)))
            .unwrap_or_else(|| "-".into()),
        fake.calls(),
    );
    Ok(())
}

/// The demo's own proof that rotation was handled: every ACTIVE account on a
/// rotating platform holds a refresh token the platform still accepts, and
/// the platform never saw a spent token again.
async fn verify(app: &App, fake: &DemoFakes) -> anyhow::Result<ExitCode> {
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
        let live = match row.provider {
            Provider::Pinterest => fake.pinterest.is_live(refresh.expose_secret()),
            Provider::Bluesky if row.meta.get("auth_server").is_some() => {
                fake.bluesky.is_live_oauth(refresh.expose_secret())
            }
            Provider::Bluesky => fake.bluesky.is_live_session(refresh.expose_secret()),
            _ => fake.oauth.is_live(refresh.expose_secret()),
        };
        if !live {
            stranded += 1;
        }
    }
    let replays = fake.oauth.reuse_detected()
        + fake.pinterest.reuse_detected()
        + fake.bluesky.reuse_detected();
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
