use proptest::prelude::*;
use serde_json::json;

use super::*;
use crate::json_strategy::{any_json, scalar};

const PLC: &str = "did:plc:ewvi7nxzyoun6zhxrhs64oiz";

fn object(value: Value) -> Map<String, Value> {
    value.as_object().cloned().unwrap()
}

fn origin(text: &str) -> Url {
    Url::parse(text).unwrap()
}

#[test]
fn handles_follow_atproto_syntax() {
    for good in [
        "alice.bsky.social",
        "ALICE.test",
        "xn--ls8h.example",
        "a-b.c-d.ef",
        "a.localhost",
    ] {
        assert_eq!(handle(good), Some(good.to_ascii_lowercase()), "{good}");
    }
    for bad in [
        "",
        "alice",
        "alice.",
        ".alice.test",
        "alice..test",
        "-alice.test",
        "alice-.test",
        "alice.1test",
        "127.0.0.1",
        "alice_b.test",
        "alice.test:443",
        "al ice.test",
        "ålice.test",
        &format!("{}.test", "a".repeat(64)),
        &format!("{}test", "a.".repeat(130)),
    ] {
        assert_eq!(handle(bad), None, "{bad}");
    }
}

#[test]
fn dids_of_the_two_methods_are_read() {
    assert_eq!(did(PLC), Ok(Did::Plc(PLC.into())));
    assert_eq!(
        did("did:web:pds.example.com"),
        Ok(Did::Web {
            did: "did:web:pds.example.com".into(),
            host: "pds.example.com".into()
        })
    );
    assert_eq!(
        did("did:web:Alice.localhost%3A4000").map(|d| match d {
            Did::Web { host, .. } => host,
            Did::Plc(_) => String::new(),
        }),
        Ok("alice.localhost:4000".into())
    );
    for bad in [
        "did:plc:short",
        "did:plc:EWVI7NXZYOUN6ZHXRHS64OIZ",
        "did:plc:ewvi7nxzyoun6zhxrhs64oi1",
        "did:web:",
        "did:web:host%3A0",
        "did:web:a.0",
        "did:web:127.0.0.1",
        "did:web:10.0.0.1%3A8080",
        "did:web:host%3A99999",
        "did:web:host:path",
        "did:web:ho_st.example",
        "did:key:z6Mkabc",
        "did:",
        "did:plc:",
        "plc:abc",
        "did:PLC:ewvi7nxzyoun6zhxrhs64oiz",
    ] {
        assert!(did(bad).is_err(), "{bad}");
    }
    assert!(is_did("did:key:z6Mkabc"));
    assert!(!is_did("did:key:z6Mkabc:"));
}

fn doc() -> Value {
    json!({
        "@context": ["https://www.w3.org/ns/did/v1"],
        "id": PLC,
        "alsoKnownAs": ["https://elsewhere.example", "at://Alice.Test", "at://bob.test"],
        "verificationMethod": [],
        "service": [
            {"id": "#other", "type": "Other", "serviceEndpoint": "https://x.example"},
            {"id": "#atproto_pds", "type": "AtprotoPersonalDataServer", "serviceEndpoint": "https://pds.example.com"}
        ]
    })
}

#[test]
fn a_did_document_names_its_pds_and_first_handle() {
    let read = did_document(PLC, &object(doc())).unwrap();
    assert_eq!(read.pds.as_str(), "https://pds.example.com/");
    assert_eq!(read.handle.as_deref(), Some("alice.test"));

    let mut full_id = doc();
    full_id["service"][1]["id"] = json!(format!("{PLC}#atproto_pds"));
    full_id["alsoKnownAs"] = json!(["at://not a handle", "at://bob.test"]);
    let read = did_document(PLC, &object(full_id)).unwrap();
    assert_eq!(read.handle, None, "the first at:// alias is the handle");
}

