//! Bluesky through atproto OAuth (atproto.com/specs/oauth): the user names
//! an account (`extras.handle`: a handle, a DID, or a PDS/entryway URL); the
//! daemon resolves it to its PDS and that PDS's authorization server, pushes
//! the authorization request (PAR, PKCE S256, a DPoP proof from a key made
//! for this session) and sends the browser to the server with the
//! `request_uri` alone. At the callback it checks `iss` (RFC 9207), redeems
//! the code with a proof from the same key, and checks who signed in: the
//! DID the flow started from, or, from a server, a DID whose PDS names that
//! same authorization server. The account is registered as the refresh flow
//! expects it (`meta.auth_server`, `meta.pds_host`, the DPoP key).
//!
//! Handles resolve over HTTPS only (`/.well-known/atproto-did`), not by DNS
//! TXT records.

mod client_metadata;
mod documents;
mod dpop_post;
mod identity;

use std::time::Duration;

use chrono::Utc;
use futures::FutureExt;
use futures::future::BoxFuture;
use secrecy::ExposeSecret;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use url::Url;

use self::documents::Did;
use self::identity::Resolver;
use crate::config::Settings;
use crate::connect::pkce::{code_challenge, code_verifier};
use crate::connect::{
    Authorization, Begin, Complete, ConnectError, Connected, ConnectedAccount, Connector,
    SessionSecrets,
};
use crate::domain::Provider;
use crate::providers::host_guard::HostGuard;
use crate::providers::token_response::json_object;
use crate::providers::{DpopKey, FailureKind, HttpClient, OAuth2Refresh, ProviderError};
use crate::registration::{AccountSpec, CredentialsSpec};

pub use client_metadata::client_metadata;

const DEFAULT_PLC_DIRECTORY: &str = "https://plc.directory";

pub struct BlueskyConnector {
    resolver: Resolver,
    client_id: String,
    /// For a token answer without `expires_in`.
    default_lifetime: Duration,
}

/// What `begin` learnt, kept in clear with the session (nothing secret).
#[derive(Serialize, Deserialize)]
struct Pending {
    issuer: String,
    token_endpoint: String,
    #[serde(default)]
    dpop_nonce: Option<String>,
    /// The DID the flow started from (a handle's or a DID given).
    #[serde(default)]
    expected_did: Option<String>,
    #[serde(default)]
    pds: Option<String>,
    /// The handle, once both directions agreed.
    #[serde(default)]
    handle: Option<String>,
}

/// Where the flow starts: an account (its DID, PDS and handle), or a server.
struct Start {
    expected_did: Option<String>,
    pds: Option<Url>,
    handle: Option<String>,
    issuer: Url,
    login_hint: Option<String>,
}

impl BlueskyConnector {
    pub fn from_settings(settings: &Settings, http: &HttpClient) -> Result<Self, String> {
        let section = settings.providers.get(Provider::Bluesky);
        let client_id = settings.bluesky_client_id().ok_or_else(|| {
            "Bluesky cannot be connected: set connect.public_url (the daemon then serves its \
             own client metadata) or providers.bluesky.client_id"
                .to_owned()
        })?;
        let guard = HostGuard::new(&section.allowed_origins);
        let guarded = HttpClient::with_resolver(&settings.http, guard.clone())
            .map_err(|e| format!("Bluesky's HTTP client could not be built: {e}"))?;
        let plc_directory = section.plc_directory.clone().unwrap_or_else(|| {
            Url::parse(DEFAULT_PLC_DIRECTORY).expect("the default PLC directory parses")
        });
        Ok(Self {
            resolver: Resolver {
                guard,
                guarded,
                plain: http.clone(),
                plc_directory,
            },
            client_id,
            default_lifetime: section.default_access_token_lifetime,
        })
    }

