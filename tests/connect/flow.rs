//! The flow's own rules, on X (PKCE required, rotating refresh tokens):
//! state is single use and expires, the user may decline, the browser only
//! goes where the configuration allows, and the connected account refreshes.

use reqwest::StatusCode;
use serde_json::{Value, json};
use tokenwarden::config::{ClientAuth, Flow, Settings};
use tokenwarden::domain::{AccountStatus, Outcome, Provider, Trigger};
use tokenwarden_fakes::{Consent, FakeX, User};

use crate::common::{CLIENT_ID, CLIENT_SECRET};
use crate::support::{Connect, RETURN_URL, query};

pub fn use_fake_x(s: &mut Settings, fake: &FakeX) {
    let x = s.providers.get_mut(Provider::X);
    x.flow = Flow::X;
    x.client_auth = ClientAuth::Basic;
    x.token_url = Some(fake.token_url());
    x.authorize_url = Some(fake.authorize_url());
    x.api_url = Some(fake.api_url());
    x.client_id = Some(CLIENT_ID.into());
    x.client_secret = Some(CLIENT_SECRET.into());
}

async fn with_x() -> (Connect, FakeX) {
    let fake = FakeX::start(CLIENT_ID, CLIENT_SECRET).await.unwrap();
    let connect = Connect::start(|s| use_fake_x(s, &fake)).await;
    (connect, fake)
}

fn x_body() -> Value {
    json!({"provider": "X", "workspace_id": "ws-1", "redirect_after": RETURN_URL})
}

