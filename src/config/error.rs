//! The one error type of configuration: a layer that does not load, or a
//! key that breaks a rule.

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// Each problem with its key, lowercased as in the files, and the layer
    /// it came from.
    #[error("{0}")]
    Load(String),
    #[error("configuration key `{key}`: {problem}")]
    Invalid { key: String, problem: String },
}

impl From<figment::Error> for ConfigError {
    fn from(error: figment::Error) -> Self {
        let problems: Vec<String> = error
            .into_iter()
            .map(|e| {
                let key = e.path.join(".").to_ascii_lowercase();
                let origin = match &e.metadata {
                    Some(m) => match &m.source {
                        Some(figment::Source::File(path)) => format!(" (from {})", path.display()),
                        _ => format!(" (from {})", m.name),
                    },
                    None => String::new(),
                };
                if key.is_empty() {
                    format!("configuration: {}{origin}", e.kind)
                } else {
                    format!("configuration key `{key}`: {}{origin}", e.kind)
                }
            })
            .collect();
        ConfigError::Load(problems.join("; "))
    }
}

impl From<crate::crypto::CryptoError> for ConfigError {
    fn from(error: crate::crypto::CryptoError) -> Self {
        match error {
            crate::crypto::CryptoError::BadKeys(problem) => {
                ConfigError::invalid("crypto.keys", problem)
            }
            other => ConfigError::invalid("crypto.keys", other.to_string()),
        }
    }
}

impl ConfigError {
    pub fn invalid(key: impl Into<String>, problem: impl Into<String>) -> Self {
        ConfigError::Invalid {
            key: key.into(),
            problem: problem.into(),
        }
    }
}
