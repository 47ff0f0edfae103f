//! Canary tokens never show up in logs (at TRACE, ours and every library's),
//! error messages, reports, Debug output, panic messages, or the CLI's output.
//! A test binary of its own: it installs the global log subscriber.

mod common;

use std::io::Write;
use std::sync::{Arc, Mutex};

use chrono::{TimeDelta, Utc};
use common::{TestEnv, new_account};
use serde_json::json;
use tokenwarden::domain::{Provider, Trigger};
use tokenwarden::fake::{IssuedTokens, ScriptedResponse};
use tokenwarden::policy::RefreshPolicy;
use tokenwarden::store::accounts;

const CANARY_AT: &str = "canary-access-7b1f0c2e9d";
const CANARY_RT: &str = "canary-refresh-4e8a6d3c1b";
const CANARY_NEW_AT: &str = "canary-new-access-0a9b8c7d";
const CANARY_NEW_RT: &str = "canary-new-refresh-5f4e3d2c";
const CANARY_API_AT: &str = "canary-api-access-3c2b1a0f9e";
const CANARY_API_RT: &str = "canary-api-refresh-8d7c6b5a4f";
const CANARIES: [&str; 6] = [
    CANARY_AT,
    CANARY_RT,
    CANARY_NEW_AT,
    CANARY_NEW_RT,
    CANARY_API_AT,
    CANARY_API_RT,
];

#[derive(Clone, Default)]
struct Capture(Arc<Mutex<Vec<u8>>>);

