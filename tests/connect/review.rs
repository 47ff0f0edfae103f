//! The flow probed with inputs its platforms and callers were not meant to
//! send: two replicas on one callback, absurd start bodies and redirect
//! targets, abused callback queries, hostile or silent platforms, a browser
//! that gives up, reconnects from every status, odd selections, and
//! platform text that echoes what it was sent.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use base64::Engine as _;
use reqwest::StatusCode;
use secrecy::SecretString;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use tokenwarden::config::{ClientAuth, Flow, Settings};
use tokenwarden::connect::{Callback, ConnectService, Finished};
use tokenwarden::domain::{AccountStatus, Provider};
use tokenwarden_fakes::{
    Consent, FakeLinkedin, FakeX, LinkedinOrganization, ScriptedResponse, User,
};
use url::Url;

use crate::common::{CLIENT_ID, CLIENT_SECRET};
use crate::flow::use_fake_x;
use crate::support::{Connect, RETURN_URL, query, query_all};

async fn with_x(tweak: impl FnOnce(&mut Settings)) -> (Connect, FakeX) {
    let fake = FakeX::start(CLIENT_ID, CLIENT_SECRET).await.unwrap();
    let connect = Connect::start(|s| {
        use_fake_x(s, &fake);
        tweak(s);
    })
    .await;
    (connect, fake)
}

fn x_body() -> Value {
    json!({"provider": "X", "workspace_id": "ws-1", "redirect_after": RETURN_URL})
}

async fn accounts_stored(connect: &Connect) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM social_accounts")
        .fetch_one(connect.env.pool())
        .await
        .unwrap()
}

async fn sessions_stored(connect: &Connect) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM connect_sessions")
        .fetch_one(connect.env.pool())
        .await
        .unwrap()
}

/// Starts a flow and passes the consent screen: the callback URL the
/// platform sends the browser to, and the flow's PKCE challenge.
async fn to_callback(connect: &Connect) -> (Url, String) {
    let started = connect.begin(x_body()).await;
    let authorization = Url::parse(started["authorization_url"].as_str().unwrap()).unwrap();
    let challenge = query(&authorization, "code_challenge").unwrap();
    (connect.browse(authorization.as_str()).await, challenge)
}

fn callback_with(code: &str) -> Callback {
    Callback {
        code: Some(SecretString::from(code.to_owned())),
        error: None,
        error_description: None,
        issuer: None,
    }
}

/// A token answer X could give, for tokens the fake does not know.
fn x_token_answer() -> ScriptedResponse {
    ScriptedResponse::json(
        200,
        json!({
            "token_type": "bearer",
            "expires_in": 7200,
            "access_token": "xat_scripted_0123456789",
            "refresh_token": "xrt_scripted_0123456789",
            "scope": "tweet.read tweet.write users.read offline.access",
        }),
    )
}

/// A platform that accepts connections and never answers.
struct Silent {
    url: Url,
    accepted: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Silent {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn silent() -> Silent {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = Url::parse(&format!("http://{}/", listener.local_addr().unwrap())).unwrap();
    let accepted = Arc::new(AtomicUsize::new(0));
    let counter = accepted.clone();
    let task = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            counter.fetch_add(1, Ordering::SeqCst);
            held.push(socket);
        }
    });
    Silent {
        url,
        accepted,
        task,
    }
}

