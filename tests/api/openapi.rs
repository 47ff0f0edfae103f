//! The OpenAPI document and the router agree: every route documented, every
//! documented route answered.

use serde_json::Value;
use tokenwarden::domain::AccountId;

use crate::support::{Api, KEY};

#[tokio::test]
async fn every_route_is_in_the_openapi_document_and_every_documented_route_answers() {
    let api = Api::start().await;
    let doc: Value = api
        .fetch_without_key("/openapi.json")
        .await
        .json()
        .await
        .unwrap();
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."));
    let mut documented = Vec::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for method in item.as_object().unwrap().keys() {
            documented.push(format!("{} {path}", method.to_uppercase()));
        }
    }
    documented.sort();
    let mut expected = vec![
        "GET /healthz",
        "GET /readyz",
        "GET /metrics",
        "GET /openapi.json",
        "POST /v1/accounts",
        "GET /v1/accounts",
        "GET /v1/accounts/{id}",
        "DELETE /v1/accounts/{id}",
        "POST /v1/accounts/{id}/refresh",
        "GET /v1/accounts/{id}/access-token",
        "GET /v1/accounts/{id}/attempts",
        "GET /v1/events",
        "POST /v1/accounts:import",
        "POST /v1/connect",
        "GET /v1/connect/callback",
        "POST /v1/connect/exchange",
        "POST /v1/connect/select",
        "GET /oauth/client-metadata.json",
    ];
    expected.sort();
    assert_eq!(documented, expected);

    // Each documented operation is routed (the fallback answers "no such route").
    let id = AccountId::generate();
    for operation in &documented {
        let (method, path) = operation.split_once(' ').unwrap();
        let url = api.url(&path.replace("{id}", id.as_str()));
        let reply = api
            .http
            .request(method.parse().unwrap(), &url)
            .bearer_auth(KEY)
            .send()
            .await
            .unwrap();
        let body = reply.text().await.unwrap();
        assert!(!body.contains("no such route"), "{operation} is not routed");
    }
    let reply = api.fetch("/v1/nothing-here").await;
    let body = reply.text().await.unwrap();
    assert!(
        body.contains("no such route"),
        "the fallback is observable: {body}"
    );

    // Schemas the API tier needs are present.
    for schema in [
        "AccountView",
        "AccountSpec",
        "ErrorBody",
        "EventPayload",
        "AttemptPage",
        "ConnectBody",
        "ConnectStarted",
        "ConnectResult",
    ] {
        assert!(
            doc["components"]["schemas"][schema].is_object(),
            "{schema} documented"
        );
    }
    assert!(doc["components"]["securitySchemes"]["bearer"].is_object());
}
