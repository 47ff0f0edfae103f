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
        let (token_expires_at, refresh_token_expires_at) = platform_expiry(
            self.provider,
            &credentials,
            token_expires_at,
            credentials.refresh_token_expires_at,
        )?;
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
            refresh_token_expires_at,
            dpop_key,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::Engine as _;
    use serde_json::json;

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
}
