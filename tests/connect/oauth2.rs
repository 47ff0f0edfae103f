//! LinkedIn, YouTube, Pinterest and TikTok: each platform's consent screen,
//! code exchange and profile call, then a refresh of the connected account.

use chrono::{DateTime, Utc};
use reqwest::StatusCode;
use secrecy::SecretString;
use serde_json::{Value, json};
use tokenwarden::config::{ClientAuth, Flow, Settings};
use tokenwarden::domain::{AccountId, AccountStatus, Outcome, Provider, Trigger};
use tokenwarden_fakes::{
    Consent, FakeGoogle, FakeLinkedin, FakePinterest, FakeTiktok, LinkedinOrganization, User,
    YOUTUBE_UPLOAD_SCOPE,
};
use url::Url;

use crate::common::{CLIENT_ID, CLIENT_SECRET};
use crate::support::{Connect, RETURN_URL, query};

const DAY: i64 = 86_400;

/// Points `provider`'s connect flow and refresh at a fake.
fn use_fake(
    s: &mut Settings,
    provider: Provider,
    flow: Flow,
    client_auth: ClientAuth,
    urls: [Url; 3],
) {
    let [authorize_url, token_url, api_url] = urls;
    let section = s.providers.get_mut(provider);
    section.flow = flow;
    section.client_auth = client_auth;
    section.authorize_url = Some(authorize_url);
    section.token_url = Some(token_url);
    section.api_url = Some(api_url);
    section.client_id = Some(CLIENT_ID.into());
    section.client_secret = Some(SecretString::from(CLIENT_SECRET));
}

fn body(provider: &str) -> Value {
    json!({"provider": provider, "workspace_id": "ws-1", "redirect_after": RETURN_URL})
}

/// Seconds from now until `at`.
fn seconds_until(at: Option<DateTime<Utc>>) -> i64 {
    (at.expect("a time is set") - Utc::now()).num_seconds()
}

#[track_caller]
fn assert_about(seconds: i64, expected: i64) {
    assert!(
        (expected - 120..=expected).contains(&seconds),
        "{seconds}s, expected about {expected}s"
    );
}

async fn accounts_registered(connect: &Connect) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM social_accounts")
        .fetch_one(connect.env.pool())
        .await
        .unwrap()
}

/// One forced refresh through the engine, which must succeed.
async fn refreshes(connect: &Connect, id: &AccountId) {
    let report = connect
        .env
        .engine
        .refresh(id, Trigger::Forced)
        .await
        .unwrap();
    assert_eq!(report.outcome, Outcome::Refreshed, "{:?}", report.message);
}

/// Starts a flow, lets the browser through the consent screen, and hands
/// the code to `POST /v1/connect/exchange`: its JSON answer.
async fn exchanged(connect: &Connect, body: Value) -> Value {
    let (_, back) = connect.consent(body).await;
    let response = connect.exchange(&back).await;
    let status = response.status();
    let answer: Value = response.json().await.unwrap();
    assert_eq!(status, StatusCode::OK, "{answer}");
    answer
}

// ---- LinkedIn -------------------------------------------------------------

async fn with_linkedin() -> (Connect, FakeLinkedin) {
    let fake = FakeLinkedin::start(CLIENT_ID, CLIENT_SECRET).await.unwrap();
    let connect = Connect::start(|s| {
        for provider in [Provider::LinkedinPerson, Provider::LinkedinCompany] {
            use_fake(
                s,
                provider,
                Flow::Linkedin,
                ClientAuth::Body,
                [fake.authorize_url(), fake.token_url(), fake.api_url()],
            );
            s.providers.get_mut(provider).health_url = Some(fake.introspect_url());
        }
    })
    .await;
    (connect, fake)
}

