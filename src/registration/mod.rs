//! The shape in which an account is registered (CLI JSON file and the HTTP
//! API), its parsing and its validation into a `NewAccount`. Everything here
//! reads untrusted input: errors name the field, never repeat the value (a
//! token pasted into the wrong field must not be echoed), and nothing panics.
//!
//! `spec` is the wire shape, `parse` reads a body into it, `validate` turns
//! it into a `NewAccount` (with `expiry` for the platforms' expiry rules),
//! and `redact` keeps values out of serde's messages.

mod expiry;
mod parse;
mod redact;
mod spec;
mod validate;

#[cfg(test)]
mod tests;

pub use expiry::{MAX_EXPIRY_DISTANCE, MAX_LIFETIME_SECS};
pub use parse::{SpecError, field_error, parse_json, parse_spec, safe_path};
pub use redact::redact_values;
pub use spec::{AccountSpec, CredentialsSpec, ScopeName};
pub use validate::MAX_META_DEPTH;

#[derive(Debug, thiserror::Error)]
#[error("{field}: {problem}")]
pub struct InvalidField {
    /// The JSON path of the field (`credentials.expires_in`, `meta.page_id`).
    pub field: String,
    pub problem: String,
}

fn invalid(field: &str, problem: impl Into<String>) -> InvalidField {
    InvalidField {
        field: field.to_owned(),
        problem: problem.into(),
    }
}
