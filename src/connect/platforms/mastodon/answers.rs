//! Reading a Mastodon instance's answers to the connect flow: the app
//! registration (`POST /api/v1/apps`) and the account
//! (`GET /api/v1/accounts/verify_credentials`). The instance is chosen by the
//! user, so everything in them is untrusted: values are bounded, and an
//! optional field that is unusable is left out rather than refusing the
//! account.

use secrecy::SecretString;
use serde_json::{Map, Value};
use url::Url;

use crate::connect::ConnectError;
use crate::connect::exchange::text_at;
use crate::providers::HttpReply;
use crate::providers::token_response::{json_object, short};

/// Client ids and secrets are 43 characters at Mastodon; this leaves room
/// for other servers and refuses a body that is no credential.
const MAX_CREDENTIAL: usize = 512;
/// The account id goes into `external_id` (255) with the instance host.
const MAX_ACCOUNT_ID: usize = 64;
const MAX_USERNAME: usize = 64;
const MAX_DISPLAY_NAME: usize = 1024;
const MAX_URL: usize = 2048;

/// An app the instance registered for the daemon.
pub struct RegisteredApp {
    pub client_id: String,
    pub client_secret: SecretString,
}

impl std::fmt::Debug for RegisteredApp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RegisteredApp")
            .field("client_id", &self.client_id)
            .field("client_secret", &"[redacted]")
            .finish()
    }
}

/// `POST /api/v1/apps`: 200 with `client_id` and `client_secret`; 422 with
/// `{"error": "Validation failed: ..."}` when the instance refuses the
/// callback or the scopes.
pub fn registered_app(reply: &HttpReply) -> Result<RegisteredApp, ConnectError> {
    let status = reply.status;
    if status >= 500 || status == 429 || status == 408 {
        return Err(ConnectError::platform_unavailable(format!(
            "app registration: HTTP {status}"
        )));
    }
    if !(200..300).contains(&status) {
        // The instance's own words, shortened: they name what it refused
        // (the callback, a scope) and hold nothing of ours that is secret.
        let said = json_object(reply)
            .ok()
            .and_then(|body| body.get("error").and_then(Value::as_str).map(short));
        return Err(ConnectError::invalid_request(match said {
            Some(text) if !text.is_empty() => {
                format!("the instance refused to register this app: HTTP {status}: {text}")
            }
            _ => format!(
                "the instance refused to register this app: HTTP {status} (is it a Mastodon server?)"
            ),
        }));
    }
    let body = json_object(reply).map_err(|e| unusable_registration(&e.message))?;
    let client_id = credential(&body, "client_id")?;
    let client_secret = credential(&body, "client_secret")?;
    Ok(RegisteredApp {
        client_id,
        client_secret: SecretString::from(client_secret),
    })
}

fn credential(body: &Map<String, Value>, field: &str) -> Result<String, ConnectError> {
    match body.get(field) {
        Some(Value::String(value))
            if !value.is_empty()
                && value.chars().count() <= MAX_CREDENTIAL
                && value.chars().all(|c| c.is_ascii_graphic()) =>
        {
            Ok(value.clone())
        }
        Some(_) => Err(unusable_registration(&format!(
            "{field} is not a token of at most {MAX_CREDENTIAL} printable characters"
        ))),
        None => Err(unusable_registration(&format!("{field} is missing"))),
    }
}

fn unusable_registration(why: &str) -> ConnectError {
    ConnectError::invalid_request(format!(
        "the instance's answer to the app registration is unusable: {why}"
    ))
}

/// The account a token belongs to, as `verify_credentials` names it.
#[derive(Debug, PartialEq, Eq)]
pub struct Identity {
    /// The account id, unique on its instance only.
    pub id: String,
    pub username: Option<String>,
    pub display_name: Option<String>,
    pub avatar_url: Option<String>,
}

