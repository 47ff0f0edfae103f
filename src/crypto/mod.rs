//! Credentials at rest: AES-256-GCM with a random 96-bit nonce per value, the
//! account id and the field name bound as associated data (so a ciphertext
//! cannot be replayed onto another account or swapped between fields), and
//! the key id stored beside each value so keys can rotate.

use std::fmt;

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use base64::Engine as _;
use secrecy::{ExposeSecret, SecretString};

use crate::domain::AccountId;

mod signing;
pub use signing::SigningKey;

const NONCE_LEN: usize = 12;

#[derive(Debug, thiserror::Error)]
pub enum CryptoError {
    #[error("crypto.keys: {0}")]
    BadKeys(String),
    #[error("no key with id {0:?} is configured in crypto.keys")]
    UnknownKeyId(String),
    #[error(
        "stored {field} could not be decrypted with key {key_id:?}: ciphertext altered or bound to another account"
    )]
    Tampered { field: &'static str, key_id: String },
}

/// Which stored value a ciphertext holds; part of the associated data.
#[derive(Clone, Copy, Debug)]
pub enum Field {
    AccessToken,
    RefreshToken,
    /// An account's DPoP private key (atproto OAuth), as a private JWK.
    DpopKey,
    /// A pending connect flow's secrets (PKCE verifier, DPoP key, ...).
    ConnectSecrets,
    /// An OAuth client secret the daemon obtained itself (a Mastodon app).
    ClientSecret,
}

impl Field {
    fn name(self) -> &'static str {
        match self {
            Field::AccessToken => "access token",
            Field::RefreshToken => "refresh token",
            Field::DpopKey => "DPoP key",
            Field::ConnectSecrets => "connect secrets",
            Field::ClientSecret => "client secret",
        }
    }
}

/// A key id is stored beside every ciphertext and bound into its associated
/// data; `keys generate` and start-up both use this rule.
pub fn validate_key_id(id: &str) -> Result<(), String> {
    let valid = !id.is_empty()
        && id.len() <= 32
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if valid {
        Ok(())
    } else {
        Err("key id must be 1-32 characters of A-Z a-z 0-9 - _".to_owned())
    }
}

/// The configured keys, newest first.
pub struct Keyring {
    keys: Vec<(String, Aes256Gcm)>,
}

impl fmt::Debug for Keyring {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Keyring")
            .field("key_ids", &self.key_ids().collect::<Vec<_>>())
            .finish()
    }
}

impl Keyring {
    /// Parses `id:base64key,id:base64key` (newest first). Errors say which
    /// entry is wrong without echoing key material.
    pub fn parse(spec: &SecretString) -> Result<Self, CryptoError> {
        let mut keys: Vec<(String, Aes256Gcm)> = Vec::new();
        for (index, entry) in spec.expose_secret().split(',').enumerate() {
            let entry = entry.trim();
            let position = index + 1;
            let (id, encoded) = entry.split_once(':').ok_or_else(|| {
                CryptoError::BadKeys(format!("entry {position} is not of the form id:base64key"))
            })?;
            validate_key_id(id)
                .map_err(|problem| CryptoError::BadKeys(format!("entry {position}: {problem}")))?;
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(encoded.trim())
                .map_err(|_| {
                    CryptoError::BadKeys(format!(
                        "entry {position} (id {id:?}): key is not valid base64"
                    ))
                })?;
            if bytes.len() != 32 {
                return Err(CryptoError::BadKeys(format!(
                    "entry {position} (id {id:?}): key must be 32 bytes, got {}",
                    bytes.len()
                )));
            }
            if keys.iter().any(|(existing, _)| existing == id) {
                return Err(CryptoError::BadKeys(format!("key id {id:?} appears twice")));
            }
            let cipher = Aes256Gcm::new_from_slice(&bytes).expect("length checked above");
            keys.push((id.to_owned(), cipher));
        }
        if keys.is_empty() {
            return Err(CryptoError::BadKeys("no key configured".into()));
        }
        Ok(Self { keys })
    }

    /// A keyring with one fresh random key, for the demo and tests.
    pub fn generate(id: &str) -> Self {
        let key = Aes256Gcm::generate_key(aes_gcm::aead::OsRng);
        let spec = format!(
            "{id}:{}",
            base64::engine::general_purpose::STANDARD.encode(key)
        );
        Self::parse(&SecretString::from(spec)).expect("generated key is valid")
    }

    pub fn primary_key_id(&self) -> &str {
        &self.keys[0].0
    }

    pub fn key_ids(&self) -> impl Iterator<Item = &str> {
        self.keys.iter().map(|(id, _)| id.as_str())
    }

    pub fn has_key(&self, id: &str) -> bool {
        self.keys.iter().any(|(k, _)| k == id)
    }

