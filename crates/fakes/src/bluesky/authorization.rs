//! The authorization half of the atproto OAuth server: pushed
//! authorization requests (RFC 9126) with a DPoP proof and the server's
//! nonce, the client's metadata fetched from its client id and checked,
//! the consent screen reached with the `request_uri` alone, and the codes
//! it hands out, redeemed once with the PAR's DPoP key and PKCE verifier.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use url::Url;

use super::dpop::verify_proof;
use super::oauth::oauth_error;
use super::{FakeBluesky, Shared};
use crate::authorize::{Consent, User};
use crate::server::token;

pub(super) const PAR_PATH: &str = "/oauth/par";
pub(super) const AUTHORIZE_PATH: &str = "/oauth/authorize";

/// How long a `request_uri` can be used (the reference server: 5 minutes).
const REQUEST_LIFETIME: Duration = Duration::from_secs(300);

pub(super) struct Pushed {
    client_id: String,
    redirect_uri: String,
    scope: String,
    state: String,
    challenge: String,
    login_hint: Option<String>,
    /// The DPoP key of the PAR: the code is redeemed with it alone.
    key: (String, String),
    expires: Instant,
    used: bool,
}

pub(super) struct Code {
    client_id: String,
    redirect_uri: String,
    challenge: String,
    key: (String, String),
    did: String,
    scope: String,
    used: bool,
}

/// A code redeemed: whom it signed in, with what.
pub(super) struct Redeemed {
    pub(super) did: String,
    pub(super) scope: String,
    pub(super) client_id: String,
}

impl FakeBluesky {
    /// The next consent screen is answered this way (`User::id` is the DID
    /// signing in). Without one queued, the account the `login_hint` names
    /// approves, or else the newest account.
    pub fn next_consent(&self, consent: Consent) {
        self.shared.lock().consents.push_back(consent);
    }

    /// Client-metadata URLs the server fetched, oldest first.
    pub fn client_metadata_fetches(&self) -> Vec<String> {
        self.shared.lock().metadata_fetches.clone()
    }

    /// Every accepted PAR's form, oldest first.
    pub fn pushed_requests(&self) -> Vec<HashMap<String, String>> {
        self.shared.lock().pushed_forms.clone()
    }

    pub fn par_nonce_challenges(&self) -> u32 {
        self.shared.lock().par_nonce_challenges
    }

    /// Codes presented at the token endpoint, redeemed or refused.
    pub fn code_redemptions(&self) -> u32 {
        self.shared.lock().code_redemptions
    }
}

fn bad_request(code: &str, description: &str) -> Response {
    oauth_error(StatusCode::BAD_REQUEST, code, description)
}

pub(super) async fn par(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if let Some(response) = shared.script.next() {
        return response;
    }
    let htu = format!("{}{PAR_PATH}", shared.origin());
    let (key, nonce) = {
        let mut inner = shared.lock();
        let proof = headers.get("dpop").and_then(|v| v.to_str().ok());
        let verified = match proof {
            None => Err("no DPoP proof".to_owned()),
            Some(proof) => verify_proof(&mut inner, proof, &htu),
        };
        let proof = match verified {
            Ok(proof) => proof,
            Err(why) => {
                inner.proof_rejections.push(why.clone());
                return bad_request("invalid_dpop_proof", &why);
            }
        };
        let nonce = inner.nonce.clone();
        if proof.nonce.as_deref() != Some(nonce.as_str()) {
            inner.par_nonce_challenges += 1;
            return with_nonce(
                bad_request(
                    "use_dpop_nonce",
                    "Authorization server requires nonce in DPoP proof",
                ),
                &nonce,
            );
        }
        (proof.key, nonce)
    };
    let form: HashMap<String, String> = url::form_urlencoded::parse(&body).into_owned().collect();
    let field = |name: &str| form.get(name).map(String::as_str).unwrap_or("");
    let client_id = field("client_id").to_owned();
    // The client is whoever its metadata says: fetched now, outside the lock.
    let metadata = match fetch_client_metadata(&shared, &client_id).await {
        Ok(metadata) => metadata,
        Err((code, why)) => return with_nonce(bad_request(code, &why), &nonce),
    };
    let refusal = if field("response_type") != "code" {
        Some(("unsupported_response_type", "response_type must be code"))
    } else if field("code_challenge_method") != "S256" || field("code_challenge").len() != 43 {
        Some(("invalid_request", "code_challenge must be S256"))
    } else if field("state").is_empty() {
        Some(("invalid_request", "state is required"))
    } else if !listed(&metadata["redirect_uris"], field("redirect_uri")) {
        Some((
            "invalid_request",
            "redirect_uri is not one of the client's redirect_uris",
        ))
    } else if !field("scope").split(' ').any(|s| s == "atproto") {
        Some(("invalid_scope", "scope must include atproto"))
    } else if !field("scope").split(' ').all(|s| {
        metadata["scope"]
            .as_str()
            .unwrap_or("")
            .split(' ')
            .any(|allowed| allowed == s)
    }) {
        Some((
            "invalid_scope",
            "scope asks for more than the client's metadata declares",
        ))
    } else {
        None
    };
    if let Some((code, why)) = refusal {
        return with_nonce(bad_request(code, why), &nonce);
    }
    let request_uri = format!("urn:ietf:params:oauth:request_uri:{}", token("req"));
    let mut inner = shared.lock();
    inner.known_clients.insert(client_id.clone());
    inner.pushed_forms.push(form.clone());
    inner.pushed.insert(
        request_uri.clone(),
        Pushed {
            client_id,
            redirect_uri: field("redirect_uri").to_owned(),
            scope: field("scope").to_owned(),
            state: field("state").to_owned(),
            challenge: field("code_challenge").to_owned(),
            login_hint: form.get("login_hint").cloned(),
            key,
            expires: Instant::now() + REQUEST_LIFETIME,
            used: false,
        },
    );
    with_nonce(
        (
            StatusCode::CREATED,
            axum::Json(
                json!({"request_uri": request_uri, "expires_in": REQUEST_LIFETIME.as_secs() - 1}),
            ),
        )
            .into_response(),
        &nonce,
    )
}

