//! Reading accounts: one account's view and health, the filtered listing and
//! its pagination, and 404 for accounts that do not exist.

use std::collections::HashSet;

use reqwest::StatusCode;
use serde_json::Value;
use tokenwarden::domain::AccountId;

use crate::support::{Api, error_of};

/// The `handle` of every item of a listing page, in order.
fn handles(page: &Value) -> Vec<&str> {
    page["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["handle"].as_str().unwrap())
        .collect()
}

#[tokio::test]
async fn unknown_accounts_are_404_everywhere() {
    let api = Api::start().await;
    let unknown = AccountId::generate();
    for path in [
        format!("/v1/accounts/{unknown}"),
        format!("/v1/accounts/{unknown}/attempts"),
        format!("/v1/accounts/{unknown}/access-token"),
        "/v1/accounts/not-an-id".to_owned(),
    ] {
        let (status, error) = error_of(api.fetch(&path).await).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{path}");
        assert_eq!(error["error"]["code"], "not_found");
    }
    let (status, _) = error_of(api.force_refresh(&unknown).await).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _) = error_of(api.remove(&format!("/v1/accounts/{unknown}")).await).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn listing_filters_searches_and_hides_disconnected_accounts() {
    let api = Api::start().await;
    let mut ids = Vec::new();
    for name in ["alice", "bob", "carol"] {
        ids.push(api.connect_x(name, 3600).await.0);
    }
    let reply: Value = api.get_json("/v1/accounts?q=BO").await;
    assert_eq!(handles(&reply), ["@bob"]);

    let reply: Value = api.get_json("/v1/accounts?q=%25").await;
    assert!(
        reply["items"].as_array().unwrap().is_empty(),
        "% is matched literally"
    );

    assert_eq!(
        api.remove(&format!("/v1/accounts/{}", ids[0]))
            .await
            .status(),
        StatusCode::NO_CONTENT
    );
    let reply: Value = api.get_json("/v1/accounts").await;
    assert_eq!(
        reply["items"].as_array().unwrap().len(),
        2,
        "disconnected left out"
    );
    let newest_first = handles(&reply);
    assert_eq!(newest_first, ["@carol", "@bob"]);
    let reply: Value = api.get_json("/v1/accounts?status=DISCONNECTED").await;
    assert_eq!(reply["items"][0]["health"]["word"], "disconnected");
    let reply: Value = api
        .get_json("/v1/accounts?include_disconnected=true&provider=X&workspace_id=ws_1")
        .await;
    assert_eq!(reply["items"].as_array().unwrap().len(), 3);
    let reply: Value = api.get_json("/v1/accounts?workspace_id=other").await;
    assert!(reply["items"].as_array().unwrap().is_empty());

    for bad in [
        "limit=0",
        "limit=101",
        "status=SLEEPING",
        "cursor=%%%",
        "provider=ORKUT",
    ] {
        let (status, _) = error_of(api.fetch(&format!("/v1/accounts?{bad}")).await).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{bad}");
    }
}

#[tokio::test]
async fn pagination_is_stable_while_accounts_are_added() {
    let api = Api::start().await;
    let mut expected = HashSet::new();
    for i in 0..25 {
        let (id, _) = api.connect_x(&format!("p{i:02}"), 3600).await;
        expected.insert(id.as_str().to_owned());
    }
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    let mut added = 0;
    loop {
        let path = match &cursor {
            None => "/v1/accounts?limit=7".to_owned(),
            Some(c) => format!("/v1/accounts?limit=7&cursor={c}"),
        };
        let page: Value = api.get_json(&path).await;
        seen.extend(
            page["items"]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v["id"].as_str().unwrap().to_owned()),
        );
        // Newer accounts arrive between pages.
        api.connect_x(&format!("new{added}"), 3600).await;
        added += 1;
        match page["next_cursor"].as_str() {
            Some(next) => cursor = Some(next.to_owned()),
            None => break,
        }
    }
    let unique: HashSet<String> = seen.iter().cloned().collect();
    assert_eq!(unique.len(), seen.len(), "no account twice");
    assert_eq!(
        unique, expected,
        "every account present at the start, none inserted later"
    );
}

#[tokio::test]
async fn health_word_and_can_post_for_every_status() {
    let api = Api::start().await;
    // status, failures, expires in, inactive reason → health.status,
    // is_active, the deprecated health.word, can_post.
    let cases = [
        ("ACTIVE", 0, 3600, None, "healthy", true, "healthy", true),
        ("ACTIVE", 2, 3600, None, "degraded", true, "degraded", true),
        ("ACTIVE", 1, -60, None, "degraded", true, "degraded", false),
        (
            "ACTIVE",
            0,
            3600,
            Some("AccountDeactivated"),
            "inactive",
            false,
            "healthy",
            false,
        ),
        (
            "TOKEN_EXPIRED",
            0,
            3600,
            None,
            "expired",
            false,
            "expired",
            false,
        ),
        ("REVOKED", 0, 3600, None, "revoked", false, "revoked", false),
        (
            "DISCONNECTED",
            0,
            3600,
            None,
            "disconnected",
            false,
            "disconnected",
            false,
        ),
    ];
    for (i, (status, failures, expires_in, inactive, health, is_active, word, can_post)) in
        cases.into_iter().enumerate()
    {
        let (id, _) = api.connect_x(&format!("h{i}"), 3600).await;
        sqlx::query(
            "UPDATE social_accounts SET status = $2, consecutive_failures = $3,
                 last_refresh_error = CASE WHEN $3 > 0 THEN 'platform answered 503' END,
                 token_expires_at = now() + make_interval(secs => $4),
                 account_inactive_reason = $5
             WHERE id = $1",
        )
        .bind(id.as_str())
        .bind(status)
        .bind(failures)
        .bind(expires_in as f64)
        .bind(inactive)
        .execute(api.env.pool())
        .await
        .unwrap();
        let view: Value = api.get_json(&format!("/v1/accounts/{id}")).await;
        assert_eq!(view["health"]["status"], health, "{status}: {view}");
        assert_eq!(view["health"]["is_active"], is_active, "{status}: {view}");
        assert_eq!(view["health"]["word"], word, "{status}: {view}");
        assert_eq!(view["health"]["can_post"], can_post, "{status}: {view}");
        if health != "healthy" {
            assert!(
                !view["health"]["reason"].is_null() || status != "ACTIVE",
                "{view}"
            );
        }
    }
}

/// `health.word` stays one release under its old name, marked deprecated
/// in the OpenAPI document; `health.status` and `is_active` are documented.
#[tokio::test]
async fn the_old_health_word_is_documented_as_deprecated() {
    let api = Api::start().await;
    let doc: Value = api.get_json("/openapi.json").await;
    let health = &doc["components"]["schemas"]["Health"];
    assert_eq!(health["properties"]["word"]["deprecated"], true, "{health}");
    for field in ["status", "is_active", "can_post"] {
        assert!(
            health["required"]
                .as_array()
                .unwrap()
                .iter()
                .any(|f| f == field),
            "{field} is required: {health}"
        );
    }
    let statuses = &doc["components"]["schemas"]["HealthStatus"]["enum"];
    assert!(
        statuses.as_array().unwrap().iter().any(|s| s == "inactive"),
        "{statuses}"
    );
}
