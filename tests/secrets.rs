//! Canary tokens never show up in logs (at TRACE, ours and every library's),
//! error messages, reports, Debug output, panic messages, or the CLI's output.
//! A test binary of its own: it installs the global log subscriber.

mod common;

use common::capture::Capture;
use std::io::Write;

use base64::Engine as _;

use chrono::{TimeDelta, Utc};
use common::{TestEnv, new_account};
use serde_json::json;
use tokenwarden::domain::{Provider, Trigger};
use tokenwarden::policy::RefreshPolicy;
use tokenwarden::store::accounts;
use tokenwarden_fakes::{IssuedTokens, ScriptedResponse};

const CANARY_AT: &str = "canary-access-7b1f0c2e9d";
const CANARY_RT: &str = "canary-refresh-4e8a6d3c1b";
const CANARY_NEW_AT: &str = "canary-new-access-0a9b8c7d";
const CANARY_NEW_RT: &str = "canary-new-refresh-5f4e3d2c";
const CANARY_API_AT: &str = "canary-api-access-3c2b1a0f9e";
const CANARY_API_RT: &str = "canary-api-refresh-8d7c6b5a4f";
const CANARY_BULK_AT: &str = "canary-bulk-access-6e5d4c3b2a";
const CANARY_BULK_RT: &str = "canary-bulk-refresh-1a2b3c4d5e";

const CANARY_DB_PASSWORD: &str = "canary-db-password-6e5d4c3b";
const CANARY_REDIS_PASSWORD: &str = "canary-redis-password-2a3b4c5d";
const CANARY_CLIENT_KEY: &str = "canaryclientkey9f8e7d6c5b4a3";
const CANARY_CONSOLE_AT: &str = "canary-console-access-5b4a3c2d1e";
const CANARY_CONSOLE_RT: &str = "canary-console-refresh-9f0e1d2c3b";
const CANARY_CONSOLE_NEW_AT: &str = "canary-console-new-access-7a6b5c4d";
const CANARY_CONSOLE_NEW_RT: &str = "canary-console-new-refresh-3e2f1a0b";
const CANARY_OPERATOR_KEY: &str = "canary-operator-key-8d7e6f5a4b3c";
const CANARIES: [&str; 16] = [
    CANARY_CONSOLE_AT,
    CANARY_CONSOLE_RT,
    CANARY_CONSOLE_NEW_AT,
    CANARY_CONSOLE_NEW_RT,
    CANARY_OPERATOR_KEY,
    CANARY_BULK_AT,
    CANARY_BULK_RT,
    CANARY_AT,
    CANARY_RT,
    CANARY_NEW_AT,
    CANARY_NEW_RT,
    CANARY_API_AT,
    CANARY_API_RT,
    CANARY_DB_PASSWORD,
    CANARY_REDIS_PASSWORD,
    CANARY_CLIENT_KEY,
];

/// A refresh token in mixed case, for a platform that echoes it changed.
const CANARY_ECHO_RT: &str = "Canary-Echo-Refresh-Q7W8E9R0T1Y2U3I4";
const CANARY_ECHO_AT: &str = "Canary-Echo-Access-Z1X2C3V4B5N6M7";

/// Whether any 12-character run of `secret` shows in `text`, in any case,
/// as written or percent-decoded.
fn echo_of(secret: &str, text: &str) -> Option<String> {
    let decoded: String = url::form_urlencoded::parse(format!("x={text}").as_bytes())
        .map(|(_, v)| v.into_owned())
        .collect();
    let views = [text.to_ascii_lowercase(), decoded.to_ascii_lowercase()];
    let secret = secret.to_ascii_lowercase();
    secret
        .as_bytes()
        .windows(12)
        .map(|w| String::from_utf8_lossy(w).into_owned())
        .find(|piece| views.iter().any(|view| view.contains(piece.as_str())))
}

fn assert_no_echo(what: &str, text: &str) {
    for secret in [CANARY_ECHO_RT, CANARY_ECHO_AT] {
        if let Some(piece) = echo_of(secret, text) {
            panic!("{what} holds {piece:?} of a token:\n{text}");
        }
    }
}

