//! The operator console in a real browser: headless Chromium driven over
//! WebDriver (chromedriver, started here on a free port). An operator signs
//! in, finds a failing account by search, opens it, presses Refresh now and
//! sees it healthy, and signs out. The overview and the account page are
//! saved as full-page screenshots (test artefacts under
//! target/console-screenshots/; with `TOKENWARDEN_UPDATE_SCREENSHOTS=1` also
//! over the README's copies in docs/console/), and every page is checked for
//! console errors and Content-Security-Policy violations.
//!
//! Needs `chromium` and `chromium-driver` (Debian packages; `.ci/run`
//! installs them). Without them this test fails, saying so; it never skips.

#[path = "../common/mod.rs"]
mod common;
#[path = "../console/support.rs"]
#[allow(dead_code)]
mod support;

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use chrono::{TimeDelta, Utc};
use fantoccini::{Client, ClientBuilder, Locator};
use hyper_util::client::legacy::connect::HttpConnector;
use serde_json::{Value, json};
use tokenwarden::domain::{Outcome, Provider, Trigger};
use tokenwarden::gate::{self, ProviderGates};
use tokenwarden::policy::RefreshPolicy;
use tokenwarden::store::accounts;
use tokenwarden::store::attempts::{self, NewAttempt};

use common::{new_account, rotating};
use support::{ALICE_KEY, Console};

