//! The key webhook deliveries are signed with (Standard Webhooks:
//! HMAC-SHA256 over `id.timestamp.body`). It lives with the other keys so
//! that configuration can check it without knowing about delivery.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use hmac::{Hmac, KeyInit, Mac};
use secrecy::{ExposeSecret, SecretSlice};
use sha2::Sha256;

/// The secret an event is signed with; its bytes never leave this type.
pub struct SigningKey(SecretSlice<u8>);

impl SigningKey {
    /// `whsec_<base64>`; the problem is named without echoing the value.
    pub fn parse(text: &str) -> Result<Self, String> {
        let encoded = text
            .trim()
            .strip_prefix("whsec_")
            .ok_or("must start with \"whsec_\" followed by base64")?;
        let bytes = BASE64
            .decode(encoded)
            .map_err(|_| "the part after \"whsec_\" is not valid base64")?;
        if !(24..=64).contains(&bytes.len()) {
            return Err(format!(
                "must hold 24 to 64 random bytes, not {}",
                bytes.len()
            ));
        }
        Ok(Self(bytes.into()))
    }

    /// The `webhook-signature` header value for one message.
    pub fn sign(&self, id: &str, timestamp: i64, body: &[u8]) -> String {
        let mut mac = Hmac::<Sha256>::new_from_slice(self.0.expose_secret())
            .expect("HMAC takes keys of any length");
        mac.update(id.as_bytes());
        mac.update(b".");
        mac.update(timestamp.to_string().as_bytes());
        mac.update(b".");
        mac.update(body);
        format!("v1,{}", BASE64.encode(mac.finalize().into_bytes()))
    }
}

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SigningKey([redacted])")
    }
}
