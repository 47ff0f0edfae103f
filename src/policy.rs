//! When to refresh and when to retry: pure arithmetic over timestamps, so the
//! scheduling rules can be tested without a clock or a database.

use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};

use crate::config::{ProviderSettings, RefreshMode};
use crate::domain::AccountId;

/// One platform's scheduling rules, taken from its configuration section.
#[derive(Clone, Debug)]
pub struct RefreshPolicy {
    pub refresh_fraction: f64,
    pub refresh_margin: Duration,
    pub default_access_token_lifetime: Duration,
    pub mode: RefreshMode,
    pub min_token_age: Duration,
    pub jitter: Duration,
    pub keep_alive_interval: Duration,
    pub health_check_interval: Duration,
    pub refresh_token_lifetime: Option<Duration>,
    pub refreshable_after_expiry: bool,
    /// Each refresh spends the refresh token it presents.
    pub rotates_refresh_token: bool,
    /// What posting needs (see `scopes::missing`).
    pub publish_scopes: Vec<String>,
}

/// Google's refresh tokens for external apps in "Testing" status.
pub const TESTING_APP_REFRESH_TOKEN_LIFETIME: Duration = Duration::from_secs(7 * 86_400);

impl From<&ProviderSettings> for RefreshPolicy {
    fn from(s: &ProviderSettings) -> Self {
        Self {
            refresh_fraction: s.refresh_fraction,
            refresh_margin: s.refresh_margin,
            default_access_token_lifetime: s.default_access_token_lifetime,
            mode: s.mode,
            min_token_age: s.min_token_age,
            jitter: s.jitter,
            keep_alive_interval: s.keep_alive_interval,
            health_check_interval: s.health_check_interval,
            refresh_token_lifetime: if s.app_in_testing {
                Some(
                    s.refresh_token_lifetime
                        .map_or(TESTING_APP_REFRESH_TOKEN_LIFETIME, |l| {
                            l.min(TESTING_APP_REFRESH_TOKEN_LIFETIME)
                        }),
                )
            } else {
                s.refresh_token_lifetime
            },
            refreshable_after_expiry: s.refreshable_after_expiry,
            rotates_refresh_token: s.rotates_refresh_token,
            publish_scopes: s.publish_scopes.clone(),
        }
    }
}

/// What the next planned attempt is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Planned {
    Refresh(DateTime<Utc>),
    HealthCheck(DateTime<Utc>),
}

impl Planned {
    pub fn at(self) -> DateTime<Utc> {
        match self {
            Planned::Refresh(at) | Planned::HealthCheck(at) => at,
        }
    }
}

impl RefreshPolicy {
    /// The next attempt for a token issued at `issued_at`: a refresh inside
    /// the window (spread earlier by a jitter seeded from the account id, so
    /// a crowd connected at once does not refresh at once; never before the
    /// minimum age), a keep-alive refresh in on_demand mode, or a health
    /// check for a token that never expires.
    pub fn plan(
        &self,
        account: &AccountId,
        issued_at: DateTime<Utc>,
        expires_at: Option<DateTime<Utc>>,
    ) -> Planned {
        let Some(window) = self.refresh_at(issued_at, expires_at) else {
            return Planned::HealthCheck(after(issued_at, self.health_check_interval));
        };
        let base = match self.mode {
            RefreshMode::Proactive => window,
            // Expiry still bounds it: an on_demand token nobody asked for is
            // refreshed before it dies if the keep-alive comes later.
            RefreshMode::OnDemand => after(issued_at, self.keep_alive_interval).min(window),
        };
        let lifetime = expires_at
            .map(|e| e - issued_at)
            .unwrap_or_default()
            .max(TimeDelta::zero());
        // Jitter never exceeds a tenth of the lifetime, so short-lived tokens
        // keep most of their window.
        let spread = delta(self.jitter).min(lifetime / 10);
        let jittered = base
            .checked_sub_signed(scale(spread, seeded_unit(account)))
            .unwrap_or(base);
        let earliest = after(issued_at, self.min_token_age);
        Planned::Refresh(jittered.max(earliest).max(issued_at))
    }

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
        let at_fraction = issued_at
            .checked_add_signed(scale(lifetime, self.refresh_fraction))
            .unwrap_or(expires_at);
        let latest = expires_at
            .checked_sub_signed(delta(self.refresh_margin))
            .unwrap_or(issued_at);
        Some(at_fraction.min(latest).max(issued_at))
    }

    /// When credentials die by time unless something replaces them: the
    /// refresh token's expiry, or the access token's where nothing can renew
    /// an expired one (no refresh token, or a platform that cannot refresh an
    /// expired token). The expiry sweep finds accounts by this instant
    /// (`account_schedule.dead_at`); None: they never die by time alone.
    pub fn dead_at(
        &self,
        access_expires_at: Option<DateTime<Utc>>,
        has_refresh_token: bool,
        refresh_token_expires_at: Option<DateTime<Utc>>,
    ) -> Option<DateTime<Utc>> {
        let access_is_final = !has_refresh_token || !self.refreshable_after_expiry;
        let access_death = access_expires_at.filter(|_| access_is_final);
        match (access_death, refresh_token_expires_at) {
            (Some(a), Some(r)) => Some(a.min(r)),
            (a, r) => a.or(r),
        }
    }
}

