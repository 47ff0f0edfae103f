//! Probes and metrics: served without a key; readiness names what is down;
//! metrics describe accounts and attempts without naming any account.

use std::time::Duration;

use reqwest::StatusCode;
use secrecy::SecretString;
use serde_json::Value;

use crate::support::Api;

#[tokio::test]
async fn probes_and_metrics_need_no_key() {
    let api = Api::start().await;
    let reply = api.fetch_without_key("/healthz").await;
    assert_eq!(reply.status(), StatusCode::OK);

    let reply = api.fetch_without_key("/readyz").await;
    let body: Value = reply.json().await.unwrap();
    assert_eq!(body["status"], "ready", "{body}");

    let reply = api.fetch_without_key("/metrics").await;
    assert_eq!(reply.status(), StatusCode::OK);
    let text = reply.text().await.unwrap();
    assert!(text.contains("tokenwarden_build_info"), "{text}");
    assert!(reply_has_request_id(&api).await);
}

async fn reply_has_request_id(api: &Api) -> bool {
    let reply = api
        .http
        .get(api.url("/healthz"))
        .header("x-request-id", "req-42")
        .send()
        .await
        .unwrap();
    reply
        .headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        == Some("req-42")
}

#[tokio::test]
async fn readyz_names_the_dependency_that_is_down() {
    // Nothing listens on port 1.
    let api = Api::with(|s| s.redis.url = Some(SecretString::from("redis://127.0.0.1:1"))).await;
    let reply = api.fetch_without_key("/readyz").await;
    assert_eq!(reply.status(), StatusCode::SERVICE_UNAVAILABLE);
    let body: Value = reply.json().await.unwrap();
    assert_eq!(body["checks"]["redis"], "unreachable", "{body}");
    assert_eq!(body["checks"]["postgres"], "ok", "{body}");
}

#[tokio::test]
async fn metrics_show_account_state_and_attempts_without_account_ids() {
    let api = Api::start().await;
    let (id, tokens) = api.connect_x("m1", 1800).await;
    api.force_refresh(&id).await;
    tokenwarden::store::census::compute_state(api.env.pool(), Duration::from_secs(300), false)
        .await
        .unwrap();
    let text = api
        .fetch_without_key("/metrics")
        .await
        .text()
        .await
        .unwrap();
    // Other tests in this binary share the process-wide recorder, so only
    // presence and shape are checked, not exact values.
    for needle in [
        "tokenwarden_accounts{provider=\"x\",status=\"ACTIVE\"}",
        "tokenwarden_accounts_token_expiring{provider=\"x\",within=\"24h\"}",
        "tokenwarden_accounts_refresh_token_expiring{provider=\"x\",within=\"30d\"}",
        "tokenwarden_accounts_overdue{provider=\"x\"}",
        "tokenwarden_jobs_outstanding",
        "tokenwarden_status_changes_total{provider=\"x\",to_status=\"ACTIVE\"}",
        "tokenwarden_state_computed_timestamp_seconds",
        "tokenwarden_refresh_attempts_total{provider=\"x\",trigger=\"forced\",outcome=\"refreshed\"}",
        "tokenwarden_refresh_duration_seconds_bucket{provider=\"x\",le=\"0.25\"}",
        "tokenwarden_http_requests_total{route=\"/v1/accounts/{id}/refresh\",status=\"200\"}",
    ] {
        assert!(text.contains(needle), "{needle} missing from:\n{text}");
    }
    assert!(!text.contains(id.as_str()), "no account id in metrics");
    assert!(!text.contains(&tokens.access_token));
}
