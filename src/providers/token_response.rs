//! Tolerant reading of RFC 6749 token responses (section 5.1 success, 5.2
//! error). Tolerant of documented variants (a numeric `expires_in` sent as a
//! string, `refresh_expires_in` spelled TikTok's way); strict about anything
//! that would store garbage: an answer without a usable access token, or
//! with a lifetime that is not a non-negative number, is refused whole.

use std::time::Duration;

use serde_json::{Map, Value};

use crate::domain::{AccessToken, RefreshToken};
use crate::providers::{FailureKind, HttpReply, ProviderError, TokenGrant};

/// Parses a JSON object body; anything else is a transient failure that says
/// what arrived (without echoing the body, which may hold tokens).
pub fn json_object(reply: &HttpReply) -> Result<Map<String, Value>, ProviderError> {
    let describe = || {
        let kind = reply
            .content_type()
            .split(';')
            .next()
            .unwrap_or("")
            .trim()
            .to_owned();
        let kind = if kind.is_empty() {
            "no content type".to_owned()
        } else {
            kind
        };
        format!(
            "response is not a JSON object ({kind}, {} bytes)",
            reply.body.len()
        )
    };
    match serde_json::from_slice::<Value>(&reply.body) {
        Ok(Value::Object(map)) => Ok(map),
        _ => Err(ProviderError::transient(describe()).with_status(reply.status)),
    }
}

/// The grant in a 2xx token response.
pub fn parse_grant(body: &Map<String, Value>, status: u16) -> Result<TokenGrant, ProviderError> {
    let malformed = |what: &str| {
        ProviderError::transient(format!("malformed token response: {what}")).with_status(status)
    };

    let access_token = match body.get("access_token") {
        Some(Value::String(s)) if !s.trim().is_empty() => AccessToken::new(s.clone()),
        Some(Value::String(_)) => return Err(malformed("access_token is empty")),
        Some(_) => return Err(malformed("access_token is not a string")),
        None => return Err(malformed("access_token is missing")),
    };
    let refresh_token = match body.get("refresh_token") {
        Some(Value::String(s)) if !s.trim().is_empty() => Some(RefreshToken::new(s.clone())),
        // An empty or null refresh token means "none returned": keep the stored one.
        Some(Value::String(_)) | Some(Value::Null) | None => None,
        Some(_) => return Err(malformed("refresh_token is not a string")),
    };
    let expires_in = lifetime(body, "expires_in").map_err(|e| malformed(&e))?;
    let refresh_token_expires_in =
        match lifetime(body, "refresh_token_expires_in").map_err(|e| malformed(&e))? {
            Some(d) => Some(d),
            None => lifetime(body, "refresh_expires_in").map_err(|e| malformed(&e))?,
        };
    let scopes = match body.get("scope") {
        Some(Value::String(s)) => Some(
            s.split([' ', ','])
                .filter(|scope| !scope.is_empty())
                .map(str::to_owned)
                .collect(),
        ),
        _ => None,
    };
    Ok(TokenGrant {
        access_token,
        refresh_token,
        expires_in,
        refresh_token_expires_in,
        scopes,
        account: Default::default(),
    })
}

/// A lifetime in seconds: a non-negative integer, or such an integer sent as
/// a string. Absent or null is `None`.
fn lifetime(body: &Map<String, Value>, key: &str) -> Result<Option<Duration>, String> {
    let bad = || format!("{key} is not a non-negative number of seconds");
    match body.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) => n
            .as_u64()
            .map(|s| Some(Duration::from_secs(s)))
            .ok_or_else(bad),
        Some(Value::String(s)) => s
            .trim()
            .parse::<u64>()
            .map(|s| Some(Duration::from_secs(s)))
            .map_err(|_| bad()),
        Some(_) => Err(bad()),
    }
}

/// The `error` and `error_description` of an RFC 6749 error body, if any.
pub fn oauth_error(body: &Map<String, Value>) -> Option<(String, String)> {
    let code = body.get("error")?.as_str()?.to_owned();
    let description = body
        .get("error_description")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_owned();
    Some((code, description))
}

/// Classifies a standard OAuth error code from a token endpoint; None for a
/// code RFC 6749 does not define (an unrecognised answer).
///
/// `invalid_grant` is TOKEN_EXPIRED whatever its text: RFC 6749 uses it for
/// a grant that is "invalid, expired, revoked" alike, so the word "revoked"
/// in a description does not say the user withdrew access.
pub fn classify_oauth_error(code: &str) -> Option<FailureKind> {
    Some(match code {
        "invalid_grant" => FailureKind::RejectedExpired,
        "invalid_client"
        | "unauthorized_client"
        | "unsupported_grant_type"
        | "invalid_scope"
        | "invalid_request" => FailureKind::Config,
        "temporarily_unavailable" | "server_error" => FailureKind::Transient,
        "slow_down" => FailureKind::RateLimited,
        _ => return None,
    })
}

/// Trims provider text to something fit for a log line and a database column.
pub fn short(text: &str) -> String {
    const MAX: usize = 300;
    let flat: String = text
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    if flat.chars().count() > MAX {
        let cut: String = flat.chars().take(MAX).collect();
        format!("{cut}…")
    } else {
        flat
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn obj(v: Value) -> Map<String, Value> {
        v.as_object().unwrap().clone()
    }

    #[test]
    fn accepts_numeric_strings_and_tiktok_spelling() {
        let grant = parse_grant(
            &obj(json!({"access_token": "a", "expires_in": "3600", "refresh_token": "r", "refresh_expires_in": 86400, "scope": "a b"})),
            200,
        )
        .unwrap();
        assert_eq!(grant.expires_in, Some(Duration::from_secs(3600)));
        assert_eq!(
            grant.refresh_token_expires_in,
            Some(Duration::from_secs(86400))
        );
        assert_eq!(grant.scopes.unwrap(), vec!["a", "b"]);
    }

    #[test]
    fn refuses_garbage_lifetimes_and_missing_tokens() {
        for body in [
            json!({"access_token": "a", "expires_in": -5}),
            json!({"access_token": "a", "expires_in": "soon"}),
            json!({"access_token": "a", "expires_in": 1.5}),
            json!({"access_token": ""}),
            json!({"access_token": 42}),
            json!({"error": "invalid_grant"}),
        ] {
            let err = parse_grant(&obj(body.clone()), 200).unwrap_err();
            assert_eq!(err.kind, FailureKind::Transient, "{body}");
        }
    }

    #[test]
    fn empty_refresh_token_means_keep_the_stored_one() {
        let grant =
            parse_grant(&obj(json!({"access_token": "a", "refresh_token": ""})), 200).unwrap();
        assert!(grant.refresh_token.is_none());
    }
}
