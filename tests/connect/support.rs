//! The daemon's API on a loopback port with the connect flow on: its public
//! URL is the server itself, and a finished flow may return the browser to
//! `RETURN_URL` only. The browser is simulated hop by hop (no redirect is
//! followed automatically), so every Location can be checked.
//!
//! Shared by the connect tests and the canary binaries; each uses a part.
#![allow(dead_code)]

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use reqwest::StatusCode;
use reqwest::header::LOCATION;
use secrecy::SecretString;
use serde_json::Value;
use sha2::{Digest, Sha256};
use tokenwarden::api;
use tokenwarden::api::ApiState;
use tokenwarden::config::Settings;
use tokenwarden::domain::AccountId;
use tokio_util::sync::CancellationToken;
use url::Url;

use crate::common::{self, TestEnv};

pub const KEY: &str = "connect-test-api-key-0123";
pub const RETURN_URL: &str = "https://app.example/connected";

pub struct Connect {
    pub env: TestEnv,
    pub base: Url,
    /// Sends the API key; follows no redirect.
    pub api: reqwest::Client,
    /// The user's browser: no API key, follows no redirect.
    pub browser: reqwest::Client,
    stop: CancellationToken,
}

impl Drop for Connect {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

impl Connect {
    pub async fn start(tweak: impl FnOnce(&mut Settings)) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        Self::start_on(listener, tweak).await
    }

    /// On a listener bound beforehand: for an authorization server that must
    /// know the callback before the settings can name the server.
    pub async fn start_on(
        listener: tokio::net::TcpListener,
        tweak: impl FnOnce(&mut Settings),
    ) -> Self {
        let base = Url::parse(&format!("http://{}/", listener.local_addr().unwrap())).unwrap();
        let public = base.clone();
        let env = TestEnv::with(|s| {
            s.api.keys = Some(SecretString::from(KEY));
            s.redis.url = Some(SecretString::from(common::redis_url()));
            s.connect.public_url = Some(public);
            s.connect.allowed_redirects = vec![Url::parse(RETURN_URL).unwrap()];
            for provider in tokenwarden::domain::Provider::ALL {
                // Never a real platform's revocation endpoint from a test.
                s.providers.get_mut(*provider).revoke_url = None;
            }
            tweak(s);
        })
        .await;
        let state = ApiState::new(&env.settings, env.engine.clone()).unwrap();
        let app = api::router(state, env.settings.api.max_body_bytes, true);
        let stop = CancellationToken::new();
        let limits = api::server::ConnectionLimits::from(&env.settings.api);
        let stopped = stop.clone();
        tokio::spawn(async move {
            api::server::serve(listener, app, limits, stopped)
                .await
                .unwrap();
        });
        let mut headers = reqwest::header::HeaderMap::new();
        headers.insert(
            reqwest::header::AUTHORIZATION,
            format!("Bearer {KEY}").parse().unwrap(),
        );
        let no_redirects =
            || reqwest::Client::builder().redirect(reqwest::redirect::Policy::none());
        Self {
            env,
            base,
            api: no_redirects().default_headers(headers).build().unwrap(),
            browser: no_redirects().build().unwrap(),
            stop,
        }
    }

    pub fn url(&self, path: &str) -> Url {
        self.base.join(path.trim_start_matches('/')).unwrap()
    }

    /// `POST /v1/connect`, as sent.
    pub async fn begin_raw(&self, body: Value) -> reqwest::Response {
        self.api
            .post(self.url("v1/connect"))
            .json(&body)
            .send()
            .await
            .unwrap()
    }

    /// `POST /v1/connect`, which must answer 201; its JSON.
    pub async fn begin(&self, body: Value) -> Value {
        let response = self.begin_raw(body).await;
        let status = response.status();
        let json: Value = response.json().await.unwrap();
        assert_eq!(status, StatusCode::CREATED, "{json}");
        json
    }

    /// The browser GETs `url` and must be redirected; the Location.
    pub async fn browse(&self, url: &str) -> Url {
        let response = self.browser.get(url).send().await.unwrap();
        let status = response.status();
        let location = response
            .headers()
            .get(LOCATION)
            .map(|v| v.to_str().unwrap().to_owned());
        let body = response.text().await.unwrap_or_default();
        assert!(status.is_redirection(), "{status} from {url}: {body}");
        Url::parse(&location.expect("a redirect has a Location")).unwrap()
    }

    /// The browser arrives at the daemon's callback: 303 to `RETURN_URL`.
    pub async fn callback(&self, url: &Url) -> Url {
        assert!(
            url.as_str()
                .starts_with(self.url("v1/connect/callback").as_str()),
            "the platform sent the browser elsewhere: {url}"
        );
        let response = self.browser.get(url.clone()).send().await.unwrap();
        let status = response.status();
        let location = response
            .headers()
            .get(LOCATION)
            .map(|v| v.to_str().unwrap().to_owned());
        let body = response.text().await.unwrap_or_default();
        assert_eq!(status, StatusCode::SEE_OTHER, "{body}");
        let location = Url::parse(&location.unwrap()).unwrap();
        assert!(location.as_str().starts_with(RETURN_URL), "{location}");
        location
    }

    /// Starts a flow for `body` and takes the browser through the
    /// platform's consent: the started flow, and where the platform sends
    /// the browser back to.
    pub async fn consent(&self, body: Value) -> (Value, Url) {
        let started = self.begin(body).await;
        let back = self
            .browse(started["authorization_url"].as_str().unwrap())
            .await;
        (started, back)
    }

    /// The whole dance for `body`: start, consent, callback. The Location
    /// the browser ends at.
    pub async fn connect(&self, body: Value) -> Url {
        let (_, back) = self.consent(body).await;
        self.callback(&back).await
    }

    /// `POST /v1/connect/exchange` with the state and code the platform
    /// sent the browser back with: the API tier's form of the callback.
    pub async fn exchange(&self, back: &Url) -> reqwest::Response {
        self.api
            .post(self.url("v1/connect/exchange"))
            .json(&serde_json::json!({
                "state": query(back, "state").unwrap(),
                "code": query(back, "code").unwrap(),
            }))
            .send()
            .await
            .unwrap()
    }

    /// The one account a finished flow names.
    pub fn account_id(location: &Url) -> AccountId {
        let ids: Vec<String> = query_all(location, "account_id");
        assert_eq!(ids.len(), 1, "{location}");
        ids[0].parse().unwrap()
    }
}

pub fn query(url: &Url, key: &str) -> Option<String> {
    url.query_pairs()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.into_owned())
}

pub fn query_all(url: &Url, key: &str) -> Vec<String> {
    url.query_pairs()
        .filter(|(k, _)| k == key)
        .map(|(_, v)| v.into_owned())
        .collect()
}

/// Every 43-character base64url word in `text` whose S256 is one of the
/// challenges: a leaked PKCE verifier.
pub fn verifiers_in(text: &str, challenges: &[String]) -> Vec<String> {
    text.split(|c: char| !(c.is_ascii_alphanumeric() || c == '-' || c == '_'))
        .filter(|word| word.len() == 43)
        .filter(|word| {
            challenges.contains(&URL_SAFE_NO_PAD.encode(Sha256::digest(word.as_bytes())))
        })
        .map(str::to_owned)
        .collect()
}
