use super::*;

fn gates(cooldown_ms: u64) -> ProviderGates {
    let mut settings = Settings::default();
    settings.circuit.cooldown = Duration::from_millis(cooldown_ms);
    ProviderGates::from_settings(&settings)
}

fn report(provider: Provider, outcome: Outcome, account_only: bool) -> RefreshReport {
    RefreshReport {
        account_id: crate::domain::AccountId::generate(),
        provider,
        trigger: crate::domain::Trigger::Scheduled,
        outcome,
        status: crate::domain::AccountStatus::Active,
        http_status: None,
        provider_error_code: None,
        message: None,
        retry_at: None,
        token_expires_at: None,
        joined: false,
        account_only,
        unrecognised: false,
    }
}

/// App-level answers from as many distinct accounts as a pause needs.
fn app_level_evidence(gates: &ProviderGates, provider: Provider) {
    for _ in 0..gates.circuit.app_error_accounts {
        gates.record_report(&report(provider, Outcome::ConfigError, false));
    }
}

#[tokio::test]
async fn a_pause_ends_with_one_probe_whose_verdict_reopens_the_provider() {
    let gates = gates(100);
    app_level_evidence(&gates, Provider::X);
    assert!(matches!(
        gates.admit(Provider::X).await,
        Admission::Paused { .. }
    ));
    tokio::time::sleep(Duration::from_millis(120)).await;
    let probe = gates.admit(Provider::X).await;
    assert!(
        matches!(probe, Admission::Go(_)),
        "the probe is let through"
    );
    assert!(
        matches!(gates.admit(Provider::X).await, Admission::Paused { .. }),
        "one probe at a time"
    );
    gates.record(Provider::X, Outcome::Refreshed, None);
    assert!(
        matches!(gates.admit(Provider::X).await, Admission::Go(_)),
        "a good probe reopens"
    );
}

#[tokio::test]
async fn a_probe_that_never_reports_is_forgotten() {
    let gates = gates(100);
    app_level_evidence(&gates, Provider::X);
    tokio::time::sleep(Duration::from_millis(120)).await;
    assert!(matches!(gates.admit(Provider::X).await, Admission::Go(_)));
    tokio::time::sleep(Duration::from_millis(120)).await;
    assert!(
        matches!(gates.admit(Provider::X).await, Admission::Go(_)),
        "a new probe after a cooldown"
    );
}

#[tokio::test]
async fn app_level_answers_pause_only_once_enough_distinct_accounts_gave_one() {
    let gates = gates(10_000);
    let one = report(Provider::Pinterest, Outcome::ConfigError, false);
    for _ in 0..100 {
        gates.record_report(&one);
    }
    assert!(
        !gates.is_paused(Provider::Pinterest),
        "one account, however often"
    );
    assert!(!gates.has_config_error(Provider::Pinterest));
    let needed = gates.circuit.app_error_accounts;
    assert_eq!(needed, 3, "the documented default");
    for _ in 1..needed - 1 {
        gates.record_report(&report(Provider::Pinterest, Outcome::ConfigError, false));
    }
    assert!(
        !gates.is_paused(Provider::Pinterest),
        "{} accounts",
        needed - 1
    );
    gates.record_report(&report(Provider::Pinterest, Outcome::ConfigError, false));
    assert!(gates.is_paused(Provider::Pinterest));
    assert!(gates.has_config_error(Provider::Pinterest));
    assert!(!gates.is_paused(Provider::X));
}

#[tokio::test]
async fn app_level_answers_older_than_the_window_are_forgotten() {
    let mut settings = Settings::default();
    settings.circuit.app_error_window = Duration::from_millis(100);
    let gates = ProviderGates::from_settings(&settings);
    for _ in 0..2 {
        gates.record_report(&report(Provider::X, Outcome::ConfigError, false));
    }
    tokio::time::sleep(Duration::from_millis(150)).await;
    gates.record_report(&report(Provider::X, Outcome::ConfigError, false));
    assert!(!gates.is_paused(Provider::X));
}

