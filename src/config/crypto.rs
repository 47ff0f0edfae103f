//! `[crypto]`: the keyring that encrypts stored credentials.

use std::path::PathBuf;

use secrecy::SecretString;
use serde::{Deserialize, Serialize};

use super::ConfigError;

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct CryptoSettings {
    /// `id:base64key` entries separated by commas, newest first: the first
    /// encrypts, all decrypt.
    #[serde(skip_serializing)]
    pub keys: Option<SecretString>,
    pub keys_file: Option<PathBuf>,
}

impl CryptoSettings {
    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        if let Some(keys) = &self.keys {
            crate::crypto::Keyring::parse(keys).map_err(ConfigError::from)?;
        }
        Ok(())
    }
}
