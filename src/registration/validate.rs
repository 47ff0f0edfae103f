//! Validation of an `AccountSpec` into a `NewAccount`: bounded identifiers,
//! text and tokens, scopes, `meta`, and the credentials' expiries.

use chrono::{DateTime, TimeDelta, Utc};

use super::expiry::{MAX_LIFETIME_SECS, clamp_expiry, platform_expiry};
use super::parse::plausible_field_name;
use super::{AccountSpec, InvalidField, invalid};
use crate::domain::{AccessToken, ConnectionType, RefreshToken};
use crate::providers::DpopKey;
use crate::store::accounts::NewAccount;

const MAX_ID_CHARS: usize = 255;
const MAX_TEXT_CHARS: usize = 1024;
const MAX_URL_CHARS: usize = 2048;
const MAX_TOKEN_CHARS: usize = 16384;
const MAX_SCOPES: usize = 256;
/// `meta` is a flat-ish bag of platform extras: the object itself is level
/// 1, and arrays and objects may nest down to this level.
pub const MAX_META_DEPTH: usize = 3;

fn required(field: &str, value: &str) -> Result<String, InvalidField> {
    let trimmed = value.trim();
    if trimmed.is_empty() {
        Err(invalid(field, "must not be empty"))
    } else {
        identifier(field, trimmed, MAX_ID_CHARS)?;
        Ok(trimmed.to_owned())
    }
}

/// An identifier-like string: bounded, no control characters at all.
fn identifier(field: &str, value: &str, max_chars: usize) -> Result<(), InvalidField> {
    free_text(field, value, max_chars)?;
    if value.chars().any(char::is_control) {
        return Err(invalid(field, "must not contain control characters"));
    }
    Ok(())
}

/// Free text: bounded, no NUL (PostgreSQL text cannot hold one).
fn free_text(field: &str, value: &str, max_chars: usize) -> Result<(), InvalidField> {
    if value.chars().count() > max_chars {
        return Err(invalid(
            field,
            format!("must be at most {max_chars} characters"),
        ));
    }
    if value.contains('\0') {
        return Err(invalid(field, "must not contain a NUL character"));
    }
    Ok(())
}

/// A token: trimmed, bounded, no whitespace or control characters inside
/// (it goes into HTTP headers and form bodies).
fn token(field: &str, value: &str) -> Result<String, InvalidField> {
    let trimmed = value.trim();
    if trimmed.chars().count() > MAX_TOKEN_CHARS {
        return Err(invalid(
            field,
            format!("must be at most {MAX_TOKEN_CHARS} characters"),
        ));
    }
    if trimmed.chars().any(|c| c.is_control() || c.is_whitespace()) {
        return Err(invalid(
            field,
            "must not contain whitespace or control characters",
        ));
    }
    Ok(trimmed.to_owned())
}

/// jsonb refuses `\u0000` in any string, keys included; the walk names the
/// path (keys that are not plausible names are not repeated) and bounds
/// the nesting (`depth` is the level of `value`).
fn check_meta(path: &str, value: &serde_json::Value, depth: usize) -> Result<(), InvalidField> {
    if (value.is_array() || value.is_object()) && depth > MAX_META_DEPTH {
        return Err(invalid(
            path,
            format!("meta may nest arrays and objects at most {MAX_META_DEPTH} levels deep"),
        ));
    }
    match value {
        serde_json::Value::String(s) if s.contains('\0') => {
            Err(invalid(path, "must not contain a NUL character"))
        }
        serde_json::Value::Array(items) => items
            .iter()
            .enumerate()
            .try_for_each(|(i, item)| check_meta(&format!("{path}[{i}]"), item, depth + 1)),
        serde_json::Value::Object(members) => members.iter().try_for_each(|(key, item)| {
            if key.contains('\0') {
                return Err(invalid(path, "a key must not contain a NUL character"));
            }
            let child = if plausible_field_name(key) {
                format!("{path}.{key}")
            } else {
                format!("{path}.(key)")
            };
            check_meta(&child, item, depth + 1)
        }),
        _ => Ok(()),
    }
}

