//! Configuration layering and validation. `figment::Jail` changes the process
//! environment, so these live in a test binary of their own.

// figment::Jail closures return figment::Error, whose size is not ours to choose.
#![allow(clippy::result_large_err)]

use std::time::Duration;

use figment::Jail;
use secrecy::ExposeSecret;
use tokenwarden::config::{ClientAuth, ConfigError, Settings};

fn load(jail: &Jail, file: Option<&str>) -> Result<Settings, ConfigError> {
    let _ = jail;
    Settings::load(file.map(std::path::Path::new))
}

#[test]
fn layers_apply_in_order_defaults_file_env() {
    Jail::expect_with(|jail| {
        jail.create_file(
            "tw.toml",
            r#"
            [http]
            connect_timeout = "3s"
            request_timeout = "9s"
            [providers.x]
            client_id = "from-file"
            client_auth = "body"
            "#,
        )?;
        jail.set_env("TOKENWARDEN__HTTP__REQUEST_TIMEOUT", "12s");
        jail.set_env("TOKENWARDEN__PROVIDERS__X__CLIENT_SECRET", "from-env");
        let settings = load(jail, Some("tw.toml")).unwrap();
        assert_eq!(
            settings.http.connect_timeout,
            Duration::from_secs(3),
            "file over defaults"
        );
        assert_eq!(
            settings.http.request_timeout,
            Duration::from_secs(12),
            "env over file"
        );
        assert_eq!(
            settings.http.max_response_bytes,
            1024 * 1024,
            "defaults where nobody spoke"
        );
        assert_eq!(settings.providers.x.client_id.as_deref(), Some("from-file"));
        assert_eq!(settings.providers.x.client_auth, ClientAuth::Body);
        assert_eq!(
            settings
                .providers
                .x
                .client_secret
                .as_ref()
                .unwrap()
                .expose_secret(),
            "from-env"
        );
        assert_eq!(
            settings.providers.x.token_url.as_ref().unwrap().as_str(),
            "https://api.x.com/2/oauth2/token",
            "a section given in part keeps its other defaults"
        );
        Ok(())
    });
}

#[test]
fn secrets_can_come_from_files() {
    Jail::expect_with(|jail| {
        // Only the files speak: an ambient TOKENWARDEN__DATABASE__URL would
        // make database.url ambiguous (and refused).
        jail.clear_env();
        jail.create_file("db-url", "postgres://u:p@db.internal:5432/tw\n")?;
        jail.create_file("keys", "k1:AQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQE=\n")?;
        jail.create_file("x-secret", "s3cret\n")?;
        let dir = jail.directory().to_owned();
        jail.set_env(
            "TOKENWARDEN__DATABASE__URL_FILE",
            dir.join("db-url").display().to_string(),
        );
        jail.set_env(
            "TOKENWARDEN__CRYPTO__KEYS_FILE",
            dir.join("keys").display().to_string(),
        );
        jail.set_env(
            "TOKENWARDEN__PROVIDERS__X__CLIENT_SECRET_FILE",
            dir.join("x-secret").display().to_string(),
        );
        let settings = load(jail, None).unwrap();
        assert_eq!(
            settings.database.url.as_ref().unwrap().expose_secret(),
            "postgres://u:p@db.internal:5432/tw"
        );
        assert_eq!(
            settings
                .providers
                .x
                .client_secret
                .as_ref()
                .unwrap()
                .expose_secret(),
            "s3cret"
        );
        let keyring = tokenwarden::app::keyring(&settings).unwrap();
        assert_eq!(keyring.primary_key_id(), "k1");
        // Debug output of the whole configuration shows no secret.
        let debug = format!("{settings:?}");
        assert!(
            !debug.contains("s3cret") && !debug.contains("u:p@"),
            "{debug}"
        );
        Ok(())
    });
}

