//! One connector per platform family, built from configuration.

pub mod bluesky;
mod mastodon;
mod meta;
mod oauth2;

use std::collections::HashMap;
use std::sync::Arc;

use super::Connector;
use crate::config::{Flow, Settings};
use crate::domain::Provider;
use crate::engine::Engine;
use crate::providers::HttpClient;

pub struct Built {
    pub connectors: HashMap<Provider, Arc<dyn Connector>>,
    pub missing: HashMap<Provider, String>,
}

pub fn build(settings: &Settings, http: &HttpClient, engine: &Engine) -> Built {
    let mut built = Built {
        connectors: HashMap::new(),
        missing: HashMap::new(),
    };
    for provider in Provider::ALL {
        let key = provider.config_key();
        let section = settings.providers.get(*provider);
        let connector: Result<Arc<dyn Connector>, String> = match provider {
            Provider::Mastodon if section.flow == Flow::Mastodon => {
                mastodon::MastodonConnector::new(settings, engine)
                    .map(|c| Arc::new(c) as Arc<dyn Connector>)
                    .map_err(|e| format!("{provider} cannot be connected: its HTTP client: {e}"))
            }
            Provider::X
            | Provider::LinkedinPerson
            | Provider::LinkedinCompany
            | Provider::Youtube
            | Provider::Pinterest
            | Provider::TiktokBusiness
            | Provider::TiktokPersonal => {
                oauth2::OAuth2Connector::from_settings(*provider, section, http.clone())
                    .map(|c| Arc::new(c) as Arc<dyn Connector>)
            }
            Provider::Bluesky => bluesky::BlueskyConnector::from_settings(settings, http)
                .map(|c| Arc::new(c) as Arc<dyn Connector>),
            Provider::FacebookPage
            | Provider::InstagramFacebookLogin
            | Provider::InstagramLogin
            | Provider::Threads => meta::connector(*provider, section, http),
            _ => Err(format!(
                "{provider} cannot be connected yet (providers.{key})"
            )),
        };
        match connector {
            Ok(connector) => {
                built.connectors.insert(*provider, connector);
            }
            Err(why) => {
                built.missing.insert(*provider, why);
            }
        }
    }
    built
}
