//! The atproto documents the connect flow reads, as parsers of untrusted
//! JSON that never panic: identifiers (handles, DIDs), DID documents, the
//! PDS's protected-resource metadata (RFC 9728), the authorization server's
//! metadata (RFC 8414 with atproto's requirements) and the identity fields
//! of a token answer. Errors name what was wrong, never repeat values.

use serde_json::{Map, Value};
use url::Url;

/// The longest identifier read (DIDs may be up to 2 KB; handles 253).
const MAX_DID: usize = 2048;
const MAX_HANDLE: usize = 253;

/// An account identifier the flow can resolve.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Did {
    /// `did:plc:<24 base32 characters>`, served by the PLC directory.
    Plc(String),
    /// `did:web:<host>` (a port percent-encoded as `%3A`), served by the
    /// host itself at `/.well-known/did.json`.
    Web { did: String, host: String },
}

impl Did {
    pub fn as_str(&self) -> &str {
        match self {
            Did::Plc(did) | Did::Web { did, .. } => did,
        }
    }
}

/// A handle (atproto's handle syntax), lower-cased; None if it is not one.
pub fn handle(input: &str) -> Option<String> {
    if input.is_empty() || input.len() > MAX_HANDLE || !input.is_ascii() {
        return None;
    }
    let labels: Vec<&str> = input.split('.').collect();
    if labels.len() < 2 || !labels.iter().all(|l| is_label(l)) {
        return None;
    }
    // The top-level domain cannot start with a digit (so no IP address is a
    // handle).
    if labels.last()?.starts_with(|c: char| c.is_ascii_digit()) {
        return None;
    }
    Some(input.to_ascii_lowercase())
}

fn is_label(label: &str) -> bool {
    (1..=63).contains(&label.len())
        && label
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        && !label.starts_with('-')
        && !label.ends_with('-')
}

/// Whether `input` has the generic DID syntax (`did:method:id`).
pub fn is_did(input: &str) -> bool {
    let Some(rest) = input.strip_prefix("did:") else {
        return false;
    };
    let Some((method, id)) = rest.split_once(':') else {
        return false;
    };
    input.len() <= MAX_DID
        && !method.is_empty()
        && method.bytes().all(|b| b.is_ascii_lowercase())
        && !id.is_empty()
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b".-_:%".contains(&b))
        && !id.ends_with(':')
        && !id.ends_with('%')
}

/// A DID of a method atproto supports, or why not.
pub fn did(input: &str) -> Result<Did, String> {
    if !is_did(input) {
        return Err("not a DID".into());
    }
    if let Some(id) = input.strip_prefix("did:plc:") {
        let base32 = id
            .bytes()
            .all(|b| b.is_ascii_lowercase() || (b'2'..=b'7').contains(&b));
        return if id.len() == 24 && base32 {
            Ok(Did::Plc(input.to_owned()))
        } else {
            Err("not a did:plc identifier (24 base32 characters)".into())
        };
    }
    if let Some(id) = input.strip_prefix("did:web:") {
        // atproto's did:web names a host (with an optional port), no path.
        let decoded = id.replacen("%3A", ":", 1).replacen("%3a", ":", 1);
        let (name, port) = match decoded.split_once(':') {
            Some((name, port)) => (name, Some(port)),
            None => (decoded.as_str(), None),
        };
        // As for handles, the last label cannot start with a digit: no IP
        // address, and no name a URL parser reads as a malformed one
        // (`a.0`).
        let name_ok = !name.is_empty()
            && name.len() <= MAX_HANDLE
            && name.split('.').all(is_label)
            && !name
                .rsplit('.')
                .next()
                .is_some_and(|last| last.starts_with(|c: char| c.is_ascii_digit()));
        let port_ok = port.is_none_or(|p| p.parse::<u16>().is_ok_and(|p| p > 0));
        return if name_ok && port_ok {
            Ok(Did::Web {
                did: input.to_owned(),
                host: decoded.to_ascii_lowercase(),
            })
        } else {
            Err("not a did:web host".into())
        };
    }
    Err("only did:plc and did:web identities are supported".into())
}

/// What a DID document says that the flow needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DidDocument {
    /// The `#atproto_pds` service endpoint, as an origin.
    pub pds: Url,
    /// The handle it claims (its first `at://` alias), unverified.
    pub handle: Option<String>,
}

/// Reads the DID document of `did`.
pub fn did_document(did: &str, doc: &Map<String, Value>) -> Result<DidDocument, String> {
    if doc.get("id").and_then(Value::as_str) != Some(did) {
        return Err("its id is not the DID asked for".into());
    }
    // The first at:// alias is the handle; a malformed one means none.
    let handle = doc
        .get("alsoKnownAs")
        .and_then(Value::as_array)
        .and_then(|aliases| {
            aliases
                .iter()
                .filter_map(Value::as_str)
                .find(|a| a.starts_with("at://"))
        })
        .and_then(|alias| handle(&alias["at://".len()..]));
    let full_id = format!("{did}#atproto_pds");
    let service = doc
        .get("service")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(Value::as_object)
        .find(|s| {
            let id = s.get("id").and_then(Value::as_str);
            id == Some("#atproto_pds") || id == Some(full_id.as_str())
        })
        .ok_or("it names no #atproto_pds service")?;
    if service.get("type").and_then(Value::as_str) != Some("AtprotoPersonalDataServer") {
        return Err("its #atproto_pds service is not of type AtprotoPersonalDataServer".into());
    }
    let endpoint = service
        .get("serviceEndpoint")
        .and_then(Value::as_str)
        .ok_or("its #atproto_pds service has no serviceEndpoint URL")?;
    let pds = bare_origin(endpoint).ok_or("its PDS endpoint is not an http(s) origin")?;
    Ok(DidDocument { pds, handle })
}