#[test]
fn errors_name_the_key() {
    let cases: &[(&str, &str, &str)] = &[
        (
            "TOKENWARDEN__DATABASE__MAX_CONNECTIONS",
            "many",
            "database.max_connections",
        ),
        (
            "TOKENWARDEN__DATABASE__MAX_CONNECTIONS",
            "0",
            "database.max_connections",
        ),
        (
            "TOKENWARDEN__HTTP__REQUEST_TIMEOUT",
            "0s",
            "http.request_timeout",
        ),
        (
            "TOKENWARDEN__HTTP__MAX_RESPONSE_BYTES",
            "10",
            "http.max_response_bytes",
        ),
        (
            "TOKENWARDEN__ENGINE__LEASE_MARGIN",
            "0s",
            "engine.lease_margin",
        ),
        ("TOKENWARDEN__LOG__FORMAT", "xml", "log.format"),
        ("TOKENWARDEN__LOG__FILTER", "a=b=c", "log.filter"),
        (
            "TOKENWARDEN__PROVIDERS__PINTEREST__REFRESH_FRACTION",
            "0",
            "providers.pinterest.refresh_fraction",
        ),
        (
            "TOKENWARDEN__PROVIDERS__X__TOKEN_URL",
            "ftp://x/token",
            "providers.x.token_url",
        ),
        (
            "TOKENWARDEN__PROVIDERS__X__CLIENT_AUTH",
            "header",
            "providers.x.client_auth",
        ),
        (
            "TOKENWARDEN__PROVIDERS__FRIENDSTER__CLIENT_ID",
            "x",
            "providers.friendster",
        ),
        (
            "TOKENWARDEN__DATABASE__URL_FILE",
            "/nonexistent/url",
            "database.url_file",
        ),
    ];
    for (key, value, named) in cases {
        // A jail per case: each restores the environment when it ends.
        Jail::expect_with(|jail| {
            jail.set_env(key, value);
            let err = load(jail, None).unwrap_err().to_string();
            assert!(err.contains(named), "{key}={value}: {err}");
            Ok(())
        });
    }
}

#[test]
fn config_file_errors_name_the_file_and_key() {
    Jail::expect_with(|jail| {
        let err = load(jail, Some("missing.toml")).unwrap_err().to_string();
        assert!(
            err.contains("--config") && err.contains("missing.toml"),
            "{err}"
        );
        jail.create_file("bad.toml", "[http]\nconnect_timeout = 5\n")?;
        let err = load(jail, Some("bad.toml")).unwrap_err().to_string();
        assert!(
            err.contains("http.connect_timeout") && err.contains("bad.toml"),
            "{err}"
        );
        Ok(())
    });
}

#[test]
fn a_bad_key_spec_is_named_without_echoing_the_key() {
    Jail::expect_with(|jail| {
        jail.set_env("TOKENWARDEN__CRYPTO__KEYS", "k1:c2hvcnQ=");
        // Refused at load, like every other configuration error...
        let err = load(jail, None).unwrap_err().to_string();
        assert!(
            err.contains("crypto.keys") && err.contains("32 bytes"),
            "{err}"
        );
        assert!(!err.contains("c2hvcnQ="), "{err}");
        // ...and by the keyring itself, as a configuration error (exit 2).
        jail.set_env(
            "TOKENWARDEN__CRYPTO__KEYS",
            "k1:AQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQE=",
        );
        let mut settings = load(jail, None).unwrap();
        settings.crypto.keys = Some("k1:c2hvcnQ=".to_owned().into());
        let err = tokenwarden::app::keyring(&settings).unwrap_err();
        assert!(err.downcast_ref::<ConfigError>().is_some(), "{err}");
        let err = err.to_string();
        assert!(
            err.contains("crypto.keys") && err.contains("32 bytes"),
            "{err}"
        );
        assert!(!err.contains("c2hvcnQ="), "{err}");
        Ok(())
    });
}

