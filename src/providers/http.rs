//! The one HTTP client for provider calls: rustls, connect and total
//! timeouts, no redirects (a redirect could carry credentials elsewhere), and
//! a cap on how much of a response is read.

use std::time::Duration;

use chrono::Utc;
use reqwest::header::{HeaderMap, RETRY_AFTER};

use crate::config::HttpSettings;
use crate::providers::ProviderError;

#[derive(Clone)]
pub struct HttpClient {
    client: reqwest::Client,
    max_response_bytes: usize,
}

/// A response read in full (up to the cap).
#[derive(Debug)]
pub struct HttpReply {
    pub status: u16,
    pub headers: HeaderMap,
    pub body: Vec<u8>,
}

impl HttpReply {
    pub fn content_type(&self) -> &str {
        self.headers
            .get(reqwest::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    }

    /// `Retry-After` as delta-seconds or an HTTP date, capped (see
    /// `rate_limit::retry_after`).
    pub fn retry_after(&self) -> Option<Duration> {
        let value = self.headers.get(RETRY_AFTER)?.to_str().ok()?;
        crate::providers::rate_limit::retry_after(value, Utc::now())
    }
}

impl HttpClient {
    pub fn new(settings: &HttpSettings) -> Result<Self, reqwest::Error> {
        Self::build(settings, reqwest::Client::builder())
    }

    /// A client whose name resolution goes through `resolver` (hosts that
    /// users control are resolved by one that refuses private addresses).
    pub fn with_resolver(
        settings: &HttpSettings,
        resolver: impl reqwest::dns::Resolve + 'static,
    ) -> Result<Self, reqwest::Error> {
        Self::build(
            settings,
            // No proxy: a proxy would resolve the name itself, past the resolver.
            reqwest::Client::builder()
                .no_proxy()
                .dns_resolver(std::sync::Arc::new(resolver)),
        )
    }

    fn build(
        settings: &HttpSettings,
        builder: reqwest::ClientBuilder,
    ) -> Result<Self, reqwest::Error> {
        let client = builder
            .use_rustls_tls()
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(settings.connect_timeout)
            .timeout(settings.request_timeout)
            .user_agent(settings.user_agent.clone())
            .build()?;
        Ok(Self {
            client,
            max_response_bytes: settings.max_response_bytes,
        })
    }

    pub fn inner(&self) -> &reqwest::Client {
        &self.client
    }

    /// Sends the request and reads the body up to the cap. Transport failures
    /// come back as transient errors whose text never includes the URL (query
    /// strings can carry tokens on some platforms).
    pub async fn send(&self, request: reqwest::RequestBuilder) -> Result<HttpReply, ProviderError> {
        let mut response = request.send().await.map_err(transport_error)?;
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let cap = self.max_response_bytes;
        if response
            .content_length()
            .is_some_and(|len| len > cap as u64)
        {
            return Err(too_large(status, cap));
        }
        let mut body = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(transport_error)? {
            if body.len() + chunk.len() > cap {
                return Err(too_large(status, cap));
            }
            body.extend_from_slice(&chunk);
        }
        Ok(HttpReply {
            status,
            headers,
            body,
        })
    }
}

fn too_large(status: u16, cap: usize) -> ProviderError {
    ProviderError::transient(format!(
        "response body exceeds the {cap}-byte limit (http.max_response_bytes)"
    ))
    .with_status(status)
}

fn transport_error(error: reqwest::Error) -> ProviderError {
    let what = if error.is_timeout() {
        "request timed out"
    } else if error.is_connect() {
        "could not connect"
    } else if error.is_body() || error.is_decode() {
        "response body could not be read"
    } else {
        "request failed"
    };
    // The chain below the top error: reqwest's own text names the URL, which
    // may carry a token in its query string on some platforms.
    let mut detail = String::new();
    let mut source = std::error::Error::source(&error);
    while let Some(cause) = source {
        detail.push_str(": ");
        detail.push_str(&cause.to_string());
        source = cause.source();
    }
    ProviderError::transient(format!("{what}{detail}"))
}
