//! Meta's four products through the connect flow, each against a Graph fake
//! that then refreshes or health-checks what it issued: Facebook Pages and
//! Instagram with Facebook Login (Facebook Login, the long-lived user token,
//! the Page listing, Pages named up front or chosen in a second call),
//! Instagram with Instagram Login and Threads (their own logins and
//! long-lived token exchanges).

use reqwest::StatusCode;
use serde_json::{Value, json};
use tokenwarden::config::{Flow, Settings};
use tokenwarden::domain::{AccountId, AccountStatus, Outcome, Provider, Trigger};
use tokenwarden_fakes::{Consent, FakeGraph, FakePage, LONG_LIVED_SECONDS, User};

use crate::common::{CLIENT_ID, CLIENT_SECRET};
use crate::support::{Connect, RETURN_URL, query, query_all};

fn use_facebook(s: &mut Settings, provider: Provider, fake: &FakeGraph) {
    let section = s.providers.get_mut(provider);
    section.flow = Flow::Facebook;
    section.token_url = Some(fake.exchange_url());
    section.health_url = Some(fake.debug_token_url());
    section.authorize_url = Some(fake.authorize_url());
    section.api_url = Some(fake.api_url());
    section.client_id = Some(CLIENT_ID.into());
    section.client_secret = Some(CLIENT_SECRET.into());
}

fn use_own_login(s: &mut Settings, provider: Provider, fake: &FakeGraph) {
    let section = s.providers.get_mut(provider);
    section.flow = if provider == Provider::Threads {
        Flow::Threads
    } else {
        Flow::InstagramLogin
    };
    section.token_url = Some(fake.refresh_url());
    section.exchange_url = Some(fake.exchange_url());
    section.authorize_url = Some(fake.authorize_url());
    section.api_url = Some(fake.api_url());
    section.client_id = Some(CLIENT_ID.into());
    section.client_secret = Some(CLIENT_SECRET.into());
}

async fn with_facebook(provider: Provider) -> (Connect, FakeGraph) {
    let fake = FakeGraph::facebook(CLIENT_ID, CLIENT_SECRET).await.unwrap();
    let connect = Connect::start(|s| use_facebook(s, provider, &fake)).await;
    (connect, fake)
}

async fn with_own_login(provider: Provider) -> (Connect, FakeGraph) {
    let fake = if provider == Provider::Threads {
        FakeGraph::threads_app(CLIENT_ID, CLIENT_SECRET).await
    } else {
        FakeGraph::instagram_app(CLIENT_ID, CLIENT_SECRET).await
    }
    .unwrap();
    let connect = Connect::start(|s| use_own_login(s, provider, &fake)).await;
    (connect, fake)
}

fn body(provider: Provider) -> Value {
    json!({"provider": provider.as_str(), "workspace_id": "ws-1", "redirect_after": RETURN_URL})
}

fn baker() -> User {
    User::new("10001", "baker", "Bea Baker")
}

fn three_pages() -> Vec<FakePage> {
    vec![
        FakePage::new("101", "Bakery"),
        FakePage::new("102", "Cafe"),
        FakePage::new("103", "Deli"),
    ]
}

/// `POST /v1/connect/exchange` with the code of a consent already given;
/// the status and the JSON.
async fn exchange(connect: &Connect, state: &str, code: &str) -> (StatusCode, Value) {
    let response = connect
        .api
        .post(connect.url("v1/connect/exchange"))
        .json(&json!({"state": state, "code": code}))
        .send()
        .await
        .unwrap();
    (response.status(), response.json().await.unwrap())
}

/// The scheduled health check of a Page token, made due now.
async fn health_check(connect: &Connect, id: &AccountId) -> tokenwarden::domain::RefreshReport {
    connect
        .env
        .update_schedule(id, "next_attempt_at = now() - interval '1 second'")
        .await;
    connect
        .env
        .engine
        .refresh(id, Trigger::HealthCheck)
        .await
        .unwrap()
}

async fn count_accounts(connect: &Connect) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM social_accounts")
        .fetch_one(connect.env.pool())
        .await
        .unwrap()
}

