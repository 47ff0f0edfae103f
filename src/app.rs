//! Start-up: everything a command needs, built from the settings in one
//! place, with the refusals ARCHITECTURE.md asks for (no key, or stored rows
//! under a key id that is not configured).

use std::sync::Arc;

use anyhow::Context;
use sqlx::PgPool;

use crate::config::{ConfigError, Settings};
use crate::crypto::Keyring;
use crate::engine::{Engine, EngineConfig};
use crate::providers::ProviderRegistry;
use crate::store;

pub struct App {
    pub settings: Settings,
    pub pool: PgPool,
    pub keyring: Arc<Keyring>,
    pub engine: Engine,
}

pub fn keyring(settings: &Settings) -> anyhow::Result<Keyring> {
    // Key problems are configuration errors (exit status 2), like any other.
    let spec = settings.crypto.keys.as_ref().ok_or_else(|| {
        ConfigError::Load(
            "crypto.keys is not set: tokenwarden refuses to start without an encryption key \
             (set TOKENWARDEN__CRYPTO__KEYS or crypto.keys_file; see config/default.toml)"
                .to_owned(),
        )
    })?;
    Ok(Keyring::parse(spec).map_err(ConfigError::from)?)
}

pub async fn connect(settings: &Settings, schema: Option<&str>) -> anyhow::Result<PgPool> {
    store::connect(&settings.database, schema)
        .await
        .context("cannot connect to PostgreSQL (database.url)")
}

impl App {
    /// Connects, migrates when configured to, and checks the keys.
    pub async fn start(settings: Settings) -> anyhow::Result<Self> {
        let keyring = Arc::new(keyring(&settings)?);
        let pool = connect(&settings, None).await?;
        Self::with_pool(settings, pool, keyring).await
    }

    pub async fn with_pool(
        settings: Settings,
        pool: PgPool,
        keyring: Arc<Keyring>,
    ) -> anyhow::Result<Self> {
        if settings.database.migrate_on_start {
            store::migrate(&pool).await.context("applying migrations")?;
        }
        store::keys::check_keys(&pool, &keyring).await?;
        let providers = ProviderRegistry::from_settings(&settings.providers, &settings.http)
            .context("building the HTTP client")?;
        let engine = Engine::new(
            pool.clone(),
            keyring.clone(),
            providers,
            EngineConfig::from_settings(&settings),
        );
        Ok(Self {
            settings,
            pool,
            keyring,
            engine,
        })
    }
}
