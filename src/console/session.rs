//! Who is signed in: operator keys checked in constant time, a signed
//! session cookie (the key's id, an expiry, a random nonce that is also the
//! id of the session's row in `console_sessions`), and the CSRF
//! tokens every form carries, bound to the session (or, before sign-in, to
//! a nonce cookie of its own).
//!
//! The signing key is derived from every configured operator key, so all
//! replicas agree on it without another secret, and changing the keys ends
//! every session.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use hmac::{Hmac, KeyInit, Mac};
use secrecy::{ExposeSecret, SecretSlice, SecretString};
use sha2::Sha256;
use subtle::ConstantTimeEq;

/// The session cookie's name.
pub const SESSION_COOKIE: &str = "tw_console";
/// The pre-sign-in nonce cookie's name (binds the sign-in form's token).
pub const SIGN_IN_COOKIE: &str = "tw_console_signin";

/// The configured operators: each key's id and the key.
pub struct Keys {
    keys: Vec<(String, SecretString)>,
    signing: SecretSlice<u8>,
}

/// A verified session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session {
    /// The id of the operator key that signed in.
    pub key_id: String,
    pub expires_at: i64,
    /// Random; also the primary key of the session's server-side row, which
    /// sign-out revokes.
    pub nonce: String,
}

impl Keys {
    pub fn new(keys: Vec<(String, SecretString)>) -> Self {
        let mut material: Vec<String> = keys
            .iter()
            .map(|(id, key)| format!("{id}:{}", key.expose_secret()))
            .collect();
        material.sort();
        let mut mac = Hmac::<Sha256>::new_from_slice(b"tokenwarden console session v1")
            .expect("HMAC takes keys of any length");
        mac.update(material.join("\n").as_bytes());
        let signing = mac.finalize().into_bytes().to_vec();
        Self {
            keys,
            signing: signing.into(),
        }
    }

    /// The id of the key presented, if it is one of the configured keys.
    /// Every key is compared, so timing does not tell which matched.
    pub fn check(&self, presented: &str) -> Option<&str> {
        let presented = presented.trim();
        let mut found = None;
        for (id, key) in &self.keys {
            let equal: bool = key
                .expose_secret()
                .as_bytes()
                .ct_eq(presented.as_bytes())
                .into();
            if equal && found.is_none() {
                found = Some(id.as_str());
            }
        }
        found
    }

    fn mac(&self, parts: &[&str]) -> Vec<u8> {
        let mut mac = Hmac::<Sha256>::new_from_slice(self.signing.expose_secret())
            .expect("HMAC takes keys of any length");
        for (n, part) in parts.iter().enumerate() {
            if n > 0 {
                mac.update(b"|");
            }
            mac.update(part.as_bytes());
        }
        mac.finalize().into_bytes().to_vec()
    }

    /// A new session's cookie value.
    pub fn issue(&self, key_id: &str, expires_at: i64) -> (String, Session) {
        let session = Session {
            key_id: key_id.to_owned(),
            expires_at,
            nonce: random_nonce(),
        };
        let payload = format!("{}|{}|{}", session.key_id, expires_at, session.nonce);
        let signature = self.mac(&["session", &payload]);
        let value = format!("{}.{}", B64.encode(&payload), B64.encode(signature));
        (value, session)
    }

    /// The session a cookie value stands for: signed by these keys, not
    /// expired at `now`, and its key still configured.
    pub fn verify(&self, value: &str, now: i64) -> Option<Session> {
        let (payload, signature) = value.split_once('.')?;
        let payload = String::from_utf8(B64.decode(payload).ok()?).ok()?;
        let signature = B64.decode(signature).ok()?;
        let expected = self.mac(&["session", &payload]);
        if !bool::from(expected.ct_eq(&signature)) {
            return None;
        }
        let mut parts = payload.split('|');
        let key_id = parts.next()?;
        let expires_at: i64 = parts.next()?.parse().ok()?;
        let nonce = parts.next()?;
        if parts.next().is_some() || expires_at <= now {
            return None;
        }
        self.keys
            .iter()
            .any(|(id, _)| id == key_id)
            .then(|| Session {
                key_id: key_id.to_owned(),
                expires_at,
                nonce: nonce.to_owned(),
            })
    }