pub(super) fn with_nonce(mut response: Response, nonce: &str) -> Response {
    if let Ok(value) = header::HeaderValue::from_str(nonce) {
        response.headers_mut().insert("dpop-nonce", value);
    }
    response
}

fn listed(list: &Value, wanted: &str) -> bool {
    list.as_array()
        .is_some_and(|items| items.iter().any(|i| i.as_str() == Some(wanted)))
}

/// Fetches the client's metadata from its client id and checks what the
/// atproto profile requires of a public web client. The fakes run over
/// plain HTTP on loopback, so an http client id on a loopback host is
/// accepted where a real server wants https.
async fn fetch_client_metadata(
    shared: &Shared,
    client_id: &str,
) -> Result<Value, (&'static str, String)> {
    let invalid = |why: &str| ("invalid_client_metadata", why.to_owned());
    let url = Url::parse(client_id)
        .map_err(|_| ("invalid_client", "client_id is not a URL".to_owned()))?;
    let loopback = matches!(url.host_str(), Some("127.0.0.1" | "localhost" | "[::1]"));
    if url.scheme() != "https" && !(url.scheme() == "http" && loopback) {
        return Err(("invalid_client", "client_id must be an https URL".into()));
    }
    if url.fragment().is_some() || !url.username().is_empty() {
        return Err((
            "invalid_client",
            "client_id must not carry a fragment or credentials".into(),
        ));
    }
    shared.lock().metadata_fetches.push(client_id.to_owned());
    let client = reqwest::Client::builder()
        .no_proxy()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(5))
        .build()
        .map_err(|_| ("invalid_client", "no HTTP client".to_owned()))?;
    let answer = client
        .get(url)
        .header(header::ACCEPT, "application/json")
        .send()
        .await
        .map_err(|_| {
            (
                "invalid_client",
                "client metadata could not be fetched".to_owned(),
            )
        })?;
    if answer.status() != reqwest::StatusCode::OK {
        return Err((
            "invalid_client",
            format!("client metadata answered HTTP {}", answer.status().as_u16()),
        ));
    }
    let metadata: Value = answer
        .json()
        .await
        .map_err(|_| invalid("client metadata is not JSON"))?;
    if metadata["client_id"].as_str() != Some(client_id) {
        return Err(invalid(
            "client_id in the metadata is not the URL it was fetched from",
        ));
    }
    if metadata["dpop_bound_access_tokens"] != true {
        return Err(invalid("dpop_bound_access_tokens must be true"));
    }
    if !listed(&metadata["grant_types"], "authorization_code") {
        return Err(invalid("grant_types must include authorization_code"));
    }
    if !listed(&metadata["response_types"], "code") {
        return Err(invalid("response_types must include code"));
    }
    if !metadata["scope"]
        .as_str()
        .is_some_and(|s| s.split(' ').any(|s| s == "atproto"))
    {
        return Err(invalid("scope must include atproto"));
    }
    if metadata["token_endpoint_auth_method"]
        .as_str()
        .unwrap_or("none")
        != "none"
    {
        return Err(invalid(
            "only public clients (token_endpoint_auth_method none) are served here",
        ));
    }
    if !matches!(
        metadata.get("application_type").and_then(Value::as_str),
        None | Some("web")
    ) {
        return Err(invalid("application_type must be web"));
    }
    let redirects = metadata["redirect_uris"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let usable = |r: &Value| {
        r.as_str()
            .and_then(|r| Url::parse(r).ok())
            .is_some_and(|r| {
                r.scheme() == "https"
                    || (r.scheme() == "http"
                        && matches!(r.host_str(), Some("127.0.0.1" | "localhost" | "[::1]")))
            })
    };
    if redirects.is_empty() || !redirects.iter().all(usable) {
        return Err(invalid("redirect_uris must be https URLs"));
    }
    Ok(metadata)
}

