//! Connecting and disconnecting: `POST /v1/accounts` creates or reconnects
//! an account and refuses invalid bodies whole; `DELETE` revokes at the
//! platform and wipes the credentials.

use chrono::{TimeDelta, Utc};
use reqwest::StatusCode;
use serde_json::{Value, json};
use tokenwarden::domain::Provider;

use crate::common::rotating;
use crate::support::{Api, KEY, count_accounts, error_of, id_of, spec};

#[tokio::test]
async fn register_creates_then_reconnects_with_a_recovery_event() {
    let api = Api::start().await;
    let tokens = api.env.fake.issue(rotating());
    let created = api.register_x("u1", &tokens, 3600).await;
    assert_eq!(created["status"], "ACTIVE");
    assert_eq!(created["health"]["word"], "healthy");
    assert_eq!(created["health"]["can_post"], true);
    assert_eq!(created["missing_scopes"], json!([]), "{created}");
    let id = id_of(&created);

    api.env
        .update_account(&id, "status = 'REVOKED', status_reason = 'test'")
        .await;
    let fresh = api.env.fake.issue(rotating());
    let mut reconnect = spec("u1", &fresh, 3600);
    reconnect["scopes"] = json!(["tweet.read", "offline.access"]);
    let reply = api.post_account(&reconnect).await;
    assert_eq!(reply.status(), StatusCode::OK, "a reconnect is 200");
    let view: Value = reply.json().await.unwrap();
    assert_eq!(id_of(&view), id, "same account");
    assert_eq!(view["status"], "ACTIVE");
    assert_eq!(
        view["missing_scopes"],
        json!(["tweet.write"]),
        "publishing needs it"
    );
    let events = api.env.events(&id).await;
    assert_eq!(
        events.last().unwrap(),
        &(
            Some("REVOKED".into()),
            "ACTIVE".into(),
            "reconnected".into()
        )
    );
    assert_eq!(
        api.env.stored_refresh_token(&id).await.as_deref(),
        Some(fresh.refresh_token.as_str())
    );
}

#[tokio::test]
async fn invalid_registrations_get_422_naming_the_field_and_store_nothing() {
    let api = Api::start().await;
    let tokens = api.env.fake.issue(rotating());
    let edited = |edit: &dyn Fn(&mut Value)| {
        let mut s = spec("e", &tokens, 60);
        edit(&mut s);
        s
    };
    let cases: Vec<(Value, &str)> = vec![
        (
            json!({"workspace_id": "w", "provider": "X", "external_id": "e",
                   "credentials": {"refresh_token": "r"}}),
            "access_token",
        ),
        (edited(&|s| s["provider"] = json!("MYSPACE")), "provider"),
        (
            edited(&|s| s["credentials"]["expires_in"] = json!(-5)),
            "expires_in",
        ),
        (edited(&|s| s["workspace_id"] = json!("  ")), "workspace_id"),
        (edited(&|s| s["colour"] = json!("blue")), "colour"),
        (edited(&|s| s["meta"] = json!([1])), "meta"),
        (
            edited(&|s| s["credentials"]["expires_in"] = json!(tokens.access_token)),
            "expires_in",
        ),
    ];
    for (body, field) in cases {
        let (status, error) = error_of(api.post_account(&body).await).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
        let message = error["error"]["message"].as_str().unwrap();
        assert!(message.contains(field), "{field} named in {error}");
        assert!(
            !message.contains(&tokens.access_token),
            "a misplaced token is not echoed: {error}"
        );
    }
    let reply = api
        .post("/v1/accounts")
        .header("content-type", "application/json")
        .body("{\"workspace_id\": ")
        .send()
        .await
        .unwrap();
    let (status, error) = error_of(reply).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(error["error"]["code"], "invalid_json");

    let huge = "x".repeat(100 * 1024);
    let mut body = spec("e", &tokens, 60);
    body["display_name"] = json!(huge);
    let reply = api.post_account(&body).await;
    assert_eq!(reply.status(), StatusCode::PAYLOAD_TOO_LARGE);

    assert_eq!(count_accounts(&api).await, 0);
}

#[tokio::test]
async fn reconnect_by_is_the_refresh_tokens_end() {
    let api = Api::start().await;
    let tokens = api.env.fake.issue(rotating());
    let mut body = spec("r1", &tokens, 3600);
    let ends = Utc::now() + TimeDelta::days(20);
    body["credentials"]["refresh_token_expires_at"] = json!(ends.to_rfc3339());
    let view: Value = api.post_account(&body).await.json().await.unwrap();
    let reconnect_by =
        chrono::DateTime::parse_from_rfc3339(view["reconnect_by"].as_str().unwrap()).unwrap();
    assert!(
        (reconnect_by.timestamp() - ends.timestamp()).abs() <= 1,
        "{view}"
    );
    assert!(view["next_refresh_at"].is_string());
}

#[tokio::test]
async fn disconnect_revokes_at_the_platform_and_wipes_credentials() {
    let api = Api::start().await;
    // A second server whose X revocation endpoint is the fake's.
    let mut settings = api.env.settings.clone();
    settings.providers.get_mut(Provider::X).revoke_url = Some(api.env.fake.url("/x/revoke"));
    let base = api.second_server(&settings, "api-revoke").await;

    let (id, tokens) = api.connect_x("d1", 3600).await;
    let disconnect = || {
        api.http
            .delete(format!("{base}/v1/accounts/{id}"))
            .bearer_auth(KEY)
            .send()
    };
    let reply = disconnect().await.unwrap();
    assert_eq!(reply.status(), StatusCode::NO_CONTENT);
    assert!(
        !api.env.fake.is_live(&tokens.refresh_token),
        "the grant was revoked at the platform"
    );
    let revoke_calls = api
        .env
        .fake
        .calls()
        .iter()
        .filter(|c| c.path == "/x/revoke")
        .count();
    assert_eq!(revoke_calls, 1);
    let row = api.env.row(&id).await;
    assert_eq!(row.status.as_str(), "DISCONNECTED");
    assert!(row.access_token_ciphertext.is_none() && row.refresh_token_ciphertext.is_none());
    assert!(row.next_attempt_at.is_none());
    assert_eq!(api.env.events(&id).await.last().unwrap().1, "DISCONNECTED");

    let reply = disconnect().await.unwrap();
    assert_eq!(
        reply.status(),
        StatusCode::NOT_FOUND,
        "already disconnected"
    );
    let (status, error) = error_of(api.force_refresh(&id).await).await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert_eq!(error["error"]["code"], "disconnected");
}