    /// The CSRF token of the forms shown in a session.
    pub fn csrf_token(&self, session: &Session) -> String {
        B64.encode(self.mac(&["csrf", &session.nonce]))
    }

    /// The CSRF token of the sign-in form, bound to its nonce cookie.
    pub fn sign_in_token(&self, nonce: &str) -> String {
        B64.encode(self.mac(&["sign-in", nonce]))
    }

    /// Whether a submitted token is the expected one.
    pub fn token_matches(expected: &str, submitted: &str) -> bool {
        !submitted.is_empty() && bool::from(expected.as_bytes().ct_eq(submitted.as_bytes()))
    }
}

pub fn random_nonce() -> String {
    let bytes: [u8; 16] = rand::random();
    B64.encode(bytes)
}

/// The value of cookie `name` in a `Cookie` header.
pub fn cookie<'a>(header: &'a str, name: &str) -> Option<&'a str> {
    header.split(';').find_map(|pair| {
        let (key, value) = pair.trim().split_once('=')?;
        (key == name).then_some(value.trim())
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn keys() -> Keys {
        Keys::new(vec![
            ("alice".into(), SecretString::from("alice-key-0123456789")),
            ("bob".into(), SecretString::from("bob-key-9876543210ab")),
        ])
    }

    #[test]
    fn a_key_is_known_by_its_id() {
        let keys = keys();
        assert_eq!(keys.check("bob-key-9876543210ab"), Some("bob"));
        assert_eq!(keys.check(" alice-key-0123456789 "), Some("alice"));
        assert_eq!(keys.check("alice-key-012345678"), None);
        assert_eq!(keys.check(""), None);
    }

    #[test]
    fn sessions_verify_until_they_expire() {
        let keys = keys();
        let (value, session) = keys.issue("alice", 1_000);
        assert_eq!(keys.verify(&value, 999), Some(session.clone()));
        assert_eq!(keys.verify(&value, 1_000), None);
        // Another deployment's keys sign differently.
        let other = Keys::new(vec![(
            "alice".into(),
            SecretString::from("another-key-0123456789"),
        )]);
        assert_eq!(other.verify(&value, 0), None);
        // A session must name a configured key.
        let (carol, _) = keys.issue("carol", 1_000);
        assert_eq!(keys.verify(&carol, 0), None);
    }

    #[test]
    fn a_tampered_session_is_refused() {
        let keys = keys();
        let (value, _) = keys.issue("alice", i64::MAX);
        let (payload, signature) = value.split_once('.').unwrap();
        let forged_payload = B64.encode(format!("bob|{}|x", i64::MAX));
        assert_eq!(
            keys.verify(&format!("{forged_payload}.{signature}"), 0),
            None
        );
        assert_eq!(keys.verify(payload, 0), None);
        assert_eq!(keys.verify(&format!("{payload}.{payload}"), 0), None);
    }

    #[test]
    fn csrf_tokens_are_bound_to_their_session() {
        let keys = keys();
        let (_, one) = keys.issue("alice", i64::MAX);
        let (_, two) = keys.issue("alice", i64::MAX);
        assert_ne!(keys.csrf_token(&one), keys.csrf_token(&two));
        assert!(Keys::token_matches(
            &keys.csrf_token(&one),
            &keys.csrf_token(&one)
        ));
        assert!(!Keys::token_matches(&keys.csrf_token(&one), ""));
        assert_ne!(keys.sign_in_token(&one.nonce), keys.csrf_token(&one));
    }

    #[test]
    fn cookies_are_found_by_name() {
        let header = "a=1; tw_console_signin=n; tw_console=v.s";
        assert_eq!(cookie(header, SESSION_COOKIE), Some("v.s"));
        assert_eq!(cookie(header, SIGN_IN_COOKIE), Some("n"));
        assert_eq!(cookie(header, "b"), None);
    }

    proptest! {
        /// Any cookie value: no panic, and nothing forged verifies.
        #[test]
        fn arbitrary_cookies_never_verify(value in ".{0,200}") {
            prop_assert!(keys().verify(&value, 0).is_none());
        }

        #[test]
        fn arbitrary_cookie_headers_never_panic(header in ".{0,300}") {
            let _ = cookie(&header, SESSION_COOKIE);
        }
    }
}
