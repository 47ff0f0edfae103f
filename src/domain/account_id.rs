use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

const PREFIX: &str = "acc_";

/// An account's id: `acc_` followed by a UUIDv7 in lowercase hex, so ids sort
/// by creation time and say what they identify when seen in a log.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct AccountId(String);

#[derive(Debug, thiserror::Error)]
#[error("invalid account id {0:?}: expected \"acc_\" followed by 32 lowercase hex digits")]
pub struct InvalidAccountId(String);

impl AccountId {
    pub fn generate() -> Self {
        Self(format!("{PREFIX}{}", uuid::Uuid::now_v7().simple()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for AccountId {
    type Err = InvalidAccountId;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let valid = s.strip_prefix(PREFIX).is_some_and(|hex| {
            hex.len() == 32 && hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
        });
        if valid {
            Ok(Self(s.to_owned()))
        } else {
            // Cap what is echoed back: the input may be anything a caller sent.
            Err(InvalidAccountId(s.chars().take(64).collect()))
        }
    }
}

impl TryFrom<String> for AccountId {
    type Error = InvalidAccountId;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        s.parse()
    }
}

impl From<AccountId> for String {
    fn from(id: AccountId) -> Self {
        id.0
    }
}

impl fmt::Display for AccountId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for AccountId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_ids_parse_back() {
        let id = AccountId::generate();
        assert_eq!(id.as_str().parse::<AccountId>().unwrap(), id);
    }

    #[test]
    fn rejects_other_shapes() {
        for bad in ["", "acc_", "acc_XYZ", "usr_0192", "acc_0192abcd"] {
            assert!(bad.parse::<AccountId>().is_err(), "{bad}");
        }
    }
}
