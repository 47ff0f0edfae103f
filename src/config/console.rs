//! `[console]`: the operator console served by the `api` role: where it is
//! mounted, who may sign in, and how its session cookie is set.

use std::path::PathBuf;
use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};

use super::ConfigError;

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct ConsoleSettings {
    /// Serve the console at all. Without `operator_keys` it is not served
    /// either (nobody could sign in).
    pub enabled: bool,
    /// The path the console lives under, such as `/console`.
    pub path: String,
    /// Operator keys, comma-separated, each `id:key` (the id, 1 to 32 of
    /// `a-z 0-9 _ . -`, is what the audit trail records; the key is at
    /// least 16 characters). Separate from `api.keys`. Secret.
    #[serde(skip_serializing)]
    pub operator_keys: Option<SecretString>,
    pub operator_keys_file: Option<PathBuf>,
    /// Set the session cookie's `Secure` attribute; turn off only for a
    /// console reached over plain HTTP on loopback.
    pub cookie_secure: bool,
    /// How long a sign-in lasts.
    #[serde(with = "humantime_serde")]
    pub session_ttl: Duration,
}

impl Default for ConsoleSettings {
    fn default() -> Self {
        Self {
            enabled: true,
            path: "/console".to_owned(),
            operator_keys: None,
            operator_keys_file: None,
            cookie_secure: true,
            session_ttl: Duration::from_secs(8 * 3600),
        }
    }
}

/// One configured operator key: its id (recorded in the audit trail) and
/// the key itself.
pub struct OperatorKey<'a> {
    pub id: &'a str,
    pub key: &'a str,
}

/// The configured operator keys, or what is wrong with them (never quoting
/// a key).
pub fn operator_keys(keys: &SecretString) -> Result<Vec<OperatorKey<'_>>, String> {
    let mut parsed: Vec<OperatorKey<'_>> = Vec::new();
    for (n, entry) in keys
        .expose_secret()
        .split(',')
        .map(str::trim)
        .filter(|e| !e.is_empty())
        .enumerate()
    {
        let position = n + 1;
        let Some((id, key)) = entry.split_once(':') else {
            return Err(format!("entry {position} is not of the form id:key"));
        };
        let (id, key) = (id.trim(), key.trim());
        if id.is_empty()
            || id.len() > 32
            || !id
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"_.-".contains(&b))
        {
            return Err(format!(
                "entry {position}: the id must be 1 to 32 of a-z, 0-9, _ . -"
            ));
        }
        if key.chars().count() < 16 {
            return Err(format!(
                "entry {position} (id {id}): the key must be at least 16 characters"
            ));
        }
        if parsed.iter().any(|k| k.id == id) {
            return Err(format!("the id {id} is given twice"));
        }
        parsed.push(OperatorKey { id, key });
    }
    if parsed.is_empty() {
        return Err("holds no key".to_owned());
    }
    Ok(parsed)
}

impl ConsoleSettings {
    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        let path = &self.path;
        let segments_ok = path.strip_prefix('/').is_some_and(|rest| {
            !rest.is_empty()
                && !rest.ends_with('/')
                && rest.split('/').all(|s| {
                    !s.is_empty()
                        && s.bytes()
                            .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
                        && s != "."
                        && s != ".."
                })
        });
        if !segments_ok {
            return Err(ConfigError::invalid(
                "console.path",
                format!(
                    "{path:?} is not a path like /console (letters, digits, - _ .; no trailing /)"
                ),
            ));
        }
        if path == "/v1" || path.starts_with("/v1/") {
            return Err(ConfigError::invalid(
                "console.path",
                "must not lie under /v1, which belongs to the API",
            ));
        }
        if let Some(keys) = &self.operator_keys {
            operator_keys(keys)
                .map_err(|problem| ConfigError::invalid("console.operator_keys", problem))?;
        }
        if self.session_ttl < Duration::from_secs(60)
            || self.session_ttl > Duration::from_secs(7 * 86_400)
        {
            return Err(ConfigError::invalid(
                "console.session_ttl",
                "must be between 1m and 7d",
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn keys(text: &str) -> Result<Vec<(String, String)>, String> {
        let secret = SecretString::from(text.to_owned());
        operator_keys(&secret).map(|k| {
            k.into_iter()
                .map(|k| (k.id.to_owned(), k.key.to_owned()))
                .collect()
        })
    }

    #[test]
    fn operator_keys_are_id_and_key_pairs() {
        assert_eq!(
            keys(" alice:0123456789abcdef , bob.s:fedcba9876543210:x ").unwrap(),
            [
                ("alice".to_owned(), "0123456789abcdef".to_owned()),
                ("bob.s".to_owned(), "fedcba9876543210:x".to_owned())
            ]
        );
        for (text, problem) in [
            ("", "holds no key"),
            ("0123456789abcdef", "not of the form id:key"),
            ("Alice:0123456789abcdef", "the id must be"),
            ("a:short", "at least 16"),
            ("a:0123456789abcdef,a:0123456789abcdeg", "given twice"),
        ] {
            let error = keys(text).unwrap_err();
            assert!(error.contains(problem), "{text:?}: {error}");
        }
    }

    proptest! {
        /// Whatever is configured: no panic, and a refusal never quotes a key.
        #[test]
        fn refusals_never_quote_a_key(text in ".{0,120}") {
            if let Err(problem) = keys(&text) {
                for entry in text.split(',') {
                    if let Some((_, key)) = entry.split_once(':') {
                        let key = key.trim();
                        if key.len() >= 6 {
                            prop_assert!(!problem.contains(key), "{problem}");
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn paths() {
        let with = |path: &str| ConsoleSettings {
            path: path.to_owned(),
            ..ConsoleSettings::default()
        };
        for ok in ["/console", "/ops/console", "/a-b_c.d"] {
            assert!(with(ok).validate().is_ok(), "{ok}");
        }
        for bad in [
            "",
            "/",
            "console",
            "/console/",
            "/a//b",
            "/v1",
            "/v1/x",
            "/a b",
            "/..",
            "/a/../b",
        ] {
            assert!(with(bad).validate().is_err(), "{bad}");
        }
    }
}
