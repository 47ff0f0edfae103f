//! `[connect]`: the OAuth authorization-code flow the daemon runs itself,
//! so the API tier never holds a client secret.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use url::Url;

use super::ConfigError;

/// Relative to `public_url`.
pub const CLIENT_METADATA_PATH: &str = "oauth/client-metadata.json";

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct ConnectSettings {
    /// The daemon's public base URL, as the platforms and browsers reach it
    /// (`https://tokens.example.com/`). The callback registered with each
    /// platform is `<public_url>v1/connect/callback`. Unset: the connect
    /// flow is off.
    pub public_url: Option<Url>,
    /// Where a finished flow may send the browser: `redirect_after` must
    /// start with one of these (scheme, host, port, then path prefix), so
    /// the callback is no open redirect.
    pub allowed_redirects: Vec<Url>,
    /// How long a started authorization can be completed.
    #[serde(with = "humantime_serde")]
    pub state_ttl: Duration,
    /// The application name shown to users where the daemon registers
    /// itself (Mastodon apps, the atproto client metadata).
    pub client_name: String,
}

impl Default for ConnectSettings {
    fn default() -> Self {
        Self {
            public_url: None,
            allowed_redirects: Vec::new(),
            state_ttl: Duration::from_secs(600),
            client_name: "tokenwarden".to_owned(),
        }
    }
}

impl ConnectSettings {
    /// The callback URL registered with the platforms, when the flow is on.
    pub fn callback_url(&self) -> Option<Url> {
        self.public_url.as_ref().map(|base| {
            base.join("v1/connect/callback")
                .expect("a relative path joins")
        })
    }

    /// Where the daemon serves its own atproto OAuth client metadata, when
    /// the flow is on: the client id Bluesky sessions use unless
    /// `providers.bluesky.client_id` names another.
    pub fn client_metadata_url(&self) -> Option<Url> {
        self.public_url.as_ref().map(|base| {
            base.join(CLIENT_METADATA_PATH)
                .expect("a relative path joins")
        })
    }

    /// Whether `target` starts with one of `allowed_redirects`.
    pub fn redirect_allowed(&self, target: &Url) -> bool {
        self.allowed_redirects.iter().any(|allowed| {
            allowed.scheme() == target.scheme()
                && allowed.host_str() == target.host_str()
                && allowed.port_or_known_default() == target.port_or_known_default()
                && within(allowed.path(), target.path())
        })
    }

    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        if let Some(url) = &self.public_url {
            if !matches!(url.scheme(), "https" | "http") || url.host_str().is_none() {
                return Err(ConfigError::invalid(
                    "connect.public_url",
                    "must be an http(s) URL with a host",
                ));
            }
            if !url.path().ends_with('/') {
                return Err(ConfigError::invalid(
                    "connect.public_url",
                    "must end with '/' (it is the base the callback path is joined to)",
                ));
            }
            if url.query().is_some() || url.fragment().is_some() {
                return Err(ConfigError::invalid(
                    "connect.public_url",
                    "must have no query or fragment",
                ));
            }
            if self.allowed_redirects.is_empty() {
                return Err(ConfigError::invalid(
                    "connect.allowed_redirects",
                    "is empty: name the URLs a finished connection may return the browser to",
                ));
            }
        }
        for allowed in &self.allowed_redirects {
            if !matches!(allowed.scheme(), "https" | "http") || allowed.host_str().is_none() {
                return Err(ConfigError::invalid(
                    "connect.allowed_redirects",
                    format!("{allowed} is not an http(s) URL with a host"),
                ));
            }
        }
        if self.state_ttl < Duration::from_secs(30) || self.state_ttl > Duration::from_secs(3600) {
            return Err(ConfigError::invalid(
                "connect.state_ttl",
                "must be between 30s and 1h",
            ));
        }
        let name = self.client_name.trim();
        if name.is_empty() || name.len() > 100 || name.chars().any(char::is_control) {
            return Err(ConfigError::invalid(
                "connect.client_name",
                "must be 1 to 100 characters without control characters",
            ));
        }
        Ok(())
    }
}

/// `path` is `prefix` or below it: `/done` allows `/done` and `/done/x`,
/// never `/doneevil`.
fn within(prefix: &str, path: &str) -> bool {
    match path.strip_prefix(prefix) {
        Some(rest) => rest.is_empty() || prefix.ends_with('/') || rest.starts_with('/'),
        None => false,
    }
}
