//! App-password sessions: refreshSession on the account's PDS, getSession
//! as the health check, and the reading of their answers.

use serde_json::{Map, Value};
use url::Url;

use super::jwt::remaining;
use super::xrpc::{Asked, xrpc_error};
use super::{BlueskyRefresh, host_refused, meta_str};
use crate::domain::{AccessToken, RefreshToken};
use crate::providers::token_response::{json_object, short};
use crate::providers::{
    AccountState, Checked, FailureKind, HttpReply, ProviderError, RefreshRequest, TokenGrant,
};

const REFRESH_PATH: &str = "/xrpc/com.atproto.server.refreshSession";
const SESSION_PATH: &str = "/xrpc/com.atproto.server.getSession";

impl BlueskyRefresh {
    /// The account's PDS. Missing or refused hosts are this account's
    /// problem (the user chose them), never the app's: transient, flagged.
    fn pds(&self, meta: &Value, path: &str) -> Result<Url, ProviderError> {
        let host = meta_str(meta, "pds_host").ok_or_else(|| {
            ProviderError::transient("the account has no meta.pds_host: its PDS is unknown")
                .with_code("pds_unknown")
        })?;
        let origin = self.guard.origin(host).map_err(host_refused)?;
        origin
            .join(path)
            .map_err(|_| host_refused("cannot build the URL".into()))
    }

    pub(super) async fn refresh_session(
        &self,
        request: RefreshRequest<'_>,
    ) -> Result<TokenGrant, ProviderError> {
        let refresh = request.refresh_token.ok_or_else(|| {
            ProviderError::new(FailureKind::RejectedExpired, "no refresh token is stored")
        })?;
        let url = self.pds(request.meta, REFRESH_PATH)?;
        let builder = self
            .http
            .inner()
            .post(url)
            .bearer_auth(refresh.expose())
            .header(reqwest::header::ACCEPT, "application/json");
        let reply = self.http.send(builder).await?;
        interpret_session(&reply)
    }

    pub(super) async fn check_session(
        &self,
        request: RefreshRequest<'_>,
    ) -> Result<Checked, ProviderError> {
        let url = self.pds(request.meta, SESSION_PATH)?;
        let builder = self
            .http
            .inner()
            .get(url)
            .bearer_auth(request.access_token.expose())
            .header(reqwest::header::ACCEPT, "application/json");
        let reply = self.http.send(builder).await?;
        if !(200..300).contains(&reply.status) {
            return Err(xrpc_error(&reply, Asked::Check));
        }
        let body = json_object(&reply)?;
        Ok(Checked {
            account: session_state(&body),
            note: None,
        })
    }
}

/// A refreshSession answer.
pub(in crate::providers) fn interpret_session(
    reply: &HttpReply,
) -> Result<TokenGrant, ProviderError> {
    if !(200..300).contains(&reply.status) {
        return Err(xrpc_error(reply, Asked::Refresh));
    }
    let body = json_object(reply)?;
    let malformed = |what: String| {
        ProviderError::transient(format!("malformed session: {what}"))
            .with_status(reply.status)
            .with_code("malformed")
    };
    let access = jwt_field(&body, "accessJwt").map_err(&malformed)?;
    let refresh = jwt_field(&body, "refreshJwt").map_err(&malformed)?;
    let now = chrono::Utc::now().timestamp();
    // A JWT that cannot be read is garbage and refuses the answer (see the
    // module docs); an odd `exp` is clamped and noted.
    let expires = remaining("accessJwt", access, now).map_err(&malformed)?;
    let refresh_expires = remaining("refreshJwt", refresh, now).map_err(&malformed)?;
    Ok(TokenGrant {
        access_token: AccessToken::new(access),
        refresh_token: Some(RefreshToken::new(refresh)),
        expires_in: expires.value,
        refresh_token_expires_in: refresh_expires.value,
        scopes: None,
        notes: [expires.oddity, refresh_expires.oddity]
            .into_iter()
            .flatten()
            .collect(),
        account: session_state(&body),
    })
}

/// A session's `active` and `status` (com.atproto.server.defs): `active:
/// false` means the account cannot act (deactivated by its owner, suspended,
/// taken down); an answer without `active` says nothing.
fn session_state(body: &Map<String, Value>) -> AccountState {
    match body.get("active") {
        Some(Value::Bool(true)) => AccountState::Active,
        Some(Value::Bool(false)) => {
            let status = body
                .get("status")
                .and_then(Value::as_str)
                .map(short)
                .filter(|s| !s.is_empty())
                .unwrap_or_else(|| "no status given".into());
            AccountState::Inactive(format!("inactive on its PDS: {status}"))
        }
        _ => AccountState::Unreported,
    }
}

fn jwt_field<'a>(body: &'a Map<String, Value>, key: &str) -> Result<&'a str, String> {
    match body.get(key) {
        Some(Value::String(s)) if !s.trim().is_empty() => Ok(s),
        Some(Value::String(_)) => Err(format!("{key} is empty")),
        Some(_) => Err(format!("{key} is not a string")),
        None => Err(format!("{key} is missing")),
    }
}