/// A stable draw in [0, 1) from the account id (FNV-1a), so an account's
/// jitter is the same on every replica and every restart.
fn seeded_unit(account: &AccountId) -> f64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in account.as_str().bytes() {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    (hash >> 11) as f64 / (1u64 << 53) as f64
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

/// `at + d`, saturating at the end of representable time: durations can come
/// from platforms and configuration, and time arithmetic must never panic.
pub fn after(at: DateTime<Utc>, d: Duration) -> DateTime<Utc> {
    at.checked_add_signed(delta(d))
        .unwrap_or(DateTime::<Utc>::MAX_UTC)
}

fn scale(d: TimeDelta, fraction: f64) -> TimeDelta {
    let ms = (d.num_milliseconds() as f64 * fraction) as i64;
    TimeDelta::try_milliseconds(ms).unwrap_or(if ms < 0 {
        TimeDelta::MIN
    } else {
        TimeDelta::MAX
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> RefreshPolicy {
        RefreshPolicy {
            refresh_fraction: 2.0 / 3.0,
            refresh_margin: Duration::from_secs(300),
            default_access_token_lifetime: Duration::from_secs(3600),
            mode: RefreshMode::Proactive,
            min_token_age: Duration::ZERO,
            jitter: Duration::ZERO,
            keep_alive_interval: Duration::from_secs(7 * 86_400),
            health_check_interval: Duration::from_secs(86_400),
            refresh_token_lifetime: None,
            refreshable_after_expiry: true,
            rotates_refresh_token: false,
            publish_scopes: Vec::new(),
        }
    }

    #[test]
    fn credentials_die_at_the_first_expiry_nothing_can_renew() {
        let t = Utc::now();
        let (access, refresh) = (Some(t + TimeDelta::hours(1)), Some(t + TimeDelta::days(60)));
        let renewable = policy();
        let final_access = RefreshPolicy {
            refreshable_after_expiry: false,
            ..policy()
        };
        // A refresh token renews an expired access token: only its own
        // expiry is final, and none means never.
        assert_eq!(renewable.dead_at(access, true, refresh), refresh);
        assert_eq!(renewable.dead_at(access, true, None), None);
        // Without a refresh token, or where expiry is final, the access
        // token's expiry is, unless the refresh token ends first.
        assert_eq!(renewable.dead_at(access, false, None), access);
        assert_eq!(final_access.dead_at(access, true, refresh), access);
        let early = Some(t + TimeDelta::minutes(5));
        assert_eq!(final_access.dead_at(access, true, early), early);
        // A token that never expires never dies by time.
        assert_eq!(final_access.dead_at(None, false, None), None);
    }

    #[test]
    fn jitter_is_seeded_bounded_and_only_earlier() {
        let p = RefreshPolicy {
            jitter: Duration::from_secs(600),
            ..policy()
        };
        let issued = Utc::now();
        let expires = Some(issued + TimeDelta::hours(3));
        let window = p.refresh_at(issued, expires).unwrap();
        let mut distinct = std::collections::HashSet::new();
        for _ in 0..50 {
            let id = AccountId::generate();
            let at = p.plan(&id, issued, expires).at();
            assert_eq!(at, p.plan(&id, issued, expires).at(), "stable per account");
            assert!(at <= window && at >= window - TimeDelta::minutes(10));
            distinct.insert(at);
        }
        assert!(distinct.len() > 40, "spread out");
    }

    #[test]
    fn min_age_and_keep_alive_and_health_checks() {
        let issued = Utc::now();
        let id = AccountId::generate();
        let young = RefreshPolicy {
            min_token_age: Duration::from_secs(86_400),
            ..policy()
        };
        let at = young
            .plan(&id, issued, Some(issued + TimeDelta::hours(30)))
            .at();
        assert_eq!(
            at,
            issued + TimeDelta::hours(24),
            "never before the minimum age"
        );

        let on_demand = RefreshPolicy {
            mode: RefreshMode::OnDemand,
            ..policy()
        };
        let at = on_demand
            .plan(&id, issued, Some(issued + TimeDelta::days(60)))
            .at();
        assert_eq!(at, issued + TimeDelta::days(7), "keep-alive");
        let at = on_demand
            .plan(&id, issued, Some(issued + TimeDelta::hours(1)))
            .at();
        assert_eq!(at, issued + TimeDelta::minutes(40), "still before expiry");

        assert_eq!(
            policy().plan(&id, issued, None),
            Planned::HealthCheck(issued + TimeDelta::days(1))
        );
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
