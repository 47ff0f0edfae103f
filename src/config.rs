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
use secrecy::SecretString;
use serde::{Deserialize, Serialize};
use url::Url;

use crate::domain::Provider;

pub const DEFAULT_TOML: &str = include_str!("../config/default.toml");
pub const ENV_PREFIX: &str = "TOKENWARDEN__";

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

impl ConfigError {
    pub fn invalid(key: impl Into<String>, problem: impl Into<String>) -> Self {
        ConfigError::Invalid {
            key: key.into(),
            problem: problem.into(),
        }
    }
}

#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct Settings {
    pub database: DatabaseSettings,
    pub crypto: CryptoSettings,
    pub http: HttpSettings,
    pub engine: EngineSettings,
    pub log: LogSettings,
    pub providers: ProvidersSettings,
}

#[derive(Debug, Deserialize, Serialize)]
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

#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct CryptoSettings {
    /// `id:base64key` entries separated by commas, newest first: the first
    /// encrypts, all decrypt.
    #[serde(skip_serializing)]
    pub keys: Option<SecretString>,
    pub keys_file: Option<PathBuf>,
}

#[derive(Debug, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct HttpSettings {
    #[serde(with = "humantime_serde")]
    pub connect_timeout: Duration,
    #[serde(with = "humantime_serde")]
    pub request_timeout: Duration,
    pub max_response_bytes: usize,
    pub user_agent: String,
}

impl Default for HttpSettings {
    fn default() -> Self {
        Self {
            connect_timeout: Duration::from_secs(5),
            request_timeout: Duration::from_secs(20),
            max_response_bytes: 1024 * 1024,
            user_agent: concat!("tokenwarden/", env!("CARGO_PKG_VERSION")).to_owned(),
        }
    }
}

#[derive(Debug, Deserialize, Serialize)]
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
            lease_margin: Duration::from_secs(30),
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

#[derive(Debug, Deserialize, Serialize)]
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
    /// No refresh flow is wired for this platform yet.
    None,
}

/// Where the OAuth client credentials travel (RFC 6749 section 2.3.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ClientAuth {
    Basic,
    Body,
}

#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ProviderSettings {
    pub flow: Flow,
    pub token_url: Option<Url>,
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
}

impl ProviderSettings {
    fn defaults_for(provider: Provider) -> Self {
        use Provider::*;
        let (flow, token_url, client_auth, rotates, lifetime_secs) = match provider {
            X => (
                Flow::Oauth2Refresh,
                Some("https://api.x.com/2/oauth2/token"),
                ClientAuth::Basic,
                true,
                7_200,
            ),
            LinkedinPerson | LinkedinCompany => (
                Flow::Oauth2Refresh,
                Some("https://www.linkedin.com/oauth/v2/accessToken"),
                ClientAuth::Body,
                false,
                60 * 86_400,
            ),
            Youtube => (
                Flow::Oauth2Refresh,
                Some("https://oauth2.googleapis.com/token"),
                ClientAuth::Body,
                false,
                3_600,
            ),
            Pinterest => (
                Flow::Oauth2Refresh,
                Some("https://api.pinterest.com/v5/oauth/token"),
                ClientAuth::Basic,
                true,
                30 * 86_400,
            ),
            TiktokBusiness | TiktokPersonal => (Flow::None, None, ClientAuth::Body, true, 86_400),
            InstagramLogin | Threads => (Flow::None, None, ClientAuth::Body, false, 60 * 86_400),
            Bluesky => (Flow::None, None, ClientAuth::Body, true, 7_200),
            FacebookPage | InstagramFacebookLogin | Mastodon => {
                (Flow::None, None, ClientAuth::Body, false, 60 * 86_400)
            }
        };
        Self {
            flow,
            token_url: token_url.map(|u| Url::parse(u).expect("built-in token URLs parse")),
            client_id: None,
            client_secret: None,
            client_secret_file: None,
            client_auth,
            rotates_refresh_token: rotates,
            refresh_fraction: 2.0 / 3.0,
            refresh_margin: Duration::from_secs(300),
            default_access_token_lifetime: Duration::from_secs(lifetime_secs),
        }
    }
}

