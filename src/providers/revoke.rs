//! RFC 7009 token revocation, used when an account is disconnected: POST
//! `token` (and `token_type_hint`) to the platform's revocation endpoint
//! with the client authenticated as for refreshes.

use secrecy::SecretString;
use url::Url;

use crate::config::{ClientAuth, ProviderSettings};
use crate::providers::oauth2_refresh::with_client_auth;
use crate::providers::{FailureKind, HttpClient, ProviderError};

pub struct Revoker {
    url: Url,
    client_id: String,
    client_secret: Option<SecretString>,
    client_auth: ClientAuth,
    http: HttpClient,
}

impl Revoker {
    /// None unless the platform has a revocation endpoint and a client id.
    pub fn from_settings(settings: &ProviderSettings, http: HttpClient) -> Option<Self> {
        Some(Self {
            url: settings.revoke_url.clone()?,
            client_id: settings.client_id.clone()?,
            client_secret: settings.client_secret.clone(),
            client_auth: settings.client_auth,
            http,
        })
    }

    /// Revoking a refresh token ends the whole grant (RFC 7009 section 2.1);
    /// an access token is passed where there is no refresh token.
    pub async fn revoke(&self, token: &str) -> Result<(), ProviderError> {
        let mut form = vec![("token", token)];
        let builder = with_client_auth(
            self.http.inner().post(self.url.clone()),
            &mut form,
            &self.client_id,
            self.client_secret.as_ref(),
            self.client_auth,
        );
        let reply = self.http.send(builder.form(&form)).await?;
        // RFC 7009 2.2: 200 also for a token that was already invalid.
        if (200..300).contains(&reply.status) {
            Ok(())
        } else {
            Err(
                ProviderError::new(FailureKind::Transient, "revocation endpoint refused")
                    .with_status(reply.status),
            )
        }
    }
}
