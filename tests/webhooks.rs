//! Webhook delivery: Standard Webhooks signatures checked by an independent
//! implementation (Python's hmac), retries until acknowledged, one stable id
//! per event, and exactly one delivery per change across two senders.

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::http::{HeaderMap, StatusCode};
use base64::Engine as _;
use common::{TestEnv, rotating};
use secrecy::SecretString;
use tokenwarden::config::WebhookSettings;
use tokenwarden::crypto::SigningKey;
use tokenwarden::domain::Provider;
use tokenwarden::webhooks::Dispatcher;

#[derive(Clone, Debug)]
struct Delivery {
    id: String,
    timestamp: String,
    signature: String,
    body: Vec<u8>,
}

/// A receiver that answers with the next scripted status (then 204).
#[derive(Clone, Default)]
struct Receiver {
    got: Arc<Mutex<Vec<Delivery>>>,
    answers: Arc<Mutex<Vec<StatusCode>>>,
}

impl Receiver {
    async fn start(&self) -> url::Url {
        let state = self.clone();
        let app = axum::Router::new().route(
            "/hook",
            axum::routing::post(move |headers: HeaderMap, body: axum::body::Bytes| {
                let state = state.clone();
                async move {
                    let header = |name: &str| {
                        headers
                            .get(name)
                            .and_then(|v| v.to_str().ok())
                            .unwrap_or("")
                            .to_owned()
                    };
                    state.got.lock().unwrap().push(Delivery {
                        id: header("webhook-id"),
                        timestamp: header("webhook-timestamp"),
                        signature: header("webhook-signature"),
                        body: body.to_vec(),
                    });
                    let mut answers = state.answers.lock().unwrap();
                    if answers.is_empty() {
                        StatusCode::NO_CONTENT
                    } else {
                        answers.remove(0)
                    }
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url =
            url::Url::parse(&format!("http://{}/hook", listener.local_addr().unwrap())).unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        url
    }

    fn deliveries(&self) -> Vec<Delivery> {
        self.got.lock().unwrap().clone()
    }
}

fn secret() -> String {
    format!(
        "whsec_{}",
        base64::engine::general_purpose::STANDARD.encode(rand::random::<[u8; 32]>())
    )
}

fn settings(url: url::Url, secret: &str) -> WebhookSettings {
    WebhookSettings {
        url: Some(url),
        secret: Some(SecretString::from(secret.to_owned())),
        retry_base: Duration::from_millis(200),
        retry_cap: Duration::from_millis(400),
        ..WebhookSettings::default()
    }
}

/// The Standard Webhooks check, written in Python from the specification:
/// base64 HMAC-SHA256 over "id.timestamp.body" with the decoded secret.
fn python_verifies(secret: &str, delivery: &Delivery) -> bool {
    let script = r#"
import base64, hashlib, hmac, sys
secret, msg_id, ts, sig = sys.argv[1:5]
body = sys.stdin.buffer.read()
key = base64.b64decode(secret.removeprefix("whsec_"))
expected = base64.b64encode(hmac.new(key, msg_id.encode() + b"." + ts.encode() + b"." + body, hashlib.sha256).digest()).decode()
ok = any(part.split(",", 1)[0] == "v1" and hmac.compare_digest(part.split(",", 1)[1], expected) for part in sig.split(" "))
sys.exit(0 if ok else 1)
"#;
    let mut child = std::process::Command::new("python3")
        .args([
            "-c",
            script,
            secret,
            &delivery.id,
            &delivery.timestamp,
            &delivery.signature,
        ])
        .stdin(std::process::Stdio::piped())
        .spawn()
        .expect("python3 runs");
    use std::io::Write;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(&delivery.body)
        .unwrap();
    child.wait().unwrap().success()
}

#[tokio::test]
async fn deliveries_are_signed_per_standard_webhooks() {
    let env = TestEnv::new().await;
    let receiver = Receiver::default();
    let url = receiver.start().await;
    let secret = secret();
    let (id, _) = env.connect(Provider::X, rotating()).await;
    let dispatcher = Dispatcher::from_settings(&settings(url, &secret), env.pool().clone())
        .unwrap()
        .unwrap();
    assert_eq!(dispatcher.deliver_due().await.unwrap(), 1);
    let got = receiver.deliveries();
    assert_eq!(got.len(), 1);
    let delivery = &got[0];
    assert!(
        python_verifies(&secret, delivery),
        "independent verification"
    );
    let payload: serde_json::Value = serde_json::from_slice(&delivery.body).unwrap();
    assert_eq!(payload["type"], "account.status_changed");
    assert_eq!(payload["data"]["account_id"], id.as_str());
    assert_eq!(payload["data"]["to_status"], "ACTIVE");
    assert_eq!(payload["data"]["event_id"], delivery.id.as_str());

    // The check does fail: another secret, or a changed body.
    assert!(!python_verifies(&self::secret(), delivery));
    let mut tampered = delivery.clone();
    tampered.body.push(b' ');
    assert!(!python_verifies(&secret, &tampered));

    assert_eq!(
        dispatcher.deliver_due().await.unwrap(),
        0,
        "acknowledged: never again"
    );
}

#[tokio::test]
async fn failed_deliveries_are_retried_with_the_same_id_until_acknowledged() {
    let env = TestEnv::new().await;
    let receiver = Receiver::default();
    receiver
        .answers
        .lock()
        .unwrap()
        .extend([StatusCode::INTERNAL_SERVER_ERROR, StatusCode::GONE]);
    let url = receiver.start().await;
    let secret = secret();
    env.connect(Provider::X, rotating()).await;
    let dispatcher = Dispatcher::from_settings(&settings(url, &secret), env.pool().clone())
        .unwrap()
        .unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while receiver.deliveries().len() < 3 && tokio::time::Instant::now() < deadline {
        dispatcher.deliver_due().await.unwrap();
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let got = receiver.deliveries();
    assert_eq!(got.len(), 3, "500, 410, then 204");
    assert!(got.iter().all(|d| d.id == got[0].id), "one idempotency id");
    assert!(got.iter().all(|d| python_verifies(&secret, d)));
    let (delivered, attempts): (bool, i32) =
        sqlx::query_as("SELECT delivered_at IS NOT NULL, delivery_attempts FROM account_events")
            .fetch_one(env.pool())
            .await
            .unwrap();
    assert!(delivered);
    assert_eq!(attempts, 3);
    tokio::time::sleep(Duration::from_millis(500)).await;
    dispatcher.deliver_due().await.unwrap();
    assert_eq!(
        receiver.deliveries().len(),
        3,
        "nothing after the acknowledgement"
    );
}

#[tokio::test]
async fn two_senders_deliver_each_change_once() {
    let env = TestEnv::new().await;
    let receiver = Receiver::default();
    let url = receiver.start().await;
    let secret = secret();
    for i in 0..40 {
        let tokens = env.fake.issue(rotating());
        let new = common::new_account(
            Provider::X,
            &format!("ext-{i}"),
            &tokens,
            chrono::Utc::now(),
            None,
        );
        let policy =
            tokenwarden::policy::RefreshPolicy::from(env.settings.providers.get(Provider::X));
        tokenwarden::store::accounts::register(env.pool(), &env.keyring, &policy, &new)
            .await
            .unwrap();
    }
    let a = Dispatcher::from_settings(&settings(url.clone(), &secret), env.pool().clone())
        .unwrap()
        .unwrap();
    let b = Dispatcher::from_settings(&settings(url, &secret), env.pool().clone())
        .unwrap()
        .unwrap();
    for _ in 0..5 {
        let (x, y) = tokio::join!(a.deliver_due(), b.deliver_due());
        x.unwrap();
        y.unwrap();
    }
    let ids: Vec<String> = receiver.deliveries().into_iter().map(|d| d.id).collect();
    let unique: std::collections::HashSet<&String> = ids.iter().collect();
    assert_eq!(ids.len(), 40);
    assert_eq!(unique.len(), 40);
}

#[test]
fn signing_secrets_are_checked_and_never_echoed() {
    assert!(
        SigningKey::parse("not-a-secret")
            .unwrap_err()
            .contains("whsec_")
    );
    let bad = SigningKey::parse("whsec_%%%canary%%%").unwrap_err();
    assert!(!bad.contains("canary"), "{bad}");
    let short = SigningKey::parse("whsec_c2hvcnQ=").unwrap_err();
    assert!(short.contains("24 to 64"), "{short}");
    let key = SigningKey::parse(&secret()).unwrap();
    assert_eq!(format!("{key:?}"), "SigningKey([redacted])");
}