pub fn identity(account: &Map<String, Value>) -> Result<Identity, ConnectError> {
    let id = text_at(account, &["id"])
        .ok_or_else(|| ConnectError::identity_failed("verify_credentials: id is missing"))?;
    if id.chars().count() > MAX_ACCOUNT_ID || !id.chars().all(|c| c.is_ascii_graphic()) {
        return Err(ConnectError::identity_failed(format!(
            "verify_credentials: id is not an identifier of at most {MAX_ACCOUNT_ID} printable characters"
        )));
    }
    let username = text_at(account, &["username"]).filter(|name| {
        name.chars().count() <= MAX_USERNAME
            && !name
                .chars()
                .any(|c| c.is_whitespace() || c.is_control() || c == '@')
    });
    let display_name = text_at(account, &["display_name"])
        .filter(|name| name.chars().count() <= MAX_DISPLAY_NAME && !name.contains('\0'));
    let avatar_url = text_at(account, &["avatar"]).filter(|url| {
        url.len() <= MAX_URL
            && Url::parse(url).is_ok_and(|u| matches!(u.scheme(), "https" | "http"))
    });
    Ok(Identity {
        id,
        username,
        display_name,
        avatar_url,
    })
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;
    use reqwest::header::HeaderMap;
    use secrecy::ExposeSecret;
    use serde_json::json;

    use super::*;
    use crate::json_strategy;

    fn reply(status: u16, body: &Value) -> HttpReply {
        HttpReply {
            status,
            headers: HeaderMap::new(),
            body: body.to_string().into_bytes(),
        }
    }

    /// An object whose keys are the fields these answers use, or others,
    /// holding any value.
    fn any_object() -> impl Strategy<Value = Value> {
        let key = prop_oneof![
            prop::sample::select(FIELDS).prop_map(str::to_owned),
            "[a-z_]{1,12}",
        ];
        prop::collection::btree_map(
            key.clone(),
            json_strategy::any_json(json_strategy::scalar(), key),
            0..8,
        )
        .prop_map(|m| Value::Object(m.into_iter().collect()))
    }

    #[test]
    fn reads_mastodons_app_answer() {
        let app = registered_app(&reply(
            200,
            &json!({
                "id": "563419", "name": "tokenwarden", "website": null,
                "scopes": ["read:accounts"], "redirect_uri": "https://t.example/cb",
                "redirect_uris": ["https://t.example/cb"],
                "client_id": "TWhM-tNSuncnqN7DBJmoyeLnk6K3iJJ71KKXxgL1hPM",
                "client_secret": "ZEaFUFmF0umgBX1qKJDjaU99Q31lDkOU8NutzTOoliw",
                "client_secret_expires_at": 0
            }),
        ))
        .unwrap();
        assert_eq!(app.client_id, "TWhM-tNSuncnqN7DBJmoyeLnk6K3iJJ71KKXxgL1hPM");
        assert_eq!(
            app.client_secret.expose_secret(),
            "ZEaFUFmF0umgBX1qKJDjaU99Q31lDkOU8NutzTOoliw"
        );
        assert!(!format!("{app:?}").contains("ZEaF"));
    }

    #[test]
    fn a_refused_registration_names_the_instances_reason() {
        let err = registered_app(&reply(
            422,
            &json!({"error": "Validation failed: Redirect URI must be an absolute URI."}),
        ))
        .unwrap_err();
        assert_eq!(err.code, "invalid_request");
        assert!(err.message.contains("Redirect URI"), "{}", err.message);
        let err = registered_app(&reply(503, &json!({}))).unwrap_err();
        assert_eq!(err.code, "platform_unavailable");
        let err = registered_app(&reply(200, &json!({"client_id": "a"}))).unwrap_err();
        assert!(
            err.message.contains("client_secret is missing"),
            "{}",
            err.message
        );
        let err = registered_app(&reply(
            200,
            &json!({"client_id": "a b", "client_secret": "c"}),
        ))
        .unwrap_err();
        assert!(err.message.contains("client_id"), "{}", err.message);
    }

    #[test]
    fn reads_verify_credentials() {
        let account = json!({
            "id": "109382", "username": "alice", "acct": "alice",
            "display_name": "Alice", "avatar": "https://files.example/a.png"
        });
        assert_eq!(
            identity(account.as_object().unwrap()).unwrap(),
            Identity {
                id: "109382".into(),
                username: Some("alice".into()),
                display_name: Some("Alice".into()),
                avatar_url: Some("https://files.example/a.png".into()),
            }
        );
        // Unusable optional fields are left out; the account still lands.
        let odd = json!({"id": 7, "username": "a b", "display_name": "", "avatar": "/missing.png"});
        assert_eq!(
            identity(odd.as_object().unwrap()).unwrap(),
            Identity {
                id: "7".into(),
                username: None,
                display_name: None,
                avatar_url: None,
            }
        );
        let err = identity(json!({"username": "alice"}).as_object().unwrap()).unwrap_err();
        assert_eq!(err.code, "identity_failed");
    }

    const FIELDS: &[&str] = &[
        "id",
        "username",
        "acct",
        "display_name",
        "avatar",
        "client_id",
        "client_secret",
        "error",
    ];

    proptest! {
        /// Any answer: no panic; a registration either fails with a code or
        /// carries printable, bounded credentials.
        #[test]
        fn any_app_answer_is_read_safely(
            status in prop_oneof![Just(200u16), Just(422), 100u16..600],
            body in any_object(),
            raw in prop::collection::vec(any::<u8>(), 0..64),
            use_raw in any::<bool>(),
        ) {
            let bytes = if use_raw { raw } else { body.to_string().into_bytes() };
            let reply = HttpReply { status, headers: HeaderMap::new(), body: bytes };
            match registered_app(&reply) {
                Ok(app) => {
                    prop_assert!((200..300).contains(&status));
                    for value in [app.client_id.as_str(), app.client_secret.expose_secret()] {
                        prop_assert!(!value.is_empty() && value.len() <= MAX_CREDENTIAL);
                        prop_assert!(value.chars().all(|c| c.is_ascii_graphic()));
                    }
                }
                Err(e) => prop_assert!(!e.message.is_empty()),
            }
        }

        /// Any account object: no panic; what is kept passes registration's
        /// own checks.
        #[test]
        fn any_account_is_read_safely(body in any_object()) {
            let Value::Object(account) = body else { return Ok(()) };
            if let Ok(identity) = identity(&account) {
                prop_assert!(!identity.id.is_empty() && identity.id.chars().count() <= MAX_ACCOUNT_ID);
                if let Some(url) = &identity.avatar_url {
                    prop_assert!(Url::parse(url).is_ok());
                }
                if let Some(name) = &identity.username {
                    prop_assert!(!name.chars().any(char::is_control));
                }
            }
        }
    }
}
