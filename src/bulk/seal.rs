//! Credentials leave the daemon only sealed to a recipient's age (X25519)
//! public key, one sealed value per exported account, and come back only
//! with the matching identity. The daemon never holds the private key of
//! an export it writes.

use std::io::Read;
use std::str::FromStr;

use base64::Engine as _;
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};

/// An account's credentials in clear: only ever inside a sealed value.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Credentials {
    pub access_token: String,
    #[serde(default)]
    pub refresh_token: Option<String>,
    #[serde(default)]
    pub dpop_private_jwk: Option<String>,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Credentials([redacted])")
    }
}

/// The public key an export's credentials are sealed to (`age1…`).
#[derive(Clone)]
pub struct Recipient(age::x25519::Recipient);

impl FromStr for Recipient {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        age::x25519::Recipient::from_str(s.trim())
            .map(Recipient)
            .map_err(|_| "not an age X25519 recipient (a public key starting age1…)".to_owned())
    }
}

impl std::fmt::Debug for Recipient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // A public key: nothing to hide.
        write!(f, "Recipient({})", self.0)
    }
}

/// Private keys that open sealed credentials: an age identity file
/// (`AGE-SECRET-KEY-1…` lines; `#` comments and blank lines ignored).
pub struct Identities(Vec<age::x25519::Identity>);

impl Identities {
    /// Errors name the line, never its content.
    pub fn parse(text: &SecretString) -> Result<Self, String> {
        let mut keys = Vec::new();
        for (index, line) in text.expose_secret().lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let key = age::x25519::Identity::from_str(line).map_err(|_| {
                format!(
                    "line {}: not an age X25519 identity (AGE-SECRET-KEY-1…)",
                    index + 1
                )
            })?;
            keys.push(key);
        }
        if keys.is_empty() {
            return Err("no age identity in the file".to_owned());
        }
        Ok(Self(keys))
    }
}

impl std::fmt::Debug for Identities {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Identities({} keys)", self.0.len())
    }
}

/// Seals credentials to `recipient`: age binary, base64.
pub fn seal(recipient: &Recipient, credentials: &Credentials) -> String {
    let plain = SecretString::from(serde_json::to_string(credentials).expect("strings serialize"));
    let sealed = age::encrypt(&recipient.0, plain.expose_secret().as_bytes())
        .expect("encrypting to an X25519 recipient into memory cannot fail");
    base64::engine::general_purpose::STANDARD.encode(sealed)
}

/// Opens a sealed value. The error says what failed, never what was in it.
pub fn open(identities: &Identities, sealed: &str) -> Result<Credentials, &'static str> {
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(sealed.trim())
        .map_err(|_| "is not base64")?;
    let decryptor =
        age::Decryptor::new_buffered(&bytes[..]).map_err(|_| "is not age ciphertext")?;
    let mut reader = decryptor
        .decrypt(identities.0.iter().map(|i| i as &dyn age::Identity))
        .map_err(|_| "cannot be opened with the given identity (sealed to another recipient?)")?;
    let mut plain = Vec::new();
    reader
        .read_to_end(&mut plain)
        .map_err(|_| "is damaged (its ciphertext does not authenticate)")?;
    let plain = SecretString::from(String::from_utf8(plain).map_err(|_| "does not hold text")?);
    serde_json::from_str(plain.expose_secret())
        .map_err(|_| "does not hold access_token, refresh_token and dpop_private_jwk")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sealed_credentials_open_only_with_the_matching_identity() {
        let identity = age::x25519::Identity::generate();
        let recipient: Recipient = identity.to_public().to_string().parse().unwrap();
        let identities = Identities::parse(&SecretString::from(format!(
            "# created: now\n{}\n",
            identity.to_string().expose_secret()
        )))
        .unwrap();
        let sealed = seal(
            &recipient,
            &Credentials {
                access_token: "canary-at-1234567890".into(),
                refresh_token: Some("canary-rt-1234567890".into()),
                dpop_private_jwk: None,
            },
        );
        assert!(!sealed.contains("canary"));
        let opened = open(&identities, &sealed).unwrap();
        assert_eq!(opened.access_token, "canary-at-1234567890");
        assert_eq!(
            opened.refresh_token.as_deref(),
            Some("canary-rt-1234567890")
        );

        let other = age::x25519::Identity::generate();
        let others = Identities::parse(&other.to_string()).unwrap();
        assert!(
            open(&others, &sealed)
                .unwrap_err()
                .contains("another recipient")
        );
        assert_eq!(open(&identities, "%%%").unwrap_err(), "is not base64");
        assert_eq!(
            open(&identities, "AAAA").unwrap_err(),
            "is not age ciphertext"
        );
        let err = Identities::parse(&SecretString::from("AGE-SECRET-KEY-1NOPE")).unwrap_err();
        assert!(err.starts_with("line 1") && !err.contains("NOPE"), "{err}");
        assert!("age1nope".parse::<Recipient>().is_err());
    }

    proptest::proptest! {
        /// Any text as a sealed value: an error, never a panic.
        #[test]
        fn any_sealed_text_is_refused_cleanly(text in ".{0,400}", bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..400)) {
            let identities = Identities(vec![age::x25519::Identity::generate()]);
            proptest::prop_assert!(open(&identities, &text).is_err());
            let encoded = base64::engine::general_purpose::STANDARD.encode(&bytes);
            proptest::prop_assert!(open(&identities, &encoded).is_err());
        }
    }
}
