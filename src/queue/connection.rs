//! Connections to Redis in each supported deployment (one server, Sentinel,
//! Cluster), with or without TLS. The scheduler, the workers and `/readyz`
//! all connect through [`Connector`], so TLS and failover behave the same
//! for each.

use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use anyhow::Context;
use redis::aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig};
use redis::cluster::ClusterClientBuilder;
use redis::cluster_async::ClusterConnection;
use redis::sentinel::{SentinelClient, SentinelClientBuilder, SentinelServerType};
use redis::{
    Client, ClientTlsConfig, Cmd, ConnectionAddr, IntoConnectionInfo, Pipeline, RedisError,
    RedisFuture, ServerErrorKind, TlsCertificates, TlsMode, Value,
};
use secrecy::{ExposeSecret, SecretString};

use crate::config::{RedisMode, RedisSettings};

/// Everything needed to open a connection; cheap to clone.
#[derive(Clone)]
pub struct Connector {
    mode: RedisMode,
    urls: Vec<SecretString>,
    sentinel_master: Option<String>,
    tls: Option<Arc<TlsFiles>>,
    response_timeout: Duration,
}

/// The PEM material of `redis.tls_*`; the key stays secret.
struct TlsFiles {
    ca: Option<String>,
    client: Option<(String, SecretString)>,
}

impl TlsFiles {
    fn certificates(&self) -> TlsCertificates {
        TlsCertificates {
            client_tls: self.client.as_ref().map(|(cert, key)| ClientTlsConfig {
                client_cert: cert.as_bytes().to_vec(),
                client_key: key.expose_secret().as_bytes().to_vec(),
            }),
            root_cert: self.ca.as_ref().map(|ca| ca.as_bytes().to_vec()),
        }
    }
}

impl Connector {
    pub fn new(settings: &RedisSettings) -> anyhow::Result<Self> {
        let urls: Vec<SecretString> = settings
            .urls()
            .into_iter()
            .map(|u| SecretString::from(u.to_owned()))
            .collect();
        if urls.is_empty() {
            anyhow::bail!("redis.url is not set");
        }
        let has_material = settings.tls_ca_cert.is_some() || settings.tls_client_cert.is_some();
        let tls = has_material.then(|| {
            Arc::new(TlsFiles {
                ca: settings.tls_ca_cert.clone(),
                client: settings
                    .tls_client_cert
                    .clone()
                    .zip(settings.tls_client_key.clone()),
            })
        });
        Ok(Self {
            mode: settings.mode,
            urls,
            sentinel_master: settings.sentinel_master.clone(),
            tls,
            response_timeout: settings.response_timeout,
        })
    }

    fn manager_config(&self) -> ConnectionManagerConfig {
        ConnectionManagerConfig::new()
            .set_response_timeout(Some(self.response_timeout))
            .set_connection_timeout(Some(self.response_timeout))
            .set_number_of_retries(2)
    }

    /// A client for one server URL, with the configured certificates.
    fn client(&self, url: &SecretString) -> anyhow::Result<Client> {
        // The URL may carry a password: errors do not repeat it.
        let info = url
            .expose_secret()
            .into_connection_info()
            .map_err(|_| anyhow::anyhow!("redis.url is not a valid Redis URL"))?;
        match &self.tls {
            Some(tls) => Client::build_with_tls(info, tls.certificates()).map_err(|_| {
                anyhow::anyhow!(
                    "redis.tls_ca_cert, redis.tls_client_cert or redis.tls_client_key cannot be \
                     used (not a valid PEM certificate or key)"
                )
            }),
            None => Client::open(info).map_err(|_| anyhow::anyhow!("redis.url is not usable")),
        }
    }

