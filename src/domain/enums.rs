use std::fmt;
use std::str::FromStr;

/// A value that is not one of an enumeration's names.
#[derive(Debug, thiserror::Error)]
#[error("unknown {what} {value:?}; expected one of: {expected}")]
pub struct UnknownVariant {
    what: &'static str,
    value: String,
    expected: String,
}

/// Declares a closed set of names stored as TEXT in PostgreSQL and spelled the
/// same way in the API, the CLI and the logs.
macro_rules! text_enum {
    ($(#[$meta:meta])* $name:ident, $what:literal { $($variant:ident = $text:literal),+ $(,)? }) => {
        $(#[$meta])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum $name { $($variant),+ }

        impl $name {
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            pub fn as_str(self) -> &'static str {
                match self { $($name::$variant => $text),+ }
            }
        }

        impl FromStr for $name {
            type Err = UnknownVariant;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                match s {
                    $($text => Ok($name::$variant),)+
                    _ => Err(UnknownVariant {
                        what: $what,
                        value: s.chars().take(64).collect(),
                        expected: [$($text),+].join(", "),
                    }),
                }
            }
        }

        impl TryFrom<String> for $name {
            type Error = UnknownVariant;
            fn try_from(s: String) -> Result<Self, Self::Error> {
                s.parse()
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl serde::Serialize for $name {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(self.as_str())
            }
        }

        impl utoipa::PartialSchema for $name {
            fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
                utoipa::openapi::RefOr::T(utoipa::openapi::schema::Schema::Object(
                    utoipa::openapi::schema::ObjectBuilder::new()
                        .schema_type(utoipa::openapi::schema::Type::String)
                        .enum_values(Some([$($text),+]))
                        .build(),
                ))
            }
        }

        impl utoipa::ToSchema for $name {}

        impl<'de> serde::Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
                s.parse().map_err(serde::de::Error::custom)
            }
        }
    };
}

text_enum!(
    /// The platform (and, where it matters, the login variant) of an account.
    Provider, "provider" {
        X = "X",
        LinkedinPerson = "LINKEDIN_PERSON",
        LinkedinCompany = "LINKEDIN_COMPANY",
        FacebookPage = "FACEBOOK_PAGE",
        InstagramFacebookLogin = "INSTAGRAM_FACEBOOK_LOGIN",
        InstagramLogin = "INSTAGRAM_LOGIN",
        Threads = "THREADS",
        TiktokBusiness = "TIKTOK_BUSINESS",
        TiktokPersonal = "TIKTOK_PERSONAL",
        Youtube = "YOUTUBE",
        Pinterest = "PINTEREST",
        Bluesky = "BLUESKY",
        Mastodon = "MASTODON",
    }
);

text_enum!(
    /// See the status table in the README: only ACTIVE accounts are refreshed
    /// by the scheduler.
    AccountStatus, "status" {
        Active = "ACTIVE",
        TokenExpired = "TOKEN_EXPIRED",
        Revoked = "REVOKED",
        Disconnected = "DISCONNECTED",
    }
);

text_enum!(
    /// Whether the daemon's own OAuth app issued the credentials, or the
    /// customer brought their own app (BYOK).
    ConnectionType, "connection type" {
        Oauth = "oauth",
        Byok = "byok",
    }
);

text_enum!(
    /// Why a refresh was attempted.
    Trigger, "trigger" {
        Scheduled = "scheduled",
        Forced = "forced",
        OnDemand = "on_demand",
        HealthCheck = "health_check",
        Retry = "retry",
    }
);

text_enum!(
    /// What one refresh attempt ended in.
    Outcome, "outcome" {
        Refreshed = "refreshed",
        Healthy = "healthy",
        TransientError = "transient_error",
        RateLimited = "rate_limited",
        RejectedExpired = "rejected_expired",
        RejectedRevoked = "rejected_revoked",
        ConfigError = "config_error",
        Skipped = "skipped",
    }
);

impl Provider {
    /// The key of this provider's section in the configuration.
    pub fn config_key(self) -> String {
        self.as_str().to_ascii_lowercase()
    }
}

impl Trigger {
    /// Forced and on-demand refreshes run even when the token is not yet due.
    pub fn ignores_schedule(self) -> bool {
        matches!(self, Trigger::Forced | Trigger::OnDemand)
    }
}

impl Outcome {
    pub fn is_success(self) -> bool {
        matches!(
            self,
            Outcome::Refreshed | Outcome::Healthy | Outcome::Skipped
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for p in Provider::ALL {
            assert_eq!(p.as_str().parse::<Provider>().unwrap(), *p);
        }
        for o in Outcome::ALL {
            assert_eq!(o.as_str().parse::<Outcome>().unwrap(), *o);
        }
    }

    #[test]
    fn unknown_names_list_the_expected_ones() {
        let err = "FRIENDSTER".parse::<Provider>().unwrap_err().to_string();
        assert!(
            err.contains("FRIENDSTER") && err.contains("MASTODON"),
            "{err}"
        );
    }
}
