//! The RFC 6749 section 4.1.3 code exchange most platforms share, and the
//! small helpers connectors use to read profile answers.

use secrecy::{ExposeSecret, SecretString};
use serde_json::{Map, Value};
use url::Url;

use super::ConnectError;
use crate::config::ClientAuth;
use crate::providers::token_response::json_object;
use crate::providers::{
    HttpClient, HttpReply, OAuth2Refresh, ProviderError, TokenGrant, with_client_auth,
};

/// One code exchange at a token endpoint.
pub struct CodeExchange<'a> {
    pub token_url: &'a Url,
    pub client_id: &'a str,
    pub client_secret: Option<&'a SecretString>,
    /// None: the platform names its client its own way, in `extra_form`
    /// (TikTok's `client_key`).
    pub client_auth: Option<ClientAuth>,
    pub code: &'a SecretString,
    pub redirect_uri: &'a Url,
    pub code_verifier: Option<&'a SecretString>,
    /// Platform-specific form fields.
    pub extra_form: &'a [(&'a str, &'a str)],
}

/// POSTs `grant_type=authorization_code` and reads the answer as a refresh
/// answer is read: an access token is required, lifetimes are clamped.
pub async fn exchange_code(
    http: &HttpClient,
    exchange: CodeExchange<'_>,
) -> Result<TokenGrant, ConnectError> {
    let grant = code_grant(http, exchange)
        .await
        .map_err(|e| ConnectError::from_provider("code exchange", e))?;
    usable_grant(&grant)?;
    Ok(grant)
}

/// A grant's tokens as registration takes them, checked before either is
/// sent anywhere: a header cannot carry an odd one, and registration would
/// refuse it only after a profile call failed for a reason naming
/// something else.
pub fn usable_grant(grant: &TokenGrant) -> Result<(), ConnectError> {
    usable_token("access_token", grant.access_token.expose())?;
    if let Some(refresh_token) = &grant.refresh_token {
        usable_token("refresh_token", refresh_token.expose())?;
    }
    Ok(())
}

/// `exchange_code`, with the platform's error as classified, for connectors
/// that act on a particular answer (an app its server no longer knows).
pub async fn code_grant(
    http: &HttpClient,
    exchange: CodeExchange<'_>,
) -> Result<TokenGrant, ProviderError> {
    let mut form: Vec<(&str, &str)> = vec![
        ("grant_type", "authorization_code"),
        ("code", exchange.code.expose_secret()),
        ("redirect_uri", exchange.redirect_uri.as_str()),
    ];
    if let Some(verifier) = exchange.code_verifier {
        form.push(("code_verifier", verifier.expose_secret()));
    }
    form.extend(exchange.extra_form.iter().copied());
    let builder = http.inner().post(exchange.token_url.clone());
    let builder = match exchange.client_auth {
        Some(auth) => with_client_auth(
            builder,
            &mut form,
            exchange.client_id,
            exchange.client_secret,
            auth,
        ),
        None => builder,
    };
    let builder = builder
        .header(reqwest::header::ACCEPT, "application/json")
        .form(&form);
    let reply = http.send(builder).await?;
    OAuth2Refresh::interpret(&reply)
}

/// The longest token registration stores.
const MAX_TOKEN_CHARS: usize = 16_384;

/// A token as registration takes it: at most `MAX_TOKEN_CHARS`, without
/// whitespace or control characters inside.
fn usable_token(field: &str, token: &str) -> Result<(), ConnectError> {
    let token = token.trim();
    let why = if token.chars().count() > MAX_TOKEN_CHARS {
        format!("longer than {MAX_TOKEN_CHARS} characters")
    } else if token.chars().any(|c| c.is_whitespace() || c.is_control()) {
        "it holds whitespace or control characters".to_owned()
    } else {
        return Ok(());
    };
    Err(ConnectError::exchange_failed(format!(
        "code exchange: {field} is unusable: {why}"
    )))
}

/// An absolute http(s) URL of a reasonable length (an avatar), or nothing:
/// a platform's `javascript:` or `data:` URL is never passed on.
pub fn web_url(raw: &str) -> Option<String> {
    let raw = raw.trim();
    if raw.len() > 2048 {
        return None;
    }
    let url = Url::parse(raw).ok()?;
    matches!(url.scheme(), "https" | "http").then(|| url.to_string())
}

/// Text for a display name: control characters flattened, shortened.
pub fn display_text(raw: &str) -> Option<String> {
    let text = crate::providers::token_response::short(raw.trim());
    let text = text.trim();
    (!text.is_empty()).then(|| text.to_owned())
}

/// A handle as registration takes it (at most 255 characters, no control
/// characters), or nothing.
pub fn handle_text(raw: &str) -> Option<String> {
    let raw = raw.trim();
    (!raw.is_empty() && raw.chars().count() <= 255 && !raw.chars().any(char::is_control))
        .then(|| raw.to_owned())
}

/// GETs a profile endpoint with the new access token as a bearer token and
/// returns its JSON object.
pub async fn get_profile(
    http: &HttpClient,
    url: Url,
    access_token: &str,
    what: &str,
) -> Result<Map<String, Value>, ConnectError> {
    let builder = http
        .inner()
        .get(url)
        .bearer_auth(access_token)
        .header(reqwest::header::ACCEPT, "application/json");
    let reply = http
        .send(builder)
        .await
        .map_err(|e| ConnectError::from_provider(what, e))?;
    profile_object(&reply, what)
}

