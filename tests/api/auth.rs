//! Authentication: every `/v1` request needs a configured key as a bearer
//! credential.

use reqwest::StatusCode;

use crate::support::{Api, KEY, OLD_KEY, error_of};

#[tokio::test]
async fn requests_without_a_valid_key_get_401_and_old_keys_still_work() {
    let api = Api::start().await;
    let url = api.url("/v1/accounts");
    let reply = api.http.get(&url).send().await.unwrap();
    assert!(reply.headers().contains_key("www-authenticate"));
    let (status, body) = error_of(reply).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(body["error"]["code"], "unauthorized");

    let reply = api
        .http
        .get(&url)
        .bearer_auth("wrong-key-but-long-enough")
        .send()
        .await
        .unwrap();
    assert_eq!(reply.status(), StatusCode::UNAUTHORIZED);
    let reply = api
        .http
        .get(&url)
        .header("authorization", KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(
        reply.status(),
        StatusCode::UNAUTHORIZED,
        "not a bearer credential"
    );

    for key in [KEY, OLD_KEY] {
        let reply = api.http.get(&url).bearer_auth(key).send().await.unwrap();
        assert_eq!(
            reply.status(),
            StatusCode::OK,
            "configured keys are accepted"
        );
    }
}

#[tokio::test]
async fn a_daemon_without_keys_refuses_every_v1_request() {
    let api = Api::with(|s| s.api.keys = None).await;
    let reply = api.fetch("/v1/accounts").await;
    assert_eq!(reply.status(), StatusCode::UNAUTHORIZED);
}

/// Defect 10: the auth scheme is case-insensitive.
#[tokio::test]
async fn the_bearer_scheme_is_case_insensitive() {
    let api = Api::start().await;
    let with_authorization = |value: String| {
        api.http
            .get(api.url("/v1/accounts"))
            .header("authorization", value)
            .send()
    };
    for scheme in ["Bearer", "bearer", "BEARER", "bEaReR"] {
        let reply = with_authorization(format!("{scheme} {KEY}")).await.unwrap();
        assert_eq!(reply.status(), StatusCode::OK, "{scheme}");
    }
    let reply = with_authorization(format!("Basic {KEY}")).await.unwrap();
    assert_eq!(reply.status(), StatusCode::UNAUTHORIZED);
}