/// Issue 9, defect 5: numbers that used to pass and then killed or hung the
/// daemon (a rate of zero panicked under the gate's lock, a concurrency of
/// zero hung every job), and their kin in every section.
#[test]
fn every_numeric_setting_is_checked_naming_its_key() {
    let mut cases: Vec<(String, &str)> = Vec::new();
    for provider in tokenwarden::domain::Provider::ALL {
        let section = format!(
            "TOKENWARDEN__PROVIDERS__{}__",
            provider.config_key().to_uppercase()
        );
        for bad in [
            "0", "-1", "0.0", "nan", "NaN", "inf", "-inf", "1e-300", "1e300",
        ] {
            cases.push((format!("{section}RATE_PER_SECOND"), bad));
        }
        for bad in ["0", "-1", "1000000000000"] {
            cases.push((format!("{section}MAX_CONCURRENCY"), bad));
        }
        for bad in ["0", "-0.5", "1.5", "nan", "inf"] {
            cases.push((format!("{section}REFRESH_FRACTION"), bad));
        }
        for field in [
            "DEFAULT_ACCESS_TOKEN_LIFETIME",
            "KEEP_ALIVE_INTERVAL",
            "HEALTH_CHECK_INTERVAL",
            "REFRESH_TOKEN_LIFETIME",
        ] {
            cases.push((format!("{section}{field}"), "0s"));
        }
        for field in [
            "REFRESH_MARGIN",
            "MIN_TOKEN_AGE",
            "JITTER",
            "DEFAULT_ACCESS_TOKEN_LIFETIME",
            "KEEP_ALIVE_INTERVAL",
            "HEALTH_CHECK_INTERVAL",
            "REFRESH_TOKEN_LIFETIME",
        ] {
            cases.push((format!("{section}{field}"), "100000years"));
        }
    }
    let zero_or_negative = [
        "DATABASE__MAX_CONNECTIONS",
        "SCHEDULER__BATCH_SIZE",
        "SCHEDULER__MAX_OUTSTANDING",
        "SCHEDULER__SWEEP_BATCH_SIZE",
        "WORKER__CONCURRENCY",
        "WORKER__MISSED_HEARTBEATS",
        "CIRCUIT__WINDOW",
        "CIRCUIT__MIN_CALLS",
        "WEBHOOKS__CONCURRENCY",
    ];
    for key in zero_or_negative {
        cases.push((format!("TOKENWARDEN__{key}"), "0"));
        cases.push((format!("TOKENWARDEN__{key}"), "-3"));
        cases.push((format!("TOKENWARDEN__{key}"), "100000000000"));
    }
    for (key, bad) in [
        ("CIRCUIT__FAILURE_RATIO", "0"),
        ("CIRCUIT__FAILURE_RATIO", "1.01"),
        ("CIRCUIT__FAILURE_RATIO", "nan"),
        ("HTTP__MAX_RESPONSE_BYTES", "0"),
        ("HTTP__MAX_RESPONSE_BYTES", "99999999999"),
    ] {
        cases.push((format!("TOKENWARDEN__{key}"), bad));
    }
    let durations = [
        "DATABASE__ACQUIRE_TIMEOUT",
        "HTTP__CONNECT_TIMEOUT",
        "HTTP__REQUEST_TIMEOUT",
        "ENGINE__LEASE_MARGIN",
        "ENGINE__SINGLE_FLIGHT_WAIT",
        "ENGINE__RETRY_BASE",
        "ENGINE__RETRY_CAP",
        "REDIS__RESPONSE_TIMEOUT",
        "SCHEDULER__INTERVAL",
        "SCHEDULER__CLAIM_TIMEOUT",
        "WORKER__JOB_TIMEOUT",
        "WORKER__POLL_INTERVAL",
        "WORKER__HEARTBEAT_INTERVAL",
        "CIRCUIT__COOLDOWN",
        "SHUTDOWN__GRACE",
        "METRICS__STATE_INTERVAL",
        "WEBHOOKS__TIMEOUT",
        "WEBHOOKS__RETRY_BASE",
        "WEBHOOKS__RETRY_CAP",
        "WEBHOOKS__POLL_INTERVAL",
    ];
    for key in durations {
        cases.push((format!("TOKENWARDEN__{key}"), "0s"));
        // Large enough to overflow a timestamp, or a sum of two durations.
        cases.push((format!("TOKENWARDEN__{key}"), "500000000000years"));
    }
    cases.push(("TOKENWARDEN__METRICS__OVERDUE_AFTER".into(), "100000years"));
    for (env_key, value) in &cases {
        let named = env_key
            .trim_start_matches("TOKENWARDEN__")
            .replace("__", ".")
            .to_lowercase();
        Jail::expect_with(|jail| {
            jail.clear_env();
            jail.set_env(env_key, value);
            let err = match load(jail, None) {
                Ok(_) => panic!("{env_key}={value} was accepted"),
                Err(e) => e.to_string(),
            };
            assert!(err.contains(&named), "{env_key}={value}: {err}");
            Ok(())
        });
    }
}

