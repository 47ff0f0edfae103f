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

/// `check-config` says which TLS mode is in force and how Redis is reached,
/// without the passwords in the URLs.
#[test]
fn check_config_reports_the_tls_modes_without_secrets() {
    let out = run(
        &[
            (
                "TOKENWARDEN__DATABASE__URL",
                "postgres://app:db-pass-canary@db.example:5432/tw?sslmode=verify-full",
            ),
            ("TOKENWARDEN__REDIS__MODE", "sentinel"),
            ("TOKENWARDEN__REDIS__SENTINEL_MASTER", "primary"),
            (
                "TOKENWARDEN__REDIS__URL",
                "rediss://:redis-pass-canary@s1.example:26379,rediss://:redis-pass-canary@s2.example:26379",
            ),
        ],
        &["check-config"],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains(
            "database TLS: verify-full (TLS; certificate and host name checked), \
             CA: built-in public web roots (the system store is not read)"
        ),
        "{stdout}"
    );
    assert!(
        stdout.contains(
            "redis: sentinel (master \"primary\", 2 sentinel(s)), TLS: on, CA: system roots"
        ),
        "{stdout}"
    );
    assert!(!stdout.contains("pass-canary"), "{stdout}");

    let out = run(&[], &["check-config"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("database TLS: prefer (TLS if offered; server not verified)"),
        "{stdout}"
    );
    assert!(stdout.contains("redis: standalone, TLS: off"), "{stdout}");
}
