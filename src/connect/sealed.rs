//! A flow's secrets at rest: encrypted with the account keys and bound to
//! their session, so a ciphertext copied to another session does not open.

use secrecy::{ExposeSecret, SecretString};

use super::{ConnectError, SessionSecrets};
use crate::crypto::{Field, Keyring};
use crate::store::connect::SessionRow;

pub(super) fn seal(
    keyring: &Keyring,
    hash: &[u8],
    secrets: &SessionSecrets,
) -> Result<Option<(Vec<u8>, String)>, ConnectError> {
    let json = serde_json::to_string(&SealedSecrets::from(secrets))
        .map_err(|_| ConnectError::invalid_request("session secrets could not be stored"))?;
    if json == "{}" {
        return Ok(None);
    }
    let bytes = keyring.encrypt_for(&owner(hash), Field::ConnectSecrets, &json);
    Ok(Some((bytes, keyring.primary_key_id().to_owned())))
}

pub(super) fn open(
    keyring: &Keyring,
    hash: &[u8],
    session: &SessionRow,
) -> Result<SessionSecrets, ConnectError> {
    let (Some(bytes), Some(key_id)) = (&session.secrets, &session.secrets_key_id) else {
        return Ok(SessionSecrets::default());
    };
    let json = keyring
        .decrypt_for(&owner(hash), Field::ConnectSecrets, key_id, bytes)
        .map_err(|e| ConnectError::invalid_request(format!("session secrets: {e}")))?;
    let sealed: SealedSecrets = serde_json::from_str(json.expose_secret())
        .map_err(|_| ConnectError::invalid_request("session secrets are unreadable"))?;
    Ok(sealed.into())
}

/// Secrets are bound to their session: a ciphertext copied to another
/// session's row does not open.
fn owner(hash: &[u8]) -> String {
    let hex: String = hash.iter().map(|b| format!("{b:02x}")).collect();
    format!("connect/{hex}")
}

/// `SessionSecrets` as stored: plain strings inside the ciphertext.
#[derive(serde::Serialize, serde::Deserialize, Default)]
struct SealedSecrets {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    code_verifier: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    dpop_private_jwk: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    user_access_token: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    refresh_token: Option<String>,
}

impl From<&SessionSecrets> for SealedSecrets {
    fn from(s: &SessionSecrets) -> Self {
        let open = |v: &Option<SecretString>| v.as_ref().map(|s| s.expose_secret().to_owned());
        Self {
            code_verifier: open(&s.code_verifier),
            dpop_private_jwk: open(&s.dpop_private_jwk),
            user_access_token: open(&s.user_access_token),
            refresh_token: open(&s.refresh_token),
        }
    }
}

impl From<SealedSecrets> for SessionSecrets {
    fn from(s: SealedSecrets) -> Self {
        Self {
            code_verifier: s.code_verifier.map(SecretString::from),
            dpop_private_jwk: s.dpop_private_jwk.map(SecretString::from),
            user_access_token: s.user_access_token.map(SecretString::from),
            refresh_token: s.refresh_token.map(SecretString::from),
        }
    }
}
