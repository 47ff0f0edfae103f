//! A JWT's `exp` claim, read without verifying the token, and the lifetime
//! it leaves.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::Value;

use crate::providers::lifetime;

/// The `exp` claim (seconds since the epoch) of a JWT, read without
/// verifying it. Errors say what was wrong, never what the token holds.
pub(crate) fn jwt_exp(jwt: &str) -> Result<i64, String> {
    let mut parts = jwt.split('.');
    let (Some(_), Some(payload), Some(_), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err("is not a JWT (three dot-separated parts)".into());
    };
    let bytes = URL_SAFE_NO_PAD
        .decode(payload.trim_end_matches('='))
        .map_err(|_| "payload is not base64url".to_owned())?;
    let claims: Value =
        serde_json::from_slice(&bytes).map_err(|_| "payload is not JSON".to_owned())?;
    let exp = claims
        .as_object()
        .ok_or_else(|| "payload is not a JSON object".to_owned())?
        .get("exp")
        .ok_or_else(|| "has no exp claim".to_owned())?;
    // NumericDate may carry a fraction (RFC 7519 2); whole seconds suffice.
    match exp.as_i64() {
        Some(secs) => Ok(secs),
        None => exp
            .as_f64()
            .filter(|f| f.is_finite() && *f > 0.0 && *f < i64::MAX as f64)
            .map(|f| f.floor() as i64)
            .ok_or_else(|| "exp is not a number of seconds".into()),
    }
}

/// Time left until a JWT's `exp`, clamped to the lifetime range. A token
/// already expired on arrival refuses the answer like an unreadable one
/// (safe here: the PDS honours the spent refresh JWT for its grace period).
pub(super) fn remaining(name: &str, jwt: &str, now: i64) -> Result<lifetime::Stated, String> {
    let exp = jwt_exp(jwt).map_err(|why| format!("{name} {why}"))?;
    if exp <= now {
        return Err(format!("{name} has already expired"));
    }
    Ok(lifetime::until_epoch(
        &format!("{name} exp"),
        exp as f64,
        now,
    ))
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn jwt(payload: &str) -> String {
        format!(
            "eyJhbGciOiJIUzI1NiJ9.{}.c2ln",
            URL_SAFE_NO_PAD.encode(payload)
        )
    }

    #[test]
    fn exp_is_read_from_the_payload() {
        assert_eq!(
            jwt_exp(&jwt(r#"{"exp":1700000000,"sub":"did:plc:x"}"#)),
            Ok(1_700_000_000)
        );
        assert_eq!(jwt_exp(&jwt(r#"{"exp":1700000000.75}"#)), Ok(1_700_000_000));
        // Padded base64url is tolerated.
        let padded = format!(
            "h.{}.s",
            base64::engine::general_purpose::URL_SAFE.encode(r#"{"exp":12}"#)
        );
        assert_eq!(jwt_exp(&padded), Ok(12));
    }

    #[test]
    fn bad_jwts_are_errors_that_do_not_echo_the_token() {
        let secret = "sekrit-token-value";
        for bad in [
            secret.to_owned(),
            format!("a.{secret}.c"),
            "a.b.c.d".to_owned(),
            jwt("not json"),
            jwt("[1,2]"),
            jwt(r#"{"sub":"x"}"#),
            jwt(r#"{"exp":"soon"}"#),
            jwt(r#"{"exp":-1.5}"#),
            jwt(r#"{"exp":1e400}"#),
            "..".to_owned(),
            format!("a.{}.c", URL_SAFE_NO_PAD.encode([0xff, 0xfe])),
        ] {
            let err = jwt_exp(&bad).unwrap_err();
            assert!(!err.contains(secret), "{err}");
        }
    }

    #[test]
    fn far_expiries_are_clamped_and_expired_ones_refused() {
        let now = 1_700_000_000;
        assert!(remaining("accessJwt", &jwt(r#"{"exp":1700000000}"#), now).is_err());
        assert_eq!(
            remaining("accessJwt", &jwt(r#"{"exp":1700000060}"#), now),
            Ok(lifetime::Stated {
                value: Some(Duration::from_secs(60)),
                oddity: None
            })
        );
        for far in [r#"{"exp":9223372036854775807}"#, r#"{"exp":8.2e12}"#] {
            let far = remaining("accessJwt", &jwt(far), now).unwrap();
            assert_eq!(far.value, Some(lifetime::MAX));
        }
        assert!(remaining("accessJwt", &jwt(r#"{"exp":-9223372036854775808}"#), now).is_err());
        let unreadable = remaining("refreshJwt", "not-a-jwt", now).unwrap_err();
        assert!(unreadable.starts_with("refreshJwt is not a JWT"));
    }
}