#[tokio::test]
async fn facebook_pages_named_up_front_connect_with_page_tokens_that_pass_their_health_check() {
    let (connect, fake) = with_facebook(Provider::FacebookPage).await;
    fake.give_pages("10001", three_pages());
    // Two Pages per answer: the listing follows its cursor.
    fake.set_page_size(2);
    fake.desk().next_consent(Consent::Approve(baker()));
    let mut request = body(Provider::FacebookPage);
    request["extras"] = json!({"page_ids": ["101", "103"]});
    let started = connect.begin(request).await;
    let dialog = url::Url::parse(started["authorization_url"].as_str().unwrap()).unwrap();
    assert_eq!(
        query(&dialog, "scope").as_deref(),
        Some("pages_show_list,pages_read_engagement,pages_manage_posts")
    );
    assert_eq!(query(&dialog, "response_type").as_deref(), Some("code"));
    assert_eq!(query(&dialog, "client_id").as_deref(), Some(CLIENT_ID));

    let back = connect.browse(dialog.as_str()).await;
    let landed = connect.callback(&back).await;
    let ids: Vec<AccountId> = query_all(&landed, "account_id")
        .iter()
        .map(|id| id.parse().unwrap())
        .collect();
    assert_eq!(ids.len(), 2, "{landed}");

    let mut seen = Vec::new();
    for id in &ids {
        let row = connect.env.row(id).await;
        assert_eq!(row.provider, Provider::FacebookPage);
        assert_eq!(row.status, AccountStatus::Active);
        assert_eq!(row.meta["page_id"], json!(row.external_id));
        assert_eq!(row.token_expires_at, None, "a Page token never expires");
        assert!(row.missing_scopes.is_empty(), "{:?}", row.missing_scopes);
        assert!(
            row.avatar_url
                .as_deref()
                .is_some_and(|u| u.ends_with(".jpg"))
        );
        let token = connect.env.stored_access_token(id).await;
        assert!(fake.is_live(&token) && fake.never_expires(&token));
        seen.push((row.external_id, row.display_name.unwrap()));

        let report = health_check(&connect, id).await;
        assert_eq!(report.outcome, Outcome::Healthy, "{:?}", report.message);
    }
    seen.sort();
    assert_eq!(
        seen,
        vec![
            ("101".to_owned(), "Bakery".to_owned()),
            ("103".to_owned(), "Deli".to_owned())
        ]
    );
}

