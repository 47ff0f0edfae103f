//! Shared test fixtures: a PostgreSQL schema per test (dropped on drop), a
//! fake platform per test on loopback, and an engine wired to both.
#![allow(dead_code)]

pub mod capture;
pub mod proxy;

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use figment::Figment;
use figment::providers::{Format, Toml};
use secrecy::{ExposeSecret, SecretString};
use sqlx::PgPool;
use tokenwarden::config::{ClientAuth, DEFAULT_TOML, Flow, Settings};
use tokenwarden::crypto::{Field, Keyring};
use tokenwarden::domain::{AccessToken, AccountId, ConnectionType, Provider, RefreshToken};
use tokenwarden::engine::{Engine, EngineConfig};
use tokenwarden::policy::RefreshPolicy;
use tokenwarden::providers::ProviderRegistry;
use tokenwarden::store::{self, accounts};
use tokenwarden_fakes::{FakeOAuthServer, FamilySpec, IssuedTokens};

pub const CLIENT_ID: &str = "test-client";
pub const CLIENT_SECRET: &str = "test-client-secret";

pub fn database_url() -> String {
    std::env::var("TOKENWARDEN_TEST_DATABASE_URL").unwrap_or_else(|_| {
        "postgres://tokenwarden:tokenwarden@127.0.0.1:5432/tokenwarden_test".into()
    })
}

/// A schema of its own for one test, migrated, dropped when the value drops.
pub struct TestDb {
    pub pool: PgPool,
    pub schema: String,
}

impl TestDb {
    pub async fn new() -> Self {
        let schema = format!(
            "tw_test_{}_{:08x}",
            Utc::now().timestamp(),
            rand::random::<u32>()
        );
        let admin = PgPool::connect(&database_url())
            .await
            .expect("test database reachable");
        sweep_stale_schemas(&admin).await;
        sqlx::raw_sql(sqlx::AssertSqlSafe(format!("CREATE SCHEMA {schema}")))
            .execute(&admin)
            .await
            .unwrap();
        admin.close().await;
        let pool = sqlx::postgres::PgPoolOptions::new()
            .max_connections(8)
            .connect(&Self::url_for(&schema))
            .await
            .unwrap();
        store::migrate(&pool).await.unwrap();
        Self { pool, schema }
    }

    fn url_for(schema: &str) -> String {
        let base = database_url();
        let sep = if base.contains('?') { '&' } else { '?' };
        format!("{base}{sep}options=-c%20search_path%3D{schema}")
    }

    /// A URL that lands in this test's schema, for child processes.
    pub fn url(&self) -> String {
        Self::url_for(&self.schema)
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let schema = self.schema.clone();
        // Drop runs outside async context: use a small runtime of its own.
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async {
                if let Ok(admin) = PgPool::connect(&database_url()).await {
                    // The test's runtime is blocked in this drop: a task of it
                    // caught inside a transaction holds its locks until the
                    // runtime goes, so waiting for them would never end. A
                    // schema left behind is swept by a later run.
                    let _ = sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
                        "SET lock_timeout = '5s'; DROP SCHEMA IF EXISTS {schema} CASCADE"
                    )))
                    .execute(&admin)
                    .await;
                    admin.close().await;
                }
            });
        })
        .join();
    }
}

/// Schemas left by crashed runs more than an hour ago.
async fn sweep_stale_schemas(admin: &PgPool) {
    let cutoff = Utc::now().timestamp() - 3600;
    let stale: Vec<String> =
        sqlx::query_scalar("SELECT nspname FROM pg_namespace WHERE nspname LIKE 'tw\\_test\\_%'")
            .fetch_all(admin)
            .await
            .unwrap_or_default();
    for schema in stale {
        let created = schema.split('_').nth(2).and_then(|t| t.parse::<i64>().ok());
        if created.is_some_and(|t| t < cutoff) {
            let _ = sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
                "DROP SCHEMA IF EXISTS {schema} CASCADE"
            )))
            .execute(admin)
            .await;
        }
    }
}

/// Settings pointing every OAuth platform at the fake, with short timeouts.
pub fn settings_for(fake: &FakeOAuthServer) -> Settings {
    let mut settings =
        Settings::from_figment(Figment::new().merge(Toml::string(DEFAULT_TOML))).unwrap();
    settings.database.url = Some(SecretString::from(database_url()));
    settings.http.request_timeout = Duration::from_secs(5);
    settings.http.rotating_request_timeout = Duration::from_secs(5);
    settings.http.connect_timeout = Duration::from_secs(2);
    settings.engine.lease_margin = Duration::from_secs(1);
    settings.engine.single_flight_wait = Duration::from_secs(20);
    // Daemons started in parallel tests each serve probes on a port of their own.
    settings.api.listen = "127.0.0.1:0".into();
    for (provider, auth) in [
        (Provider::X, ClientAuth::Basic),
        (Provider::Pinterest, ClientAuth::Basic),
        (Provider::LinkedinPerson, ClientAuth::Body),
        (Provider::Youtube, ClientAuth::Body),
    ] {
        let section = settings.providers.get_mut(provider);
        section.flow = Flow::Oauth2Refresh;
        section.token_url = Some(fake.url(&format!("/{}/token", provider.config_key())));
        section.client_id = Some(CLIENT_ID.into());
        section.client_secret = Some(SecretString::from(CLIENT_SECRET));
        section.client_auth = auth;
    }
    settings
}

