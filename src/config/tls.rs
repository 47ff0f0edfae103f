//! Certificates and keys for TLS to PostgreSQL and Redis: PEM text given
//! inline or as a `_file` path, checked at load so a wrong file is named at
//! start-up rather than at the first connection.

use secrecy::{ExposeSecret, SecretString};

use super::ConfigError;

/// PEM certificates (a CA bundle or a client certificate chain): at least one
/// `CERTIFICATE` block.
pub(super) fn check_certificates(key: &str, pem: Option<&str>) -> Result<(), ConfigError> {
    let Some(pem) = pem else { return Ok(()) };
    if !pem.contains("-----BEGIN CERTIFICATE-----") {
        return Err(ConfigError::invalid(
            key,
            "holds no PEM certificate (expected a -----BEGIN CERTIFICATE----- block)",
        ));
    }
    Ok(())
}

/// A PEM private key. The error never repeats the value.
pub(super) fn check_private_key(key: &str, pem: Option<&SecretString>) -> Result<(), ConfigError> {
    let Some(pem) = pem else { return Ok(()) };
    let pem = pem.expose_secret();
    let is_key = pem.lines().any(|line| {
        let line = line.trim();
        line.starts_with("-----BEGIN ") && line.ends_with("PRIVATE KEY-----")
    });
    if !is_key {
        return Err(ConfigError::invalid(
            key,
            "holds no PEM private key (expected a -----BEGIN ... PRIVATE KEY----- block)",
        ));
    }
    Ok(())
}

/// A client certificate is useless without its key and the other way round.
pub(super) fn check_client_pair(
    cert_key: &str,
    cert: bool,
    key_key: &str,
    key: bool,
) -> Result<(), ConfigError> {
    match (cert, key) {
        (true, false) => Err(ConfigError::invalid(
            key_key,
            format!("is required when {cert_key} is set (or {key_key}_file)"),
        )),
        (false, true) => Err(ConfigError::invalid(
            cert_key,
            format!("is required when {key_key} is set (or {cert_key}_file)"),
        )),
        _ => Ok(()),
    }
}
