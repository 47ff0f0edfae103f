//! The daemon's binary as real processes: two processes racing on one
//! rotating account, a process killed between the platform's answer and the
//! database write, the CLI's commands and errors, and the demo end to end.
//!
//! Over 500 lines on purpose: every test here drives the same process
//! harness (spawn, wait for a line, kill, audit the database), kept in one
//! file so a reader follows each scenario top to bottom beside it.

mod common;

use std::process::{Command, Output, Stdio};
use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use chrono::{TimeDelta, Utc};
use common::{CLIENT_ID, CLIENT_SECRET, TestDb, new_account, rotating};
use secrecy::SecretString;
use tokenwarden::crypto::Keyring;
use tokenwarden::domain::{AccountId, Provider};
use tokenwarden::policy::RefreshPolicy;
use tokenwarden::store::accounts;
use tokenwarden_fakes::FakeOAuthServer;

const BIN: &str = env!("CARGO_BIN_EXE_tokenwarden");

struct Procs {
    db: TestDb,
    fake: FakeOAuthServer,
    key_spec: String,
    keyring: Arc<Keyring>,
}

impl Procs {
    async fn new() -> Self {
        let db = TestDb::new().await;
        let fake = FakeOAuthServer::start(CLIENT_ID, CLIENT_SECRET)
            .await
            .unwrap();
        let key_spec = format!(
            "p1:{}",
            base64::engine::general_purpose::STANDARD.encode([5u8; 32])
        );
        let keyring = Arc::new(Keyring::parse(&SecretString::from(key_spec.clone())).unwrap());
        Self {
            db,
            fake,
            key_spec,
            keyring,
        }
    }

    fn command(&self) -> Command {
        let mut cmd = Command::new(BIN);
        for (key, _) in std::env::vars().filter(|(k, _)| k.starts_with("TOKENWARDEN")) {
            cmd.env_remove(key);
        }
        cmd.env_remove("RUST_LOG")
            // Parallel daemons each serve probes on a port of their own.
            .env("TOKENWARDEN__API__LISTEN", "127.0.0.1:0")
            .env("TOKENWARDEN__DATABASE__URL", self.db.url())
            .env("TOKENWARDEN__CRYPTO__KEYS", &self.key_spec)
            .env(
                "TOKENWARDEN__PROVIDERS__X__TOKEN_URL",
                self.fake.url("/x/token").as_str(),
            )
            .env("TOKENWARDEN__PROVIDERS__X__CLIENT_ID", CLIENT_ID)
            .env("TOKENWARDEN__PROVIDERS__X__CLIENT_SECRET", CLIENT_SECRET)
            .env("TOKENWARDEN__HTTP__REQUEST_TIMEOUT", "5s")
            .env("TOKENWARDEN__HTTP__ROTATING_REQUEST_TIMEOUT", "5s")
            .env("TOKENWARDEN__ENGINE__LEASE_MARGIN", "1s")
            .env("TOKENWARDEN__REDIS__URL", common::redis_url())
            .stdin(Stdio::null());
        cmd
    }

    async fn run(&self, args: &[&str]) -> Output {
        let mut cmd = self.command();
        cmd.args(args);
        tokio::task::spawn_blocking(move || cmd.output().unwrap())
            .await
            .unwrap()
    }

    async fn connect_x(&self) -> (AccountId, tokenwarden_fakes::IssuedTokens) {
        let tokens = self.fake.issue(rotating());
        let new = new_account(
            Provider::X,
            "ext-1",
            &tokens,
            Utc::now() - TimeDelta::hours(1),
            Some(Utc::now()),
        );
        let settings = common::settings_for(&self.fake);
        let policy = RefreshPolicy::from(settings.providers.get(Provider::X));
        let id = accounts::register(&self.db.pool, &self.keyring, &policy, &new)
            .await
            .unwrap()
            .account
            .id;
        (id, tokens)
    }

    async fn stored_refresh_token(&self, id: &AccountId) -> String {
        let row = accounts::get(&self.db.pool, id).await.unwrap().unwrap();
        let plain = self
            .keyring
            .decrypt(
                id,
                tokenwarden::crypto::Field::RefreshToken,
                "p1",
                row.refresh_token_ciphertext.as_deref().unwrap(),
            )
            .unwrap();
        secrecy::ExposeSecret::expose_secret(&plain).to_owned()
    }
}

