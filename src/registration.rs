//! The shape in which an account is registered (CLI JSON file and the HTTP
//! API), its parsing and its validation into a `NewAccount`. Everything here
//! reads untrusted input: errors name the field, never repeat the value (a
//! token pasted into the wrong field must not be echoed), and nothing panics.

use chrono::{DateTime, TimeDelta, Utc};
use serde::Deserialize;

use crate::domain::{AccessToken, ConnectionType, Provider, RefreshToken};
use crate::providers::DpopKey;
use crate::store::accounts::NewAccount;

/// An account to register, or to reconnect (same workspace, provider and
/// external id): its profile and its credentials.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AccountSpec {
    /// Leading and trailing spaces are dropped; no control characters.
    #[schema(
        min_length = 1,
        max_length = 255,
        pattern = r"^[^\x00-\x1f\x7f-\x9f]*[^\s\x00-\x1f\x7f-\x9f][^\x00-\x1f\x7f-\x9f]*$"
    )]
    pub workspace_id: String,
    pub provider: Provider,
    /// Leading and trailing spaces are dropped; no control characters.
    #[schema(
        min_length = 1,
        max_length = 255,
        pattern = r"^[^\x00-\x1f\x7f-\x9f]*[^\s\x00-\x1f\x7f-\x9f][^\x00-\x1f\x7f-\x9f]*$"
    )]
    pub external_id: String,
    /// No control characters.
    #[schema(max_length = 255, pattern = r"^[^\x00-\x1f\x7f-\x9f]*$")]
    pub handle: Option<String>,
    /// No NUL character.
    #[schema(max_length = 1024, pattern = r"^[^\x00]*$")]
    pub display_name: Option<String>,
    /// An absolute URL.
    #[schema(max_length = 2048, format = "uri")]
    pub avatar_url: Option<String>,
    #[serde(default)]
    pub connection_type: Option<ConnectionType>,
    /// At most 256 scopes, each 1 to 255 characters without spaces or
    /// control characters.
    #[serde(default)]
    #[schema(max_items = 256, value_type = Vec<ScopeName>)]
    pub scopes: Vec<String>,
    /// Platform extras as a JSON object: `page_id`, `instance_host`
    /// (Mastodon), `pds_host` (Bluesky), ... No string in it (key or value)
    /// may hold a NUL character.
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub meta: Option<serde_json::Value>,
    /// No control characters.
    #[schema(max_length = 255, pattern = r"^[^\x00-\x1f\x7f-\x9f]*$")]
    pub default_board_id: Option<String>,
    pub credentials: CredentialsSpec,
}

/// One granted scope.
#[derive(utoipa::ToSchema)]
#[schema(
    min_length = 1,
    max_length = 255,
    pattern = r"^[^\s\x00-\x1f\x7f-\x9f]+$"
)]
#[expect(dead_code, reason = "only a schema: scopes are plain strings")]
pub struct ScopeName(String);

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CredentialsSpec {
    /// No whitespace or control characters.
    #[schema(
        min_length = 1,
        max_length = 16384,
        pattern = r"^\s*[^\s\x00-\x1f\x7f-\x9f]+\s*$"
    )]
    pub access_token: String,
    /// No whitespace or control characters; empty means none.
    #[schema(max_length = 16384, pattern = r"^\s*[^\s\x00-\x1f\x7f-\x9f]*\s*$")]
    pub refresh_token: Option<String>,
    /// Seconds from now, 1 to 315576000 (ten years); or give
    /// `token_expires_at`, not both.
    #[schema(minimum = 1, maximum = 315_576_000)]
    #[serde(default, deserialize_with = "whole_seconds")]
    pub expires_in: Option<i64>,
    /// A date more than ten years from now (either way) is taken as ten
    /// years from now.
    pub token_expires_at: Option<DateTime<Utc>>,
    /// A date more than ten years from now (either way) is taken as ten
    /// years from now.
    pub refresh_token_expires_at: Option<DateTime<Utc>>,
    /// atproto OAuth: the ES256 private JWK the session's tokens are bound
    /// to. Without one, a key is generated for such an account.
    #[schema(max_length = 16384)]
    pub dpop_private_jwk: Option<String>,
}

