//! The layers, bottom to top: built-in defaults, an optional `--config FILE`,
//! then `TOKENWARDEN__SECTION__KEY` variables; then secrets from files and
//! validation.

use std::path::Path;

use figment::Figment;
use figment::providers::{Env, Format, Toml};

use super::{ConfigError, Settings};

pub const DEFAULT_TOML: &str = include_str!("../../config/default.toml");
pub const ENV_PREFIX: &str = "TOKENWARDEN__";

/// The name the built-in defaults carry in the layered configuration, so a
/// value can be told apart from one an operator gave.
pub(super) const DEFAULTS_NAME: &str = "built-in defaults";

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
        // The refresh flow reads the section alone: it gets the derived id.
        settings.providers.bluesky.client_id = settings.bluesky_client_id();
        settings.validate()?;
        Ok(settings)
    }
}
