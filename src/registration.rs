//! The shape in which an account is registered (CLI JSON file now, the HTTP
//! API later), and its validation into a `NewAccount`. Errors name the field.

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
    pub workspace_id: String,
    pub provider: Provider,
    pub external_id: String,
    pub handle: Option<String>,
    pub display_name: Option<String>,
    pub avatar_url: Option<String>,
    #[serde(default)]
    pub connection_type: Option<ConnectionType>,
    #[serde(default)]
    pub scopes: Vec<String>,
    /// Platform extras as a JSON object: `page_id`, `instance_host`
    /// (Mastodon), `pds_host` (Bluesky), ...
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub meta: Option<serde_json::Value>,
    pub default_board_id: Option<String>,
    pub credentials: CredentialsSpec,
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CredentialsSpec {
    pub access_token: String,
    pub refresh_token: Option<String>,
    /// Seconds from now; or give `token_expires_at`.
    pub expires_in: Option<i64>,
    pub token_expires_at: Option<DateTime<Utc>>,
    pub refresh_token_expires_at: Option<DateTime<Utc>>,
    /// atproto OAuth: the ES256 private JWK the session's tokens are bound
    /// to. Without one, a key is generated for such an account.
    pub dpop_private_jwk: Option<String>,
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

#[derive(Debug, thiserror::Error)]
#[error("{field}: {problem}")]
pub struct InvalidField {
    pub field: &'static str,
    pub problem: String,
}

fn invalid(field: &'static str, problem: impl Into<String>) -> InvalidField {
    InvalidField {
        field,
        problem: problem.into(),
    }
}

fn required(field: &'static str, value: &str) -> Result<String, InvalidField> {
    let trimmed = value.trim();
    if trimmed.is_empty() {
        Err(invalid(field, "must not be empty"))
    } else if trimmed.len() > 255 {
        Err(invalid(field, "must be at most 255 characters"))
    } else {
        Ok(trimmed.to_owned())
    }
}

impl AccountSpec {
    pub fn into_new_account(self, now: DateTime<Utc>) -> Result<NewAccount, InvalidField> {
        let credentials = self.credentials;
        if credentials.access_token.trim().is_empty() {
            return Err(invalid("credentials.access_token", "must not be empty"));
        }
        let token_expires_at = match (credentials.expires_in, credentials.token_expires_at) {
            (Some(_), Some(_)) => {
                return Err(invalid(
                    "credentials.expires_in",
                    "give expires_in or token_expires_at, not both",
                ));
            }
            (Some(seconds), None) if seconds < 0 => {
                return Err(invalid("credentials.expires_in", "must not be negative"));
            }
            (Some(seconds), None) => Some(now + TimeDelta::seconds(seconds)),
            (None, at) => at,
        };
        if let Some(url) = &self.avatar_url
            && url::Url::parse(url).is_err()
        {
            return Err(invalid("avatar_url", "is not a valid URL"));
        }
        let meta = self.meta.unwrap_or_else(|| serde_json::json!({}));
        if !meta.is_object() {
            return Err(invalid("meta", "must be a JSON object"));
        }
        let dpop_key = credentials
            .dpop_private_jwk
            .as_deref()
            .map(DpopKey::from_jwk)
            .transpose()
            .map_err(|e| invalid("credentials.dpop_private_jwk", e.to_string()))?;
        Ok(NewAccount {
            workspace_id: required("workspace_id", &self.workspace_id)?,
            provider: self.provider,
            external_id: required("external_id", &self.external_id)?,
            handle: self.handle,
            display_name: self.display_name,
            avatar_url: self.avatar_url,
            connection_type: self.connection_type.unwrap_or(ConnectionType::Oauth),
            granted_scopes: self.scopes,
            meta,
            default_board_id: self.default_board_id,
            access_token: AccessToken::new(credentials.access_token),
            refresh_token: credentials
                .refresh_token
                .filter(|rt| !rt.trim().is_empty())
                .map(RefreshToken::new),
            token_issued_at: now,
            token_expires_at,
            refresh_token_expires_at: credentials.refresh_token_expires_at,
            dpop_key,
        })
    }
}
