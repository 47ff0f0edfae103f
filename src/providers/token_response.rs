//! Tolerant reading of RFC 6749 token responses (section 5.1 success, 5.2
//! error). Tolerant of documented variants (a numeric `expires_in` sent as a
//! string, `refresh_expires_in` spelled TikTok's way); strict about anything
//! that would store garbage: an answer without a usable access token is
//! refused whole. A lifetime is never a reason to refuse an answer (see
//! `lifetime`): odd ones are clamped and noted.

use serde_json::{Map, Value};

use crate::domain::{AccessToken, RefreshToken};
use crate::providers::{FailureKind, HttpReply, ProviderError, TokenGrant, lifetime};

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
        // Valid JSON that serde_json will not hold (a number such as 1e400)
        // must not cost the tokens beside it.
        Err(_) => tolerant_object(&reply.body)
            .ok_or_else(|| ProviderError::transient(describe()).with_status(reply.status)),
        Ok(_) => Err(ProviderError::transient(describe()).with_status(reply.status)),
    }
}

/// A JSON object read field by field: a field whose value serde_json
/// refuses (an out-of-range number, at any depth) is kept as its raw text,
/// which readers then treat as the odd value it is. None if the body is not
/// a JSON object at all.
fn tolerant_object(body: &[u8]) -> Option<Map<String, Value>> {
    use serde_json::value::RawValue;
    let fields: Map<String, Value> =
        serde_json::from_slice::<std::collections::BTreeMap<String, Box<RawValue>>>(body)
            .ok()?
            .into_iter()
            .map(|(key, raw)| {
                let value = serde_json::from_str(raw.get())
                    .unwrap_or_else(|_| Value::String(raw.get().to_owned()));
                (key, value)
            })
            .collect();
    Some(fields)
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
    // Lifetimes never refuse the answer: it may hold the only copy of a
    // rotated refresh token. Odd values are clamped and noted.
    let expires = lifetime::from_json("expires_in", body.get("expires_in"));
    let refresh_expires = match body.get("refresh_token_expires_in") {
        Some(value) if !value.is_null() => {
            lifetime::from_json("refresh_token_expires_in", Some(value))
        }
        _ => lifetime::from_json("refresh_expires_in", body.get("refresh_expires_in")),
    };
    let notes = [&expires.oddity, &refresh_expires.oddity]
        .into_iter()
        .flatten()
        .cloned()
        .collect();
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
        expires_in: expires.value,
        refresh_token_expires_in: refresh_expires.value,
        scopes,
        notes,
        account: Default::default(),
    })
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
    use std::time::Duration;

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

    /// serde_json refuses numbers beyond f64 (1e400) even though they are
    /// valid JSON: such an answer still yields its tokens.
    #[test]
    fn numbers_beyond_f64_do_not_refuse_the_answer() {
        for body in [
            r#"{"access_token":"a","refresh_token":"r","expires_in":1e400}"#,
            r#"{"access_token":"a","refresh_token":"r","expires_in":-1e400,"refresh_token_expires_in":1e400}"#,
            r#"{"access_token":"a","refresh_token":"r","expires_in":3600,"junk":{"deep":[1e400]}}"#,
        ] {
            let reply = HttpReply {
                status: 200,
                headers: Default::default(),
                body: body.as_bytes().to_vec(),
            };
            let grant = parse_grant(&json_object(&reply).unwrap(), 200).unwrap();
            assert_eq!(grant.refresh_token.unwrap().expose(), "r", "{body}");
            assert!(
                grant
                    .expires_in
                    .is_none_or(|d| d == Duration::from_secs(3600)),
                "{body}"
            );
        }
        let garbage = HttpReply {
            status: 200,
            headers: Default::default(),
            body: br#"{"access_token":"a", 1e400"#.to_vec(),
        };
        assert!(json_object(&garbage).is_err());
    }

    #[test]
    fn refuses_answers_without_a_usable_access_token() {
        for body in [
            json!({"access_token": ""}),
            json!({"access_token": 42}),
            json!({"error": "invalid_grant"}),
        ] {
            let err = parse_grant(&obj(body.clone()), 200).unwrap_err();
            assert_eq!(err.kind, FailureKind::Transient, "{body}");
        }
    }

    /// An odd lifetime must not cost the rotated refresh token beside it.
    #[test]
    fn odd_lifetimes_keep_the_grant_and_are_noted() {
        for (body, expires_in) in [
            (
                json!({"access_token": "a", "refresh_token": "r", "expires_in": -5}),
                Some(lifetime::MIN),
            ),
            (
                json!({"access_token": "a", "refresh_token": "r", "expires_in": "soon"}),
                None,
            ),
            (
                json!({"access_token": "a", "refresh_token": "r", "expires_in": 8.2e12}),
                Some(lifetime::MAX),
            ),
            (
                json!({"access_token": "a", "refresh_token": "r", "expires_in": 1.5}),
                Some(Duration::from_secs(2)),
            ),
        ] {
            let grant = parse_grant(&obj(body.clone()), 200).unwrap();
            assert_eq!(grant.expires_in, expires_in, "{body}");
            assert_eq!(grant.refresh_token.unwrap().expose(), "r");
            if body["expires_in"] != json!(1.5) {
                assert_eq!(grant.notes.len(), 1, "{body}");
            }
        }
    }

    #[test]
    fn empty_refresh_token_means_keep_the_stored_one() {
        let grant =
            parse_grant(&obj(json!({"access_token": "a", "refresh_token": ""})), 200).unwrap();
        assert!(grant.refresh_token.is_none());
    }
}