impl Write for Capture {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Capture {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}

fn assert_clean(what: &str, text: &str) {
    for canary in CANARIES {
        assert!(!text.contains(canary), "{what} contains a token:\n{text}");
    }
}

#[tokio::test]
async fn canary_tokens_never_leak() {
    let capture = Capture::default();
    let writer = capture.clone();
    tracing_subscriber::fmt()
        .with_env_filter("trace")
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .init();
    let panics = Capture::default();
    let panic_sink = panics.clone();
    std::panic::set_hook(Box::new(move |info| {
        let _ = writeln!(panic_sink.clone(), "{info}");
    }));

    let env = TestEnv::new().await;
    let tokens = IssuedTokens {
        access_token: CANARY_AT.into(),
        refresh_token: CANARY_RT.into(),
        expires_in: 3600,
    };
    let new = new_account(
        Provider::X,
        "canary",
        &tokens,
        Utc::now() - TimeDelta::hours(1),
        Some(Utc::now()),
    );
    let policy = RefreshPolicy::from(env.settings.providers.get(Provider::X));
    let registered = accounts::register(env.pool(), &env.keyring, &policy, &new)
        .await
        .unwrap();
    let id = registered.account.id.clone();
    let mut seen = vec![format!("{new:?}"), format!("{:?}", registered.account)];

    // The platform echoes the token in its error text.
    env.fake.script_next(ScriptedResponse::json(
        400,
        json!({"error": "invalid_request", "error_description": format!("refresh_token {CANARY_RT} is malformed")}),
    ));
    // A transient failure, then a success that rotates to new canaries.
    env.fake.script_next(ScriptedResponse::raw(
        503,
        "text/html",
        format!("<p>{CANARY_RT}</p>"),
    ));
    env.fake.script_next(ScriptedResponse::json(
        200,
        json!({"access_token": CANARY_NEW_AT, "refresh_token": CANARY_NEW_RT, "expires_in": 60}),
    ));
    // A rejection of the new token, echoing it.
    env.fake.script_next(ScriptedResponse::json(
        400,
        json!({"error": "invalid_grant", "error_description": format!("{CANARY_NEW_RT} has expired")}),
    ));
    for _ in 0..4 {
        let report = env.engine.refresh(&id, Trigger::Forced).await.unwrap();
        seen.push(format!("{report:?}"));
        seen.push(serde_json::to_string(&report).unwrap());
    }
    let row = env.row(&id).await;
    seen.push(format!("{row:?}"));
    seen.push(row.last_refresh_error.clone().unwrap_or_default());
    for attempt in tokenwarden::store::attempts::for_account(env.pool(), &id, 10)
        .await
        .unwrap()
    {
        seen.push(format!("{attempt:?}"));
    }

    // Errors: tampered ciphertext.
    sqlx::query("UPDATE social_accounts SET status = 'ACTIVE', access_token_ciphertext = set_byte(access_token_ciphertext, 13, 0) WHERE id = $1")
        .bind(id.as_str())
        .execute(env.pool())
        .await
        .unwrap();
    let error = env.engine.refresh(&id, Trigger::Forced).await.unwrap_err();
    seen.push(error.to_string());
    seen.push(format!("{error:?}"));

    seen.extend(through_the_api(&env).await);

    // A panic whose message formats credentials.
    let panicked = std::panic::catch_unwind(|| panic!("while handling {new:?}"));
    assert!(panicked.is_err());

    for (i, text) in seen.iter().enumerate() {
        assert_clean(&format!("value {i}"), text);
    }
    let logs = capture.text();
    assert!(logs.contains("refresh failed"), "the capture works");
    assert!(logs.contains("TRACE"), "trace-level logs were captured");
    assert_clean("captured logs", &logs);
    let panic_text = panics.text();
    assert!(
        panic_text.contains("while handling"),
        "the panic hook captured: {panic_text}"
    );
    assert_clean("panic output", &panic_text);
    let _ = std::panic::take_hook();
}

/// Drives the HTTP API with canary credentials; returns every response body
/// except the access-token endpoint's, whose job is to hand the token out.
async fn through_the_api(env: &TestEnv) -> Vec<String> {
    let mut settings = env.settings.clone();
    settings.api.keys = Some(secrecy::SecretString::from("canary-test-api-key-000"));
    let state = tokenwarden::api::ApiState::new(&settings, env.engine.clone()).unwrap();
    let app = tokenwarden::api::router(state, settings.api.max_body_bytes, true);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    let http = reqwest::Client::new();
    let call = |method: reqwest::Method, path: &str| {
        http.request(method, format!("{base}{path}"))
            .bearer_auth("canary-test-api-key-000")
    };
    let mut bodies = Vec::new();
    let spec = json!({
        "workspace_id": "ws", "provider": "X", "external_id": "canary-api",
        "credentials": {"access_token": CANARY_API_AT, "refresh_token": CANARY_API_RT, "expires_in": 3600}
    });
    let reply = call(reqwest::Method::POST, "/v1/accounts")
        .json(&spec)
        .send()
        .await
        .unwrap();
    assert_eq!(reply.status(), 201);
    let view: serde_json::Value = reply.json().await.unwrap();
    bodies.push(view.to_string());
    let id = view["id"].as_str().unwrap().to_owned();

    // A token in the wrong field: 422 without echoing it.
    let mut misplaced = spec.clone();
    misplaced["credentials"]["expires_in"] = json!(CANARY_API_RT);
    let reply = call(reqwest::Method::POST, "/v1/accounts")
        .json(&misplaced)
        .send()
        .await
        .unwrap();
    assert_eq!(reply.status(), 422);
    bodies.push(reply.text().await.unwrap());

    // The platform echoes the token in a rejection: 409 without it.
    env.fake.script_next(ScriptedResponse::json(
        400,
        json!({"error": "invalid_grant", "error_description": format!("{CANARY_API_RT} was revoked")}),
    ));
    let reply = call(reqwest::Method::POST, &format!("/v1/accounts/{id}/refresh"))
        .send()
        .await
        .unwrap();
    assert_eq!(reply.status(), 409);
    bodies.push(reply.text().await.unwrap());
    for path in [
        format!("/v1/accounts/{id}"),
        format!("/v1/accounts/{id}/attempts"),
        "/v1/accounts".to_owned(),
        "/v1/events".to_owned(),
        format!("/v1/accounts/{id}/access-token"),
        "/metrics".to_owned(),
        "/openapi.json".to_owned(),
    ] {
        let text = call(reqwest::Method::GET, &path)
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        bodies.push(text);
    }
    let reply = call(reqwest::Method::DELETE, &format!("/v1/accounts/{id}"))
        .send()
        .await
        .unwrap();
    assert_eq!(reply.status(), 204);
    bodies
}
