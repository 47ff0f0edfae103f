//! Range checks shared by the sections' `validate`, each error naming its key.

use std::time::Duration;

use super::ConfigError;

/// The longest any duration setting may be: far past every sensible value,
/// and short enough that adding it (or a sum of two) to a timestamp cannot
/// overflow.
pub const MAX_DURATION: Duration = Duration::from_secs(3650 * 86_400);

/// The `min` of a duration that must be greater than zero.
pub(super) const POSITIVE: Duration = Duration::from_nanos(1);

/// A duration of at least `min` and at most [`MAX_DURATION`].
pub(super) fn duration_at_least(
    key: &str,
    value: Duration,
    min: Duration,
) -> Result<(), ConfigError> {
    duration(key, value, min, MAX_DURATION)
}

/// A duration within `min..=max`; a zero `min` allows zero.
pub(super) fn duration(
    key: &str,
    value: Duration,
    min: Duration,
    max: Duration,
) -> Result<(), ConfigError> {
    if value < min {
        let problem = if min <= Duration::from_nanos(1) {
            "must be greater than zero".to_owned()
        } else {
            format!("must be at least {}", humantime::format_duration(min))
        };
        return Err(ConfigError::invalid(key, problem));
    }
    if value > max {
        return Err(ConfigError::invalid(
            key,
            format!("must be at most {}", humantime::format_duration(max)),
        ));
    }
    Ok(())
}

/// A count within `min..=max`.
pub(super) fn whole_number<T>(key: &str, value: T, min: i64, max: i64) -> Result<(), ConfigError>
where
    i128: TryFrom<T>,
{
    let value = i128::try_from(value).unwrap_or(i128::MAX);
    if (i128::from(min)..=i128::from(max)).contains(&value) {
        Ok(())
    } else {
        Err(ConfigError::invalid(
            key,
            format!("must be between {min} and {max}, got {value}"),
        ))
    }
}

/// A share of something: in (0, 1]. NaN fails every comparison, so it is
/// refused too.
pub(super) fn fraction(key: &str, value: f64) -> Result<(), ConfigError> {
    if value > 0.0 && value <= 1.0 {
        Ok(())
    } else {
        Err(ConfigError::invalid(
            key,
            format!("must be a number greater than 0 and at most 1, got {value}"),
        ))
    }
}

/// Calls per second for a token bucket: a finite number > 0. The bounds keep
/// the wait for one token (1 / rate) and the burst (rate) representable.
pub(super) fn rate(key: &str, value: f64) -> Result<(), ConfigError> {
    const MIN: f64 = 0.001;
    const MAX: f64 = 1_000_000.0;
    if value.is_finite() && (MIN..=MAX).contains(&value) {
        Ok(())
    } else {
        Err(ConfigError::invalid(
            key,
            format!("must be a finite number > 0, between {MIN} and {MAX}, got {value}"),
        ))
    }
}
