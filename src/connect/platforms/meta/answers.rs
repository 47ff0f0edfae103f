//! Reading Meta's answers during a connect. Three error shapes arrive:
//! Graph's `{"error":{"message","type","code","error_subcode","fbtrace_id"}}`,
//! the Instagram Login token endpoint's `{"error_type","code",
//! "error_message"}`, and (should a host speak plain OAuth) RFC 6749's
//! `{"error","error_description"}`. Graph's throttling and transient codes
//! (see `providers::graph`) mean "try again"; every other refusal fails the
//! step. Messages name the step, the status and Meta's own text, never the
//! body (the caller scrubs the tokens it holds from Meta's text).

use std::time::Duration;

use secrecy::SecretString;
use serde_json::{Map, Value};

use crate::connect::ConnectError;
use crate::connect::exchange::text_at;
use crate::providers::graph::{as_integer, classify};
use crate::providers::token_response::{json_object, short};
use crate::providers::{FailureKind, HttpReply, ProviderError, lifetime};

/// The longest token or id taken from an answer.
const MAX_TOKEN_CHARS: usize = 16_384;

/// A call of the login flow; its failures are named after it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Step {
    CodeExchange,
    LongLivedExchange,
    Permissions,
    Pages,
    Profile,
}

impl Step {
    pub fn name(self) -> &'static str {
        match self {
            Step::CodeExchange => "code exchange",
            Step::LongLivedExchange => "long-lived token exchange",
            Step::Permissions => "permissions (me/permissions)",
            Step::Pages => "pages (me/accounts)",
            Step::Profile => "profile (me)",
        }
    }

    /// Meta said no: the exchanges fail as exchanges, the rest as the
    /// identity the connect could not read.
    pub fn refused(self, detail: impl std::fmt::Display) -> ConnectError {
        let message = format!("{}: {detail}", self.name());
        match self {
            Step::CodeExchange | Step::LongLivedExchange => ConnectError::exchange_failed(message),
            _ => ConnectError::identity_failed(message),
        }
    }

    /// A transport failure or a classified platform error.
    pub fn failed(self, error: ProviderError) -> ConnectError {
        ConnectError::from_provider(self.name(), error)
    }

    fn unavailable(self, detail: impl std::fmt::Display) -> ConnectError {
        ConnectError::platform_unavailable(format!("{}: {detail}", self.name()))
    }
}

/// A 2xx JSON object, or the error Meta's answer amounts to.
pub fn read_object(reply: &HttpReply, step: Step) -> Result<Map<String, Value>, ConnectError> {
    let status = reply.status;
    let body = json_object(reply).ok();
    if let Some(error) = body.as_ref().and_then(|b| error_in(b, status, step)) {
        return Err(error);
    }
    if status >= 500 || status == 429 || status == 408 {
        return Err(step.unavailable(format!("HTTP {status}")));
    }
    if !(200..300).contains(&status) {
        return Err(step.refused(format!("HTTP {status}")));
    }
    match body {
        Some(body) => Ok(body),
        None => Err(step.refused(
            json_object(reply)
                .err()
                .map_or_else(|| "unreadable answer".to_owned(), |e| e.message),
        )),
    }
}

/// The error an answer's body states, in any of Meta's shapes.
fn error_in(body: &Map<String, Value>, status: u16, step: Step) -> Option<ConnectError> {
    let throttled_or_down = status >= 500 || status == 429;
    match body.get("error") {
        Some(Value::Object(error)) => {
            let code = error.get("code").and_then(as_integer);
            let subcode = error
                .get("error_subcode")
                .or_else(|| error.get("subcode"))
                .and_then(as_integer);
            let message = error.get("message").and_then(Value::as_str).unwrap_or("");
            let code_text = match (code, subcode) {
                (Some(code), Some(sub)) => format!("Graph error {code}/{sub}"),
                (Some(code), None) => format!("Graph error {code}"),
                (None, _) => "Graph error".to_owned(),
            };
            let detail = format!("HTTP {status}, {code_text}: {}", short(message));
            // Meta words a wrong app secret as code 1 ("try again"): it is not.
            let about_secret = message.to_ascii_lowercase().contains("client secret");
            let passing = code
                .and_then(|c| classify(c, subcode))
                .is_some_and(|(kind, _)| {
                    matches!(kind, FailureKind::Transient | FailureKind::RateLimited)
                });
            Some(if (passing || throttled_or_down) && !about_secret {
                step.unavailable(detail)
            } else {
                step.refused(detail)
            })
        }
        Some(Value::String(error)) => {
            let description = body
                .get("error_description")
                .and_then(Value::as_str)
                .unwrap_or("");
            let detail = format!("HTTP {status}, {}: {}", short(error), short(description));
            Some(if throttled_or_down {
                step.unavailable(detail)
            } else {
                step.refused(detail)
            })
        }
        _ => {
            let kind = body.get("error_type").and_then(Value::as_str);
            let message = body.get("error_message").and_then(Value::as_str);
            if kind.is_none() && message.is_none() {
                return None;
            }
            let detail = format!(
                "HTTP {status}, {}: {}",
                short(kind.unwrap_or("error")),
                short(message.unwrap_or(""))
            );
            Some(if throttled_or_down {
                step.unavailable(detail)
            } else {
                step.refused(detail)
            })
        }
    }
}

