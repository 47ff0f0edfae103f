//! Error answers (defects 8 and 10): every error is JSON with a code of its
//! own and never repeats the value that caused it; a panicking handler is a
//! JSON 500 and the server goes on.

use chrono::{TimeDelta, Utc};
use reqwest::StatusCode;
use serde_json::json;
use tokenwarden::api;

use crate::common::rotating;
use crate::support::{Api, Edit, count_accounts, error_of, spec};

/// Defects 8 and 10: every error is `{"error": {...}}` with its own code,
/// `Allow` stays on 405, serde-level errors name the field, and a value in
/// the wrong place is never repeated.
#[tokio::test]
async fn every_error_is_json_with_its_own_code_and_never_repeats_the_value() {
    let api = Api::start().await;
    let tokens = api.env.fake.issue(rotating());
    let secret = "ya29.A0ARrdaM-9f8e7d6c5b4a3210ZYXWVU";

    let reply = api.delete("/v1/events").send().await.unwrap();
    let allow = reply.headers().get("allow").cloned();
    let (status, error) = error_of(reply).await;
    assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(error["error"]["code"], "method_not_allowed");
    assert!(allow.unwrap().to_str().unwrap().contains("GET"));

    let reply = api.http.put(api.url("/healthz")).send().await.unwrap();
    assert!(reply.headers().contains_key("allow"));
    assert_eq!(error_of(reply).await.0, StatusCode::METHOD_NOT_ALLOWED);

    let (status, error) = error_of(api.fetch("/nothing/here").await).await;
    assert_eq!(
        (status, error["error"]["code"].as_str()),
        (StatusCode::NOT_FOUND, Some("not_found"))
    );

    let (status, error) = error_of(api.fetch("/v1/accounts/%ff").await).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{error}");
    assert_eq!(error["error"]["field"], "id");

    // Body problems, each with its own code.
    let reply = api
        .post("/v1/accounts")
        .header("content-type", "text/plain")
        .body(spec("e", &tokens, 60).to_string())
        .send()
        .await
        .unwrap();
    let (status, error) = error_of(reply).await;
    assert_eq!(status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    assert_eq!(error["error"]["code"], "unsupported_media_type");
    let mut big = spec("e", &tokens, 60);
    big["display_name"] = json!("x".repeat(100 * 1024));
    let (status, error) = error_of(api.post_account(&big).await).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(error["error"]["code"], "payload_too_large");
    let reply = api
        .post("/v1/accounts")
        .header("content-type", "application/json")
        .body(format!("{{\"workspace_id\": \"{secret}"))
        .send()
        .await
        .unwrap();
    let (status, error) = error_of(reply).await;
    assert_eq!(
        (status, error["error"]["code"].as_str()),
        (StatusCode::BAD_REQUEST, Some("invalid_json"))
    );
    assert!(!error.to_string().contains(secret), "{error}");

    // serde-level 422s carry error.field; misplaced values are not echoed.
    let misplaced: Vec<(Edit, &str)> = vec![
        (
            Box::new(|s| s["credentials"]["expires_in"] = json!(secret)),
            "credentials.expires_in",
        ),
        (Box::new(|s| s["provider"] = json!(secret)), "provider"),
        (
            Box::new(|s| s["connection_type"] = json!(secret)),
            "connection_type",
        ),
        (Box::new(|s| s["scopes"] = json!(secret)), "scopes"),
        (
            Box::new(|s| s["credentials"]["token_expires_at"] = json!(secret)),
            "credentials.token_expires_at",
        ),
        (
            Box::new(|s| s["credentials"][secret] = json!(1)),
            "credentials.(unknown key)",
        ),
        (Box::new(|s| s[secret] = json!(1)), "(unknown key)"),
        (Box::new(|s| s["colour"] = json!(secret)), "colour"),
        (
            Box::new(|s| {
                s.as_object_mut().unwrap().remove("workspace_id");
            }),
            "workspace_id",
        ),
        (
            Box::new(|s| s["credentials"]["dpop_private_jwk"] = json!(secret)),
            "credentials.dpop_private_jwk",
        ),
    ];
    for (edit, field) in misplaced {
        let mut body = spec("e", &tokens, 60);
        edit(&mut body);
        let (status, error) = error_of(api.post_account(&body).await).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{error}");
        assert_eq!(error["error"]["field"], field, "{error}");
        assert!(!error.to_string().contains(secret), "echoed: {error}");
        assert!(!error.to_string().contains("ya29"), "echoed: {error}");
    }
    let encoded = secret.replace('.', "%2E");
    for (path, field) in [
        (format!("/v1/accounts?provider={encoded}"), "provider"),
        (format!("/v1/accounts?status={encoded}"), "status"),
        (format!("/v1/accounts?limit={encoded}"), "limit"),
        (
            format!("/v1/accounts?include_disconnected={encoded}"),
            "include_disconnected",
        ),
        (format!("/v1/accounts?cursor={encoded}"), "cursor"),
        (format!("/v1/events?after={encoded}"), "after"),
        (format!("/v1/events?limit=1&limit={encoded}"), "limit"),
    ] {
        let (status, error) = error_of(api.fetch(&path).await).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{path}: {error}");
        assert_eq!(error["error"]["field"], field, "{path}: {error}");
        assert!(!error.to_string().contains(secret), "echoed: {error}");
    }
    for path in [
        format!("/v1/accounts/{secret}"),
        format!("/v1/accounts/{secret}/attempts"),
        format!("/v1/accounts/acc_{secret}/access-token"),
    ] {
        let (status, error) = error_of(api.fetch(&path).await).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{path}");
        assert!(
            !error.to_string().contains("9f8e7d6c5b4a"),
            "echoed: {error}"
        );
    }
    assert_eq!(count_accounts(&api).await, 0);
}

/// The safety net: a handler that panics answers a JSON 500, and the
/// server goes on serving.
#[tokio::test]
async fn a_panicking_handler_answers_json_500_and_the_server_goes_on() {
    use axum::routing::get;
    let app = axum::Router::new()
        .route(
            "/boom",
            get(|| async {
                let far = Utc::now() + TimeDelta::seconds(8_300_000_000_000);
                far.to_rfc3339()
            }),
        )
        .route("/fine", get(|| async { "fine" }))
        .layer(axum::middleware::from_fn(api::json_errors))
        .layer(axum::middleware::from_fn(api::catch_panic));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    tokenwarden::metrics::install();
    let http = reqwest::Client::new();
    let reply = http.get(format!("{base}/boom")).send().await.unwrap();
    let (status, error) = error_of(reply).await;
    assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(error["error"]["code"], "internal");
    let reply = http.get(format!("{base}/fine")).send().await.unwrap();
    assert_eq!(reply.status(), StatusCode::OK);
    assert!(
        tokenwarden::metrics::render().contains("tokenwarden_http_panics_total"),
        "counted"
    );
}
