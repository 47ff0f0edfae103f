//! The body in which an account is registered: its fields, their documented
//! limits (for the API schema), and a `Debug` that hides the credentials.

use chrono::{DateTime, Utc};
use serde::Deserialize;

use crate::domain::{ConnectionType, Provider};

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
