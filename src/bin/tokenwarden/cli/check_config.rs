//! `tokenwarden check-config`: validate the configuration and print a
//! summary without secrets.

use sqlx::postgres::{PgConnectOptions, PgSslMode};
use tokenwarden::app;
use tokenwarden::config::{Flow, RedisMode, Settings};
use tokenwarden::domain::Provider;
use tokenwarden::store;

pub(super) fn run(settings: &Settings) -> anyhow::Result<()> {
    let keyring = app::keyring(settings)?;
    let db = store::connect_options(&settings.database, None)?;
    println!("configuration is valid");
    println!(
        "database: {}:{}/{}",
        db.get_host(),
        db.get_port(),
        db.get_database().unwrap_or("(default)")
    );
    println!("database TLS: {}", database_tls(settings, &db));
    println!("redis: {}", redis_summary(settings));
    println!(
        "encryption keys (newest first): {}",
        keyring.key_ids().collect::<Vec<_>>().join(", ")
    );
    println!("provider                  flow            client   token endpoint");
    for provider in Provider::ALL {
        let section = settings.providers.get(*provider);
        let flow = match section.flow {
            Flow::Oauth2Refresh => "oauth2_refresh",
            Flow::X => "x",
            Flow::Linkedin => "linkedin",
            Flow::Tiktok => "tiktok",
            Flow::InstagramLogin => "instagram_login",
            Flow::Threads => "threads",
            Flow::Mastodon => "mastodon",
            Flow::Google => "google",
            Flow::Pinterest => "pinterest",
            Flow::Facebook => "facebook",
            Flow::Bluesky => "bluesky",
            Flow::None => "none",
        };
        let client = if section.client_id.is_some() {
            "set"
        } else {
            "unset"
        };
        let url = section
            .token_url
            .as_ref()
            .map(|u| u.as_str())
            .unwrap_or("-");
        println!("{:<25} {flow:<15} {client:<8} {url}", provider.as_str());
    }
    for warning in settings.warnings() {
        println!("warning: {warning}");
    }
    Ok(())
}

/// The TLS mode in force (the URL's `sslmode`, else sqlx's default
/// `prefer`) and where the CA and client certificate come from.
fn database_tls(settings: &Settings, db: &PgConnectOptions) -> String {
    let mode = match db.get_ssl_mode() {
        PgSslMode::Disable => "disable (no TLS)",
        PgSslMode::Allow => "allow (TLS only if the server insists; not verified)",
        PgSslMode::Prefer => "prefer (TLS if offered; server not verified)",
        PgSslMode::Require => "require (TLS; server not verified)",
        PgSslMode::VerifyCa => "verify-ca (TLS; server certificate checked against the CA)",
        PgSslMode::VerifyFull => "verify-full (TLS; certificate and host name checked)",
    };
    let db = &settings.database;
    // sqlx is built with the compiled-in Mozilla roots: a CA added to the
    // system store is not trusted, so do not claim "system roots" here.
    let ca = if db.ssl_root_cert.is_some() {
        "database.ssl_root_cert"
    } else {
        "built-in public web roots (the system store is not read)"
    };
    let client = if db.ssl_client_cert.is_some() {
        "client certificate set"
    } else {
        "no client certificate"
    };
    format!("{mode}, CA: {ca}, {client}")
}

/// Mode, node count and TLS; never the URLs (they may hold a password).
fn redis_summary(settings: &Settings) -> String {
    let redis = &settings.redis;
    let nodes = redis.urls().len();
    let mode = match redis.mode {
        RedisMode::Standalone => "standalone".to_owned(),
        RedisMode::Cluster => format!("cluster ({nodes} seed node(s))"),
        RedisMode::Sentinel => format!(
            "sentinel (master {:?}, {nodes} sentinel(s))",
            redis.sentinel_master.as_deref().unwrap_or("")
        ),
    };
    let tls = if !redis.uses_tls() {
        "TLS: off".to_owned()
    } else {
        let ca = if redis.tls_ca_cert.is_some() {
            "redis.tls_ca_cert"
        } else {
            "system roots"
        };
        let client = if redis.tls_client_cert.is_some() {
            "client certificate set"
        } else {
            "no client certificate"
        };
        format!("TLS: on, CA: {ca}, {client}")
    };
    format!("{mode}, {tls}, queue {}", redis.queue)
}
