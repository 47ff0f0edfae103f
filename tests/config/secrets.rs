//! Secrets: read from `_file` paths, key specs refused without echoing the
//! key, and a secret given both inline and as a file refused.

use figment::Jail;
use secrecy::ExposeSecret;
use tokenwarden::config::ConfigError;

use crate::load;

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
