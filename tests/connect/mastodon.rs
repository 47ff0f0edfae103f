//! Mastodon: the user names an instance, the daemon registers an app there
//! once (shared by every user of the instance, its secret encrypted at
//! rest), and the token it obtains never expires, so the account is health
//! checked on its instance.

use reqwest::StatusCode;
use serde_json::{Value, json};
use tokenwarden::config::Flow;
use tokenwarden::domain::{AccountStatus, Outcome, Provider, Trigger};
use tokenwarden_fakes::{Consent, FakeMastodon, User};

use crate::support::{Connect, RETURN_URL, query};

async fn with_instance() -> (Connect, FakeMastodon) {
    let fake = FakeMastodon::start().await.unwrap();
    let origin: url::Url = fake.origin().parse().unwrap();
    let connect = Connect::start(move |s| {
        let section = s.providers.get_mut(Provider::Mastodon);
        section.flow = Flow::Mastodon;
        section.allowed_origins = vec![origin];
    })
    .await;
    (connect, fake)
}

fn body(instance: &str) -> Value {
    json!({
        "provider": "MASTODON",
        "workspace_id": "ws-1",
        "redirect_after": RETURN_URL,
        "extras": {"instance": instance},
    })
}

/// `host:port` of the fake, as account ids are qualified with it.
fn authority(fake: &FakeMastodon) -> String {
    fake.origin().trim_start_matches("http://").to_owned()
}

async fn app_rows(connect: &Connect) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM connect_apps")
        .fetch_one(connect.env.pool())
        .await
        .unwrap()
}

#[tokio::test]
async fn mastodon_account_connects_on_its_instance_and_is_then_health_checked() {
    let (connect, fake) = with_instance().await;
    fake.next_consent(Consent::Approve(User::new("109382", "alice", "Alice")));
    let started = connect.begin(body(&fake.origin())).await;
    let url = url::Url::parse(started["authorization_url"].as_str().unwrap()).unwrap();
    assert_eq!(
        url.as_str().split('?').next().unwrap(),
        format!("{}/oauth/authorize", fake.origin())
    );
    let apps = fake.apps();
    assert_eq!(apps.len(), 1);
    let app = &apps[0];
    let callback = connect.url("v1/connect/callback").to_string();
    assert_eq!(app.name, "tokenwarden");
    assert_eq!(app.redirect_uris, vec![callback.clone()]);
    assert_eq!(
        app.scopes,
        ["read:accounts", "write:media", "write:statuses"].map(String::from)
    );
    assert_eq!(
        query(&url, "client_id").as_deref(),
        Some(app.client_id.as_str())
    );
    assert_eq!(query(&url, "response_type").as_deref(), Some("code"));
    assert_eq!(
        query(&url, "redirect_uri").as_deref(),
        Some(callback.as_str())
    );
    assert_eq!(
        query(&url, "scope").as_deref(),
        Some("read:accounts write:media write:statuses")
    );
    assert_eq!(
        query(&url, "code_challenge_method").as_deref(),
        Some("S256")
    );
    assert_eq!(query(&url, "state").as_deref(), started["state"].as_str());

    let back = connect.browse(url.as_str()).await;
    let landed = connect.callback(&back).await;
    let id = Connect::account_id(&landed);
    let row = connect.env.row(&id).await;
    assert_eq!(row.provider, Provider::Mastodon);
    assert_eq!(row.external_id, format!("109382@{}", authority(&fake)));
    assert_eq!(row.handle.as_deref(), Some("alice@127.0.0.1"));
    assert_eq!(row.display_name.as_deref(), Some("Alice"));
    assert_eq!(row.meta["instance_host"], fake.origin());
    assert_eq!(row.token_expires_at, None, "Mastodon tokens do not expire");
    assert_eq!(row.status, AccountStatus::Active);
    assert_eq!(connect.env.stored_refresh_token(&id).await, None);
    let access = connect.env.stored_access_token(&id).await;
    assert!(fake.is_live(&access));

    let calls = fake.calls();
    let report = connect
        .env
        .engine
        .refresh(&id, Trigger::Forced)
        .await
        .unwrap();
    assert_eq!(report.outcome, Outcome::Healthy, "{:?}", report.message);
    assert_eq!(fake.calls(), calls + 1, "checked with verify_credentials");
}

#[tokio::test]
async fn two_users_of_one_instance_share_one_app() {
    let (connect, fake) = with_instance().await;
    fake.next_consent(Consent::Approve(User::new("1", "alice", "Alice")));
    let first = connect.begin(body(&fake.origin())).await;
    fake.next_consent(Consent::Approve(User::new("2", "bob", "Bob")));
    // The same instance, spelt another way.
    let second = connect.begin(body(&format!("{}/", fake.origin()))).await;
    let client_id = |started: &Value| {
        let url = url::Url::parse(started["authorization_url"].as_str().unwrap()).unwrap();
        query(&url, "client_id").unwrap()
    };
    assert_eq!(client_id(&first), client_id(&second));
    for started in [&first, &second] {
        let back = connect
            .browse(started["authorization_url"].as_str().unwrap())
            .await;
        Connect::account_id(&connect.callback(&back).await);
    }
    assert_eq!(fake.registrations(), 1, "one app for the instance");
    assert_eq!(app_rows(&connect).await, 1);
    assert_eq!(
        fake.live_app_tokens(),
        0,
        "the token that confirmed the cached app was revoked"
    );
    let accounts: i64 = sqlx::query_scalar("SELECT count(*) FROM social_accounts")
        .fetch_one(connect.env.pool())
        .await
        .unwrap();
    assert_eq!(accounts, 2);
}

