//! The authorization half of a platform's OAuth server, shared by the
//! platform fakes: the consent screen (answered by a simulated user), the
//! codes it hands out, and their redemption with the checks a strict server
//! makes (single use, same redirect URI, PKCE S256 verifier).

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;

use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use sha2::{Digest, Sha256};
use url::Url;

use super::server::token;

/// Who signs in at the consent screen.
#[derive(Clone, Debug)]
pub struct User {
    pub id: String,
    pub handle: String,
    pub name: String,
}

impl User {
    pub fn new(id: &str, handle: &str, name: &str) -> Self {
        Self {
            id: id.into(),
            handle: handle.into(),
            name: name.into(),
        }
    }

    fn random() -> Self {
        let n = rand::random::<u32>();
        Self::new(&format!("{n}"), &format!("user{n}"), &format!("User {n}"))
    }
}

/// What the simulated user does on the next consent screen.
#[derive(Clone, Debug)]
pub enum Consent {
    Approve(User),
    /// The user presses "Cancel": `error=access_denied`.
    Deny,
}

/// A code handed out, waiting to be exchanged.
#[derive(Clone, Debug)]
pub struct Granted {
    pub user: User,
    pub client_id: String,
    pub redirect_uri: String,
    /// The `scope` parameter as sent.
    pub scope: String,
    /// The scopes granted, split by the platform's separator.
    pub scopes: Vec<String>,
    /// The whole authorization request (Google's `access_type`, `prompt`).
    pub request: HashMap<String, String>,
    challenge: Option<String>,
}

impl Granted {
    pub fn has_scope(&self, scope: &str) -> bool {
        self.scopes.iter().any(|s| s == scope)
    }
}

/// What the platform requires of an authorization request.
#[derive(Clone, Copy, Debug)]
pub struct Rules {
    /// The query parameter naming the client (`client_key` at TikTok).
    pub client_id_param: &'static str,
    /// Refuse requests without an S256 `code_challenge` (X does).
    pub pkce_required: bool,
    /// How `scope` lists scopes: a space (RFC 6749 3.3), or a comma
    /// (Pinterest, TikTok). A list split the other way names scopes the
    /// platform does not know.
    pub scope_separator: char,
}

impl Default for Rules {
    fn default() -> Self {
        Self {
            client_id_param: "client_id",
            pkce_required: false,
            scope_separator: ' ',
        }
    }
}

#[derive(Default)]
pub struct Desk {
    inner: Mutex<DeskInner>,
}

#[derive(Default)]
struct DeskInner {
    next: VecDeque<Consent>,
    codes: HashMap<String, Granted>,
    redeemed: HashMap<String, Granted>,
    requests: Vec<HashMap<String, String>>,
}

/// Why a code was refused (the `error_description`; `error` is always
/// `invalid_grant`).
pub type Refusal = &'static str;

impl Desk {
    /// The next consent screen is answered this way; without one queued,
    /// a new random user approves.
    pub fn next_consent(&self, consent: Consent) {
        self.lock().next.push_back(consent);
    }

    /// Every authorization request's query, in order.
    pub fn requests(&self) -> Vec<HashMap<String, String>> {
        self.lock().requests.clone()
    }

