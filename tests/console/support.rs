//! The console under test: the API's router with the console beside it (as
//! the daemon serves them) on a loopback port over a test's own world, and
//! a client that signs in and carries its cookies and CSRF token by hand.

use reqwest::StatusCode;
use reqwest::header::{COOKIE, HeaderMap, LOCATION, SET_COOKIE};
use secrecy::SecretString;
use tokenwarden::api::{self, ApiState};
use tokenwarden::config::Settings;
use tokenwarden::console::{self, ConsoleState};
use tokenwarden::domain::Provider;
use tokio_util::sync::CancellationToken;

use crate::common::{self, TestEnv};

pub const ALICE_KEY: &str = "alice-operator-key-0123456789";
pub const BOB_KEY: &str = "bob-operator-key-9876543210";
pub const API_KEY: &str = "test-api-key-0123456789";

pub struct Console {
    pub env: TestEnv,
    /// `http://127.0.0.1:port`
    pub origin: String,
    pub http: reqwest::Client,
    stop: CancellationToken,
}

impl Drop for Console {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

/// A signed-in client: the session cookie and the page's CSRF token.
#[derive(Clone)]
pub struct Session {
    pub cookie: String,
    pub csrf: String,
}

pub struct Page {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: String,
}

impl Page {
    pub fn location(&self) -> &str {
        self.headers
            .get(LOCATION)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    }
}

pub fn console_settings(settings: &mut Settings) {
    settings.api.keys = Some(SecretString::from(API_KEY));
    settings.console.operator_keys = Some(SecretString::from(format!(
        "alice:{ALICE_KEY}, bob:{BOB_KEY}"
    )));
    settings.redis.url = Some(SecretString::from(common::redis_url()));
    settings.providers.get_mut(Provider::X).revoke_url = None;
}

/// The `name="csrf"` value in a page.
pub fn csrf_of(html: &str) -> Option<String> {
    let at = html.find("name=\"csrf\" value=\"")? + "name=\"csrf\" value=\"".len();
    Some(html[at..].split('"').next()?.to_owned())
}

/// The value a `Set-Cookie` header gives cookie `name`, with its attributes.
pub fn set_cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(SET_COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|v| v.starts_with(&format!("{name}=")))
}

pub fn cookie_value(set_cookie: &str) -> &str {
    set_cookie
        .split(';')
        .next()
        .and_then(|pair| pair.split_once('='))
        .map(|(_, v)| v)
        .unwrap_or("")
}

impl Console {
    pub async fn start() -> Self {
        Self::with(|_| {}).await
    }

    pub async fn with(tweak: impl FnOnce(&mut Settings)) -> Self {
        let env = TestEnv::with(|s| {
            console_settings(s);
            tweak(s);
        })
        .await;
        let state = ApiState::new(&env.settings, env.engine.clone()).unwrap();
        let mut app = api::router(state, env.settings.api.max_body_bytes, true);
        if let Some(console) = ConsoleState::new(&env.settings, env.engine.clone()) {
            app = app.merge(console::router(console));
        }
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let origin = format!("http://{}", listener.local_addr().unwrap());
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
            origin,
            http: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .unwrap(),
            stop,
        }
    }

    /// A console path (`/accounts`) as a full URL.
    pub fn url(&self, path: &str) -> String {
        format!("{}/console{path}", self.origin)
    }

    async fn page(response: reqwest::Response) -> Page {
        Page {
            status: response.status(),
            headers: response.headers().clone(),
            body: response.text().await.unwrap(),
        }
    }

    pub async fn get(&self, session: Option<&Session>, path: &str) -> Page {
        let mut request = self.http.get(self.url(path));
        if let Some(session) = session {
            request = request.header(COOKIE, &session.cookie);
        }
        Self::page(request.send().await.unwrap()).await
    }

    /// A form POST; the session's CSRF token is added unless `fields`
    /// already names one.
    pub async fn post(
        &self,
        session: Option<&Session>,
        path: &str,
        fields: &[(&str, &str)],
    ) -> Page {
        let mut form: Vec<(String, String)> = fields
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        let mut request = self.http.post(self.url(path));
        if let Some(session) = session {
            request = request.header(COOKIE, &session.cookie);
            if !fields.iter().any(|(k, _)| *k == "csrf") {
                form.push(("csrf".into(), session.csrf.clone()));
            }
        }
        Self::page(request.form(&form).send().await.unwrap()).await
    }

    /// The sign-in form's nonce cookie and CSRF token.
    pub async fn sign_in_form(&self) -> (String, String) {
        let form = self.get(None, "/sign-in").await;
        assert_eq!(form.status, StatusCode::OK);
        let nonce = cookie_value(set_cookie(&form.headers, "tw_console_signin").unwrap());
        (
            format!("tw_console_signin={nonce}"),
            csrf_of(&form.body).unwrap(),
        )
    }

    /// Posts `key` to the sign-in form, as a browser would.
    pub async fn try_sign_in(&self, key: &str) -> Page {
        let (cookie, csrf) = self.sign_in_form().await;
        let response = self
            .http
            .post(self.url("/sign-in"))
            .header(COOKIE, cookie)
            .form(&[("csrf", csrf.as_str()), ("key", key), ("next", "/console/")])
            .send()
            .await
            .unwrap();
        Self::page(response).await
    }

    pub async fn sign_in(&self, key: &str) -> Session {
        let answer = self.try_sign_in(key).await;
        assert_eq!(answer.status, StatusCode::SEE_OTHER, "{}", answer.body);
        let value = cookie_value(set_cookie(&answer.headers, "tw_console").unwrap());
        let cookie = format!("tw_console={value}");
        let overview = self
            .get(
                Some(&Session {
                    cookie: cookie.clone(),
                    csrf: String::new(),
                }),
                "/",
            )
            .await;
        assert_eq!(overview.status, StatusCode::OK);
        Session {
            cookie,
            csrf: csrf_of(&overview.body).unwrap(),
        }
    }
}
