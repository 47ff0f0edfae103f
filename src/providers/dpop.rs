//! DPoP (RFC 9449) for atproto OAuth: one ES256 key per account, and the
//! proof JWT sent with each token request. The key is stored as a private
//! JWK (the form clients exchange keys in), encrypted like the tokens.

use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use p256::ecdsa::signature::Signer;
use p256::ecdsa::{Signature, SigningKey};
use secrecy::SecretString;
use serde_json::json;
use url::Url;

/// An account's DPoP private key. Debug prints a redaction; the private
/// part leaves this type only as the JWK to be encrypted.
#[derive(Clone)]
pub struct DpopKey {
    secret: p256::SecretKey,
}

impl fmt::Debug for DpopKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("DpopKey([redacted])")
    }
}

#[derive(Debug, thiserror::Error)]
#[error("not a P-256 private key in JWK form (kty EC, crv P-256, with d)")]
pub struct InvalidDpopKey;

impl DpopKey {
    pub fn generate() -> Self {
        Self {
            secret: p256::SecretKey::random(&mut aes_gcm::aead::OsRng),
        }
    }

    /// Reads a private JWK. The error never echoes the input.
    pub fn from_jwk(jwk: &str) -> Result<Self, InvalidDpopKey> {
        p256::SecretKey::from_jwk_str(jwk)
            .map(|secret| Self { secret })
            .map_err(|_| InvalidDpopKey)
    }

    /// The private JWK, for encryption at rest.
    pub fn to_private_jwk(&self) -> SecretString {
        SecretString::from(self.secret.to_jwk_string().as_str().to_owned())
    }

    /// The public JWK (kty, crv, x, y) that goes into every proof header.
    pub fn public_jwk(&self) -> serde_json::Value {
        serde_json::from_str(&self.secret.public_key().to_jwk_string())
            .expect("a JWK serialises to a JSON object")
    }

    /// The private scalar as JWK's `d`: what must never show in logs.
    pub fn private_scalar_b64(&self) -> String {
        URL_SAFE_NO_PAD.encode(self.secret.to_bytes())
    }

    /// A proof for one request: `htu` is the URL without query or fragment
    /// (RFC 9449 4.2); `nonce` is the server's latest `DPoP-Nonce`, if any.
    pub fn proof(&self, htm: &str, htu: &Url, nonce: Option<&str>, iat: i64) -> String {
        let mut target = htu.clone();
        target.set_query(None);
        target.set_fragment(None);
        let header = json!({"typ": "dpop+jwt", "alg": "ES256", "jwk": self.public_jwk()});
        let mut claims = json!({
            "jti": format!("{:032x}", rand::random::<u128>()),
            "htm": htm,
            "htu": target.as_str(),
            "iat": iat,
        });
        if let Some(nonce) = nonce {
            claims["nonce"] = json!(nonce);
        }
        let signing_input = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(header.to_string()),
            URL_SAFE_NO_PAD.encode(claims.to_string())
        );
        let signature: Signature = SigningKey::from(&self.secret).sign(signing_input.as_bytes());
        // JWS ES256 is the fixed-size r || s, not DER.
        format!(
            "{signing_input}.{}",
            URL_SAFE_NO_PAD.encode(signature.to_bytes())
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use p256::ecdsa::VerifyingKey;
    use p256::ecdsa::signature::Verifier;
    use secrecy::ExposeSecret;

    #[test]
    fn proof_verifies_with_the_public_key_in_its_header() {
        let key = DpopKey::generate();
        let url = Url::parse("https://auth.example/oauth/token?x=1#f").unwrap();
        let proof = key.proof("POST", &url, Some("n1"), 1_700_000_000);
        let parts: Vec<&str> = proof.split('.').collect();
        assert_eq!(parts.len(), 3);
        let header: serde_json::Value =
            serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[0]).unwrap()).unwrap();
        let claims: serde_json::Value =
            serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[1]).unwrap()).unwrap();
        assert_eq!(header["typ"], "dpop+jwt");
        assert_eq!(header["alg"], "ES256");
        assert!(header["jwk"].get("d").is_none(), "no private part");
        assert_eq!(claims["htu"], "https://auth.example/oauth/token");
        assert_eq!(claims["htm"], "POST");
        assert_eq!(claims["nonce"], "n1");
        assert_eq!(claims["iat"], 1_700_000_000);
        let public = p256::PublicKey::from_jwk_str(&header["jwk"].to_string()).unwrap();
        let signature = Signature::from_slice(&URL_SAFE_NO_PAD.decode(parts[2]).unwrap()).unwrap();
        let input = format!("{}.{}", parts[0], parts[1]);
        VerifyingKey::from(&public)
            .verify(input.as_bytes(), &signature)
            .unwrap();
        assert!(
            VerifyingKey::from(&DpopKey::generate().secret.public_key())
                .verify(input.as_bytes(), &signature)
                .is_err()
        );
    }

    #[test]
    fn jwk_round_trip_and_redaction() {
        let key = DpopKey::generate();
        let jwk = key.to_private_jwk();
        let back = DpopKey::from_jwk(jwk.expose_secret()).unwrap();
        assert_eq!(back.public_jwk(), key.public_jwk());
        assert_eq!(format!("{key:?}"), "DpopKey([redacted])");
        assert!(DpopKey::from_jwk("{\"kty\":\"EC\"}").is_err());
        assert!(DpopKey::from_jwk(&key.public_jwk().to_string()).is_err());
    }
}
