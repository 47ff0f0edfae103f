//! What one platform's connector does: build the authorization URL, then
//! turn the callback's code into the accounts to register. The service in
//! `connect` owns the state, the storage and the registration; a connector
//! only speaks to its platform.

use futures::future::BoxFuture;
use secrecy::SecretString;
use serde::{Deserialize, Serialize};
use url::Url;

use super::ConnectError;
use crate::domain::{AccountId, Provider};
use crate::registration::AccountSpec;

/// Everything a connector needs to build one authorization URL.
pub struct Begin<'a> {
    pub provider: Provider,
    pub workspace_id: &'a str,
    /// The scopes to ask for: the request's, or the platform's
    /// `connect_scopes`.
    pub scopes: &'a [String],
    /// The callback registered with the platform.
    pub redirect_uri: &'a Url,
    /// The opaque, single-use value the platform hands back.
    pub state: &'a str,
    /// The request's `extras` (a JSON object): `instance` (Mastodon),
    /// `handle` (Bluesky), `page_ids` (Facebook Pages), ...
    pub extras: &'a serde_json::Value,
}

/// The platform's authorization URL, and what the callback will need.
pub struct Authorization {
    pub url: Url,
    /// Kept encrypted with the session until the callback.
    pub secrets: SessionSecrets,
    /// Kept in clear with the session (an instance host, an issuer): never
    /// anything secret.
    pub context: serde_json::Value,
}

/// What must survive from `begin` to `complete` and must never be readable
/// at rest: stored encrypted, bound to the session.
#[derive(Default)]
pub struct SessionSecrets {
    /// PKCE (RFC 7636), S256.
    pub code_verifier: Option<SecretString>,
    /// atproto OAuth: the session's DPoP key as a private JWK.
    pub dpop_private_jwk: Option<SecretString>,
    /// Between the callback and the choice (Facebook Pages, LinkedIn
    /// organizations): the user's token...
    pub user_access_token: Option<SecretString>,
    /// ...and refresh token, where the platform issued one.
    pub refresh_token: Option<SecretString>,
}

impl std::fmt::Debug for SessionSecrets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SessionSecrets([redacted])")
    }
}

/// The callback, as a connector sees it.
pub struct Complete<'a> {
    pub provider: Provider,
    pub workspace_id: &'a str,
    pub code: &'a SecretString,
    pub redirect_uri: &'a Url,
    pub scopes: &'a [String],
    pub secrets: &'a SessionSecrets,
    pub context: &'a serde_json::Value,
    pub extras: &'a serde_json::Value,
    /// The callback's `iss` (RFC 9207), where the platform sends one.
    pub issuer: Option<&'a str>,
    /// The account being reconnected, if any.
    pub account_id: Option<&'a AccountId>,
}

/// The result of a code exchange.
pub enum Connected {
    /// The accounts to register: one, or several chosen pages.
    Accounts(Vec<ConnectedAccount>),
    /// The user must choose among these before anything is registered.
    Choose(Choice),
}

/// One account to register, as the platform described it.
pub struct ConnectedAccount {
    /// Checked exactly as a registration body is.
    pub spec: AccountSpec,
    /// What the account's health should say from the start (no refresh
    /// token issued, ...).
    pub warnings: Vec<String>,
}

/// Choices the user makes after the code exchange (the pages to connect).
pub struct Choice {
    pub options: Vec<ChoiceOption>,
    /// Kept encrypted with the session until the choice is made.
    pub secrets: SessionSecrets,
    /// Kept in clear with the session.
    pub context: serde_json::Value,
}

#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ChoiceOption {
    pub id: String,
    pub name: String,
}

/// The second call of a flow that asked the user to choose.
pub struct Chosen<'a> {
    pub provider: Provider,
    pub workspace_id: &'a str,
    pub selected: &'a [String],
    pub secrets: &'a SessionSecrets,
    pub context: &'a serde_json::Value,
}

pub trait Connector: Send + Sync {
    fn begin<'a>(&'a self, begin: Begin<'a>) -> BoxFuture<'a, Result<Authorization, ConnectError>>;

    fn complete<'a>(
        &'a self,
        complete: Complete<'a>,
    ) -> BoxFuture<'a, Result<Connected, ConnectError>>;

    /// Only flows that answer `Connected::Choose` have a second call.
    fn choose<'a>(
        &'a self,
        chosen: Chosen<'a>,
    ) -> BoxFuture<'a, Result<Vec<ConnectedAccount>, ConnectError>> {
        let provider = chosen.provider;
        Box::pin(async move {
            Err(ConnectError::invalid_request(format!(
                "{provider} has no choice to make after the authorization"
            )))
        })
    }
}
