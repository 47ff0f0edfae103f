//! The authorization server's check of a DPoP proof (RFC 9449 section 4.3).

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use p256::ecdsa::signature::Verifier;
use p256::ecdsa::{Signature, VerifyingKey};
use serde_json::Value;

use super::Inner;

/// How far a proof's `iat` may stray from the server's clock.
const IAT_SKEW_SECS: i64 = 60;

/// What a verified proof says.
pub(super) struct Proof {
    pub(super) key: (String, String),
    pub(super) nonce: Option<String>,
}

/// Checks a DPoP proof as RFC 9449 section 4.3 asks (nonce aside).
pub(super) fn verify_proof(inner: &mut Inner, proof: &str, htu: &str) -> Result<Proof, String> {
    let parts: Vec<&str> = proof.split('.').collect();
    let [header_b64, claims_b64, signature_b64] = parts[..] else {
        return Err("not a JWS".into());
    };
    let decode = |part: &str| -> Result<Value, String> {
        let bytes = URL_SAFE_NO_PAD
            .decode(part)
            .map_err(|_| "not base64url".to_owned())?;
        serde_json::from_slice(&bytes).map_err(|_| "not JSON".to_owned())
    };
    let header = decode(header_b64)?;
    let claims = decode(claims_b64)?;
    if header["typ"] != "dpop+jwt" {
        return Err("typ is not dpop+jwt".into());
    }
    if header["alg"] != "ES256" {
        return Err("alg is not ES256".into());
    }
    let jwk = &header["jwk"];
    if jwk.get("d").is_some() {
        return Err("the header's JWK holds a private key".into());
    }
    let public = p256::PublicKey::from_jwk_str(&jwk.to_string())
        .map_err(|_| "the header's JWK is not a P-256 public key".to_owned())?;
    let signature = URL_SAFE_NO_PAD
        .decode(signature_b64)
        .ok()
        .and_then(|bytes| Signature::from_slice(&bytes).ok())
        .ok_or_else(|| "the signature is not an ES256 signature".to_owned())?;
    VerifyingKey::from(&public)
        .verify(format!("{header_b64}.{claims_b64}").as_bytes(), &signature)
        .map_err(|_| "the signature does not verify".to_owned())?;
    if claims["htm"] != "POST" {
        return Err("htm is not POST".into());
    }
    if claims["htu"] != htu {
        return Err(format!("htu is not {htu}"));
    }
    let iat = claims["iat"]
        .as_i64()
        .ok_or_else(|| "iat is missing".to_owned())?;
    if (iat - chrono::Utc::now().timestamp()).abs() > IAT_SKEW_SECS {
        return Err("iat is too far from now".into());
    }
    let jti = claims["jti"]
        .as_str()
        .filter(|j| !j.is_empty())
        .ok_or_else(|| "jti is missing".to_owned())?;
    if !inner.seen_jti.insert(jti.to_owned()) {
        return Err("jti was used before".into());
    }
    Ok(Proof {
        key: (
            jwk["x"].as_str().unwrap_or_default().to_owned(),
            jwk["y"].as_str().unwrap_or_default().to_owned(),
        ),
        nonce: claims["nonce"].as_str().map(str::to_owned),
    })
}
