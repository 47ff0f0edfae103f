//! Secrets given inline or as a `<key>_file` path: which keys those are, the
//! refusal of both at once, and the reading of the files.

use std::path::PathBuf;

use figment::Figment;
use secrecy::{ExposeSecret, SecretString};

use super::load::DEFAULTS_NAME;
use super::{ConfigError, Settings};
use crate::domain::Provider;

impl Settings {
    /// Every key that can come inline or from a `_file` (secrets and
    /// certificates).
    fn secret_keys() -> Vec<String> {
        let mut keys: Vec<String> = [
            "database.url",
            "crypto.keys",
            "redis.url",
            "api.keys",
            "console.operator_keys",
            "webhooks.secret",
            "database.ssl_client_key",
            "redis.tls_client_key",
            // Not secret, but given inline or as a file the same way.
            "database.ssl_root_cert",
            "database.ssl_client_cert",
            "redis.tls_ca_cert",
            "redis.tls_client_cert",
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
    pub(super) fn refuse_secrets_given_twice(&self, figment: &Figment) -> Result<(), ConfigError> {
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

    pub(super) fn read_secret_files(&mut self) -> Result<(), ConfigError> {
        resolve_secret_file(
            "database.url",
            &mut self.database.url,
            &self.database.url_file,
        )?;
        resolve_secret_file("crypto.keys", &mut self.crypto.keys, &self.crypto.keys_file)?;
        resolve_secret_file("redis.url", &mut self.redis.url, &self.redis.url_file)?;
        resolve_secret_file("api.keys", &mut self.api.keys, &self.api.keys_file)?;
        resolve_secret_file(
            "console.operator_keys",
            &mut self.console.operator_keys,
            &self.console.operator_keys_file,
        )?;
        resolve_secret_file(
            "database.ssl_client_key",
            &mut self.database.ssl_client_key,
            &self.database.ssl_client_key_file,
        )?;
        resolve_secret_file(
            "redis.tls_client_key",
            &mut self.redis.tls_client_key,
            &self.redis.tls_client_key_file,
        )?;
        resolve_text_file(
            "database.ssl_root_cert",
            &mut self.database.ssl_root_cert,
            &self.database.ssl_root_cert_file,
        )?;
        resolve_text_file(
            "database.ssl_client_cert",
            &mut self.database.ssl_client_cert,
            &self.database.ssl_client_cert_file,
        )?;
        resolve_text_file(
            "redis.tls_ca_cert",
            &mut self.redis.tls_ca_cert,
            &self.redis.tls_ca_cert_file,
        )?;
        resolve_text_file(
            "redis.tls_client_cert",
            &mut self.redis.tls_client_cert,
            &self.redis.tls_client_cert_file,
        )?;
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
}

/// The configured API keys, trimmed, empty entries dropped.
pub fn api_keys(keys: &SecretString) -> Vec<&str> {
    keys.expose_secret()
        .split(',')
        .map(str::trim)
        .filter(|k| !k.is_empty())
        .collect()
}

/// Fills a plain value (a certificate) from its `_file` the same way.
fn resolve_text_file(
    key: &str,
    value: &mut Option<String>,
    file: &Option<PathBuf>,
) -> Result<(), ConfigError> {
    let mut read = None;
    resolve_secret_file(key, &mut read, file)?;
    if let Some(read) = read {
        *value = Some(read.expose_secret().to_owned());
    }
    Ok(())
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
