//! `[webhooks]`: where status-change events go, signed, and how they are
//! redelivered.

use std::path::PathBuf;
use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use url::Url;

use super::ConfigError;
use super::checks::{POSITIVE, duration_at_least, whole_number};

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct WebhookSettings {
    /// Where status-change events are POSTed; unset: no delivery (events are
    /// still readable at `/v1/events`).
    pub url: Option<Url>,
    /// Standard Webhooks signing secret, `whsec_<base64>`. Secret.
    #[serde(skip_serializing)]
    pub secret: Option<SecretString>,
    pub secret_file: Option<PathBuf>,
    #[serde(with = "humantime_serde")]
    pub timeout: Duration,
    /// Redelivery after a failure: exponential from retry_base, capped at
    /// retry_cap, with jitter; forever until acknowledged.
    #[serde(with = "humantime_serde")]
    pub retry_base: Duration,
    #[serde(with = "humantime_serde")]
    pub retry_cap: Duration,
    /// Events in flight at once per process.
    pub concurrency: usize,
    /// Time between looks at the outbox when there is nothing to send.
    #[serde(with = "humantime_serde")]
    pub poll_interval: Duration,
}

impl Default for WebhookSettings {
    fn default() -> Self {
        Self {
            url: None,
            secret: None,
            secret_file: None,
            timeout: Duration::from_secs(10),
            retry_base: Duration::from_secs(5),
            retry_cap: Duration::from_secs(3600),
            concurrency: 8,
            poll_interval: Duration::from_secs(1),
        }
    }
}

impl WebhookSettings {
    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        duration_at_least("webhooks.timeout", self.timeout, POSITIVE)?;
        duration_at_least("webhooks.retry_base", self.retry_base, POSITIVE)?;
        duration_at_least("webhooks.retry_cap", self.retry_cap, POSITIVE)?;
        whole_number("webhooks.concurrency", self.concurrency, 1, 10_000)?;
        duration_at_least("webhooks.poll_interval", self.poll_interval, POSITIVE)?;
        if self.retry_cap < self.retry_base {
            return Err(ConfigError::invalid(
                "webhooks.retry_cap",
                "must not be below webhooks.retry_base",
            ));
        }
        if let Some(url) = &self.url {
            if !matches!(url.scheme(), "https" | "http") {
                return Err(ConfigError::invalid(
                    "webhooks.url",
                    "must be an http(s) URL",
                ));
            }
            match &self.secret {
                None => {
                    return Err(ConfigError::invalid(
                        "webhooks.secret",
                        "is required when webhooks.url is set (or webhooks.secret_file)",
                    ));
                }
                Some(secret) => {
                    crate::crypto::SigningKey::parse(secret.expose_secret())
                        .map_err(|problem| ConfigError::invalid("webhooks.secret", problem))?;
                }
            }
        }
        Ok(())
    }
}