/// A one-route platform: every POST to `/token` is answered by `answer`,
/// given the form it was sent.
struct Local {
    url: Url,
    hits: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Local {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn local<F, Fut>(answer: F) -> Local
where
    F: Fn(String) -> Fut + Clone + Send + Sync + 'static,
    Fut: std::future::Future<Output = (StatusCode, String)> + Send,
{
    let hits = Arc::new(AtomicUsize::new(0));
    let counter = hits.clone();
    let route = axum::routing::post(move |body: Bytes| {
        let answer = answer.clone();
        let counter = counter.clone();
        async move {
            counter.fetch_add(1, Ordering::SeqCst);
            let (status, body) = answer(String::from_utf8_lossy(&body).into_owned()).await;
            (
                axum::http::StatusCode::from_u16(status.as_u16()).unwrap(),
                [(axum::http::header::CONTENT_TYPE, "application/json")],
                body,
            )
        }
    });
    let app = axum::Router::new().route("/token", route);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = Url::parse(&format!("http://{}/token", listener.local_addr().unwrap())).unwrap();
    let task = tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    Local { url, hits, task }
}

/// Every 43-character base64url word of `text` whose S256 is `challenge`:
/// a leaked PKCE verifier.
fn verifier_in(text: &str, challenge: &str) -> bool {
    text.split(|c: char| !(c.is_ascii_alphanumeric() || c == '-' || c == '_'))
        .filter(|word| word.len() == 43)
        .any(|word| {
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(Sha256::digest(word.as_bytes()))
                == challenge
        })
}

/// The failed checks of a table of cases: one run names every case that
/// fails, not only the first.
#[derive(Default)]
struct Faults(Vec<String>);

impl Faults {
    fn check(&mut self, ok: bool, what: impl FnOnce() -> String) {
        if !ok {
            self.0.push(what());
        }
    }

    #[track_caller]
    fn none(self) {
        assert!(self.0.is_empty(), "{:#?}", self.0);
    }
}

// ---- single use across replicas -------------------------------------------

#[tokio::test]
async fn two_replicas_finishing_one_callback_exchange_the_code_once() {
    let (connect, fake) = with_x(|_| {}).await;
    let a = ConnectService::new(&connect.env.settings, connect.env.engine.clone()).unwrap();
    let b =
        ConnectService::new(&connect.env.settings, connect.env.other_engine("replica-b")).unwrap();
    for round in 0..5 {
        let (back, _) = to_callback(&connect).await;
        let state = query(&back, "state").unwrap();
        let code = query(&back, "code").unwrap();
        let before = fake.requests();
        let (first, second) = tokio::join!(
            a.finish(&state, callback_with(&code)),
            b.finish(&state, callback_with(&code))
        );
        let mut connected = 0;
        let mut refused = Vec::new();
        for result in [first, second] {
            match result {
                Ok(Finished::Connected { accounts, .. }) => {
                    assert_eq!(accounts.len(), 1);
                    connected += 1;
                }
                Ok(Finished::ChoiceRequired { .. }) => panic!("X offers no choice"),
                Err(failed) => refused.push(failed.error.code),
            }
        }
        assert_eq!(connected, 1, "round {round}: {refused:?}");
        assert_eq!(refused, vec!["state_reused"], "round {round}");
        // One code exchange and one users/me: the loser reached no platform.
        assert_eq!(fake.requests() - before, 2, "round {round}");
    }
    assert_eq!(accounts_stored(&connect).await, 5);
}

// ---- what the API tier may start ------------------------------------------

#[tokio::test]
async fn absurd_start_bodies_are_refused_as_invalid_never_as_an_outage() {
    let (connect, _fake) = with_x(|_| {}).await;
    // An X account of this workspace, and others that a reconnect may not name.
    let own = Connect::account_id(&connect.connect(x_body()).await);
    let mut elsewhere = x_body();
    elsewhere["workspace_id"] = json!("ws-2");
    let other_workspace = Connect::account_id(&connect.connect(elsewhere).await);
    let (pinterest, _) = connect
        .env
        .connect(Provider::Pinterest, crate::common::rotating())
        .await;
    let sessions_before = sessions_stored(&connect).await;

    let mut deep = json!("leaf");
    for _ in 0..60 {
        deep = json!({ "a": deep });
    }
    let with = |key: &str, value: Value| {
        let mut body = x_body();
        body[key] = value;
        body
    };
    let refused = [
        with("workspace_id", json!("")),
        with("workspace_id", json!("   ")),
        with("workspace_id", json!("ws\u{0}1")),
        with("workspace_id", json!("ws\u{7}1")),
        with("workspace_id", json!("w".repeat(256))),
        with("scopes", json!([])),
        with("scopes", json!(["tweet.read users.read"])),
        with("scopes", json!(["tweet.read\u{0}"])),
        with("scopes", json!(["s".repeat(300)])),
        with("scopes", json!(vec!["s"; 65])),
        with("extras", json!("a string")),
        with("extras", json!([1, 2])),
        with("extras", json!({"note": "nul \u{0} inside"})),
        with("extras", json!({"nul \u{0} key": 1})),
        with(
            "extras",
            json!({"page_ids": ["1", "\u{0}"], "x": {"y": ["\u{0}"]}}),
        ),
        with("extras", deep),
        with("extras", json!({"huge": vec!["0123456789"; 2_000]})),
        with("account_id", json!("acc_not_an_id")),
        with("account_id", json!("\u{0}")),
        with("account_id", json!(other_workspace.to_string())),
        with("account_id", json!(pinterest.to_string())),
    ];
    let mut faults = Faults::default();
    for body in refused {
        let response = connect.begin_raw(body.clone()).await;
        let status = response.status();
        let answer: Value = response.json().await.unwrap();
        faults.check(
            status == StatusCode::UNPROCESSABLE_ENTITY
                && answer["error"]["code"] == "invalid_request",
            || format!("{status} {answer} for {}", short(&body)),
        );
    }
    faults.none();
    assert_eq!(sessions_stored(&connect).await, sessions_before);

    // What is odd but fine: any script, the account of this workspace.
    connect
        .begin(with("workspace_id", json!("рабочее-пространство-工作区")))
        .await;
    connect
        .begin(with("account_id", json!(own.to_string())))
        .await;
    connect
        .begin(with(
            "extras",
            json!({"page_ids": ["1", "2"], "handle": "a.b"}),
        ))
        .await;
}

fn short(body: &Value) -> String {
    body.to_string().chars().take(200).collect()
}

#[tokio::test]
async fn redirect_targets_are_compared_as_browsers_read_them() {
    let (connect, _fake) = with_x(|_| {}).await;
    let mut faults = Faults::default();
    for target in [
        // Another host however it is spelt.
        "https://app.example@evil.example/connected",
        "https://evil.example\\@app.example/connected",
        "https://evil.example\\app.example/connected",
        "https://app.example%2eevil.example/connected",
        "https://xn--pp-6kc.example/connected",
        "https://app.example./connected",
        // Out of the allowed path once dot segments are read.
        "https://app.example/connected/%2e%2e/evil",
        "https://app.example/connected/%2E%2E/%2e%2e/evil",
        "https://app.example/connected\\..\\evil",
        // Credentials the allowed URL does not have.
        "https://user:secret@app.example/connected",
        "https://user@app.example/connected",
    ] {
        let mut body = x_body();
        body["redirect_after"] = json!(target);
        let status = connect.begin_raw(body).await.status();
        faults.check(status == StatusCode::FORBIDDEN, || {
            format!("{status} for {target}")
        });
    }
    // A query that already names what the flow adds would be read as the
    // flow's answer.
    for target in [
        format!("{RETURN_URL}?account_id=acc_00000000000000000000000000000000"),
        format!("{RETURN_URL}?error=none"),
        format!("{RETURN_URL}?x=1&state=forged"),
        format!("{RETURN_URL}?selection_required=true"),
        format!("{RETURN_URL}?error_description=fine"),
    ] {
        let mut body = x_body();
        body["redirect_after"] = json!(target);
        let response = connect.begin_raw(body).await;
        let status = response.status();
        let answer: Value = response.json().await.unwrap();
        let message = answer["error"]["message"].as_str().unwrap_or_default();
        faults.check(
            status == StatusCode::UNPROCESSABLE_ENTITY && message.contains("redirect_after"),
            || format!("{status} {answer} for {target}"),
        );
    }
    faults.none();
    // Spellings of the allowed target itself: the browser ends there.
    for target in [
        "HTTPS://APP.EXAMPLE/connected",
        "https://app.example:443/connected",
        "https://app.example\\connected",
        "https://app.example/connected/./step",
        "https://app.example/connected?from=settings",
    ] {
        let mut body = x_body();
        body["redirect_after"] = json!(target);
        let landed = connect.connect(body).await;
        assert_eq!(landed.host_str(), Some("app.example"), "{target}");
        assert_eq!(landed.port_or_known_default(), Some(443), "{target}");
        assert!(landed.username().is_empty(), "{target}");
        assert!(landed.path().starts_with("/connected"), "{target}");
        assert_eq!(query_all(&landed, "account_id").len(), 1, "{landed}");
    }
}

// ---- the callback's query -------------------------------------------------

#[tokio::test]
async fn abused_callback_queries_never_fail_the_server_or_spend_a_state_for_nothing() {
    let (connect, fake) = with_x(|_| {}).await;
    let callback = connect.url("v1/connect/callback");
    let get = |query: String| {
        let mut url = callback.clone();
        url.set_query(Some(&query));
        let request = connect.browser.get(url);
        async move { request.send().await.unwrap() }
    };

    // A repeated state is no state: refused before anything is consumed.
    let (back, _) = to_callback(&connect).await;
    let state = query(&back, "state").unwrap();
    let code = query(&back, "code").unwrap();
    let twice = get(format!("state={state}&state={state}&code={code}")).await;
    assert_eq!(twice.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let landed = connect.callback(&back).await;
    Connect::account_id(&landed);

    // Code and error both: the platform said no, and no code is exchanged.
    let (back, _) = to_callback(&connect).await;
    let before = fake.requests();
    let state = query(&back, "state").unwrap();
    let code = query(&back, "code").unwrap();
    let both = get(format!(
        "code={code}&state={state}&error=access_denied&error_description=no"
    ))
    .await;
    assert_eq!(both.status(), StatusCode::SEE_OTHER);
    let location = Url::parse(both.headers()["location"].to_str().unwrap()).unwrap();
    assert_eq!(query(&location, "error").as_deref(), Some("access_denied"));
    assert_eq!(fake.requests(), before, "no exchange after an error");

    // Huge values: a redirect with an error, its description kept short.
    let (back, _) = to_callback(&connect).await;
    let state = query(&back, "state").unwrap();
    let huge = get(format!(
        "state={state}&code={}&error_description={}",
        "c".repeat(30_000),
        "d".repeat(30_000)
    ))
    .await;
    assert_eq!(huge.status(), StatusCode::SEE_OTHER);
    let location = Url::parse(huge.headers()["location"].to_str().unwrap()).unwrap();
    assert!(query(&location, "error").is_some(), "{location}");
    assert!(
        location.as_str().len() < 2_000,
        "{}",
        location.as_str().len()
    );

    // Not UTF-8, control characters, nothing at all: no state of ours.
    for odd in [
        "state=%FF%FE&code=x",
        "state=%00&code=x",
        "state=&code=x",
        "",
    ] {
        let response = get(odd.to_owned()).await;
        assert_eq!(response.status(), StatusCode::NOT_FOUND, "{odd}");
    }
    assert_eq!(accounts_stored(&connect).await, 1);
}

#[tokio::test]
async fn the_platforms_authorization_errors_keep_their_meaning() {
    let (connect, _fake) = with_x(|_| {}).await;
    for (sent, expected) in [
        ("access_denied", "access_denied"),
        // LinkedIn's words for a member who cancels.
        ("user_cancelled_authorize", "access_denied"),
        ("temporarily_unavailable", "temporarily_unavailable"),
        ("server_error", "temporarily_unavailable"),
        ("invalid_scope", "invalid_request"),
        ("unauthorized_client", "invalid_request"),
    ] {
        let started = connect.begin(x_body()).await;
        let mut url = connect.url("v1/connect/callback");
        url.query_pairs_mut()
            .append_pair("state", started["state"].as_str().unwrap())
            .append_pair("error", sent)
            .append_pair(
                "error_description",
                &format!("echoing {CLIENT_SECRET} back"),
            );
        let landed = connect.callback(&url).await;
        assert_eq!(query(&landed, "error").as_deref(), Some(expected), "{sent}");
        let description = query(&landed, "error_description").unwrap();
        assert!(description.contains(sent), "{description}");
        assert!(!description.contains(CLIENT_SECRET), "{description}");
    }
}

// ---- hostile platforms ----------------------------------------------------

#[tokio::test]
async fn hostile_token_answers_register_nothing_and_say_what_was_wrong() {
    let (connect, fake) = with_x(|_| {}).await;
    let canary = "CANARYTOKEN0123456789abcdef";
    let cases: Vec<(ScriptedResponse, &str)> = vec![
        (
            ScriptedResponse::raw(200, "text/html", format!("<html>{canary}</html>")),
            "not a JSON object",
        ),
        (
            ScriptedResponse::raw(200, "application/json", ""),
            "not a JSON object",
        ),
        (
            ScriptedResponse::json(
                200,
                json!({"access_token": "A".repeat(100_000), "token_type": "bearer"}),
            ),
            "access_token",
        ),
        (
            ScriptedResponse::json(
                200,
                json!({"access_token": "abc\r\ndef", "token_type": "bearer"}),
            ),
            "access_token",
        ),
        (
            ScriptedResponse::json(200, json!({"access_token": {"nested": canary}})),
            "access_token is not a string",
        ),
        (
            ScriptedResponse::json(200, json!({"access_token": canary, "refresh_token": ["x"]})),
            "refresh_token is not a string",
        ),
        (
            ScriptedResponse::json(
                200,
                json!({"access_token": canary, "refresh_token": format!("{canary} x")}),
            ),
            "refresh_token",
        ),
        // An error beside tokens, in a 200 and in a 400 with a code of its own.
        (
            ScriptedResponse::json(
                200,
                json!({"error": "server_error", "access_token": canary}),
            ),
            "code exchange",
        ),
        (
            ScriptedResponse::json(
                400,
                json!({"error": "odd_error", "error_description": "odd", "access_token": canary}),
            ),
            "code exchange",
        ),
        (
            ScriptedResponse::raw(403, "text/html", format!("<html>denied {canary}</html>")),
            "HTTP 403",
        ),
        (
            ScriptedResponse::raw(502, "text/html", format!("<html>{canary}</html>")),
            "HTTP 502",
        ),
    ];
    let mut faults = Faults::default();
    for (answer, named) in cases {
        let (back, _) = to_callback(&connect).await;
        fake.script_next(answer.clone());
        let started = Instant::now();
        let landed = connect.callback(&back).await;
        assert!(started.elapsed() < Duration::from_secs(5));
        let description = query(&landed, "error_description").unwrap_or_default();
        let shown = String::from_utf8_lossy(&answer.body)
            .chars()
            .take(60)
            .collect::<String>();
        faults.check(
            query(&landed, "error").is_some()
                && description.contains(named)
                && !description.contains(canary)
                && !description.contains("AAAAAAAAAAAA"),
            || {
                format!(
                    "{shown}: {}",
                    query(&landed, "error_description").unwrap_or_default()
                )
            },
        );
    }
    faults.none();
    assert_eq!(accounts_stored(&connect).await, 0);
}

#[tokio::test]
async fn hostile_profile_answers_register_nothing_or_only_what_is_sound() {
    let (connect, fake) = with_x(|_| {}).await;
    let refused: Vec<(ScriptedResponse, &str)> = vec![
        (
            ScriptedResponse::raw(200, "text/html", "<html>xat_scripted_0123456789</html>"),
            "not a JSON object",
        ),
        (
            ScriptedResponse::raw(200, "application/json", ""),
            "not a JSON object",
        ),
        (ScriptedResponse::json(200, json!({})), "data.id is missing"),
        (
            ScriptedResponse::json(200, json!({"data": {"id": ""}})),
            "data.id is missing",
        ),
        (
            ScriptedResponse::json(200, json!({"data": {"id": " \t "}})),
            "data.id is missing",
        ),
        (
            ScriptedResponse::json(200, json!({"data": {"id": {"nested": "1"}}})),
            "data.id is missing",
        ),
        (
            ScriptedResponse::json(200, json!({"data": {"id": "4\u{7}2"}})),
            "external_id",
        ),
        (
            ScriptedResponse::json(200, json!({"data": {"id": "4\u{0}2"}})),
            "external_id",
        ),
        (
            ScriptedResponse::json(200, json!({"data": {"id": "x".repeat(300)}})),
            "external_id",
        ),
        (
            ScriptedResponse::json(401, json!({"detail": "xat_scripted_0123456789"})),
            "HTTP 401",
        ),
        (ScriptedResponse::json(503, json!({})), "HTTP 503"),
    ];
    let mut faults = Faults::default();
    for (profile, named) in refused {
        let (back, _) = to_callback(&connect).await;
        fake.script_next(x_token_answer());
        fake.script_next(profile.clone());
        let landed = connect.callback(&back).await;
        let description = query(&landed, "error_description").unwrap_or_default();
        let shown = String::from_utf8_lossy(&profile.body)
            .chars()
            .take(60)
            .collect::<String>();
        faults.check(
            query(&landed, "error").is_some()
                && description.contains(named)
                && !description.contains("xat_scripted"),
            || format!("{shown}: {landed}"),
        );
    }
    assert_eq!(accounts_stored(&connect).await, 0);

    // Odd decorations are left out; the account itself is sound.
    for (id, profile) in [
        (
            "41",
            json!({"data": {"id": "41", "username": "ok", "profile_image_url": "javascript:alert(1)"}}),
        ),
        (
            "42",
            json!({"data": {"id": "42", "username": "ok", "profile_image_url": "data:text/html,<script>alert(1)</script>"}}),
        ),
        (
            "43",
            json!({"data": {"id": "43", "username": "ok", "profile_image_url": format!("https://pbs.example/{}", "a".repeat(3000))}}),
        ),
        (
            "44",
            json!({"data": {"id": "44", "username": "bad\u{0}handle", "name": "bad\u{0}name"}}),
        ),
        (
            "45",
            json!({"data": {"id": "45", "username": "h".repeat(300), "name": "n".repeat(2000)}}),
        ),
    ] {
        let (back, _) = to_callback(&connect).await;
        fake.script_next(x_token_answer());
        fake.script_next(ScriptedResponse::json(200, profile.clone()));
        let landed = connect.callback(&back).await;
        let Some(account) = query(&landed, "account_id") else {
            faults.check(false, || format!("{profile}: {landed}"));
            continue;
        };
        let row = connect.env.row(&account.parse().unwrap()).await;
        let (handle, name) = (row.handle.as_deref(), row.display_name.as_deref());
        let sound = row.external_id == id
            && row.avatar_url.is_none()
            && match id {
                "44" => handle.is_none() && name == Some("bad name"),
                "45" => handle.is_none() && name.is_some_and(|n| n.chars().count() <= 301),
                _ => handle == Some("ok"),
            };
        faults.check(sound, || format!("{profile}: {row:?}"));
    }
    faults.none();
}

#[tokio::test]
async fn a_silent_token_endpoint_ends_the_callback_in_time_and_spends_the_state() {
    let platform = silent().await;
    let token_url = platform.url.join("2/oauth2/token").unwrap();
    let (connect, _fake) = with_x(|s| {
        s.http.connect_timeout = Duration::from_millis(500);
        s.http.request_timeout = Duration::from_secs(1);
        s.providers.get_mut(Provider::X).token_url = Some(token_url);
    })
    .await;
    let (back, _) = to_callback(&connect).await;
    let started = Instant::now();
    let landed = connect.callback(&back).await;
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(
        query(&landed, "error").as_deref(),
        Some("temporarily_unavailable"),
        "{landed}"
    );
    assert!(
        query(&landed, "error_description")
            .unwrap()
            .contains("timed out")
    );
    // A second try with the same code could be a second exchange of it: the
    // state is spent, the user starts again.
    let again = connect.browser.get(back.clone()).send().await.unwrap();
    assert_eq!(again.status(), StatusCode::BAD_REQUEST);
    assert_eq!(platform.accepted.load(Ordering::SeqCst), 1);
    assert_eq!(accounts_stored(&connect).await, 0);
}

#[tokio::test]
async fn a_silent_profile_endpoint_ends_the_callback_in_time_and_registers_nothing() {
    let platform = silent().await;
    let api_url = platform.url.join("2/").unwrap();
    let (connect, fake) = with_x(|s| {
        s.http.connect_timeout = Duration::from_millis(500);
        s.http.request_timeout = Duration::from_secs(1);
        s.providers.get_mut(Provider::X).api_url = Some(api_url);
    })
    .await;
    let (back, _) = to_callback(&connect).await;
    let exchanges = fake.requests();
    let started = Instant::now();
    let landed = connect.callback(&back).await;
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(
        query(&landed, "error").as_deref(),
        Some("temporarily_unavailable"),
        "{landed}"
    );
    let again = connect.browser.get(back.clone()).send().await.unwrap();
    assert_eq!(again.status(), StatusCode::BAD_REQUEST);
    assert_eq!(
        fake.requests() - exchanges,
        1,
        "the code was exchanged once"
    );
    assert_eq!(accounts_stored(&connect).await, 0);
}

#[tokio::test]
async fn a_browser_that_gives_up_does_not_cut_the_flow_short() {
    let slow_token = local(|_form| async {
        tokio::time::sleep(Duration::from_millis(1500)).await;
        (
            StatusCode::OK,
            json!({
                "token_type": "bearer", "expires_in": 7200,
                "access_token": "xat_slow_0123456789", "refresh_token": "xrt_slow_0123456789",
                "scope": "tweet.read tweet.write users.read offline.access",
            })
            .to_string(),
        )
    })
    .await;
    let token_url = slow_token.url.clone();
    let (connect, fake) = with_x(|s| {
        s.providers.get_mut(Provider::X).token_url = Some(token_url);
    })
    .await;
    let (back, _) = to_callback(&connect).await;
    fake.script_next(ScriptedResponse::json(
        200,
        json!({"data": {"id": "777", "username": "patient", "name": "Patient"}}),
    ));
    let impatient = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_millis(300))
        .build()
        .unwrap();
    assert!(impatient.get(back.clone()).send().await.is_err());
    // The code was exchanged: the tokens it bought are kept.
    let deadline = Instant::now() + Duration::from_secs(10);
    while accounts_stored(&connect).await == 0 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(slow_token.hits.load(Ordering::SeqCst), 1);
    assert_eq!(accounts_stored(&connect).await, 1);
    let external: String = sqlx::query_scalar("SELECT external_id FROM social_accounts")
        .fetch_one(connect.env.pool())
        .await
        .unwrap();
    assert_eq!(external, "777");
}

// ---- secrets --------------------------------------------------------------

#[tokio::test]
async fn a_token_endpoint_that_echoes_its_form_leaks_no_verifier_or_code() {
    let echo = local(|form| async move {
        (
            StatusCode::BAD_REQUEST,
            json!({"error": "invalid_grant", "error_description": format!("refused: {form}")})
                .to_string(),
        )
    })
    .await;
    let token_url = echo.url.clone();
    let (connect, _fake) = with_x(|s| {
        s.providers.get_mut(Provider::X).token_url = Some(token_url);
    })
    .await;
    let (back, challenge) = to_callback(&connect).await;
    let code = query(&back, "code").unwrap();
    let landed = connect.callback(&back).await;
    let description = query(&landed, "error_description").unwrap();
    assert!(description.contains("refused"), "{description}");
    assert!(
        description.contains("grant_type=authorization_code"),
        "{description}"
    );
    assert!(!description.contains(&code), "{description}");
    assert!(!verifier_in(&description, &challenge), "{description}");
    assert!(!landed.as_str().contains(&code));
    assert!(!verifier_in(landed.as_str(), &challenge));

    // The API tier's exchange answers with the same care.
    let (back, challenge) = to_callback(&connect).await;
    let code = query(&back, "code").unwrap();
    let answer = connect
        .api
        .post(connect.url("v1/connect/exchange"))
        .json(&json!({"state": query(&back, "state").unwrap(), "code": code}))
        .send()
        .await
        .unwrap();
    let text = answer.text().await.unwrap();
    assert!(text.contains("refused"), "{text}");
    assert!(!text.contains(&code), "{text}");
    assert!(!verifier_in(&text, &challenge), "{text}");
}

// ---- reconnects -----------------------------------------------------------

#[tokio::test]
async fn a_reconnect_recovers_an_account_from_any_status_but_only_as_itself() {
    let (connect, fake) = with_x(|_| {}).await;
    let me = || Consent::Approve(User::new("111", "first", "First"));
    fake.desk().next_consent(me());
    let id = Connect::account_id(&connect.connect(x_body()).await);
    let mut reconnect = x_body();
    reconnect["account_id"] = json!(id.to_string());

    for status in ["TOKEN_EXPIRED", "REVOKED"] {
        connect
            .env
            .update_account(&id, &format!("status = '{status}', status_reason = 'test'"))
            .await;
        fake.desk().next_consent(me());
        let landed = connect.connect(reconnect.clone()).await;
        assert_eq!(Connect::account_id(&landed), id);
        assert_eq!(connect.env.row(&id).await.status, AccountStatus::Active);
        let events = connect.env.events(&id).await;
        assert_eq!(
            events.last().unwrap(),
            &(
                Some(status.to_owned()),
                "ACTIVE".to_owned(),
                "reconnected".to_owned()
            ),
            "{events:?}"
        );
    }

    // Disconnected through the API: connecting it again is a recovery too.
    let deleted = connect
        .api
        .delete(connect.url(&format!("v1/accounts/{id}")))
        .send()
        .await
        .unwrap();
    assert_eq!(deleted.status(), StatusCode::NO_CONTENT);
    fake.desk().next_consent(me());
    let landed = connect.connect(reconnect.clone()).await;
    assert_eq!(Connect::account_id(&landed), id);
    assert_eq!(connect.env.row(&id).await.status, AccountStatus::Active);

    // Someone else signs in: nothing changes.
    connect
        .env
        .update_account(&id, "status = 'REVOKED', status_reason = 'test'")
        .await;
    let token_before = connect.env.stored_access_token(&id).await;
    let events_before = connect.env.events(&id).await.len();
    fake.desk()
        .next_consent(Consent::Approve(User::new("222", "other", "Other")));
    let landed = connect.connect(reconnect).await;
    assert!(query(&landed, "account_id").is_none());
    assert!(
        query(&landed, "error_description")
            .unwrap()
            .contains("not the one"),
        "{landed}"
    );
    let row = connect.env.row(&id).await;
    assert_eq!(row.status, AccountStatus::Revoked);
    assert_eq!(connect.env.stored_access_token(&id).await, token_before);
    assert_eq!(connect.env.events(&id).await.len(), events_before);
    assert_eq!(accounts_stored(&connect).await, 1);
}

// ---- the choice -----------------------------------------------------------

async fn with_linkedin() -> (Connect, FakeLinkedin) {
    let fake = FakeLinkedin::start(CLIENT_ID, CLIENT_SECRET).await.unwrap();
    let connect = Connect::start(|s| {
        let section = s.providers.get_mut(Provider::LinkedinCompany);
        section.flow = Flow::Linkedin;
        section.client_auth = ClientAuth::Body;
        section.authorize_url = Some(fake.authorize_url());
        section.token_url = Some(fake.token_url());
        section.api_url = Some(fake.api_url());
        section.health_url = Some(fake.introspect_url());
        section.client_id = Some(CLIENT_ID.into());
        section.client_secret = Some(SecretString::from(CLIENT_SECRET));
    })
    .await;
    (connect, fake)
}

/// A LinkedIn member with two pages to choose from: the pending state.
async fn pending_choice(connect: &Connect, fake: &FakeLinkedin, member: &str) -> String {
    fake.desk()
        .next_consent(Consent::Approve(User::new(member, "admin", "Ada Admin")));
    fake.add_organization(member, LinkedinOrganization::new(123, "Acme", "acme"));
    fake.add_organization(member, LinkedinOrganization::new(456, "Globex", "globex"));
    let landed = connect
        .connect(json!({"provider": "LINKEDIN_COMPANY", "workspace_id": "ws-1", "redirect_after": RETURN_URL}))
        .await;
    assert_eq!(
        query(&landed, "selection_required").as_deref(),
        Some("true")
    );
    query(&landed, "state").unwrap()
}

async fn select(connect: &Connect, state: &str, ids: Value) -> (StatusCode, Value) {
    let response = connect
        .api
        .post(connect.url("v1/connect/select"))
        .json(&json!({"state": state, "ids": ids}))
        .send()
        .await
        .unwrap();
    let status = response.status();
    (status, response.json().await.unwrap())
}

#[tokio::test]
async fn a_choice_takes_only_what_was_offered_once_and_in_time() {
    let (connect, fake) = with_linkedin().await;
    let state = pending_choice(&connect, &fake, "m-1").await;
    for wrong in [
        json!(["999"]),
        json!(["123", "999"]),
        json!(["urn:li:organization:123"]),
        json!([" 123"]),
        json!(["\u{0}"]),
        json!(["x".repeat(10_000)]),
        json!((0..101).map(|n| n.to_string()).collect::<Vec<_>>()),
    ] {
        let (status, answer) = select(&connect, &state, wrong.clone()).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{answer}");
        assert!(answer.to_string().len() < 1_000, "{answer}");
    }
    // A page named twice is one page connected once.
    let (status, answer) = select(&connect, &state, json!(["456", "456"])).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    let accounts = answer["accounts"].as_array().unwrap();
    assert_eq!(accounts.len(), 1, "{answer}");
    assert_eq!(accounts[0]["created"], true, "{answer}");
    assert_eq!(accounts_stored(&connect).await, 1);

    // Too late: the choice expires with its session.
    let state = pending_choice(&connect, &fake, "m-2").await;
    sqlx::query("UPDATE connect_sessions SET expires_at = now() - interval '1 second'")
        .execute(connect.env.pool())
        .await
        .unwrap();
    let (status, answer) = select(&connect, &state, json!(["123"])).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{answer}");
    assert_eq!(answer["error"]["code"], "state_expired");

    // No choice was ever offered for these.
    for state in ["never-issued", ""] {
        let (status, answer) = select(&connect, state, json!(["123"])).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{answer}");
    }
    assert_eq!(accounts_stored(&connect).await, 1);
}

#[tokio::test]
async fn two_concurrent_choices_register_once() {
    let (connect, fake) = with_linkedin().await;
    let state = pending_choice(&connect, &fake, "m-3").await;
    let (first, second) = tokio::join!(
        select(&connect, &state, json!(["123"])),
        select(&connect, &state, json!(["456"]))
    );
    let mut statuses = [first.0, second.0];
    statuses.sort();
    assert_eq!(statuses, [StatusCode::OK, StatusCode::BAD_REQUEST]);
    assert_eq!(accounts_stored(&connect).await, 1);
}

/// Meta takes tokens in query strings: a Graph host that fails at the
/// transport (silent, or refusing connections) must not bring the URL, and
/// so the token, into the error.
#[tokio::test]
async fn a_meta_transport_failure_names_no_url_and_no_token() {
    let fake = tokenwarden_fakes::FakeGraph::threads_app(CLIENT_ID, CLIENT_SECRET)
        .await
        .unwrap();
    let platform = silent().await;
    let closed = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = Url::parse(&format!("http://{}/v1.0/", listener.local_addr().unwrap())).unwrap();
        drop(listener);
        url
    };
    for api_url in [platform.url.join("v1.0/").unwrap(), closed] {
        let connect = Connect::start(|s| {
            s.http.connect_timeout = Duration::from_millis(500);
            s.http.request_timeout = Duration::from_secs(1);
            let section = s.providers.get_mut(Provider::Threads);
            section.flow = Flow::Threads;
            section.token_url = Some(fake.refresh_url());
            section.exchange_url = Some(fake.exchange_url());
            section.authorize_url = Some(fake.authorize_url());
            section.api_url = Some(api_url.clone());
            section.client_id = Some(CLIENT_ID.into());
            section.client_secret = Some(CLIENT_SECRET.into());
        })
        .await;
        let (_, back) = connect.consent(json!({"provider": "THREADS", "workspace_id": "ws-1", "redirect_after": RETURN_URL})).await;
        fake.script_next(ScriptedResponse::json(
            200,
            json!({"access_token": "THQSshortlivedtoken0123456789", "user_id": 7003}),
        ));
        let landed = connect.callback(&back).await;
        let description = query(&landed, "error_description").unwrap();
        assert_eq!(
            query(&landed, "error").as_deref(),
            Some("temporarily_unavailable"),
            "{description}"
        );
        assert!(description.contains("long-lived"), "{description}");
        for leak in ["THQS", "access_token", CLIENT_SECRET, "127.0.0.1"] {
            assert!(!description.contains(leak), "{leak} in {description}");
        }
    }
}
