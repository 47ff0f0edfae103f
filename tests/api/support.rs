//! The API under test: a server on a loopback port over a test's own world
//! (`TestEnv`), a client holding a valid key, and the request bodies and
//! error shapes the tests share.

use std::time::Duration;

use reqwest::StatusCode;
use secrecy::SecretString;
use serde_json::{Value, json};
use tokenwarden::api::{self, ApiState};
use tokenwarden::config::Settings;
use tokenwarden::domain::{AccountId, Provider};
use tokenwarden_fakes::IssuedTokens;
use tokio_util::sync::CancellationToken;

use crate::common::{self, TestEnv, rotating};

pub const KEY: &str = "test-api-key-0123456789";
pub const OLD_KEY: &str = "old-api-key-9876543210";

pub struct Api {
    pub env: TestEnv,
    pub base: String,
    pub http: reqwest::Client,
    stop: CancellationToken,
}

impl Drop for Api {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

pub fn api_settings(settings: &mut Settings) {
    settings.api.keys = Some(SecretString::from(format!("{KEY}, {OLD_KEY}")));
    settings.api.force_refresh_min_interval = Duration::from_secs(30);
    settings.redis.url = Some(SecretString::from(common::redis_url()));
    // Never the real platform's revocation endpoint from a test.
    settings.providers.get_mut(Provider::X).revoke_url = None;
}

impl Api {
    pub async fn start() -> Self {
        Self::with(|_| {}).await
    }

    pub async fn with(tweak: impl FnOnce(&mut Settings)) -> Self {
        let env = TestEnv::with(|s| {
            api_settings(s);
            tweak(s);
        })
        .await;
        let state = ApiState::new(&env.settings, env.engine.clone()).unwrap();
        let app = api::router(state, env.settings.api.max_body_bytes, true);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let stop = CancellationToken::new();
        let stopped = stop.clone();
        let limits = api::server::ConnectionLimits::from(&env.settings.api);
        tokio::spawn(async move {
            api::server::serve(listener, app, limits, stopped)
                .await
                .unwrap();
        });
        Self {
            env,
            base,
            http: reqwest::Client::new(),
            stop,
        }
    }

    /// Another server over the same database, with an engine of its own
    /// built from `settings`: another replica. Its base URL.
    pub async fn second_server(&self, settings: &Settings, owner: &str) -> String {
        let engine = common::engine_for(self.env.pool(), settings, self.env.keyring.clone(), owner);
        let state = ApiState::new(settings, engine).unwrap();
        let app = api::router(state, settings.api.max_body_bytes, true);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        base
    }

    /// The server's `host:port`, for raw TCP.
    pub fn address(&self) -> String {
        self.base.trim_start_matches("http://").to_owned()
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// A GET with no credential at all.
    pub async fn fetch_without_key(&self, path: &str) -> reqwest::Response {
        self.http.get(self.url(path)).send().await.unwrap()
    }

    pub fn get(&self, path: &str) -> reqwest::RequestBuilder {
        self.http.get(self.url(path)).bearer_auth(KEY)
    }

    pub fn post(&self, path: &str) -> reqwest::RequestBuilder {
        self.http.post(self.url(path)).bearer_auth(KEY)
    }

    pub fn delete(&self, path: &str) -> reqwest::RequestBuilder {
        self.http.delete(self.url(path)).bearer_auth(KEY)
    }

    pub async fn fetch(&self, path: &str) -> reqwest::Response {
        self.get(path).send().await.unwrap()
    }

    pub async fn get_json(&self, path: &str) -> Value {
        self.fetch(path).await.json().await.unwrap()
    }

    pub async fn remove(&self, path: &str) -> reqwest::Response {
        self.delete(path).send().await.unwrap()
    }

    pub async fn force_refresh(&self, id: &AccountId) -> reqwest::Response {
        self.post(&format!("/v1/accounts/{id}/refresh"))
            .send()
            .await
            .unwrap()
    }

    /// `POST /v1/accounts` with `body`, whatever the answer.
    pub async fn post_account(&self, body: &Value) -> reqwest::Response {
        self.post("/v1/accounts").json(body).send().await.unwrap()
    }

    /// Registers an X account through the API with tokens the fake issued.
    pub async fn register_x(
        &self,
        external_id: &str,
        tokens: &IssuedTokens,
        expires_in: i64,
    ) -> Value {
        let reply = self
            .post_account(&spec(external_id, tokens, expires_in))
            .await;
        assert_eq!(reply.status(), StatusCode::CREATED);
        reply.json().await.unwrap()
    }

    /// Registers an X account whose new rotating tokens expire in
    /// `expires_in` seconds; its id and tokens.
    pub async fn connect_x(&self, external_id: &str, expires_in: i64) -> (AccountId, IssuedTokens) {
        let tokens = self.env.fake.issue(rotating());
        let id = id_of(&self.register_x(external_id, &tokens, expires_in).await);
        (id, tokens)
    }
}

/// A valid registration body for an X account.
pub fn spec(external_id: &str, tokens: &IssuedTokens, expires_in: i64) -> Value {
    json!({
        "workspace_id": "ws_1",
        "provider": "X",
        "external_id": external_id,
        "handle": format!("@{external_id}"),
        "display_name": format!("Display {external_id}"),
        "scopes": ["tweet.read", "tweet.write", "offline.access"],
        "credentials": {
            "access_token": tokens.access_token,
            "refresh_token": tokens.refresh_token,
            "expires_in": expires_in,
        }
    })
}

/// An error reply's status and body, checking the body has the shape every
/// error shares.
pub async fn error_of(reply: reqwest::Response) -> (StatusCode, Value) {
    let status = reply.status();
    let body: Value = reply.json().await.expect("errors are JSON");
    assert!(
        body["error"]["code"].is_string() && body["error"]["message"].is_string(),
        "error shape: {body}"
    );
    (status, body)
}

pub fn id_of(view: &Value) -> AccountId {
    view["id"].as_str().unwrap().parse().unwrap()
}

/// A change to a registration body.
pub type Edit<'a> = Box<dyn Fn(&mut Value) + 'a>;

pub async fn count_accounts(api: &Api) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM social_accounts")
        .fetch_one(api.env.pool())
        .await
        .unwrap()
}
