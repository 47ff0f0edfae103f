//! What every platform fake shares: a loopback listener that stops when the
//! fake is dropped, and a queue of canned answers for rows a strict server
//! cannot reach on its own (rate limits, throttling).

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use axum::Router;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use tokio_util::sync::CancellationToken;
use url::Url;

use super::ScriptedResponse;

/// A running fake; the server stops when this drops.
pub struct Running {
    pub addr: SocketAddr,
    stop: CancellationToken,
}

impl Drop for Running {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

impl Running {
    pub async fn start(app: Router) -> std::io::Result<Self> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let stop = CancellationToken::new();
        let stopped = stop.clone();
        tokio::spawn(async move {
            let _ = axum::serve(listener, app)
                .with_graceful_shutdown(stopped.cancelled_owned())
                .await;
        });
        Ok(Self { addr, stop })
    }

    pub fn url(&self, path: &str) -> Url {
        Url::parse(&format!("http://{}{path}", self.addr)).expect("loopback URL parses")
    }
}

/// Canned answers, served before the fake's own logic. Every route asks it
/// first, so it also counts every request the fake receives.
#[derive(Default)]
pub struct Script {
    queue: Mutex<VecDeque<ScriptedResponse>>,
    requests: AtomicU64,
}

impl Script {
    pub fn push(&self, response: ScriptedResponse) {
        self.queue
            .lock()
            .expect("script poisoned")
            .push_back(response);
    }

    pub fn next(&self) -> Option<Response> {
        self.requests.fetch_add(1, Ordering::SeqCst);
        let scripted = self.queue.lock().expect("script poisoned").pop_front()?;
        Some(scripted.into_response())
    }

    pub fn requests(&self) -> u64 {
        self.requests.load(Ordering::SeqCst)
    }
}

impl IntoResponse for ScriptedResponse {
    fn into_response(self) -> Response {
        let scripted = self;
        let mut response = (
            StatusCode::from_u16(scripted.status).unwrap_or(StatusCode::OK),
            scripted.body,
        )
            .into_response();
        response.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static(scripted.content_type),
        );
        for (name, value) in scripted.headers {
            if let Ok(value) = HeaderValue::from_str(&value) {
                response.headers_mut().insert(name, value);
            }
        }
        response
    }
}

pub fn token(kind: &str) -> String {
    format!("{kind}_{:032x}", rand::random::<u128>())
}

/// The token of an `Authorization: Bearer` header, if any.
pub fn bearer(headers: &axum::http::HeaderMap) -> Option<&str> {
    headers
        .get(header::AUTHORIZATION)?
        .to_str()
        .ok()?
        .strip_prefix("Bearer ")
}
