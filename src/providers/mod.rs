//! Talking to the platforms. The engine sees one trait; each flow lives in a
//! file of its own and classifies every answer into a `ProviderError` kind.

mod error;
mod http;
mod oauth2_refresh;
pub mod token_response;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;

pub use error::{FailureKind, ProviderError};
pub use http::{HttpClient, HttpReply};
pub use oauth2_refresh::OAuth2Refresh;

use crate::config::{Flow, HttpSettings, ProvidersSettings};
use crate::domain::{AccessToken, AccountId, Provider, RefreshToken};

/// What a provider gets to refresh one account: the decrypted credentials
/// (never logged) and the account's non-secret context.
pub struct RefreshRequest<'a> {
    pub account_id: &'a AccountId,
    pub provider: Provider,
    pub access_token: &'a AccessToken,
    pub refresh_token: Option<&'a RefreshToken>,
    pub meta: &'a serde_json::Value,
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
    ) -> Option<BoxFuture<'a, Result<(), ProviderError>>> {
        None
    }
}

/// The flow configured for each platform, or why there is none.
#[derive(Clone, Default)]
pub struct ProviderRegistry {
    flows: HashMap<Provider, Arc<dyn TokenProvider>>,
    missing: HashMap<Provider, String>,
}

impl ProviderRegistry {
    pub fn from_settings(
        settings: &ProvidersSettings,
        http: &HttpSettings,
    ) -> Result<Self, reqwest::Error> {
        let client = HttpClient::new(http)?;
        let mut registry = Self::default();
        for provider in Provider::ALL {
            let section = settings.get(*provider);
            let key = provider.config_key();
            match section.flow {
                Flow::None => {
                    registry.missing.insert(
                        *provider,
                        format!("no refresh flow is configured for {provider} (providers.{key}.flow = \"none\")"),
                    );
                }
                Flow::Oauth2Refresh => {
                    match OAuth2Refresh::from_settings(section, client.clone()) {
                        Some(flow) => {
                            registry.flows.insert(*provider, Arc::new(flow));
                        }
                        None => {
                            registry.missing.insert(
                            *provider,
                            format!("{provider} is not configured: providers.{key}.client_id is not set"),
                        );
                        }
                    }
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

    pub fn get(&self, provider: Provider) -> Result<&Arc<dyn TokenProvider>, &str> {
        self.flows.get(&provider).ok_or_else(|| {
            self.missing
                .get(&provider)
                .map(String::as_str)
                .unwrap_or("not configured")
        })
    }
}
