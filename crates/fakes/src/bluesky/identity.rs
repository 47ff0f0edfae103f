//! Identity, as an atproto client discovers it: accounts with a handle and
//! a DID, the handle's `/.well-known/atproto-did` and a did:web host's
//! `/.well-known/did.json` (both answered by the request's `Host`, as each
//! is served on its own name), a PLC directory at `/plc/<did>`, and the
//! PDS's protected-resource metadata naming its authorization server.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use super::{FakeBluesky, Shared};

/// The PLC directory's path prefix on the fake.
pub(super) const PLC_PREFIX: &str = "/plc";

/// An account the fake hosts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BlueskyAccount {
    pub did: String,
    pub handle: String,
}

pub(super) struct Identity {
    pub(super) did: String,
    pub(super) handle: String,
    /// What the handle's well-known answers (the account's DID unless a
    /// test points it elsewhere).
    pub(super) well_known_did: String,
    /// The handle the DID document claims.
    pub(super) claimed_handle: String,
    /// The document's `#atproto_pds` endpoint (this fake unless changed).
    pub(super) pds: Option<String>,
}

impl FakeBluesky {
    /// An account on this PDS with a did:plc identity.
    pub fn create_account(&self, handle: &str) -> BlueskyAccount {
        let did = format!("did:plc:{}", plc_id());
        self.add_identity(&did, handle)
    }

    /// An account with a did:web identity served on its handle's name at
    /// this fake's port (`did:web:<handle>%3A<port>`).
    pub fn create_web_account(&self, handle: &str) -> BlueskyAccount {
        let port = self
            .origin()
            .rsplit(':')
            .next()
            .unwrap_or_default()
            .to_owned();
        let did = format!("did:web:{}%3A{port}", handle.to_ascii_lowercase());
        self.add_identity(&did, handle)
    }

    fn add_identity(&self, did: &str, handle: &str) -> BlueskyAccount {
        let handle = handle.to_ascii_lowercase();
        self.shared.lock().identities.push(Identity {
            did: did.to_owned(),
            handle: handle.clone(),
            well_known_did: did.to_owned(),
            claimed_handle: handle.clone(),
            pds: None,
        });
        BlueskyAccount {
            did: did.to_owned(),
            handle,
        }
    }

    /// The DID document names this PDS endpoint instead of this fake.
    pub fn set_pds(&self, did: &str, pds: &str) {
        self.with_identity(did, |i| i.pds = Some(pds.to_owned()));
    }

    /// The handle's well-known names this DID instead.
    pub fn set_handle_did(&self, did: &str, named: &str) {
        self.with_identity(did, |i| i.well_known_did = named.to_owned());
    }

    /// The DID document claims this handle instead.
    pub fn set_claimed_handle(&self, did: &str, handle: &str) {
        self.with_identity(did, |i| i.claimed_handle = handle.to_owned());
    }

    /// The PDS's protected-resource metadata names this authorization
    /// server instead of this fake.
    pub fn set_authorization_server(&self, issuer: &str) {
        self.shared.lock().authorization_server = Some(issuer.to_owned());
    }

    /// The PLC directory's base URL (`providers.bluesky.plc_directory`).
    pub fn plc_directory(&self) -> String {
        format!("{}{PLC_PREFIX}", self.origin())
    }

    /// Requests for identity documents, by path, oldest first.
    pub fn identity_requests(&self) -> Vec<String> {
        self.shared.lock().identity_requests.clone()
    }

    fn with_identity(&self, did: &str, change: impl FnOnce(&mut Identity)) {
        let mut inner = self.shared.lock();
        if let Some(identity) = inner.identities.iter_mut().find(|i| i.did == did) {
            change(identity);
        }
    }
}

/// 24 characters of base32 (a-z, 2-7), as did:plc identifiers are.
fn plc_id() -> String {
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz234567";
    let mut bits = rand::random::<u128>();
    (0..24)
        .map(|_| {
            let c = ALPHABET[(bits & 31) as usize] as char;
            bits >>= 5;
            c
        })
        .collect()
}

/// The request's `Host`, lower-cased, with and without its port.
fn host(headers: &HeaderMap) -> (String, String) {
    let full = headers
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_ascii_lowercase();
    let name = full
        .rsplit_once(':')
        .map_or(full.clone(), |(n, _)| n.to_owned());
    (full, name)
}

fn document(shared: &Shared, identity: &Identity) -> Value {
    let pds = identity
        .pds
        .clone()
        .unwrap_or_else(|| shared.origin().to_owned());
    json!({
        "@context": [
            "https://www.w3.org/ns/did/v1",
            "https://w3id.org/security/multikey/v1",
        ],
        "id": identity.did,
        "alsoKnownAs": [format!("at://{}", identity.claimed_handle)],
        "verificationMethod": [{
            "id": format!("{}#atproto", identity.did),
            "type": "Multikey",
            "controller": identity.did,
            "publicKeyMultibase": "zQ3shXjHeiBuRCKmM36cuYnm7YEMzhGnCmCyW92sRJ9pribSF",
        }],
        "service": [{
            "id": "#atproto_pds",
            "type": "AtprotoPersonalDataServer",
            "serviceEndpoint": pds,
        }],
    })
}

fn not_found(message: String) -> Response {
    (
        StatusCode::NOT_FOUND,
        axum::Json(json!({"message": message})),
    )
        .into_response()
}

pub(super) async fn handle_did(State(shared): State<Arc<Shared>>, headers: HeaderMap) -> Response {
    if let Some(response) = shared.script.next() {
        return response;
    }
    let (full, name) = host(&headers);
    let mut inner = shared.lock();
    inner
        .identity_requests
        .push(format!("{full}/.well-known/atproto-did"));
    match inner.identities.iter().find(|i| i.handle == name) {
        Some(identity) => (
            [(header::CONTENT_TYPE, "text/plain")],
            identity.well_known_did.clone(),
        )
            .into_response(),
        None => (StatusCode::NOT_FOUND, "no handle here").into_response(),
    }
}

pub(super) async fn plc_document(
    State(shared): State<Arc<Shared>>,
    Path(did): Path<String>,
) -> Response {
    if let Some(response) = shared.script.next() {
        return response;
    }
    let mut inner = shared.lock();
    inner.identity_requests.push(format!("{PLC_PREFIX}/{did}"));
    match inner.identities.iter().find(|i| i.did == did) {
        Some(identity) if did.starts_with("did:plc:") => {
            axum::Json(document(&shared, identity)).into_response()
        }
        _ => not_found(format!("DID not registered: {did}")),
    }
}

pub(super) async fn web_document(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
) -> Response {
    if let Some(response) = shared.script.next() {
        return response;
    }
    let (full, _) = host(&headers);
    let did = format!("did:web:{}", full.replacen(':', "%3A", 1));
    let mut inner = shared.lock();
    inner
        .identity_requests
        .push(format!("{full}/.well-known/did.json"));
    match inner.identities.iter().find(|i| i.did == did) {
        Some(identity) => axum::Json(document(&shared, identity)).into_response(),
        None => not_found(format!("no DID document for {did}")),
    }
}

pub(super) async fn protected_resource(State(shared): State<Arc<Shared>>) -> Response {
    if let Some(response) = shared.script.next() {
        return response;
    }
    let origin = shared.origin().to_owned();
    let server = shared
        .lock()
        .authorization_server
        .clone()
        .unwrap_or_else(|| origin.clone());
    axum::Json(json!({
        "resource": origin,
        "authorization_servers": [server],
        "scopes_supported": [],
        "bearer_methods_supported": ["header"],
        "resource_documentation": "https://atproto.com",
    }))
    .into_response()
}