/// A token as an exchange issued it.
pub struct IssuedToken {
    pub access_token: SecretString,
    /// None when the answer gave no usable lifetime.
    pub expires_in: Option<Duration>,
    /// The user the token speaks for, where the answer names one.
    pub user_id: Option<String>,
    /// The permissions granted, where the answer lists them.
    pub permissions: Option<Vec<String>>,
}

impl std::fmt::Debug for IssuedToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IssuedToken")
            .field("access_token", &"[redacted]")
            .field("expires_in", &self.expires_in)
            .field("user_id", &self.user_id)
            .field("permissions", &self.permissions)
            .finish()
    }
}

/// Reads a token answer: `{access_token, token_type, expires_in}`, the
/// code exchanges' `{access_token, user_id, permissions}`, or Instagram
/// Business Login's `{"data":[{access_token, user_id, permissions}]}`.
pub fn issued_token(body: &Map<String, Value>, step: Step) -> Result<IssuedToken, ConnectError> {
    let body = match body.get("data") {
        Some(Value::Array(items)) if !body.contains_key("access_token") => match items.first() {
            Some(Value::Object(first)) => first,
            _ => return Err(step.refused("data holds no token")),
        },
        _ => body,
    };
    let access_token = match body.get("access_token") {
        Some(Value::String(token)) if usable_token(token) => SecretString::from(token.trim()),
        Some(Value::String(_)) => return Err(step.refused("access_token is unusable")),
        Some(_) => return Err(step.refused("access_token is not a string")),
        None => return Err(step.refused("access_token is missing")),
    };
    let expires_in = lifetime::from_json("expires_in", body.get("expires_in")).value;
    let user_id = text_at(body, &["user_id"]).filter(|id| usable_id(id));
    let permissions = match body.get("permissions") {
        Some(Value::String(list)) => Some(words(list.split([',', ' ']))),
        Some(Value::Array(items)) => Some(words(items.iter().filter_map(Value::as_str))),
        _ => None,
    };
    Ok(IssuedToken {
        access_token,
        expires_in,
        user_id,
        permissions,
    })
}

/// A token that can travel in a query string and a header: non-empty,
/// bounded, no whitespace or control characters inside.
pub fn usable_token(token: &str) -> bool {
    let token = token.trim();
    !token.is_empty()
        && token.chars().count() <= MAX_TOKEN_CHARS
        && !token.chars().any(|c| c.is_whitespace() || c.is_control())
}

/// An id fit for an account's external id and a select call: 1 to 255
/// characters, no control characters or spaces.
pub fn usable_id(id: &str) -> bool {
    !id.is_empty()
        && id.chars().count() <= 255
        && !id.chars().any(|c| c.is_control() || c.is_whitespace())
}