/// Issue 9, defect 7: a platform error that echoes the refresh token
/// lower-cased, percent-encoded with lower-case hex, and as a 20-character
/// piece is scrubbed everywhere its text goes: the account's
/// last_refresh_error and status_reason, its events (so webhooks), its
/// attempts, the API's answers and the logs.
async fn echoed_in_other_spellings(env: &TestEnv, capture: &Capture) -> Vec<String> {
    let tokens = IssuedTokens {
        access_token: CANARY_ECHO_AT.into(),
        refresh_token: CANARY_ECHO_RT.into(),
        expires_in: 3600,
    };
    let new = new_account(
        Provider::X,
        "canary-echo",
        &tokens,
        Utc::now() - TimeDelta::hours(1),
        Some(Utc::now() + TimeDelta::minutes(1)),
    );
    let policy = RefreshPolicy::from(env.settings.providers.get(Provider::X));
    let registered = accounts::register(env.pool(), &env.keyring, &policy, &new)
        .await
        .unwrap();
    let id = registered.account.id.clone();
    let lower = CANARY_ECHO_RT.to_ascii_lowercase();
    let percent_lower: String = CANARY_ECHO_RT
        .bytes()
        .map(|b| format!("%{b:02x}"))
        .collect();
    let piece = &CANARY_ECHO_RT[7..27];
    assert_eq!(piece.len(), 20);
    // Transient failures first (status unchanged), then a rejection that
    // changes the status (status_reason, an event).
    env.fake.script_next(ScriptedResponse::json(
        400,
        json!({"error": "temporarily_unavailable", "error_description": format!("upstream saw refresh_token={percent_lower}&grant_type=refresh_token")}),
    ));
    env.fake.script_next(ScriptedResponse::json(
        400,
        json!({"error": "server_error", "error_description": format!("bad gateway for token ending {piece}")}),
    ));
    env.fake.script_next(ScriptedResponse::json(
        400,
        json!({"error": "invalid_grant", "error_description": format!("token {lower} expired; also {percent_lower} and {piece}")}),
    ));
    let mut seen = Vec::new();
    for _ in 0..2 {
        let report = env.engine.refresh(&id, Trigger::Forced).await.unwrap();
        seen.push(format!("{report:?}"));
        seen.push(serde_json::to_string(&report).unwrap());
    }
    let row = env.row(&id).await;
    let error = row.last_refresh_error.clone().unwrap_or_default();
    assert!(error.contains("[redacted]"), "the echo was seen: {error}");
    seen.push(error);
    // The rejection goes through the API: its 409 body is checked too.
    seen.extend(
        api_bodies(
            env,
            &[
                (reqwest::Method::POST, format!("/v1/accounts/{id}/refresh")),
                (reqwest::Method::GET, format!("/v1/accounts/{id}")),
                (reqwest::Method::GET, format!("/v1/accounts/{id}/attempts")),
                (reqwest::Method::GET, "/v1/accounts".to_owned()),
                (reqwest::Method::GET, "/v1/events".to_owned()),
            ],
        )
        .await,
    );
    let row = env.row(&id).await;
    assert_eq!(row.status, tokenwarden::domain::AccountStatus::TokenExpired);
    let reason = row.status_reason.clone().unwrap_or_default();
    assert!(reason.contains("[redacted]"), "{reason}");
    seen.push(reason);
    seen.push(row.last_refresh_error.clone().unwrap_or_default());
    seen.push(format!("{row:?}"));
    let events = tokenwarden::store::events::for_account(env.pool(), id.as_str())
        .await
        .unwrap();
    assert!(!events.is_empty(), "the status change wrote an event");
    for event in events {
        seen.push(format!("{event:?}"));
    }
    let attempts = tokenwarden::store::attempts::for_account(env.pool(), &id, 10)
        .await
        .unwrap();
    assert_eq!(attempts.len(), 3);
    for attempt in attempts {
        seen.push(format!("{attempt:?}"));
    }
    for (i, text) in seen.iter().enumerate() {
        assert_no_echo(&format!("echo value {i}"), text);
    }
    let logs = capture.text();
    assert!(logs.contains("bad gateway"), "the failure was logged");
    assert_no_echo("captured logs", &logs);
    seen
}

