//! Typed, layered configuration: built-in defaults, then `config/default.toml`
//! (compiled in, so the binary never depends on the working directory), then
//! an optional `--config FILE`, then `TOKENWARDEN__SECTION__KEY` variables.
//!
//! Secrets are `SecretString` from deserialization on, and each can be given
//! inline or as a `<key>_file` path (for systemd credentials and Kubernetes
//! secret volumes).

use std::path::{Path, PathBuf};
use std::time::Duration;

use figment::Figment;
use figment::providers::{Env, Format, Toml};
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use url::Url;

use crate::domain::Provider;

pub const DEFAULT_TOML: &str = include_str!("../config/default.toml");
pub const ENV_PREFIX: &str = "TOKENWARDEN__";

/// The longest any duration setting may be: far past every sensible value,
/// and short enough that adding it (or a sum of two) to a timestamp cannot
/// overflow.
pub const MAX_DURATION: Duration = Duration::from_secs(3650 * 86_400);

/// The name the built-in defaults carry in the layered configuration, so a
/// value can be told apart from one an operator gave.
const DEFAULTS_NAME: &str = "built-in defaults";

/// `config/default.toml` as the bottom layer, named as such.
pub struct Defaults;

impl figment::Provider for Defaults {
    fn metadata(&self) -> figment::Metadata {
        figment::Metadata::named(DEFAULTS_NAME)
    }