/// A 2xx JSON object, or an error naming the status (never the body, which
/// may echo the token).
pub fn profile_object(reply: &HttpReply, what: &str) -> Result<Map<String, Value>, ConnectError> {
    if reply.status >= 500 || reply.status == 429 || reply.status == 408 {
        return Err(ConnectError::platform_unavailable(format!(
            "{what}: HTTP {}",
            reply.status
        )));
    }
    if !(200..300).contains(&reply.status) {
        return Err(ConnectError::identity_failed(format!(
            "{what}: HTTP {}",
            reply.status
        )));
    }
    json_object(reply).map_err(|e| ConnectError::identity_failed(format!("{what}: {}", e.message)))
}

/// A string (or a number, as some platforms send ids) at `path`, non-empty.
pub fn text_at(object: &Map<String, Value>, path: &[&str]) -> Option<String> {
    let (last, parents) = path.split_last()?;
    let mut current = object;
    for key in parents {
        current = current.get(*key)?.as_object()?;
    }
    match current.get(*last)? {
        Value::String(s) if !s.trim().is_empty() => Some(s.trim().to_owned()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// `text_at`, required: an identity without it cannot be registered.
pub fn required_text(
    object: &Map<String, Value>,
    path: &[&str],
    what: &str,
) -> Result<String, ConnectError> {
    text_at(object, path).ok_or_else(|| {
        ConnectError::identity_failed(format!("{what}: {} is missing", path.join(".")))
    })
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;
    use serde_json::json;

    use super::*;
    use crate::json_strategy::{any_json, scalar};

    fn reply(status: u16, body: Vec<u8>) -> HttpReply {
        let mut headers = reqwest::header::HeaderMap::new();
        headers.insert(
            reqwest::header::CONTENT_TYPE,
            reqwest::header::HeaderValue::from_static("application/json"),
        );
        HttpReply {
            status,
            headers,
            body,
        }
    }

    const KEYS: &str = "(data|id|username|name|user|open_id|sub|items|snippet)";

    proptest! {
        /// Any profile answer, any status: read or refused, never a panic,
        /// and a refusal never quotes the body (it may echo the token).
        #[test]
        fn profile_answers_never_panic_or_echo(
            status in prop_oneof![Just(200u16), Just(401u16), Just(429u16), Just(500u16), 100u16..600],
            body in prop_oneof![
                any_json(scalar(), KEYS).prop_map(|v| v.to_string().into_bytes()),
                proptest::collection::vec(any::<u8>(), 0..200),
            ],
        ) {
            let canary = "canary-profile-token";
            let mut body = body;
            body.extend_from_slice(canary.as_bytes());
            match profile_object(&reply(status, body), "profile") {
                Ok(_) => prop_assert!((200..300).contains(&status)),
                Err(e) => prop_assert!(!e.message.contains(canary)),
            }
        }

        /// `text_at` finds only non-empty trimmed text or numbers, at any
        /// depth of any JSON.
        #[test]
        fn text_at_reads_any_shape(value in any_json(scalar(), KEYS)) {
            let object = json!({"data": value.clone(), "id": value});
            let Value::Object(object) = object else { unreachable!() };
            for path in [&["id"][..], &["data", "id"], &["data", "user", "open_id"], &["data", "name"]] {
                if let Some(text) = text_at(&object, path) {
                    prop_assert!(!text.is_empty());
                    prop_assert_eq!(text.trim(), text.as_str());
                }
            }
        }
    }

    #[test]
    fn decorations_are_kept_only_when_sound() {
        assert_eq!(
            web_url(" https://cdn.example/a.jpg ").as_deref(),
            Some("https://cdn.example/a.jpg")
        );
        for odd in [
            "javascript:alert(1)",
            "data:text/html,x",
            "/relative.png",
            "ftp://cdn.example/a",
        ] {
            assert_eq!(web_url(odd), None, "{odd}");
        }
        assert_eq!(
            web_url(&format!("https://cdn.example/{}", "a".repeat(2100))),
            None
        );
        assert_eq!(handle_text(" bob "), Some("bob".to_owned()));
        assert_eq!(handle_text("b\u{0}ob"), None);
        assert_eq!(handle_text(&"h".repeat(256)), None);
        assert_eq!(display_text("Bob\u{0}by").as_deref(), Some("Bob by"));
        assert!(display_text(&"n".repeat(5000)).unwrap().chars().count() <= 301);
        assert_eq!(display_text(" \n "), None);
        assert!(usable_token("access_token", &"a".repeat(16_385)).is_err());
        assert!(usable_token("access_token", "a b").is_err());
        assert!(usable_token("access_token", " ab ").is_ok());
    }

    #[test]
    fn text_at_takes_numbers_and_refuses_blank_text() {
        let object = json!({"a": {"b": 42}, "c": "  ", "d": " x "});
        let Value::Object(object) = object else {
            unreachable!()
        };
        assert_eq!(text_at(&object, &["a", "b"]).as_deref(), Some("42"));
        assert_eq!(text_at(&object, &["c"]), None);
        assert_eq!(text_at(&object, &["d"]).as_deref(), Some("x"));
        assert!(required_text(&object, &["zz"], "what").is_err());
    }
}