#[test]
fn cross_field_duration_rules_name_the_key() {
    for (key, value, named) in [
        ("TOKENWARDEN__ENGINE__RETRY_CAP", "1s", "engine.retry_cap"),
        (
            "TOKENWARDEN__WEBHOOKS__RETRY_CAP",
            "1s",
            "webhooks.retry_cap",
        ),
        ("TOKENWARDEN__CIRCUIT__MIN_CALLS", "51", "circuit.min_calls"),
        (
            "TOKENWARDEN__HTTP__USER_AGENT",
            "tw\u{7f}",
            "http.user_agent",
        ),
    ] {
        Jail::expect_with(|jail| {
            jail.clear_env();
            jail.set_env(key, value);
            let err = load(jail, None).unwrap_err().to_string();
            assert!(err.contains(named), "{key}={value}: {err}");
            Ok(())
        });
    }
}

/// A `_file` secret beside an explicit value of the same secret, from any
/// layer, is ambiguous: refused naming both keys. A built-in default does not
/// count as a value.
#[test]
fn a_secret_given_inline_and_as_a_file_is_refused_naming_both() {
    let secrets = [
        (
            "DATABASE__URL",
            "postgres://u:p@db.internal/tw",
            "database.url",
        ),
        ("REDIS__URL", "redis://:pw@redis.internal", "redis.url"),
        (
            "CRYPTO__KEYS",
            "k1:AQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQE=",
            "crypto.keys",
        ),
        ("API__KEYS", "0123456789abcdef0123", "api.keys"),
        (
            "PROVIDERS__X__CLIENT_SECRET",
            "s3cret-inline",
            "providers.x.client_secret",
        ),
        (
            "PROVIDERS__MASTODON__CLIENT_SECRET",
            "s3cret-inline",
            "providers.mastodon.client_secret",
        ),
    ];
    for (env_key, value, key) in secrets {
        // Both from the environment.
        Jail::expect_with(|jail| {
            jail.clear_env();
            jail.create_file("secret", value)?;
            let path = jail.directory().join("secret").display().to_string();
            jail.set_env(format!("TOKENWARDEN__{env_key}"), value);
            jail.set_env(format!("TOKENWARDEN__{env_key}_FILE"), &path);
            let err = load(jail, None).unwrap_err().to_string();
            assert!(
                err.contains(key) && err.contains(&format!("{key}_file")),
                "{key}: {err}"
            );
            assert!(!err.contains(value), "the secret is echoed: {err}");
            Ok(())
        });
        // The value in the config file, the path in the environment.
        Jail::expect_with(|jail| {
            jail.clear_env();
            jail.create_file("secret", value)?;
            let (section, field) = key.rsplit_once('.').unwrap();
            jail.create_file("tw.toml", &format!("[{section}]\n{field} = {value:?}\n"))?;
            let path = jail.directory().join("secret").display().to_string();
            jail.set_env(format!("TOKENWARDEN__{env_key}_FILE"), &path);
            let err = load(jail, Some("tw.toml")).unwrap_err().to_string();
            assert!(
                err.contains(key)
                    && err.contains(&format!("{key}_file"))
                    && err.contains("tw.toml"),
                "{key}: {err}"
            );
            assert!(!err.contains(value), "the secret is echoed: {err}");
            Ok(())
        });
    }
    // A file alone replaces the built-in default URL.
    Jail::expect_with(|jail| {
        jail.clear_env();
        jail.create_file("db-url", "postgres://u:p@db.internal:5432/tw")?;
        let path = jail.directory().join("db-url").display().to_string();
        jail.set_env("TOKENWARDEN__DATABASE__URL_FILE", &path);
        let settings = load(jail, None).unwrap();
        assert_eq!(
            settings.database.url.unwrap().expose_secret(),
            "postgres://u:p@db.internal:5432/tw"
        );
        Ok(())
    });
}