#[tokio::test]
async fn x_account_connects_with_pkce_and_then_refreshes() {
    // Counters count only once a recorder is installed (once per process).
    tokenwarden::metrics::install();
    let (connect, fake) = with_x().await;
    fake.desk().next_consent(Consent::Approve(User::new(
        "2244994945",
        "XDevelopers",
        "Developers",
    )));
    let started = connect.begin(x_body()).await;
    let url = url::Url::parse(started["authorization_url"].as_str().unwrap()).unwrap();
    assert_eq!(
        query(&url, "code_challenge_method").as_deref(),
        Some("S256")
    );
    assert_eq!(
        query(&url, "scope").as_deref(),
        Some("tweet.read tweet.write users.read offline.access")
    );
    assert_eq!(query(&url, "state").as_deref(), started["state"].as_str());
    assert_eq!(
        query(&url, "redirect_uri").as_deref(),
        Some(connect.url("v1/connect/callback").as_str())
    );
    let back = connect.browse(url.as_str()).await;
    let landed = connect.callback(&back).await;
    let id = Connect::account_id(&landed);

    let row = connect.env.row(&id).await;
    assert_eq!(row.provider, Provider::X);
    assert_eq!(row.external_id, "2244994945");
    assert_eq!(row.handle.as_deref(), Some("XDevelopers"));
    assert_eq!(row.workspace_id, "ws-1");
    assert_eq!(row.status, AccountStatus::Active);
    let first_refresh = connect.env.stored_refresh_token(&id).await.unwrap();
    assert!(fake.is_live(&first_refresh));

    let report = connect
        .env
        .engine
        .refresh(&id, Trigger::Forced)
        .await
        .unwrap();
    assert_eq!(report.outcome, Outcome::Refreshed, "{:?}", report.message);
    assert!(!fake.is_live(&first_refresh), "the refresh token rotated");
    let rotated = connect.env.stored_refresh_token(&id).await.unwrap();
    assert!(fake.is_live(&rotated));

    let metrics = connect
        .browser
        .get(connect.url("metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for series in [
        "tokenwarden_connect_started_total{provider=\"x\"}",
        "tokenwarden_connect_completed_total{provider=\"x\",outcome=\"connected\"}",
    ] {
        assert!(metrics.contains(series), "{series} in\n{metrics}");
    }
}

#[tokio::test]
async fn a_state_is_used_once() {
    let (connect, _fake) = with_x().await;
    let (started, back) = connect.consent(x_body()).await;
    connect.callback(&back).await;

    let again = connect.browser.get(back.clone()).send().await.unwrap();
    assert_eq!(again.status(), StatusCode::BAD_REQUEST);
    let body: Value = again.json().await.unwrap();
    assert_eq!(body["error"]["code"], "state_reused", "{body}");

    let exchange = connect
        .api
        .post(connect.url("v1/connect/exchange"))
        .json(&json!({"state": started["state"], "code": query(&back, "code").unwrap()}))
        .send()
        .await
        .unwrap();
    assert_eq!(exchange.status(), StatusCode::BAD_REQUEST);
    let body: Value = exchange.json().await.unwrap();
    assert_eq!(body["error"]["code"], "state_reused");
}

#[tokio::test]
async fn an_expired_or_unknown_state_is_refused_without_a_redirect() {
    let (connect, _fake) = with_x().await;
    let (_, back) = connect.consent(x_body()).await;
    sqlx::query("UPDATE connect_sessions SET expires_at = now() - interval '1 second'")
        .execute(connect.env.pool())
        .await
        .unwrap();
    let late = connect.browser.get(back.clone()).send().await.unwrap();
    assert_eq!(late.status(), StatusCode::BAD_REQUEST);
    assert!(late.headers().get("location").is_none());
    let body: Value = late.json().await.unwrap();
    assert_eq!(body["error"]["code"], "state_expired");

    let mut forged = back.clone();
    forged.set_query(Some("code=abc&state=not-a-state-we-issued"));
    let unknown = connect.browser.get(forged).send().await.unwrap();
    assert_eq!(unknown.status(), StatusCode::NOT_FOUND);
    let body: Value = unknown.json().await.unwrap();
    assert_eq!(body["error"]["code"], "state_unknown");

    let missing = connect
        .browser
        .get(connect.url("v1/connect/callback?code=abc"))
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status(), StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn a_user_who_declines_is_sent_back_with_the_error() {
    let (connect, fake) = with_x().await;
    fake.desk().next_consent(Consent::Deny);
    let landed = connect.connect(x_body()).await;
    assert_eq!(query(&landed, "error").as_deref(), Some("access_denied"));
    assert!(query(&landed, "account_id").is_none());
    let count: i64 = sqlx::query_scalar("SELECT count(*) FROM social_accounts")
        .fetch_one(connect.env.pool())
        .await
        .unwrap();
    assert_eq!(count, 0);
}

#[tokio::test]
async fn the_api_tier_can_exchange_the_code_itself() {
    let (connect, _fake) = with_x().await;
    let (_, back) = connect.consent(x_body()).await;
    let response = connect.exchange(&back).await;
    assert_eq!(response.status(), StatusCode::OK);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["accounts"][0]["created"], true, "{body}");
    assert_eq!(body["accounts"][0]["account"]["provider"], "X");
    assert_eq!(body["accounts"][0]["warnings"], json!([]));
    assert!(!body.to_string().contains("xat_"), "no token in the answer");
}

#[tokio::test]
async fn without_offline_access_the_account_warns_it_needs_a_reconnect() {
    let (connect, _fake) = with_x().await;
    let mut body = x_body();
    body["scopes"] = json!(["tweet.read", "users.read"]);
    let (_, back) = connect.consent(body).await;
    let response = connect.exchange(&back).await;
    let body: Value = response.json().await.unwrap();
    let warnings = body["accounts"][0]["warnings"].as_array().unwrap();
    assert!(
        warnings[0].as_str().unwrap().contains("no refresh token"),
        "{body}"
    );
    assert!(
        body["accounts"][0]["account"]["reconnect_by"].is_string(),
        "{body}"
    );
    let flags = &body["accounts"][0]["account"]["health"]["flags"];
    assert!(
        flags
            .as_array()
            .unwrap()
            .contains(&json!("no_refresh_token")),
        "{body}"
    );
}

#[tokio::test]
async fn a_reconnect_must_authorize_the_same_platform_account() {
    let (connect, fake) = with_x().await;
    fake.desk()
        .next_consent(Consent::Approve(User::new("111", "first", "First")));
    let id = Connect::account_id(&connect.connect(x_body()).await);

    fake.desk()
        .next_consent(Consent::Approve(User::new("222", "other", "Other")));
    let mut body = x_body();
    body["account_id"] = json!(id.to_string());
    let landed = connect.connect(body.clone()).await;
    assert_eq!(
        query(&landed, "error").as_deref(),
        Some("server_error"),
        "{landed}"
    );
    assert!(
        query(&landed, "error_description")
            .unwrap()
            .contains("not the one")
    );

    fake.desk()
        .next_consent(Consent::Approve(User::new("111", "first", "First")));
    let landed = connect.connect(body).await;
    assert_eq!(Connect::account_id(&landed), id);
}

#[tokio::test]
async fn the_browser_only_returns_where_the_configuration_allows() {
    let (connect, _fake) = with_x().await;
    for target in [
        "https://evil.example/connected",
        "https://app.example.evil.example/connected",
        "http://app.example/connected",
        "https://app.example/elsewhere",
        "https://app.example:8443/connected",
        "https://app.example/connectedevil",
        "javascript:alert(1)",
    ] {
        let mut body = x_body();
        body["redirect_after"] = json!(target);
        let response = connect.begin_raw(body).await;
        assert_eq!(response.status(), StatusCode::FORBIDDEN, "{target}");
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["error"]["code"], "redirect_not_allowed");
        let message = body["error"]["message"].as_str().unwrap();
        assert!(message.contains("redirect_after"), "{message}");
    }
    for malformed in ["/relative", "https://app.example/connected#frag"] {
        let mut body = x_body();
        body["redirect_after"] = json!(malformed);
        let response = connect.begin_raw(body).await;
        assert_eq!(
            response.status(),
            StatusCode::UNPROCESSABLE_ENTITY,
            "{malformed}"
        );
    }
    let mut deeper = x_body();
    deeper["redirect_after"] = json!(format!("{RETURN_URL}/step?x=1"));
    connect.begin(deeper).await;
}

#[tokio::test]
async fn starting_needs_an_api_key_and_a_configured_platform() {
    let (connect, _fake) = with_x().await;
    let anonymous = connect
        .browser
        .post(connect.url("v1/connect"))
        .json(&x_body())
        .send()
        .await
        .unwrap();
    assert_eq!(anonymous.status(), StatusCode::UNAUTHORIZED);

    let mut tiktok = x_body();
    tiktok["provider"] = json!("TIKTOK_BUSINESS");
    let response = connect.begin_raw(tiktok).await;
    assert_eq!(response.status(), StatusCode::CONFLICT);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"]["code"], "not_configured");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("providers.tiktok_business.client_id"),
        "{body}"
    );
}

#[tokio::test]
async fn without_a_public_url_the_flow_is_off() {
    let fake = FakeX::start(CLIENT_ID, CLIENT_SECRET).await.unwrap();
    let connect = Connect::start(|s| {
        use_fake_x(s, &fake);
        s.connect.public_url = None;
    })
    .await;
    let response = connect.begin_raw(x_body()).await;
    assert_eq!(response.status(), StatusCode::CONFLICT);
    let body: Value = response.json().await.unwrap();
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("connect.public_url")
    );
}
