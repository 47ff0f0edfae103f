//! The LinkedIn member connector and LinkedIn refresh flow against an
//! authorization server written by others: node's `oidc-provider`, a
//! certified OpenID provider, serving LinkedIn's paths (`tests/oidc`). It
//! requires PKCE, authenticates the client with client_secret_post, and
//! rotates refresh tokens, refusing a used one.
//!
//! Needs Node.js and `npm ci` in tests/oidc (`scripts/services.sh` does
//! both). Without them the test fails under CI and is skipped, with a
//! notice, elsewhere.

#[path = "common/mod.rs"]
mod common;
#[path = "connect/support.rs"]
mod support;

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::Utc;
use reqwest::StatusCode;
use reqwest::header::{COOKIE, LOCATION, SET_COOKIE};
use serde_json::{Value, json};
use tokenwarden::config::{ClientAuth, Flow};
use tokenwarden::domain::{AccountStatus, Provider, Trigger};
use tokenwarden::queue::RefreshJob;
use tokenwarden::queue::worker::JobContext;
use tokenwarden::scheduler::Scheduler;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, ChildStdin, Command};
use url::Url;

use crate::support::{Connect, RETURN_URL};

const CLIENT_ID: &str = "tokenwarden-oidc-test";
const MEMBER: &str = "member-4711";

fn provider_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/oidc")
}

/// Why the provider cannot run here: a failure under CI, a notice elsewhere.
fn unavailable(why: &str) -> Option<NodeProvider> {
    let message = format!(
        "the oidc-provider test needs Node.js 20 or newer and `npm ci` in tests/oidc \
         (scripts/services.sh does both): {why}"
    );
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!("{message}");
    }
    eprintln!("NOTICE: skipped: {message}");
    None
}

