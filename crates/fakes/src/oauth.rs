//! A strict RFC 6749 token endpoint. Every path answers as a token endpoint,
//! so one server can stand in for several platforms (`/x/token`,
//! `/pinterest/token`, ...); paths ending in `/revoke` answer as an RFC 7009
//! revocation endpoint.

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use serde_json::json;
use tokio_util::sync::CancellationToken;
use url::Url;

/// How one token family (one connected account) behaves.
#[derive(Clone, Debug)]
pub struct FamilySpec {
    /// Each refresh returns a new refresh token and kills the old one.
    pub rotating: bool,
    /// Non-rotating servers may omit the refresh token (Google does).
    pub return_refresh_token: bool,
    /// `expires_in` of issued access tokens; None omits the field.
    pub access_lifetime: Option<u64>,
    /// The grant is revoked (by "the user") after this many refreshes.
    pub revoke_after: Option<u32>,
    /// The grant expires after this many refreshes.
    pub expire_after: Option<u32>,
    /// Every n-th refresh call of this family fails with a 503.
    pub fail_every: Option<u32>,
}

impl Default for FamilySpec {
    fn default() -> Self {
        Self {
            rotating: true,
            return_refresh_token: true,
            access_lifetime: Some(3600),
            revoke_after: None,
            expire_after: None,
            fail_every: None,
        }
    }
}

#[derive(Clone, Debug)]
pub struct IssuedTokens {
    pub access_token: String,
    pub refresh_token: String,
    pub expires_in: u64,
}

/// A canned answer for the next call, whatever it asks.
#[derive(Clone, Debug)]
pub struct ScriptedResponse {
    pub status: u16,
    pub content_type: &'static str,
    pub body: Vec<u8>,
    pub headers: Vec<(&'static str, String)>,
}

impl ScriptedResponse {
    pub fn json(status: u16, body: serde_json::Value) -> Self {
        Self {
            status,
            content_type: "application/json",
            body: body.to_string().into_bytes(),
            headers: vec![],
        }
    }

    pub fn raw(status: u16, content_type: &'static str, body: impl Into<Vec<u8>>) -> Self {
        Self {
            status,
            content_type,
            body: body.into(),
            headers: vec![],
        }
    }