    async fn start_from(&self, input: &str) -> Result<Start, ConnectError> {
        let input = input.strip_prefix('@').unwrap_or(input);
        let resolver = &self.resolver;
        if input.contains("://") {
            let origin = documents::bare_origin(input).ok_or_else(|| {
                ConnectError::invalid_request(
                    "extras.handle: a server is given as its origin (https://host)",
                )
            })?;
            let origin = resolver.endpoint("extras.handle", origin.as_str()).await?;
            // A PDS names its authorization server; an entryway is one.
            let issuer = match resolver.authorization_server(&origin).await {
                Ok(issuer) => issuer,
                Err(error) if error.code == "identity_failed" => origin,
                Err(error) => return Err(error),
            };
            return Ok(Start {
                expected_did: None,
                pds: None,
                handle: None,
                issuer,
                login_hint: None,
            });
        }
        let (did, typed_handle) = if input.starts_with("did:") {
            let did = documents::did(input)
                .map_err(|why| ConnectError::invalid_request(format!("extras.handle: {why}")))?;
            (did, None)
        } else {
            let handle = documents::handle(input).ok_or_else(|| {
                ConnectError::invalid_request(
                    "extras.handle: not a handle (alice.bsky.social), a DID or a server URL",
                )
            })?;
            let named = resolver.handle_did(&handle).await?;
            let did = documents::did(&named).map_err(|why| {
                ConnectError::identity_failed(format!("handle {handle} names {named}: {why}"))
            })?;
            (did, Some(handle))
        };
        let document = resolver.document(&did).await?;
        let handle = match &typed_handle {
            // The handle resolved to the DID; the document must claim it back.
            Some(typed) => document.handle.clone().filter(|claimed| claimed == typed),
            None => {
                resolver
                    .verified_handle(did.as_str(), document.handle.as_deref())
                    .await
            }
        };
        let pds = resolver.endpoint("its PDS", document.pds.as_str()).await?;
        let issuer = resolver.authorization_server(&pds).await?;
        Ok(Start {
            expected_did: Some(did.as_str().to_owned()),
            pds: Some(pds),
            handle,
            issuer,
            login_hint: Some(typed_handle.unwrap_or_else(|| did.as_str().to_owned())),
        })
    }

    async fn begin_flow(&self, begin: Begin<'_>) -> Result<Authorization, ConnectError> {
        if !begin.scopes.iter().any(|s| s == "atproto") {
            return Err(ConnectError::invalid_request(
                "scopes: atproto OAuth needs the atproto scope",
            ));
        }
        let input = begin
            .extras
            .get("handle")
            .and_then(Value::as_str)
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .ok_or_else(|| {
                ConnectError::invalid_request(
                    "extras.handle: the account's handle, DID or server URL is required",
                )
            })?;
        let start = self.start_from(input).await?;
        let server = self.resolver.server(&start.issuer).await?;
        let key = DpopKey::generate();
        let verifier = code_verifier();
        let challenge = code_challenge(&verifier);
        let scope = begin.scopes.join(" ");
        let mut form = vec![
            ("client_id", self.client_id.as_str()),
            ("response_type", "code"),
            ("code_challenge", challenge.as_str()),
            ("code_challenge_method", "S256"),
            ("state", begin.state),
            ("redirect_uri", begin.redirect_uri.as_str()),
            ("scope", scope.as_str()),
        ];
        if let Some(hint) = &start.login_hint {
            form.push(("login_hint", hint));
        }
        let answered = dpop_post::post(
            &self.resolver.guarded,
            &server.par_endpoint,
            &key,
            &form,
            None,
        )
        .await
        .map_err(|e| refused_by_server("pushed authorization request", e))?;
        let reply = &answered.reply;
        if !(200..300).contains(&reply.status) {
            let error = OAuth2Refresh::interpret(reply).err().unwrap_or_else(|| {
                ProviderError::transient("unexpected answer").with_status(reply.status)
            });
            return Err(refused_by_server("pushed authorization request", error));
        }
        let request_uri = json_object(reply)
            .map_err(|e| refused_by_server("pushed authorization request", e))
            .and_then(|body| {
                documents::request_uri(&body).map_err(|why| {
                    ConnectError::exchange_failed(format!("pushed authorization request: {why}"))
                })
            })?;
        let mut url = server.authorization_endpoint.clone();
        url.query_pairs_mut()
            .append_pair("client_id", &self.client_id)
            .append_pair("request_uri", &request_uri);
        let pending = Pending {
            issuer: server.issuer.clone(),
            token_endpoint: server.token_endpoint.to_string(),
            dpop_nonce: answered.nonce,
            expected_did: start.expected_did,
            pds: start.pds.map(|pds| pds.origin().ascii_serialization()),
            handle: start.handle,
        };
        Ok(Authorization {
            url,
            secrets: SessionSecrets {
                code_verifier: Some(verifier),
                dpop_private_jwk: Some(key.to_private_jwk()),
                ..SessionSecrets::default()
            },
            context: serde_json::to_value(&pending).unwrap_or(Value::Null),
        })
    }