#[tokio::test]
async fn a_linkedin_member_connects_and_then_refreshes() {
    let (connect, fake) = with_linkedin().await;
    fake.desk()
        .next_consent(Consent::Approve(User::new("782bbtaQ", "jdoe", "John Doe")));
    let started = connect.begin(body("LINKEDIN_PERSON")).await;
    let url = Url::parse(started["authorization_url"].as_str().unwrap()).unwrap();
    assert_eq!(
        query(&url, "scope").as_deref(),
        Some("openid profile w_member_social")
    );
    assert_eq!(query(&url, "client_id").as_deref(), Some(CLIENT_ID));
    assert_eq!(query(&url, "response_type").as_deref(), Some("code"));
    let back = connect.browse(url.as_str()).await;
    let id = Connect::account_id(&connect.callback(&back).await);

    let row = connect.env.row(&id).await;
    assert_eq!(row.provider, Provider::LinkedinPerson);
    assert_eq!(row.external_id, "782bbtaQ");
    assert_eq!(row.display_name.as_deref(), Some("John Doe"));
    assert!(
        row.avatar_url
            .unwrap()
            .starts_with("https://media.licdn.com/")
    );
    assert_eq!(row.granted_scopes, ["openid", "profile", "w_member_social"]);
    assert_eq!(row.status, AccountStatus::Active);
    assert_about(seconds_until(row.token_expires_at), 60 * DAY);
    assert_about(seconds_until(row.refresh_token_expires_at), 365 * DAY);
    let refresh = connect.env.stored_refresh_token(&id).await.unwrap();
    assert!(fake.is_live(&refresh));

    refreshes(&connect, &id).await;
    assert_eq!(
        connect.env.stored_refresh_token(&id).await.unwrap(),
        refresh,
        "LinkedIn's refresh token does not rotate"
    );
}

#[tokio::test]
async fn a_linkedin_app_without_programmatic_refresh_connects_with_a_reconnect_date() {
    let (connect, fake) = with_linkedin().await;
    fake.set_programmatic_refresh(false);
    let answer = exchanged(&connect, body("LINKEDIN_PERSON")).await;
    let landed = &answer["accounts"][0];
    let warnings = landed["warnings"].as_array().unwrap();
    assert!(
        warnings[0].as_str().unwrap().contains("no refresh token"),
        "{answer}"
    );
    let reconnect_by: DateTime<Utc> = landed["account"]["reconnect_by"]
        .as_str()
        .expect("a reconnect date")
        .parse()
        .unwrap();
    assert_about(seconds_until(Some(reconnect_by)), 60 * DAY);
    let id: AccountId = landed["account"]["id"].as_str().unwrap().parse().unwrap();
    assert!(connect.env.stored_refresh_token(&id).await.is_none());
}

#[tokio::test]
async fn a_linkedin_page_is_registered_directly_when_it_is_the_only_one() {
    let (connect, fake) = with_linkedin().await;
    fake.desk()
        .next_consent(Consent::Approve(User::new("m-1", "admin", "Ada Admin")));
    fake.add_organization("m-1", LinkedinOrganization::new(123, "Acme", "acme"));
    // A role that cannot post as the page is no page to connect.
    fake.add_organization_role(
        "m-1",
        LinkedinOrganization::new(777, "Other", "other"),
        "DIRECT_SPONSORED_CONTENT_POSTER",
    );
    let started = connect.begin(body("LINKEDIN_COMPANY")).await;
    let url = Url::parse(started["authorization_url"].as_str().unwrap()).unwrap();
    assert_eq!(
        query(&url, "scope").as_deref(),
        Some("openid profile r_organization_admin w_organization_social")
    );
    let back = connect.browse(url.as_str()).await;
    let id = Connect::account_id(&connect.callback(&back).await);

    let row = connect.env.row(&id).await;
    assert_eq!(row.provider, Provider::LinkedinCompany);
    assert_eq!(row.external_id, "123");
    assert_eq!(row.display_name.as_deref(), Some("Acme"));
    assert_eq!(row.meta["organization_urn"], "urn:li:organization:123");
    assert!(
        row.granted_scopes
            .contains(&"w_organization_social".to_owned())
    );
    refreshes(&connect, &id).await;
}

