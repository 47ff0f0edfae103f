//! Values refused at load, naming their key: each section's numbers and
//! durations, the cross-field rules, the API server's connection limits.

use figment::Jail;

use crate::load;

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