    async fn complete_flow(&self, complete: Complete<'_>) -> Result<Connected, ConnectError> {
        let pending: Pending = serde_json::from_value(complete.context.clone())
            .map_err(|_| ConnectError::invalid_request("the session's context is unreadable"))?;
        // RFC 9207: the answer must come from the server the flow went to.
        match complete.issuer {
            Some(iss) if iss == pending.issuer => {}
            Some(_) => {
                return Err(ConnectError::invalid_request(format!(
                    "the callback's iss is not {}, the authorization server this flow went to",
                    pending.issuer
                )));
            }
            None => {
                return Err(ConnectError::invalid_request(
                    "the callback has no iss: atproto authorization servers always send one",
                ));
            }
        }
        let secrets = complete.secrets;
        let (Some(jwk), Some(verifier)) = (&secrets.dpop_private_jwk, &secrets.code_verifier)
        else {
            return Err(ConnectError::invalid_request(
                "the session holds no DPoP key or PKCE verifier",
            ));
        };
        let key = DpopKey::from_jwk(jwk.expose_secret())
            .map_err(|e| ConnectError::invalid_request(format!("the session's DPoP key: {e}")))?;
        let token_endpoint = self
            .resolver
            .endpoint("its token_endpoint", &pending.token_endpoint)
            .await?;
        let form = [
            ("grant_type", "authorization_code"),
            ("code", complete.code.expose_secret()),
            ("redirect_uri", complete.redirect_uri.as_str()),
            ("code_verifier", verifier.expose_secret()),
            ("client_id", self.client_id.as_str()),
        ];
        let answered = dpop_post::post(
            &self.resolver.guarded,
            &token_endpoint,
            &key,
            &form,
            pending.dpop_nonce.clone(),
        )
        .await
        .map_err(|e| ConnectError::from_provider("code exchange", e))?;
        let reply = &answered.reply;
        let grant = OAuth2Refresh::interpret(reply)
            .map_err(|e| ConnectError::from_provider("code exchange", e))?;
        let body =
            json_object(reply).map_err(|e| ConnectError::from_provider("code exchange", e))?;
        let identity = documents::token_identity(&body)
            .map_err(|why| ConnectError::exchange_failed(format!("code exchange: {why}")))?;
        let sub = identity.sub;

        let (pds, handle) = match &pending.expected_did {
            Some(expected) if *expected == sub => (pending.pds.clone(), pending.handle.clone()),
            Some(expected) => {
                let named = pending
                    .handle
                    .as_deref()
                    .map(|h| format!("{expected} ({h})"))
                    .unwrap_or_else(|| expected.clone());
                return Err(ConnectError::account_mismatch(format!(
                    "the authorization server signed in {sub}, not {named}, the account this connection was started for"
                )));
            }
            None => {
                let (pds, handle) = self.confirm_server(&sub, &pending.issuer).await?;
                (Some(pds), handle)
            }
        };
        let pds = pds.ok_or_else(|| ConnectError::invalid_request("the session names no PDS"))?;
        let lifetime = grant.expires_in.unwrap_or(self.default_lifetime);
        let refresh_token_expires_at = grant
            .refresh_token_expires_in
            .and_then(|d| chrono::Duration::from_std(d).ok())
            .map(|d| Utc::now() + d);
        let spec = AccountSpec {
            workspace_id: complete.workspace_id.to_owned(),
            provider: complete.provider,
            external_id: sub,
            handle,
            display_name: None,
            avatar_url: None,
            connection_type: None,
            scopes: identity.scopes,
            meta: Some(json!({"auth_server": origin_of(&pending.issuer), "pds_host": pds})),
            default_board_id: None,
            credentials: CredentialsSpec {
                access_token: grant.access_token.expose().to_owned(),
                refresh_token: grant.refresh_token.map(|rt| rt.expose().to_owned()),
                expires_in: Some(i64::try_from(lifetime.as_secs().max(1)).unwrap_or(i64::MAX)),
                token_expires_at: None,
                refresh_token_expires_at,
                dpop_private_jwk: Some(jwk.expose_secret().to_owned()),
            },
        };
        Ok(Connected::Accounts(vec![ConnectedAccount {
            spec,
            warnings: Vec::new(),
        }]))
    }

