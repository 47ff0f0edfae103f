//! The generic RFC 6749 section 6 refresh: `POST grant_type=refresh_token`
//! with client authentication in a Basic header or in the form body.
//!
//! Talks HTTP through `HttpClient` rather than the oauth2 crate: that crate's
//! parser refuses documented variants (`expires_in` as a string), treats every
//! non-200 alike without exposing the status, and reads unbounded bodies;
//! all three matter for classifying answers correctly.

use base64::Engine as _;
use futures::FutureExt;
use futures::future::BoxFuture;
use secrecy::{ExposeSecret, SecretString};
use url::Url;

use crate::config::{ClientAuth, ProviderSettings};
use crate::domain::RefreshToken;
use crate::providers::token_response::{
    classify_oauth_error, json_object, oauth_error, parse_grant, short,
};
use crate::providers::{
    FailureKind, HttpClient, HttpReply, ProviderError, RefreshRequest, TokenGrant, TokenProvider,
};

pub struct OAuth2Refresh {
    token_url: Url,
    client_id: String,
    client_secret: Option<SecretString>,
    client_auth: ClientAuth,
    /// Platform-specific form fields sent with every refresh.
    extra_form: Vec<(&'static str, &'static str)>,
    http: HttpClient,
}

impl OAuth2Refresh {
    /// None when the platform has no client id configured.
    pub fn from_settings(settings: &ProviderSettings, http: HttpClient) -> Option<Self> {
        Some(Self {
            token_url: settings.token_url.clone()?,
            client_id: settings.client_id.clone()?,
            client_secret: settings.client_secret.clone(),
            client_auth: settings.client_auth,
            extra_form: Vec::new(),
            http,
        })
    }

    /// Adds a form field to every refresh request.
    pub(crate) fn with_form_field(mut self, name: &'static str, value: &'static str) -> Self {
        self.extra_form.push((name, value));
        self
    }

    /// Refreshes, letting a platform's own error rows (`classify`) speak
    /// before the generic RFC 6749 reading.
    pub(crate) async fn refresh_classified(
        &self,
        request: RefreshRequest<'_>,
        classify: fn(&HttpReply) -> Option<ProviderError>,
    ) -> Result<TokenGrant, ProviderError> {
        let refresh_token = request.refresh_token.ok_or_else(|| {
            ProviderError::new(FailureKind::RejectedExpired, "no refresh token is stored")
        })?;
        let reply = self.send(refresh_token).await?;
        if let Some(error) = classify(&reply) {
            return Err(error);
        }
        Self::interpret(&reply)
    }

    /// Sends the refresh request. The answer is left to the caller so that a
    /// platform flow can read its own error rows before the generic ones.
    pub(crate) async fn send(
        &self,
        refresh_token: &RefreshToken,
    ) -> Result<HttpReply, ProviderError> {
        let mut form: Vec<(&str, &str)> = vec![
            ("grant_type", "refresh_token"),
            ("refresh_token", refresh_token.expose()),
        ];
        form.extend(self.extra_form.iter().copied());
        let builder = with_client_auth(
            self.http.inner().post(self.token_url.clone()),
            &mut form,
            &self.client_id,
            self.client_secret.as_ref(),
            self.client_auth,
        );
        let builder = builder
            .header(reqwest::header::ACCEPT, "application/json")
            .form(&form);
        self.http.send(builder).await
    }

    /// The RFC 6749 reading of a token endpoint's answer.
    pub(crate) fn interpret(reply: &HttpReply) -> Result<TokenGrant, ProviderError> {
        let status = reply.status;

        if (200..300).contains(&status) {
            let body = json_object(reply)?;
            if oauth_error(&body).is_some() {
                // An error object in a 2xx answer is no shape RFC 6749
                // defines: the account's own oddity, kept verbatim.
                return Err(ProviderError::unrecognised(status, &reply.body));
            }
            return parse_grant(&body, status);
        }

        let retry_after = reply.retry_after();
        if status == 429 {
            return Err(ProviderError::new(
                FailureKind::RateLimited,
                "rate limited by the token endpoint",
            )
            .with_status(status)
            .with_retry_after(retry_after));
        }
        if status >= 500 || status == 408 {
            return Err(ProviderError::transient("token endpoint unavailable")
                .with_status(status)
                .with_retry_after(retry_after));
        }
        let parsed = json_object(reply).ok().and_then(|body| oauth_error(&body));
        let Some((code, description)) = parsed else {
            // A 4xx without an OAuth error body (a bare 401 included) names
            // no cause: it is this account's until several say otherwise.
            return Err(ProviderError::unrecognised(status, &reply.body));
        };
        let Some(kind) = classify_oauth_error(&code) else {
            return Err(ProviderError::unrecognised(status, &reply.body).with_code(short(&code)));
        };
        let message = if description.is_empty() {
            code.clone()
        } else {
            short(&description)
        };
        Err(ProviderError::new(kind, message)
            .with_status(status)
            .with_code(short(&code))
            .with_retry_after(retry_after))
    }
}

fn form_encode(value: &str) -> String {
    url::form_urlencoded::byte_serialize(value.as_bytes()).collect()
}

impl TokenProvider for OAuth2Refresh {
    fn refresh<'a>(
        &'a self,
        request: RefreshRequest<'a>,
    ) -> BoxFuture<'a, Result<TokenGrant, ProviderError>> {
        self.refresh_classified(request, |_| None).boxed()
    }
}

/// The Basic header's credentials: id and secret form-encoded, then base64
/// (RFC 6749 2.3.1). A secret in its own right: a platform that echoes the
/// header echoes the client secret in another spelling.
pub(crate) fn basic_credentials(client_id: &str, client_secret: Option<&SecretString>) -> String {
    let id = form_encode(client_id);
    let secret = client_secret
        .map(|s| form_encode(s.expose_secret()))
        .unwrap_or_default();
    base64::engine::general_purpose::STANDARD.encode(format!("{id}:{secret}"))
}

/// Authenticates the client as configured: RFC 6749 2.3.1 Basic header (id
/// and secret form-encoded before base64) or id and secret in the form body.
pub(crate) fn with_client_auth<'a>(
    builder: reqwest::RequestBuilder,
    form: &mut Vec<(&'a str, &'a str)>,
    client_id: &'a str,
    client_secret: Option<&'a SecretString>,
    auth: ClientAuth,
) -> reqwest::RequestBuilder {
    match auth {
        ClientAuth::Basic => builder.header(
            reqwest::header::AUTHORIZATION,
            format!("Basic {}", basic_credentials(client_id, client_secret)),
        ),
        ClientAuth::Body => {
            form.push(("client_id", client_id));
            if let Some(secret) = client_secret {
                form.push(("client_secret", secret.expose_secret()));
            }
            builder
        }
    }
}
