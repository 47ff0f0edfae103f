//! The Bluesky connect flow never shows a code, a PKCE verifier, a token or
//! a DPoP private key: not in logs (at TRACE, ours and every library's), not
//! in the browser's redirects, not in API answers or the sessions' clear
//! columns, not when the authorization server's error echoes the code. A
//! test binary of its own: it installs the global subscriber.

mod common;
#[path = "connect/support.rs"]
mod support;

use common::capture::Capture;

use secrecy::ExposeSecret;
use serde_json::{Value, json};
use tokenwarden::config::Flow;
use tokenwarden::crypto::Field;
use tokenwarden::domain::{Outcome, Provider, Trigger};
use tokenwarden::providers::DpopKey;
use tokenwarden_fakes::{FakeBluesky, ScriptedResponse};
use url::Url;

use support::{Connect, RETURN_URL, query, verifiers_in};

#[tokio::test]
async fn no_code_verifier_token_or_dpop_key_leaks_from_the_bluesky_flow() {
    let capture = Capture::install_trace();

    let fake = FakeBluesky::start("https://unused.example/client.json")
        .await
        .unwrap();
    fake.create_account("alice.localhost");
    let port = fake.origin().rsplit(':').next().unwrap().to_owned();
    let handle_origin: Url = format!("http://alice.localhost:{port}").parse().unwrap();
    let connect = Connect::start(|s| {
        s.providers.bluesky.client_id = s.bluesky_client_id();
        let section = s.providers.get_mut(Provider::Bluesky);
        section.flow = Flow::Bluesky;
        section.plc_directory = Some(fake.plc_directory().parse().unwrap());
        section.allowed_origins = vec![fake.origin().parse().unwrap(), handle_origin];
    })
    .await;
    let body = json!({
        "provider": "BLUESKY", "workspace_id": "ws", "redirect_after": RETURN_URL,
        "extras": {"handle": "alice.localhost"},
    });
    let mut seen: Vec<String> = Vec::new();
    let mut codes: Vec<String> = Vec::new();

    // 1. A flow that succeeds, through the browser, and a refresh.
    let started = connect.begin(body.clone()).await;
    seen.push(started.to_string());
    let back = connect
        .browse(started["authorization_url"].as_str().unwrap())
        .await;
    codes.push(query(&back, "code").unwrap());
    let landed = connect.callback(&back).await;
    seen.push(landed.to_string());
    let id = Connect::account_id(&landed);
    let first_refresh = connect.env.stored_refresh_token(&id).await.unwrap();
    let report = connect
        .env
        .engine
        .refresh(&id, Trigger::Forced)
        .await
        .unwrap();
    assert_eq!(report.outcome, Outcome::Refreshed, "{:?}", report.message);
    seen.push(format!("{report:?}"));

    // 2. The server refuses the code, echoing it.
    let (_, back) = connect.consent(body.clone()).await;
    let code = query(&back, "code").unwrap();
    fake.script_next(ScriptedResponse::json(
        400,
        json!({"error": "invalid_grant", "error_description": format!("code {code} is not valid")}),
    ));
    codes.push(code);
    let landed = connect.callback(&back).await;
    assert_eq!(
        query(&landed, "error").as_deref(),
        Some("server_error"),
        "{landed}"
    );
    seen.push(landed.to_string());

    // 3. The same through the API tier's exchange, then one that succeeds.
    for scripted in [true, false] {
        let (_, back) = connect.consent(body.clone()).await;
        let code = query(&back, "code").unwrap();
        if scripted {
            fake.script_next(ScriptedResponse::json(
                400,
                json!({"error": "invalid_request", "error_description": format!("bad {code}")}),
            ));
        }
        let answer = connect
            .api
            .post(connect.url("v1/connect/exchange"))
            .json(&json!({"state": query(&back, "state").unwrap(), "code": code, "iss": query(&back, "iss")}))
            .send()
            .await
            .unwrap();
        seen.push(answer.text().await.unwrap());
        codes.push(code);
    }

    let row = connect.env.row(&id).await;
    let jwk = connect
        .env
        .keyring
        .decrypt(
            &id,
            Field::DpopKey,
            row.credentials_key_id.as_deref().unwrap(),
            row.dpop_key_ciphertext.as_deref().unwrap(),
        )
        .unwrap()
        .expose_secret()
        .to_owned();
    let scalar = DpopKey::from_jwk(&jwk).unwrap().private_scalar_b64();
    let mut secrets = vec![
        connect.env.stored_access_token(&id).await,
        connect.env.stored_refresh_token(&id).await.unwrap(),
        first_refresh,
        jwk,
        scalar,
    ];
    secrets.extend(codes);
    let stored: Vec<(Value, Value)> =
        sqlx::query_as("SELECT extras, context FROM connect_sessions")
            .fetch_all(connect.env.pool())
            .await
            .unwrap();
    seen.push(format!("{stored:?}"));
    let logs = capture.text();
    seen.push(logs.clone());
    let challenges: Vec<String> = fake
        .pushed_requests()
        .iter()
        .map(|form| form["code_challenge"].clone())
        .collect();
    assert_eq!(challenges.len(), 4);
    for text in &seen {
        for secret in &secrets {
            assert!(
                !text.contains(secret.as_str()),
                "a secret leaked into:\n{text}"
            );
        }
        assert!(
            verifiers_in(text, &challenges).is_empty(),
            "a PKCE verifier leaked into:\n{text}"
        );
        assert!(
            !text.contains("\"d\":"),
            "a private JWK leaked into:\n{text}"
        );
    }
    // The logs did record the flows, so the checks above read something.
    assert!(logs.contains("connect flow started"), "{logs}");
    assert!(logs.contains("connect flow failed"), "{logs}");
}