    /// A flow started from a server: the DID that signed in must be hosted
    /// where that server speaks for it (its PDS names the same issuer), or
    /// the server could speak for any account. Its PDS and handle.
    async fn confirm_server(
        &self,
        sub: &str,
        issuer: &str,
    ) -> Result<(String, Option<String>), ConnectError> {
        let did: Did = documents::did(sub).map_err(|why| {
            ConnectError::identity_failed(format!("the account signed in ({sub}): {why}"))
        })?;
        let document = self.resolver.document(&did).await?;
        let pds = self
            .resolver
            .endpoint("its PDS", document.pds.as_str())
            .await?;
        let named = self.resolver.authorization_server(&pds).await?;
        if !documents::same_origin(issuer, &named) {
            return Err(ConnectError::identity_failed(format!(
                "{sub} is hosted at {}, whose authorization server is not {issuer}, the one that signed it in",
                pds.origin().ascii_serialization()
            )));
        }
        let handle = self
            .resolver
            .verified_handle(sub, document.handle.as_deref())
            .await;
        Ok((pds.origin().ascii_serialization(), handle))
    }
}

/// `https://host[:port]`, however the issuer was written.
fn origin_of(issuer: &str) -> String {
    Url::parse(issuer).map_or_else(|_| issuer.to_owned(), |u| u.origin().ascii_serialization())
}

/// An authorization server's refusal of a request the daemon made (PAR):
/// unavailable when it is down, refused otherwise.
fn refused_by_server(stage: &str, error: ProviderError) -> ConnectError {
    let detail = match (&error.code, error.http_status) {
        (Some(code), Some(status)) => format!("HTTP {status}, {code}: {}", error.message),
        (None, Some(status)) => format!("HTTP {status}: {}", error.message),
        (Some(code), None) => format!("{code}: {}", error.message),
        (None, None) => error.message.clone(),
    };
    match error.kind {
        FailureKind::Transient | FailureKind::RateLimited => {
            ConnectError::platform_unavailable(format!("{stage}: {detail}"))
        }
        _ => ConnectError::exchange_failed(format!("{stage}: {detail}")),
    }
}

impl Connector for BlueskyConnector {
    fn begin<'a>(&'a self, begin: Begin<'a>) -> BoxFuture<'a, Result<Authorization, ConnectError>> {
        self.begin_flow(begin).boxed()
    }

    fn complete<'a>(
        &'a self,
        complete: Complete<'a>,
    ) -> BoxFuture<'a, Result<Connected, ConnectError>> {
        // The service scrubs the code; the verifier is this flow's own.
        let verifier = complete
            .secrets
            .code_verifier
            .as_ref()
            .map(|v| v.expose_secret().to_owned());
        self.complete_flow(complete)
            .map(move |result| {
                result.map_err(|mut error| {
                    if let Some(verifier) = &verifier {
                        error.message = crate::scrub::scrub(&error.message, &[verifier]);
                    }
                    error
                })
            })
            .boxed()
    }
}