mod command_line {
    //! The binary's exit codes: every configuration error is 2.

    use std::process::{Command, Output};

    const BIN: &str = env!("CARGO_BIN_EXE_tokenwarden");
    const KEY: &str = "k1:AQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQE=";

    fn run(env: &[(&str, &str)], args: &[&str]) -> Output {
        let mut cmd = Command::new(BIN);
        for (key, _) in std::env::vars().filter(|(k, _)| k.starts_with("TOKENWARDEN")) {
            cmd.env_remove(key);
        }
        cmd.env_remove("RUST_LOG")
            .env("TOKENWARDEN__CRYPTO__KEYS", KEY);
        for (key, value) in env {
            cmd.env(key, value);
        }
        cmd.args(args).output().unwrap()
    }

    fn stderr(out: &Output) -> String {
        String::from_utf8_lossy(&out.stderr).into_owned()
    }

    #[test]
    fn check_config_refuses_bad_numbers_with_exit_2() {
        assert!(run(&[], &["check-config"]).status.success());
        for (key, value, named) in [
            (
                "TOKENWARDEN__PROVIDERS__X__RATE_PER_SECOND",
                "0",
                "providers.x.rate_per_second",
            ),
            (
                "TOKENWARDEN__PROVIDERS__THREADS__RATE_PER_SECOND",
                "-2.5",
                "providers.threads.rate_per_second",
            ),
            (
                "TOKENWARDEN__PROVIDERS__YOUTUBE__RATE_PER_SECOND",
                "nan",
                "providers.youtube.rate_per_second",
            ),
            (
                "TOKENWARDEN__PROVIDERS__BLUESKY__MAX_CONCURRENCY",
                "0",
                "providers.bluesky.max_concurrency",
            ),
            (
                "TOKENWARDEN__WORKER__CONCURRENCY",
                "0",
                "worker.concurrency",
            ),
        ] {
            let out = run(&[(key, value)], &["check-config"]);
            assert_eq!(
                out.status.code(),
                Some(2),
                "{key}={value}: {}",
                stderr(&out)
            );
            assert!(
                stderr(&out).contains(named),
                "{key}={value}: {}",
                stderr(&out)
            );
        }
    }

    #[test]
    fn key_errors_exit_2_like_every_configuration_error() {
        for spec in [
            "k1:c2hvcnQ=",
            "bad id!:AQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQE=",
            "nonsense",
        ] {
            let out = run(&[("TOKENWARDEN__CRYPTO__KEYS", spec)], &["check-config"]);
            assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
            assert!(stderr(&out).contains("crypto.keys"), "{}", stderr(&out));
        }
        let mut cmd = Command::new(BIN);
        for (key, _) in std::env::vars().filter(|(k, _)| k.starts_with("TOKENWARDEN")) {
            cmd.env_remove(key);
        }
        let out = cmd.arg("check-config").output().unwrap();
        assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
        assert!(
            stderr(&out).contains("crypto.keys is not set"),
            "{}",
            stderr(&out)
        );
    }