/// Platforms whose access-token expiry is final under `settings`.
fn expiry_final_providers(settings: &Settings) -> Vec<&'static str> {
    Provider::ALL
        .iter()
        .filter(|p| !settings.providers.get(**p).refreshable_after_expiry)
        .map(|p| p.as_str())
        .collect()
}

/// Asserts that every account's schedule holds the copies of its expiries
/// its row derives (migration 0013): what the expiry sweep and the
/// console's lists find accounts by.
pub async fn assert_expiry_copies(pool: &PgPool, settings: &Settings) {
    type Copies = (String, Option<DateTime<Utc>>, Option<DateTime<Utc>>);
    let wrong: Vec<Copies> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT a.id, s.access_expires_at, s.dead_at
             FROM social_accounts a JOIN account_schedule s ON s.account_id = a.id
             WHERE (s.access_expires_at, s.dead_at) IS DISTINCT FROM ({})",
        derived_expiry_copies("$1")
    )))
    .bind(expiry_final_providers(settings))
    .fetch_all(pool)
    .await
    .unwrap();
    assert!(
        wrong.is_empty(),
        "schedule copies (account, access_expires_at, dead_at) differ from the rows: {wrong:?}"
    );
}

/// What a writer stores in `account_schedule (access_expires_at, dead_at)`
/// for account row `a`, parameter `final_providers` naming the platforms
/// whose access-token expiry is final (`RefreshPolicy::dead_at`, in SQL).
fn derived_expiry_copies(final_providers: &str) -> String {
    format!(
        "CASE WHEN a.status = 'ACTIVE' THEN a.token_expires_at END,
         CASE WHEN a.status = 'ACTIVE' THEN
             LEAST(a.refresh_token_expires_at,
                   CASE WHEN a.refresh_token_ciphertext IS NULL OR a.provider = ANY({final_providers})
                        THEN a.token_expires_at END) END"
    )
}

/// One test's world: database schema, fake platform, keys and engine.
pub struct TestEnv {
    pub db: TestDb,
    pub fake: FakeOAuthServer,
    pub settings: Settings,
    pub keyring: Arc<Keyring>,
    pub engine: Engine,
}

impl TestEnv {
    pub async fn new() -> Self {
        Self::with(|_| {}).await
    }

    /// Builds the environment after `tweak` adjusts the settings.
    pub async fn with(tweak: impl FnOnce(&mut Settings)) -> Self {
        let db = TestDb::new().await;
        let fake = FakeOAuthServer::start(CLIENT_ID, CLIENT_SECRET)
            .await
            .unwrap();
        let mut settings = settings_for(&fake);
        tweak(&mut settings);
        let keyring = Arc::new(Keyring::generate("k1"));
        let engine = engine_for(&db.pool, &settings, keyring.clone(), "engine-a");
        Self {
            db,
            fake,
            settings,
            keyring,
            engine,
        }
    }

    pub fn pool(&self) -> &PgPool {
        &self.db.pool
    }

    /// A second engine: another "process" sharing only the database.
    pub fn other_engine(&self, owner: &str) -> Engine {
        engine_for(&self.db.pool, &self.settings, self.keyring.clone(), owner)
    }

    /// Connects an account whose tokens come from the fake, due now.
    pub async fn connect(&self, provider: Provider, spec: FamilySpec) -> (AccountId, IssuedTokens) {
        let tokens = self.fake.issue(spec);
        let id = self
            .register(
                provider,
                &tokens,
                Utc::now() - TimeDelta::hours(1),
                Some(Utc::now() + TimeDelta::seconds(60)),
            )
            .await;
        (id, tokens)
    }

    pub async fn register(
        &self,
        provider: Provider,
        tokens: &IssuedTokens,
        issued_at: DateTime<Utc>,
        expires_at: Option<DateTime<Utc>>,
    ) -> AccountId {
        let new = new_account(provider, "ext-1", tokens, issued_at, expires_at);
        let policy = RefreshPolicy::from(self.settings.providers.get(provider));
        accounts::register(self.pool(), &self.keyring, &policy, &new)
            .await
            .unwrap()
            .account
            .id
    }

