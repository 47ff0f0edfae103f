//! The PDS side: app-password sessions with rotating refresh JWTs,
//! refreshSession and getSession, and the controls the tests turn.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Value, json};

use super::{FakeBluesky, Inner, RefreshJwt, Session, Shared};
use crate::server::token;

/// How one app-password session behaves.
#[derive(Clone, Debug)]
pub struct SessionSpec {
    /// Seconds until an access JWT's `exp`.
    pub access_lifetime: i64,
    /// Seconds until a refresh JWT's `exp`; zero or less mints it expired.
    pub refresh_lifetime: i64,
    /// The session is revoked (app password deleted) after this many refreshes.
    pub revoke_after: Option<u32>,
    /// Every n-th refresh call of the session fails with 502 UpstreamFailure.
    pub fail_every: Option<u32>,
}

impl Default for SessionSpec {
    fn default() -> Self {
        Self {
            access_lifetime: 2 * 3600,
            refresh_lifetime: 90 * 86_400,
            revoke_after: None,
            fail_every: None,
        }
    }
}

#[derive(Clone, Debug)]
pub struct IssuedSession {
    pub did: String,
    pub access_jwt: String,
    pub refresh_jwt: String,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BlueskyAccountState {
    Active,
    TakenDown,
    Deactivated,
}

impl FakeBluesky {
    /// With a grace, a spent refresh JWT presented again within it yields
    /// the same next session (the reference PDS); without (the default), it
    /// revokes the session.
    pub fn set_reuse_grace(&self, grace: Option<Duration>) {
        self.shared.lock().reuse_grace = grace;
    }

    /// A session created with an app password (`createSession`).
    pub fn issue_session(&self, spec: SessionSpec) -> IssuedSession {
        let mut inner = self.shared.lock();
        let index = inner.sessions.len();
        let did = format!("did:plc:fake{index:06}{:08x}", rand::random::<u32>());
        inner.sessions.push(Session {
            did: did.clone(),
            state: BlueskyAccountState::Active,
            revoked: false,
            refreshes: 0,
            calls: 0,
            spec,
        });
        let (access_jwt, refresh_jwt) = mint_session(&mut inner, index);
        IssuedSession {
            did,
            access_jwt,
            refresh_jwt,
        }
    }

    pub fn set_account_state(&self, did: &str, state: BlueskyAccountState) {
        let mut inner = self.shared.lock();
        for session in inner.sessions.iter_mut().filter(|s| s.did == did) {
            session.state = state;
        }
    }

    /// Revokes the session of a refresh JWT (its app password was deleted).
    pub fn revoke_session(&self, refresh_jwt: &str) {
        let mut inner = self.shared.lock();
        if let Some(session) = inner.refresh_jwts.get(refresh_jwt).map(|r| r.session) {
            inner.sessions[session].revoked = true;
        }
    }

    /// Whether this refresh JWT would be accepted now without a replay.
    pub fn is_live_session(&self, refresh_jwt: &str) -> bool {
        let inner = self.shared.lock();
        inner.refresh_jwts.get(refresh_jwt).is_some_and(|r| {
            r.spent.is_none()
                && r.exp > chrono::Utc::now().timestamp()
                && !inner.sessions[r.session].revoked
        })
    }

