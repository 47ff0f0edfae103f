//! Meta's four products. Facebook Pages and Instagram with Facebook Login
//! (`facebook`) sign the user in with Facebook Login and register Pages (or
//! the Instagram accounts linked to them) with their never-expiring Page
//! tokens; Instagram with Instagram Login and Threads (`long_lived`) have
//! logins of their own and register the user's long-lived token. `answers`
//! reads Meta's answers, `pages` the Page listing.
//!
//! Meta takes tokens and the app secret in query strings. Those URLs never
//! reach a log line or an error: `HttpClient` keeps URLs out of transport
//! errors, the errors built here never mention one, and Meta's own text is
//! scrubbed of the tokens in hand.

mod answers;
mod facebook;
mod long_lived;
mod pages;
#[cfg(test)]
mod proptests;

use std::sync::Arc;

use hmac::{Hmac, KeyInit, Mac};
use secrecy::{ExposeSecret, SecretString};
use serde_json::{Map, Value};
use url::Url;

use self::answers::Step;
use crate::config::ProviderSettings;
use crate::connect::{Begin, ConnectError, Connector};
use crate::domain::Provider;
use crate::providers::HttpClient;

/// The connector of one of Meta's products, or the setting it lacks.
pub fn connector(
    provider: Provider,
    section: &ProviderSettings,
    http: &HttpClient,
) -> Result<Arc<dyn Connector>, String> {
    if matches!(provider, Provider::InstagramLogin | Provider::Threads) {
        long_lived::OwnLogin::from_settings(provider, section, http.clone())
            .map(|c| Arc::new(c) as Arc<dyn Connector>)
    } else {
        facebook::FacebookLogin::from_settings(provider, section, http.clone())
            .map(|c| Arc::new(c) as Arc<dyn Connector>)
    }
}

/// A setting the connector cannot do without.
fn required<T: Clone>(value: &Option<T>, provider: Provider, name: &str) -> Result<T, String> {
    value.clone().ok_or_else(|| {
        format!(
            "{provider} cannot be connected: providers.{}.{name} is not set",
            provider.config_key()
        )
    })
}

/// The app's credentials, shared by every call of a flow.
struct App {
    client_id: String,
    client_secret: SecretString,
}

impl App {
    fn from_settings(provider: Provider, section: &ProviderSettings) -> Result<Self, String> {
        Ok(Self {
            client_id: required(&section.client_id, provider, "client_id")?,
            client_secret: required(&section.client_secret, provider, "client_secret")?,
        })
    }

    /// Meta's login dialogs: the scopes go comma-separated.
    fn authorization_url(&self, dialog: &Url, begin: &Begin<'_>) -> Url {
        let mut url = dialog.clone();
        url.query_pairs_mut()
            .append_pair("client_id", &self.client_id)
            .append_pair("redirect_uri", begin.redirect_uri.as_str())
            .append_pair("response_type", "code")
            .append_pair("scope", &begin.scopes.join(","))
            .append_pair("state", begin.state);
        url
    }

    /// `appsecret_proof` (HMAC-SHA256 of the token keyed by the app
    /// secret, hex), which apps set to "Require App Secret" need on every
    /// Graph call made with a user or Page token.
    fn appsecret_proof(&self, access_token: &SecretString) -> String {
        let mut mac =
            Hmac::<sha2::Sha256>::new_from_slice(self.client_secret.expose_secret().as_bytes())
                .expect("HMAC takes a key of any length");
        mac.update(access_token.expose_secret().as_bytes());
        mac.finalize()
            .into_bytes()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    }
}

/// GETs `url` (whose query may hold tokens) and reads the answer.
async fn get(http: &HttpClient, url: Url, step: Step) -> Result<Map<String, Value>, ConnectError> {
    let builder = http
        .inner()
        .get(url)
        .header(reqwest::header::ACCEPT, "application/json");
    let reply = http.send(builder).await.map_err(|e| step.failed(e))?;
    answers::read_object(&reply, step)
}

/// Meta's text could quote a token back: it never leaves with one.
fn hide(mut error: ConnectError, tokens: &[&SecretString]) -> ConnectError {
    let secrets: Vec<&str> = tokens.iter().map(|t| t.expose_secret()).collect();
    error.message = crate::scrub::scrub(&error.message, &secrets);
    error
}
