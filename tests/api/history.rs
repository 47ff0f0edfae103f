//! What happened to accounts: an account's refresh attempts, and the stream
//! of status-change events read after a cursor.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::Value;
use tokenwarden_fakes::ScriptedResponse;

use crate::support::{Api, error_of};

#[tokio::test]
async fn attempts_are_paginated_newest_first_with_counts() {
    let api = Api::with(|s| s.api.force_refresh_min_interval = Duration::from_millis(1)).await;
    let (id, _) = api.connect_x("a1", 3600).await;
    for _ in 0..3 {
        tokio::time::sleep(Duration::from_millis(5)).await;
        assert_eq!(api.force_refresh(&id).await.status(), StatusCode::OK);
    }
    api.env
        .fake
        .script_next(ScriptedResponse::raw(503, "text/plain", "down"));
    tokio::time::sleep(Duration::from_millis(5)).await;
    api.force_refresh(&id).await;

    let page: Value = api
        .get_json(&format!("/v1/accounts/{id}/attempts?limit=3"))
        .await;
    let items = page["items"].as_array().unwrap();
    assert_eq!(items.len(), 3);
    assert_eq!(items[0]["outcome"], "transient_error", "newest first");
    assert_eq!(items[0]["trigger"], "forced");
    assert_eq!(page["counts"]["refreshed"], 3);
    assert_eq!(page["counts"]["transient_error"], 1);
    let cursor = page["next_cursor"].as_str().unwrap();
    let page: Value = api
        .get_json(&format!(
            "/v1/accounts/{id}/attempts?limit=3&cursor={cursor}"
        ))
        .await;
    assert_eq!(page["items"].as_array().unwrap().len(), 1);
    assert!(page["next_cursor"].is_null());
}

#[tokio::test]
async fn events_are_read_in_order_after_a_cursor() {
    let api = Api::start().await;
    let (id, _) = api.connect_x("e1", 3600).await;
    api.remove(&format!("/v1/accounts/{id}")).await;

    let page: Value = api.get_json("/v1/events").await;
    let items = page["items"].as_array().unwrap();
    let changes: Vec<(&str, &str)> = items
        .iter()
        .map(|e| {
            (
                e["data"]["to_status"].as_str().unwrap(),
                e["data"]["reason"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        changes,
        [("ACTIVE", "connected"), ("DISCONNECTED", "disconnected")]
    );
    assert_eq!(items[0]["type"], "account.status_changed");
    let cursor = page["next_cursor"].as_str().unwrap().to_owned();

    let page: Value = api.get_json(&format!("/v1/events?after={cursor}")).await;
    assert!(page["items"].as_array().unwrap().is_empty());
    assert_eq!(
        page["next_cursor"],
        cursor.as_str(),
        "nothing new: same position"
    );

    api.connect_x("e2", 3600).await;
    let page: Value = api.get_json(&format!("/v1/events?after={cursor}")).await;
    assert_eq!(page["items"].as_array().unwrap().len(), 1);

    let (status, _) = error_of(api.fetch("/v1/events?after=abc").await).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
}
