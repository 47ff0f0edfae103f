//! Whole bodies, parsed and validated as the API and the CLI do: any JSON,
//! any bytes, any value in any field.

use chrono::{DateTime, TimeDelta, Utc};
use proptest::prelude::*;
use serde_json::{Value, json};

use super::{MAX_EXPIRY_DISTANCE, MAX_LIFETIME_SECS, SpecError, parse_spec};
use crate::json_strategy::{any_json, scalar};
use crate::store::accounts::NewAccount;

fn base() -> Value {
    json!({
        "workspace_id": "ws",
        "provider": "X",
        "external_id": "e1",
        "handle": "@h",
        "scopes": ["a", "b"],
        "meta": {"k": "v"},
        "credentials": {"access_token": "at", "refresh_token": "rt", "expires_in": 3600}
    })
}

/// Parse and validate as the API and the CLI do: either an account or a
/// field error; the field is never empty.
fn check(body: &[u8]) -> Result<NewAccount, String> {
    let now = Utc::now();
    match parse_spec(body) {
        Err(SpecError::Syntax(message)) => Err(format!("syntax: {message}")),
        Err(SpecError::Field(e)) => {
            assert!(!e.field.is_empty());
            Err(e.field)
        }
        Ok(spec) => spec.into_new_account(now).map_err(|e| {
            assert!(!e.field.is_empty());
            e.field
        }),
    }
}

const STRING_FIELDS: [&str; 9] = [
    "workspace_id",
    "external_id",
    "handle",
    "display_name",
    "avatar_url",
    "default_board_id",
    "credentials.access_token",
    "credentials.refresh_token",
    "credentials.dpop_private_jwk",
];

fn set(body: &mut Value, dotted: &str, value: Value) {
    match dotted.split_once('.') {
        Some((outer, inner)) => body[outer][inner] = value,
        None => body[dotted] = value,
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1000))]

    /// Any JSON at all, as the whole body or in any field.
    #[test]
    fn any_json_body_is_an_account_or_a_field_error(value in any_json(scalar(), "[a-z_]{1,20}|.{0,20}")) {
        let _ = check(value.to_string().as_bytes());
    }

    #[test]
    fn any_json_in_any_field(field in prop::sample::select(vec![
        "workspace_id", "provider", "external_id", "handle", "display_name", "avatar_url",
        "connection_type", "scopes", "meta", "default_board_id", "credentials",
        "credentials.access_token", "credentials.refresh_token", "credentials.expires_in",
        "credentials.token_expires_at", "credentials.refresh_token_expires_at",
        "credentials.dpop_private_jwk",
    ]), value in any_json(scalar(), "[a-z_]{1,20}|.{0,20}")) {
        let mut body = base();
        set(&mut body, field, value);
        if let Err(named) = check(body.to_string().as_bytes()) {
            // A platform's own expiry rules (Mastodon: none; Bluesky:
            // required) answer on the expiry field.
            prop_assert!(named.starts_with(field.split('.').next().unwrap())
                || named == "body"
                || (field == "provider" && named.starts_with("credentials.")),
                "{field} -> {named}");
        }
    }

    /// Any bytes: no panic.
    #[test]
    fn any_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
        let _ = check(&bytes);
    }

    /// Any number as a lifetime: inside 1 s ... 10 years, or refused
    /// naming the field.
    #[test]
    fn any_lifetime(seconds in prop_oneof![any::<i64>(), -10i64..=MAX_LIFETIME_SECS + 10],
                    float in any::<f64>(), use_float in any::<bool>()) {
        let mut body = base();
        let value = if use_float {
            serde_json::Number::from_f64(float).map_or(Value::Null, Value::Number)
        } else {
            Value::from(seconds)
        };
        body["credentials"]["expires_in"] = value.clone();
        match check(body.to_string().as_bytes()) {
            Ok(account) => {
                if let Some(at) = account.token_expires_at {
                    let lifetime = at - account.token_issued_at;
                    prop_assert!(lifetime >= TimeDelta::seconds(1));
                    prop_assert!(lifetime <= MAX_EXPIRY_DISTANCE);
                } else {
                    prop_assert!(value.is_null());
                }
            }
            Err(field) => prop_assert_eq!(field, "credentials.expires_in"),
        }
    }

    /// Any instant chrono can hold as an expiry: clamped to ten years.
    #[test]
    fn any_expiry_date(seconds in -8_200_000_000_000i64..8_200_000_000_000i64) {
        let Some(at) = DateTime::from_timestamp(seconds, 0) else { return Ok(()); };
        let mut body = base();
        body["credentials"]["expires_in"] = Value::Null;
        body["credentials"]["token_expires_at"] = json!(at);
        body["credentials"]["refresh_token_expires_at"] = json!(at);
        let account = check(body.to_string().as_bytes()).unwrap();
        let now = account.token_issued_at;
        for at in [account.token_expires_at.unwrap(), account.refresh_token_expires_at.unwrap()] {
            prop_assert!((at - now).abs() <= MAX_EXPIRY_DISTANCE);
        }
    }

    /// Any string in any string field: accepted, or refused naming that
    /// field, never repeating it.
    #[test]
    fn any_string(field in prop::sample::select(STRING_FIELDS.to_vec()),
                  text in prop_oneof![".{0,300}", "[\\x00-\\x20a-z]{0,20}", "\\PC{0,2000}"]) {
        let mut body = base();
        set(&mut body, field, Value::from(text.clone()));
        let raw = body.to_string();
        match parse_spec(raw.as_bytes()) {
            Err(e) => panic!("a string is always a string: {e}"),
            Ok(spec) => match spec.into_new_account(Utc::now()) {
                Ok(account) => {
                    prop_assert!(!account.workspace_id.contains('\0'));
                    prop_assert!(!account.meta.to_string().contains("\\u0000"));
                }
                Err(e) => {
                    prop_assert_eq!(&e.field, field);
                    if text.trim().chars().count() >= 8 {
                        prop_assert!(!e.to_string().contains(text.trim()), "echoed");
                    }
                }
            },
        }
    }
}

#[test]
fn meta_nests_at_most_three_levels() {
    let mut body = base();
    body["meta"] = json!({"a": {"b": [1, "x"]}});
    assert!(check(body.to_string().as_bytes()).is_ok());
    body["meta"] = json!({"a": {"b": [[1]]}});
    assert_eq!(
        check(body.to_string().as_bytes()).unwrap_err(),
        "meta.a.b[0]"
    );
}
