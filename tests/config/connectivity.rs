//! `[database]` TLS and `[redis]` TLS and modes: each bad combination
//! refused naming its key, certificates from `_file`s, and any `sslmode` or
//! Redis URL list refused cleanly rather than panicking.

use figment::Jail;
use proptest::prelude::*;
use secrecy::{ExposeSecret, SecretString};
use tokenwarden::config::{RedisMode, Settings};

use crate::load;

const CERT: &str = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n";
const KEY: &str = "-----BEGIN PRIVATE KEY-----\nMIIE\n-----END PRIVATE KEY-----\n";

/// Environment variables set, the key the error names, and what it says.
type Case = (
    &'static [(&'static str, &'static str)],
    &'static str,
    &'static str,
);

#[test]
fn bad_tls_and_mode_settings_are_refused_naming_the_key() {
    let cases: &[Case] = &[
        (
            &[(
                "TOKENWARDEN__DATABASE__URL",
                "postgres://u@h/db?sslmode=verify_full",
            )],
            "database.url",
            "is not one of disable, allow, prefer, require, verify-ca, verify-full",
        ),
        (
            &[("TOKENWARDEN__DATABASE__SSL_ROOT_CERT", "not a certificate")],
            "database.ssl_root_cert",
            "holds no PEM certificate",
        ),
        (
            &[("TOKENWARDEN__DATABASE__SSL_CLIENT_CERT", CERT)],
            "database.ssl_client_key",
            "is required when database.ssl_client_cert is set",
        ),
        (
            &[(
                "TOKENWARDEN__DATABASE__SSL_CLIENT_KEY",
                "secret-but-not-pem",
            )],
            "database.ssl_client_key",
            "holds no PEM private key",
        ),
        (
            &[("TOKENWARDEN__REDIS__URL", "http://127.0.0.1:6379")],
            "redis.url",
            "must be redis://host:port or rediss://host:port",
        ),
        (
            &[("TOKENWARDEN__REDIS__URL", "redis://a:1,redis://b:2")],
            "redis.url",
            "lists several servers but redis.mode is standalone",
        ),
        (
            &[
                ("TOKENWARDEN__REDIS__MODE", "cluster"),
                ("TOKENWARDEN__REDIS__URL", "redis://a:1,rediss://b:2"),
                ("TOKENWARDEN__REDIS__QUEUE", "{core:apalis:queues:list}:q"),
            ],
            "redis.url",
            "mixes redis:// and rediss://",
        ),
        (
            &[("TOKENWARDEN__REDIS__MODE", "sentinel")],
            "redis.sentinel_master",
            "is required in sentinel mode",
        ),
        (
            &[("TOKENWARDEN__REDIS__SENTINEL_MASTER", "primary")],
            "redis.sentinel_master",
            "is only used with redis.mode = \"sentinel\"",
        ),
        (
            &[("TOKENWARDEN__REDIS__MODE", "cluster")],
            "redis.queue",
            "must start with the hash tag {core:apalis:queues:list} in cluster mode",
        ),
        (
            &[("TOKENWARDEN__REDIS__MODE", "replicated")],
            "redis.mode",
            "unknown variant",
        ),
        (
            &[("TOKENWARDEN__REDIS__TLS_CA_CERT", CERT)],
            "redis.url",
            "uses redis:// but TLS certificates are configured",
        ),
    ];
    for (vars, key, problem) in cases {
        Jail::expect_with(|jail| {
            for (name, value) in *vars {
                jail.set_env(name, value);
            }
            let err = load(jail, None).unwrap_err().to_string();
            assert!(
                err.contains(key) && err.contains(problem),
                "{vars:?}: {err}"
            );
            Ok(())
        });
    }
}

