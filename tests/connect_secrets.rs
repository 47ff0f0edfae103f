//! The connect flow never shows a code, a PKCE verifier, a token or a client
//! secret: not in logs (at TRACE, ours and every library's), not in the
//! browser's redirects, not in API answers, not when the platform's error
//! echoes them. A test binary of its own: it installs the global subscriber.

mod common;
#[path = "connect/support.rs"]
mod support;

use common::capture::Capture;

use base64::Engine as _;
use serde_json::{Value, json};
use tokenwarden::config::{ClientAuth, Flow};
use tokenwarden::domain::Provider;
use tokenwarden_fakes::{FakeMastodon, FakeX, ScriptedResponse};

use common::CLIENT_ID;
use support::{Connect, RETURN_URL, query, verifiers_in};

const CANARY_SECRET: &str = "canary-x-client-secret-3f2e1d0c";

#[tokio::test]
async fn no_code_verifier_token_or_client_secret_leaks_from_the_connect_flow() {
    let capture = Capture::install_trace();

    let fake = FakeX::start(CLIENT_ID, CANARY_SECRET).await.unwrap();
    let connect = Connect::start(|s| {
        let x = s.providers.get_mut(Provider::X);
        x.flow = Flow::X;
        x.client_auth = ClientAuth::Basic;
        x.token_url = Some(fake.token_url());
        x.authorize_url = Some(fake.authorize_url());
        x.api_url = Some(fake.api_url());
        x.client_id = Some(CLIENT_ID.into());
        x.client_secret = Some(CANARY_SECRET.into());
    })
    .await;
    let body = json!({"provider": "X", "workspace_id": "ws", "redirect_after": RETURN_URL});
    let mut seen: Vec<String> = Vec::new();
    let mut codes: Vec<String> = Vec::new();
    let mut challenges: Vec<String> = Vec::new();
    let started_flow = |started: &Value, challenges: &mut Vec<String>| {
        let url = url::Url::parse(started["authorization_url"].as_str().unwrap()).unwrap();
        challenges.push(query(&url, "code_challenge").unwrap());
    };

    // 1. A flow that succeeds, through the browser.
    let started = connect.begin(body.clone()).await;
    started_flow(&started, &mut challenges);
    let back = connect
        .browse(started["authorization_url"].as_str().unwrap())
        .await;
    codes.push(query(&back, "code").unwrap());
    let landed = connect.callback(&back).await;
    seen.push(landed.to_string());
    let id = Connect::account_id(&landed);

    // 2. The platform refuses the code and echoes it with the client secret.
    let started = connect.begin(body.clone()).await;
    started_flow(&started, &mut challenges);
    let back = connect
        .browse(started["authorization_url"].as_str().unwrap())
        .await;
    let code = query(&back, "code").unwrap();
    fake.script_next(ScriptedResponse::json(
        400,
        json!({"error": "invalid_request", "error_description": format!("code {code} is not valid for client {CLIENT_ID}:{CANARY_SECRET}")}),
    ));
    codes.push(code);
    let landed = connect.callback(&back).await;
    assert_eq!(
        query(&landed, "error").as_deref(),
        Some("server_error"),
        "{landed}"
    );
    seen.push(landed.to_string());

    // 3. The same through the API tier's exchange.
    let started = connect.begin(body.clone()).await;
    started_flow(&started, &mut challenges);
    let back = connect
        .browse(started["authorization_url"].as_str().unwrap())
        .await;
    let code = query(&back, "code").unwrap();
    fake.script_next(ScriptedResponse::json(
        400,
        json!({"error": "invalid_request", "error_description": format!("{code} / {CANARY_SECRET}")}),
    ));
    let answer = connect
        .api
        .post(connect.url("v1/connect/exchange"))
        .json(&json!({"state": query(&back, "state").unwrap(), "code": code}))
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 502);
    seen.push(answer.text().await.unwrap());
    codes.push(code);

    // 3b. The platform echoes the Basic header it was sent: the secret in
    // another spelling.
    let basic =
        base64::engine::general_purpose::STANDARD.encode(format!("{CLIENT_ID}:{CANARY_SECRET}"));
    let started = connect.begin(body.clone()).await;
    started_flow(&started, &mut challenges);
    let back = connect
        .browse(started["authorization_url"].as_str().unwrap())
        .await;
    fake.script_next(ScriptedResponse::json(
        401,
        json!({"error": "unauthorized_client", "error_description": format!("Authorization: Basic {basic} is not valid")}),
    ));
    codes.push(query(&back, "code").unwrap());
    let landed = connect.callback(&back).await;
    assert!(query(&landed, "error").is_some(), "{landed}");
    seen.push(landed.to_string());

    // 4. A successful API exchange, its answer included.
    let started = connect.begin(body).await;
    started_flow(&started, &mut challenges);
    let back = connect
        .browse(started["authorization_url"].as_str().unwrap())
        .await;
    let code = query(&back, "code").unwrap();
    let answer = connect
        .api
        .post(connect.url("v1/connect/exchange"))
        .json(&json!({"state": query(&back, "state").unwrap(), "code": code}))
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 200);
    seen.push(answer.text().await.unwrap());
    codes.push(code);

    let access = connect.env.stored_access_token(&id).await;
    let refresh = connect.env.stored_refresh_token(&id).await.unwrap();
    let stored: Vec<(Value, Value)> =
        sqlx::query_as("SELECT extras, context FROM connect_sessions")
            .fetch_all(connect.env.pool())
            .await
            .unwrap();
    seen.push(format!("{stored:?}"));
    seen.push(capture.text());

    let mut secrets: Vec<String> = vec![CANARY_SECRET.to_owned(), basic, access, refresh];
    secrets.extend(codes);
    let mastodon = mastodon_flows().await;
    seen.extend(mastodon.seen);
    secrets.extend(mastodon.secrets);
    challenges.extend(mastodon.challenges);
    seen.push(capture.text());
    for text in &seen {
        for secret in &secrets {
            assert!(
                !text.contains(secret.as_str()),
                "a secret leaked into:\n{text}"
            );
        }
        let leaked = verifiers_in(text, &challenges);
        assert!(leaked.is_empty(), "a PKCE verifier leaked into:\n{text}");
    }
    // The logs did record the flows, so the check above read something.
    let logs = capture.text();
    assert!(logs.contains("connect flow started"), "{logs}");
    assert!(logs.contains("connect flow failed"), "{logs}");
}

