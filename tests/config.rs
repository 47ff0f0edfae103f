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
        let settings = load(jail, None).unwrap();
        let err = tokenwarden::app::keyring(&settings)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("crypto.keys") && err.contains("32 bytes"),
            "{err}"
        );
        assert!(!err.contains("c2hvcnQ="), "{err}");
        Ok(())
    });
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