#[tokio::test]
async fn the_cached_client_secret_is_encrypted_at_rest() {
    let (connect, fake) = with_instance().await;
    let landed = connect.connect(body(&fake.origin())).await;
    Connect::account_id(&landed);
    let secret = fake.apps()[0].client_secret.clone();
    let (client_id, stored, key_id): (String, Vec<u8>, String) =
        sqlx::query_as("SELECT client_id, client_secret, client_secret_key_id FROM connect_apps")
            .fetch_one(connect.env.pool())
            .await
            .unwrap();
    assert_eq!(client_id, fake.apps()[0].client_id);
    assert_eq!(key_id, connect.env.keyring.primary_key_id());
    assert!(
        !stored.windows(secret.len()).any(|w| w == secret.as_bytes()),
        "the client secret is stored in clear"
    );
    for (table, sql) in [
        (
            "connect_apps",
            "SELECT row_to_json(t)::text FROM connect_apps t",
        ),
        (
            "connect_sessions",
            "SELECT row_to_json(t)::text FROM connect_sessions t",
        ),
        (
            "social_accounts",
            "SELECT row_to_json(t)::text FROM social_accounts t",
        ),
    ] {
        let dump: Vec<String> = sqlx::query_scalar(sql)
            .fetch_all(connect.env.pool())
            .await
            .unwrap();
        assert!(
            dump.iter().all(|row| !row.contains(&secret)),
            "{table} holds the client secret"
        );
    }
}

#[tokio::test]
async fn an_instance_the_host_guard_refuses_is_never_contacted() {
    let (connect, fake) = with_instance().await;
    let port = authority(&fake).rsplit(':').next().unwrap().to_owned();
    for instance in [
        // The allowlisted host, but over https: not the allowlisted origin.
        format!("127.0.0.1:{port}"),
        format!("localhost:{port}"),
        format!("https://[::1]:{port}"),
        "http://10.0.0.1".to_owned(),
        "169.254.169.254".to_owned(),
        format!("{}/api/v1/apps", fake.origin()),
        format!("user:pass@127.0.0.1:{port}"),
    ] {
        let response = connect.begin_raw(body(&instance)).await;
        assert_eq!(
            response.status(),
            StatusCode::UNPROCESSABLE_ENTITY,
            "{instance}"
        );
        let answer: Value = response.json().await.unwrap();
        assert_eq!(answer["error"]["code"], "invalid_request", "{answer}");
        assert!(
            answer["error"]["message"]
                .as_str()
                .unwrap()
                .starts_with("extras.instance refused"),
            "{instance}: {answer}"
        );
    }
    let mut missing = body("x");
    missing["extras"] = json!({});
    let response = connect.begin_raw(missing).await;
    assert_eq!(response.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let answer: Value = response.json().await.unwrap();
    assert!(
        answer["error"]["message"]
            .as_str()
            .unwrap()
            .contains("extras.instance is required"),
        "{answer}"
    );
    assert_eq!(fake.requests(), 0, "nothing reached the instance");
    assert_eq!(app_rows(&connect).await, 0);
}

#[tokio::test]
async fn a_user_who_declines_is_sent_back_with_the_error() {
    let (connect, fake) = with_instance().await;
    fake.next_consent(Consent::Deny);
    let landed = connect.connect(body(&fake.origin())).await;
    assert_eq!(query(&landed, "error").as_deref(), Some("access_denied"));
    assert!(query(&landed, "account_id").is_none());
    let accounts: i64 = sqlx::query_scalar("SELECT count(*) FROM social_accounts")
        .fetch_one(connect.env.pool())
        .await
        .unwrap();
    assert_eq!(accounts, 0);
}

/// The token endpoint says `invalid_client`: the cached app is forgotten,
/// so starting again registers a new one and succeeds.
#[tokio::test]
async fn an_app_the_token_endpoint_no_longer_knows_is_registered_again() {
    let (connect, fake) = with_instance().await;
    let (_, back) = connect.consent(body(&fake.origin())).await;
    fake.forget_apps();
    let landed = connect.callback(&back).await;
    assert_eq!(query(&landed, "error").as_deref(), Some("server_error"));
    let why = query(&landed, "error_description").unwrap();
    assert!(why.contains("invalid_client"), "{why}");
    assert_eq!(app_rows(&connect).await, 0, "the lost app is forgotten");

    let landed = connect.connect(body(&fake.origin())).await;
    Connect::account_id(&landed);
    assert_eq!(fake.registrations(), 2);
    assert_eq!(app_rows(&connect).await, 1);
}

/// The instance lost the app between two users: its authorization page
/// would show the second user "unknown client", which the daemon never
/// sees. The cached app is confirmed before use, found gone, and replaced.
#[tokio::test]
async fn an_app_the_instance_lost_is_replaced_before_the_browser_is_sent() {
    let (connect, fake) = with_instance().await;
    Connect::account_id(&connect.connect(body(&fake.origin())).await);
    let lost = fake.apps()[0].client_id.clone();
    fake.forget_apps();

    let started = connect.begin(body(&fake.origin())).await;
    let url = url::Url::parse(started["authorization_url"].as_str().unwrap()).unwrap();
    let client_id = query(&url, "client_id").unwrap();
    assert_ne!(client_id, lost);
    assert_eq!(fake.apps()[0].client_id, client_id);
    assert_eq!(fake.registrations(), 2);
    let back = connect.browse(url.as_str()).await;
    Connect::account_id(&connect.callback(&back).await);
    assert_eq!(app_rows(&connect).await, 1);
}