#[test]
fn a_did_document_is_refused_with_the_reason() {
    let cases: Vec<(Value, &str)> = vec![
        (json!({"id": "did:plc:aaaaaaaaaaaaaaaaaaaaaaaa"}), "id"),
        (json!({"id": PLC}), "no #atproto_pds"),
        (
            json!({"id": PLC, "service": [{"id": "#atproto_pds", "type": "X", "serviceEndpoint": "https://p.example"}]}),
            "type",
        ),
        (
            json!({"id": PLC, "service": [{"id": "#atproto_pds", "type": "AtprotoPersonalDataServer"}]}),
            "serviceEndpoint",
        ),
        (
            json!({"id": PLC, "service": [{"id": "#atproto_pds", "type": "AtprotoPersonalDataServer", "serviceEndpoint": "https://p.example/xrpc"}]}),
            "origin",
        ),
        (
            json!({"id": PLC, "service": [{"id": "#atproto_pds", "type": "AtprotoPersonalDataServer", "serviceEndpoint": "ftp://p.example"}]}),
            "origin",
        ),
    ];
    for (value, why) in cases {
        let refused = did_document(PLC, &object(value.clone())).unwrap_err();
        assert!(refused.contains(why), "{value}: {refused}");
    }
}

#[test]
fn protected_resource_metadata_names_the_first_server() {
    let pds = origin("https://pds.example.com");
    let body = object(json!({
        "resource": "https://pds.example.com",
        "authorization_servers": ["https://bsky.social", "https://other.example"],
    }));
    assert_eq!(
        protected_resource(&pds, &body).unwrap().as_str(),
        "https://bsky.social/"
    );
    for bad in [
        json!({"authorization_servers": ["https://bsky.social"]}),
        json!({"resource": "https://evil.example", "authorization_servers": ["https://bsky.social"]}),
        json!({"resource": "https://pds.example.com/", "authorization_servers": []}),
        json!({"resource": "https://pds.example.com", "authorization_servers": ["https://bsky.social/oauth"]}),
        json!({"resource": "https://pds.example.com", "authorization_servers": "https://bsky.social"}),
    ] {
        assert!(
            protected_resource(&pds, &object(bad.clone())).is_err(),
            "{bad}"
        );
    }
}

fn server() -> Value {
    json!({
        "issuer": "https://bsky.social",
        "authorization_endpoint": "https://bsky.social/oauth/authorize",
        "token_endpoint": "https://bsky.social/oauth/token",
        "pushed_authorization_request_endpoint": "https://bsky.social/oauth/par",
        "dpop_signing_alg_values_supported": ["RS256", "ES256"],
        "authorization_response_iss_parameter_supported": true,
        "client_id_metadata_document_supported": true,
    })
}

#[test]
fn server_metadata_is_read_and_checked() {
    let issuer = origin("https://bsky.social");
    let read = server_metadata(&issuer, &object(server())).unwrap();
    assert_eq!(read.issuer, "https://bsky.social");
    assert_eq!(read.par_endpoint, "https://bsky.social/oauth/par");
    let mut slash = server();
    slash["issuer"] = json!("https://bsky.social/");
    assert_eq!(
        server_metadata(&issuer, &object(slash)).unwrap().issuer,
        "https://bsky.social/",
        "the issuer as named, for the callback's iss"
    );
    for (field, value, why) in [
        ("issuer", json!("https://evil.example"), "another issuer"),
        ("issuer", json!(null), "issuer"),
        (
            "dpop_signing_alg_values_supported",
            json!(["RS256"]),
            "ES256",
        ),
        (
            "authorization_response_iss_parameter_supported",
            json!(false),
            "iss",
        ),
        (
            "client_id_metadata_document_supported",
            json!("true"),
            "client_id_metadata",
        ),
        ("pushed_authorization_request_endpoint", json!(""), "pushed"),
        ("token_endpoint", json!(7), "token_endpoint"),
    ] {
        let mut body = server();
        body[field] = value;
        let refused = server_metadata(&issuer, &object(body)).unwrap_err();
        assert!(refused.contains(why), "{field}: {refused}");
    }
}

#[test]
fn token_identity_needs_dpop_a_did_and_atproto() {
    let body = json!({"token_type": "dpop", "sub": PLC, "scope": "atproto transition:generic"});
    let read = token_identity(&object(body)).unwrap();
    assert_eq!(read.sub, PLC);
    assert_eq!(read.scopes, ["atproto", "transition:generic"]);
    for bad in [
        json!({"token_type": "Bearer", "sub": PLC, "scope": "atproto"}),
        json!({"token_type": "DPoP", "sub": "alice.test", "scope": "atproto"}),
        json!({"token_type": "DPoP", "scope": "atproto"}),
        json!({"token_type": "DPoP", "sub": PLC, "scope": "transition:generic"}),
        json!({"token_type": "DPoP", "sub": PLC}),
    ] {
        assert!(token_identity(&object(bad.clone())).is_err(), "{bad}");
    }
}