fn text(output: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

#[tokio::test]
async fn two_processes_racing_on_a_rotating_account_make_one_provider_call() {
    let procs = Procs::new().await;
    let (id, first) = procs.connect_x().await;
    procs.fake.set_answer_delay(Duration::from_millis(700));
    let args = ["refresh", id.as_str()];
    let (a, b) = tokio::join!(procs.run(&args), procs.run(&args));
    assert!(a.status.success(), "{}", text(&a));
    assert!(b.status.success(), "{}", text(&b));
    assert_eq!(
        procs.fake.call_count(),
        1,
        "one provider call across two processes"
    );
    assert_eq!(procs.fake.reuse_detected(), 0);
    let joined = [&a, &b]
        .iter()
        .filter(|o| text(o).contains("joined"))
        .count();
    assert_eq!(joined, 1, "{}\n---\n{}", text(&a), text(&b));
    let stored = procs.stored_refresh_token(&id).await;
    assert_ne!(stored, first.refresh_token);
    assert!(
        procs.fake.is_live(&stored),
        "the account still holds a working refresh token"
    );
}

#[tokio::test]
async fn process_killed_after_the_platform_answered_is_reported_as_interrupted() {
    let procs = Procs::new().await;
    let (id, _) = procs.connect_x().await;
    // The platform rotates at once and answers 3 s later; the process dies
    // in between, so the new refresh token is never stored.
    procs.fake.set_answer_delay(Duration::from_secs(3));
    let mut child = procs
        .command()
        .args(["refresh", id.as_str()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    for _ in 0..100 {
        if procs.fake.call_count() == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        procs.fake.call_count(),
        1,
        "the refresh reached the platform"
    );
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    procs.fake.set_answer_delay(Duration::ZERO);

    // Lease = request timeout 5 s + margin 1 s.
    tokio::time::sleep(Duration::from_millis(6_300)).await;
    let next = procs.run(&["refresh", id.as_str()]).await;
    let out = text(&next);
    assert_eq!(next.status.code(), Some(3), "{out}");
    assert!(out.contains("interrupted refresh"), "{out}");
}

#[tokio::test]
async fn cli_registers_lists_and_shows_accounts_without_printing_tokens() {
    let procs = Procs::new().await;
    let dir = std::env::temp_dir().join(format!("tw-cli-{:08x}", rand::random::<u32>()));
    std::fs::create_dir_all(&dir).unwrap();
    let canary = "canary-cli-9f8e7d6c5b4a";
    let json = serde_json::json!({
        "workspace_id": "ws_cli",
        "provider": "PINTEREST",
        "external_id": "board-owner-1",
        "handle": "@pins",
        "scopes": ["boards:read", "pins:write"],
        "default_board_id": "b-42",
        "credentials": {"access_token": canary, "refresh_token": format!("{canary}-rt"), "expires_in": 2592000}
    });
    let file = dir.join("account.json");
    std::fs::write(&file, json.to_string()).unwrap();

    let added = procs
        .run(&["accounts", "add", "--json", file.to_str().unwrap()])
        .await;
    assert!(added.status.success(), "{}", text(&added));
    let out = text(&added);
    let id = out.split_whitespace().nth(1).unwrap().to_owned();
    assert!(out.starts_with("registered acc_"), "{out}");

    let again = procs
        .run(&["accounts", "add", "--json", file.to_str().unwrap()])
        .await;
    assert!(
        text(&again).starts_with(&format!("reconnected {id}")),
        "{}",
        text(&again)
    );

    let list = procs
        .run(&["accounts", "list", "--provider", "pinterest"])
        .await;
    assert!(
        text(&list).contains(&id) && text(&list).contains("ACTIVE"),
        "{}",
        text(&list)
    );
    let show = procs.run(&["accounts", "show", &id]).await;
    let shown = text(&show);
    assert!(
        shown.contains("PINTEREST") && shown.contains("refresh token stored:      yes"),
        "{shown}"
    );
    for output in [&added, &again, &list, &show] {
        assert!(!text(output).contains(canary), "a token was printed");
    }

    // Flags with token files work too; a bad field is named.
    let token_file = dir.join("at");
    std::fs::write(&token_file, "tok\n").unwrap();
    let flags = procs
        .run(&[
            "accounts",
            "add",
            "--workspace",
            "ws_cli",
            "--provider",
            "mastodon",
            "--external-id",
            "m1",
            "--access-token-file",
            token_file.to_str().unwrap(),
        ])
        .await;
    assert!(flags.status.success(), "{}", text(&flags));
    let bad = procs
        .run(&[
            "accounts",
            "add",
            "--workspace",
            " ",
            "--provider",
            "x",
            "--external-id",
            "e",
            "--access-token-file",
            token_file.to_str().unwrap(),
        ])
        .await;
    assert!(!bad.status.success());
    assert!(
        text(&bad).contains("workspace_id: must not be empty"),
        "{}",
        text(&bad)
    );
    let unknown = procs
        .run(&["accounts", "show", "acc_0123456789abcdef0123456789abcdef"])
        .await;
    assert!(
        text(&unknown).contains("unknown account"),
        "{}",
        text(&unknown)
    );
    let malformed = procs.run(&["refresh", "not-an-id"]).await;
    assert!(
        text(&malformed).contains("invalid account id"),
        "{}",
        text(&malformed)
    );
    std::fs::remove_dir_all(dir).unwrap();
}

#[tokio::test]
async fn config_errors_name_the_key_and_exit_2() {
    let procs = Procs::new().await;
    let mut cmd = procs.command();
    cmd.env("TOKENWARDEN__HTTP__CONNECT_TIMEOUT", "soon")
        .arg("check-config");
    let out = tokio::task::spawn_blocking(move || cmd.output().unwrap())
        .await
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(
        text(&out).contains("http.connect_timeout"),
        "{}",
        text(&out)
    );

    let ok = procs.run(&["check-config"]).await;
    assert!(ok.status.success(), "{}", text(&ok));
    assert!(text(&ok).contains("encryption keys (newest first): p1"));
    assert!(!text(&ok).contains(CLIENT_SECRET));
}

#[tokio::test]
async fn the_daemon_refuses_to_start_without_a_key() {
    let procs = Procs::new().await;
    let (id, _) = procs.connect_x().await;
    let mut cmd = procs.command();
    cmd.env_remove("TOKENWARDEN__CRYPTO__KEYS")
        .args(["refresh", id.as_str()]);
    let out = tokio::task::spawn_blocking(move || cmd.output().unwrap())
        .await
        .unwrap();
    assert!(!out.status.success());
    assert!(
        text(&out).contains("crypto.keys is not set"),
        "{}",
        text(&out)
    );

    let mut cmd = procs.command();
    cmd.env(
        "TOKENWARDEN__CRYPTO__KEYS",
        format!(
            "other:{}",
            base64::engine::general_purpose::STANDARD.encode([8u8; 32])
        ),
    )
    .args(["refresh", id.as_str()]);
    let out = tokio::task::spawn_blocking(move || cmd.output().unwrap())
        .await
        .unwrap();
    assert!(!out.status.success());
    assert!(
        text(&out).contains("that crypto.keys does not configure"),
        "{}",
        text(&out)
    );
}

#[tokio::test]
async fn the_demo_refreshes_accounts_live_and_strands_no_rotating_token() {
    let procs = Procs::new().await;
    let demo_schema = format!("{}_demo", procs.db.schema);
    let out = procs
        .run(&[
            "demo",
            "--accounts",
            "40",
            "--duration",
            "22s",
            "--progress-every",
            "5",
            "--schema",
            &demo_schema,
            "--drop-schema",
        ])
        .await;
    let printed = text(&out);
    assert!(out.status.success(), "{printed}");
    let last = printed.lines().rfind(|l| l.starts_with('[')).unwrap();
    let refreshed: u64 = last
        .split("refreshed")
        .nth(1)
        .unwrap()
        .split('|')
        .next()
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert!(refreshed >= 20, "{printed}");
    assert!(printed.contains("spent tokens replayed: 0"), "{printed}");
}

#[tokio::test]
async fn sigterm_with_refreshes_in_flight_exits_0_within_the_grace_and_loses_nothing() {
    let procs = Procs::new().await;
    let settings = common::settings_for(&procs.fake);
    let policy = RefreshPolicy::from(settings.providers.get(Provider::X));
    for i in 0..200 {
        let tokens = procs.fake.issue(rotating());
        let new = new_account(
            Provider::X,
            &format!("ext-{i}"),
            &tokens,
            Utc::now() - TimeDelta::hours(2),
            Some(Utc::now() + TimeDelta::minutes(1)),
        );
        accounts::register(&procs.db.pool, &procs.keyring, &policy, &new)
            .await
            .unwrap();
    }
    procs.fake.set_answer_delay(Duration::from_secs(2));
    let queue = format!("{{tw-test-{:08x}}}:refresh", rand::random::<u32>());
    let mut cmd = procs.command();
    cmd.env("TOKENWARDEN__REDIS__QUEUE", &queue)
        .env("TOKENWARDEN__SCHEDULER__INTERVAL", "200ms")
        .env("TOKENWARDEN__SCHEDULER__CLAIM_TIMEOUT", "30s")
        .env("TOKENWARDEN__WORKER__POLL_INTERVAL", "50ms")
        .env("TOKENWARDEN__WORKER__JOB_TIMEOUT", "20s")
        .env("TOKENWARDEN__SHUTDOWN__GRACE", "10s")
        .env("TOKENWARDEN__PROVIDERS__X__RATE_PER_SECOND", "5000")
        .env("TOKENWARDEN__PROVIDERS__X__MAX_CONCURRENCY", "256")
        .args(["run", "--role", "scheduler,worker"])
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let mut child = cmd.spawn().unwrap();
    for _ in 0..200 {
        if procs.fake.call_count() >= 150 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let in_flight = procs.fake.call_count();
    assert!(in_flight >= 150, "only {in_flight} calls started");
    let signalled = std::time::Instant::now();
    let killed = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    let status = tokio::task::spawn_blocking(move || child.wait().unwrap())
        .await
        .unwrap();
    assert_eq!(status.code(), Some(0), "clean exit");
    assert!(
        signalled.elapsed() < Duration::from_secs(12),
        "within the grace: {:?}",
        signalled.elapsed()
    );

    // Every call the platform answered was written; nothing ran twice.
    let calls = procs.fake.call_count();
    let refreshed: i64 =
        sqlx::query_scalar("SELECT count(*) FROM refresh_attempts WHERE outcome = 'refreshed'")
            .fetch_one(&procs.db.pool)
            .await
            .unwrap();
    assert_eq!(refreshed as usize, calls, "every answered call was stored");
    assert_eq!(procs.fake.reuse_detected(), 0);
    let leased: i64 =
        sqlx::query_scalar("SELECT count(*) FROM social_accounts WHERE lease_owner IS NOT NULL")
            .fetch_one(&procs.db.pool)
            .await
            .unwrap();
    assert_eq!(leased, 0, "no lease left behind");
    common::purge_queue(&queue).await;
}

/// Issue 9: `accounts add --json` refuses an absurd lifetime naming the
/// field (no panic), and no CLI error repeats a value given in the wrong
/// place.
#[tokio::test]
async fn cli_refuses_absurd_input_naming_the_field_without_repeating_values() {
    let procs = Procs::new().await;
    let dir = std::env::temp_dir().join(format!("tw-cli-{:08x}", rand::random::<u32>()));
    std::fs::create_dir_all(&dir).unwrap();
    let canary = "canary-cli-misplaced-7c6b5a49";
    let file = dir.join("account.json");
    for (expires_in, field) in [
        (
            serde_json::json!(8_300_000_000_000_i64),
            "credentials.expires_in",
        ),
        (serde_json::json!(canary), "credentials.expires_in"),
    ] {
        let json = serde_json::json!({
            "workspace_id": "ws_cli", "provider": "X", "external_id": "x1",
            "credentials": {"access_token": "tok", "expires_in": expires_in}
        });
        std::fs::write(&file, json.to_string()).unwrap();
        let out = procs
            .run(&["accounts", "add", "--json", file.to_str().unwrap()])
            .await;
        let shown = text(&out);
        assert_eq!(out.status.code(), Some(1), "{shown}");
        assert!(shown.contains(field), "{shown}");
        assert!(
            !shown.contains("panicked") && !shown.contains(canary),
            "{shown}"
        );
    }
    for args in [
        vec!["accounts", "show", canary],
        vec!["accounts", "list", "--provider", canary],
        vec!["accounts", "list", "--limit", canary],
        vec!["accounts", "list", canary],
        vec!["refresh", canary],
    ] {
        let out = procs.run(&args).await;
        let shown = text(&out);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {shown}");
        assert!(!shown.contains(canary), "{args:?} repeated: {shown}");
    }
    let count: i64 = sqlx::query_scalar("SELECT count(*) FROM social_accounts")
        .fetch_one(&procs.db.pool)
        .await
        .unwrap();
    assert_eq!(count, 0);
}

#[tokio::test]
async fn cli_connect_prints_the_url_waits_for_the_browser_and_registers_the_account() {
    use std::io::{BufRead, BufReader};
    let procs = Procs::new().await;
    let x = tokenwarden_fakes::FakeX::start(CLIENT_ID, CLIENT_SECRET)
        .await
        .unwrap();
    x.desk().next_consent(tokenwarden_fakes::Consent::Approve(
        tokenwarden_fakes::User::new("4242", "operator_test", "Operator Test"),
    ));
    let mut cmd = procs.command();
    cmd.env(
        "TOKENWARDEN__PROVIDERS__X__TOKEN_URL",
        x.token_url().as_str(),
    )
    .env(
        "TOKENWARDEN__PROVIDERS__X__AUTHORIZE_URL",
        x.authorize_url().as_str(),
    )
    .env("TOKENWARDEN__PROVIDERS__X__API_URL", x.api_url().as_str())
    .args(["connect", "x", "--workspace", "ws-cli", "--port", "0"])
    .stdout(Stdio::piped())
    .stderr(Stdio::piped());
    let mut child = cmd.spawn().unwrap();
    let stdout = child.stdout.take().unwrap();
    let (url_tx, url_rx) = std::sync::mpsc::channel();
    let reader = std::thread::spawn(move || {
        let mut all = String::new();
        for line in BufReader::new(stdout).lines() {
            let line = line.unwrap();
            if line.trim_start().starts_with("http://") {
                let _ = url_tx.send(line.trim().to_owned());
            }
            all.push_str(&line);
            all.push('\n');
        }
        all
    });
    let url = tokio::task::spawn_blocking(move || {
        url_rx.recv_timeout(std::time::Duration::from_secs(30))
    })
    .await
    .unwrap()
    .expect("the CLI prints the authorization URL");
    let browser = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let at_platform = browser.get(&url).send().await.unwrap();
    let back = at_platform.headers()["location"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(back.starts_with("http://127.0.0.1:"), "{back}");
    let page = browser.get(&back).send().await.unwrap();
    assert_eq!(page.status(), 200);
    assert!(page.text().await.unwrap().contains("connected"));
    let mut stderr = child.stderr.take().unwrap();
    let status = tokio::task::spawn_blocking(move || child.wait().unwrap())
        .await
        .unwrap();
    let printed = reader.join().unwrap();
    let mut errors = String::new();
    std::io::Read::read_to_string(&mut stderr, &mut errors).unwrap();
    assert!(status.success(), "{printed}{errors}");
    assert!(printed.contains("connected acc_"), "{printed}");
    assert!(printed.contains("@operator_test"), "{printed}");
    let stored: (String, String) =
        sqlx::query_as("SELECT workspace_id, external_id FROM social_accounts")
            .fetch_one(&procs.db.pool)
            .await
            .unwrap();
    assert_eq!(stored, ("ws-cli".to_owned(), "4242".to_owned()));
    let code = url::Url::parse(&back)
        .unwrap()
        .query_pairs()
        .find(|(k, _)| k == "code")
        .map(|(_, v)| v.into_owned())
        .unwrap();
    for secret in ["xat_", "xrt_", code.as_str(), CLIENT_SECRET] {
        assert!(
            !printed.contains(secret) && !errors.contains(secret),
            "{secret} printed"
        );
    }
}