    fn data(
        &self,
    ) -> Result<figment::value::Map<figment::Profile, figment::value::Dict>, figment::Error> {
        Toml::string(DEFAULT_TOML).data()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// Each problem with its key, lowercased as in the files, and the layer
    /// it came from.
    #[error("{0}")]
    Load(String),
    #[error("configuration key `{key}`: {problem}")]
    Invalid { key: String, problem: String },
}

impl From<figment::Error> for ConfigError {
    fn from(error: figment::Error) -> Self {
        let problems: Vec<String> = error
            .into_iter()
            .map(|e| {
                let key = e.path.join(".").to_ascii_lowercase();
                let origin = match &e.metadata {
                    Some(m) => match &m.source {
                        Some(figment::Source::File(path)) => format!(" (from {})", path.display()),
                        _ => format!(" (from {})", m.name),
                    },
                    None => String::new(),
                };
                if key.is_empty() {
                    format!("configuration: {}{origin}", e.kind)
                } else {
                    format!("configuration key `{key}`: {}{origin}", e.kind)
                }
            })
            .collect();
        ConfigError::Load(problems.join("; "))
    }
}

impl From<crate::crypto::CryptoError> for ConfigError {
    fn from(error: crate::crypto::CryptoError) -> Self {
        match error {
            crate::crypto::CryptoError::BadKeys(problem) => {
                ConfigError::invalid("crypto.keys", problem)
            }
            other => ConfigError::invalid("crypto.keys", other.to_string()),
        }
    }
}

impl ConfigError {
    pub fn invalid(key: impl Into<String>, problem: impl Into<String>) -> Self {
        ConfigError::Invalid {
            key: key.into(),
            problem: problem.into(),
        }
    }
}

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
    pub metrics: MetricsSettings,
    pub webhooks: WebhookSettings,
    pub providers: ProvidersSettings,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct ApiSettings {
    /// Where the HTTP API (and, unless `metrics_listen` is set, `/metrics`)
    /// listens.
    pub listen: String,
    /// A separate address for `/metrics`, `/healthz` and `/readyz`; empty:
    /// served on `listen`.
    pub metrics_listen: String,
    /// Bearer API keys, comma-separated; any one is accepted, so keys can
    /// rotate. Secret.
    #[serde(skip_serializing)]
    pub keys: Option<SecretString>,
    pub keys_file: Option<PathBuf>,
    /// Larger request bodies are refused with 413.
    pub max_body_bytes: usize,
    /// Forced refreshes of one account closer together than this get 429.
    #[serde(with = "humantime_serde")]
    pub force_refresh_min_interval: Duration,
    /// A new connection, or one that started sending a request, must have
    /// sent the whole request head within this; otherwise it is closed.
    #[serde(with = "humantime_serde")]
    pub header_read_timeout: Duration,
    /// A kept-alive connection with no request for this long is closed.
    #[serde(with = "humantime_serde")]
    pub idle_timeout: Duration,
    /// Connections served at once per listener; further ones wait to be
    /// accepted until one closes.
    pub max_connections: usize,
}

impl Default for ApiSettings {
    fn default() -> Self {
        Self {
            listen: "0.0.0.0:8080".to_owned(),
            metrics_listen: String::new(),
            keys: None,
            keys_file: None,
            max_body_bytes: 64 * 1024,
            force_refresh_min_interval: Duration::from_secs(10),
            header_read_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
            max_connections: 1024,
        }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct MetricsSettings {
    /// How often the account-state gauges are computed from PostgreSQL.
    #[serde(with = "humantime_serde")]
    pub state_interval: Duration,
    /// An account whose planned refresh is this far in the past, unclaimed,
    /// counts as overdue.
    #[serde(with = "humantime_serde")]
    pub overdue_after: Duration,
}

impl Default for MetricsSettings {
    fn default() -> Self {
        Self {
            state_interval: Duration::from_secs(15),
            overdue_after: Duration::from_secs(300),
        }
    }
}

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
}

impl Default for RedisSettings {
    fn default() -> Self {
        Self {
            url: Some(SecretString::from("redis://127.0.0.1:6379")),
            url_file: None,
            queue: "{tokenwarden}:refresh".to_owned(),
            response_timeout: Duration::from_secs(5),
        }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct SchedulerSettings {
    /// Time between scans for due accounts.
    #[serde(with = "humantime_serde")]
    pub interval: Duration,
    /// Accounts claimed per transaction.
    pub batch_size: i64,
    /// Upper bound on claimed accounts whose job has not finished.
    pub max_outstanding: i64,
    /// A claim whose job has not finished by then is claimed again.
    #[serde(with = "humantime_serde")]
    pub claim_timeout: Duration,
    /// Accounts moved to TOKEN_EXPIRED per sweep statement.
    pub sweep_batch_size: i64,
}

impl Default for SchedulerSettings {
    fn default() -> Self {
        Self {
            interval: Duration::from_secs(1),
            batch_size: 500,
            max_outstanding: 4_000,
            claim_timeout: Duration::from_secs(120),
            sweep_batch_size: 1_000,
        }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct WorkerSettings {
    /// Refreshes in flight per process.
    pub concurrency: usize,
    /// A job still running after this is abandoned (its lease then expires).
    #[serde(with = "humantime_serde")]
    pub job_timeout: Duration,
    /// How often an idle worker asks Redis for work.
    #[serde(with = "humantime_serde")]
    pub poll_interval: Duration,
    /// Worker liveness in Redis: jobs of a worker silent for
    /// heartbeat_interval x missed_heartbeats are handed to others.
    #[serde(with = "humantime_serde")]
    pub heartbeat_interval: Duration,
    pub missed_heartbeats: usize,
}

impl Default for WorkerSettings {
    fn default() -> Self {
        Self {
            concurrency: 256,
            job_timeout: Duration::from_secs(90),
            poll_interval: Duration::from_millis(200),
            heartbeat_interval: Duration::from_secs(5),
            missed_heartbeats: 3,
        }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct CircuitSettings {
    /// Outcomes remembered per provider.
    pub window: usize,
    /// The provider pauses when this share of the window failed...
    pub failure_ratio: f64,
    /// ...once at least this many calls are in the window.
    pub min_calls: usize,
    /// How long a paused provider rests before one probe call.
    #[serde(with = "humantime_serde")]
    pub cooldown: Duration,
    /// An app-level answer (`invalid_client`, ...) pauses the provider only
    /// once this many distinct accounts got one within `app_error_window`:
    /// one account's answer is evidence about its grant, not the app.
    pub app_error_accounts: usize,
    #[serde(with = "humantime_serde")]
    pub app_error_window: Duration,
}

impl Default for CircuitSettings {
    fn default() -> Self {
        Self {
            window: 50,
            failure_ratio: 0.5,
            min_calls: 20,
            cooldown: Duration::from_secs(30),
            app_error_accounts: 3,
            app_error_window: Duration::from_secs(15 * 60),
        }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct ShutdownSettings {
    /// How long refreshes in flight may take to finish after SIGTERM.
    #[serde(with = "humantime_serde")]
    pub grace: Duration,
}

impl Default for ShutdownSettings {
    fn default() -> Self {
        Self {
            grace: Duration::from_secs(60),
        }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct DatabaseSettings {
    #[serde(skip_serializing)]
    pub url: Option<SecretString>,
    pub url_file: Option<PathBuf>,
    pub max_connections: u32,
    #[serde(with = "humantime_serde")]
    pub acquire_timeout: Duration,
    pub migrate_on_start: bool,
}

impl Default for DatabaseSettings {
    fn default() -> Self {
        Self {
            url: Some(SecretString::from(
                "postgres://tokenwarden@127.0.0.1:5432/tokenwarden",
            )),
            url_file: None,
            max_connections: 16,
            acquire_timeout: Duration::from_secs(5),
            migrate_on_start: true,
        }
    }
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct CryptoSettings {
    /// `id:base64key` entries separated by commas, newest first: the first
    /// encrypts, all decrypt.
    #[serde(skip_serializing)]
    pub keys: Option<SecretString>,
    pub keys_file: Option<PathBuf>,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct HttpSettings {
    #[serde(with = "humantime_serde")]
    pub connect_timeout: Duration,
    #[serde(with = "humantime_serde")]
    pub request_timeout: Duration,
    /// Whole-request timeout of refresh calls on platforms whose refresh
    /// tokens rotate: giving up early is what loses a grant.
    #[serde(with = "humantime_serde")]
    pub rotating_request_timeout: Duration,
    /// Pooled connections idle longer than this are not reused.
    #[serde(with = "humantime_serde")]
    pub pool_idle_timeout: Duration,
    pub max_response_bytes: usize,
    pub user_agent: String,
}

impl Default for HttpSettings {
    fn default() -> Self {
        Self {
            connect_timeout: Duration::from_secs(5),
            request_timeout: Duration::from_secs(20),
            rotating_request_timeout: Duration::from_secs(45),
            pool_idle_timeout: Duration::from_millis(500),
            max_response_bytes: 1024 * 1024,
            user_agent: concat!("tokenwarden/", env!("CARGO_PKG_VERSION")).to_owned(),
        }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct EngineSettings {
    /// Names this process in leases; empty: host name, pid and a random suffix.
    pub instance_name: String,
    /// How much longer than `http.request_timeout` a refresh lease lasts.
    #[serde(with = "humantime_serde")]
    pub lease_margin: Duration,
    /// How long a caller waits for a refresh already in flight elsewhere.
    #[serde(with = "humantime_serde")]
    pub single_flight_wait: Duration,
    #[serde(with = "humantime_serde")]
    pub retry_base: Duration,
    #[serde(with = "humantime_serde")]
    pub retry_cap: Duration,
}

impl Default for EngineSettings {
    fn default() -> Self {
        Self {
            instance_name: String::new(),
            lease_margin: Duration::from_secs(15),
            single_flight_wait: Duration::from_secs(60),
            retry_base: Duration::from_secs(30),
            retry_cap: Duration::from_secs(3600),
        }
    }
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct LogSettings {
    pub format: LogFormat,
    /// A tracing `EnvFilter` directive; `RUST_LOG` wins when set.
    pub filter: String,
}

impl Default for LogSettings {
    fn default() -> Self {
        Self {
            format: LogFormat::Text,
            filter: "info,sqlx=warn".to_owned(),
        }
    }
}

/// How the daemon talks to a platform's token endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Flow {
    /// RFC 6749 section 6: POST `grant_type=refresh_token`.
    Oauth2Refresh,
    /// X: the RFC 6749 refresh with X's own error table.
    X,
    /// LinkedIn: the RFC 6749 refresh with LinkedIn's error table.
    Linkedin,
    /// TikTok: `client_key` instead of `client_id`; errors may come in a 200.
    Tiktok,
    /// Instagram Login: `ig_refresh_token` GET, refreshes the access token.
    InstagramLogin,
    /// Threads: `th_refresh_token` GET, refreshes the access token.
    Threads,
    /// Mastodon: tokens do not expire; `verify_credentials` health checks on
    /// the account's own instance.
    Mastodon,
    /// Google (YouTube): the RFC 6749 refresh with Google's error table.
    Google,
    /// Pinterest: the RFC 6749 refresh with Basic auth, optionally
    /// `continuous_refresh`; rotating refresh tokens.
    Pinterest,
    /// Facebook Login (Pages, Instagram with Facebook Login): `debug_token`
    /// health checks of page tokens; `fb_exchange_token` for long-lived user
    /// tokens.
    Facebook,
    /// Bluesky: app-password sessions refreshed on the account's PDS, and
    /// atproto OAuth sessions (DPoP) at the account's authorization server.
    Bluesky,
    /// No refresh flow is wired for this platform yet.
    None,
}

/// When the daemon refreshes a platform's tokens.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RefreshMode {
    /// Ahead of expiry, inside the refresh window.
    Proactive,
    /// When a valid token is asked for, plus a keep-alive refresh every
    /// `keep_alive_interval` so an idle refresh token does not die.
    OnDemand,
}

/// Where the OAuth client credentials travel (RFC 6749 section 2.3.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ClientAuth {
    Basic,
    Body,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ProviderSettings {
    pub flow: Flow,
    pub token_url: Option<Url>,
    /// RFC 7009 revocation endpoint, called when an account is disconnected.
    #[serde(default)]
    pub revoke_url: Option<Url>,
    pub client_id: Option<String>,
    #[serde(default, skip_serializing)]
    pub client_secret: Option<SecretString>,
    #[serde(default)]
    pub client_secret_file: Option<PathBuf>,
    pub client_auth: ClientAuth,
    pub rotates_refresh_token: bool,
    /// Refresh once this fraction of the issued lifetime has passed...
    pub refresh_fraction: f64,
    /// ...and never later than this before expiry.
    #[serde(with = "humantime_serde")]
    pub refresh_margin: Duration,
    /// Assumed lifetime when a token response carries no `expires_in`.
    #[serde(with = "humantime_serde")]
    pub default_access_token_lifetime: Duration,
    pub mode: RefreshMode,
    /// The platform refuses to refresh younger tokens.
    #[serde(with = "humantime_serde")]
    pub min_token_age: Duration,
    /// Refreshes are spread up to this much earlier, seeded per account.
    #[serde(with = "humantime_serde")]
    pub jitter: Duration,
    /// on_demand mode: refresh at least this often.
    #[serde(with = "humantime_serde")]
    pub keep_alive_interval: Duration,
    /// For tokens that never expire: how often to check they still work.
    #[serde(with = "humantime_serde")]
    pub health_check_interval: Duration,
    /// The refresh token's own lifetime when the platform does not say.
    #[serde(default, with = "humantime_serde")]
    pub refresh_token_lifetime: Option<Duration>,
    /// False where an expired access token can never be refreshed
    /// (Instagram Login, Threads): expiry is then final.
    pub refreshable_after_expiry: bool,
    /// Origins (`https://host[:port]`, or `http://...` to allow plain HTTP)
    /// trusted as given for hosts that users control (Mastodon instances,
    /// Bluesky PDSes and authorization servers):
    /// exempt from the public-address check. For tests and private deployments.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allowed_origins: Vec<Url>,
    /// Scopes an account needs to publish; an entry `a|b` is met by either.
    /// Accounts lacking one are listed with it in `missing_scopes`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub publish_scopes: Vec<String>,
    /// The platform's health-check endpoint where it has one apart from the
    /// token endpoint (Graph `debug_token`, LinkedIn `introspectToken`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health_url: Option<Url>,
    /// Pinterest: send `continuous_refresh=true` (apps created before
    /// 2025-09-25 must, to get 60-day refresh tokens refreshable indefinitely).
    #[serde(default, skip_serializing_if = "is_false")]
    pub continuous_refresh: bool,
    /// Google: the OAuth app is an external app in "Testing" status, whose
    /// refresh tokens die after 7 days; the refresh-token lifetime is capped
    /// at that and a warning is printed at start.
    #[serde(default, skip_serializing_if = "is_false")]
    pub app_in_testing: bool,
    /// Refreshes in flight to this platform per process.
    pub max_concurrency: usize,
    /// Calls per second to this platform per process (token bucket).
    pub rate_per_second: f64,
}

impl ProviderSettings {
    fn defaults_for(provider: Provider) -> Self {
        use Provider::*;
        const HOUR: u64 = 3_600;
        const DAY: u64 = 86_400;
        let base = Self {
            flow: Flow::None,
            token_url: None,
            revoke_url: None,
            client_id: None,
            client_secret: None,
            client_secret_file: None,
            client_auth: ClientAuth::Body,
            rotates_refresh_token: false,
            refresh_fraction: 2.0 / 3.0,
            refresh_margin: Duration::from_secs(300),
            default_access_token_lifetime: Duration::from_secs(60 * DAY),
            mode: RefreshMode::Proactive,
            min_token_age: Duration::ZERO,
            jitter: Duration::from_secs(300),
            keep_alive_interval: Duration::from_secs(7 * DAY),
            health_check_interval: Duration::from_secs(DAY),
            refresh_token_lifetime: None,
            refreshable_after_expiry: true,
            allowed_origins: Vec::new(),
            publish_scopes: Vec::new(),
            health_url: None,
            continuous_refresh: false,
            app_in_testing: false,
            max_concurrency: 64,
            rate_per_second: 50.0,
        };
        let url = |u: &str| Some(Url::parse(u).expect("built-in token URLs parse"));
        let secs = Duration::from_secs;
        // Figures from PROVIDERS.md; where a lifetime is unconfirmed the
        // platform's own expires_in / refresh_token_expires_in wins.
        let scopes = |list: &[&str]| list.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
        // publish_scopes: what posting needs on each platform (the platforms'
        // permission references; PROVIDERS.md names only offline.access,
        // instagram_business_basic and threads_basic).
        match provider {
            X => Self {
                flow: Flow::X,
                token_url: url("https://api.x.com/2/oauth2/token"),
                revoke_url: url("https://api.x.com/2/oauth2/revoke"),
                client_auth: ClientAuth::Basic,
                rotates_refresh_token: true,
                default_access_token_lifetime: secs(2 * HOUR),
                publish_scopes: scopes(&["tweet.write", "offline.access"]),
                ..base
            },
            LinkedinPerson | LinkedinCompany => Self {
                flow: Flow::Linkedin,
                token_url: url("https://www.linkedin.com/oauth/v2/accessToken"),
                health_url: url("https://www.linkedin.com/oauth/v2/introspectToken"),
                refresh_token_lifetime: Some(secs(365 * DAY)),
                publish_scopes: scopes(if provider == LinkedinPerson {
                    &["w_member_social"]
                } else {
                    &["w_organization_social"]
                }),
                ..base
            },
            Youtube => Self {
                flow: Flow::Google,
                token_url: url("https://oauth2.googleapis.com/token"),
                revoke_url: url("https://oauth2.googleapis.com/revoke"),
                default_access_token_lifetime: secs(HOUR),
                // Hourly tokens for every account would be wasted work: refresh
                // when a token is needed, and weekly so the grant stays used.
                mode: RefreshMode::OnDemand,
                publish_scopes: scopes(&[
                    "https://www.googleapis.com/auth/youtube.upload|https://www.googleapis.com/auth/youtube|https://www.googleapis.com/auth/youtube.force-ssl",
                ]),
                ..base
            },
            Pinterest => Self {
                flow: Flow::Pinterest,
                token_url: url("https://api.pinterest.com/v5/oauth/token"),
                client_auth: ClientAuth::Basic,
                rotates_refresh_token: true,
                default_access_token_lifetime: secs(30 * DAY),
                refresh_token_lifetime: Some(secs(60 * DAY)),
                publish_scopes: scopes(&["pins:write", "boards:read"]),
                ..base
            },
            TiktokBusiness | TiktokPersonal => Self {
                flow: Flow::Tiktok,
                token_url: url("https://open.tiktokapis.com/v2/oauth/token/"),
                rotates_refresh_token: true,
                default_access_token_lifetime: secs(2 * HOUR),
                refresh_token_lifetime: Some(secs(180 * DAY)),
                publish_scopes: scopes(&["video.publish|video.upload"]),
                ..base
            },
            InstagramLogin => Self {
                flow: Flow::InstagramLogin,
                token_url: url("https://graph.instagram.com/refresh_access_token"),
                min_token_age: secs(24 * HOUR),
                refreshable_after_expiry: false,
                jitter: secs(6 * HOUR),
                publish_scopes: scopes(&[
                    "instagram_business_basic",
                    "instagram_business_content_publish",
                ]),
                ..base
            },
            Threads => Self {
                flow: Flow::Threads,
                token_url: url("https://graph.threads.net/refresh_access_token"),
                min_token_age: secs(24 * HOUR),
                refreshable_after_expiry: false,
                jitter: secs(6 * HOUR),
                publish_scopes: scopes(&["threads_basic", "threads_content_publish"]),
                ..base
            },
            // Hosts are per account, so there is no token_url. Lifetimes are
            // read from each answer (JWT exp claims, expires_in); the refresh
            // token's own lifetime is left unknown because it differs between
            // app passwords (90 days, read from the JWT) and OAuth sessions
            // (server-defined, not returned).
            Bluesky => Self {
                flow: Flow::Bluesky,
                rotates_refresh_token: true,
                default_access_token_lifetime: secs(HOUR),
                ..base
            },
            Mastodon => Self {
                flow: Flow::Mastodon,
                publish_scopes: scopes(&["write:statuses|write"]),
                ..base
            },
            // Page tokens never expire (health checks); a stored long-lived
            // user token is re-exchanged, which Meta refuses once it expired.
            FacebookPage | InstagramFacebookLogin => Self {
                flow: Flow::Facebook,
                token_url: url("https://graph.facebook.com/v23.0/oauth/access_token"),
                health_url: url("https://graph.facebook.com/v23.0/debug_token"),
                refreshable_after_expiry: false,
                jitter: secs(6 * HOUR),
                publish_scopes: scopes(if provider == FacebookPage {
                    &["pages_manage_posts"]
                } else {
                    &["instagram_content_publish"]
                }),
                ..base
            },
        }
    }
}

macro_rules! providers_settings {
    ($($field:ident => $provider:ident),+ $(,)?) => {
        /// One section per platform, `[providers.<name>]`.
        #[derive(Debug, Clone, Deserialize, Serialize)]
        #[serde(default, deny_unknown_fields)]
        pub struct ProvidersSettings {
            $(pub $field: ProviderSettings,)+
        }

        impl Default for ProvidersSettings {
            fn default() -> Self {
                Self { $($field: ProviderSettings::defaults_for(Provider::$provider),)+ }
            }
        }

        impl ProvidersSettings {
            pub fn get(&self, provider: Provider) -> &ProviderSettings {
                match provider { $(Provider::$provider => &self.$field,)+ }
            }

            pub fn get_mut(&mut self, provider: Provider) -> &mut ProviderSettings {
                match provider { $(Provider::$provider => &mut self.$field,)+ }
            }
        }
    };
}

providers_settings! {
    x => X,
    linkedin_person => LinkedinPerson,
    linkedin_company => LinkedinCompany,
    facebook_page => FacebookPage,
    instagram_facebook_login => InstagramFacebookLogin,
    instagram_login => InstagramLogin,
    threads => Threads,
    tiktok_business => TiktokBusiness,
    tiktok_personal => TiktokPersonal,
    youtube => Youtube,
    pinterest => Pinterest,
    bluesky => Bluesky,
    mastodon => Mastodon,
}

impl Settings {
    /// Loads every layer, reads `_file` secrets and validates the result.
    pub fn load(config_file: Option<&Path>) -> Result<Self, ConfigError> {
        let mut figment = Figment::new().merge(Defaults);
        if let Some(path) = config_file {
            if !path.is_file() {
                return Err(ConfigError::invalid(
                    "--config",
                    format!("{} is not a readable file", path.display()),
                ));
            }
            figment = figment.merge(Toml::file_exact(path));
        }
        figment = figment.merge(Env::prefixed(ENV_PREFIX).split("__"));
        Self::from_figment(figment)
    }

    pub fn from_figment(figment: Figment) -> Result<Self, ConfigError> {
        let mut settings: Settings = figment.extract()?;
        settings.refuse_secrets_given_twice(&figment)?;
        settings.read_secret_files()?;
        settings.validate()?;
        Ok(settings)
    }

    /// Every secret that can come inline or from a `_file`, by key.
    fn secret_keys() -> Vec<String> {
        let mut keys: Vec<String> = [
            "database.url",
            "crypto.keys",
            "redis.url",
            "api.keys",
            "webhooks.secret",
        ]
        .map(str::to_owned)
        .to_vec();
        keys.extend(
            Provider::ALL
                .iter()
                .map(|p| format!("providers.{}.client_secret", p.config_key())),
        );
        keys
    }

    /// A secret given both as a value (in a file layer or the environment)
    /// and as a `_file` is ambiguous: refused, naming both, rather than
    /// letting one silently win. A value from the built-in defaults does not
    /// count as given.
    fn refuse_secrets_given_twice(&self, figment: &Figment) -> Result<(), ConfigError> {
        for key in Self::secret_keys() {
            let file_key = format!("{key}_file");
            let given = |key: &str| {
                figment
                    .find_metadata(key)
                    .is_some_and(|m| m.name != DEFAULTS_NAME)
            };
            if given(&key) && given(&file_key) {
                let origin = |key: &str| {
                    figment
                        .find_metadata(key)
                        .map(|m| match &m.source {
                            Some(figment::Source::File(path)) => path.display().to_string(),
                            _ => m.name.to_string(),
                        })
                        .unwrap_or_default()
                };
                return Err(ConfigError::invalid(
                    key.clone(),
                    format!(
                        "is set (from {}) and so is {file_key} (from {}): give one of the two",
                        origin(&key),
                        origin(&file_key)
                    ),
                ));
            }
        }
        Ok(())
    }

    fn read_secret_files(&mut self) -> Result<(), ConfigError> {
        resolve_secret_file(
            "database.url",
            &mut self.database.url,
            &self.database.url_file,
        )?;
        resolve_secret_file("crypto.keys", &mut self.crypto.keys, &self.crypto.keys_file)?;
        resolve_secret_file("redis.url", &mut self.redis.url, &self.redis.url_file)?;
        resolve_secret_file("api.keys", &mut self.api.keys, &self.api.keys_file)?;
        resolve_secret_file(
            "webhooks.secret",
            &mut self.webhooks.secret,
            &self.webhooks.secret_file,
        )?;
        for provider in Provider::ALL {
            let key = format!("providers.{}.client_secret", provider.config_key());
            let section = self.providers.get_mut(*provider);
            resolve_secret_file(
                &key,
                &mut section.client_secret,
                &section.client_secret_file,
            )?;
        }
        Ok(())
    }

    /// How long a refresh lease lasts: the longest provider call plus the
    /// margin, so the lease outlives any call it covers.
    pub fn lease_duration(&self) -> Duration {
        self.http
            .request_timeout
            .max(self.http.rotating_request_timeout)
            .saturating_add(self.engine.lease_margin)
    }

    /// Cross-field rules that types alone cannot say.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.validate_numbers()?;
        if self.database.url.is_none() {
            return Err(ConfigError::invalid(
                "database.url",
                "is required (or database.url_file)",
            ));
        }
        if self.http.connect_timeout > self.http.request_timeout {
            return Err(ConfigError::invalid(
                "http.connect_timeout",
                "must not exceed http.request_timeout",
            ));
        }
        if reqwest::header::HeaderValue::from_str(&self.http.user_agent).is_err() {
            return Err(ConfigError::invalid(
                "http.user_agent",
                "must be printable ASCII (it is sent as a header)",
            ));
        }
        if self.engine.retry_cap < self.engine.retry_base {
            return Err(ConfigError::invalid(
                "engine.retry_cap",
                "must not be below engine.retry_base",
            ));
        }
        if self.webhooks.retry_cap < self.webhooks.retry_base {
            return Err(ConfigError::invalid(
                "webhooks.retry_cap",
                "must not be below webhooks.retry_base",
            ));
        }
        if let Some(keys) = &self.crypto.keys {
            crate::crypto::Keyring::parse(keys).map_err(ConfigError::from)?;
        }
        self.validate_queue()?;
        if let Err(e) = tracing_subscriber::EnvFilter::try_new(&self.log.filter) {
            return Err(ConfigError::invalid("log.filter", e.to_string()));
        }
        for provider in Provider::ALL {
            self.validate_provider(*provider)?;
        }
        Ok(())
    }

    /// Every number in range, each error naming its key. Runs before the
    /// cross-field rules, which add durations together. (`api.*` numbers are
    /// checked with the rest of that section.)
    fn validate_numbers(&self) -> Result<(), ConfigError> {
        let positive = Duration::from_nanos(1);
        let d = |key: &str, value: Duration, min: Duration| duration(key, value, min, MAX_DURATION);

        whole_number(
            "database.max_connections",
            self.database.max_connections,
            1,
            10_000,
        )?;
        d(
            "database.acquire_timeout",
            self.database.acquire_timeout,
            positive,
        )?;
        d("http.connect_timeout", self.http.connect_timeout, positive)?;
        d("http.request_timeout", self.http.request_timeout, positive)?;
        d(
            "http.rotating_request_timeout",
            self.http.rotating_request_timeout,
            positive,
        )?;
        d(
            "http.pool_idle_timeout",
            self.http.pool_idle_timeout,
            positive,
        )?;
        whole_number(
            "http.max_response_bytes",
            self.http.max_response_bytes,
            1024,
            64 * 1024 * 1024,
        )?;
        // The lease has to outlive the HTTP timeout by something.
        d(
            "engine.lease_margin",
            self.engine.lease_margin,
            Duration::from_secs(1),
        )?;
        d(
            "engine.single_flight_wait",
            self.engine.single_flight_wait,
            positive,
        )?;
        d("engine.retry_base", self.engine.retry_base, positive)?;
        d("engine.retry_cap", self.engine.retry_cap, positive)?;
        d(
            "redis.response_timeout",
            self.redis.response_timeout,
            positive,
        )?;
        d("scheduler.interval", self.scheduler.interval, positive)?;
        whole_number(
            "scheduler.batch_size",
            self.scheduler.batch_size,
            1,
            100_000,
        )?;
        whole_number(
            "scheduler.max_outstanding",
            self.scheduler.max_outstanding,
            1,
            10_000_000,
        )?;
        d(
            "scheduler.claim_timeout",
            self.scheduler.claim_timeout,
            positive,
        )?;
        whole_number(
            "scheduler.sweep_batch_size",
            self.scheduler.sweep_batch_size,
            1,
            100_000,
        )?;
        whole_number("worker.concurrency", self.worker.concurrency, 1, 100_000)?;
        d("worker.job_timeout", self.worker.job_timeout, positive)?;
        d("worker.poll_interval", self.worker.poll_interval, positive)?;
        // Multiplied by missed_heartbeats for the liveness deadline.
        duration(
            "worker.heartbeat_interval",
            self.worker.heartbeat_interval,
            positive,
            Duration::from_secs(3600),
        )?;
        whole_number(
            "worker.missed_heartbeats",
            self.worker.missed_heartbeats,
            1,
            1_000,
        )?;
        whole_number("circuit.window", self.circuit.window, 1, 100_000)?;
        fraction("circuit.failure_ratio", self.circuit.failure_ratio)?;
        whole_number("circuit.min_calls", self.circuit.min_calls, 1, 100_000)?;
        d("circuit.cooldown", self.circuit.cooldown, positive)?;
        whole_number(
            "circuit.app_error_accounts",
            self.circuit.app_error_accounts,
            1,
            100_000,
        )?;
        d(
            "circuit.app_error_window",
            self.circuit.app_error_window,
            positive,
        )?;
        d("shutdown.grace", self.shutdown.grace, positive)?;
        d(
            "metrics.state_interval",
            self.metrics.state_interval,
            positive,
        )?;
        d(
            "metrics.overdue_after",
            self.metrics.overdue_after,
            Duration::ZERO,
        )?;
        d("webhooks.timeout", self.webhooks.timeout, positive)?;
        d("webhooks.retry_base", self.webhooks.retry_base, positive)?;
        d("webhooks.retry_cap", self.webhooks.retry_cap, positive)?;
        whole_number("webhooks.concurrency", self.webhooks.concurrency, 1, 10_000)?;
        d(
            "webhooks.poll_interval",
            self.webhooks.poll_interval,
            positive,
        )?;
        for provider in Provider::ALL {
            let section = self.providers.get(*provider);
            let key = |field: &str| format!("providers.{}.{field}", provider.config_key());
            fraction(&key("refresh_fraction"), section.refresh_fraction)?;
            d(
                &key("refresh_margin"),
                section.refresh_margin,
                Duration::ZERO,
            )?;
            d(
                &key("default_access_token_lifetime"),
                section.default_access_token_lifetime,
                positive,
            )?;
            d(&key("min_token_age"), section.min_token_age, Duration::ZERO)?;
            d(&key("jitter"), section.jitter, Duration::ZERO)?;
            d(
                &key("keep_alive_interval"),
                section.keep_alive_interval,
                positive,
            )?;
            d(
                &key("health_check_interval"),
                section.health_check_interval,
                positive,
            )?;
            if let Some(lifetime) = section.refresh_token_lifetime {
                d(&key("refresh_token_lifetime"), lifetime, positive)?;
            }
            whole_number(&key("max_concurrency"), section.max_concurrency, 1, 100_000)?;
            rate(&key("rate_per_second"), section.rate_per_second)?;
        }
        Ok(())
    }

    /// Settings that are valid but worth an operator's attention.
    pub fn warnings(&self) -> Vec<String> {
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

    fn validate_queue(&self) -> Result<(), ConfigError> {
        if self.redis.url.is_none() {
            return Err(ConfigError::invalid(
                "redis.url",
                "is required (or redis.url_file)",
            ));
        }
        if self.redis.queue.trim().is_empty() {
            return Err(ConfigError::invalid("redis.queue", "must not be empty"));
        }
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
        if self.circuit.min_calls > self.circuit.window {
            return Err(ConfigError::invalid(
                "circuit.min_calls",
                "must be between 1 and circuit.window",
            ));
        }
        self.validate_api()?;
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

    fn validate_api(&self) -> Result<(), ConfigError> {
        for (key, value) in [
            ("api.listen", &self.api.listen),
            ("api.metrics_listen", &self.api.metrics_listen),
        ] {
            if (key == "api.listen" || !value.is_empty())
                && value.parse::<std::net::SocketAddr>().is_err()
            {
                return Err(ConfigError::invalid(
                    key,
                    format!("{value:?} is not an address like 0.0.0.0:8080"),
                ));
            }
        }
        if let Some(keys) = &self.api.keys {
            let keys = api_keys(keys);
            if keys.is_empty() {
                return Err(ConfigError::invalid("api.keys", "holds no key"));
            }
            if keys.iter().any(|k| k.len() < 16) {
                return Err(ConfigError::invalid(
                    "api.keys",
                    "every key must be at least 16 characters",
                ));
            }
        }
        if !(1024..=64 * 1024 * 1024).contains(&self.api.max_body_bytes) {
            return Err(ConfigError::invalid(
                "api.max_body_bytes",
                "must be between 1024 and 67108864",
            ));
        }
        // Beyond a day the limit is a typo, and its Retry-After absurd.
        if self.api.force_refresh_min_interval > Duration::from_secs(86_400) {
            return Err(ConfigError::invalid(
                "api.force_refresh_min_interval",
                "must be at most 1 day",
            ));
        }
        for (key, value) in [
            ("api.header_read_timeout", self.api.header_read_timeout),
            ("api.idle_timeout", self.api.idle_timeout),
        ] {
            if value < Duration::from_millis(100) || value > Duration::from_secs(3600) {
                return Err(ConfigError::invalid(key, "must be between 100ms and 1h"));
            }
        }
        if !(1..=1_000_000).contains(&self.api.max_connections) {
            return Err(ConfigError::invalid(
                "api.max_connections",
                "must be between 1 and 1000000",
            ));
        }
        if let Some(url) = &self.webhooks.url {
            if !matches!(url.scheme(), "https" | "http") {
                return Err(ConfigError::invalid(
                    "webhooks.url",
                    "must be an http(s) URL",
                ));
            }
            match &self.webhooks.secret {
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

    fn validate_provider(&self, provider: Provider) -> Result<(), ConfigError> {
        let section = self.providers.get(provider);
        let key = |field: &str| format!("providers.{}.{field}", provider.config_key());
        if let Some(url) = &section.token_url
            && !matches!(url.scheme(), "https" | "http")
        {
            return Err(ConfigError::invalid(
                key("token_url"),
                "must be an http(s) URL",
            ));
        }
        if let Some(url) = &section.health_url
            && !matches!(url.scheme(), "https" | "http")
        {
            return Err(ConfigError::invalid(
                key("health_url"),
                "must be an http(s) URL",
            ));
        }
        if section.flow == Flow::Facebook && section.health_url.is_none() {
            return Err(ConfigError::invalid(
                key("health_url"),
                "is required by this flow (the debug_token endpoint)",
            ));
        }
        if !matches!(section.flow, Flow::None | Flow::Mastodon | Flow::Bluesky)
            && section.token_url.is_none()
        {
            return Err(ConfigError::invalid(
                key("token_url"),
                "is required by this flow",
            ));
        }
        for origin in &section.allowed_origins {
            if !matches!(origin.scheme(), "https" | "http")
                || origin.host().is_none()
                || origin.path() != "/"
                || origin.query().is_some()
                || !origin.username().is_empty()
            {
                return Err(ConfigError::invalid(
                    key("allowed_origins"),
                    format!("{origin} is not a bare http(s) origin"),
                ));
            }
        }
        if section.client_id.as_deref() == Some("") {
            return Err(ConfigError::invalid(
                key("client_id"),
                "must not be empty when set",
            ));
        }
        Ok(())
    }
}

fn is_false(value: &bool) -> bool {
    !*value
}

/// A duration within `min..=max`; a zero `min` allows zero.
fn duration(key: &str, value: Duration, min: Duration, max: Duration) -> Result<(), ConfigError> {
    if value < min {
        let problem = if min <= Duration::from_nanos(1) {
            "must be greater than zero".to_owned()
        } else {
            format!("must be at least {}", humantime::format_duration(min))
        };
        return Err(ConfigError::invalid(key, problem));
    }
    if value > max {
        return Err(ConfigError::invalid(
            key,
            format!("must be at most {}", humantime::format_duration(max)),
        ));
    }
    Ok(())
}

/// A count within `min..=max`.
fn whole_number<T>(key: &str, value: T, min: i64, max: i64) -> Result<(), ConfigError>
where
    i128: TryFrom<T>,
{
    let value = i128::try_from(value).unwrap_or(i128::MAX);
    if (i128::from(min)..=i128::from(max)).contains(&value) {
        Ok(())
    } else {
        Err(ConfigError::invalid(
            key,
            format!("must be between {min} and {max}, got {value}"),
        ))
    }
}

/// A share of something: in (0, 1]. NaN fails every comparison, so it is
/// refused too.
fn fraction(key: &str, value: f64) -> Result<(), ConfigError> {
    if value > 0.0 && value <= 1.0 {
        Ok(())
    } else {
        Err(ConfigError::invalid(
            key,
            format!("must be a number greater than 0 and at most 1, got {value}"),
        ))
    }
}

/// Calls per second for a token bucket: a finite number > 0. The bounds keep
/// the wait for one token (1 / rate) and the burst (rate) representable.
fn rate(key: &str, value: f64) -> Result<(), ConfigError> {
    const MIN: f64 = 0.001;
    const MAX: f64 = 1_000_000.0;
    if value.is_finite() && (MIN..=MAX).contains(&value) {
        Ok(())
    } else {
        Err(ConfigError::invalid(
            key,
            format!("must be a finite number > 0, between {MIN} and {MAX}, got {value}"),
        ))
    }
}

/// The configured API keys, trimmed, empty entries dropped.
pub fn api_keys(keys: &SecretString) -> Vec<&str> {
    keys.expose_secret()
        .split(',')
        .map(str::trim)
        .filter(|k| !k.is_empty())
        .collect()
}

/// Fills `secret` from `file` when the `_file` variant is set; both at once is
/// ambiguous and refused.
fn resolve_secret_file(
    key: &str,
    secret: &mut Option<SecretString>,
    file: &Option<PathBuf>,
) -> Result<(), ConfigError> {
    let Some(path) = file else { return Ok(()) };
    let read = std::fs::read_to_string(path).map_err(|e| {
        ConfigError::invalid(
            format!("{key}_file"),
            format!("cannot read {}: {e}", path.display()),
        )
    })?;
    let value = read.trim_end_matches(['\r', '\n']);
    if value.is_empty() {
        return Err(ConfigError::invalid(
            format!("{key}_file"),
            format!("{} is empty", path.display()),
        ));
    }
    // A file replaces only a built-in default: an operator's value given
    // beside the file was refused by `refuse_secrets_given_twice`.
    *secret = Some(SecretString::from(value.to_owned()));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_toml_matches_the_built_in_defaults() {
        let from_file =
            Settings::from_figment(Figment::new().merge(Toml::string(DEFAULT_TOML))).unwrap();
        let built_in = Settings::from_figment(Figment::new()).unwrap();
        assert_eq!(format!("{from_file:?}"), format!("{built_in:?}"));
    }

    /// Every key that has a default is written out (and so commented) in
    /// `config/default.toml`; secrets are the exception by design.
    #[test]
    fn default_toml_lists_every_key() {
        let defaults = toml_value(&Settings::default());
        let file: toml::Value = toml::from_str(DEFAULT_TOML).unwrap();
        let mut missing = Vec::new();
        collect_missing("", &defaults, &file, &mut missing);
        assert!(
            missing.is_empty(),
            "keys missing from config/default.toml: {missing:?}"
        );
    }

    fn toml_value(settings: &Settings) -> toml::Value {
        toml::Value::try_from(settings).unwrap()
    }

    fn collect_missing(
        prefix: &str,
        want: &toml::Value,
        have: &toml::Value,
        missing: &mut Vec<String>,
    ) {
        let toml::Value::Table(want) = want else {
            return;
        };
        for (key, value) in want {
            let path = if prefix.is_empty() {
                key.clone()
            } else {
                format!("{prefix}.{key}")
            };
            match have.get(key) {
                None => missing.push(path),
                Some(have) => collect_missing(&path, value, have, missing),
            }
        }
    }
}
