//! Talking to the platforms. The engine sees one trait; each flow lives in a
//! file of its own and classifies every answer into a `ProviderError` kind.

#[cfg(test)]
mod answers_proptest;
mod bluesky;
mod dpop;
mod error;
mod facebook;
mod google;
pub(crate) mod graph;
pub mod host_guard;
mod http;
mod instagram_login;
pub mod lifetime;
mod linkedin;
mod long_lived;
mod mastodon;
mod oauth2_refresh;
mod pinterest;
pub mod rate_limit;
mod revoke;
mod threads;
mod tiktok;
pub mod token_response;
mod x;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use secrecy::{ExposeSecret, SecretString};

pub use bluesky::{BlueskyRefresh, needs_dpop_key};
pub(crate) use bluesky::{dpop_nonce, jwt_exp, use_dpop_nonce};
pub use dpop::{DpopKey, InvalidDpopKey};
pub use error::{FailureKind, ProviderError};
pub use facebook::FacebookFlow;
pub use google::GoogleRefresh;
pub use http::{HttpClient, HttpReply};
pub use linkedin::LinkedinRefresh;
pub use long_lived::LongLivedRefresh;
pub use mastodon::MastodonCheck;
pub use oauth2_refresh::OAuth2Refresh;
pub(crate) use oauth2_refresh::{basic_credentials, with_client_auth};
pub use pinterest::PinterestRefresh;
pub use revoke::Revoker;
pub use tiktok::TiktokRefresh;
pub use x::XRefresh;

use crate::config::{Flow, HttpSettings, ProvidersSettings};
use crate::domain::{AccessToken, AccountId, Provider, RefreshToken};

/// What a provider gets to refresh one account: the decrypted credentials
/// (never logged) and the account's non-secret context.
pub struct RefreshRequest<'a> {
    pub account_id: &'a AccountId,
    pub provider: Provider,
    pub access_token: &'a AccessToken,
    pub refresh_token: Option<&'a RefreshToken>,
    /// The account's DPoP key, where its tokens are DPoP-bound.
    pub dpop_key: Option<&'a DpopKey>,
    pub meta: &'a serde_json::Value,
    /// When the stored access token was issued, where known (platforms that
    /// refuse to refresh young tokens check it).
    pub token_issued_at: Option<chrono::DateTime<chrono::Utc>>,
}

/// A successful refresh as the platform answered it.
#[derive(Debug, Clone)]
pub struct TokenGrant {
    pub access_token: AccessToken,
    /// None: the platform did not return one; the stored one is kept.
    pub refresh_token: Option<RefreshToken>,
    /// None: the platform did not say; the provider's configured default applies.
    pub expires_in: Option<Duration>,
    pub refresh_token_expires_in: Option<Duration>,
    pub scopes: Option<Vec<String>>,
    /// What was odd about the answer (a clamped or ignored lifetime), kept
    /// in the attempt history.
    pub notes: Vec<String>,
    /// What the platform said about the account itself in this answer.
    pub account: AccountState,
}

/// Whether the platform reports the account itself as able to act, apart
/// from its token (Bluesky's `active`/`status`, Mastodon's disabled login).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum AccountState {
    /// The answer says nothing about it: whatever was known stays.
    #[default]
    Unreported,
    Active,
    /// Inactive, with the platform's reason (`deactivated`, ...).
    Inactive(String),
}

/// A health check that found the token working.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Checked {
    pub account: AccountState,
    /// What the check could not tell, for the attempt's record.
    pub note: Option<String>,
}

impl Checked {
    /// The token works and the platform says the account is active.
    pub fn active() -> Self {
        Self {
            account: AccountState::Active,
            note: None,
        }
    }
}

pub trait TokenProvider: Send + Sync {
    /// Whether a refresh needs a stored refresh token.
    fn needs_refresh_token(&self) -> bool {
        true
    }

    fn refresh<'a>(
        &'a self,
        request: RefreshRequest<'a>,
    ) -> BoxFuture<'a, Result<TokenGrant, ProviderError>>;

    /// Checks that a token which never expires still works; None where the
    /// platform has no such check.
    fn health_check<'a>(
        &'a self,
        _request: RefreshRequest<'a>,
    ) -> Option<BoxFuture<'a, Result<Checked, ProviderError>>> {
        None
    }
}

/// The flow configured for each platform, or why there is none.
#[derive(Clone, Default)]
pub struct ProviderRegistry {
    flows: HashMap<Provider, Arc<dyn TokenProvider>>,
    missing: HashMap<Provider, String>,
    revokers: HashMap<Provider, Arc<Revoker>>,
    /// Each platform's client secret, as itself and inside a Basic header,
    /// only so that an echo of it can be scrubbed from the platform's text.
    client_secrets: HashMap<Provider, Vec<SecretString>>,
}