    /// Encrypts under the primary key; returns `nonce || ciphertext`.
    pub fn encrypt(&self, account: &AccountId, field: Field, plaintext: &str) -> Vec<u8> {
        self.encrypt_for(&account.to_string(), field, plaintext)
    }

    /// `encrypt` for a value that belongs to something other than an
    /// account (a connect session, an app registration): `owner` is bound
    /// into the associated data the same way.
    pub fn encrypt_for(&self, owner: &str, field: Field, plaintext: &str) -> Vec<u8> {
        let (key_id, cipher) = &self.keys[0];
        let nonce_bytes: [u8; NONCE_LEN] = rand::random();
        let aad = associated_data(owner, field, key_id);
        let ciphertext = cipher
            .encrypt(
                Nonce::from_slice(&nonce_bytes),
                Payload {
                    msg: plaintext.as_bytes(),
                    aad: &aad,
                },
            )
            .expect("AES-GCM encryption of an in-memory buffer cannot fail");
        let mut out = Vec::with_capacity(NONCE_LEN + ciphertext.len());
        out.extend_from_slice(&nonce_bytes);
        out.extend_from_slice(&ciphertext);
        out
    }

    pub fn decrypt(
        &self,
        account: &AccountId,
        field: Field,
        key_id: &str,
        stored: &[u8],
    ) -> Result<SecretString, CryptoError> {
        self.decrypt_for(&account.to_string(), field, key_id, stored)
    }

    pub fn decrypt_for(
        &self,
        owner: &str,
        field: Field,
        key_id: &str,
        stored: &[u8],
    ) -> Result<SecretString, CryptoError> {
        let (_, cipher) = self
            .keys
            .iter()
            .find(|(id, _)| id == key_id)
            .ok_or_else(|| CryptoError::UnknownKeyId(key_id.to_owned()))?;
        let tampered = || CryptoError::Tampered {
            field: field.name(),
            key_id: key_id.to_owned(),
        };
        if stored.len() < NONCE_LEN {
            return Err(tampered());
        }
        let (nonce, ciphertext) = stored.split_at(NONCE_LEN);
        let aad = associated_data(owner, field, key_id);
        let plaintext = cipher
            .decrypt(
                Nonce::from_slice(nonce),
                Payload {
                    msg: ciphertext,
                    aad: &aad,
                },
            )
            .map_err(|_| tampered())?;
        let text = String::from_utf8(plaintext).map_err(|_| tampered())?;
        Ok(SecretString::from(text))
    }
}

fn associated_data(owner: &str, field: Field, key_id: &str) -> Vec<u8> {
    let field = match field {
        Field::AccessToken => "access",
        Field::RefreshToken => "refresh",
        Field::DpopKey => "dpop",
        Field::ConnectSecrets => "connect",
        Field::ClientSecret => "client-secret",
    };
    format!("tokenwarden/v1/{owner}/{field}/{key_id}").into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(s: &str) -> SecretString {
        SecretString::from(s.to_owned())
    }

    #[test]
    fn round_trip_and_binding() {
        let ring = Keyring::generate("k1");
        let a = AccountId::generate();
        let b = AccountId::generate();
        let blob = ring.encrypt(&a, Field::RefreshToken, "rt-secret");
        let back = ring.decrypt(&a, Field::RefreshToken, "k1", &blob).unwrap();
        assert_eq!(back.expose_secret(), "rt-secret");
        assert!(matches!(
            ring.decrypt(&b, Field::RefreshToken, "k1", &blob),
            Err(CryptoError::Tampered { .. })
        ));
        assert!(matches!(
            ring.decrypt(&a, Field::AccessToken, "k1", &blob),
            Err(CryptoError::Tampered { .. })
        ));
    }

    #[test]
    fn nonces_differ_per_value() {
        let ring = Keyring::generate("k1");
        let a = AccountId::generate();
        assert_ne!(
            ring.encrypt(&a, Field::AccessToken, "x"),
            ring.encrypt(&a, Field::AccessToken, "x")
        );
    }

    #[test]
    fn bad_specs_name_the_entry_without_key_material() {
        let short = base64::engine::general_purpose::STANDARD.encode([7u8; 16]);
        let err = Keyring::parse(&spec(&format!("k1:{short}")))
            .unwrap_err()
            .to_string();
        assert!(err.contains("entry 1") && err.contains("32 bytes"), "{err}");
        assert!(!err.contains(&short));
        let err = Keyring::parse(&spec("nocolon")).unwrap_err().to_string();
        assert!(err.contains("id:base64key"), "{err}");
        let good = base64::engine::general_purpose::STANDARD.encode([1u8; 32]);
        let err = Keyring::parse(&spec(&format!("k1:{good},k1:{good}")))
            .unwrap_err()
            .to_string();
        assert!(err.contains("twice"), "{err}");
    }
}
