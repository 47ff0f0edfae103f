//! Lifetimes as platforms state them (`expires_in`, a JWT's `exp`), made
//! safe to add to a clock. A platform's number is untrusted input: it may be
//! negative, fractional, absurdly large or not a number at all. None of that
//! may refuse an answer that carries a rotated refresh token (the only copy
//! of the grant), and none of it may overflow the time arithmetic between
//! the answer and the write. So a stated lifetime is clamped to a documented
//! range, and anything odd about it is kept as a note for the attempt
//! history.

use std::time::Duration;

use serde_json::Value;

/// The shortest lifetime taken from a platform: one second.
pub const MIN: Duration = Duration::from_secs(1);
/// The longest: ten years. Longer is read as a platform bug, not a plan.
pub const MAX: Duration = Duration::from_secs(10 * 365 * 24 * 3600);

/// A lifetime read from a platform's answer.
#[derive(Clone, Debug, PartialEq)]
pub struct Stated {
    /// Within `MIN..=MAX`; None when the answer gave no usable number.
    pub value: Option<Duration>,
    /// What was odd about the stated value, for the attempt history.
    pub oddity: Option<String>,
}

impl Stated {
    pub fn absent() -> Self {
        Self {
            value: None,
            oddity: None,
        }
    }
}

/// Clamps a number of seconds into the documented range.
pub fn from_seconds(key: &str, seconds: f64) -> Stated {
    if !seconds.is_finite() {
        return unusable(key, "is not a finite number");
    }
    let min = MIN.as_secs_f64();
    let max = MAX.as_secs_f64();
    let (value, oddity) = if seconds < min {
        (MIN, Some(format!("{key} was {seconds}; taken as 1 s")))
    } else if seconds > max {
        (
            MAX,
            Some(format!("{key} was {seconds:e}; taken as 10 years")),
        )
    } else {
        (Duration::from_secs(seconds.ceil() as u64), None)
    };
    Stated {
        value: Some(value),
        oddity,
    }
}

/// Reads a JSON lifetime field: a number, or a number sent as a string.
/// Absent or null says nothing; anything else is noted and ignored.
pub fn from_json(key: &str, value: Option<&Value>) -> Stated {
    match value {
        None | Some(Value::Null) => Stated::absent(),
        Some(Value::Number(n)) => match n.as_f64() {
            Some(seconds) => from_seconds(key, seconds),
            None => unusable(key, "is not a number"),
        },
        Some(Value::String(s)) => match s.trim().parse::<f64>() {
            Ok(seconds) => from_seconds(key, seconds),
            Err(_) => unusable(key, "is not a number of seconds"),
        },
        Some(_) => unusable(key, "is not a number of seconds"),
    }
}

/// Time from `now` to an instant in epoch seconds (a JWT's `exp`), clamped.
pub fn until_epoch(key: &str, epoch_seconds: f64, now_epoch_seconds: i64) -> Stated {
    // f64 subtraction cannot overflow; a non-finite difference is refused by
    // `from_seconds`.
    from_seconds(key, epoch_seconds - now_epoch_seconds as f64)
}

fn unusable(key: &str, why: &str) -> Stated {
    Stated {
        value: None,
        oddity: Some(format!("{key} {why}; ignored")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::json_strategy::{any_json, scalar};
    use proptest::prelude::*;
    use serde_json::json;

    #[test]
    fn plain_lifetimes_pass_unchanged() {
        let stated = from_json("expires_in", Some(&json!(3600)));
        assert_eq!(stated.value, Some(Duration::from_secs(3600)));
        assert_eq!(stated.oddity, None);
        let stated = from_json("expires_in", Some(&json!(" 7200 ")));
        assert_eq!(stated.value, Some(Duration::from_secs(7200)));
    }

    #[test]
    fn absurd_lifetimes_are_clamped_and_noted() {
        for (raw, want) in [
            (json!(8.2e12), MAX),
            (json!(u64::MAX), MAX),
            (json!(1e308), MAX),
            (json!("9999999999999999999999"), MAX),
            (json!(-5), MIN),
            (json!(0), MIN),
            (json!(i64::MIN), MIN),
        ] {
            let stated = from_json("expires_in", Some(&raw));
            assert_eq!(stated.value, Some(want), "{raw}");
            assert!(stated.oddity.unwrap().starts_with("expires_in was"));
        }
        assert_eq!(
            from_json("expires_in", Some(&json!(1.5))).value,
            Some(Duration::from_secs(2))
        );
    }

    #[test]
    fn garbage_is_ignored_with_a_note() {
        for raw in [json!("soon"), json!(true), json!([1]), json!({"s": 1})] {
            let stated = from_json("expires_in", Some(&raw));
            assert_eq!(stated.value, None, "{raw}");
            assert!(stated.oddity.is_some(), "{raw}");
        }
        assert_eq!(from_json("expires_in", None), Stated::absent());
        assert_eq!(
            from_json("expires_in", Some(&Value::Null)),
            Stated::absent()
        );
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2048))]

        /// Any JSON value: no panic, and a value (if any) inside the range,
        /// safe to add to any clock reading of this era.
        #[test]
        fn any_json_lifetime_is_in_range(raw in any_json(scalar(), ".{0,4}")) {
            let stated = from_json("expires_in", Some(&raw));
            if let Some(value) = stated.value {
                prop_assert!((MIN..=MAX).contains(&value));
                let now = chrono::Utc::now();
                prop_assert!(now.checked_add_signed(chrono::TimeDelta::from_std(value).unwrap()).is_some());
            }
        }

        #[test]
        fn any_epoch_is_in_range(exp in any::<f64>(), now in any::<i64>()) {
            let stated = until_epoch("exp", exp, now);
            if let Some(value) = stated.value {
                prop_assert!((MIN..=MAX).contains(&value));
            } else {
                prop_assert!(stated.oddity.is_some());
            }
        }
    }
}