macro_rules! providers_settings {
    ($($field:ident => $provider:ident),+ $(,)?) => {
        /// One section per platform, `[providers.<name>]`.
        #[derive(Debug, Deserialize, Serialize)]
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
        let mut figment = Figment::new().merge(Toml::string(DEFAULT_TOML));
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
        settings.read_secret_files()?;
        settings.validate()?;
        Ok(settings)
    }

    fn read_secret_files(&mut self) -> Result<(), ConfigError> {
        resolve_secret_file(
            "database.url",
            &mut self.database.url,
            &self.database.url_file,
        )?;
        resolve_secret_file("crypto.keys", &mut self.crypto.keys, &self.crypto.keys_file)?;
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

    /// Cross-field rules that types alone cannot say.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.database.url.is_none() {
            return Err(ConfigError::invalid(
                "database.url",
                "is required (or database.url_file)",
            ));
        }
        if self.database.max_connections == 0 {
            return Err(ConfigError::invalid(
                "database.max_connections",
                "must be at least 1",
            ));
        }
        nonzero("database.acquire_timeout", self.database.acquire_timeout)?;
        nonzero("http.connect_timeout", self.http.connect_timeout)?;
        nonzero("http.request_timeout", self.http.request_timeout)?;
        if self.http.connect_timeout > self.http.request_timeout {
            return Err(ConfigError::invalid(
                "http.connect_timeout",
                "must not exceed http.request_timeout",
            ));
        }
        if !(1024..=64 * 1024 * 1024).contains(&self.http.max_response_bytes) {
            return Err(ConfigError::invalid(
                "http.max_response_bytes",
                "must be between 1024 and 67108864",
            ));
        }
        if self.engine.lease_margin < Duration::from_secs(1) {
            return Err(ConfigError::invalid(
                "engine.lease_margin",
                "must be at least 1s: the lease has to outlive the HTTP timeout",
            ));
        }
        nonzero("engine.single_flight_wait", self.engine.single_flight_wait)?;
        nonzero("engine.retry_base", self.engine.retry_base)?;
        if self.engine.retry_cap < self.engine.retry_base {
            return Err(ConfigError::invalid(
                "engine.retry_cap",
                "must not be below engine.retry_base",
            ));
        }
        if let Err(e) = tracing_subscriber::EnvFilter::try_new(&self.log.filter) {
            return Err(ConfigError::invalid("log.filter", e.to_string()));
        }
        for provider in Provider::ALL {
            self.validate_provider(*provider)?;
        }
        Ok(())
    }

    fn validate_provider(&self, provider: Provider) -> Result<(), ConfigError> {
        let section = self.providers.get(provider);
        let key = |field: &str| format!("providers.{}.{field}", provider.config_key());
        if !(section.refresh_fraction > 0.0 && section.refresh_fraction <= 1.0) {
            return Err(ConfigError::invalid(
                key("refresh_fraction"),
                "must be in (0, 1]",
            ));
        }
        nonzero(
            &key("default_access_token_lifetime"),
            section.default_access_token_lifetime,
        )?;
        if let Some(url) = &section.token_url
            && !matches!(url.scheme(), "https" | "http")
        {
            return Err(ConfigError::invalid(
                key("token_url"),
                "must be an http(s) URL",
            ));
        }
        if section.flow == Flow::Oauth2Refresh && section.token_url.is_none() {
            return Err(ConfigError::invalid(
                key("token_url"),
                "is required by flow oauth2_refresh",
            ));
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

fn nonzero(key: &str, value: Duration) -> Result<(), ConfigError> {
    if value.is_zero() {
        Err(ConfigError::invalid(key, "must be greater than zero"))
    } else {
        Ok(())
    }
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
    // A file overrides the built-in default; naming both explicitly would be
    // caught only if the default were absent, so the file simply wins.
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