    /// Puts an account into a state a test needs: runs
    /// `UPDATE social_accounts SET {set} WHERE id = $1`. The schedule's
    /// copies of the row's expiries (migration 0013) are then derived as
    /// the daemon's writers derive them, so the account reads as if a
    /// writer had stored that state.
    pub async fn update_account(&self, id: &AccountId, set: &str) {
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "UPDATE social_accounts SET {set} WHERE id = $1"
        )))
        .bind(id.as_str())
        .execute(self.pool())
        .await
        .unwrap();
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "UPDATE account_schedule s SET (access_expires_at, dead_at) = ({})
             FROM social_accounts a WHERE a.id = s.account_id AND a.id = $1",
            derived_expiry_copies("$2")
        )))
        .bind(id.as_str())
        .bind(expiry_final_providers(&self.settings))
        .execute(self.pool())
        .await
        .unwrap();
    }

    /// `assert_expiry_copies` for this environment's accounts.
    pub async fn assert_expiry_copies(&self) {
        assert_expiry_copies(self.pool(), &self.settings).await;
    }

    /// Sets columns of the account's schedule row (`account_schedule`).
    pub async fn update_schedule(&self, id: &AccountId, set: &str) {
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "UPDATE account_schedule SET {set} WHERE account_id = $1"
        )))
        .bind(id.as_str())
        .execute(self.pool())
        .await
        .unwrap();
    }

    pub async fn row(&self, id: &AccountId) -> accounts::AccountRow {
        accounts::get(self.pool(), id)
            .await
            .unwrap()
            .expect("account exists")
    }

    /// The stored refresh token, decrypted.
    pub async fn stored_refresh_token(&self, id: &AccountId) -> Option<String> {
        let row = self.row(id).await;
        row.refresh_token_ciphertext.map(|blob| {
            self.keyring
                .decrypt(
                    id,
                    Field::RefreshToken,
                    row.credentials_key_id.as_deref().unwrap(),
                    &blob,
                )
                .unwrap()
                .expose_secret()
                .to_owned()
        })
    }

    pub async fn stored_access_token(&self, id: &AccountId) -> String {
        let row = self.row(id).await;
        self.keyring
            .decrypt(
                id,
                Field::AccessToken,
                row.credentials_key_id.as_deref().unwrap(),
                row.access_token_ciphertext.as_deref().unwrap(),
            )
            .unwrap()
            .expose_secret()
            .to_owned()
    }

    pub async fn events(&self, id: &AccountId) -> Vec<(Option<String>, String, String)> {
        store::events::for_account(self.pool(), id.as_str())
            .await
            .unwrap()
            .into_iter()
            .map(|e| (e.from_status, e.to_status, e.reason))
            .collect()
    }
}

pub fn engine_for(
    pool: &PgPool,
    settings: &Settings,
    keyring: Arc<Keyring>,
    owner: &str,
) -> Engine {
    let providers = ProviderRegistry::from_settings(&settings.providers, &settings.http).unwrap();
    let mut config = EngineConfig::from_settings(settings);
    config.owner = owner.to_owned();
    Engine::new(pool.clone(), keyring, providers, config)
}

pub fn new_account(
    provider: Provider,
    external_id: &str,
    tokens: &IssuedTokens,
    issued_at: DateTime<Utc>,
    expires_at: Option<DateTime<Utc>>,
) -> accounts::NewAccount {
    accounts::NewAccount {
        workspace_id: "ws_test".into(),
        provider,
        external_id: external_id.into(),
        handle: Some("@tester".into()),
        display_name: Some("Tester".into()),
        avatar_url: None,
        connection_type: ConnectionType::Oauth,
        granted_scopes: vec!["read".into()],
        meta: serde_json::json!({}),
        default_board_id: None,
        access_token: AccessToken::new(tokens.access_token.clone()),
        refresh_token: Some(RefreshToken::new(tokens.refresh_token.clone())),
        token_issued_at: issued_at,
        token_expires_at: expires_at,
        refresh_token_expires_at: None,
        dpop_key: None,
    }
}

/// A rotating family that behaves like X.
pub fn rotating() -> FamilySpec {
    FamilySpec::default()
}

/// A non-rotating family that omits the refresh token, like Google.
pub fn google_like() -> FamilySpec {
    FamilySpec {
        rotating: false,
        return_refresh_token: false,
        ..FamilySpec::default()
    }
}

pub fn redis_url() -> String {
    std::env::var("TOKENWARDEN_TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into())
}

/// Deletes a test queue's keys from the test Redis.
pub async fn purge_queue(queue: &str) {
    let mut settings = Settings::from_figment(Figment::new()).unwrap();
    settings.redis.url = Some(SecretString::from(redis_url()));
    tokenwarden::queue::purge(&settings, queue).await.unwrap();
}
