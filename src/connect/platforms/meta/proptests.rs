//! Property tests of the readers of Meta's answers: any status, any body
//! (any bytes, any JSON built from the fields Meta uses). Properties: no
//! panic; an error never echoes the body; whatever is read is usable (ids
//! and tokens fit to register and to send back).

use proptest::prelude::*;
use secrecy::ExposeSecret;
use serde_json::Value;

use super::answers::{Step, issued_token, read_object, usable_id, usable_token};
use super::pages;
use crate::json_strategy;
use crate::providers::HttpReply;

const FIELDS: &[&str] = &[
    "access_token",
    "token_type",
    "expires_in",
    "user_id",
    "permissions",
    "data",
    "error",
    "error_type",
    "error_message",
    "error_description",
    "message",
    "code",
    "error_subcode",
    "type",
    "id",
    "name",
    "picture",
    "url",
    "instagram_business_account",
    "username",
    "profile_picture_url",
    "paging",
    "cursors",
    "after",
    "next",
];

/// A marker no parser may copy into an error.
const SECRET: &str = "EAAsecretMARKERtoken";

fn leaf() -> impl Strategy<Value = Value> {
    prop_oneof![
        json_strategy::scalar(),
        Just(Value::from(SECRET)),
        Just(Value::from("https://scontent.example/p.jpg")),
    ]
}

fn json_value() -> impl Strategy<Value = Value> {
    json_strategy::any_json(leaf(), prop::sample::select(FIELDS).prop_map(str::to_owned))
}

fn object() -> impl Strategy<Value = serde_json::Map<String, Value>> {
    prop::collection::vec((prop::sample::select(FIELDS), json_value()), 0..8)
        .prop_map(|fields| fields.into_iter().map(|(k, v)| (k.to_owned(), v)).collect())
}

fn body() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        prop::collection::vec(any::<u8>(), 0..64),
        json_value().prop_map(|v| v.to_string().into_bytes()),
        object().prop_map(|o| Value::Object(o).to_string().into_bytes()),
    ]
}

fn step() -> impl Strategy<Value = Step> {
    prop::sample::select(vec![
        Step::CodeExchange,
        Step::LongLivedExchange,
        Step::Permissions,
        Step::Pages,
        Step::Profile,
    ])
}

/// Whether the body carries the marker where Meta puts its own text (the
/// only text an error may quote).
fn quotes_secret(body: &[u8]) -> bool {
    let Ok(Value::Object(body)) = serde_json::from_slice::<Value>(body) else {
        return false;
    };
    let holds = |v: Option<&Value>| {
        v.and_then(Value::as_str)
            .is_some_and(|s| s.contains(SECRET))
    };
    holds(body.get("error"))
        || holds(body.get("error").and_then(|e| e.get("message")))
        || ["error_description", "error_type", "error_message"]
            .iter()
            .any(|k| holds(body.get(*k)))
}

proptest! {
    #[test]
    fn any_answer_is_read_or_refused_without_echoing_it(
        status in prop_oneof![Just(200u16), Just(400u16), Just(429u16), Just(500u16), 100u16..600],
        body in body(),
        step in step(),
    ) {
        let reply = HttpReply { status, headers: Default::default(), body };
        match read_object(&reply, step) {
            Ok(_) => prop_assert!((200..300).contains(&status)),
            Err(error) => {
                if error.message.contains(SECRET) {
                    prop_assert!(quotes_secret(&reply.body), "{}", error.message);
                }
                prop_assert!(error.message.starts_with(step.name()), "{}", error.message);
                prop_assert!(["exchange_failed", "identity_failed", "platform_unavailable"].contains(&error.code));
            }
        }
    }

    #[test]
    fn a_token_read_is_usable(body in object(), step in step()) {
        if let Ok(token) = issued_token(&body, step) {
            prop_assert!(usable_token(token.access_token.expose_secret()));
            if let Some(id) = &token.user_id {
                prop_assert!(usable_id(id));
            }
            for permission in token.permissions.unwrap_or_default() {
                prop_assert!(usable_id(&permission));
            }
        }
    }

    #[test]
    fn pages_read_are_usable(body in object()) {
        if let Ok(listed) = pages::parse(&body) {
            for page in &listed.pages {
                prop_assert!(usable_id(&page.id));
                if let Some(token) = &page.access_token {
                    prop_assert!(usable_token(token.expose_secret()));
                }
                if let Some(url) = &page.picture_url {
                    prop_assert!(url::Url::parse(url).is_ok());
                }
                if let Some(ig) = &page.instagram {
                    prop_assert!(usable_id(&ig.id));
                }
            }
            if let Some(after) = &listed.after {
                prop_assert!(usable_id(after));
            }
        }
    }
}
