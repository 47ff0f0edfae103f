//! `[redis]`: the refresh queue.

use std::path::PathBuf;
use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};

use super::ConfigError;
use super::checks::{POSITIVE, duration_at_least};
use super::tls::{check_certificates, check_client_pair, check_private_key};

/// How Redis is deployed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RedisMode {
    /// One server (or a managed endpoint that fails over behind one address).
    Standalone,
    /// Redis Sentinel: `url` lists the sentinels, `sentinel_master` names
    /// the monitored primary.
    Sentinel,
    /// Redis Cluster: `url` lists one or more nodes to discover it from.
    Cluster,
}

impl RedisMode {
    pub fn as_str(self) -> &'static str {
        match self {
            RedisMode::Standalone => "standalone",
            RedisMode::Sentinel => "sentinel",
            RedisMode::Cluster => "cluster",
        }
    }
}

/// The one key every apalis-redis worker writes besides its queue's own (from
/// a Lua script that does not declare it). In Redis Cluster the queue's keys
/// must hash to this key's slot, or registering a worker fails.
pub const APALIS_QUEUES_KEY: &str = "core:apalis:queues:list";

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct RedisSettings {
    /// Secret: may carry a password.
    #[serde(skip_serializing)]
    pub url: Option<SecretString>,
    pub url_file: Option<PathBuf>,
    /// The queue's name; keep the braces so every key of the queue hashes to
    /// one Redis Cluster slot.
    pub queue: String,
    #[serde(with = "humantime_serde")]
    pub response_timeout: Duration,
    pub mode: RedisMode,
    /// The primary's name as the sentinels know it (sentinel mode only).
    pub sentinel_master: Option<String>,
    /// PEM CA certificates the server's certificate must chain to, for
    /// `rediss://` URLs; without it the system's roots are used.
    pub tls_ca_cert: Option<String>,
    pub tls_ca_cert_file: Option<PathBuf>,
    /// PEM client certificate, for servers that ask for one
    /// (`tls-auth-clients yes`).
    pub tls_client_cert: Option<String>,
    pub tls_client_cert_file: Option<PathBuf>,
    /// Secret: the client certificate's PEM private key.
    #[serde(skip_serializing)]
    pub tls_client_key: Option<SecretString>,
    pub tls_client_key_file: Option<PathBuf>,
}

impl Default for RedisSettings {
    fn default() -> Self {
        Self {
            url: Some(SecretString::from("redis://127.0.0.1:6379")),
            url_file: None,
            queue: "{tokenwarden}:refresh".to_owned(),
            response_timeout: Duration::from_secs(5),
            mode: RedisMode::Standalone,
            sentinel_master: None,
            tls_ca_cert: None,
            tls_ca_cert_file: None,
            tls_client_cert: None,
            tls_client_cert_file: None,
            tls_client_key: None,
            tls_client_key_file: None,
        }
    }
}

impl RedisSettings {
    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        duration_at_least("redis.response_timeout", self.response_timeout, POSITIVE)?;
        if self.url.is_none() {
            return Err(ConfigError::invalid(
                "redis.url",
                "is required (or redis.url_file)",
            ));
        }
        if self.queue.trim().is_empty() {
            return Err(ConfigError::invalid("redis.queue", "must not be empty"));
        }
        let urls = self.urls();
        if urls.is_empty() {
            return Err(ConfigError::invalid("redis.url", "must not be empty"));
        }
        let mut tls = None;
        for url in &urls {
            // The URL may carry a password: errors name only the scheme.
            let scheme = url.split_once("://").map(|(s, _)| s).unwrap_or("");
            let is_tls = match scheme {
                "redis" => false,
                "rediss" => true,
                _ => {
                    return Err(ConfigError::invalid(
                        "redis.url",
                        "must be redis://host:port or rediss://host:port (TLS); several are \
                         separated by commas in cluster and sentinel mode",
                    ));
                }
            };
            if tls.is_some_and(|t| t != is_tls) {
                return Err(ConfigError::invalid(
                    "redis.url",
                    "mixes redis:// and rediss://: use TLS for every node or for none",
                ));
            }
            tls = Some(is_tls);
        }
        match self.mode {
            RedisMode::Standalone if urls.len() > 1 => {
                return Err(ConfigError::invalid(
                    "redis.url",
                    "lists several servers but redis.mode is standalone (set redis.mode to \
                     cluster or sentinel)",
                ));
            }
            RedisMode::Sentinel
                if self
                    .sentinel_master
                    .as_deref()
                    .is_none_or(|m| m.trim().is_empty()) =>
            {
                return Err(ConfigError::invalid(
                    "redis.sentinel_master",
                    "is required in sentinel mode: the primary's name as the sentinels know it",
                ));
            }
            RedisMode::Cluster => check_cluster_queue(&self.queue)?,
            _ => {}
        }
        if self.mode != RedisMode::Sentinel && self.sentinel_master.is_some() {
            return Err(ConfigError::invalid(
                "redis.sentinel_master",
                "is only used with redis.mode = \"sentinel\"",
            ));
        }
        check_certificates("redis.tls_ca_cert", self.tls_ca_cert.as_deref())?;
        check_certificates("redis.tls_client_cert", self.tls_client_cert.as_deref())?;
        check_private_key("redis.tls_client_key", self.tls_client_key.as_ref())?;
        check_client_pair(
            "redis.tls_client_cert",
            self.tls_client_cert.is_some(),
            "redis.tls_client_key",
            self.tls_client_key.is_some(),
        )?;
        let has_tls_material = self.tls_ca_cert.is_some() || self.tls_client_cert.is_some();
        if has_tls_material && tls == Some(false) {
            return Err(ConfigError::invalid(
                "redis.url",
                "uses redis:// but TLS certificates are configured: use rediss:// for TLS",
            ));
        }
        Ok(())
    }

    /// The configured URLs: one server, or the cluster's seed nodes or the
    /// sentinels, comma-separated.
    pub fn urls(&self) -> Vec<&str> {
        self.url
            .as_ref()
            .map(|u| {
                u.expose_secret()
                    .split(',')
                    .map(str::trim)
                    .filter(|u| !u.is_empty())
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Whether the URLs ask for TLS.
    pub fn uses_tls(&self) -> bool {
        self.urls().iter().any(|u| u.starts_with("rediss://"))
    }
}

/// Every key of the queue must land in the slot of [`APALIS_QUEUES_KEY`]:
/// apalis-redis's worker registration touches both in one script, which
/// Redis Cluster runs only when they share a slot.
fn check_cluster_queue(queue: &str) -> Result<(), ConfigError> {
    let wanted = format!("{{{APALIS_QUEUES_KEY}}}");
    if hash_tag(queue) != Some(APALIS_QUEUES_KEY) {
        return Err(ConfigError::invalid(
            "redis.queue",
            format!(
                "must start with the hash tag {wanted} in cluster mode (e.g. \"{wanted}:refresh\"): \
                 apalis-redis registers each worker in the key {APALIS_QUEUES_KEY} from the same \
                 Lua script that writes the queue's keys, and Redis Cluster runs a script only \
                 when its keys share one slot"
            ),
        ));
    }
    Ok(())
}

/// The part of a key Redis Cluster hashes: the first `{...}` with something
/// inside, as in the cluster specification.
fn hash_tag(key: &str) -> Option<&str> {
    let open = key.find('{')?;
    let rest = &key[open + 1..];
    let close = rest.find('}')?;
    (close > 0).then(|| &rest[..close])
}
