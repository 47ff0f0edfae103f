//! Redis over TLS only (`--tls-port`, `--port 0`), client certificates
//! required: the scheduler and the workers refresh through it.

use std::time::Duration;

use secrecy::SecretString;
use tokenwarden::queue::Connector;

use crate::common::TestEnv;
use crate::servers::{Ca, RedisProcess, free_port};
use crate::support::{
    Daemon, assert_each_refreshed_exactly_once, seed, tune, wait_until_refreshed,
};

fn tls_redis(ca: &Ca) -> RedisProcess {
    let leaf = ca.leaf("redis-server", "serverAuth");
    let port = free_port();
    RedisProcess::start(
        port,
        &["--tls-auth-clients".into(), "yes".into()],
        Some(&leaf),
        Some(ca),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refreshes_run_through_redis_over_tls_with_a_client_certificate() {
    let ca = Ca::new("tokenwarden test CA");
    let redis = tls_redis(&ca);
    let client = ca.leaf("redis-client", "clientAuth");
    let url = format!("rediss://127.0.0.1:{}", redis.port);
    let env = TestEnv::with(|s| {
        tune(s, &url);
        s.redis.tls_ca_cert = Some(ca.pem());
        s.redis.tls_client_cert = Some(std::fs::read_to_string(&client.cert).unwrap());
        s.redis.tls_client_key = Some(SecretString::from(
            std::fs::read_to_string(&client.key).unwrap(),
        ));
    })
    .await;
    env.settings.validate().unwrap();
    let seeded = seed(&env, "tls", 40).await;
    let daemon = Daemon::start(&env, "{tokenwarden}:refresh");
    wait_until_refreshed(&env, 40, Duration::from_secs(60)).await;
    daemon.stop().await;
    assert_each_refreshed_exactly_once(&env, &seeded).await;
}

#[tokio::test]
async fn a_wrong_ca_or_a_missing_client_certificate_is_refused_clearly() {
    let ca = Ca::new("tokenwarden test CA");
    let other = Ca::new("some other CA");
    let redis = tls_redis(&ca);
    let client = ca.leaf("redis-client", "clientAuth");
    let mut settings = crate::common::settings_for(
        &tokenwarden_fakes::FakeOAuthServer::start("c", "s")
            .await
            .unwrap(),
    );
    settings.redis.url = Some(SecretString::from(format!(
        "rediss://127.0.0.1:{}",
        redis.port
    )));
    settings.redis.response_timeout = Duration::from_secs(2);
    settings.redis.tls_client_cert = Some(std::fs::read_to_string(&client.cert).unwrap());
    settings.redis.tls_client_key = Some(SecretString::from(
        std::fs::read_to_string(&client.key).unwrap(),
    ));

    settings.redis.tls_ca_cert = Some(other.pem());
    let error = match Connector::new(&settings.redis).unwrap().connect().await {
        Ok(_) => panic!("a server certificate from another CA is refused"),
        Err(e) => format!("{e:#}"),
    };
    assert!(error.contains("TLS to Redis failed"), "{error}");
    assert!(error.contains("UnknownIssuer"), "{error}");

    // The right CA without a client certificate: the server refuses us.
    settings.redis.tls_ca_cert = Some(ca.pem());
    settings.redis.tls_client_cert = None;
    settings.redis.tls_client_key = None;
    let connector = Connector::new(&settings.redis).unwrap();
    let refused = async {
        let mut conn = connector.connect().await?;
        redis::cmd("PING").query_async::<String>(&mut conn).await?;
        anyhow::Ok(())
    }
    .await;
    assert!(
        refused.is_err(),
        "tls-auth-clients yes refuses a client without a certificate"
    );
}
