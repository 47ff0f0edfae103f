//! A registration body parsed into an `AccountSpec`, and serde's errors
//! turned into field errors that never repeat the input.

use super::redact::redact_values;
use super::{AccountSpec, InvalidField};

/// Why a registration body was refused.
#[derive(Debug, thiserror::Error)]
pub enum SpecError {
    /// Not JSON at all (or cut short): nothing names a field.
    #[error("not valid JSON: {0}")]
    Syntax(String),
    /// JSON, but a field is missing, unknown, of the wrong type or invalid.
    #[error(transparent)]
    Field(#[from] InvalidField),
}

/// Parses a registration body. Errors name the field serde stopped at and
/// never repeat a value from the input.
pub fn parse_spec(bytes: &[u8]) -> Result<AccountSpec, SpecError> {
    parse_json(bytes)
}

/// Parses any request body the way [`parse_spec`] parses a registration.
pub fn parse_json<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Result<T, SpecError> {
    let mut deserializer = serde_json::Deserializer::from_slice(bytes);
    let parsed: Result<T, _> = serde_path_to_error::deserialize(&mut deserializer);
    let spec = match parsed {
        Ok(spec) => spec,
        Err(error) => {
            let path = safe_path(error.path());
            let inner = error.into_inner();
            return Err(match inner.classify() {
                serde_json::error::Category::Data => {
                    SpecError::Field(field_error(&path, &inner.to_string()))
                }
                _ => SpecError::Syntax(redact_values(&inner.to_string())),
            });
        }
    };
    // Trailing garbage after the object.
    deserializer
        .end()
        .map_err(|e| SpecError::Syntax(redact_values(&e.to_string())))?;
    Ok(spec)
}

/// serde_path_to_error's path, with keys that are not plausible field names
/// replaced (a token pasted as a key is not repeated). Empty at the top.
pub fn safe_path(path: &serde_path_to_error::Path) -> String {
    use serde_path_to_error::Segment;
    let mut out = String::new();
    for segment in path.iter() {
        match segment {
            Segment::Seq { index } => out.push_str(&format!("[{index}]")),
            Segment::Map { key } => {
                if !out.is_empty() {
                    out.push('.');
                }
                if plausible_field_name(key) {
                    out.push_str(key);
                } else {
                    out.push_str("(unknown key)");
                }
            }
            Segment::Enum { .. } | Segment::Unknown => {}
        }
    }
    out
}

/// A serde data error as a field error: the path (see [`safe_path`]) and
/// serde's words about it with any quoted input left out. An unknown key is
/// named only when it looks like a field name (a token pasted as a key is
/// not repeated).
pub fn field_error(path: &str, message: &str) -> InvalidField {
    let parent = path;
    let join = |child: &str| {
        if parent.is_empty() {
            child.to_owned()
        } else {
            format!("{parent}.{child}")
        }
    };
    let quoted = |prefix: &str| {
        message
            .strip_prefix(prefix)
            .and_then(|rest| rest.split_once('`'))
            .map(|(name, _)| name.to_owned())
    };
    let named = |name: String| {
        if plausible_field_name(&name) {
            join(&name)
        } else {
            join("(unknown key)")
        }
    };
    let (field, problem) = if message.starts_with("unknown field `") {
        // The path already ends with the unknown key.
        let field = if parent.is_empty() {
            "(unknown key)"
        } else {
            parent
        };
        (field.to_owned(), redact_values(message))
    } else if let Some(name) = quoted("duplicate field `") {
        (named(name), "is given more than once".to_owned())
    } else if let Some(name) = quoted("missing field `") {
        (named(name), "is required".to_owned())
    } else if parent.is_empty() {
        ("body".to_owned(), redact_values(message))
    } else {
        (parent.to_owned(), redact_values(message))
    };
    InvalidField { field, problem }
}

pub(super) fn plausible_field_name(name: &str) -> bool {
    (1..=40).contains(&name.len()) && name.bytes().all(|b| b.is_ascii_lowercase() || b == b'_')
}
