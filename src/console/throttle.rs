//! Limits on failed sign-ins, so that operator keys cannot be guessed at
//! speed: per client address and in total for the process, over a sliding
//! minute. While a limit is reached, every sign-in from there is refused
//! before its key is looked at, so a right key tells nothing either.

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Failed sign-ins one client address may make per minute.
pub const PER_ADDRESS: usize = 5;
/// Failed sign-ins the process takes per minute from all addresses
/// together (behind a proxy every client may share one address).
pub const TOTAL: usize = 30;
pub const WINDOW: Duration = Duration::from_secs(60);

pub struct SignInThrottle {
    per_address: usize,
    total: usize,
    failures: Mutex<Failures>,
}

#[derive(Default)]
struct Failures {
    all: VecDeque<Instant>,
    by_address: HashMap<IpAddr, VecDeque<Instant>>,
}

impl Failures {
    fn forget_before(&mut self, now: Instant) {
        let fresh = |at: &Instant| now.saturating_duration_since(*at) < WINDOW;
        while self.all.front().is_some_and(|at| !fresh(at)) {
            self.all.pop_front();
        }
        // Only checked failures are recorded, so this map holds at most
        // `total` (plus a few racing) addresses.
        self.by_address.retain(|_, times| {
            while times.front().is_some_and(|at| !fresh(at)) {
                times.pop_front();
            }
            !times.is_empty()
        });
    }
}

impl Default for SignInThrottle {
    fn default() -> Self {
        Self::new(PER_ADDRESS, TOTAL)
    }
}

impl SignInThrottle {
    pub fn new(per_address: usize, total: usize) -> Self {
        Self {
            per_address,
            total,
            failures: Mutex::new(Failures::default()),
        }
    }

    /// None when a sign-in from `address` may be checked at `now`; else
    /// how long until it may.
    pub fn wait(&self, address: Option<IpAddr>, now: Instant) -> Option<Duration> {
        let mut failures = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        failures.forget_before(now);
        // The n-th newest failure ages out when the count drops below n.
        let until = |times: &VecDeque<Instant>, limit: usize| {
            (times.len() >= limit).then(|| times[times.len() - limit] + WINDOW - now)
        };
        let total = until(&failures.all, self.total);
        let own = address
            .and_then(|a| failures.by_address.get(&a))
            .and_then(|times| until(times, self.per_address));
        total.max(own)
    }

    /// Records a sign-in from `address` that presented a wrong key.
    pub fn failed(&self, address: Option<IpAddr>, now: Instant) {
        let mut failures = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        failures.forget_before(now);
        failures.all.push_back(now);
        if let Some(address) = address {
            failures
                .by_address
                .entry(address)
                .or_default()
                .push_back(now);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(last: u8) -> Option<IpAddr> {
        Some(IpAddr::from([192, 0, 2, last]))
    }

    #[test]
    fn an_address_is_held_off_until_its_oldest_counted_failure_ages_out() {
        let throttle = SignInThrottle::new(3, 100);
        let start = Instant::now();
        for n in 0..3 {
            assert_eq!(throttle.wait(ip(1), start + Duration::from_secs(n)), None);
            throttle.failed(ip(1), start + Duration::from_secs(n));
        }
        let now = start + Duration::from_secs(10);
        assert_eq!(throttle.wait(ip(1), now), Some(Duration::from_secs(50)));
        // Another address is not held off by this one's failures.
        assert_eq!(throttle.wait(ip(2), now), None);
        assert_eq!(throttle.wait(ip(1), start + WINDOW), None);
    }

    #[test]
    fn the_total_holds_off_every_address() {
        let throttle = SignInThrottle::new(100, 4);
        let start = Instant::now();
        for n in 0..4 {
            throttle.failed(ip(n), start);
        }
        for address in [ip(1), ip(200), None] {
            assert_eq!(throttle.wait(address, start), Some(WINDOW));
        }
        assert_eq!(throttle.wait(ip(200), start + WINDOW), None);
    }

    #[test]
    fn old_failures_are_forgotten() {
        let throttle = SignInThrottle::new(2, 4);
        let start = Instant::now();
        for n in 0..50u8 {
            throttle.failed(ip(n), start + WINDOW * u32::from(n));
        }
        let failures = throttle.failures.lock().unwrap();
        assert_eq!(failures.all.len(), 1);
        assert_eq!(failures.by_address.len(), 1);
    }
}
