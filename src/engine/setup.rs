//! How an engine is set up: its name in leases, the lease and wait bounds,
//! each platform's refresh policy, and the test-only fault hook.

use super::*;

#[derive(Clone, Debug)]
pub struct EngineConfig {
    /// This process's name in leases; unique per start.
    pub owner: String,
    pub lease_duration: Duration,
    /// How long a process that took over an expired lease waits for the
    /// previous holder's pending write before it calls the platform: longer
    /// than one write attempt (`database.acquire_timeout`) plus the pause
    /// between attempts.
    pub takeover_settle: Duration,
    pub single_flight_wait: Duration,
    pub retry_base: Duration,
    pub retry_cap: Duration,
    pub policies: HashMap<Provider, RefreshPolicy>,
    /// Test-only fault injection: called at each phase of a refresh. Always
    /// None in the daemon.
    #[doc(hidden)]
    pub fault_hook: Option<FaultHook>,
}

/// The phases of a refresh at which a test may inject a fault.
#[doc(hidden)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    /// The lease is held; the platform has not been called.
    Leased,
    /// The platform answered with new tokens; nothing is written yet.
    Answered,
    /// The outcome is written.
    Written,
}

#[doc(hidden)]
#[derive(Clone)]
pub struct FaultHook(pub Arc<dyn Fn(Phase) + Send + Sync>);

impl std::fmt::Debug for FaultHook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("FaultHook")
    }
}

impl EngineConfig {
    pub fn from_settings(settings: &Settings) -> Self {
        let owner = if settings.engine.instance_name.is_empty() {
            default_instance_name()
        } else {
            settings.engine.instance_name.clone()
        };
        Self {
            owner,
            lease_duration: settings.lease_duration(),
            takeover_settle: settings
                .database
                .acquire_timeout
                .saturating_add(Duration::from_secs(1)),
            single_flight_wait: settings.engine.single_flight_wait,
            retry_base: settings.engine.retry_base,
            retry_cap: settings.engine.retry_cap,
            policies: Provider::ALL
                .iter()
                .map(|p| (*p, RefreshPolicy::from(settings.providers.get(*p))))
                .collect(),
            fault_hook: None,
        }
    }

    pub fn policy(&self, provider: Provider) -> &RefreshPolicy {
        &self.policies[&provider]
    }
}

/// Host name, pid and a random suffix: unique per process start.
pub fn default_instance_name() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "host".to_owned());
    format!(
        "{host}-{}-{:04x}",
        std::process::id(),
        rand::random::<u16>()
    )
}
