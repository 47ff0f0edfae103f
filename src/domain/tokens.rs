use std::fmt;

use secrecy::{ExposeSecret, SecretString};

/// Declares a token newtype whose Debug prints a redaction, and whose value is
/// reached only through `expose()`.
macro_rules! token_type {
    ($(#[$meta:meta])* $name:ident) => {
        $(#[$meta])*
        #[derive(Clone)]
        pub struct $name(SecretString);

        impl $name {
            pub fn new(value: impl Into<String>) -> Self {
                Self(SecretString::from(value.into()))
            }

            pub fn expose(&self) -> &str {
                self.0.expose_secret()
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(concat!(stringify!($name), "([redacted])"))
            }
        }
    };
}

token_type!(
    /// A bearer credential for the platform's API.
    AccessToken
);
token_type!(
    /// The grant that mints new access tokens; on rotating platforms it is
    /// single-use.
    RefreshToken
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_never_shows_the_value() {
        let token = RefreshToken::new("canary-value");
        assert_eq!(format!("{token:?}"), "RefreshToken([redacted])");
        assert_eq!(token.expose(), "canary-value");
    }
}