    /// Connects in the configured mode; the error says what failed without
    /// the URL.
    pub async fn connect(&self) -> anyhow::Result<QueueConnection> {
        match self.mode {
            RedisMode::Standalone => {
                let client = self.client(&self.urls[0])?;
                let manager = client
                    .get_connection_manager_with_config(self.manager_config())
                    .await
                    .map_err(explain)
                    .context("cannot connect to Redis (redis.url)")?;
                Ok(QueueConnection::Standalone(manager))
            }
            RedisMode::Cluster => {
                let mut builder = ClusterClientBuilder::new(
                    self.urls
                        .iter()
                        .map(|u| u.expose_secret().to_owned())
                        .collect::<Vec<_>>(),
                )
                .connection_timeout(self.response_timeout)
                .response_timeout(self.response_timeout);
                if let Some(tls) = &self.tls {
                    builder = builder.certs(tls.certificates());
                }
                let client = builder
                    .build()
                    .map_err(|_| anyhow::anyhow!("redis.url does not list valid Redis URLs"))?;
                let conn = client
                    .get_async_connection()
                    .await
                    .map_err(explain)
                    .context("cannot connect to the Redis Cluster (redis.url)")?;
                Ok(QueueConnection::Cluster(conn))
            }
            RedisMode::Sentinel => Ok(QueueConnection::Sentinel(
                SentinelConnection::connect(self).await?,
            )),
        }
    }

    fn sentinel_client(&self) -> anyhow::Result<SentinelClient> {
        let master = self
            .sentinel_master
            .as_deref()
            .context("redis.sentinel_master is not set")?;
        let infos = self
            .urls
            .iter()
            .map(|u| u.expose_secret().into_connection_info())
            .collect::<Result<Vec<_>, _>>()
            .map_err(|_| anyhow::anyhow!("redis.url does not list valid sentinel URLs"))?;
        let tls = infos
            .iter()
            .any(|i| matches!(i.addr(), ConnectionAddr::TcpTls { .. }));
        let mut builder = SentinelClientBuilder::new(
            infos.iter().map(|i| i.addr().clone()),
            master,
            SentinelServerType::Master,
        )
        .map_err(|_| anyhow::anyhow!("redis.url does not list valid sentinel URLs"))?;
        // One set of credentials for the sentinels and the primary.
        let first = infos[0].redis_settings();
        if let Some(username) = first.username() {
            builder = builder
                .set_client_to_redis_username(username)
                .set_client_to_sentinel_username(username);
        }
        if let Some(password) = first.password() {
            builder = builder
                .set_client_to_redis_password(password)
                .set_client_to_sentinel_password(password);
        }
        if first.db() != 0 {
            builder = builder.set_client_to_redis_db(first.db());
        }
        if tls {
            builder = builder.set_client_to_redis_tls_mode(TlsMode::Secure);
            if let Some(files) = &self.tls {
                builder = builder
                    .set_client_to_redis_certificates(files.certificates())
                    .set_client_to_sentinel_certificates(files.certificates());
            }
        }
        builder
            .build()
            .map_err(|_| anyhow::anyhow!("redis.url does not list valid sentinel URLs"))
    }
}

/// A TLS failure says so; other connection errors keep their kind only
/// (their text can echo the address, never the password, but stay short).
fn explain(error: RedisError) -> anyhow::Error {
    match tls_problem(&error) {
        Some(problem) => anyhow::anyhow!(
            "TLS to Redis failed: {problem} (check redis.tls_ca_cert, redis.tls_client_cert, \
             redis.tls_client_key and the rediss:// URL)"
        ),
        None => anyhow::Error::new(error),
    }
}

/// The TLS reason in a connection error, if that is what it is.
fn tls_problem(error: &RedisError) -> Option<String> {
    let text = error.to_string();
    let lowered = text.to_ascii_lowercase();
    (lowered.contains("certificate") || lowered.contains("tls") || lowered.contains("handshake"))
        .then_some(text)
}

/// The connection the queue uses: `apalis-redis` is generic over any
/// `ConnectionLike`, so one type covers every mode.
#[derive(Clone)]
pub enum QueueConnection {
    Standalone(ConnectionManager),
    Cluster(ClusterConnection),
    Sentinel(SentinelConnection),
}

impl ConnectionLike for QueueConnection {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            QueueConnection::Standalone(c) => c.req_packed_command(cmd),
            QueueConnection::Cluster(c) => c.req_packed_command(cmd),
            QueueConnection::Sentinel(c) => c.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            QueueConnection::Standalone(c) => c.req_packed_commands(pipeline, offset, count),
            QueueConnection::Cluster(c) => c.req_packed_commands(pipeline, offset, count),
            QueueConnection::Sentinel(c) => c.req_packed_commands(pipeline, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            QueueConnection::Standalone(c) => c.get_db(),
            QueueConnection::Cluster(c) => c.get_db(),
            QueueConnection::Sentinel(c) => c.get_db(),
        }
    }
}