fn document_key() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("id".to_owned()),
        Just("alsoKnownAs".to_owned()),
        Just("service".to_owned()),
        Just("type".to_owned()),
        Just("serviceEndpoint".to_owned()),
        Just("resource".to_owned()),
        Just("authorization_servers".to_owned()),
        Just("issuer".to_owned()),
        Just("token_endpoint".to_owned()),
        Just("dpop_signing_alg_values_supported".to_owned()),
        Just("token_type".to_owned()),
        Just("sub".to_owned()),
        Just("scope".to_owned()),
        Just("request_uri".to_owned()),
        "[a-z_]{1,12}",
    ]
}

fn document_leaf() -> impl Strategy<Value = Value> {
    prop_oneof![
        scalar(),
        Just(json!(PLC)),
        Just(json!("#atproto_pds")),
        Just(json!("AtprotoPersonalDataServer")),
        Just(json!("https://pds.example.com")),
        Just(json!("https://bsky.social")),
        Just(json!("at://alice.test")),
        Just(json!("ES256")),
        Just(json!("DPoP")),
        Just(json!(true)),
        "(https?|at|did)://?[a-zA-Z0-9.:/%#_-]{0,30}".prop_map(Value::from),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2048))]

    /// Any JSON object, from any peer: read or refused, never a panic, and
    /// what is read holds what the flow relies on.
    #[test]
    fn documents_never_panic_and_what_they_yield_is_sound(
        value in any_json(document_leaf(), document_key()),
    ) {
        let Value::Object(body) = value else { return Ok(()); };
        if let Ok(read) = did_document(PLC, &body) {
            prop_assert!(matches!(read.pds.scheme(), "https" | "http"));
            prop_assert_eq!(read.pds.path(), "/");
            if let Some(h) = &read.handle {
                let again = handle(h);
                prop_assert_eq!(again.as_deref(), Some(h.as_str()));
            }
        }
        let pds = origin("https://pds.example.com");
        if let Ok(server) = protected_resource(&pds, &body) {
            prop_assert_eq!(server.path(), "/");
        }
        let issuer = origin("https://bsky.social");
        if let Ok(read) = server_metadata(&issuer, &body) {
            prop_assert!(same_origin(&read.issuer, &issuer));
        }
        if let Ok(identity) = token_identity(&body) {
            prop_assert!(is_did(&identity.sub));
            prop_assert!(identity.scopes.iter().any(|s| s == "atproto"));
        }
        let _ = request_uri(&body);
    }

    /// A valid document or metadata with one member replaced by anything:
    /// read or refused, and what is read is still sound.
    #[test]
    fn one_odd_member_is_read_soundly_or_refused(
        which in 0usize..3,
        field in document_key(),
        value in any_json(document_leaf(), document_key()),
    ) {
        let mut body = [doc(), server(), json!({"token_type": "DPoP", "sub": PLC, "scope": "atproto"})][which].clone();
        body[field.as_str()] = value;
        let body = object(body);
        if let Ok(read) = did_document(PLC, &body) {
            prop_assert_eq!(read.pds.path(), "/");
            prop_assert!(read.pds.query().is_none() && read.pds.username().is_empty());
        }
        let issuer = origin("https://bsky.social");
        if let Ok(read) = server_metadata(&issuer, &body) {
            prop_assert!(same_origin(&read.issuer, &issuer));
            prop_assert!(!read.par_endpoint.is_empty() && !read.token_endpoint.is_empty());
        }
        if let Ok(identity) = token_identity(&body) {
            prop_assert!(is_did(&identity.sub));
        }
    }

    #[test]
    fn identifiers_never_panic(input in "\\PC{0,80}|did:(plc|web):[a-z0-9.%:_-]{0,40}") {
        if let Some(h) = handle(&input) {
            prop_assert!(h.len() <= 253 && h.contains('.'));
            prop_assert!(!h.split('.').next_back().unwrap().starts_with(|c: char| c.is_ascii_digit()));
        }
        if let Ok(read) = did(&input) {
            prop_assert!(is_did(read.as_str()));
            if let Did::Web { host, .. } = read {
                let url = format!("https://{host}");
                prop_assert!(Url::parse(&url).is_ok());
            }
        }
    }
}