    /// The consent screen: answers the browser with a redirect to the
    /// client's `redirect_uri`, carrying a code or `access_denied`; or 400
    /// (shown to the user, no redirect) when the request is malformed.
    pub fn authorize(
        &self,
        query: &HashMap<String, String>,
        client_id: &str,
        rules: Rules,
    ) -> Response {
        let mut inner = self.lock();
        inner.requests.push(query.clone());
        let bad = |what: &str| {
            (StatusCode::BAD_REQUEST, format!("invalid request: {what}")).into_response()
        };
        if query.get(rules.client_id_param).map(String::as_str) != Some(client_id) {
            return bad("unknown client");
        }
        if query.get("response_type").map(String::as_str) != Some("code") {
            return bad("response_type must be code");
        }
        let Some(redirect) = query.get("redirect_uri").and_then(|r| Url::parse(r).ok()) else {
            return bad("redirect_uri");
        };
        let challenge = match (
            query.get("code_challenge"),
            query.get("code_challenge_method").map(String::as_str),
        ) {
            (Some(c), Some("S256")) if c.len() == 43 => Some(c.clone()),
            (None, None) if !rules.pkce_required => None,
            _ => return bad("code_challenge must be S256"),
        };
        let state = query.get("state").cloned();
        let Some(scope) = query.get("scope").filter(|s| !s.trim().is_empty()) else {
            return bad("scope is required");
        };
        let scopes: Vec<String> = scope
            .split(rules.scope_separator)
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .collect();
        if let Some(unknown) = scopes.iter().find(|s| s.contains([' ', ','])) {
            // The platform reads one scope it has never heard of.
            return redirect_error(
                &redirect,
                "invalid_scope",
                &format!("unknown scope: {unknown}"),
                state.as_deref(),
            );
        }
        let consent = inner
            .next
            .pop_front()
            .unwrap_or_else(|| Consent::Approve(User::random()));
        let mut target = redirect.clone();
        {
            let mut pairs = target.query_pairs_mut();
            match consent {
                Consent::Approve(user) => {
                    let code = token("code");
                    pairs.append_pair("code", &code);
                    inner.codes.insert(
                        code,
                        Granted {
                            user,
                            client_id: client_id.to_owned(),
                            redirect_uri: redirect.to_string(),
                            scope: scope.clone(),
                            scopes,
                            request: query.clone(),
                            challenge,
                        },
                    );
                }
                Consent::Deny => {
                    pairs.append_pair("error", "access_denied");
                    pairs.append_pair("error_description", "The user denied the request");
                }
            }
            if let Some(state) = &state {
                pairs.append_pair("state", state);
            }
        }
        (StatusCode::FOUND, [(header::LOCATION, target.to_string())]).into_response()
    }

    /// Redeems a code once, checking what RFC 6749 4.1.3 and RFC 7636 4.6
    /// require. A second redemption fails, as at every real platform.
    pub fn redeem(
        &self,
        code: &str,
        redirect_uri: Option<&str>,
        verifier: Option<&str>,
    ) -> Result<Granted, Refusal> {
        let mut inner = self.lock();
        if inner.redeemed.contains_key(code) {
            return Err("authorization code was already redeemed");
        }
        let granted = inner
            .codes
            .remove(code)
            .ok_or("authorization code is invalid")?;
        inner.redeemed.insert(code.to_owned(), granted.clone());
        if redirect_uri != Some(granted.redirect_uri.as_str()) {
            return Err("redirect_uri does not match the authorization request");
        }
        match (&granted.challenge, verifier) {
            (Some(challenge), Some(verifier)) => {
                let computed = base64::engine::general_purpose::URL_SAFE_NO_PAD
                    .encode(Sha256::digest(verifier.as_bytes()));
                if &computed != challenge {
                    return Err("code_verifier does not match the code_challenge");
                }
            }
            (Some(_), None) => return Err("code_verifier is required"),
            (None, Some(_)) => return Err("code_verifier was sent without a code_challenge"),
            (None, None) => {}
        }
        Ok(granted)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, DeskInner> {
        self.inner.lock().expect("desk poisoned")
    }
}

/// RFC 6749 4.1.2.1: the browser goes back to the client with the error.
fn redirect_error(redirect: &Url, error: &str, description: &str, state: Option<&str>) -> Response {
    let mut target = redirect.clone();
    {
        let mut pairs = target.query_pairs_mut();
        pairs.append_pair("error", error);
        pairs.append_pair("error_description", description);
        if let Some(state) = state {
            pairs.append_pair("state", state);
        }
    }
    (StatusCode::FOUND, [(header::LOCATION, target.to_string())]).into_response()
}
