//! A form POST to the authorization server (PAR, token) with a DPoP proof,
//! and its nonce (RFC 9449 section 8): atproto servers demand one, answering
//! `use_dpop_nonce` with a `DPoP-Nonce` header, which costs one retry. The
//! server has not looked at the request then, so a code is not spent.

use url::Url;

use crate::providers::{DpopKey, HttpClient, HttpReply, ProviderError};
use crate::providers::{dpop_nonce, use_dpop_nonce};

/// The last answer, and the server's latest nonce (for the next request).
pub(super) struct Answered {
    pub reply: HttpReply,
    pub nonce: Option<String>,
}

pub(super) async fn post(
    http: &HttpClient,
    url: &Url,
    key: &DpopKey,
    form: &[(&str, &str)],
    nonce: Option<String>,
) -> Result<Answered, ProviderError> {
    let mut nonce = nonce;
    let mut reply = send(http, url, key, form, nonce.as_deref()).await?;
    nonce = dpop_nonce(&reply).or(nonce);
    if use_dpop_nonce(&reply) && dpop_nonce(&reply).is_some() {
        reply = send(http, url, key, form, nonce.as_deref()).await?;
        nonce = dpop_nonce(&reply).or(nonce);
    }
    if use_dpop_nonce(&reply) {
        return Err(ProviderError::transient(
            "the authorization server kept asking for a DPoP nonce",
        )
        .with_status(reply.status)
        .with_code("use_dpop_nonce"));
    }
    Ok(Answered { reply, nonce })
}

async fn send(
    http: &HttpClient,
    url: &Url,
    key: &DpopKey,
    form: &[(&str, &str)],
    nonce: Option<&str>,
) -> Result<HttpReply, ProviderError> {
    let proof = key.proof("POST", url, nonce, chrono::Utc::now().timestamp());
    let builder = http
        .inner()
        .post(url.clone())
        .header("DPoP", proof)
        .header(reqwest::header::ACCEPT, "application/json")
        .form(form);
    http.send(builder).await
}
