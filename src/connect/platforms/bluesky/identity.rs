//! Who the user named, resolved: a handle to its DID (the handle's HTTPS
//! well-known), a DID to its document (the PLC directory, or the did:web
//! host), a PDS to its authorization server and that server's metadata.
//! Every host a user can influence goes through the host guard, checked
//! before the request and again by the client's resolver; the PLC
//! directory is the operator's.

use serde_json::{Map, Value};
use url::{Host, Url};

use super::documents::{self, Did, DidDocument};
use crate::connect::ConnectError;
use crate::connect::exchange::profile_object;
use crate::providers::HttpClient;
use crate::providers::host_guard::HostGuard;

const HANDLE_PATH: &str = "/.well-known/atproto-did";
const DID_WEB_PATH: &str = "/.well-known/did.json";
const RESOURCE_PATH: &str = "/.well-known/oauth-protected-resource";
const SERVER_PATH: &str = "/.well-known/oauth-authorization-server";

/// An authorization server's endpoints, each checked by the host guard.
#[derive(Debug, Clone)]
pub(super) struct Server {
    /// The issuer as the server names itself (an origin).
    pub issuer: String,
    pub authorization_endpoint: Url,
    pub token_endpoint: Url,
    pub par_endpoint: Url,
}

pub(super) struct Resolver {
    pub guard: HostGuard,
    /// For hosts users influence: its resolver refuses private addresses.
    pub guarded: HttpClient,
    /// For the operator's PLC directory.
    pub plain: HttpClient,
    pub plc_directory: Url,
}

/// A host the guard refused: the user's input (or what it led to) is
/// unusable, whatever the platform says.
pub(super) fn refused(what: &str, why: &str) -> ConnectError {
    ConnectError::invalid_request(format!("{what}: host refused: {why}"))
}

impl Resolver {
    /// The origin serving a bare name (a handle, a did:web host), checked.
    pub async fn origin_of_name(&self, what: &str, name: &str) -> Result<Url, ConnectError> {
        let origin = self
            .guard
            .origin_of_name(name)
            .map_err(|why| refused(what, &why))?;
        self.resolves_publicly(what, &origin).await?;
        Ok(origin)
    }

    /// An origin or endpoint named by a document or by the user, checked.
    pub async fn endpoint(&self, what: &str, url: &str) -> Result<Url, ConnectError> {
        let url = self
            .guard
            .endpoint(url)
            .map_err(|why| refused(what, &why))?;
        self.resolves_publicly(what, &url).await?;
        Ok(url)
    }

    /// Names are checked before the request so that a refusal says so
    /// (the client's resolver refuses them too, as a connection failure);
    /// literal addresses were checked when the URL was.
    async fn resolves_publicly(&self, what: &str, url: &Url) -> Result<(), ConnectError> {
        if let Some(Host::Domain(name)) = url.host() {
            self.guard
                .resolve(name)
                .await
                .map_err(|why| refused(what, &why))?;
        }
        Ok(())
    }

    async fn get(
        &self,
        client: &HttpClient,
        url: Url,
        what: &str,
    ) -> Result<Map<String, Value>, ConnectError> {
        let builder = client
            .inner()
            .get(url)
            .header(reqwest::header::ACCEPT, "application/json");
        let reply = client
            .send(builder)
            .await
            .map_err(|e| ConnectError::from_provider(what, e))?;
        profile_object(&reply, what)
    }

    /// The DID a handle names at `https://<handle>/.well-known/atproto-did`.
    pub async fn handle_did(&self, handle: &str) -> Result<String, ConnectError> {
        let what = format!("handle {handle}");
        let origin = self.origin_of_name(&what, handle).await?;
        let url = origin
            .join(HANDLE_PATH)
            .map_err(|_| refused(&what, "no URL"))?;
        let reply = self
            .guarded
            .send(self.guarded.inner().get(url))
            .await
            .map_err(|e| ConnectError::from_provider(&what, e))?;
        if reply.status >= 500 || reply.status == 429 {
            return Err(ConnectError::platform_unavailable(format!(
                "{what}: HTTP {} from its well-known",
                reply.status
            )));
        }
        if !(200..300).contains(&reply.status) {
            return Err(ConnectError::identity_failed(format!(
                "{what}: its well-known names no DID (HTTP {})",
                reply.status
            )));
        }
        let text = std::str::from_utf8(&reply.body).unwrap_or("");
        let did = text.trim();
        if documents::is_did(did) {
            Ok(did.to_owned())
        } else {
            Err(ConnectError::identity_failed(format!(
                "{what}: its well-known does not hold a DID"
            )))
        }
    }

