//! Defaults, then the file, then the environment; a file's errors name it.

use std::time::Duration;

use figment::Jail;
use secrecy::ExposeSecret;
use tokenwarden::config::ClientAuth;

use crate::load;

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

/// The refresh flow reads `providers.bluesky.client_id` alone: loading
/// fills it with the client metadata the daemon serves when the connect
/// flow is on, so both flows send the same client id.
#[test]
fn the_bluesky_client_id_defaults_to_the_daemons_own_client_metadata() {
    Jail::expect_with(|jail| {
        jail.create_file(
            "tw.toml",
            r#"
            [connect]
            public_url = "https://tokens.example.com/warden/"
            allowed_redirects = ["https://app.example/"]
            "#,
        )?;
        let settings = load(jail, Some("tw.toml")).unwrap();
        assert_eq!(
            settings.providers.bluesky.client_id.as_deref(),
            Some("https://tokens.example.com/warden/oauth/client-metadata.json")
        );
        jail.set_env(
            "TOKENWARDEN__PROVIDERS__BLUESKY__CLIENT_ID",
            "https://app.example/client.json",
        );
        let settings = load(jail, Some("tw.toml")).unwrap();
        assert_eq!(
            settings.providers.bluesky.client_id.as_deref(),
            Some("https://app.example/client.json"),
            "a configured client id wins"
        );
        let settings = load(jail, None).unwrap();
        assert_eq!(
            settings.providers.bluesky.client_id.as_deref(),
            Some("https://app.example/client.json")
        );
        jail.clear_env();
        assert_eq!(load(jail, None).unwrap().providers.bluesky.client_id, None);
        Ok(())
    });
}
