//! The HTTP API over a real socket, against a real PostgreSQL and Redis and
//! the strict fake platform: every endpoint, its auth and its errors.

mod common;

use std::collections::HashSet;
use std::time::Duration;

use chrono::{TimeDelta, Utc};
use common::{TestEnv, rotating};
use reqwest::StatusCode;
use secrecy::SecretString;
use serde_json::{Value, json};
use tokenwarden::api::{self, ApiState};
use tokenwarden::config::Settings;
use tokenwarden::domain::{AccountId, Provider, Trigger};
use tokenwarden_fakes::{IssuedTokens, ScriptedResponse};
use tokio_util::sync::CancellationToken;

const KEY: &str = "test-api-key-0123456789";
const OLD_KEY: &str = "old-api-key-9876543210";

struct Api {
    env: TestEnv,
    base: String,
    http: reqwest::Client,
    stop: CancellationToken,
}

impl Drop for Api {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

fn api_settings(settings: &mut Settings) {
    settings.api.keys = Some(SecretString::from(format!("{KEY}, {OLD_KEY}")));
    settings.api.force_refresh_min_interval = Duration::from_secs(30);
    settings.redis.url = Some(SecretString::from(common::redis_url()));
    // Never the real platform's revocation endpoint from a test.
    settings.providers.get_mut(Provider::X).revoke_url = None;
}

impl Api {
    async fn start() -> Self {
        Self::with(|_| {}).await
    }

    async fn with(tweak: impl FnOnce(&mut Settings)) -> Self {
        let env = TestEnv::with(|s| {
            api_settings(s);
            tweak(s);
        })
        .await;
        let state = ApiState::new(&env.settings, env.engine.clone()).unwrap();
        let app = api::router(state, env.settings.api.max_body_bytes, true);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let stop = CancellationToken::new();
        let stopped = stop.clone();
        let limits = api::server::ConnectionLimits::from(&env.settings.api);
        tokio::spawn(async move {
            api::server::serve(listener, app, limits, stopped)
                .await
                .unwrap();
        });
        Self {
            env,
            base,
            http: reqwest::Client::new(),
            stop,
        }
    }

    fn get(&self, path: &str) -> reqwest::RequestBuilder {
        self.http
            .get(format!("{}{path}", self.base))
            .bearer_auth(KEY)
    }

    fn post(&self, path: &str) -> reqwest::RequestBuilder {
        self.http
            .post(format!("{}{path}", self.base))
            .bearer_auth(KEY)
    }

    fn delete(&self, path: &str) -> reqwest::RequestBuilder {
        self.http
            .delete(format!("{}{path}", self.base))
            .bearer_auth(KEY)
    }

    async fn fetch(&self, path: &str) -> reqwest::Response {
        self.get(path).send().await.unwrap()
    }

    async fn get_json(&self, path: &str) -> Value {
        self.fetch(path).await.json().await.unwrap()
    }

    async fn remove(&self, path: &str) -> reqwest::Response {
        self.delete(path).send().await.unwrap()
    }

    async fn force_refresh(&self, id: &AccountId) -> reqwest::Response {
        self.post(&format!("/v1/accounts/{id}/refresh"))
            .send()
            .await
            .unwrap()
    }

