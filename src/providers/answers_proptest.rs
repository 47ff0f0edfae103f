//! Property tests: every platform's reading of an answer, fed any status,
//! any headers a platform sends and any body (any bytes, any JSON with the
//! fields platforms use, any numbers and strings in them). Property: no
//! panic, and either a typed error or a grant whose values are usable (a
//! non-empty access token, lifetimes inside the documented range).

use proptest::prelude::*;
use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use serde_json::Value;

use super::lifetime;
use super::{HttpReply, TokenGrant};
use crate::json_strategy;

const FIELDS: &[&str] = &[
    "access_token",
    "refresh_token",
    "expires_in",
    "refresh_token_expires_in",
    "refresh_expires_in",
    "scope",
    "token_type",
    "error",
    "error_description",
    "message",
    "code",
    "data",
    "accessJwt",
    "refreshJwt",
    "active",
    "status",
    "is_valid",
    "expires_at",
    "error_subcode",
    "type",
    "open_id",
];

const HEADERS: &[&str] = &[
    "retry-after",
    "x-rate-limit-reset",
    "ratelimit-reset",
    "x-ratelimit-reset",
    "x-app-usage",
    "x-business-use-case-usage",
    "www-authenticate",
    "dpop-nonce",
    "content-type",
];

/// Any scalar, or a JWT-shaped string whose payload carries any `exp`.
fn scalar_or_jwt() -> impl Strategy<Value = Value> {
    prop_oneof![
        json_strategy::scalar(),
        (any::<i64>(), any::<f64>()).prop_map(|(a, b)| {
            use base64::Engine as _;
            let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
            let exp = if a % 2 == 0 {
                Value::from(a)
            } else {
                serde_json::json!(b)
            };
            let payload = b64.encode(serde_json::json!({"exp": exp}).to_string());
            Value::from(format!("eyJhbGciOiJFUzI1NiJ9.{payload}.c2ln"))
        }),
    ]
}

fn json_value() -> impl Strategy<Value = Value> {
    json_strategy::any_json(
        scalar_or_jwt(),
        prop::sample::select(FIELDS).prop_map(str::to_owned),
    )
}

fn body() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        prop::collection::vec(any::<u8>(), 0..64),
        json_value().prop_map(|v| v.to_string().into_bytes()),
        prop::collection::vec((prop::sample::select(FIELDS), json_value()), 0..8).prop_map(
            |pairs| {
                Value::Object(pairs.into_iter().map(|(k, v)| (k.to_owned(), v)).collect())
                    .to_string()
                    .into_bytes()
            }
        ),
    ]
}

fn reply() -> impl Strategy<Value = HttpReply> {
    (
        prop_oneof![100u16..600, Just(200u16), Just(400), Just(401), Just(429)],
        prop::collection::vec(
            (
                prop::sample::select(HEADERS),
                prop_oneof![
                    "[ -~]{0,40}",
                    any::<i64>().prop_map(|n| n.to_string()),
                    Just("Wed, 21 Oct 2015 07:28:00 GMT".to_owned()),
                    Just("application/json".to_owned()),
                ],
            ),
            0..4,
        ),
        body(),
    )
        .prop_map(|(status, headers, body)| {
            let mut map = HeaderMap::new();
            for (name, value) in headers {
                if let Ok(value) = HeaderValue::from_str(&value) {
                    map.append(HeaderName::from_static(name), value);
                }
            }
            HttpReply {
                status,
                headers: map,
                body,
            }
        })
}

type ReadGrant = fn(&HttpReply) -> Result<TokenGrant, super::ProviderError>;

fn usable(grant: &TokenGrant) -> Result<(), TestCaseError> {
    prop_assert!(!grant.access_token.expose().trim().is_empty());
    for lifetime in [grant.expires_in, grant.refresh_token_expires_in]
        .into_iter()
        .flatten()
    {
        prop_assert!((lifetime::MIN..=lifetime::MAX).contains(&lifetime));
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(4096))]

    #[test]
    fn every_platforms_reading_of_any_answer_is_total(reply in reply()) {
        let token_endpoints: [ReadGrant; 5] = [
            super::OAuth2Refresh::interpret,
            super::long_lived::interpret,
            super::tiktok::interpret,
            super::bluesky::interpret_session,
            super::bluesky::interpret_oauth,
        ];
        for interpret in token_endpoints {
            if let Ok(grant) = interpret(&reply) {
                usable(&grant)?;
            }
        }
        // Platform-specific error readings in front of the generic one.
        let _ = super::x::classify(&reply);
        let _ = super::google::classify(&reply);
        let _ = super::pinterest::classify(&reply);
        let _ = super::linkedin::classify(&reply);
        let _ = super::graph::graph_error(&reply);
        // Health checks.
        let _ = super::mastodon::interpret(&reply);
        let _ = super::facebook::interpret_debug(&reply);
        let _ = super::linkedin::interpret_introspection(&reply);
        let _ = reply.retry_after();
    }
}