/// Scope names as registration accepts them, without repeats.
fn words<'a>(items: impl Iterator<Item = &'a str>) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for item in items.map(str::trim) {
        if usable_id(item) && !out.iter().any(|s| s == item) {
            out.push(item.to_owned());
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use secrecy::ExposeSecret;
    use serde_json::json;

    fn reply(status: u16, body: Value) -> HttpReply {
        HttpReply {
            status,
            headers: Default::default(),
            body: body.to_string().into_bytes(),
        }
    }

    #[test]
    fn a_used_facebook_code_fails_the_exchange_with_metas_text() {
        let error = read_object(
            &reply(
                400,
                json!({"error": {"message": "This authorization code has been used.", "type": "OAuthException", "code": 100, "error_subcode": 36009, "fbtrace_id": "A1"}}),
            ),
            Step::CodeExchange,
        )
        .unwrap_err();
        assert_eq!(error.code, "exchange_failed");
        assert!(error.message.contains("100/36009"), "{}", error.message);
        assert!(error.message.contains("has been used"), "{}", error.message);
    }

    #[test]
    fn instagram_login_refusals_are_read_in_their_own_shape() {
        let error = read_object(
            &reply(
                400,
                json!({"error_type": "OAuthException", "code": 400, "error_message": "Matching code was not found or was already used."}),
            ),
            Step::CodeExchange,
        )
        .unwrap_err();
        assert_eq!(error.code, "exchange_failed");
        assert!(error.message.contains("already used"), "{}", error.message);
    }

    #[test]
    fn throttles_and_outages_are_unavailable_but_a_wrong_secret_is_not() {
        let code = |body: Value, status: u16, step: Step| {
            read_object(&reply(status, body), step).unwrap_err().code
        };
        assert_eq!(
            code(
                json!({"error": {"code": 4, "message": "Application request limit reached"}}),
                400,
                Step::Pages
            ),
            "platform_unavailable"
        );
        assert_eq!(
            code(
                json!({"error": {"code": 2, "message": "Service temporarily unavailable"}}),
                500,
                Step::Profile
            ),
            "platform_unavailable"
        );
        assert_eq!(
            code(
                json!({"error": {"code": 1, "message": "Error validating client secret."}}),
                400,
                Step::LongLivedExchange
            ),
            "exchange_failed"
        );
        assert_eq!(
            code(
                json!({"error": {"code": 190, "message": "Invalid OAuth access token"}}),
                400,
                Step::Pages
            ),
            "identity_failed"
        );
        assert_eq!(
            code(json!({"unexpected": true}), 503, Step::Pages),
            "platform_unavailable"
        );
        assert_eq!(
            code(json!({"unexpected": true}), 403, Step::Pages),
            "identity_failed"
        );
    }

    #[test]
    fn non_json_answers_are_named_not_echoed() {
        let error = read_object(
            &HttpReply {
                status: 200,
                headers: Default::default(),
                body: b"<html>token=EAAsecret</html>".to_vec(),
            },
            Step::Profile,
        )
        .unwrap_err();
        assert_eq!(error.code, "identity_failed");
        assert!(!error.message.contains("EAAsecret"), "{}", error.message);
    }

    #[test]
    fn token_answers_in_every_documented_shape() {
        let flat = issued_token(
            json!({"access_token": "IGQ1", "user_id": 17841405793187218u64, "permissions": ["instagram_business_basic", "instagram_business_basic"]})
                .as_object()
                .unwrap(),
            Step::CodeExchange,
        )
        .unwrap();
        assert_eq!(flat.access_token.expose_secret(), "IGQ1");
        assert_eq!(flat.user_id.as_deref(), Some("17841405793187218"));
        assert_eq!(flat.permissions.unwrap(), vec!["instagram_business_basic"]);

        let wrapped = issued_token(
            json!({"data": [{"access_token": "IGQ2", "user_id": "42", "permissions": "a,b"}]})
                .as_object()
                .unwrap(),
            Step::CodeExchange,
        )
        .unwrap();
        assert_eq!(wrapped.access_token.expose_secret(), "IGQ2");
        assert_eq!(wrapped.permissions.unwrap(), vec!["a", "b"]);

        let long = issued_token(
            json!({"access_token": "L", "token_type": "bearer", "expires_in": 5183944})
                .as_object()
                .unwrap(),
            Step::LongLivedExchange,
        )
        .unwrap();
        assert_eq!(long.expires_in, Some(Duration::from_secs(5_183_944)));

        for body in [
            json!({"data": []}),
            json!({"access_token": ""}),
            json!({"access_token": "a b"}),
            json!({"access_token": 5}),
            json!({"token_type": "bearer"}),
        ] {
            assert!(
                issued_token(body.as_object().unwrap(), Step::CodeExchange).is_err(),
                "{body}"
            );
        }
    }
}