    /// Registers an X account through the API with tokens the fake issued.
    async fn register_x(&self, external_id: &str, tokens: &IssuedTokens, expires_in: i64) -> Value {
        let reply = self
            .post("/v1/accounts")
            .json(&spec(external_id, tokens, expires_in))
            .send()
            .await
            .unwrap();
        assert_eq!(reply.status(), StatusCode::CREATED);
        reply.json().await.unwrap()
    }
}

fn spec(external_id: &str, tokens: &IssuedTokens, expires_in: i64) -> Value {
    json!({
        "workspace_id": "ws_1",
        "provider": "X",
        "external_id": external_id,
        "handle": format!("@{external_id}"),
        "display_name": format!("Display {external_id}"),
        "scopes": ["tweet.read", "tweet.write", "offline.access"],
        "credentials": {
            "access_token": tokens.access_token,
            "refresh_token": tokens.refresh_token,
            "expires_in": expires_in,
        }
    })
}

async fn error_of(reply: reqwest::Response) -> (StatusCode, Value) {
    let status = reply.status();
    let body: Value = reply.json().await.expect("errors are JSON");
    assert!(
        body["error"]["code"].is_string() && body["error"]["message"].is_string(),
        "error shape: {body}"
    );
    (status, body)
}

fn id_of(view: &Value) -> AccountId {
    view["id"].as_str().unwrap().parse().unwrap()
}

#[tokio::test]
async fn requests_without_a_valid_key_get_401_and_old_keys_still_work() {
    let api = Api::start().await;
    let url = format!("{}/v1/accounts", api.base);
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

#[tokio::test]
async fn probes_and_metrics_need_no_key() {
    let api = Api::start().await;
    let reply = api
        .http
        .get(format!("{}/healthz", api.base))
        .send()
        .await
        .unwrap();
    assert_eq!(reply.status(), StatusCode::OK);

    let reply = api
        .http
        .get(format!("{}/readyz", api.base))
        .send()
        .await
        .unwrap();
    let body: Value = reply.json().await.unwrap();
    assert_eq!(body["status"], "ready", "{body}");

    let reply = api
        .http
        .get(format!("{}/metrics", api.base))
        .send()
        .await
        .unwrap();
    assert_eq!(reply.status(), StatusCode::OK);
    let text = reply.text().await.unwrap();
    assert!(text.contains("tokenwarden_build_info"), "{text}");
    assert!(reply_has_request_id(&api).await);
}

async fn reply_has_request_id(api: &Api) -> bool {
    let reply = api
        .http
        .get(format!("{}/healthz", api.base))
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
    let reply = api
        .http
        .get(format!("{}/readyz", api.base))
        .send()
        .await
        .unwrap();
    assert_eq!(reply.status(), StatusCode::SERVICE_UNAVAILABLE);
    let body: Value = reply.json().await.unwrap();
    assert_eq!(body["checks"]["redis"], "unreachable", "{body}");
    assert_eq!(body["checks"]["postgres"], "ok", "{body}");
}

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

    sqlx::query(
        "UPDATE social_accounts SET status = 'REVOKED', status_reason = 'test' WHERE id = $1",
    )
    .bind(id.as_str())
    .execute(api.env.pool())
    .await
    .unwrap();
    let fresh = api.env.fake.issue(rotating());
    let mut reconnect = spec("u1", &fresh, 3600);
    reconnect["scopes"] = json!(["tweet.read", "offline.access"]);
    let reply = api
        .post("/v1/accounts")
        .json(&reconnect)
        .send()
        .await
        .unwrap();
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
    let cases: Vec<(Value, &str)> = vec![
        (
            json!({"workspace_id": "w", "provider": "X", "external_id": "e",
                   "credentials": {"refresh_token": "r"}}),
            "access_token",
        ),
        (
            {
                let mut s = spec("e", &tokens, 60);
                s["provider"] = json!("MYSPACE");
                s
            },
            "provider",
        ),
        (
            {
                let mut s = spec("e", &tokens, 60);
                s["credentials"]["expires_in"] = json!(-5);
                s
            },
            "expires_in",
        ),
        (
            {
                let mut s = spec("e", &tokens, 60);
                s["workspace_id"] = json!("  ");
                s
            },
            "workspace_id",
        ),
        (
            {
                let mut s = spec("e", &tokens, 60);
                s["colour"] = json!("blue");
                s
            },
            "colour",
        ),
        (
            {
                let mut s = spec("e", &tokens, 60);
                s["meta"] = json!([1]);
                s
            },
            "meta",
        ),
        (
            {
                let mut s = spec("e", &tokens, 60);
                s["credentials"]["expires_in"] = json!(tokens.access_token);
                s
            },
            "expires_in",
        ),
    ];
    for (body, field) in cases {
        let reply = api.post("/v1/accounts").json(&body).send().await.unwrap();
        let (status, error) = error_of(reply).await;
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
    let reply = api.post("/v1/accounts").json(&body).send().await.unwrap();
    assert_eq!(reply.status(), StatusCode::PAYLOAD_TOO_LARGE);

    let count: i64 = sqlx::query_scalar("SELECT count(*) FROM social_accounts")
        .fetch_one(api.env.pool())
        .await
        .unwrap();
    assert_eq!(count, 0);
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
        let tokens = api.env.fake.issue(rotating());
        ids.push(id_of(&api.register_x(name, &tokens, 3600).await));
    }
    let reply: Value = api.get_json("/v1/accounts?q=BO").await;
    let handles: Vec<&str> = reply["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["handle"].as_str().unwrap())
        .collect();
    assert_eq!(handles, ["@bob"]);

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
    let newest_first: Vec<&str> = reply["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["handle"].as_str().unwrap())
        .collect();
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
        let tokens = api.env.fake.issue(rotating());
        expected.insert(
            api.register_x(&format!("p{i:02}"), &tokens, 3600).await["id"]
                .as_str()
                .unwrap()
                .to_owned(),
        );
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
        let tokens = api.env.fake.issue(rotating());
        api.register_x(&format!("new{added}"), &tokens, 3600).await;
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
    let cases = [
        ("ACTIVE", 0, 3600, "healthy", true),
        ("ACTIVE", 2, 3600, "degraded", true),
        ("ACTIVE", 1, -60, "degraded", false),
        ("TOKEN_EXPIRED", 0, 3600, "expired", false),
        ("REVOKED", 0, 3600, "revoked", false),
        ("DISCONNECTED", 0, 3600, "disconnected", false),
    ];
    for (i, (status, failures, expires_in, word, can_post)) in cases.into_iter().enumerate() {
        let tokens = api.env.fake.issue(rotating());
        let id = id_of(&api.register_x(&format!("h{i}"), &tokens, 3600).await);
        sqlx::query(
            "UPDATE social_accounts SET status = $2, consecutive_failures = $3,
                 last_refresh_error = CASE WHEN $3 > 0 THEN 'platform answered 503' END,
                 token_expires_at = now() + make_interval(secs => $4)
             WHERE id = $1",
        )
        .bind(id.as_str())
        .bind(status)
        .bind(failures)
        .bind(expires_in as f64)
        .execute(api.env.pool())
        .await
        .unwrap();
        let view: Value = api.get_json(&format!("/v1/accounts/{id}")).await;
        assert_eq!(view["health"]["word"], word, "{status}: {view}");
        assert_eq!(view["health"]["can_post"], can_post, "{status}: {view}");
        if word != "healthy" {
            assert!(
                !view["health"]["reason"].is_null() || status != "ACTIVE",
                "{view}"
            );
        }
    }
}

#[tokio::test]
async fn forced_refresh_answers_200_then_429_then_409_with_the_platforms_reason() {
    let api = Api::start().await;
    let tokens = api.env.fake.issue(rotating());
    let id = id_of(&api.register_x("f1", &tokens, 3600).await);

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
    let replica = common::engine_for(
        api.env.pool(),
        &api.env.settings,
        api.env.keyring.clone(),
        "replica",
    );
    let app = api::router(
        ApiState::new(&api.env.settings, replica).unwrap(),
        65536,
        true,
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let replica_base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
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
    let other = api.env.fake.issue(rotating());
    let other_id = id_of(&api.register_x("f2", &other, 3600).await);
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
    let third = api.env.fake.issue(rotating());
    let third_id = id_of(&api.register_x("f3", &third, 3600).await);
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
    let tokens = api.env.fake.issue(rotating());
    let id = id_of(&api.register_x("c1", &tokens, 30).await);
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
    let tokens = api.env.fake.issue(rotating());
    let id = id_of(&api.register_x("t1", &tokens, 7200).await);
    let reply = api.fetch(&format!("/v1/accounts/{id}/access-token")).await;
    assert_eq!(reply.status(), StatusCode::OK);
    assert_eq!(reply.headers()["cache-control"], "no-store");
    let body: Value = reply.json().await.unwrap();
    assert_eq!(body["access_token"], tokens.access_token.as_str());
    assert_eq!(api.env.fake.call_count(), 0, "a fresh token needs no call");

    // Inside the window (expired, even): refreshed first.
    sqlx::query(
        "UPDATE social_accounts SET token_expires_at = now() - interval '1 minute' WHERE id = $1",
    )
    .bind(id.as_str())
    .execute(api.env.pool())
    .await
    .unwrap();
    let body: Value = api
        .get_json(&format!("/v1/accounts/{id}/access-token"))
        .await;
    assert_ne!(body["access_token"], tokens.access_token.as_str());
    assert_eq!(
        body["access_token"],
        api.env.stored_access_token(&id).await.as_str()
    );
    assert_eq!(api.env.fake.call_count(), 1);

    // Expired and the platform refuses: 409, no token.
    sqlx::query(
        "UPDATE social_accounts SET token_expires_at = now() - interval '1 minute' WHERE id = $1",
    )
    .bind(id.as_str())
    .execute(api.env.pool())
    .await
    .unwrap();
    api.env
        .fake
        .script_next(ScriptedResponse::raw(502, "text/plain", "bad gateway"));
    let (status, error) =
        error_of(api.fetch(&format!("/v1/accounts/{id}/access-token")).await).await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert_eq!(error["error"]["code"], "provider_unavailable");

    sqlx::query("UPDATE social_accounts SET status = 'REVOKED' WHERE id = $1")
        .bind(id.as_str())
        .execute(api.env.pool())
        .await
        .unwrap();
    let (status, error) =
        error_of(api.fetch(&format!("/v1/accounts/{id}/access-token")).await).await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert_eq!(error["error"]["code"], "revoked");
}

#[tokio::test]
async fn disconnect_revokes_at_the_platform_and_wipes_credentials() {
    let api = Api::start().await;
    // A second server whose X revocation endpoint is the fake's.
    let mut settings = api.env.settings.clone();
    settings.providers.get_mut(Provider::X).revoke_url = Some(api.env.fake.url("/x/revoke"));
    let engine = common::engine_for(
        api.env.pool(),
        &settings,
        api.env.keyring.clone(),
        "api-revoke",
    );
    let state = ApiState::new(&settings, engine).unwrap();
    let app = api::router(state, settings.api.max_body_bytes, true);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });

    let tokens = api.env.fake.issue(rotating());
    let id = id_of(&api.register_x("d1", &tokens, 3600).await);
    let reply = api
        .http
        .delete(format!("{base}/v1/accounts/{id}"))
        .bearer_auth(KEY)
        .send()
        .await
        .unwrap();
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

    let reply = api
        .http
        .delete(format!("{base}/v1/accounts/{id}"))
        .bearer_auth(KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(
        reply.status(),
        StatusCode::NOT_FOUND,
        "already disconnected"
    );
    let (status, error) = error_of(api.force_refresh(&id).await).await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert_eq!(error["error"]["code"], "disconnected");
}

#[tokio::test]
async fn attempts_are_paginated_newest_first_with_counts() {
    let api = Api::with(|s| s.api.force_refresh_min_interval = Duration::from_millis(1)).await;
    let tokens = api.env.fake.issue(rotating());
    let id = id_of(&api.register_x("a1", &tokens, 3600).await);
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
    let tokens = api.env.fake.issue(rotating());
    let id = id_of(&api.register_x("e1", &tokens, 3600).await);
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

    let more = api.env.fake.issue(rotating());
    api.register_x("e2", &more, 3600).await;
    let page: Value = api.get_json(&format!("/v1/events?after={cursor}")).await;
    assert_eq!(page["items"].as_array().unwrap().len(), 1);

    let (status, _) = error_of(api.fetch("/v1/events?after=abc").await).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
}

#[tokio::test]
async fn every_route_is_in_the_openapi_document_and_every_documented_route_answers() {
    let api = Api::start().await;
    let doc: Value = api
        .http
        .get(format!("{}/openapi.json", api.base))
        .send()
        .await
        .unwrap()
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
    ];
    expected.sort();
    assert_eq!(documented, expected);

    // Each documented operation is routed (the fallback answers "no such route").
    let id = AccountId::generate();
    for operation in &documented {
        let (method, path) = operation.split_once(' ').unwrap();
        let url = format!("{}{}", api.base, path.replace("{id}", id.as_str()));
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
    ] {
        assert!(
            doc["components"]["schemas"][schema].is_object(),
            "{schema} documented"
        );
    }
    assert!(doc["components"]["securitySchemes"]["bearer"].is_object());
}

#[tokio::test]
async fn reconnect_by_is_the_refresh_tokens_end() {
    let api = Api::start().await;
    let tokens = api.env.fake.issue(rotating());
    let mut body = spec("r1", &tokens, 3600);
    let ends = Utc::now() + TimeDelta::days(20);
    body["credentials"]["refresh_token_expires_at"] = json!(ends.to_rfc3339());
    let view: Value = api
        .post("/v1/accounts")
        .json(&body)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let reconnect_by =
        chrono::DateTime::parse_from_rfc3339(view["reconnect_by"].as_str().unwrap()).unwrap();
    assert!(
        (reconnect_by.timestamp() - ends.timestamp()).abs() <= 1,
        "{view}"
    );
    assert!(view["next_refresh_at"].is_string());
}

#[tokio::test]
async fn metrics_show_account_state_and_attempts_without_account_ids() {
    let api = Api::start().await;
    let tokens = api.env.fake.issue(rotating());
    let id = id_of(&api.register_x("m1", &tokens, 1800).await);
    api.force_refresh(&id).await;
    tokenwarden::store::census::compute_state(api.env.pool(), Duration::from_secs(300), false)
        .await
        .unwrap();
    let text = api
        .http
        .get(format!("{}/metrics", api.base))
        .send()
        .await
        .unwrap()
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

// ---- untrusted input (issue 9) ----

/// A change to a registration body.
type Edit<'a> = Box<dyn Fn(&mut Value) + 'a>;

async fn count_accounts(api: &Api) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM social_accounts")
        .fetch_one(api.env.pool())
        .await
        .unwrap()
}

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
            .post("/v1/accounts")
            .json(&spec(&format!("edge{i}"), &tokens, seconds))
            .send()
            .await
            .unwrap();
        assert_eq!(reply.status(), StatusCode::CREATED, "{seconds}");
    }
    // Dates beyond ten years either way are taken as ten years away.
    let mut body = spec("far", &tokens, 60);
    body["credentials"]["expires_in"] = Value::Null;
    body["credentials"]["token_expires_at"] = json!("9999-12-31T23:59:59Z");
    body["credentials"]["refresh_token_expires_at"] = json!("0001-01-01T00:00:00Z");
    let reply = api.post("/v1/accounts").json(&body).send().await.unwrap();
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
        let reply = api.post("/v1/accounts").json(&body).send().await.unwrap();
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

