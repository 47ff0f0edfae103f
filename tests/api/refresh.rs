//! The endpoints that refresh: a forced refresh (rate limited across
//! replicas, the platform's answer carried in a 409), many callers sharing
//! one platform call, and the access token served fresh.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};
use tokenwarden::domain::Trigger;
use tokenwarden_fakes::ScriptedResponse;

use crate::support::{Api, KEY, error_of};

#[tokio::test]
async fn forced_refresh_answers_200_then_429_then_409_with_the_platforms_reason() {
    let api = Api::start().await;
    let (id, tokens) = api.connect_x("f1", 3600).await;

    let reply = api.force_refresh(&id).await;
    assert_eq!(reply.status(), StatusCode::OK);
    let view: Value = reply.json().await.unwrap();
    assert!(view["last_refreshed_at"].is_string());
    assert_ne!(
        api.env.stored_refresh_token(&id).await.unwrap(),
        tokens.refresh_token,
        "rotated and stored"
    );

    let reply = api.force_refresh(&id).await;
    assert!(reply.headers().contains_key("retry-after"));
    let (status, error) = error_of(reply).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(error["error"]["code"], "too_many_requests");

    // Another replica (its own server and engine, the same database) agrees.
    let replica_base = api.second_server(&api.env.settings, "replica").await;
    let reply = api
        .http
        .post(format!("{replica_base}/v1/accounts/{id}/refresh"))
        .bearer_auth(KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(
        reply.status(),
        StatusCode::TOO_MANY_REQUESTS,
        "the limit holds across replicas"
    );
    assert_eq!(api.env.fake.call_count(), 1);

    // Another account, whose grant the platform no longer accepts ("expired
    // or revoked" does not say the user withdrew it: TOKEN_EXPIRED).
    let (other_id, _) = api.connect_x("f2", 3600).await;
    api.env.fake.script_next(ScriptedResponse::json(
        400,
        json!({"error": "invalid_grant", "error_description": "Token has been expired or revoked."}),
    ));
    let reply = api.force_refresh(&other_id).await;
    let (status, error) = error_of(reply).await;
    assert_eq!(status, StatusCode::CONFLICT, "{error}");
    assert_eq!(error["error"]["provider_status"], 400, "{error}");
    assert_eq!(error["error"]["code"], "token_expired", "{error}");
    assert_eq!(error["account"]["status"], "TOKEN_EXPIRED");
    assert!(
        error["error"]["message"]
            .as_str()
            .unwrap()
            .contains("Token has been expired or revoked."),
        "the platform's text kept: {error}"
    );
    assert_eq!(error["account"]["id"], other_id.as_str());
    assert_eq!(error["account"]["health"]["can_post"], false);

    // A transient failure: 409 with retry_after, status unchanged.
    let (third_id, _) = api.connect_x("f3", 3600).await;
    api.env
        .fake
        .script_next(ScriptedResponse::raw(503, "text/html", "<html>down</html>"));
    let (status, error) = error_of(api.force_refresh(&third_id).await).await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert_eq!(error["error"]["code"], "provider_unavailable");
    assert!(error["error"]["retry_after"].as_u64().is_some(), "{error}");
    assert_eq!(error["account"]["status"], "ACTIVE");
    assert_eq!(error["account"]["health"]["word"], "degraded");
}

#[tokio::test]
async fn ten_forced_refreshes_and_a_scheduled_one_make_one_platform_call() {
    let api = Api::start().await;
    let (id, _) = api.connect_x("c1", 30).await;
    api.env.fake.set_answer_delay(Duration::from_millis(300));
    let forced = (0..10).map(|_| {
        let request = api.post(&format!("/v1/accounts/{id}/refresh"));
        async move { request.send().await.unwrap().status() }
    });
    let engine = api.env.engine.clone();
    let scheduled = async { engine.refresh(&id, Trigger::Scheduled).await.unwrap() };
    let (statuses, report) = tokio::join!(futures::future::join_all(forced), scheduled);
    assert!(
        statuses.iter().all(|s| *s == StatusCode::OK),
        "{statuses:?}"
    );
    assert!(report.succeeded());
    assert_eq!(
        api.env.fake.call_count(),
        1,
        "one platform call for eleven callers"
    );
    assert_eq!(api.env.fake.reuse_detected(), 0);
    let stored = api.env.stored_refresh_token(&id).await.unwrap();
    assert!(
        api.env.fake.is_live(&stored),
        "the stored refresh token is the live one"
    );
}

#[tokio::test]
async fn access_token_is_served_fresh_and_refreshed_inside_its_window() {
    let api = Api::start().await;
    let (id, tokens) = api.connect_x("t1", 7200).await;
    let path = format!("/v1/accounts/{id}/access-token");
    let reply = api.fetch(&path).await;
    assert_eq!(reply.status(), StatusCode::OK);
    assert_eq!(reply.headers()["cache-control"], "no-store");
    let body: Value = reply.json().await.unwrap();
    assert_eq!(body["access_token"], tokens.access_token.as_str());
    assert_eq!(api.env.fake.call_count(), 0, "a fresh token needs no call");

    // Inside the window (expired, even): refreshed first.
    api.env
        .update_account(&id, "token_expires_at = now() - interval '1 minute'")
        .await;
    let body: Value = api.get_json(&path).await;
    assert_ne!(body["access_token"], tokens.access_token.as_str());
    assert_eq!(
        body["access_token"],
        api.env.stored_access_token(&id).await.as_str()
    );
    assert_eq!(api.env.fake.call_count(), 1);

    // Expired and the platform refuses: 409, no token.
    api.env
        .update_account(&id, "token_expires_at = now() - interval '1 minute'")
        .await;
    api.env
        .fake
        .script_next(ScriptedResponse::raw(502, "text/plain", "bad gateway"));
    let (status, error) = error_of(api.fetch(&path).await).await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert_eq!(error["error"]["code"], "provider_unavailable");

    api.env.update_account(&id, "status = 'REVOKED'").await;
    let (status, error) = error_of(api.fetch(&path).await).await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert_eq!(error["error"]["code"], "revoked");
}
