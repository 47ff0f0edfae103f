//! Any value for any numeric key: accepted and inside the key's range, or
//! refused naming the key; never a panic.

use std::time::Duration;

use figment::Figment;
use figment::providers::Serialized;
use proptest::prelude::*;
use serde::{Serialize, Serializer};
use tokenwarden::config::{Defaults, MAX_DURATION, Settings};
use tokenwarden::domain::Provider;

#[derive(Clone, Copy, Debug)]
enum Range {
    Whole(i128, i128),
    /// Greater than the first, at most the second.
    Real(f64, f64),
    Span(Duration, Duration),
}

const POSITIVE: Duration = Duration::from_nanos(1);

fn keys() -> Vec<(String, Range)> {
    use Range::*;
    let span = |min| Span(min, MAX_DURATION);
    let mut keys: Vec<(String, Range)> = [
        ("database.max_connections", Whole(1, 10_000)),
        ("database.acquire_timeout", span(POSITIVE)),
        ("http.connect_timeout", span(POSITIVE)),
        ("http.request_timeout", span(POSITIVE)),
        ("http.rotating_request_timeout", span(POSITIVE)),
        ("http.pool_idle_timeout", span(POSITIVE)),
        ("http.max_response_bytes", Whole(1024, 64 * 1024 * 1024)),
        ("engine.lease_margin", span(Duration::from_secs(1))),
        ("engine.single_flight_wait", span(POSITIVE)),
        ("engine.retry_base", span(POSITIVE)),
        ("engine.retry_cap", span(POSITIVE)),
        ("redis.response_timeout", span(POSITIVE)),
        ("scheduler.interval", span(POSITIVE)),
        ("scheduler.batch_size", Whole(1, 100_000)),
        ("scheduler.max_outstanding", Whole(1, 10_000_000)),
        ("scheduler.claim_timeout", span(POSITIVE)),
        ("scheduler.sweep_batch_size", Whole(1, 100_000)),
        ("worker.concurrency", Whole(1, 100_000)),
        ("worker.job_timeout", span(POSITIVE)),
        ("worker.poll_interval", span(POSITIVE)),
        (
            "worker.heartbeat_interval",
            Span(POSITIVE, Duration::from_secs(3600)),
        ),
        ("worker.missed_heartbeats", Whole(1, 1_000)),
        ("circuit.window", Whole(1, 100_000)),
        ("circuit.failure_ratio", Real(0.0, 1.0)),
        ("circuit.min_calls", Whole(1, 100_000)),
        ("circuit.cooldown", span(POSITIVE)),
        ("circuit.app_error_accounts", Whole(1, 100_000)),
        ("circuit.app_error_window", span(POSITIVE)),
        ("shutdown.grace", span(POSITIVE)),
        ("metrics.state_interval", span(POSITIVE)),
        ("metrics.overdue_after", span(Duration::ZERO)),
        ("webhooks.timeout", span(POSITIVE)),
        ("webhooks.retry_base", span(POSITIVE)),
        ("webhooks.retry_cap", span(POSITIVE)),
        ("webhooks.concurrency", Whole(1, 10_000)),
        ("webhooks.poll_interval", span(POSITIVE)),
    ]
    .into_iter()
    .map(|(k, r)| (k.to_owned(), r))
    .collect();
    for provider in Provider::ALL {
        let p = provider.config_key();
        for (field, range) in [
            ("refresh_fraction", Real(0.0, 1.0)),
            ("refresh_margin", span(Duration::ZERO)),
            ("default_access_token_lifetime", span(POSITIVE)),
            ("min_token_age", span(Duration::ZERO)),
            ("jitter", span(Duration::ZERO)),
            ("keep_alive_interval", span(POSITIVE)),
            ("health_check_interval", span(POSITIVE)),
            ("refresh_token_lifetime", span(POSITIVE)),
            ("max_concurrency", Whole(1, 100_000)),
            // Documented: a finite number > 0; the bounds are the bucket's.
            ("rate_per_second", Real(0.000_999_999, 1_000_000.0)),
        ] {
            keys.push((format!("providers.{p}.{field}"), range));
        }
    }
    keys
}

