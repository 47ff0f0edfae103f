//! What a connect request may hold: the checks of `POST /v1/connect`'s
//! fields and of a choice, each naming the field and never echoing it.

use url::Url;

use super::{ChoiceOption, ConnectError};
use crate::config::ConnectSettings;

const MAX_TEXT: usize = 255;
const MAX_URL: usize = 2048;
const MAX_SCOPES: usize = 64;
/// `extras` holds a handle, an instance, some ids: small and shallow.
const MAX_EXTRAS_BYTES: usize = 16 * 1024;
const MAX_EXTRAS_DEPTH: usize = 4;
/// What the callback adds to `redirect_after`'s query.
const RESULT_KEYS: [&str; 5] = [
    "account_id",
    "error",
    "error_description",
    "selection_required",
    "state",
];

pub(super) fn redirect_target(settings: &ConnectSettings, raw: &str) -> Result<Url, ConnectError> {
    if raw.len() > MAX_URL {
        return Err(ConnectError::invalid_request(format!(
            "redirect_after: longer than {MAX_URL} characters"
        )));
    }
    let url = Url::parse(raw)
        .map_err(|_| ConnectError::invalid_request("redirect_after: not an absolute URL"))?;
    if url.fragment().is_some() {
        return Err(ConnectError::invalid_request(
            "redirect_after: must have no fragment (the result is added to its query)",
        ));
    }
    if let Some((key, _)) = url
        .query_pairs()
        .find(|(key, _)| RESULT_KEYS.contains(&key.as_ref()))
    {
        return Err(ConnectError::invalid_request(format!(
            "redirect_after: its query must not name {key}: the flow adds it, and two would be read as one"
        )));
    }
    if !settings.redirect_allowed(&url) {
        return Err(ConnectError::redirect_not_allowed());
    }
    Ok(url)
}

/// `selected` names 1 to 100 of the stored choice's options.
pub(super) fn check_selection(
    selected: &[String],
    choice: &serde_json::Value,
) -> Result<(), ConnectError> {
    if selected.is_empty() || selected.len() > 100 {
        return Err(ConnectError::invalid_request(
            "ids: choose 1 to 100 of the options",
        ));
    }
    let options: Vec<ChoiceOption> =
        serde_json::from_value(choice["options"].clone()).unwrap_or_default();
    if let Some(unknown) = selected
        .iter()
        .find(|id| !options.iter().any(|o| &o.id == *id))
    {
        return Err(ConnectError::invalid_request(format!(
            "ids: {:?} is not one of the options",
            unknown.chars().take(64).collect::<String>()
        )));
    }
    Ok(())
}

pub(super) fn checked_text(field: &str, value: &str) -> Result<String, ConnectError> {
    let value = value.trim();
    if value.is_empty() || value.chars().count() > MAX_TEXT || value.chars().any(char::is_control) {
        return Err(ConnectError::invalid_request(format!(
            "{field}: 1 to {MAX_TEXT} characters without control characters"
        )));
    }
    Ok(value.to_owned())
}

/// `extras` as PostgreSQL can keep it (no NUL anywhere), small and shallow.
pub(super) fn checked_extras(extras: serde_json::Value) -> Result<serde_json::Value, ConnectError> {
    fn sound(value: &serde_json::Value, depth: usize) -> bool {
        use serde_json::Value::*;
        match value {
            String(text) => !text.contains('\0'),
            Array(items) => depth < MAX_EXTRAS_DEPTH && items.iter().all(|v| sound(v, depth + 1)),
            Object(members) => {
                depth < MAX_EXTRAS_DEPTH
                    && members
                        .iter()
                        .all(|(key, v)| !key.contains('\0') && sound(v, depth + 1))
            }
            _ => true,
        }
    }
    if extras.to_string().len() > MAX_EXTRAS_BYTES || !sound(&extras, 0) {
        return Err(ConnectError::invalid_request(format!(
            "extras: a JSON object of at most {MAX_EXTRAS_BYTES} bytes, nested at most {MAX_EXTRAS_DEPTH} deep, without NUL characters"
        )));
    }
    Ok(extras)
}

pub(super) fn checked_scopes(scopes: Vec<String>) -> Result<Vec<String>, ConnectError> {
    if scopes.is_empty() || scopes.len() > MAX_SCOPES {
        return Err(ConnectError::invalid_request(format!(
            "scopes: give 1 to {MAX_SCOPES}, or leave it out for the platform's connect_scopes"
        )));
    }
    for scope in &scopes {
        if scope.is_empty()
            || scope.chars().count() > MAX_TEXT
            || scope
                .chars()
                .any(|c| c.is_whitespace() || c.is_control() || c == ',')
        {
            return Err(ConnectError::invalid_request(
                "scopes: each is 1 to 255 characters without spaces, commas or control characters",
            ));
        }
    }
    Ok(scopes)
}