/// An http(s) URL that is an origin: no credentials, path, query or
/// fragment (a trailing slash is allowed).
pub fn bare_origin(input: &str) -> Option<Url> {
    let url = Url::parse(input.trim()).ok()?;
    let bare = matches!(url.scheme(), "https" | "http")
        && url.host().is_some()
        && url.username().is_empty()
        && url.password().is_none()
        && url.path() == "/"
        && url.query().is_none()
        && url.fragment().is_none();
    bare.then_some(url)
}

/// The same origin, whatever trailing slash either was written with.
pub fn same_origin(named: &str, origin: &Url) -> bool {
    named.strip_suffix('/').unwrap_or(named) == origin.origin().ascii_serialization()
}

/// The authorization server a PDS's protected-resource metadata names.
pub fn protected_resource(pds: &Url, body: &Map<String, Value>) -> Result<Url, String> {
    let resource = body
        .get("resource")
        .and_then(Value::as_str)
        .ok_or("resource is missing")?;
    if !same_origin(resource, pds) {
        return Err("resource is not the PDS it was fetched from".into());
    }
    let first = body
        .get("authorization_servers")
        .and_then(Value::as_array)
        .and_then(|servers| servers.first())
        .and_then(Value::as_str)
        .ok_or("authorization_servers names no server")?;
    bare_origin(first).ok_or_else(|| "authorization_servers[0] is not an http(s) origin".into())
}

/// The authorization server's metadata, as the flow uses it. The URLs are
/// unchecked text here: the caller puts them through the host guard.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerMetadata {
    /// As the server names itself: the callback's `iss` must be exactly this
    /// (RFC 9207).
    pub issuer: String,
    pub authorization_endpoint: String,
    pub token_endpoint: String,
    pub par_endpoint: String,
}

/// Reads the metadata fetched from `issuer` (an origin), with what atproto
/// requires of it: the same issuer, PAR, ES256 DPoP proofs, `iss` in the
/// redirect (RFC 9207) and client-metadata documents as client ids.
pub fn server_metadata(issuer: &Url, body: &Map<String, Value>) -> Result<ServerMetadata, String> {
    let text = |field: &str| -> Result<String, String> {
        body.get(field)
            .and_then(Value::as_str)
            .filter(|s| !s.trim().is_empty())
            .map(|s| s.trim().to_owned())
            .ok_or_else(|| format!("{field} is missing"))
    };
    let listed = |field: &str, wanted: &str| {
        body.get(field)
            .and_then(Value::as_array)
            .is_some_and(|items| items.iter().any(|i| i.as_str() == Some(wanted)))
    };
    let named = text("issuer")?;
    if !same_origin(&named, issuer) {
        return Err("it names another issuer".into());
    }
    if !listed("dpop_signing_alg_values_supported", "ES256") {
        return Err("dpop_signing_alg_values_supported does not list ES256".into());
    }
    for flag in [
        "authorization_response_iss_parameter_supported",
        "client_id_metadata_document_supported",
    ] {
        if body.get(flag) != Some(&Value::Bool(true)) {
            return Err(format!("{flag} is not true"));
        }
    }
    Ok(ServerMetadata {
        issuer: named,
        authorization_endpoint: text("authorization_endpoint")?,
        token_endpoint: text("token_endpoint")?,
        par_endpoint: text("pushed_authorization_request_endpoint")?,
    })
}

/// What a PAR answer hands back.
pub fn request_uri(body: &Map<String, Value>) -> Result<String, String> {
    body.get("request_uri")
        .and_then(Value::as_str)
        .map(str::trim)
        .filter(|uri| !uri.is_empty() && uri.len() <= 2048 && !uri.chars().any(char::is_control))
        .map(str::to_owned)
        .ok_or_else(|| "request_uri is missing".into())
}

/// The identity fields of a token answer atproto requires.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenIdentity {
    /// The account's DID.
    pub sub: String,
    pub scopes: Vec<String>,
}

pub fn token_identity(body: &Map<String, Value>) -> Result<TokenIdentity, String> {
    let token_type = body.get("token_type").and_then(Value::as_str);
    if !token_type.is_some_and(|t| t.eq_ignore_ascii_case("DPoP")) {
        return Err("token_type is not DPoP".into());
    }
    let sub = body
        .get("sub")
        .and_then(Value::as_str)
        .filter(|s| is_did(s))
        .ok_or("sub is not a DID")?;
    let scopes: Vec<String> = body
        .get("scope")
        .and_then(Value::as_str)
        .unwrap_or("")
        .split_whitespace()
        .map(str::to_owned)
        .collect();
    if !scopes.iter().any(|s| s == "atproto") {
        return Err("scope does not include atproto".into());
    }
    Ok(TokenIdentity {
        sub: sub.to_owned(),
        scopes,
    })
}

#[cfg(test)]
mod tests;