/// chromedriver on a port of its own, stopped when dropped.
struct Driver {
    child: Child,
    url: String,
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

async fn start_driver() -> Driver {
    let program = std::env::var("CHROMEDRIVER").unwrap_or_else(|_| "chromedriver".to_owned());
    let port = free_port();
    let child = Command::new(&program)
        .arg(format!("--port={port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| {
            panic!(
                "cannot start {program} ({e}): the browser tests need Chromium and its driver \
                 (Debian: apt-get install chromium chromium-driver; .ci/run installs them), \
                 or CHROMEDRIVER set to the driver's path"
            )
        });
    let driver = Driver {
        child,
        url: format!("http://127.0.0.1:{port}"),
    };
    let http = reqwest::Client::new();
    for _ in 0..100 {
        if let Ok(reply) = http.get(format!("{}/status", driver.url)).send().await
            && reply.status().is_success()
        {
            return driver;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("{program} did not answer on port {port} within 10 s");
}

async fn browser(driver: &Driver) -> Client {
    let mut capabilities = serde_json::Map::new();
    let mut chrome = json!({
        "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                 "--window-size=1280,900", "--hide-scrollbars"]
    });
    if let Ok(binary) = std::env::var("CHROMIUM") {
        chrome["binary"] = json!(binary);
    } else if std::path::Path::new("/usr/bin/chromium").exists() {
        chrome["binary"] = json!("/usr/bin/chromium");
    }
    capabilities.insert("goog:chromeOptions".into(), chrome);
    capabilities.insert("goog:loggingPrefs".into(), json!({"browser": "ALL"}));
    ClientBuilder::new(HttpConnector::new())
        .capabilities(capabilities)
        .connect(&driver.url)
        .await
        .expect("a Chromium session")
}

/// The browser's console messages since the last call (chromedriver's log
/// endpoint): each level and message.
async fn console_messages(driver: &Driver, client: &Client) -> Vec<(String, String)> {
    let session = client.session_id().await.unwrap().unwrap();
    let reply: Value = reqwest::Client::new()
        .post(format!("{}/session/{session}/se/log", driver.url))
        .json(&json!({"type": "browser"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    reply["value"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .into_iter()
        .map(|entry| {
            (
                entry["level"].as_str().unwrap_or("").to_owned(),
                entry["message"].as_str().unwrap_or("").to_owned(),
            )
        })
        .collect()
}

/// No errors and no policy violations on the page just shown.
async fn assert_clean_console(driver: &Driver, client: &Client, page: &str) {
    let messages = console_messages(driver, client).await;
    let bad: Vec<_> = messages
        .iter()
        .filter(|(level, message)| {
            level == "SEVERE"
                || message.contains("Content Security Policy")
                || message.contains("Refused to")
        })
        .collect();
    assert!(
        bad.is_empty(),
        "{page}: console errors or CSP violations: {bad:?}"
    );
}

/// The whole page, not only the viewport: the window is grown to the
/// document's height first.
async fn full_page_screenshot(client: &Client, name: &str) -> PathBuf {
    let height = client
        .execute("return document.documentElement.scrollHeight;", vec![])
        .await
        .unwrap()
        .as_u64()
        .unwrap_or(900)
        .clamp(600, 6000) as u32;
    client.set_window_size(1280, height).await.unwrap();
    let png = client.screenshot().await.unwrap();
    client.set_window_size(1280, 900).await.unwrap();
    assert!(png.starts_with(b"\x89PNG"), "a screenshot is a PNG");
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    // Every run leaves its screenshots as artefacts; the committed copies
    // change only when asked, so a test run leaves the work tree clean.
    let path = root.join("target/console-screenshots").join(name);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(&path, &png).unwrap();
    if std::env::var_os("TOKENWARDEN_UPDATE_SCREENSHOTS").is_some_and(|v| v == "1") {
        std::fs::write(root.join("docs/console").join(name), &png).unwrap();
    }
    path
}

async fn text_of(client: &Client, css: &str) -> String {
    client
        .wait()
        .at_most(Duration::from_secs(10))
        .for_element(Locator::Css(css))
        .await
        .unwrap_or_else(|e| panic!("no {css}: {e}"))
        .text()
        .await
        .unwrap()
}

/// Waits (up to 10 s) for the page whose heading is `expected`: a click
/// that submits a form may return before the next page has loaded.
async fn wait_for_heading(client: &Client, expected: &str) {
    let mut seen = String::new();
    for _ in 0..100 {
        if let Ok(heading) = client.find(Locator::Css("main h1")).await
            && let Ok(text) = heading.text().await
        {
            if text == expected {
                return;
            }
            seen = text;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("expected the page {expected:?}, still on {seen:?}");
}

/// A small, plausible world: accounts on three platforms in every health,
/// an hour of attempts, and one platform paused by its rate limit.
async fn seed_world(console: &Console) -> tokenwarden::domain::AccountId {
    let env = &console.env;
    let mut failing = None;
    let people = [
        (Provider::X, "northwind", None),
        (Provider::X, "contoso-news", None),
        (
            Provider::X,
            "failing-brand",
            Some(
                "consecutive_failures = 4, last_refresh_error = 'platform unavailable (HTTP 503)', last_refresh_error_status = 503",
            ),
        ),
        (
            Provider::X,
            "fabrikam",
            Some("refresh_token_expires_at = now() + interval '4 days'"),
        ),
        (Provider::Pinterest, "tailspin-pins", None),
        (
            Provider::Pinterest,
            "wingtip",
            Some("status = 'REVOKED', status_reason = 'invalid_grant: the user revoked access'"),
        ),
        (
            Provider::LinkedinPerson,
            "adatum-ceo",
            Some("status = 'TOKEN_EXPIRED', status_reason = 'refresh token expired'"),
        ),
        (
            Provider::LinkedinPerson,
            "litware",
            Some("account_inactive_reason = 'the member account is restricted'"),
        ),
        (
            Provider::Youtube,
            "proseware-tv",
            Some("missing_scopes = '{https://www.googleapis.com/auth/youtube.upload}'"),
        ),
    ];
    for (n, (provider, name, set)) in people.into_iter().enumerate() {
        let tokens = env.fake.issue(rotating());
        let expires = Utc::now() + TimeDelta::minutes(40 + 90 * n as i64);
        let mut new = new_account(
            provider,
            &format!("{}", 1000 + n),
            &tokens,
            Utc::now(),
            Some(expires),
        );
        new.handle = Some(format!("@{name}"));
        new.display_name = Some(name.replace('-', " "));
        new.workspace_id = format!("ws_{}", n % 3 + 1);
        let policy = RefreshPolicy::from(env.settings.providers.get(provider));
        let id = accounts::register(env.pool(), &env.keyring, &policy, &new)
            .await
            .unwrap()
            .account
            .id;
        env.update_account(&id, "missing_scopes = '{}'").await;
        if let Some(set) = set {
            env.update_account(&id, set).await;
        }
        if name == "failing-brand" {
            failing = Some(id.clone());
        }
        let mut conn = env.pool().acquire().await.unwrap();
        for minute in (0..60).step_by(7 + n) {
            let at = Utc::now() - TimeDelta::minutes(minute as i64);
            let outcome = if name == "failing-brand" && minute < 30 {
                Outcome::TransientError
            } else {
                Outcome::Refreshed
            };
            let attempt = NewAttempt {
                trigger: Trigger::Scheduled,
                started_at: at - TimeDelta::milliseconds(180),
                finished_at: at,
                outcome,
                http_status: Some(if outcome == Outcome::Refreshed {
                    200
                } else {
                    503
                }),
                provider_error_code: None,
                message: (outcome == Outcome::TransientError)
                    .then(|| "platform unavailable".to_owned()),
            };
            attempts::insert(&mut conn, &id, provider, &attempt)
                .await
                .unwrap();
        }
    }
    let gates = Arc::new(ProviderGates::from_settings(&env.settings));
    gates.record(
        Provider::Pinterest,
        Outcome::RateLimited,
        Some(Duration::from_secs(900)),
    );
    let mut seen = None;
    gate::share_once(&gates, env.pool(), "worker-1", &mut seen)
        .await
        .unwrap();
    failing.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operator_goes_from_the_overview_to_a_failing_account_and_refreshes_it() {
    let console = Console::with(|s| s.console.cookie_secure = false).await;
    let failing = seed_world(&console).await;
    let driver = start_driver().await;
    let client = browser(&driver).await;
    let origin = &console.origin;

    // Not signed in: the console sends the browser to its sign-in form.
    client.goto(&format!("{origin}/console/")).await.unwrap();
    assert_eq!(
        client.current_url().await.unwrap().path(),
        "/console/sign-in"
    );
    assert_clean_console(&driver, &client, "sign-in").await;
    client
        .find(Locator::Css("#key"))
        .await
        .unwrap()
        .send_keys(ALICE_KEY)
        .await
        .unwrap();
    client
        .find(Locator::Css("form.stack button[type=submit]"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();

    // The overview.
    wait_for_heading(&client, "Overview").await;
    assert!(
        text_of(&client, "header.top .operator")
            .await
            .contains("alice")
    );
    assert_clean_console(&driver, &client, "overview").await;
    let overview = full_page_screenshot(&client, "overview.png").await;

    // Find the failing account by search.
    client
        .find(Locator::LinkText("Accounts"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    wait_for_heading(&client, "Accounts").await;
    client
        .find(Locator::Css("#q"))
        .await
        .unwrap()
        .send_keys("failing")
        .await
        .unwrap();
    client
        .find(Locator::Css("form.filters button[type=submit]"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    // The list before the search shows every account: wait for the
    // search's own page.
    for _ in 0..100 {
        if client
            .current_url()
            .await
            .unwrap()
            .query()
            .is_some_and(|q| q.contains("q=failing"))
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let link = client
        .wait()
        .at_most(Duration::from_secs(10))
        .for_element(Locator::LinkText("@failing-brand"))
        .await
        .expect("the search finds the failing account");
    assert_eq!(
        client
            .current_url()
            .await
            .unwrap()
            .query_pairs()
            .find(|(k, _)| k == "q")
            .unwrap()
            .1,
        "failing"
    );
    let rows = client
        .find_all(Locator::Css("main table tbody tr"))
        .await
        .unwrap();
    assert_eq!(rows.len(), 1, "one account matches");
    assert_clean_console(&driver, &client, "accounts").await;
    link.click().await.unwrap();

    // Its page says why it fails.
    wait_for_heading(&client, "@failing-brand").await;
    assert_eq!(
        client.current_url().await.unwrap().path(),
        format!("/console/accounts/{failing}")
    );
    let source = client.source().await.unwrap();
    assert!(
        source.contains("badge degraded") && source.contains("platform unavailable (HTTP 503)")
    );
    assert_clean_console(&driver, &client, "account").await;

    // Refresh now, and the new state.
    client
        .find(Locator::XPath("//button[text()='Refresh now']"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    let notice = text_of(&client, "div.notice[role=status]").await;
    assert!(notice.starts_with("Refresh now: refreshed"), "{notice}");
    let source = client.source().await.unwrap();
    assert!(
        source.contains("badge healthy"),
        "the account is healthy after the refresh"
    );
    assert_clean_console(&driver, &client, "account after refresh").await;
    let account = full_page_screenshot(&client, "account.png").await;

    // Sign out; the pages are closed again.
    client
        .find(Locator::Css("form.sign-out button"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    wait_for_heading(&client, "Sign in").await;
    client
        .goto(&format!("{origin}/console/accounts/{failing}"))
        .await
        .unwrap();
    assert_eq!(
        client.current_url().await.unwrap().path(),
        "/console/sign-in"
    );
    assert_clean_console(&driver, &client, "after sign-out").await;
    client.close().await.unwrap();

    for shot in [overview, account] {
        assert!(
            std::fs::metadata(&shot).unwrap().len() > 10_000,
            "{} is a real screenshot",
            shot.display()
        );
    }
}