#[tokio::test]
async fn facebook_pages_are_chosen_in_a_second_call() {
    let (connect, fake) = with_facebook(Provider::FacebookPage).await;
    fake.give_pages("10001", three_pages());
    fake.desk().next_consent(Consent::Approve(baker()));
    let landed = connect.connect(body(Provider::FacebookPage)).await;
    assert_eq!(
        query(&landed, "selection_required").as_deref(),
        Some("true")
    );
    assert!(query(&landed, "account_id").is_none());
    assert_eq!(
        count_accounts(&connect).await,
        0,
        "nothing before the choice"
    );
    let state = query(&landed, "state").unwrap();

    let select = |ids: Value| {
        connect
            .api
            .post(connect.url("v1/connect/select"))
            .json(&json!({"state": state, "ids": ids}))
            .send()
    };
    let response = select(json!(["102"])).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let answer: Value = response.json().await.unwrap();
    let accounts = answer["accounts"].as_array().unwrap();
    assert_eq!(accounts.len(), 1, "{answer}");
    assert_eq!(accounts[0]["account"]["external_id"], "102");
    assert_eq!(accounts[0]["account"]["display_name"], "Cafe");
    assert!(
        !answer.to_string().contains("EAA"),
        "no token in the answer"
    );

    let id: AccountId = accounts[0]["account"]["id"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    let report = connect
        .env
        .engine
        .refresh(&id, Trigger::Forced)
        .await
        .unwrap();
    assert_eq!(report.outcome, Outcome::Healthy, "{:?}", report.message);

    let again = select(json!(["101"])).await.unwrap();
    assert_eq!(
        again.status(),
        StatusCode::BAD_REQUEST,
        "a choice is made once"
    );
    assert_eq!(count_accounts(&connect).await, 1);
}

#[tokio::test]
async fn the_choice_is_offered_through_the_api_tiers_exchange_too() {
    let (connect, fake) = with_facebook(Provider::FacebookPage).await;
    fake.give_pages("10001", three_pages());
    fake.desk().next_consent(Consent::Approve(baker()));
    let (_, back) = connect.consent(body(Provider::FacebookPage)).await;
    let (status, answer) = exchange(
        &connect,
        &query(&back, "state").unwrap(),
        &query(&back, "code").unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_eq!(
        answer["selection_required"],
        json!([
            {"id": "101", "name": "Bakery"},
            {"id": "102", "name": "Cafe"},
            {"id": "103", "name": "Deli"},
        ])
    );
}

#[tokio::test]
async fn a_facebook_user_without_pages_is_told_so() {
    let (connect, fake) = with_facebook(Provider::FacebookPage).await;
    fake.desk().next_consent(Consent::Approve(baker()));
    let (_, back) = connect.consent(body(Provider::FacebookPage)).await;
    let (status, answer) = exchange(
        &connect,
        &query(&back, "state").unwrap(),
        &query(&back, "code").unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_GATEWAY, "{answer}");
    assert_eq!(answer["error"]["code"], "identity_failed");
    assert!(
        answer["error"]["message"]
            .as_str()
            .unwrap()
            .contains("manages no Page"),
        "{answer}"
    );
    assert_eq!(count_accounts(&connect).await, 0);
}

#[tokio::test]
async fn a_page_the_user_does_not_manage_is_refused() {
    let (connect, fake) = with_facebook(Provider::FacebookPage).await;
    fake.give_pages("10001", three_pages());
    fake.desk().next_consent(Consent::Approve(baker()));
    let mut request = body(Provider::FacebookPage);
    request["extras"] = json!({"page_ids": ["101", "999"]});
    let landed = connect.connect(request).await;
    assert_eq!(query(&landed, "error").as_deref(), Some("server_error"));
    assert!(
        query(&landed, "error_description")
            .unwrap()
            .contains("\"999\" is not among the Pages")
    );
    assert_eq!(count_accounts(&connect).await, 0);

    let mut malformed = body(Provider::FacebookPage);
    malformed["extras"] = json!({"page_ids": "101"});
    let response = connect.begin_raw(malformed).await;
    assert_eq!(response.status(), StatusCode::UNPROCESSABLE_ENTITY);
}

#[tokio::test]
async fn a_facebook_user_who_declines_is_sent_back_with_the_error() {
    let (connect, fake) = with_facebook(Provider::FacebookPage).await;
    fake.desk().next_consent(Consent::Deny);
    let (_, back) = connect.consent(body(Provider::FacebookPage)).await;
    assert_eq!(query(&back, "error_reason").as_deref(), Some("user_denied"));
    let landed = connect.callback(&back).await;
    assert_eq!(query(&landed, "error").as_deref(), Some("access_denied"));
    assert_eq!(count_accounts(&connect).await, 0);
    assert_eq!(fake.login_calls(), 0, "no code to exchange");
}

#[tokio::test]
async fn a_facebook_code_used_once_is_refused_the_second_time() {
    let (connect, fake) = with_facebook(Provider::FacebookPage).await;
    fake.give_pages("10001", three_pages());
    fake.desk().next_consent(Consent::Approve(baker()));
    let first = connect.begin(body(Provider::FacebookPage)).await;
    let second = connect.begin(body(Provider::FacebookPage)).await;
    let back = connect
        .browse(first["authorization_url"].as_str().unwrap())
        .await;
    let code = query(&back, "code").unwrap();
    let landed = connect.callback(&back).await;
    assert_eq!(
        query(&landed, "selection_required").as_deref(),
        Some("true")
    );

    // The same code under another session of the same app: Meta refuses it.
    let (status, answer) = exchange(&connect, second["state"].as_str().unwrap(), &code).await;
    assert_eq!(status, StatusCode::BAD_GATEWAY, "{answer}");
    assert_eq!(answer["error"]["code"], "exchange_failed");
    let message = answer["error"]["message"].as_str().unwrap();
    assert!(message.contains("has been used"), "{message}");
    assert!(!message.contains(&code) && !message.contains(CLIENT_SECRET));
}

#[tokio::test]
async fn instagram_accounts_linked_to_pages_connect_named_or_chosen() {
    let (connect, fake) = with_facebook(Provider::InstagramFacebookLogin).await;
    fake.give_pages(
        "10001",
        vec![
            FakePage::new("101", "Bakery").with_instagram(
                "17841400000000101",
                "bakery",
                "The Bakery",
            ),
            FakePage::new("102", "Cafe"),
            FakePage::new("103", "Deli").with_instagram("17841400000000103", "deli", "The Deli"),
        ],
    );

    // Named by the Page: the Instagram account linked to it.
    fake.desk().next_consent(Consent::Approve(baker()));
    let mut request = body(Provider::InstagramFacebookLogin);
    request["extras"] = json!({"page_ids": ["101"]});
    let id = Connect::account_id(&connect.connect(request).await);
    let row = connect.env.row(&id).await;
    assert_eq!(row.provider, Provider::InstagramFacebookLogin);
    assert_eq!(row.external_id, "17841400000000101");
    assert_eq!(row.handle.as_deref(), Some("bakery"));
    assert_eq!(row.display_name.as_deref(), Some("The Bakery"));
    assert_eq!(
        row.meta,
        json!({"page_id": "101", "ig_user_id": "17841400000000101"})
    );
    assert!(row.missing_scopes.is_empty(), "{:?}", row.missing_scopes);
    let token = connect.env.stored_access_token(&id).await;
    assert!(fake.never_expires(&token), "the Page's token");
    let report = health_check(&connect, &id).await;
    assert_eq!(report.outcome, Outcome::Healthy, "{:?}", report.message);

    // Chosen: only Pages with a linked account are offered.
    fake.desk().next_consent(Consent::Approve(baker()));
    let landed = connect
        .connect(body(Provider::InstagramFacebookLogin))
        .await;
    let state = query(&landed, "state").unwrap();
    let response = connect
        .api
        .post(connect.url("v1/connect/select"))
        .json(&json!({"state": state, "ids": ["17841400000000103"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let answer: Value = response.json().await.unwrap();
    assert_eq!(
        answer["accounts"][0]["account"]["external_id"], "17841400000000103",
        "{answer}"
    );
    assert_eq!(count_accounts(&connect).await, 2);
}

#[tokio::test]
async fn instagram_pages_without_a_linked_account_are_not_enough() {
    let (connect, fake) = with_facebook(Provider::InstagramFacebookLogin).await;
    fake.give_pages("10001", vec![FakePage::new("102", "Cafe")]);
    fake.desk().next_consent(Consent::Approve(baker()));
    let landed = connect
        .connect(body(Provider::InstagramFacebookLogin))
        .await;
    assert_eq!(query(&landed, "error").as_deref(), Some("server_error"));
    assert!(
        query(&landed, "error_description")
            .unwrap()
            .contains("linked Instagram professional account")
    );
}

#[tokio::test]
async fn instagram_login_connects_a_long_lived_token_that_then_refreshes() {
    for wrapped in [false, true] {
        let (connect, fake) = with_own_login(Provider::InstagramLogin).await;
        fake.wrap_code_exchange(wrapped);
        fake.desk().next_consent(Consent::Approve(User::new(
            "17841405793187218",
            "bakery",
            "The Bakery",
        )));
        let started = connect.begin(body(Provider::InstagramLogin)).await;
        let window = url::Url::parse(started["authorization_url"].as_str().unwrap()).unwrap();
        assert_eq!(
            query(&window, "scope").as_deref(),
            Some("instagram_business_basic,instagram_business_content_publish")
        );
        let back = connect.browse(window.as_str()).await;
        assert_eq!(
            back.fragment(),
            Some("_"),
            "Instagram's redirect ends in #_"
        );
        let id = Connect::account_id(&connect.callback(&back).await);

        let row = connect.env.row(&id).await;
        assert_eq!(row.provider, Provider::InstagramLogin);
        assert_eq!(row.external_id, "17841405793187218");
        assert_eq!(row.handle.as_deref(), Some("bakery"));
        assert_eq!(row.display_name.as_deref(), Some("The Bakery"));
        assert_eq!(row.meta, json!({"ig_user_id": "17841405793187218"}));
        assert_eq!(
            row.granted_scopes,
            vec![
                "instagram_business_basic".to_owned(),
                "instagram_business_content_publish".to_owned()
            ]
        );
        assert!(row.missing_scopes.is_empty());
        let lifetime = (row.token_expires_at.unwrap() - chrono::Utc::now()).num_seconds();
        let long = LONG_LIVED_SECONDS as i64;
        assert!((long - 30..=long).contains(&lifetime), "{lifetime}");
        let token = connect.env.stored_access_token(&id).await;
        assert!(fake.is_live(&token) && !fake.is_short_lived(&token));
        assert!(connect.env.stored_refresh_token(&id).await.is_none());

        // Instagram refreshes tokens a day old or older.
        connect
            .env
            .update_account(&id, "token_issued_at = now() - interval '2 days'")
            .await;
        let report = connect
            .env
            .engine
            .refresh(&id, Trigger::Forced)
            .await
            .unwrap();
        assert_eq!(report.outcome, Outcome::Refreshed, "{:?}", report.message);
        let refreshed = connect.env.stored_access_token(&id).await;
        assert!(refreshed != token && fake.is_live(&refreshed));
    }
}

#[tokio::test]
async fn an_instagram_login_code_used_once_is_refused_the_second_time() {
    let (connect, fake) = with_own_login(Provider::InstagramLogin).await;
    let first = connect.begin(body(Provider::InstagramLogin)).await;
    let second = connect.begin(body(Provider::InstagramLogin)).await;
    let back = connect
        .browse(first["authorization_url"].as_str().unwrap())
        .await;
    let code = query(&back, "code").unwrap();
    Connect::account_id(&connect.callback(&back).await);

    let (status, answer) = exchange(&connect, second["state"].as_str().unwrap(), &code).await;
    assert_eq!(status, StatusCode::BAD_GATEWAY, "{answer}");
    assert_eq!(answer["error"]["code"], "exchange_failed");
    let message = answer["error"]["message"].as_str().unwrap();
    assert!(message.contains("already used"), "{message}");
    assert!(!message.contains(&code));
    assert_eq!(fake.calls(), 0, "nothing was refreshed");
}

#[tokio::test]
async fn an_instagram_user_who_declines_is_sent_back_with_the_error() {
    let (connect, fake) = with_own_login(Provider::InstagramLogin).await;
    fake.desk().next_consent(Consent::Deny);
    let landed = connect.connect(body(Provider::InstagramLogin)).await;
    assert_eq!(query(&landed, "error").as_deref(), Some("access_denied"));
    assert_eq!(count_accounts(&connect).await, 0);
}

#[tokio::test]
async fn threads_connects_a_long_lived_token_that_then_refreshes() {
    let (connect, fake) = with_own_login(Provider::Threads).await;
    fake.desk()
        .next_consent(Consent::Approve(User::new("7003", "baker", "Bea Baker")));
    let started = connect.begin(body(Provider::Threads)).await;
    let window = url::Url::parse(started["authorization_url"].as_str().unwrap()).unwrap();
    assert_eq!(
        query(&window, "scope").as_deref(),
        Some("threads_basic,threads_content_publish")
    );
    let id = Connect::account_id(
        &connect
            .callback(&connect.browse(window.as_str()).await)
            .await,
    );

    let row = connect.env.row(&id).await;
    assert_eq!(row.provider, Provider::Threads);
    assert_eq!(row.external_id, "7003");
    assert_eq!(row.handle.as_deref(), Some("baker"));
    assert_eq!(row.meta, json!({"threads_user_id": "7003"}));
    assert!(row.missing_scopes.is_empty(), "the scopes asked for stand");
    assert!(row.token_expires_at.is_some());
    let token = connect.env.stored_access_token(&id).await;
    assert!(fake.is_live(&token) && !fake.is_short_lived(&token));

    connect
        .env
        .update_account(&id, "token_issued_at = now() - interval '2 days'")
        .await;
    let report = connect
        .env
        .engine
        .refresh(&id, Trigger::Forced)
        .await
        .unwrap();
    assert_eq!(report.outcome, Outcome::Refreshed, "{:?}", report.message);
    assert!(fake.is_live(&connect.env.stored_access_token(&id).await));
}

#[tokio::test]
async fn a_threads_outage_is_temporary_and_leaks_no_token() {
    let (connect, fake) = with_own_login(Provider::Threads).await;
    let (_, back) = connect.consent(body(Provider::Threads)).await;
    // The code exchange answers; the long-lived exchange is down.
    fake.script_next(tokenwarden_fakes::ScriptedResponse::json(
        200,
        json!({"access_token": "THQSshortlivedtoken0123456789", "user_id": 7003}),
    ));
    fake.script_next(tokenwarden_fakes::ScriptedResponse::json(
        500,
        json!({"error": {"message": "Service temporarily unavailable for THQSshortlivedtoken0123456789", "type": "OAuthException", "code": 2, "fbtrace_id": "x"}}),
    ));
    let (status, answer) = exchange(
        &connect,
        &query(&back, "state").unwrap(),
        &query(&back, "code").unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{answer}");
    assert_eq!(answer["error"]["code"], "platform_unavailable");
    assert!(
        !answer.to_string().contains("THQSshortlivedtoken"),
        "{answer}"
    );
}