impl AccountSpec {
    pub fn into_new_account(self, now: DateTime<Utc>) -> Result<NewAccount, InvalidField> {
        let credentials = self.credentials;
        let workspace_id = required("workspace_id", &self.workspace_id)?;
        let external_id = required("external_id", &self.external_id)?;
        if let Some(handle) = &self.handle {
            identifier("handle", handle, MAX_ID_CHARS)?;
        }
        if let Some(name) = &self.display_name {
            free_text("display_name", name, MAX_TEXT_CHARS)?;
        }
        if let Some(board) = &self.default_board_id {
            identifier("default_board_id", board, MAX_ID_CHARS)?;
        }
        if let Some(url) = &self.avatar_url {
            free_text("avatar_url", url, MAX_URL_CHARS)?;
            if url::Url::parse(url).is_err() {
                return Err(invalid("avatar_url", "is not a valid URL"));
            }
        }
        if self.scopes.len() > MAX_SCOPES {
            return Err(invalid("scopes", format!("at most {MAX_SCOPES} scopes")));
        }
        for (i, scope) in self.scopes.iter().enumerate() {
            let field = format!("scopes[{i}]");
            if scope.is_empty() || scope.chars().any(char::is_whitespace) {
                return Err(invalid(&field, "must be a non-empty word without spaces"));
            }
            identifier(&field, scope, MAX_ID_CHARS)?;
        }
        let access_token = token("credentials.access_token", &credentials.access_token)?;
        if access_token.is_empty() {
            return Err(invalid("credentials.access_token", "must not be empty"));
        }
        let refresh_token = credentials
            .refresh_token
            .as_deref()
            .map(|rt| token("credentials.refresh_token", rt))
            .transpose()?
            .filter(|rt| !rt.is_empty());
        let token_expires_at = match (credentials.expires_in, credentials.token_expires_at) {
            (Some(_), Some(_)) => {
                return Err(invalid(
                    "credentials.expires_in",
                    "give expires_in or token_expires_at, not both",
                ));
            }
            (Some(seconds), None) => {
                if !(1..=MAX_LIFETIME_SECS).contains(&seconds) {
                    return Err(invalid(
                        "credentials.expires_in",
                        format!("must be between 1 and {MAX_LIFETIME_SECS} seconds (ten years)"),
                    ));
                }
                let at = TimeDelta::try_seconds(seconds)
                    .and_then(|lifetime| now.checked_add_signed(lifetime))
                    .ok_or_else(|| invalid("credentials.expires_in", "is out of range"))?;
                Some(at)
            }
            (None, at) => at.map(|at| clamp_expiry(at, now)),
        };
        let (token_expires_at, refresh_token_expires_at) = platform_expiry(
            self.provider,
            &credentials,
            token_expires_at,
            credentials.refresh_token_expires_at,
        )?;
        // Dates read from a platform's JWT are as untrusted as the request's.
        let token_expires_at = token_expires_at.map(|at| clamp_expiry(at, now));
        let refresh_token_expires_at = refresh_token_expires_at.map(|at| clamp_expiry(at, now));
        let meta = self.meta.unwrap_or_else(|| serde_json::json!({}));
        if !meta.is_object() {
            return Err(invalid("meta", "must be a JSON object"));
        }
        check_meta("meta", &meta, 1)?;
        let dpop_key = credentials
            .dpop_private_jwk
            .as_deref()
            .map(DpopKey::from_jwk)
            .transpose()
            .map_err(|e| invalid("credentials.dpop_private_jwk", e.to_string()))?;
        Ok(NewAccount {
            workspace_id,
            provider: self.provider,
            external_id,
            handle: self.handle,
            display_name: self.display_name,
            avatar_url: self.avatar_url,
            connection_type: self.connection_type.unwrap_or(ConnectionType::Oauth),
            granted_scopes: self.scopes,
            meta,
            default_board_id: self.default_board_id,
            access_token: AccessToken::new(access_token),
            refresh_token: refresh_token.map(RefreshToken::new),
            token_issued_at: now,
            token_expires_at,
            refresh_token_expires_at,
            dpop_key,
        })
    }
}