/// A lifetime in whole seconds: JSON has one number type, so `3600.0` is
/// the integer 3600 (as JSON Schema reads it); a fraction is refused.
fn whole_seconds<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<i64>, D::Error> {
    let Some(number) = Option::<serde_json::Number>::deserialize(d)? else {
        return Ok(None);
    };
    if let Some(n) = number.as_i64() {
        return Ok(Some(n));
    }
    match number.as_f64() {
        // Out-of-range values are kept as the extreme of their sign, so
        // the range check names them like any other.
        Some(f) if f.fract() == 0.0 && f.is_finite() => {
            Ok(Some(if f < 0.0 { i64::MIN } else { i64::MAX })
                .map(|extreme| if f.abs() < 9.0e18 { f as i64 } else { extreme }))
        }
        _ => Err(serde::de::Error::custom(
            "expected a whole number of seconds",
        )),
    }
}

impl std::fmt::Debug for CredentialsSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CredentialsSpec")
            .field("access_token", &"[redacted]")
            .field(
                "refresh_token",
                &self.refresh_token.as_ref().map(|_| "[redacted]"),
            )
            .field("expires_in", &self.expires_in)
            .field("token_expires_at", &self.token_expires_at)
            .field(
                "dpop_private_jwk",
                &self.dpop_private_jwk.as_ref().map(|_| "[redacted]"),
            )
            .finish()
    }
}

/// The longest access-token lifetime a registration may state: ten years.
pub const MAX_LIFETIME_SECS: i64 = 315_576_000;
/// Expiry dates further than this from now (either way) are refused.
pub const MAX_EXPIRY_DISTANCE: TimeDelta = TimeDelta::seconds(MAX_LIFETIME_SECS);
const MAX_ID_CHARS: usize = 255;
const MAX_TEXT_CHARS: usize = 1024;
const MAX_URL_CHARS: usize = 2048;
const MAX_TOKEN_CHARS: usize = 16384;
const MAX_SCOPES: usize = 256;
/// `meta` is a flat-ish bag of platform extras: the object itself is level
/// 1, and arrays and objects may nest down to this level.
pub const MAX_META_DEPTH: usize = 3;

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
    let mut deserializer = serde_json::Deserializer::from_slice(bytes);
    let parsed: Result<AccountSpec, _> = serde_path_to_error::deserialize(&mut deserializer);
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

fn plausible_field_name(name: &str) -> bool {
    (1..=40).contains(&name.len()) && name.bytes().all(|b| b.is_ascii_lowercase() || b == b'_')
}

/// serde quotes the offending value (`invalid type: string "..."`,
/// ``unknown variant `...` ``); that value may be a token put in the wrong
/// place. Keeps what was expected, drops what was given: quoted runs before
/// the word "expected" (outside quotes) become `…`.
pub fn redact_values(message: &str) -> String {
    let mut out = String::with_capacity(message.len());
    let mut closing: Option<char> = None;
    let mut escaped = false;
    for (at, c) in message.char_indices() {
        match closing {
            // Debug-quoted strings escape their quotes.
            Some('"') if escaped => escaped = false,
            Some('"') if c == '\\' => escaped = true,
            // serde does not escape backticks: the closing one is the one
            // that ends the phrase.
            Some('`') if c == '`' && closes_backtick(&message[at + 1..]) => {
                out.push(c);
                closing = None;
            }
            Some(end) if end == c && end == '"' => {
                out.push(c);
                closing = None;
            }
            Some(_) => {}
            None if message[at..].starts_with("expected") => {
                out.push_str(&message[at..]);
                return out;
            }
            None if c == '"' || c == '`' => {
                out.push(c);
                out.push('…');
                closing = Some(c);
            }
            None => out.push(c),
        }
    }
    if let Some(end) = closing {
        out.push(end);
    }
    out
}

fn closes_backtick(rest: &str) -> bool {
    rest.is_empty() || rest.starts_with(',') || rest.starts_with(" at line")
}

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

