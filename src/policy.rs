//! When to refresh and when to retry: pure arithmetic over timestamps, so the
//! scheduling rules can be tested without a clock or a database.

use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};

use crate::config::ProviderSettings;

#[derive(Clone, Copy, Debug)]
pub struct RefreshPolicy {
    pub refresh_fraction: f64,
    pub refresh_margin: Duration,
    pub default_access_token_lifetime: Duration,
}

impl From<&ProviderSettings> for RefreshPolicy {
    fn from(s: &ProviderSettings) -> Self {
        Self {
            refresh_fraction: s.refresh_fraction,
            refresh_margin: s.refresh_margin,
            default_access_token_lifetime: s.default_access_token_lifetime,
        }
    }
}

impl RefreshPolicy {
    /// The moment a token issued at `issued_at` and expiring at `expires_at`
    /// should be refreshed: at `refresh_fraction` of its lifetime, never later
    /// than `refresh_margin` before expiry, never before it was issued.
    /// A token that never expires has no refresh moment.
    pub fn refresh_at(
        &self,
        issued_at: DateTime<Utc>,
        expires_at: Option<DateTime<Utc>>,
    ) -> Option<DateTime<Utc>> {
        let expires_at = expires_at?;
        let lifetime = (expires_at - issued_at).max(TimeDelta::zero());
        let at_fraction = issued_at + scale(lifetime, self.refresh_fraction);
        let latest = expires_at - delta(self.refresh_margin);
        Some(at_fraction.min(latest).max(issued_at))
    }
}

/// Full-jitter exponential backoff: a uniform draw from
/// `[0, min(cap, base * 2^(failures - 1))]`, so a crowd of failing accounts
/// spreads out instead of retrying in lockstep. `unit` is the draw in [0, 1).
pub fn retry_delay(failures: u32, base: Duration, cap: Duration, unit: f64) -> Duration {
    let exponent = failures.saturating_sub(1).min(30);
    let ceiling = base.saturating_mul(1 << exponent).min(cap);
    // A floor of one second keeps a zero draw from retrying in a hot loop.
    ceiling
        .mul_f64(unit.clamp(0.0, 1.0))
        .max(Duration::from_secs(1).min(ceiling))
}

pub fn delta(d: Duration) -> TimeDelta {
    TimeDelta::from_std(d).unwrap_or(TimeDelta::MAX)
}

fn scale(d: TimeDelta, fraction: f64) -> TimeDelta {
    TimeDelta::milliseconds((d.num_milliseconds() as f64 * fraction) as i64)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> RefreshPolicy {
        RefreshPolicy {
            refresh_fraction: 2.0 / 3.0,
            refresh_margin: Duration::from_secs(300),
            default_access_token_lifetime: Duration::from_secs(3600),
        }
    }

    #[test]
    fn refreshes_at_two_thirds_of_a_long_lifetime() {
        let issued = Utc::now();
        let at = policy()
            .refresh_at(issued, Some(issued + TimeDelta::hours(3)))
            .unwrap();
        assert_eq!(at - issued, TimeDelta::hours(2));
    }

    #[test]
    fn margin_wins_for_short_lifetimes() {
        let issued = Utc::now();
        let expires = issued + TimeDelta::minutes(6);
        let at = policy().refresh_at(issued, Some(expires)).unwrap();
        assert_eq!(at, expires - TimeDelta::minutes(5));
    }

    #[test]
    fn already_expired_tokens_are_due_at_issue() {
        let issued = Utc::now();
        let at = policy()
            .refresh_at(issued, Some(issued - TimeDelta::minutes(1)))
            .unwrap();
        assert_eq!(at, issued);
        assert_eq!(policy().refresh_at(issued, None), None);
    }

    #[test]
    fn backoff_doubles_up_to_the_cap() {
        let base = Duration::from_secs(30);
        let cap = Duration::from_secs(3600);
        assert_eq!(retry_delay(1, base, cap, 0.999_999).as_secs(), 29);
        assert_eq!(retry_delay(3, base, cap, 0.999_999).as_secs(), 119);
        assert_eq!(retry_delay(40, base, cap, 0.999_999).as_secs(), 3599);
        assert_eq!(retry_delay(5, base, cap, 0.0), Duration::from_secs(1));
    }
}
