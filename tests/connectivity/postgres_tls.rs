//! PostgreSQL that accepts only TLS (`ssl = on`, `hostssl` lines only).

use std::sync::Arc;
use std::time::Duration;

use figment::Figment;
use figment::providers::{Format, Toml};
use reqwest::StatusCode;
use serde_json::Value;
use tokenwarden::api::{ApiState, router};
use tokenwarden::config::{DEFAULT_TOML, Settings};
use tokenwarden::crypto::Keyring;
use tokenwarden::engine::{Engine, EngineConfig};
use tokenwarden::providers::ProviderRegistry;
use tokenwarden::store;

use crate::servers::{Ca, PgTls};

/// Settings as an operator writes them: the URL with its `sslmode` and the
/// CA as a `_file`.
fn settings(url: &str, ca_file: &std::path::Path) -> Settings {
    let toml = format!(
        "[database]\nurl = \"{url}\"\nssl_root_cert_file = \"{}\"\nmigrate_on_start = false\n",
        ca_file.display()
    );
    Settings::from_figment(
        Figment::new()
            .merge(Toml::string(DEFAULT_TOML))
            .merge(Toml::string(&toml)),
    )
    .unwrap()
}

#[tokio::test]
async fn verify_full_against_the_servers_ca_connects_over_tls() {
    let ca = Ca::new("tokenwarden test CA");
    let pg = PgTls::start(&ca);
    let settings = settings(&pg.url("sslmode=verify-full"), &ca.cert);
    assert_eq!(settings.database.ssl_mode(), Some("verify-full"));
    let pool = store::connect(&settings.database, None)
        .await
        .expect("verify-full connects with the server's CA");
    let over_tls: bool =
        sqlx::query_scalar("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()")
            .fetch_one(&pool)
            .await
            .unwrap();
    assert!(over_tls);
    // The schema works over it: migrations run as at start-up.
    store::migrate(&pool).await.unwrap();
    pool.close().await;
}

#[tokio::test]
async fn a_wrong_ca_is_refused_with_a_clear_error() {
    let ca = Ca::new("tokenwarden test CA");
    let other = Ca::new("some other CA");
    let pg = PgTls::start(&ca);
    let settings = settings(&pg.url("sslmode=verify-full"), &other.cert);
    let error = store::connect(&settings.database, None)
        .await
        .expect_err("a certificate from another CA is refused")
        .to_string();
    assert!(
        error.contains("TLS to PostgreSQL failed") && error.contains("UnknownIssuer"),
        "{error}"
    );
    assert!(error.contains("database.ssl_root_cert"), "{error}");
}

#[tokio::test]
async fn without_tls_the_server_refuses_and_the_error_says_why() {
    let ca = Ca::new("tokenwarden test CA");
    let pg = PgTls::start(&ca);
    let settings = settings(&pg.url("sslmode=disable"), &ca.cert);
    assert!(
        settings
            .warnings()
            .iter()
            .any(|w| w.contains("sslmode=disable")),
        "a CA with a mode that does not verify is worth a warning"
    );
    let error = store::connect(&settings.database, None)
        .await
        .expect_err("hostssl only: a plain connection is refused");
    assert!(matches!(error, sqlx::Error::Database(_)), "{error}");
}

/// A certificate problem that appears while running (here: the pool's
/// connections are made lazily, as after a server certificate rotation)
/// makes `/readyz` fail naming TLS, not just "unreachable".
#[tokio::test]
async fn readyz_names_a_certificate_error() {
    let ca = Ca::new("tokenwarden test CA");
    let other = Ca::new("some other CA");
    let pg = PgTls::start(&ca);
    let mut settings = settings(&pg.url("sslmode=verify-full"), &other.cert);
    settings.database.acquire_timeout = Duration::from_millis(500);
    settings.redis.url = Some(secrecy::SecretString::from(crate::common::redis_url()));
    let options = store::connect_options(&settings.database, None).unwrap();
    let pool = sqlx::postgres::PgPoolOptions::new()
        .acquire_timeout(Duration::from_millis(500))
        .connect_lazy_with(options);
    let providers = ProviderRegistry::from_settings(&settings.providers, &settings.http).unwrap();
    let engine = Engine::new(
        pool,
        Arc::new(Keyring::generate("k1")),
        providers,
        EngineConfig::from_settings(&settings),
    );
    let state = ApiState::new(&settings, engine).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let server = tokio::spawn(async move {
        axum::serve(listener, router(state, 1 << 16, false))
            .await
            .unwrap()
    });
    let reply = reqwest::get(format!("http://{address}/readyz"))
        .await
        .unwrap();
    assert_eq!(reply.status(), StatusCode::SERVICE_UNAVAILABLE);
    let body: Value = reply.json().await.unwrap();
    let postgres = body["checks"]["postgres"].as_str().unwrap_or_default();
    assert!(
        postgres.starts_with("TLS failed") && postgres.contains("UnknownIssuer"),
        "{body}"
    );
    assert_eq!(body["checks"]["redis"], "ok", "{body}");
    server.abort();
}