/// Cross-field rules refuse some in-range values, naming the rule's key.
const CROSS_FIELD_KEYS: &[&str] = &[
    "http.connect_timeout",
    "engine.retry_cap",
    "webhooks.retry_cap",
    "circuit.min_calls",
    "scheduler.claim_timeout",
    "worker.job_timeout",
    "shutdown.grace",
];

#[derive(Clone, Debug)]
enum Input {
    Signed(i64),
    Unsigned(u64),
    Real(f64),
    Text(String),
}

impl Serialize for Input {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Input::Signed(v) => s.serialize_i64(*v),
            Input::Unsigned(v) => s.serialize_u64(*v),
            Input::Real(v) => s.serialize_f64(*v),
            Input::Text(v) => s.serialize_str(v),
        }
    }
}

fn input() -> impl Strategy<Value = Input> {
    let unit = prop::sample::select(vec![
        "", "ns", "ms", "s", "m", "h", "days", "weeks", "years",
    ]);
    prop_oneof![
        any::<i64>().prop_map(Input::Signed),
        (-10i64..200_000).prop_map(Input::Signed),
        any::<u64>().prop_map(Input::Unsigned),
        any::<f64>().prop_map(Input::Real),
        (-2.0f64..2.0).prop_map(Input::Real),
        prop::sample::select(vec![
            f64::NAN,
            f64::INFINITY,
            f64::NEG_INFINITY,
            0.0,
            -0.0,
            f64::MIN_POSITIVE,
            1e-300,
            f64::MAX,
        ])
        .prop_map(Input::Real),
        (any::<u64>(), unit.clone()).prop_map(|(n, u)| Input::Text(format!("{n}{u}"))),
        (0u64..100_000, unit).prop_map(|(n, u)| Input::Text(format!("{n}{u}"))),
        ".{0,12}".prop_map(Input::Text),
    ]
}

/// The key's value read back from accepted settings.
fn read_back(settings: &Settings, key: &str) -> toml::Value {
    let mut value = toml::Value::try_from(settings).unwrap();
    for part in key.split('.') {
        value = value
            .get(part)
            .unwrap_or_else(|| panic!("{key} is not in the settings"))
            .clone();
    }
    value
}

fn within(range: Range, value: &toml::Value) -> bool {
    match (range, value) {
        (Range::Whole(min, max), toml::Value::Integer(v)) => (min..=max).contains(&i128::from(*v)),
        (Range::Real(min, max), toml::Value::Float(v)) => *v > min && *v <= max,
        (Range::Span(min, max), toml::Value::String(v)) => {
            humantime::parse_duration(v).is_ok_and(|d| d >= min && d <= max)
        }
        _ => false,
    }
}

/// Whether the input itself lies in the key's range (then only a
/// cross-field rule may refuse it).
fn input_within(range: Range, input: &Input) -> bool {
    match (range, input) {
        (Range::Whole(min, max), Input::Signed(v)) => (min..=max).contains(&i128::from(*v)),
        (Range::Whole(min, max), Input::Unsigned(v)) => (min..=max).contains(&i128::from(*v)),
        (Range::Real(min, max), Input::Real(v)) => *v > min && *v <= max,
        (Range::Real(min, max), Input::Signed(v)) => (*v as f64) > min && (*v as f64) <= max,
        (Range::Real(min, max), Input::Unsigned(v)) => (*v as f64) > min && (*v as f64) <= max,
        (Range::Span(min, max), Input::Text(v)) => {
            humantime::parse_duration(v).is_ok_and(|d| d >= min && d <= max)
        }
        _ => false,
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 1000, ..ProptestConfig::default() })]

    #[test]
    fn any_value_is_in_range_or_refused_naming_its_key(
        (key, range) in prop::sample::select(keys()),
        input in input(),
    ) {
        let figment = Figment::new()
            .merge(Defaults)
            .merge(Serialized::default(&key, &input));
        match Settings::from_figment(figment) {
            Ok(settings) => {
                let value = read_back(&settings, &key);
                prop_assert!(within(range, &value), "{key} = {input:?} accepted as {value}");
            }
            Err(error) => {
                let error = error.to_string();
                let cross_field = input_within(range, &input)
                    && CROSS_FIELD_KEYS.iter().any(|k| error.contains(k));
                prop_assert!(
                    error.contains(&key) || cross_field,
                    "{key} = {input:?}: {error}"
                );
            }
        }
    }
}