/// The primary that the sentinels name, behind a connection manager. A
/// `ConnectionManager` alone reconnects to the address it started with, which
/// after a failover is dead or a read-only replica; so when a command fails
/// that way the sentinels are asked again and, if they name a new primary,
/// every clone moves to it. The failed command still fails: its caller (the
/// scheduler's next tick, the worker pool's restart) tries again.
#[derive(Clone)]
pub struct SentinelConnection {
    shared: Arc<SentinelShared>,
}

struct SentinelShared {
    sentinel: tokio::sync::Mutex<SentinelLookup>,
    primary: RwLock<Primary>,
    manager_config: ConnectionManagerConfig,
}

struct SentinelLookup {
    client: SentinelClient,
    last: Instant,
}

#[derive(Clone)]
struct Primary {
    addr: ConnectionAddr,
    manager: ConnectionManager,
}

/// Sentinels are asked at most this often while the primary keeps failing.
const LOOKUP_INTERVAL: Duration = Duration::from_millis(250);

impl SentinelConnection {
    async fn connect(connector: &Connector) -> anyhow::Result<Self> {
        let mut client = connector.sentinel_client()?;
        let manager_config = connector.manager_config();
        let primary = lookup(&mut client, &manager_config).await?;
        Ok(Self {
            shared: Arc::new(SentinelShared {
                sentinel: tokio::sync::Mutex::new(SentinelLookup {
                    client,
                    last: Instant::now(),
                }),
                primary: RwLock::new(primary),
                manager_config,
            }),
        })
    }

    fn current(&self) -> Primary {
        self.shared
            .primary
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Asks the sentinels for the primary and moves to it if it changed.
    async fn follow_failover(&self, failed_on: &ConnectionAddr) {
        let mut lookup_state = self.shared.sentinel.lock().await;
        if self.current().addr != *failed_on || lookup_state.last.elapsed() < LOOKUP_INTERVAL {
            return;
        }
        lookup_state.last = Instant::now();
        let client = lookup_state.client.async_get_client().await;
        let Ok(client) = client else {
            tracing::warn!("no sentinel answered for the Redis primary");
            return;
        };
        if client.get_connection_info().addr() == failed_on {
            return;
        }
        match client
            .get_connection_manager_with_config(self.shared.manager_config.clone())
            .await
        {
            Ok(manager) => {
                let addr = client.get_connection_info().addr().clone();
                tracing::warn!(primary = %addr, "Redis failed over: following the new primary");
                *self
                    .shared
                    .primary
                    .write()
                    .unwrap_or_else(|e| e.into_inner()) = Primary { addr, manager };
            }
            Err(error) => {
                tracing::warn!(%error, "cannot connect to the new Redis primary yet");
            }
        }
    }

    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        Box::pin(async move {
            let Primary { addr, mut manager } = self.current();
            let result = manager.req_packed_command(cmd).await;
            if let Err(error) = &result
                && lost_primary(error)
            {
                self.follow_failover(&addr).await;
            }
            result
        })
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        Box::pin(async move {
            let Primary { addr, mut manager } = self.current();
            let result = manager.req_packed_commands(pipeline, offset, count).await;
            if let Err(error) = &result
                && lost_primary(error)
            {
                self.follow_failover(&addr).await;
            }
            result
        })
    }

    fn get_db(&self) -> i64 {
        self.current().manager.get_db()
    }
}

async fn lookup(
    client: &mut SentinelClient,
    config: &ConnectionManagerConfig,
) -> anyhow::Result<Primary> {
    let primary = client
        .async_get_client()
        .await
        .map_err(explain)
        .context("no sentinel named the Redis primary (redis.url, redis.sentinel_master)")?;
    let manager = primary
        .get_connection_manager_with_config(config.clone())
        .await
        .map_err(explain)
        .context("cannot connect to the Redis primary the sentinels named")?;
    Ok(Primary {
        addr: primary.get_connection_info().addr().clone(),
        manager,
    })
}

/// Errors after which the primary may have moved: the connection is gone,
/// or the server has become a replica.
fn lost_primary(error: &RedisError) -> bool {
    error.is_io_error()
        || error.is_connection_dropped()
        || error.is_connection_refusal()
        || error.is_timeout()
        || error.kind() == redis::ErrorKind::Server(ServerErrorKind::ReadOnly)
}
