//! One connector per platform family, built from configuration.

mod meta;

use std::collections::HashMap;
use std::sync::Arc;

use sqlx::PgPool;

use super::Connector;
use crate::config::Settings;
use crate::domain::Provider;
use crate::providers::HttpClient;

pub struct Built {
    pub connectors: HashMap<Provider, Arc<dyn Connector>>,
    pub missing: HashMap<Provider, String>,
}

pub fn build(settings: &Settings, http: &HttpClient, pool: &PgPool) -> Built {
    let _ = pool;
    let mut built = Built {
        connectors: HashMap::new(),
        missing: HashMap::new(),
    };
    for provider in Provider::ALL {
        let key = provider.config_key();
        let section = settings.providers.get(*provider);
        match meta::connector(*provider, section, http) {
            Some(Ok(connector)) => {
                built.connectors.insert(*provider, connector);
            }
            Some(Err(why)) => {
                built.missing.insert(*provider, why);
            }
            None => {
                built.missing.insert(
                    *provider,
                    format!("{provider} cannot be connected yet (providers.{key})"),
                );
            }
        }
    }
    built
}