#[test]
fn certificates_and_keys_come_from_files() {
    Jail::expect_with(|jail| {
        jail.create_file("ca.pem", CERT)?;
        jail.create_file("client.pem", CERT)?;
        jail.create_file("client.key", KEY)?;
        let dir = jail.directory().to_owned();
        let path = |name: &str| dir.join(name).display().to_string();
        jail.set_env(
            "TOKENWARDEN__DATABASE__URL",
            "postgres://u@db.example/tw?sslmode=verify-full",
        );
        jail.set_env("TOKENWARDEN__DATABASE__SSL_ROOT_CERT_FILE", path("ca.pem"));
        jail.set_env(
            "TOKENWARDEN__DATABASE__SSL_CLIENT_CERT_FILE",
            path("client.pem"),
        );
        jail.set_env(
            "TOKENWARDEN__DATABASE__SSL_CLIENT_KEY_FILE",
            path("client.key"),
        );
        jail.set_env("TOKENWARDEN__REDIS__URL", "rediss://cache.example:6380");
        jail.set_env("TOKENWARDEN__REDIS__TLS_CA_CERT_FILE", path("ca.pem"));
        jail.set_env(
            "TOKENWARDEN__REDIS__TLS_CLIENT_CERT_FILE",
            path("client.pem"),
        );
        jail.set_env(
            "TOKENWARDEN__REDIS__TLS_CLIENT_KEY_FILE",
            path("client.key"),
        );
        let settings = load(jail, None).unwrap();
        assert_eq!(settings.database.ssl_mode(), Some("verify-full"));
        assert_eq!(
            settings.database.ssl_root_cert.as_deref(),
            Some(CERT.trim_end())
        );
        assert_eq!(
            settings
                .database
                .ssl_client_key
                .as_ref()
                .map(|k| k.expose_secret()),
            Some(KEY.trim_end())
        );
        assert!(settings.redis.uses_tls());
        assert_eq!(settings.redis.tls_ca_cert.as_deref(), Some(CERT.trim_end()));
        assert!(settings.warnings().is_empty(), "{:?}", settings.warnings());
        // The key's value never shows in Debug output.
        assert!(!format!("{settings:?}").contains("MIIE"));

        // Inline and as a file at once: refused, naming both.
        jail.set_env("TOKENWARDEN__REDIS__TLS_CLIENT_KEY", KEY);
        let err = load(jail, None).unwrap_err().to_string();
        assert!(err.contains("redis.tls_client_key_file"), "{err}");
        Ok(())
    });
}

fn defaults() -> Settings {
    Settings::from_figment(figment::Figment::new()).unwrap()
}

proptest! {
    /// Any `sslmode` value: accepted only when it is a libpq mode, else
    /// refused naming `database.url`; never a panic.
    #[test]
    fn any_sslmode_is_accepted_or_refused_cleanly(mode in "\\PC{0,20}") {
        let mut settings = defaults();
        let query: String = url::form_urlencoded::byte_serialize(mode.as_bytes()).collect();
        settings.database.url = Some(SecretString::from(format!(
            "postgres://u:pw@127.0.0.1/db?sslmode={query}"
        )));
        let known = tokenwarden::config::SSL_MODES.contains(&mode.to_ascii_lowercase().as_str());
        match settings.validate() {
            Ok(()) => prop_assert!(known),
            Err(e) => {
                prop_assert!(!known);
                prop_assert!(e.to_string().contains("database.url"));
                prop_assert!(!e.to_string().contains("pw@"));
            }
        }
    }

    /// Any comma-separated URL list in any mode: refused naming a `redis.`
    /// key or accepted; never a panic, never the password in the error.
    #[test]
    fn any_redis_url_list_is_accepted_or_refused_cleanly(
        urls in proptest::collection::vec("(redis|rediss|http|)://(:pw@)?[a-z0-9.:,{}]{0,12}", 0..4),
        mode in prop_oneof![Just(RedisMode::Standalone), Just(RedisMode::Sentinel), Just(RedisMode::Cluster)],
    ) {
        let mut settings = defaults();
        settings.redis.mode = mode;
        settings.redis.url = Some(SecretString::from(urls.join(",")));
        if mode == RedisMode::Sentinel {
            settings.redis.sentinel_master = Some("primary".into());
        }
        if mode == RedisMode::Cluster {
            settings.redis.queue = "{core:apalis:queues:list}:refresh".into();
        }
        if let Err(e) = settings.validate() {
            let text = e.to_string();
            prop_assert!(text.contains("redis."), "{}", text);
            prop_assert!(!text.contains(":pw@"), "{}", text);
        }
    }
}
