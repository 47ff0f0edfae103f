//! Expiries: the ten-year bound on any stated date, and the platforms' own
//! rules (a Mastodon token has none, a Bluesky session's is in its JWTs).

use chrono::{DateTime, TimeDelta, Utc};

use super::spec::CredentialsSpec;
use super::{InvalidField, invalid};
use crate::domain::Provider;

/// The longest access-token lifetime a registration may state: ten years.
pub const MAX_LIFETIME_SECS: i64 = 315_576_000;
/// Expiry dates further than this from now (either way) are refused.
pub const MAX_EXPIRY_DISTANCE: TimeDelta = TimeDelta::seconds(MAX_LIFETIME_SECS);

/// A stated expiry, brought within ten years of `now` either way: further
/// out behaves the same for every plan the daemon makes, and keeps all
/// later date arithmetic far from chrono's and PostgreSQL's limits.
pub(super) fn clamp_expiry(at: DateTime<Utc>, now: DateTime<Utc>) -> DateTime<Utc> {
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
pub(super) fn platform_expiry(
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

#[cfg(test)]
mod tests {
    use base64::Engine as _;
    use chrono::{TimeDelta, Utc};
    use serde_json::json;

    use crate::registration::AccountSpec;

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