#[tokio::test]
async fn an_accounts_own_failures_never_pause_the_platform() {
    let gates = gates(10_000);
    for _ in 0..50 {
        gates.record_report(&report(Provider::Mastodon, Outcome::TransientError, true));
        gates.record_report(&report(Provider::Mastodon, Outcome::RateLimited, true));
        gates.record_report(&report(Provider::Mastodon, Outcome::RejectedRevoked, false));
        let mut unrecognised = report(Provider::Mastodon, Outcome::TransientError, false);
        unrecognised.unrecognised = true;
        gates.record_report(&unrecognised);
    }
    assert!(!gates.is_paused(Provider::Mastodon));
    // The window (50) holds the 50 rejections, answers the platform gave
    // properly; 30 platform failures out of 50 cross the ratio.
    for _ in 0..30 {
        gates.record_report(&report(Provider::Mastodon, Outcome::TransientError, false));
    }
    assert!(
        gates.is_paused(Provider::Mastodon),
        "platform-wide failures still do"
    );
}

#[tokio::test]
async fn one_account_failing_again_and_again_weighs_one_in_the_ratio() {
    let gates = gates(10_000);
    let failing = report(Provider::X, Outcome::TransientError, false);
    for _ in 0..100 {
        gates.record_report(&failing);
    }
    assert!(!gates.is_paused(Provider::X));
}

#[tokio::test]
async fn a_probe_ending_in_an_accounts_own_failure_lets_the_next_call_probe() {
    let gates = gates(100);
    app_level_evidence(&gates, Provider::X);
    tokio::time::sleep(Duration::from_millis(120)).await;
    assert!(matches!(gates.admit(Provider::X).await, Admission::Go(_)));
    gates.record_report(&report(Provider::X, Outcome::TransientError, true));
    assert!(
        matches!(gates.admit(Provider::X).await, Admission::Go(_)),
        "no verdict: the next call is the probe"
    );
}

#[tokio::test]
async fn a_failure_ratio_over_the_threshold_pauses_only_that_provider() {
    let gates = gates(10_000);
    for _ in 0..20 {
        gates.record(Provider::X, Outcome::TransientError, None);
    }
    assert!(gates.is_paused(Provider::X));
    assert!(!gates.is_paused(Provider::Pinterest));
}

#[tokio::test]
async fn a_poisoned_gate_lock_is_recovered() {
    let gates = gates(10_000);
    let gate = &gates.gates[&Provider::X];
    let poisoned = std::thread::scope(|s| {
        s.spawn(|| {
            let _held = gate.state.lock().unwrap();
            panic!("a panic while the gate's lock is held");
        })
        .join()
    });
    assert!(poisoned.is_err());
    assert!(gate.state.is_poisoned());
    assert!(matches!(gates.admit(Provider::X).await, Admission::Go(_)));
    gates.record(
        Provider::X,
        Outcome::RateLimited,
        Some(Duration::from_secs(60)),
    );
    assert!(gates.is_paused(Provider::X));
    assert!(!gates.has_config_error(Provider::X));
}

#[tokio::test]
async fn rates_and_caps_that_validation_refuses_neither_panic_nor_hang() {
    for rate in [0.0, -1.0, f64::NAN, f64::INFINITY, 1e-300] {
        let mut settings = Settings::default();
        settings.providers.x.rate_per_second = rate;
        settings.providers.x.max_concurrency = 0;
        let gates = ProviderGates::from_settings(&settings);
        for _ in 0..3 {
            let admitted =
                tokio::time::timeout(Duration::from_secs(2), gates.admit(Provider::X)).await;
            match admitted {
                Ok(Admission::Go(permit)) => drop(permit),
                Ok(Admission::Paused { .. }) => panic!("rate {rate}: paused"),
                // A tiny positive rate waits (capped), never panics.
                Err(_) => assert!(rate > 0.0 && rate < 1.0, "rate {rate}: hung"),
            }
        }
    }
}

#[tokio::test]
async fn an_absurd_rate_limit_reset_does_not_overflow_the_clock() {
    let gates = gates(100);
    gates.record(Provider::X, Outcome::RateLimited, Some(Duration::MAX));
    assert!(gates.is_paused(Provider::X));
}
