//! Untrusted input (issue 9): absurd lifetimes, NUL bytes and values the
//! database refuses are each a 422 naming the field, never a panic, a
//! dropped connection or an outage.

use chrono::{TimeDelta, Utc};
use reqwest::StatusCode;
use serde_json::{Value, json};
use tokenwarden::api;
use tokenwarden::domain::AccountId;

use crate::common::{self, rotating};
use crate::support::{Api, Edit, count_accounts, error_of, spec};

/// Defect 2: lifetimes far beyond any date, negative, fractional or not a
/// number are 422 on `credentials.expires_in`, never a dropped connection.
#[tokio::test]
async fn absurd_lifetimes_get_422_naming_the_field_never_a_panic() {
    let api = Api::start().await;
    let tokens = api.env.fake.issue(rotating());
    let absurd: Vec<Value> = vec![
        json!(8_200_000_000_000_i64),
        json!(8_300_000_000_000_i64),
        json!(i64::MAX),
        json!(i64::MIN),
        json!(u64::MAX),
        json!(1e300),
        json!(-1),
        json!(0),
        json!(3.5),
        json!(315_576_001),
        json!("NaN"),
        json!("Infinity"),
        json!(null),
    ];
    for value in absurd {
        let mut body = spec("e", &tokens, 60);
        body["credentials"]["expires_in"] = value.clone();
        let reply = api.post("/v1/accounts").json(&body).send().await;
        let reply = reply.unwrap_or_else(|e| panic!("{value}: no answer: {e}"));
        if value.is_null() {
            // Absent: no expiry stated, a valid registration.
            assert_eq!(reply.status(), StatusCode::CREATED);
            continue;
        }
        let (status, error) = error_of(reply).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{value}: {error}");
        assert_eq!(
            error["error"]["field"], "credentials.expires_in",
            "{value}: {error}"
        );
    }
    // The edges of the documented range are accepted.
    for (i, seconds) in [1_i64, 315_576_000].into_iter().enumerate() {
        let reply = api
            .post_account(&spec(&format!("edge{i}"), &tokens, seconds))
            .await;
        assert_eq!(reply.status(), StatusCode::CREATED, "{seconds}");
    }
    // Dates beyond ten years either way are taken as ten years away.
    let mut body = spec("far", &tokens, 60);
    body["credentials"]["expires_in"] = Value::Null;
    body["credentials"]["token_expires_at"] = json!("9999-12-31T23:59:59Z");
    body["credentials"]["refresh_token_expires_at"] = json!("0001-01-01T00:00:00Z");
    let reply = api.post_account(&body).await;
    assert_eq!(reply.status(), StatusCode::CREATED);
    let view: Value = reply.json().await.unwrap();
    let at = |key: &str| {
        chrono::DateTime::parse_from_rfc3339(view[key].as_str().unwrap())
            .unwrap()
            .with_timezone(&Utc)
    };
    let ten_years = TimeDelta::seconds(315_576_000);
    assert!(at("token_expires_at") <= Utc::now() + ten_years);
    assert!(at("refresh_token_expires_at") >= Utc::now() - ten_years - TimeDelta::minutes(1));
    // The server is still serving.
    assert_eq!(api.fetch("/v1/accounts").await.status(), StatusCode::OK);
}