async fn output(program: &str, args: &[&str], dir: &Path) -> Result<String, String> {
    let out = Command::new(program)
        .args(args)
        .current_dir(dir)
        .stdin(Stdio::null())
        .output()
        .await
        .map_err(|e| format!("`{program}` cannot be run: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "`{program} {}` failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

/// Node is there, new enough, and the provider's packages are installed
/// (installed here with `npm ci` when only they are missing).
async fn node_ready() -> Result<(), String> {
    let dir = provider_dir();
    let version = output("node", &["--version"], &dir).await?;
    let major: u32 = version
        .trim_start_matches('v')
        .split('.')
        .next()
        .and_then(|m| m.parse().ok())
        .ok_or_else(|| format!("node printed an unreadable version {version:?}"))?;
    if major < 20 {
        return Err(format!("node is {version}"));
    }
    if !dir.join("node_modules/oidc-provider/package.json").exists() {
        output("npm", &["ci", "--no-audit", "--no-fund"], &dir).await?;
    }
    Ok(())
}

/// `server.mjs`, running until dropped.
struct NodeProvider {
    issuer: Url,
    /// Closing it ends the server; `kill_on_drop` is the backstop.
    _stdin: ChildStdin,
    _child: Child,
    stderr: Arc<Mutex<String>>,
}

impl NodeProvider {
    async fn start(redirect_uri: &Url, client_secret: &str) -> Option<Self> {
        if let Err(why) = node_ready().await {
            return unavailable(&why);
        }
        let mut child = Command::new("node")
            .arg("server.mjs")
            .current_dir(provider_dir())
            .env("OIDC_CLIENT_ID", CLIENT_ID)
            .env("OIDC_CLIENT_SECRET", client_secret)
            .env("OIDC_REDIRECT_URI", redirect_uri.as_str())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("node starts");
        let stderr = Arc::new(Mutex::new(String::new()));
        keep_reading(child.stderr.take().unwrap(), stderr.clone());
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let ready = tokio::time::timeout(Duration::from_secs(30), lines.next_line()).await;
        let Ok(Ok(Some(line))) = ready else {
            tokio::time::sleep(Duration::from_millis(200)).await;
            panic!(
                "the provider did not start: {}",
                stderr.lock().unwrap().trim()
            );
        };
        // The provider logs notices on its standard output too: it is kept
        // read, or the next write fails and ends the provider.
        keep_reading(lines.into_inner(), stderr.clone());
        let ready: Value = serde_json::from_str(&line).expect("a JSON line");
        let issuer = Url::parse(ready["issuer"].as_str().unwrap()).unwrap();
        Some(Self {
            issuer,
            _stdin: child.stdin.take().unwrap(),
            _child: child,
            stderr,
        })
    }

    fn at(&self, path: &str) -> Url {
        self.issuer.join(path).unwrap()
    }
}

/// Appends what the provider writes to `log`, line by line, so a failure
/// can show it.
fn keep_reading(
    stream: impl tokio::io::AsyncRead + Unpin + Send + 'static,
    log: Arc<Mutex<String>>,
) {
    tokio::spawn(async move {
        let mut lines = BufReader::new(stream).lines();
        while let Ok(Some(line)) = lines.next_line().await {
            let mut log = log.lock().unwrap();
            log.push_str(&line);
            log.push('\n');
        }
    });
}

/// The user's browser at the provider: keeps its cookies (by path, as the
/// provider scopes them to one interaction), follows no redirect by itself.
struct Browser {
    client: reqwest::Client,
    cookies: Vec<(String, String, String)>,
    /// The provider's standard error, for a failure's message.
    log: Arc<Mutex<String>>,
}

impl Browser {
    fn new(log: Arc<Mutex<String>>) -> Self {
        Self {
            log,
            client: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .unwrap(),
            cookies: Vec::new(),
        }
    }

    async fn send(&mut self, request: reqwest::RequestBuilder, url: &Url) -> reqwest::Response {
        let sent: Vec<String> = self
            .cookies
            .iter()
            .filter(|(_, path, _)| url.path().starts_with(path.as_str()))
            .map(|(name, _, value)| format!("{name}={value}"))
            .collect();
        let request = if sent.is_empty() {
            request
        } else {
            request.header(COOKIE, sent.join("; "))
        };
        let response = match request.send().await {
            Ok(response) => response,
            Err(e) => {
                tokio::time::sleep(Duration::from_millis(300)).await;
                panic!(
                    "{url}: {e:?}; the provider said: {}",
                    self.log.lock().unwrap()
                );
            }
        };
        for header in response.headers().get_all(SET_COOKIE) {
            let text = header.to_str().unwrap();
            let mut parts = text.split(';').map(str::trim);
            let (name, value) = parts.next().unwrap().split_once('=').unwrap();
            let path = parts
                .find_map(|p| p.strip_prefix("path="))
                .unwrap_or("/")
                .to_owned();
            self.cookies.retain(|(n, p, _)| !(n == name && *p == path));
            let cleared = value.is_empty() || text.contains("expires=Thu, 01 Jan 1970");
            if !cleared {
                self.cookies.push((name.to_owned(), path, value.to_owned()));
            }
        }
        response
    }

    /// From the authorization URL through sign-in and consent to the
    /// redirect back to `callback`.
    async fn authorize(&mut self, start: &str, callback: &Url) -> Url {
        let mut url = Url::parse(start).unwrap();
        for _ in 0..16 {
            let response = self.send(self.client.get(url.clone()), &url).await;
            let response = if response.status() == StatusCode::OK {
                let page = response.text().await.unwrap();
                let (action, mut fields) = post_form(&page);
                if fields.iter().any(|(k, v)| k == "prompt" && v == "login") {
                    fields.push(("login".into(), MEMBER.into()));
                    fields.push(("password".into(), "any password".into()));
                }
                let target = url.join(&action).unwrap();
                self.send(self.client.post(target.clone()).form(&fields), &target)
                    .await
            } else {
                response
            };
            let status = response.status();
            let location = response.headers().get(LOCATION).cloned();
            let Some(location) = location else {
                panic!(
                    "{status} from the provider: {}",
                    response.text().await.unwrap_or_default()
                );
            };
            url = url.join(location.to_str().unwrap()).unwrap();
            if url.as_str().starts_with(callback.as_str()) {
                return url;
            }
        }
        panic!("the provider never sent the browser back");
    }
}

/// The page's POST form: its action and hidden fields.
fn post_form(page: &str) -> (String, Vec<(String, String)>) {
    let start = page
        .find("<form")
        .unwrap_or_else(|| panic!("no form in {page}"));
    let form = &page[start
        ..page[start..]
            .find("</form>")
            .map_or(page.len(), |e| start + e)];
    let attribute = |tag: &str, name: &str| {
        let key = format!("{name}=\"");
        let from = tag.find(&key)? + key.len();
        let to = tag[from..].find('"')? + from;
        Some(tag[from..to].replace("&amp;", "&").replace("&#x2F;", "/"))
    };
    let head = &form[..form.find('>').unwrap()];
    let action = attribute(head, "action").expect("a form action");
    let fields = form
        .split("<input")
        .skip(1)
        .map(|rest| &rest[..rest.find('>').unwrap_or(rest.len())])
        .filter(|tag| attribute(tag, "type").as_deref() == Some("hidden"))
        .filter_map(|tag| Some((attribute(tag, "name")?, attribute(tag, "value")?)))
        .collect();
    (action, fields)
}

async fn due_now(connect: &Connect, id: &tokenwarden::domain::AccountId) {
    sqlx::query(
        "UPDATE account_schedule SET next_attempt_at = now() - interval '1 second' \
         WHERE account_id = $1",
    )
    .bind(id.as_str())
    .execute(connect.env.pool())
    .await
    .unwrap();
}

#[tokio::test]
async fn a_linkedin_member_connects_and_refreshes_at_a_certified_openid_provider() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let callback = Url::parse(&format!(
        "http://{}/v1/connect/callback",
        listener.local_addr().unwrap()
    ))
    .unwrap();
    let client_secret = format!("secret-{:032x}", rand::random::<u128>());
    let Some(provider) = NodeProvider::start(&callback, &client_secret).await else {
        return;
    };
    let (authorize, token, api) = (
        provider.at("oauth/v2/authorization"),
        provider.at("oauth/v2/accessToken"),
        provider.at("/"),
    );
    let secret = client_secret.clone();
    let connect = Connect::start_on(listener, move |s| {
        let section = s.providers.get_mut(Provider::LinkedinPerson);
        section.flow = Flow::Linkedin;
        section.authorize_url = Some(authorize);
        section.token_url = Some(token);
        section.api_url = Some(api);
        section.client_id = Some(CLIENT_ID.into());
        section.client_secret = Some(secret.into());
        section.client_auth = ClientAuth::Body;
        section.connect_pkce = true;
        section.rotates_refresh_token = true;
    })
    .await;
    assert_eq!(connect.url("v1/connect/callback"), callback);

    let started = connect
        .begin(json!({
            "provider": "LINKEDIN_PERSON",
            "workspace_id": "ws-oidc",
            "redirect_after": RETURN_URL,
        }))
        .await;
    let back = Browser::new(provider.stderr.clone())
        .authorize(started["authorization_url"].as_str().unwrap(), &callback)
        .await;
    let landed = connect.callback(&back).await;
    let id = Connect::account_id(&landed);
    let row = connect.env.row(&id).await;
    assert_eq!(row.provider, Provider::LinkedinPerson);
    assert_eq!(row.external_id, MEMBER, "the userinfo sub");
    assert_eq!(row.display_name.as_deref(), Some("Member member-4711"));
    assert_eq!(
        row.avatar_url.as_deref(),
        Some(provider.at("avatars/member-4711.png").as_str())
    );
    assert_eq!(row.status, AccountStatus::Active);
    let expires_in = (row.token_expires_at.unwrap() - Utc::now()).num_seconds();
    assert!((3500..=3600).contains(&expires_in), "{expires_in}");
    let first_refresh = connect
        .env
        .stored_refresh_token(&id)
        .await
        .expect("a refresh token was issued");
    let first_access = connect.env.stored_access_token(&id).await;

    // The scheduler finds the account due and queues it; a worker refreshes.
    due_now(&connect, &id).await;
    let queue = format!("{{tw-test-{:08x}}}:refresh", rand::random::<u32>());
    let storage = tokenwarden::queue::connect(&connect.env.settings, &queue)
        .await
        .unwrap();
    let mut scheduler = Scheduler::new(
        &connect.env.settings,
        connect.env.pool().clone(),
        storage,
        "oidc-scheduler",
    );
    assert_eq!(scheduler.tick().await.unwrap().queued, 1);
    let claimed = connect.env.row(&id).await;
    let worker = JobContext {
        engine: connect.env.engine.clone(),
        gates: Arc::new(tokenwarden::gate::ProviderGates::from_settings(
            &connect.env.settings,
        )),
        pool: connect.env.pool().clone(),
        job_timeout: Duration::from_secs(20),
        refreshes: tokio_util::task::TaskTracker::new(),
    };
    worker
        .process(RefreshJob {
            account_id: id.clone(),
            provider: Provider::LinkedinPerson,
            trigger: Trigger::Scheduled,
            claim_id: claimed.claim_id.expect("claimed by the scheduler"),
            planned_at: Utc::now(),
        })
        .await;
    tokenwarden::queue::purge(&connect.env.settings, &queue)
        .await
        .unwrap();

    let (outcome, message): (String, Option<String>) = sqlx::query_as(
        "SELECT outcome, message FROM refresh_attempts WHERE account_id = $1 \
         ORDER BY id DESC LIMIT 1",
    )
    .bind(id.as_str())
    .fetch_one(connect.env.pool())
    .await
    .unwrap();
    assert_eq!(
        outcome,
        "refreshed",
        "{message:?}; provider said: {}",
        provider.stderr.lock().unwrap()
    );
    let row = connect.env.row(&id).await;
    assert_eq!(row.status, AccountStatus::Active);
    let rotated = connect.env.stored_refresh_token(&id).await.unwrap();
    assert_ne!(rotated, first_refresh, "the refresh token rotated");
    assert_ne!(connect.env.stored_access_token(&id).await, first_access);

    // The provider refuses the refresh token it replaced.
    let reuse = reqwest::Client::new()
        .post(provider.at("oauth/v2/accessToken"))
        .form(&[
            ("grant_type", "refresh_token"),
            ("refresh_token", first_refresh.as_str()),
            ("client_id", CLIENT_ID),
            ("client_secret", client_secret.as_str()),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(reuse.status(), StatusCode::BAD_REQUEST);
    let refused: Value = reuse.json().await.unwrap();
    assert_eq!(refused["error"], "invalid_grant", "{refused}");
}