    /// `keys generate` prints only keys that start-up accepts: the id rule is
    /// the keyring's own.
    #[test]
    fn keys_generate_refuses_an_id_start_up_would_refuse() {
        for bad in [
            "bad id!",
            "",
            "k:1",
            "a-very-long-key-id-of-more-than-32-chars",
        ] {
            let out = run(&[], &["keys", "generate", "--id", bad]);
            assert_eq!(out.status.code(), Some(2), "{bad:?}: {}", stderr(&out));
            assert!(out.stdout.is_empty(), "{bad:?}: a key was printed");
            assert!(stderr(&out).contains("--id"), "{}", stderr(&out));
        }
        for good in ["k1", "k20250101", "prod_2-a"] {
            let out = run(&[], &["keys", "generate", "--id", good]);
            assert!(out.status.success(), "{good}: {}", stderr(&out));
            let printed = String::from_utf8(out.stdout).unwrap();
            let keyring = tokenwarden::crypto::Keyring::parse(&printed.trim().to_owned().into())
                .expect("a generated key is accepted at start-up");
            assert_eq!(keyring.primary_key_id(), good);
            let out = run(
                &[("TOKENWARDEN__CRYPTO__KEYS", printed.trim())],
                &["check-config"],
            );
            assert!(out.status.success(), "{}", stderr(&out));
        }
    }
}

mod numbers_property {
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
            (Range::Whole(min, max), toml::Value::Integer(v)) => {
                (min..=max).contains(&i128::from(*v))
            }
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
}

/// Issue 9, defect 4: the HTTP server's connection limits are validated,
/// naming the key.
#[test]
fn api_connection_limits_are_validated_naming_the_key() {
    let cases: &[(&str, &str, &str)] = &[
        (
            "TOKENWARDEN__API__HEADER_READ_TIMEOUT",
            "0s",
            "api.header_read_timeout",
        ),
        (
            "TOKENWARDEN__API__HEADER_READ_TIMEOUT",
            "2h",
            "api.header_read_timeout",
        ),
        (
            "TOKENWARDEN__API__HEADER_READ_TIMEOUT",
            "soon",
            "api.header_read_timeout",
        ),
        ("TOKENWARDEN__API__IDLE_TIMEOUT", "1ms", "api.idle_timeout"),
        (
            "TOKENWARDEN__API__MAX_BODY_BYTES",
            "18446744073709551615",
            "api.max_body_bytes",
        ),
        (
            "TOKENWARDEN__API__FORCE_REFRESH_MIN_INTERVAL",
            "18446744073709551615s",
            "api.force_refresh_min_interval",
        ),
        (
            "TOKENWARDEN__API__FORCE_REFRESH_MIN_INTERVAL",
            "2days",
            "api.force_refresh_min_interval",
        ),
        (
            "TOKENWARDEN__API__MAX_CONNECTIONS",
            "0",
            "api.max_connections",
        ),
        (
            "TOKENWARDEN__API__MAX_CONNECTIONS",
            "-1",
            "api.max_connections",
        ),
        (
            "TOKENWARDEN__API__MAX_CONNECTIONS",
            "2000000",
            "api.max_connections",
        ),
    ];
    for (key, value, named) in cases {
        Jail::expect_with(|jail| {
            jail.set_env(key, value);
            let err = load(jail, None).unwrap_err().to_string();
            assert!(err.contains(named), "{key}={value}: {err}");
            Ok(())
        });
    }
    Jail::expect_with(|jail| {
        let settings = load(jail, None).unwrap();
        assert_eq!(
            settings.api.header_read_timeout,
            std::time::Duration::from_secs(10)
        );
        assert_eq!(
            settings.api.idle_timeout,
            std::time::Duration::from_secs(60)
        );
        assert_eq!(settings.api.max_connections, 1024);
        Ok(())
    });
}
