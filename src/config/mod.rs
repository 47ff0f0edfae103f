//! Typed, layered configuration: built-in defaults, then `config/default.toml`
//! (compiled in, so the binary never depends on the working directory), then
//! an optional `--config FILE`, then `TOKENWARDEN__SECTION__KEY` variables.
//!
//! Secrets are `SecretString` from deserialization on, and each can be given
//! inline or as a `<key>_file` path (for systemd credentials and Kubernetes
//! secret volumes).
//!
//! Each section's type sits in a file of its own with its defaults and its
//! own `validate`; this file holds the rules across sections. The layering is
//! in `load`, the `_file` secrets in `secrets`, the shared range checks in
//! `checks`.

mod api;
mod checks;
mod circuit;
mod connect;
mod console;
mod crypto;
mod database;
mod engine;
mod error;
mod http;
mod load;
mod log;
mod metrics;
mod providers;
mod redis;
mod scheduler;
mod secrets;
mod shutdown;
#[cfg(test)]
mod tests;
mod tls;
mod webhooks;
mod worker;

use std::time::Duration;

use serde::{Deserialize, Serialize};

pub use self::api::ApiSettings;
pub use self::checks::MAX_DURATION;
pub use self::circuit::CircuitSettings;
pub use self::connect::ConnectSettings;
pub use self::console::{ConsoleSettings, OperatorKey, operator_keys};
pub use self::crypto::CryptoSettings;
pub use self::database::{DatabaseSettings, SSL_MODES};
pub use self::engine::EngineSettings;
pub use self::error::ConfigError;
pub use self::http::HttpSettings;
pub use self::load::{DEFAULT_TOML, Defaults, ENV_PREFIX};
pub use self::log::{LogFormat, LogSettings};
pub use self::metrics::MetricsSettings;
pub use self::providers::{ClientAuth, Flow, ProviderSettings, ProvidersSettings, RefreshMode};
pub use self::redis::{APALIS_QUEUES_KEY, RedisMode, RedisSettings};
pub use self::scheduler::SchedulerSettings;
pub use self::secrets::api_keys;
pub use self::shutdown::ShutdownSettings;
pub use self::webhooks::WebhookSettings;
pub use self::worker::WorkerSettings;
use crate::domain::Provider;

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct Settings {
    pub database: DatabaseSettings,
    pub crypto: CryptoSettings,
    pub http: HttpSettings,
    pub engine: EngineSettings,
    pub redis: RedisSettings,
    pub scheduler: SchedulerSettings,
    pub worker: WorkerSettings,
    pub circuit: CircuitSettings,
    pub shutdown: ShutdownSettings,
    pub log: LogSettings,
    pub api: ApiSettings,
    pub console: ConsoleSettings,
    pub connect: ConnectSettings,
    pub metrics: MetricsSettings,
    pub webhooks: WebhookSettings,
    pub providers: ProvidersSettings,
}

impl Settings {
    /// How long a refresh lease lasts: the longest provider call plus the
    /// margin, so the lease outlives any call it covers.
    pub fn lease_duration(&self) -> Duration {
        self.http
            .request_timeout
            .max(self.http.rotating_request_timeout)
            .saturating_add(self.engine.lease_margin)
    }

    /// atproto OAuth's client id (a URL): `providers.bluesky.client_id`, or,
    /// when that is unset and the connect flow is on, the client metadata
    /// the daemon serves itself (`<connect.public_url>oauth/client-metadata.json`).
    /// The connect flow and the refresh flow must send the same one.
    pub fn bluesky_client_id(&self) -> Option<String> {
        self.providers.bluesky.client_id.clone().or_else(|| {
            self.connect
                .client_metadata_url()
                .map(|url| url.to_string())
        })
    }

    /// Each section's own rules (its numbers first), then the rules across
    /// sections, which add durations together and so run last.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.database.validate()?;
        self.crypto.validate()?;
        self.http.validate()?;
        self.engine.validate()?;
        self.redis.validate()?;
        self.scheduler.validate()?;
        self.worker.validate()?;
        self.circuit.validate()?;
        self.shutdown.validate()?;
        self.log.validate()?;
        self.api.validate()?;
        self.console.validate()?;
        self.connect.validate()?;
        self.metrics.validate()?;
        self.webhooks.validate()?;
        self.providers.validate()?;
        self.validate_lease()
    }

    /// The refresh lease against the timeouts around it: claims and jobs
    /// outlive the refresh they started, and shutdown lets one finish.
    fn validate_lease(&self) -> Result<(), ConfigError> {
        let lease = self.lease_duration();
        if self.scheduler.claim_timeout <= lease {
            return Err(ConfigError::invalid(
                "scheduler.claim_timeout",
                format!(
                    "must exceed the refresh lease ({}): a claim must outlive the refresh it started",
                    humantime::format_duration(lease)
                ),
            ));
        }
        if self.worker.job_timeout <= lease {
            return Err(ConfigError::invalid(
                "worker.job_timeout",
                "must exceed the refresh lease (the longer of http.request_timeout and \
                 http.rotating_request_timeout, plus engine.lease_margin)",
            ));
        }
        if self.shutdown.grace < lease {
            return Err(ConfigError::invalid(
                "shutdown.grace",
                format!(
                    "must be at least the refresh lease ({}): a refresh in flight must be able to finish",
                    humantime::format_duration(lease)
                ),
            ));
        }
        Ok(())
    }

    /// Settings that are valid but worth an operator's attention.
    pub fn warnings(&self) -> Vec<String> {
        let mut warnings = self.database.warnings();
        warnings.extend(self.provider_warnings());
        warnings
    }

    fn provider_warnings(&self) -> Vec<String> {
        Provider::ALL
            .iter()
            .filter(|p| self.providers.get(**p).app_in_testing)
            .map(|p| {
                format!(
                    "providers.{}.app_in_testing: the OAuth app is in Testing status; its refresh tokens \
                     expire after 7 days, so every account must reconnect weekly (publish the app to \
                     production to end this)",
                    p.config_key()
                )
            })
            .collect()
    }
}