impl ProviderRegistry {
    pub fn from_settings(
        settings: &ProvidersSettings,
        http: &HttpSettings,
    ) -> Result<Self, reqwest::Error> {
        let plain_http = http;
        let plain_client = HttpClient::new(plain_http)?;
        // A rotating token's refresh is given longer: giving up while the
        // platform still works on it is what spends the token.
        let rotating_http = HttpSettings {
            request_timeout: http.rotating_request_timeout,
            ..http.clone()
        };
        let rotating_client = HttpClient::new(&rotating_http)?;
        let mut registry = Self::default();
        for provider in Provider::ALL {
            let section = settings.get(*provider);
            let (client, http) = if section.rotates_refresh_token {
                (&rotating_client, &rotating_http)
            } else {
                (&plain_client, plain_http)
            };
            let key = provider.config_key();
            if let Some(secret) = &section.client_secret {
                let mut spellings = vec![secret.clone()];
                if let Some(id) = &section.client_id {
                    spellings.push(SecretString::from(basic_credentials(id, Some(secret))));
                }
                registry.client_secrets.insert(*provider, spellings);
            }
            if let Some(revoker) = Revoker::from_settings(section, client.clone()) {
                registry.revokers.insert(*provider, Arc::new(revoker));
            }
            let no_client =
                || format!("{provider} is not configured: providers.{key}.client_id is not set");
            let built: Result<Arc<dyn TokenProvider>, String> = match section.flow {
                Flow::None => Err(format!(
                    "no refresh flow is configured for {provider} (providers.{key}.flow = \"none\")"
                )),
                Flow::Oauth2Refresh => OAuth2Refresh::from_settings(section, client.clone())
                    .map(|f| Arc::new(f) as Arc<dyn TokenProvider>)
                    .ok_or_else(no_client),
                Flow::X => XRefresh::from_settings(section, client.clone())
                    .map(|f| Arc::new(f) as Arc<dyn TokenProvider>)
                    .ok_or_else(no_client),
                Flow::Linkedin => LinkedinRefresh::from_settings(section, client.clone())
                    .map(|f| Arc::new(f) as Arc<dyn TokenProvider>)
                    .ok_or_else(no_client),
                Flow::Tiktok => TiktokRefresh::from_settings(section, client.clone())
                    .map(|f| Arc::new(f) as Arc<dyn TokenProvider>)
                    .ok_or_else(no_client),
                Flow::InstagramLogin => instagram_login::from_settings(section, client.clone())
                    .map(|f| Arc::new(f) as Arc<dyn TokenProvider>)
                    .ok_or_else(|| format!("providers.{key}.token_url is not set")),
                Flow::Threads => threads::from_settings(section, client.clone())
                    .map(|f| Arc::new(f) as Arc<dyn TokenProvider>)
                    .ok_or_else(|| format!("providers.{key}.token_url is not set")),
                Flow::Mastodon => Ok(Arc::new(MastodonCheck::from_settings(section, http)?)),
                Flow::Google => GoogleRefresh::from_settings(section, client.clone())
                    .map(|f| Arc::new(f) as Arc<dyn TokenProvider>)
                    .ok_or_else(no_client),
                Flow::Pinterest => PinterestRefresh::from_settings(section, client.clone())
                    .map(|f| Arc::new(f) as Arc<dyn TokenProvider>)
                    .ok_or_else(no_client),
                Flow::Facebook => FacebookFlow::from_settings(section, client.clone())
                    .map(|f| Arc::new(f) as Arc<dyn TokenProvider>)
                    .ok_or_else(|| {
                        format!(
                            "{provider} is not configured: providers.{key}.client_id and client_secret \
                             are both needed (the app access token is client_id|client_secret)"
                        )
                    }),
                Flow::Bluesky => Ok(Arc::new(BlueskyRefresh::from_settings(section, http)?)),
            };
            match built {
                Ok(flow) => {
                    registry.flows.insert(*provider, flow);
                }
                Err(why) => {
                    registry.missing.insert(*provider, why);
                }
            }
        }
        Ok(registry)
    }

    /// Replaces (or adds) the flow of one platform; tests use it to plug in
    /// flows with unusual behaviour.
    pub fn insert(&mut self, provider: Provider, flow: Arc<dyn TokenProvider>) {
        self.missing.remove(&provider);
        self.flows.insert(provider, flow);
    }

    /// The platform's client secret as sent (itself, and inside a Basic
    /// header), none when none is configured; for scrubbing text only.
    pub fn client_secrets(&self, provider: Provider) -> impl Iterator<Item = &str> {
        self.client_secrets
            .get(&provider)
            .into_iter()
            .flatten()
            .map(|s| s.expose_secret())
    }

    /// The platform's revocation endpoint, where one is configured.
    pub fn revoker(&self, provider: Provider) -> Option<&Arc<Revoker>> {
        self.revokers.get(&provider)
    }

    pub fn get(&self, provider: Provider) -> Result<&Arc<dyn TokenProvider>, &str> {
        self.flows.get(&provider).ok_or_else(|| {
            self.missing
                .get(&provider)
                .map(String::as_str)
                .unwrap_or("not configured")
        })
    }
}