#[tokio::test]
async fn a_linkedin_member_with_two_pages_chooses_one() {
    let (connect, fake) = with_linkedin().await;
    fake.desk()
        .next_consent(Consent::Approve(User::new("m-2", "admin", "Ada Admin")));
    fake.add_organization("m-2", LinkedinOrganization::new(123, "Acme", "acme"));
    fake.add_organization("m-2", LinkedinOrganization::new(456, "Globex", "globex"));

    let landed = connect.connect(body("LINKEDIN_COMPANY")).await;
    assert_eq!(
        query(&landed, "selection_required").as_deref(),
        Some("true")
    );
    assert!(query(&landed, "account_id").is_none());
    assert_eq!(accounts_registered(&connect).await, 0);
    let state = query(&landed, "state").unwrap();

    let select = |ids: Value| {
        let request = connect
            .api
            .post(connect.url("v1/connect/select"))
            .json(&json!({"state": state, "ids": ids}));
        async move { request.send().await.unwrap() }
    };
    // A mistyped id is refused and the choice stays open.
    for wrong in [json!(["999"]), json!([])] {
        let refused = select(wrong.clone()).await;
        assert_eq!(
            refused.status(),
            StatusCode::UNPROCESSABLE_ENTITY,
            "{wrong}"
        );
        let error: Value = refused.json().await.unwrap();
        assert_eq!(error["error"]["code"], "invalid_request", "{error}");
    }

    let response = select(json!(["456"])).await;
    assert_eq!(response.status(), StatusCode::OK);
    let answer: Value = response.json().await.unwrap();
    let accounts = answer["accounts"].as_array().unwrap();
    assert_eq!(accounts.len(), 1, "{answer}");
    assert_eq!(accounts[0]["account"]["external_id"], "456");
    assert_eq!(accounts[0]["account"]["display_name"], "Globex");
    assert_eq!(accounts[0]["created"], true);
    assert!(
        !answer.to_string().contains("AQV_"),
        "no token in the answer"
    );

    let again = select(json!(["123"])).await;
    assert_eq!(again.status(), StatusCode::BAD_REQUEST);
    let refused: Value = again.json().await.unwrap();
    assert_eq!(refused["error"]["code"], "state_reused", "{refused}");
    assert_eq!(accounts_registered(&connect).await, 1);

    let id: AccountId = accounts[0]["account"]["id"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    refreshes(&connect, &id).await;
}

#[tokio::test]
async fn extras_choose_the_linkedin_page_ahead() {
    let (connect, fake) = with_linkedin().await;
    fake.desk()
        .next_consent(Consent::Approve(User::new("m-3", "admin", "Ada Admin")));
    fake.add_organization("m-3", LinkedinOrganization::new(123, "Acme", "acme"));
    fake.add_organization("m-3", LinkedinOrganization::new(456, "Globex", "globex"));
    let mut request = body("LINKEDIN_COMPANY");
    request["extras"] = json!({"organization_ids": ["123"]});
    let id = Connect::account_id(&connect.connect(request).await);
    assert_eq!(connect.env.row(&id).await.external_id, "123");
    assert_eq!(accounts_registered(&connect).await, 1);
}

// ---- YouTube --------------------------------------------------------------

async fn with_google() -> (Connect, FakeGoogle) {
    let fake = FakeGoogle::start(CLIENT_ID, CLIENT_SECRET).await.unwrap();
    let connect = Connect::start(|s| {
        use_fake(
            s,
            Provider::Youtube,
            Flow::Google,
            ClientAuth::Body,
            [fake.authorize_url(), fake.token_url(), fake.api_url()],
        );
    })
    .await;
    (connect, fake)
}

fn channel_owner() -> User {
    User::new(
        "UC_x5XG1OV2P6uZZ5FSM9Ttw",
        "GoogleDevelopers",
        "Google for Developers",
    )
}

#[tokio::test]
async fn a_youtube_channel_connects_offline_with_pkce_and_then_refreshes() {
    let (connect, fake) = with_google().await;
    fake.desk().next_consent(Consent::Approve(channel_owner()));
    let started = connect.begin(body("YOUTUBE")).await;
    let url = Url::parse(started["authorization_url"].as_str().unwrap()).unwrap();
    assert_eq!(query(&url, "access_type").as_deref(), Some("offline"));
    assert_eq!(query(&url, "prompt").as_deref(), Some("consent"));
    assert_eq!(
        query(&url, "code_challenge_method").as_deref(),
        Some("S256")
    );
    assert_eq!(query(&url, "code_challenge").map(|c| c.len()), Some(43));
    let back = connect.browse(url.as_str()).await;
    let id = Connect::account_id(&connect.callback(&back).await);

    let row = connect.env.row(&id).await;
    assert_eq!(row.provider, Provider::Youtube);
    assert_eq!(row.external_id, "UC_x5XG1OV2P6uZZ5FSM9Ttw");
    assert_eq!(row.handle.as_deref(), Some("@googledevelopers"));
    assert_eq!(row.display_name.as_deref(), Some("Google for Developers"));
    assert!(
        row.avatar_url
            .unwrap()
            .starts_with("https://yt3.ggpht.com/")
    );
    assert!(
        row.granted_scopes
            .contains(&YOUTUBE_UPLOAD_SCOPE.to_owned())
    );
    assert!(row.missing_scopes.is_empty(), "{:?}", row.missing_scopes);
    assert_about(seconds_until(row.token_expires_at), 3599);
    let refresh = connect.env.stored_refresh_token(&id).await.unwrap();
    assert!(fake.is_live(&refresh));

    refreshes(&connect, &id).await;
    assert_eq!(
        connect.env.stored_refresh_token(&id).await.unwrap(),
        refresh,
        "Google sends no new refresh token: the stored one is kept"
    );

    // A returning user gets a refresh token again only because the
    // consent screen is shown again (prompt=consent).
    fake.desk().next_consent(Consent::Approve(channel_owner()));
    let answer = exchanged(&connect, body("YOUTUBE")).await;
    assert_eq!(answer["accounts"][0]["created"], false, "{answer}");
    assert_eq!(answer["accounts"][0]["warnings"], json!([]));
    let renewed = connect.env.stored_refresh_token(&id).await.unwrap();
    assert_ne!(renewed, refresh);
    assert!(fake.is_live(&renewed));
}

#[tokio::test]
async fn a_google_account_without_a_channel_is_sent_back_with_the_error() {
    let (connect, fake) = with_google().await;
    fake.desk().next_consent(Consent::Approve(channel_owner()));
    fake.without_channel(&channel_owner().id);
    let landed = connect.connect(body("YOUTUBE")).await;
    assert_eq!(query(&landed, "error").as_deref(), Some("server_error"));
    assert!(
        query(&landed, "error_description")
            .unwrap()
            .contains("no YouTube channel"),
        "{landed}"
    );
    assert!(query(&landed, "account_id").is_none());
    assert_eq!(accounts_registered(&connect).await, 0);
}

// ---- Pinterest ------------------------------------------------------------

#[tokio::test]
async fn a_pinterest_account_connects_and_then_refreshes() {
    let fake = FakePinterest::start(CLIENT_ID, CLIENT_SECRET)
        .await
        .unwrap();
    let connect = Connect::start(|s| {
        use_fake(
            s,
            Provider::Pinterest,
            Flow::Pinterest,
            ClientAuth::Basic,
            [fake.authorize_url(), fake.token_url(), fake.api_url()],
        );
        s.providers.pinterest.continuous_refresh = true;
    })
    .await;
    fake.desk().next_consent(Consent::Approve(User::new(
        "549755885175",
        "acmehome",
        "Acme Home",
    )));
    let started = connect.begin(body("PINTEREST")).await;
    let url = Url::parse(started["authorization_url"].as_str().unwrap()).unwrap();
    assert_eq!(
        query(&url, "scope").as_deref(),
        Some("user_accounts:read,boards:read,pins:read,pins:write")
    );
    let back = connect.browse(url.as_str()).await;
    let id = Connect::account_id(&connect.callback(&back).await);

    let row = connect.env.row(&id).await;
    assert_eq!(row.provider, Provider::Pinterest);
    assert_eq!(row.external_id, "549755885175");
    assert_eq!(row.handle.as_deref(), Some("acmehome"));
    assert_eq!(row.display_name.as_deref(), Some("Acme Home"));
    assert!(row.avatar_url.unwrap().starts_with("https://i.pinimg.com/"));
    assert_eq!(
        row.granted_scopes,
        [
            "user_accounts:read",
            "boards:read",
            "pins:read",
            "pins:write"
        ]
    );
    assert_about(seconds_until(row.token_expires_at), 30 * DAY);
    assert_about(seconds_until(row.refresh_token_expires_at), 60 * DAY);
    let first = connect.env.stored_refresh_token(&id).await.unwrap();
    assert!(fake.is_live(&first));

    refreshes(&connect, &id).await;
    assert!(!fake.is_live(&first), "the refresh token rotated");
    assert!(fake.is_live(&connect.env.stored_refresh_token(&id).await.unwrap()));
    assert_eq!(
        fake.continuous_refresh_seen(),
        [Some("true".to_owned()), Some("true".to_owned())],
        "asked for on the code exchange and on the refresh"
    );
}

// ---- TikTok ---------------------------------------------------------------

async fn with_tiktok() -> (Connect, FakeTiktok) {
    let fake = FakeTiktok::start(CLIENT_ID, CLIENT_SECRET).await.unwrap();
    let connect = Connect::start(|s| {
        for provider in [Provider::TiktokBusiness, Provider::TiktokPersonal] {
            use_fake(
                s,
                provider,
                Flow::Tiktok,
                ClientAuth::Body,
                [fake.authorize_url(), fake.token_url(), fake.api_url()],
            );
        }
    })
    .await;
    (connect, fake)
}

#[tokio::test]
async fn a_tiktok_business_account_connects_with_the_default_scopes_and_then_refreshes() {
    let (connect, fake) = with_tiktok().await;
    fake.desk().next_consent(Consent::Approve(User::new(
        "-000ZQHxg1x2Yl0hy6WcMmXlmvhJk",
        "acme.shop",
        "Acme Shop",
    )));
    let started = connect.begin(body("TIKTOK_BUSINESS")).await;
    let url = Url::parse(started["authorization_url"].as_str().unwrap()).unwrap();
    assert_eq!(query(&url, "client_key").as_deref(), Some(CLIENT_ID));
    assert!(query(&url, "client_id").is_none());
    assert_eq!(
        query(&url, "scope").as_deref(),
        Some("user.info.basic,video.publish,video.upload")
    );
    let back = connect.browse(url.as_str()).await;
    let id = Connect::account_id(&connect.callback(&back).await);

    let row = connect.env.row(&id).await;
    assert_eq!(row.provider, Provider::TiktokBusiness);
    assert_eq!(row.external_id, "-000ZQHxg1x2Yl0hy6WcMmXlmvhJk");
    assert_eq!(row.display_name.as_deref(), Some("Acme Shop"));
    // `username` needs user.info.profile, which was not asked for.
    assert_eq!(row.handle, None);
    assert_eq!(
        row.granted_scopes,
        ["user.info.basic", "video.publish", "video.upload"]
    );
    assert_about(seconds_until(row.token_expires_at), DAY);
    assert_about(seconds_until(row.refresh_token_expires_at), 365 * DAY);
    let first = connect.env.stored_refresh_token(&id).await.unwrap();

    refreshes(&connect, &id).await;
    assert!(!fake.is_live(&first), "the refresh token rotated");
    assert!(fake.is_live(&connect.env.stored_refresh_token(&id).await.unwrap()));
}

#[tokio::test]
async fn a_tiktok_personal_account_with_the_profile_scope_gets_its_username() {
    let (connect, fake) = with_tiktok().await;
    fake.desk()
        .next_consent(Consent::Approve(User::new("open-7", "dancer", "Dancer")));
    let mut request = body("TIKTOK_PERSONAL");
    request["scopes"] = json!(["user.info.basic", "user.info.profile", "video.publish"]);
    let id = Connect::account_id(&connect.connect(request).await);
    let row = connect.env.row(&id).await;
    assert_eq!(row.provider, Provider::TiktokPersonal);
    assert_eq!(row.external_id, "open-7");
    assert_eq!(row.handle.as_deref(), Some("dancer"));
    refreshes(&connect, &id).await;
}

#[tokio::test]
async fn a_tiktok_error_inside_a_200_is_an_error() {
    let (connect, fake) = with_tiktok().await;
    fake.errors_in_200(true);
    // Without user.info.basic, user/info refuses: error.code
    // scope_not_authorized, in a 200.
    let mut request = body("TIKTOK_BUSINESS");
    request["scopes"] = json!(["video.publish"]);
    let landed = connect.connect(request).await;
    assert_eq!(query(&landed, "error").as_deref(), Some("server_error"));
    assert!(
        query(&landed, "error_description")
            .unwrap()
            .contains("scope_not_authorized"),
        "{landed}"
    );
    assert_eq!(accounts_registered(&connect).await, 0);
}