    pub fn header(mut self, name: &'static str, value: impl Into<String>) -> Self {
        self.headers.push((name, value.into()));
        self
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ClientAuthSeen {
    Basic,
    Body,
    None,
}

#[derive(Clone, Debug)]
pub struct CallRecord {
    pub path: String,
    pub client_auth: ClientAuthSeen,
    pub at: Instant,
}

struct Family {
    spec: FamilySpec,
    revoked: bool,
    refreshes: u32,
    calls: u32,
    current_refresh: String,
}

#[derive(Default)]
struct Inner {
    families: Vec<Family>,
    /// refresh token -> (family, still valid)
    refresh_tokens: HashMap<String, (usize, bool)>,
    scripted: VecDeque<ScriptedResponse>,
    calls: Vec<CallRecord>,
    reuse_detected: u64,
}

struct Shared {
    client_id: String,
    client_secret: String,
    inner: Mutex<Inner>,
    /// Delay between changing state and answering: a client that dies in this
    /// window has lost the answer the server already acted on.
    answer_delay: Mutex<Duration>,
}

pub struct FakeOAuthServer {
    addr: SocketAddr,
    shared: Arc<Shared>,
    stop: CancellationToken,
}

impl Drop for FakeOAuthServer {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

impl FakeOAuthServer {
    /// Starts on an ephemeral loopback port.
    pub async fn start(client_id: &str, client_secret: &str) -> std::io::Result<Self> {
        let shared = Arc::new(Shared {
            client_id: client_id.to_owned(),
            client_secret: client_secret.to_owned(),
            inner: Mutex::new(Inner::default()),
            answer_delay: Mutex::new(Duration::ZERO),
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let app = Router::new()
            .fallback(token_endpoint)
            .with_state(shared.clone());
        let stop = CancellationToken::new();
        let stopped = stop.clone();
        tokio::spawn(async move {
            let _ = axum::serve(listener, app)
                .with_graceful_shutdown(stopped.cancelled_owned())
                .await;
        });
        Ok(Self { addr, shared, stop })
    }

    pub fn url(&self, path: &str) -> Url {
        Url::parse(&format!("http://{}{path}", self.addr)).expect("loopback URL parses")
    }

    /// Creates a token family, as if a user had just connected.
    pub fn issue(&self, spec: FamilySpec) -> IssuedTokens {
        let mut inner = self.lock();
        let family = inner.families.len();
        let refresh = new_token("rt", family);
        inner.refresh_tokens.insert(refresh.clone(), (family, true));
        let expires_in = spec.access_lifetime.unwrap_or(3600);
        inner.families.push(Family {
            spec,
            revoked: false,
            refreshes: 0,
            calls: 0,
            current_refresh: refresh.clone(),
        });
        IssuedTokens {
            access_token: new_token("at", family),
            refresh_token: refresh,
            expires_in,
        }
    }

    /// Queues a canned answer for the next call.
    pub fn script_next(&self, response: ScriptedResponse) {
        self.lock().scripted.push_back(response);
    }

    pub fn set_answer_delay(&self, delay: Duration) {
        *self
            .shared
            .answer_delay
            .lock()
            .expect("fake state poisoned") = delay;
    }

    /// Token endpoint calls so far.
    pub fn calls(&self) -> Vec<CallRecord> {
        self.lock().calls.clone()
    }

    pub fn call_count(&self) -> usize {
        self.lock().calls.len()
    }

    /// How often a spent refresh token was presented again.
    pub fn reuse_detected(&self) -> u64 {
        self.lock().reuse_detected
    }

    /// Whether this refresh token would be accepted now.
    pub fn is_live(&self, refresh_token: &str) -> bool {
        let inner = self.lock();
        match inner.refresh_tokens.get(refresh_token) {
            Some((family, valid)) => *valid && !inner.families[*family].revoked,
            None => false,
        }
    }

    /// Revokes the family of a refresh token, as a user removing the app would.
    pub fn revoke(&self, refresh_token: &str) {
        let mut inner = self.lock();
        if let Some((family, _)) = inner.refresh_tokens.get(refresh_token).copied() {
            inner.families[family].revoked = true;
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.shared.inner.lock().expect("fake state poisoned")
    }
}

fn new_token(kind: &str, family: usize) -> String {
    format!("{kind}_{family}_{:032x}", rand::random::<u128>())
}

fn oauth_error(status: StatusCode, code: &str, description: &str) -> Response {
    (
        status,
        axum::Json(json!({"error": code, "error_description": description})),
    )
        .into_response()
}

async fn token_endpoint(
    State(shared): State<Arc<Shared>>,
    uri: axum::http::Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let form: HashMap<String, String> = url::form_urlencoded::parse(&body).into_owned().collect();
    let (auth_seen, client_ok) = check_client(&shared, &headers, &form);
    let delay = *shared.answer_delay.lock().expect("fake state poisoned");
    let response = {
        let mut inner = shared.inner.lock().expect("fake state poisoned");
        inner.calls.push(CallRecord {
            path: uri.path().to_owned(),
            client_auth: auth_seen,
            at: Instant::now(),
        });
        if let Some(scripted) = inner.scripted.pop_front() {
            scripted.into_response()
        } else if !client_ok {
            oauth_error(
                StatusCode::UNAUTHORIZED,
                "invalid_client",
                "Client authentication failed",
            )
        } else if uri.path().ends_with("/revoke") {
            // RFC 7009: revoking a refresh token ends its family; unknown
            // tokens are answered 200 too.
            let token = form.get("token").map(String::as_str).unwrap_or("");
            if let Some((family, _)) = inner.refresh_tokens.get(token).copied() {
                inner.families[family].revoked = true;
            }
            StatusCode::OK.into_response()
        } else if form.get("grant_type").map(String::as_str) != Some("refresh_token") {
            oauth_error(
                StatusCode::BAD_REQUEST,
                "unsupported_grant_type",
                "grant_type must be refresh_token",
            )
        } else {
            refresh(
                &mut inner,
                form.get("refresh_token").map(String::as_str).unwrap_or(""),
            )
        }
    };
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    response
}

fn check_client(
    shared: &Shared,
    headers: &HeaderMap,
    form: &HashMap<String, String>,
) -> (ClientAuthSeen, bool) {
    if let Some(value) = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        && let Some(encoded) = value.strip_prefix("Basic ")
    {
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(encoded)
            .ok()
            .and_then(|d| String::from_utf8(d).ok())
            .unwrap_or_default();
        let (id, secret) = decoded.split_once(':').unwrap_or(("", ""));
        let decode = |s: &str| {
            url::form_urlencoded::parse(format!("v={s}").as_bytes())
                .next()
                .map(|(_, v)| v.into_owned())
        };
        let ok = decode(id).as_deref() == Some(&shared.client_id)
            && decode(secret).as_deref() == Some(&shared.client_secret);
        return (ClientAuthSeen::Basic, ok);
    }
    match (form.get("client_id"), form.get("client_secret")) {
        (Some(id), Some(secret)) => (
            ClientAuthSeen::Body,
            *id == shared.client_id && *secret == shared.client_secret,
        ),
        _ => (ClientAuthSeen::None, false),
    }
}

fn refresh(inner: &mut Inner, presented: &str) -> Response {
    let Some((family_index, valid)) = inner.refresh_tokens.get(presented).copied() else {
        return oauth_error(
            StatusCode::BAD_REQUEST,
            "invalid_grant",
            "Invalid refresh token",
        );
    };
    let family = &mut inner.families[family_index];
    family.calls += 1;
    if family.revoked {
        return oauth_error(
            StatusCode::BAD_REQUEST,
            "invalid_grant",
            "Token has been revoked",
        );
    }
    if !valid {
        // Reuse of a spent token: treat the family as stolen.
        family.revoked = true;
        inner.reuse_detected += 1;
        return oauth_error(
            StatusCode::BAD_REQUEST,
            "invalid_grant",
            "Refresh token reused; token family revoked",
        );
    }
    if family
        .spec
        .fail_every
        .is_some_and(|n| n > 0 && family.calls.is_multiple_of(n))
    {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            [(header::RETRY_AFTER, "2")],
            "upstream unavailable",
        )
            .into_response();
    }
    if family
        .spec
        .revoke_after
        .is_some_and(|n| family.refreshes >= n)
    {
        family.revoked = true;
        return oauth_error(
            StatusCode::BAD_REQUEST,
            "invalid_grant",
            "Token has been revoked",
        );
    }
    if family
        .spec
        .expire_after
        .is_some_and(|n| family.refreshes >= n)
    {
        family.revoked = true;
        return oauth_error(
            StatusCode::BAD_REQUEST,
            "invalid_grant",
            "Token has been expired",
        );
    }
    family.refreshes += 1;
    let spec = family.spec.clone();
    let mut body = json!({
        "access_token": new_token("at", family_index),
        "token_type": "bearer",
        "scope": "read write offline.access",
    });
    if let Some(lifetime) = spec.access_lifetime {
        body["expires_in"] = json!(lifetime);
    }
    if spec.rotating {
        let next = new_token("rt", family_index);
        inner
            .refresh_tokens
            .insert(presented.to_owned(), (family_index, false));
        inner
            .refresh_tokens
            .insert(next.clone(), (family_index, true));
        inner.families[family_index].current_refresh = next.clone();
        body["refresh_token"] = json!(next);
    } else if spec.return_refresh_token {
        body["refresh_token"] = json!(presented);
    }
    axum::Json(body).into_response()
}