/// A stated expiry, brought within ten years of `now` either way: further
/// out behaves the same for every plan the daemon makes, and keeps all
/// later date arithmetic far from chrono's and PostgreSQL's limits.
fn clamp_expiry(at: DateTime<Utc>, now: DateTime<Utc>) -> DateTime<Utc> {
    match (
        now.checked_sub_signed(MAX_EXPIRY_DISTANCE),
        now.checked_add_signed(MAX_EXPIRY_DISTANCE),
    ) {
        (Some(earliest), Some(latest)) => at.clamp(earliest, latest),
        _ => now,
    }
}

/// The access and refresh tokens' expiries.
type Expiries = (Option<DateTime<Utc>>, Option<DateTime<Utc>>);

/// The platforms' own rules for a registration's expiries (see
/// docs/platform-answers.md): a Mastodon token has none, and a Bluesky
/// session's is in its JWTs when the API tier does not give it.
fn platform_expiry(
    provider: Provider,
    credentials: &CredentialsSpec,
    token_expires_at: Option<DateTime<Utc>>,
    refresh_token_expires_at: Option<DateTime<Utc>>,
) -> Result<Expiries, InvalidField> {
    let from_jwt = |jwt: &str| {
        crate::providers::jwt_exp(jwt)
            .ok()
            .and_then(|exp| DateTime::from_timestamp(exp, 0))
    };
    match provider {
        Provider::Mastodon if token_expires_at.is_some() => {
            let field = if credentials.expires_in.is_some() {
                "credentials.expires_in"
            } else {
                "credentials.token_expires_at"
            };
            Err(invalid(
                field,
                "Mastodon tokens do not expire; register the account without an expiry \
                 (servers that issue expiring tokens, such as Pleroma, are not supported)",
            ))
        }
        Provider::Bluesky => {
            let access = match token_expires_at {
                Some(at) => at,
                None => from_jwt(&credentials.access_token).ok_or_else(|| {
                    invalid(
                        "credentials.expires_in",
                        "a Bluesky session needs its expiry: give expires_in or token_expires_at, \
                         or an access token that is a JWT with an exp claim",
                    )
                })?,
            };
            let refresh = refresh_token_expires_at.or_else(|| {
                credentials
                    .refresh_token
                    .as_deref()
                    .filter(|rt| !rt.trim().is_empty())
                    .and_then(from_jwt)
            });
            Ok((Some(access), refresh))
        }
        _ => Ok((token_expires_at, refresh_token_expires_at)),
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::json_strategy::{any_json, scalar};
    use base64::Engine as _;
    use proptest::prelude::*;
    use serde_json::{Value, json};

    fn jwt(exp: i64) -> String {
        let payload = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .encode(format!(r#"{{"exp":{exp},"sub":"did:plc:x"}}"#));
        format!("eyJhbGciOiJIUzI1NiJ9.{payload}.c2ln")
    }

    fn spec(provider: &str, credentials: serde_json::Value) -> AccountSpec {
        serde_json::from_value(json!({
            "workspace_id": "w1",
            "provider": provider,
            "external_id": "e1",
            "credentials": credentials,
        }))
        .unwrap()
    }

    // Case 6: a Bluesky session registered without an expiry takes its
    // expiries from the JWTs, so its first refresh is planned from them.
    #[test]
    fn bluesky_expiry_is_read_from_the_jwts() {
        let now = Utc::now();
        let access_exp = now.timestamp() + 7200;
        let refresh_exp = now.timestamp() + 90 * 86_400;
        let new = spec(
            "BLUESKY",
            json!({"access_token": jwt(access_exp), "refresh_token": jwt(refresh_exp)}),
        )
        .into_new_account(now)
        .unwrap();
        assert_eq!(new.token_expires_at.unwrap().timestamp(), access_exp);
        assert_eq!(
            new.refresh_token_expires_at.unwrap().timestamp(),
            refresh_exp
        );
        // What the API tier says wins over the JWT.
        let given = spec(
            "BLUESKY",
            json!({"access_token": jwt(access_exp), "expires_in": 60}),
        )
        .into_new_account(now)
        .unwrap();
        assert_eq!(given.token_expires_at, Some(now + TimeDelta::seconds(60)));
    }

    #[test]
    fn bluesky_without_any_readable_expiry_is_refused_naming_the_field() {
        for access in ["opaque-token", "a.b.c", &jwt(0)[..20]] {
            let err = spec("BLUESKY", json!({"access_token": access}))
                .into_new_account(Utc::now())
                .unwrap_err();
            assert_eq!(err.field, "credentials.expires_in");
            assert!(
                err.problem.contains("Bluesky session needs its expiry"),
                "{err}"
            );
            assert!(!err.to_string().contains(access), "no token echoed: {err}");
        }
    }

    // Case 7: a Mastodon expiry is refused with a message that says why.
    #[test]
    fn mastodon_expiry_is_refused_with_a_clear_message() {
        let err = spec("MASTODON", json!({"access_token": "t", "expires_in": 3600}))
            .into_new_account(Utc::now())
            .unwrap_err();
        assert_eq!(err.field, "credentials.expires_in");
        assert!(
            err.problem.contains("Mastodon tokens do not expire"),
            "{err}"
        );
        let err = spec(
            "MASTODON",
            json!({"access_token": "t", "token_expires_at": "2030-01-01T00:00:00Z"}),
        )
        .into_new_account(Utc::now())
        .unwrap_err();
        assert_eq!(err.field, "credentials.token_expires_at");
        let fine = spec("MASTODON", json!({"access_token": "t"}))
            .into_new_account(Utc::now())
            .unwrap();
        assert_eq!(fine.token_expires_at, None);
    }

    fn base() -> Value {
        json!({
            "workspace_id": "ws",
            "provider": "X",
            "external_id": "e1",
            "handle": "@h",
            "scopes": ["a", "b"],
            "meta": {"k": "v"},
            "credentials": {"access_token": "at", "refresh_token": "rt", "expires_in": 3600}
        })
    }

    /// Parse and validate as the API and the CLI do: either an account or a
    /// field error; the field is never empty.
    fn check(body: &[u8]) -> Result<NewAccount, String> {
        let now = Utc::now();
        match parse_spec(body) {
            Err(SpecError::Syntax(message)) => Err(format!("syntax: {message}")),
            Err(SpecError::Field(e)) => {
                assert!(!e.field.is_empty());
                Err(e.field)
            }
            Ok(spec) => spec.into_new_account(now).map_err(|e| {
                assert!(!e.field.is_empty());
                e.field
            }),
        }
    }

    const STRING_FIELDS: [&str; 9] = [
        "workspace_id",
        "external_id",
        "handle",
        "display_name",
        "avatar_url",
        "default_board_id",
        "credentials.access_token",
        "credentials.refresh_token",
        "credentials.dpop_private_jwk",
    ];

    fn set(body: &mut Value, dotted: &str, value: Value) {
        match dotted.split_once('.') {
            Some((outer, inner)) => body[outer][inner] = value,
            None => body[dotted] = value,
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(1000))]

        /// Any JSON at all, as the whole body or in any field.
        #[test]
        fn any_json_body_is_an_account_or_a_field_error(value in any_json(scalar(), "[a-z_]{1,20}|.{0,20}")) {
            let _ = check(value.to_string().as_bytes());
        }

        #[test]
        fn any_json_in_any_field(field in prop::sample::select(vec![
            "workspace_id", "provider", "external_id", "handle", "display_name", "avatar_url",
            "connection_type", "scopes", "meta", "default_board_id", "credentials",
            "credentials.access_token", "credentials.refresh_token", "credentials.expires_in",
            "credentials.token_expires_at", "credentials.refresh_token_expires_at",
            "credentials.dpop_private_jwk",
        ]), value in any_json(scalar(), "[a-z_]{1,20}|.{0,20}")) {
            let mut body = base();
            set(&mut body, field, value);
            if let Err(named) = check(body.to_string().as_bytes()) {
                // A platform's own expiry rules (Mastodon: none; Bluesky:
                // required) answer on the expiry field.
                prop_assert!(named.starts_with(field.split('.').next().unwrap())
                    || named == "body"
                    || (field == "provider" && named.starts_with("credentials.")),
                    "{field} -> {named}");
            }
        }

        /// Any bytes: no panic.
        #[test]
        fn any_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
            let _ = check(&bytes);
        }

        /// Any number as a lifetime: inside 1 s ... 10 years, or refused
        /// naming the field.
        #[test]
        fn any_lifetime(seconds in prop_oneof![any::<i64>(), -10i64..=MAX_LIFETIME_SECS + 10],
                        float in any::<f64>(), use_float in any::<bool>()) {
            let mut body = base();
            let value = if use_float {
                serde_json::Number::from_f64(float).map_or(Value::Null, Value::Number)
            } else {
                Value::from(seconds)
            };
            body["credentials"]["expires_in"] = value.clone();
            match check(body.to_string().as_bytes()) {
                Ok(account) => {
                    if let Some(at) = account.token_expires_at {
                        let lifetime = at - account.token_issued_at;
                        prop_assert!(lifetime >= TimeDelta::seconds(1));
                        prop_assert!(lifetime <= MAX_EXPIRY_DISTANCE);
                    } else {
                        prop_assert!(value.is_null());
                    }
                }
                Err(field) => prop_assert_eq!(field, "credentials.expires_in"),
            }
        }

        /// Any instant chrono can hold as an expiry: clamped to ten years.
        #[test]
        fn any_expiry_date(seconds in -8_200_000_000_000i64..8_200_000_000_000i64) {
            let Some(at) = DateTime::from_timestamp(seconds, 0) else { return Ok(()); };
            let mut body = base();
            body["credentials"]["expires_in"] = Value::Null;
            body["credentials"]["token_expires_at"] = json!(at);
            body["credentials"]["refresh_token_expires_at"] = json!(at);
            let account = check(body.to_string().as_bytes()).unwrap();
            let now = account.token_issued_at;
            for at in [account.token_expires_at.unwrap(), account.refresh_token_expires_at.unwrap()] {
                prop_assert!((at - now).abs() <= MAX_EXPIRY_DISTANCE);
            }
        }

        /// Any string in any string field: accepted, or refused naming that
        /// field, never repeating it.
        #[test]
        fn any_string(field in prop::sample::select(STRING_FIELDS.to_vec()),
                      text in prop_oneof![".{0,300}", "[\\x00-\\x20a-z]{0,20}", "\\PC{0,2000}"]) {
            let mut body = base();
            set(&mut body, field, Value::from(text.clone()));
            let raw = body.to_string();
            match parse_spec(raw.as_bytes()) {
                Err(e) => panic!("a string is always a string: {e}"),
                Ok(spec) => match spec.into_new_account(Utc::now()) {
                    Ok(account) => {
                        prop_assert!(!account.workspace_id.contains('\0'));
                        prop_assert!(!account.meta.to_string().contains("\\u0000"));
                    }
                    Err(e) => {
                        prop_assert_eq!(&e.field, field);
                        if text.trim().chars().count() >= 8 {
                            prop_assert!(!e.to_string().contains(text.trim()), "echoed");
                        }
                    }
                },
            }
        }
    }

    #[test]
    fn meta_nests_at_most_three_levels() {
        let mut body = base();
        body["meta"] = json!({"a": {"b": [1, "x"]}});
        assert!(check(body.to_string().as_bytes()).is_ok());
        body["meta"] = json!({"a": {"b": [[1]]}});
        assert_eq!(
            check(body.to_string().as_bytes()).unwrap_err(),
            "meta.a.b[0]"
        );
    }

    #[test]
    fn redaction_keeps_what_was_expected_and_drops_what_was_given() {
        assert_eq!(
            redact_values(r#"invalid type: string "a\"b expected c", expected i64"#),
            r#"invalid type: string "…", expected i64"#
        );
        assert_eq!(
            redact_values("unknown variant `ya29.x`, expected one of `X`, `Y`"),
            "unknown variant `…`, expected one of `X`, `Y`"
        );
        assert_eq!(
            redact_values("invalid value: integer `123`, expected u8 at line 1"),
            "invalid value: integer `…`, expected u8 at line 1"
        );
    }
}