    let reply = api
        .http
        .put(format!("{}/healthz", api.base))
        .send()
        .await
        .unwrap();
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
    let (status, error) = error_of(api.post("/v1/accounts").json(&big).send().await.unwrap()).await;
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
        let (status, error) =
            error_of(api.post("/v1/accounts").json(&body).send().await.unwrap()).await;
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

/// Defect 10: the auth scheme is case-insensitive.
#[tokio::test]
async fn the_bearer_scheme_is_case_insensitive() {
    let api = Api::start().await;
    for scheme in ["Bearer", "bearer", "BEARER", "bEaReR"] {
        let reply = api
            .http
            .get(format!("{}/v1/accounts", api.base))
            .header("authorization", format!("{scheme} {KEY}"))
            .send()
            .await
            .unwrap();
        assert_eq!(reply.status(), StatusCode::OK, "{scheme}");
    }
    let reply = api
        .http
        .get(format!("{}/v1/accounts", api.base))
        .header("authorization", format!("Basic {KEY}"))
        .send()
        .await
        .unwrap();
    assert_eq!(reply.status(), StatusCode::UNAUTHORIZED);
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

// ---- connection limits (defect 4) ----

async fn raw_request(stream: &mut tokio::net::TcpStream, path: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    stream
        .write_all(format!("GET {path} HTTP/1.1\r\nHost: t\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let mut buf = vec![0u8; 64 * 1024];
    let mut text = String::new();
    // Probe answers are small: one read of head and body, then the rest.
    while !text.contains("\r\n\r\n") || !text.ends_with('}') {
        let n = stream.read(&mut buf).await.unwrap();
        assert!(n > 0, "closed while waiting for a response: {text}");
        text.push_str(&String::from_utf8_lossy(&buf[..n]));
    }
    text
}

/// Resolves with how long it took the server to close the connection.
async fn closed_after(stream: &mut tokio::net::TcpStream, within: Duration) -> Duration {
    use tokio::io::AsyncReadExt;
    let started = std::time::Instant::now();
    let mut buf = [0u8; 1024];
    loop {
        match tokio::time::timeout(within, stream.read(&mut buf)).await {
            Err(_) => panic!("still open after {within:?}"),
            Ok(Ok(0)) | Ok(Err(_)) => return started.elapsed(),
            Ok(Ok(_)) => {}
        }
    }
}

#[tokio::test]
async fn half_sent_request_heads_are_closed_after_the_header_timeout() {
    use tokio::io::AsyncWriteExt;
    let api = Api::with(|s| {
        s.api.header_read_timeout = Duration::from_millis(500);
        s.api.idle_timeout = Duration::from_secs(30);
    })
    .await;
    let address = api.base.trim_start_matches("http://").to_owned();
    // Nothing sent at all, and half a head.
    let opened = std::time::Instant::now();
    let mut silent = tokio::net::TcpStream::connect(&address).await.unwrap();
    let mut half = tokio::net::TcpStream::connect(&address).await.unwrap();
    half.write_all(b"GET /healthz HTTP/1.1\r\nHost: t\r\nX-Slow: ")
        .await
        .unwrap();
    for stream in [&mut silent, &mut half] {
        closed_after(stream, Duration::from_secs(5)).await;
    }
    let waited = opened.elapsed();
    assert!(waited >= Duration::from_millis(400), "{waited:?}");
    // A kept-alive connection that then trickles half a head is closed too.
    let mut kept = tokio::net::TcpStream::connect(&address).await.unwrap();
    assert!(
        raw_request(&mut kept, "/healthz")
            .await
            .starts_with("HTTP/1.1 200")
    );
    kept.write_all(b"GET /healthz HTTP/1.1\r\n").await.unwrap();
    closed_after(&mut kept, Duration::from_secs(5)).await;
}

#[tokio::test]
async fn idle_keep_alive_connections_are_closed_after_the_idle_timeout() {
    let api = Api::with(|s| {
        s.api.header_read_timeout = Duration::from_millis(300);
        s.api.idle_timeout = Duration::from_millis(1500);
    })
    .await;
    let address = api.base.trim_start_matches("http://").to_owned();
    let mut stream = tokio::net::TcpStream::connect(&address).await.unwrap();
    assert!(
        raw_request(&mut stream, "/healthz")
            .await
            .starts_with("HTTP/1.1 200")
    );
    // Idle longer than the header timeout, shorter than the idle timeout:
    // still open, and it serves the next request.
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert!(
        raw_request(&mut stream, "/healthz")
            .await
            .starts_with("HTTP/1.1 200")
    );
    let waited = closed_after(&mut stream, Duration::from_secs(6)).await;
    assert!(waited >= Duration::from_millis(1200), "{waited:?}");
}

/// Connections over `api.max_connections` wait to be accepted (they are
/// not refused) and are served once a slot frees.
#[tokio::test]
async fn connections_over_the_cap_wait_until_one_closes() {
    let api = Api::with(|s| {
        s.api.max_connections = 2;
        s.api.header_read_timeout = Duration::from_secs(10);
        s.api.idle_timeout = Duration::from_secs(30);
    })
    .await;
    let address = api.base.trim_start_matches("http://").to_owned();
    let mut first = tokio::net::TcpStream::connect(&address).await.unwrap();
    let mut second = tokio::net::TcpStream::connect(&address).await.unwrap();
    assert!(
        raw_request(&mut first, "/healthz")
            .await
            .starts_with("HTTP/1.1 200")
    );
    assert!(
        raw_request(&mut second, "/healthz")
            .await
            .starts_with("HTTP/1.1 200")
    );
    let mut third = tokio::net::TcpStream::connect(&address).await.unwrap();
    let waiting = tokio::spawn(async move { raw_request(&mut third, "/healthz").await });
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert!(
        !waiting.is_finished(),
        "a third connection is served over a cap of two"
    );
    drop(first);
    let answer = tokio::time::timeout(Duration::from_secs(5), waiting)
        .await
        .expect("served once a slot freed")
        .unwrap();
    assert!(answer.starts_with("HTTP/1.1 200"));
    assert!(
        raw_request(&mut second, "/healthz")
            .await
            .starts_with("HTTP/1.1 200")
    );
}

#[tokio::test]
async fn shutdown_closes_idle_connections_and_returns() {
    let env = TestEnv::with(api_settings).await;
    let state = ApiState::new(&env.settings, env.engine.clone()).unwrap();
    let app = api::router(state, 65536, true);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let stop = CancellationToken::new();
    let limits = api::server::ConnectionLimits::from(&env.settings.api);
    let server = tokio::spawn(api::server::serve(listener, app, limits, stop.clone()));
    let mut idle = tokio::net::TcpStream::connect(address).await.unwrap();
    assert!(
        raw_request(&mut idle, "/healthz")
            .await
            .starts_with("HTTP/1.1 200")
    );
    stop.cancel();
    tokio::time::timeout(Duration::from_secs(3), server)
        .await
        .expect("serve returns with an idle connection open")
        .unwrap()
        .unwrap();
    closed_after(&mut idle, Duration::from_secs(1)).await;
    assert!(
        tokio::net::TcpStream::connect(address).await.is_err(),
        "no longer listening"
    );
}