struct Seen {
    seen: Vec<String>,
    secrets: Vec<String>,
    challenges: Vec<String>,
}

/// Mastodon: the client secret is the daemon's own, issued by the instance
/// at registration; a success, and a refused code echoed with that secret.
async fn mastodon_flows() -> Seen {
    let fake = FakeMastodon::start().await.unwrap();
    let origin: url::Url = fake.origin().parse().unwrap();
    let connect = Connect::start(move |s| {
        let section = s.providers.get_mut(Provider::Mastodon);
        section.flow = Flow::Mastodon;
        section.allowed_origins = vec![origin];
    })
    .await;
    let body = json!({
        "provider": "MASTODON", "workspace_id": "ws", "redirect_after": RETURN_URL,
        "extras": {"instance": fake.origin()},
    });
    let mut out = Seen {
        seen: Vec::new(),
        secrets: Vec::new(),
        challenges: Vec::new(),
    };
    let authorize = async |out: &mut Seen| {
        let started = connect.begin(body.clone()).await;
        let url = url::Url::parse(started["authorization_url"].as_str().unwrap()).unwrap();
        out.challenges.push(query(&url, "code_challenge").unwrap());
        let back = connect.browse(url.as_str()).await;
        out.secrets.push(query(&back, "code").unwrap());
        back
    };
    let back = authorize(&mut out).await;
    let landed = connect.callback(&back).await;
    let id = Connect::account_id(&landed);
    out.seen.push(landed.to_string());
    let client_secret = fake.apps()[0].client_secret.clone();

    let back = authorize(&mut out).await;
    fake.script_next(ScriptedResponse::json(
        400,
        json!({"error": "invalid_grant", "error_description": format!("{} / {client_secret}", query(&back, "code").unwrap())}),
    ));
    let landed = connect.callback(&back).await;
    assert_eq!(query(&landed, "error").as_deref(), Some("server_error"));
    out.seen.push(landed.to_string());

    let stored: Vec<(Value, Value)> =
        sqlx::query_as("SELECT extras, context FROM connect_sessions")
            .fetch_all(connect.env.pool())
            .await
            .unwrap();
    out.seen.push(format!("{stored:?}"));
    out.secrets.push(client_secret);
    out.secrets.push(connect.env.stored_access_token(&id).await);
    out
}