#[derive(serde::Deserialize)]
pub(super) struct AuthorizeQuery {
    client_id: Option<String>,
    request_uri: Option<String>,
}

/// The consent screen, reached with the `request_uri` alone: 302 to the
/// client's redirect URI with `code`, `state` and `iss` (RFC 9207), or
/// `error=access_denied`; a malformed request is a 400 page (no redirect).
pub(super) async fn authorize(
    State(shared): State<Arc<Shared>>,
    Query(query): Query<AuthorizeQuery>,
) -> Response {
    if let Some(response) = shared.script.next() {
        return response;
    }
    let page =
        |why: &str| (StatusCode::BAD_REQUEST, format!("invalid request: {why}")).into_response();
    let issuer = shared.origin().to_owned();
    let mut inner = shared.lock();
    let Some(request_uri) = query.request_uri else {
        return page("request_uri is required");
    };
    let Some(pushed) = inner.pushed.get_mut(&request_uri) else {
        return page("unknown request_uri");
    };
    if pushed.used || pushed.expires < Instant::now() {
        return page("request_uri was used or has expired");
    }
    if query.client_id.as_deref() != Some(pushed.client_id.as_str()) {
        return page("client_id does not match the pushed request");
    }
    pushed.used = true;
    let (redirect_uri, state, hint) = (
        pushed.redirect_uri.clone(),
        pushed.state.clone(),
        pushed.login_hint.clone(),
    );
    let consent = match inner.consents.pop_front() {
        Some(consent) => consent,
        None => {
            let hinted = hint.and_then(|hint| {
                inner
                    .identities
                    .iter()
                    .find(|i| i.handle == hint || i.did == hint)
            });
            match hinted.or(inner.identities.last()) {
                Some(identity) => Consent::Approve(User::new(&identity.did, &identity.handle, "")),
                None => return page("no account can sign in"),
            }
        }
    };
    let Ok(mut target) = Url::parse(&redirect_uri) else {
        return page("redirect_uri");
    };
    {
        let mut pairs = target.query_pairs_mut();
        match consent {
            Consent::Approve(user) => {
                let code = token("cod");
                let pushed = &inner.pushed[&request_uri];
                let granted = Code {
                    client_id: pushed.client_id.clone(),
                    redirect_uri: pushed.redirect_uri.clone(),
                    challenge: pushed.challenge.clone(),
                    key: pushed.key.clone(),
                    did: user.id,
                    scope: pushed.scope.clone(),
                    used: false,
                };
                inner.codes.insert(code.clone(), granted);
                pairs.append_pair("code", &code);
            }
            Consent::Deny => {
                pairs.append_pair("error", "access_denied");
                pairs.append_pair("error_description", "The user denied the request");
            }
        }
        pairs.append_pair("state", &state);
        pairs.append_pair("iss", &issuer);
    }
    (StatusCode::FOUND, [(header::LOCATION, target.to_string())]).into_response()
}

/// Redeems a code once (a second try fails, as it must): the client, the
/// redirect URI, the PKCE verifier and the DPoP key of the PAR must match.
pub(super) fn redeem(
    inner: &mut super::Inner,
    form: &HashMap<String, String>,
    key: &(String, String),
) -> Result<Redeemed, &'static str> {
    inner.code_redemptions += 1;
    let presented = form.get("code").map(String::as_str).unwrap_or("");
    let code = inner.codes.get_mut(presented).ok_or("Invalid code")?;
    if code.used {
        return Err("Code already used");
    }
    code.used = true;
    if form.get("client_id") != Some(&code.client_id) {
        return Err("client_id does not match the authorization request");
    }
    if form.get("redirect_uri") != Some(&code.redirect_uri) {
        return Err("redirect_uri does not match the authorization request");
    }
    let verifier = form
        .get("code_verifier")
        .ok_or("code_verifier is required")?;
    if URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes())) != code.challenge {
        return Err("code_verifier does not match the code_challenge");
    }
    if *key != code.key {
        return Err("DPoP key does not match the one of the authorization request");
    }
    Ok(Redeemed {
        did: code.did.clone(),
        scope: code.scope.clone(),
        client_id: code.client_id.clone(),
    })
}