fn assert_clean(what: &str, text: &str) {
    for canary in CANARIES {
        assert!(!text.contains(canary), "{what} contains a token:\n{text}");
    }
}

#[tokio::test]
async fn canary_tokens_never_leak() {
    let capture = Capture::install_trace();
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

    seen.extend(echoed_in_other_spellings(&env, &capture).await);

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
    seen.extend(through_import_and_export(&env).await);
    seen.extend(connection_failures().await);
    let console = through_the_console(&env).await;
    seen.extend(console.bodies);

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
    assert!(
        logs.contains("console sign-out"),
        "the console's path was logged"
    );
    for (what, secret) in console.session_secrets {
        assert!(
            !logs.contains(&secret),
            "the logs hold the session's {what}"
        );
        for (i, text) in seen.iter().enumerate() {
            assert!(
                !text.contains(&secret),
                "value {i} holds the session's {what}"
            );
        }
    }
    let panic_text = panics.text();
    assert!(
        panic_text.contains("while handling"),
        "the panic hook captured: {panic_text}"
    );
    assert_clean("panic output", &panic_text);
    let _ = std::panic::take_hook();
}

struct ConsoleRun {
    /// Every page the console answered.
    bodies: Vec<String>,
    /// The session cookie's value and its parts, each named.
    session_secrets: Vec<(&'static str, String)>,
}

/// Signs in to the console with a canary operator key, refreshes an account
/// holding canary tokens (the platform first echoes the refresh token in a
/// transient error, then rotates to new canaries) and signs out.
async fn through_the_console(env: &TestEnv) -> ConsoleRun {
    use reqwest::header::{COOKIE, SET_COOKIE};
    let mut settings = env.settings.clone();
    settings.console.operator_keys = Some(secrecy::SecretString::from(format!(
        "canary:{CANARY_OPERATOR_KEY}"
    )));
    settings.api.force_refresh_min_interval = std::time::Duration::ZERO;
    let state = tokenwarden::console::ConsoleState::new(&settings, env.engine.clone()).unwrap();
    let app = tokenwarden::console::router(state);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}/console", listener.local_addr().unwrap());
    let server = tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let cookie_named = |reply: &reqwest::Response, name: &str| {
        reply
            .headers()
            .get_all(SET_COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .find_map(|v| v.split(';').next()?.strip_prefix(&format!("{name}=")))
            .map(str::to_owned)
            .unwrap()
    };
    let csrf_of = |html: &str| {
        let marker = "name=\"csrf\" value=\"";
        let at = html.find(marker).unwrap() + marker.len();
        html[at..].split('"').next().unwrap().to_owned()
    };
    let mut bodies = Vec::new();

    let tokens = IssuedTokens {
        access_token: CANARY_CONSOLE_AT.into(),
        refresh_token: CANARY_CONSOLE_RT.into(),
        expires_in: 3600,
    };
    let new = new_account(Provider::X, "canary-console", &tokens, Utc::now(), None);
    let policy = RefreshPolicy::from(env.settings.providers.get(Provider::X));
    let id = accounts::register(env.pool(), &env.keyring, &policy, &new)
        .await
        .unwrap()
        .account
        .id;

    let form = http.get(format!("{base}/sign-in")).send().await.unwrap();
    let nonce = cookie_named(&form, "tw_console_signin");
    let body = form.text().await.unwrap();
    let reply = http
        .post(format!("{base}/sign-in"))
        .header(COOKIE, format!("tw_console_signin={nonce}"))
        .form(&[
            ("csrf", csrf_of(&body).as_str()),
            ("key", CANARY_OPERATOR_KEY),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(reply.status(), 303);
    let session = cookie_named(&reply, "tw_console");
    bodies.push(body);
    bodies.push(reply.text().await.unwrap());
    let cookie = format!("tw_console={session}");
    let get = |path: String| {
        http.get(format!("{base}{path}"))
            .header(COOKIE, &cookie)
            .send()
    };
    let page = get(format!("/accounts/{id}")).await.unwrap();
    assert_eq!(page.status(), 200);
    let page = page.text().await.unwrap();
    let csrf = csrf_of(&page);
    bodies.push(page);

    env.fake.script_next(ScriptedResponse::raw(
        503,
        "text/html",
        format!("<p>{CANARY_CONSOLE_RT}</p>"),
    ));
    env.fake.script_next(ScriptedResponse::json(
        200,
        json!({"access_token": CANARY_CONSOLE_NEW_AT, "refresh_token": CANARY_CONSOLE_NEW_RT, "expires_in": 3600}),
    ));
    for _ in 0..2 {
        let reply = http
            .post(format!("{base}/accounts/{id}/refresh"))
            .header(COOKIE, &cookie)
            .form(&[("csrf", csrf.as_str())])
            .send()
            .await
            .unwrap();
        assert_eq!(reply.status(), 303);
        let location = reply.headers()["location"].to_str().unwrap().to_owned();
        bodies.push(reply.text().await.unwrap());
        let path = location.strip_prefix("/console").unwrap().to_owned();
        bodies.push(get(path).await.unwrap().text().await.unwrap());
    }
    let row = env.row(&id).await;
    assert!(
        row.last_refresh_error.is_none(),
        "the second refresh succeeded"
    );

    let reply = http
        .post(format!("{base}/sign-out"))
        .header(COOKIE, &cookie)
        .form(&[("csrf", csrf.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(reply.status(), 303);
    bodies.push(reply.text().await.unwrap());
    server.abort();

    let (payload, signature) = session.split_once('.').unwrap();
    let payload = String::from_utf8(
        base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(payload)
            .unwrap(),
    )
    .unwrap();
    let session_id = payload.rsplit('|').next().unwrap().to_owned();
    ConsoleRun {
        bodies,
        session_secrets: vec![
            ("cookie", session.clone()),
            ("signature", signature.to_owned()),
            ("id", session_id),
        ],
    }
}

/// The bodies of the API's answers to `calls`.
async fn api_bodies(env: &TestEnv, calls: &[(reqwest::Method, String)]) -> Vec<String> {
    let mut settings = env.settings.clone();
    settings.api.keys = Some(secrecy::SecretString::from("canary-test-api-key-000"));
    // The engine refreshed this account a moment ago.
    settings.api.force_refresh_min_interval = std::time::Duration::ZERO;
    let state = tokenwarden::api::ApiState::new(&settings, env.engine.clone()).unwrap();
    let app = tokenwarden::api::router(state, settings.api.max_body_bytes, true);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let server = tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    let http = reqwest::Client::new();
    let mut bodies = Vec::new();
    for (method, path) in calls {
        let reply = http
            .request(method.clone(), format!("{base}{path}"))
            .bearer_auth("canary-test-api-key-000")
            .send()
            .await
            .unwrap();
        bodies.push(reply.text().await.unwrap());
    }
    server.abort();
    bodies
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

/// NDJSON lines carrying the bulk canaries: a valid one, one with the
/// token in a field that wants a number, one with the token as a key, one
/// cut short after the token, and one with the token as the provider.
fn canary_lines(external_id: &str) -> String {
    let valid = json!({
        "workspace_id": "ws", "provider": "X", "external_id": external_id,
        "credentials": {"access_token": CANARY_BULK_AT, "refresh_token": CANARY_BULK_RT, "expires_in": 3600}
    });
    let mut misplaced = valid.clone();
    misplaced["credentials"]["expires_in"] = json!(CANARY_BULK_RT);
    let mut as_key = valid.clone();
    as_key[CANARY_BULK_AT] = json!(1);
    let mut as_provider = valid.clone();
    as_provider["provider"] = json!(CANARY_BULK_AT);
    let cut =
        format!(r#"{{"workspace_id": "ws", "credentials": {{"access_token": "{CANARY_BULK_AT}"#);
    format!("{valid}\n{misplaced}\n{as_key}\n{cut}\n{as_provider}\n")
}

/// The import's per-line results (as text, Debug and JSON), its summary,
/// the API's streamed answer, and exports with and without a recipient.
async fn through_import_and_export(env: &TestEnv) -> Vec<String> {
    use tokenwarden::bulk::{ExportOptions, Import, ImportContext, ImportOptions};
    let mut seen = Vec::new();
    let context = ImportContext {
        pool: env.pool(),
        keyring: &env.keyring,
        policies: &env.engine.config().policies,
    };
    let options = ImportOptions {
        batch_size: 2,
        max_line_bytes: 64 * 1024,
        dry_run: false,
        exports: Some(None),
    };
    let input = canary_lines("canary-bulk");
    let mut import = Import::new(context, options, input.as_bytes());
    while let Some(results) = import.next_batch().await.unwrap() {
        for result in results {
            seen.push(result.to_string());
            seen.push(format!("{result:?}"));
            seen.push(serde_json::to_string(&result).unwrap());
        }
    }
    let summary = import.finish().await.unwrap();
    assert_eq!((summary.created, summary.invalid), (1, 4), "{summary:?}");
    seen.push(format!("{summary:?}"));

    let mut settings = env.settings.clone();
    settings.api.keys = Some(secrecy::SecretString::from("canary-test-api-key-000"));
    let state = tokenwarden::api::ApiState::new(&settings, env.engine.clone()).unwrap();
    let app = tokenwarden::api::router(state, settings.api.max_body_bytes, true);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let server = tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    let reply = reqwest::Client::new()
        .post(format!("{base}/v1/accounts:import"))
        .bearer_auth("canary-test-api-key-000")
        .header("content-type", "application/x-ndjson")
        .body(canary_lines("canary-bulk-api"))
        .send()
        .await
        .unwrap();
    assert_eq!(reply.status(), 200);
    let text = reply.text().await.unwrap();
    assert!(text.contains(r#""invalid":4"#), "{text}");
    seen.push(text);
    // A first line that is not JSON is refused whole, without echo.
    let reply = reqwest::Client::new()
        .post(format!("{base}/v1/accounts:import"))
        .bearer_auth("canary-test-api-key-000")
        .header("content-type", "application/x-ndjson")
        .body(format!("{CANARY_BULK_AT}\n"))
        .send()
        .await
        .unwrap();
    assert_eq!(reply.status(), 400);
    seen.push(reply.text().await.unwrap());
    server.abort();

    let identity = age::x25519::Identity::generate();
    for recipient in [None, Some(identity.to_public().to_string())] {
        let options = ExportOptions {
            recipient: recipient.map(|r| r.parse().unwrap()),
            workspace_id: Some("ws".into()),
            provider: None,
            page_size: 100,
        };
        let mut out = Vec::new();
        tokenwarden::bulk::export(env.pool(), &env.keyring, &options, &mut out, |_| {})
            .await
            .unwrap();
        let text = String::from_utf8(out).unwrap();
        assert!(
            text.contains("canary-bulk-api"),
            "the export has the accounts"
        );
        seen.push(text);
    }
    seen
}

/// The command line's import (under a terminal, so the progress bar is
/// drawn) and export: no token on the screen or in the files written.
#[tokio::test]
async fn canary_tokens_stay_out_of_the_import_and_export_commands() {
    let env = TestEnv::new().await;
    let key = format!(
        "c1:{}",
        base64::engine::general_purpose::STANDARD.encode([9u8; 32])
    );
    let dir = std::env::temp_dir().join(format!("tw-canary-{}", rand::random::<u32>()));
    std::fs::create_dir_all(&dir).unwrap();
    let input = dir.join("in.ndjson");
    let lines: String = (0..2000)
        .map(|i| canary_lines(&format!("canary-cli-{i}")))
        .collect();
    std::fs::write(&input, lines).unwrap();
    let run = |args: String| {
        let mut cmd = std::process::Command::new("script");
        // A pseudo-terminal: what an operator would see, bar included.
        cmd.args(["-qec", &args, "/dev/null"]);
        for (k, _) in std::env::vars().filter(|(k, _)| k.starts_with("TOKENWARDEN")) {
            cmd.env_remove(k);
        }
        cmd.env("TOKENWARDEN__DATABASE__URL", env.db.url())
            .env("TOKENWARDEN__CRYPTO__KEYS", &key)
            .env("TOKENWARDEN__LOG__FILTER", "trace")
            .env("TERM", "xterm")
            .stdin(std::process::Stdio::null());
        let out = cmd.output().unwrap();
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    };
    let bin = env!("CARGO_BIN_EXE_tokenwarden");
    let screen = run(format!(
        "{bin} accounts import --batch-size 100 {}",
        input.display()
    ));
    assert!(screen.contains("8000 invalid"), "{screen}");
    assert!(
        screen.contains("refused"),
        "the progress bar was drawn: {screen}"
    );
    assert!(
        screen.contains("line 2: credentials.expires_in"),
        "{screen}"
    );
    assert_clean("the import's terminal output", &screen);
    let export = dir.join("out.ndjson");
    let screen = run(format!(
        "{bin} accounts export --output {}",
        export.display()
    ));
    assert!(screen.contains("exported 2000 accounts"), "{screen}");
    assert_clean("the export's terminal output", &screen);
    let exported = std::fs::read_to_string(&export).unwrap();
    assert_eq!(exported.lines().count(), 2000);
    assert_clean("the export", &exported);
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Connections that fail (every Redis mode, TLS material that cannot be
/// used, a bad `sslmode`): the password in a URL and a client key stay out
/// of every message.
async fn connection_failures() -> Vec<String> {
    use secrecy::SecretString;
    use tokenwarden::config::{RedisMode, Settings};
    use tokenwarden::queue::Connector;

    let mut seen = Vec::new();
    let key =
        format!("-----BEGIN PRIVATE KEY-----\n{CANARY_CLIENT_KEY}\n-----END PRIVATE KEY-----\n");
    let cert = "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n".to_owned();
    let mut settings = Settings::from_figment(figment::Figment::new()).unwrap();

    settings.database.url = Some(SecretString::from(format!(
        "postgres://tw:{CANARY_DB_PASSWORD}@127.0.0.1:5432/tw?sslmode=bogus"
    )));
    seen.push(settings.validate().unwrap_err().to_string());
    settings.database.url = Some(SecretString::from(format!(
        "postgres://tw:{CANARY_DB_PASSWORD}@127.0.0.1:5432/tw?sslmode=require"
    )));
    settings.database.ssl_client_cert = Some(cert.clone());
    settings.database.ssl_client_key = Some(SecretString::from(key.clone()));
    seen.push(format!("{:?}", settings.database));
    let error = tokenwarden::app::connect(&settings, None)
        .await
        .unwrap_err();
    seen.push(format!("{error:#} {error:?}"));

    for mode in [
        RedisMode::Standalone,
        RedisMode::Sentinel,
        RedisMode::Cluster,
    ] {
        settings.redis.mode = mode;
        settings.redis.sentinel_master =
            (mode == RedisMode::Sentinel).then(|| "primary".to_owned());
        settings.redis.url = Some(SecretString::from(format!(
            "redis://:{CANARY_REDIS_PASSWORD}@127.0.0.1:1"
        )));
        match Connector::new(&settings.redis).unwrap().connect().await {
            Ok(_) => panic!("nothing listens on port 1"),
            Err(error) => seen.push(format!("{error:#} {error:?}")),
        }
    }
    settings.redis.mode = RedisMode::Standalone;
    settings.redis.sentinel_master = None;
    settings.redis.url = Some(SecretString::from(format!(
        "rediss://:{CANARY_REDIS_PASSWORD}@127.0.0.1:1"
    )));
    settings.redis.tls_client_cert = Some(cert);
    settings.redis.tls_client_key = Some(SecretString::from(key));
    seen.push(format!("{:?}", settings.redis));
    match Connector::new(&settings.redis).unwrap().connect().await {
        Ok(_) => panic!("the client key is not usable"),
        Err(error) => {
            let text = format!("{error:#} {error:?}");
            assert!(text.contains("redis.tls_client_key"), "{text}");
            seen.push(text);
        }
    }
    settings.redis.mode = RedisMode::Cluster;
    settings.redis.url = Some(SecretString::from(format!(
        "redis://:{CANARY_REDIS_PASSWORD}@127.0.0.1:1,rediss://:{CANARY_REDIS_PASSWORD}@127.0.0.1:2"
    )));
    seen.push(settings.validate().unwrap_err().to_string());
    seen
}