/// Defect 3: a NUL byte in any string of a request is 422 naming the field,
/// never 503 "database not reachable".
#[tokio::test]
async fn nul_bytes_anywhere_get_422_naming_the_field() {
    let api = Api::start().await;
    let tokens = api.env.fake.issue(rotating());
    let nul = "a\u{0}b";
    let cases: Vec<(&str, Edit)> = vec![
        ("workspace_id", Box::new(|s| s["workspace_id"] = json!(nul))),
        ("external_id", Box::new(|s| s["external_id"] = json!(nul))),
        ("handle", Box::new(|s| s["handle"] = json!(nul))),
        ("display_name", Box::new(|s| s["display_name"] = json!(nul))),
        (
            "avatar_url",
            Box::new(|s| s["avatar_url"] = json!(format!("https://x/{nul}"))),
        ),
        (
            "default_board_id",
            Box::new(|s| s["default_board_id"] = json!(nul)),
        ),
        ("scopes[1]", Box::new(|s| s["scopes"][1] = json!(nul))),
        (
            "meta.page_id",
            Box::new(|s| s["meta"] = json!({"page_id": nul})),
        ),
        (
            "meta.deep.list[1]",
            Box::new(|s| s["meta"] = json!({"deep": {"list": ["ok", nul]}})),
        ),
        ("meta", Box::new(|s| s["meta"] = json!({ nul: 1 }))),
        (
            "credentials.access_token",
            Box::new(|s| s["credentials"]["access_token"] = json!(nul)),
        ),
        (
            "credentials.refresh_token",
            Box::new(|s| s["credentials"]["refresh_token"] = json!(nul)),
        ),
    ];
    for (field, edit) in cases {
        let mut body = spec("e", &tokens, 60);
        edit(&mut body);
        let reply = api.post_account(&body).await;
        assert!(!reply.headers().contains_key("retry-after"), "{field}");
        let (status, error) = error_of(reply).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{field}: {error}");
        assert_eq!(error["error"]["field"], field, "{error}");
    }
    assert_eq!(count_accounts(&api).await, 0);

    let id = AccountId::generate();
    let queries = [
        ("/v1/accounts?q=a%00b".to_owned(), "q"),
        ("/v1/accounts?workspace_id=%00".to_owned(), "workspace_id"),
        ("/v1/accounts?cursor=1-acc_%00".to_owned(), "cursor"),
        (format!("/v1/accounts?cursor=1-{id}%00"), "cursor"),
        (
            "/v1/accounts?cursor=1-%27%20OR%201%3D1%20--".to_owned(),
            "cursor",
        ),
        ("/v1/accounts/a%00b".to_owned(), "id"),
        ("/v1/accounts/a%00b/attempts".to_owned(), "id"),
        (format!("/v1/accounts/{id}/attempts?cursor=1%00"), "cursor"),
        ("/v1/events?after=1%00".to_owned(), "after"),
    ];
    for (path, field) in queries {
        let reply = api.fetch(&path).await;
        let (status, error) = error_of(reply).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{path}: {error}");
        assert_eq!(error["error"]["field"], field, "{path}: {error}");
    }
}

/// Defect 3, the backstop: whatever a value the database refuses (SQLSTATE
/// classes 22 and 23), the answer is 422 without the value, never an outage.
#[tokio::test]
async fn values_the_database_refuses_are_not_outages() {
    let db = common::TestDb::new().await;
    let secret = "tok-9f8e7d6c5b4a3210";
    sqlx::raw_sql("CREATE TABLE short (v varchar(2), n int4 CHECK (n > 0))")
        .execute(&db.pool)
        .await
        .unwrap();
    let refused = [
        sqlx::query("SELECT $1::text")
            .bind(format!("{secret}\u{0}"))
            .execute(&db.pool)
            .await,
        sqlx::query("SELECT $1::text::int")
            .bind(secret)
            .execute(&db.pool)
            .await,
        sqlx::query("INSERT INTO short (v) VALUES ($1)")
            .bind(secret)
            .execute(&db.pool)
            .await,
        sqlx::query("SELECT $1::int8::int4")
            .bind(i64::MAX)
            .execute(&db.pool)
            .await,
        sqlx::query("INSERT INTO short (n) VALUES (-1)")
            .execute(&db.pool)
            .await,
    ];
    for result in refused {
        let error = api::ApiError::from(result.unwrap_err());
        assert_eq!(error.status, StatusCode::UNPROCESSABLE_ENTITY, "{error:?}");
        assert_eq!(error.body.error.code, "invalid_input");
        assert!(error.retry_after.is_none());
        assert!(!error.body.error.message.contains(secret), "{error:?}");
    }
    // A database that cannot be reached is the outage.
    db.pool.close().await;
    let error = api::ApiError::from(sqlx::query("SELECT 1").execute(&db.pool).await.unwrap_err());
    assert_eq!(error.status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(error.retry_after.is_some());
}