    /// refreshSession and getSession calls.
    pub fn pds_calls(&self) -> u32 {
        self.shared.lock().pds_calls
    }
}

/// A JWT shaped like the PDS's (HS256, which only the PDS could verify;
/// the signature here is random bytes).
fn jwt(typ: &str, claims: Value) -> String {
    let header = json!({"typ": typ, "alg": "HS256"});
    format!(
        "{}.{}.{}",
        URL_SAFE_NO_PAD.encode(header.to_string()),
        URL_SAFE_NO_PAD.encode(claims.to_string()),
        URL_SAFE_NO_PAD.encode(rand::random::<[u8; 32]>())
    )
}

fn mint_session(inner: &mut Inner, index: usize) -> (String, String) {
    let now = chrono::Utc::now().timestamp();
    let session = &inner.sessions[index];
    let (did, spec) = (session.did.clone(), session.spec.clone());
    let access_exp = now + spec.access_lifetime;
    let refresh_exp = now + spec.refresh_lifetime;
    let access = jwt(
        "at+jwt",
        json!({"scope": "com.atproto.appPass", "sub": did, "aud": "did:web:pds.fake",
               "iat": now, "exp": access_exp}),
    );
    let refresh = jwt(
        "refresh+jwt",
        json!({"scope": "com.atproto.refresh", "sub": did, "aud": "did:web:pds.fake",
               "jti": token("jti"), "iat": now, "exp": refresh_exp}),
    );
    inner
        .access_jwts
        .insert(access.clone(), (index, access_exp));
    inner.refresh_jwts.insert(
        refresh.clone(),
        RefreshJwt {
            session: index,
            exp: refresh_exp,
            spent: None,
        },
    );
    (access, refresh)
}

fn xrpc_error(status: StatusCode, error: &str, message: &str) -> Response {
    (
        status,
        axum::Json(json!({"error": error, "message": message})),
    )
        .into_response()
}

fn bearer(headers: &HeaderMap) -> Option<&str> {
    headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
}

fn session_body(inner: &Inner, index: usize, access: &str, refresh: &str) -> Response {
    let session = &inner.sessions[index];
    let did = &session.did;
    let mut body = json!({
        "accessJwt": access,
        "refreshJwt": refresh,
        "handle": format!("{}.fake.test", &did[8..]),
        "did": did,
        "active": true,
    });
    if session.state == BlueskyAccountState::Deactivated {
        body["active"] = json!(false);
        body["status"] = json!("deactivated");
    }
    axum::Json(body).into_response()
}

pub(super) async fn refresh_session(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
) -> Response {
    let mut inner = shared.lock();
    inner.pds_calls += 1;
    if let Some(response) = shared.script.next() {
        return response;
    }
    let Some(presented) = bearer(&headers) else {
        return xrpc_error(
            StatusCode::UNAUTHORIZED,
            "AuthMissing",
            "Authentication Required",
        );
    };
    let Some(record) = inner.refresh_jwts.get(presented) else {
        return xrpc_error(
            StatusCode::BAD_REQUEST,
            "InvalidToken",
            "Token could not be verified",
        );
    };
    let (index, exp, spent) = (record.session, record.exp, record.spent.clone());
    let now = chrono::Utc::now().timestamp();
    inner.sessions[index].calls += 1;
    let session = &inner.sessions[index];
    if session.revoked {
        return xrpc_error(
            StatusCode::BAD_REQUEST,
            "ExpiredToken",
            "Token has been revoked",
        );
    }
    if exp <= now {
        return xrpc_error(StatusCode::BAD_REQUEST, "ExpiredToken", "Token has expired");
    }
    match session.state {
        BlueskyAccountState::TakenDown => {
            return xrpc_error(
                StatusCode::UNAUTHORIZED,
                "AccountTakedown",
                "Account has been taken down",
            );
        }
        // The reference PDS still refreshes a deactivated account's session
        // and says so in the answer (posting is what fails, 401
        // `AccountDeactivated`).
        BlueskyAccountState::Deactivated | BlueskyAccountState::Active => {}
    }
    if let Some((spent_at, next)) = spent {
        inner.reuse_detected += 1;
        return match inner.reuse_grace {
            Some(grace) if spent_at.elapsed() < grace => {
                // The same next refresh JWT, with a fresh access JWT.
                let (access, _) = mint_session(&mut inner, index);
                session_body(&inner, index, &access, &next)
            }
            Some(_) => xrpc_error(StatusCode::BAD_REQUEST, "ExpiredToken", "Token has expired"),
            None => {
                inner.sessions[index].revoked = true;
                xrpc_error(
                    StatusCode::BAD_REQUEST,
                    "ExpiredToken",
                    "Token has been revoked",
                )
            }
        };
    }
    let session = &inner.sessions[index];
    if session
        .spec
        .fail_every
        .is_some_and(|n| n > 0 && session.calls.is_multiple_of(n))
    {
        return xrpc_error(
            StatusCode::BAD_GATEWAY,
            "UpstreamFailure",
            "Upstream Failure",
        );
    }
    if session
        .spec
        .revoke_after
        .is_some_and(|n| session.refreshes >= n)
    {
        inner.sessions[index].revoked = true;
        return xrpc_error(
            StatusCode::BAD_REQUEST,
            "ExpiredToken",
            "Token has been revoked",
        );
    }
    let (access, refresh) = mint_session(&mut inner, index);
    inner.sessions[index].refreshes += 1;
    if let Some(record) = inner.refresh_jwts.get_mut(presented) {
        record.spent = Some((Instant::now(), refresh.clone()));
    }
    session_body(&inner, index, &access, &refresh)
}

pub(super) async fn get_session(State(shared): State<Arc<Shared>>, headers: HeaderMap) -> Response {
    let mut inner = shared.lock();
    inner.pds_calls += 1;
    if let Some(response) = shared.script.next() {
        return response;
    }
    let Some((index, exp)) = bearer(&headers).and_then(|t| inner.access_jwts.get(t).copied())
    else {
        return xrpc_error(
            StatusCode::BAD_REQUEST,
            "InvalidToken",
            "Token could not be verified",
        );
    };
    let session = &inner.sessions[index];
    if session.revoked {
        return xrpc_error(
            StatusCode::BAD_REQUEST,
            "ExpiredToken",
            "Token has been revoked",
        );
    }
    if exp <= chrono::Utc::now().timestamp() {
        return xrpc_error(StatusCode::BAD_REQUEST, "ExpiredToken", "Token has expired");
    }
    let handle = format!("{}.fake.test", &session.did[8..]);
    match session.state {
        BlueskyAccountState::TakenDown => xrpc_error(
            StatusCode::UNAUTHORIZED,
            "AccountTakedown",
            "Account has been taken down",
        ),
        BlueskyAccountState::Deactivated => axum::Json(json!({
            "handle": handle, "did": session.did, "active": false, "status": "deactivated",
        }))
        .into_response(),
        BlueskyAccountState::Active => axum::Json(json!({
            "handle": handle, "did": session.did, "active": true,
        }))
        .into_response(),
    }
}