    /// A DID's document: `<plc_directory>/<did>` or the did:web host's.
    pub async fn document(&self, did: &Did) -> Result<DidDocument, ConnectError> {
        let what = format!("DID document of {}", did.as_str());
        let body = match did {
            Did::Plc(id) => {
                let mut url = self.plc_directory.clone();
                url.path_segments_mut()
                    .map_err(|_| {
                        ConnectError::not_configured(
                            "providers.bluesky.plc_directory is not a base URL",
                        )
                    })?
                    .pop_if_empty()
                    .push(id);
                self.get(&self.plain, url, &what).await?
            }
            Did::Web { host, .. } => {
                let origin = self.origin_of_name(&what, host).await?;
                let url = origin
                    .join(DID_WEB_PATH)
                    .map_err(|_| refused(&what, "no URL"))?;
                self.get(&self.guarded, url, &what).await?
            }
        };
        documents::did_document(did.as_str(), &body)
            .map_err(|why| ConnectError::identity_failed(format!("{what}: {why}")))
    }

    /// The authorization server a PDS names (RFC 9728), as an origin.
    pub async fn authorization_server(&self, pds: &Url) -> Result<Url, ConnectError> {
        let what = format!("PDS {}", pds.origin().ascii_serialization());
        let url = pds
            .join(RESOURCE_PATH)
            .map_err(|_| refused(&what, "no URL"))?;
        let body = self.get(&self.guarded, url, &what).await?;
        let issuer = documents::protected_resource(pds, &body)
            .map_err(|why| ConnectError::identity_failed(format!("{what}: {why}")))?;
        self.endpoint("its authorization server", issuer.as_str())
            .await
    }

    /// The server's metadata (RFC 8414), its endpoints checked.
    pub async fn server(&self, issuer: &Url) -> Result<Server, ConnectError> {
        let what = format!(
            "authorization server {}",
            issuer.origin().ascii_serialization()
        );
        let url = issuer
            .join(SERVER_PATH)
            .map_err(|_| refused(&what, "no URL"))?;
        let body = self.get(&self.guarded, url, &what).await?;
        let metadata = documents::server_metadata(issuer, &body)
            .map_err(|why| ConnectError::identity_failed(format!("{what}: {why}")))?;
        Ok(Server {
            issuer: metadata.issuer,
            authorization_endpoint: self
                .endpoint(
                    "its authorization_endpoint",
                    &metadata.authorization_endpoint,
                )
                .await?,
            token_endpoint: self
                .endpoint("its token_endpoint", &metadata.token_endpoint)
                .await?,
            par_endpoint: self
                .endpoint(
                    "its pushed_authorization_request_endpoint",
                    &metadata.par_endpoint,
                )
                .await?,
        })
    }

    /// The handle a DID document claims, if it resolves back to that DID
    /// (a handle is only the account's when both directions agree). A
    /// failure only leaves the handle out.
    pub async fn verified_handle(&self, did: &str, claimed: Option<&str>) -> Option<String> {
        let claimed = claimed?;
        match self.handle_did(claimed).await {
            Ok(resolved) if resolved == did => Some(claimed.to_owned()),
            Ok(_) => {
                tracing::info!(
                    did,
                    handle = claimed,
                    "the handle a DID document claims names another DID"
                );
                None
            }
            Err(error) => {
                tracing::info!(did, handle = claimed, %error, "the handle a DID document claims could not be checked");
                None
            }
        }
    }
}
