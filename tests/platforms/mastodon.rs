//! Mastodon: tokens that never expire, checked with verify_credentials on
//! the account's own instance, and the host guard that keeps those checks
//! off private and unlisted addresses.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

use chrono::{TimeDelta, Utc};
use tokenwarden::config::Flow;
use tokenwarden::domain::{AccountId, Outcome, Provider, RefreshReport};
use tokenwarden_fakes::{FakeMastodon, MastodonTokenState};

use crate::common::TestEnv;
use crate::support::{
    assert_active, assert_outcome, assert_seconds_until, forced, health_check, mastodon_account,
    mastodon_env,
};

/// An allowlisted instance with one live account.
async fn live_account() -> (TestEnv, FakeMastodon, AccountId) {
    let fake = FakeMastodon::start().await.unwrap();
    let env = mastodon_env(&fake, true).await;
    let access = fake.issue(MastodonTokenState::Live);
    let id = mastodon_account(&env, &access, &fake.origin()).await;
    (env, fake, id)
}

/// The check of an account on `host` fails before anything is sent, and
/// leaves the account ACTIVE.
async fn check_refused(env: &TestEnv, access: &str, host: &str) -> RefreshReport {
    let id = mastodon_account(env, access, host).await;
    let report = health_check(env, &id).await;
    assert_eq!(report.outcome, Outcome::TransientError, "{host}");
    assert_active(env, &id, &report).await;
    report
}

#[tokio::test]
async fn mastodon_429_reads_the_iso_8601_reset() {
    let (env, fake, id) = live_account().await;
    fake.rate_limit_next(Utc::now() + TimeDelta::seconds(300));
    let report = health_check(&env, &id).await;
    assert_outcome(&report, Outcome::RateLimited);
    assert_seconds_until(report.retry_at, 295..=302);
    assert_active(&env, &id, &report).await;
}

#[tokio::test]
async fn mastodon_forced_refresh_checks_instead() {
    let (env, _fake, id) = live_account().await;
    assert_outcome(&forced(&env, &id).await, Outcome::Healthy);
    assert_eq!(
        env.row(&id).await.token_expires_at,
        None,
        "still never expires"
    );
}

#[tokio::test]
async fn mastodon_private_and_plain_http_hosts_are_refused_before_connecting() {
    let fake = FakeMastodon::start().await.unwrap();
    let env = mastodon_env(&fake, false).await;
    let access = fake.issue(MastodonTokenState::Live);
    let port = fake.origin().rsplit(':').next().unwrap().to_owned();
    for host in [
        fake.origin(),
        format!("127.0.0.1:{port}"),
        format!("2130706433:{port}"),
        format!("0177.0.0.1:{port}"),
        format!("[::ffff:127.0.0.1]:{port}"),
        "169.254.169.254".to_owned(),
        format!("localhost:{port}"),
    ] {
        let report = check_refused(&env, &access, &host).await;
        let message = report.message.unwrap_or_default();
        assert!(
            message.contains("refused") || message.contains("public address"),
            "{host}: {message}"
        );
    }
    assert_eq!(fake.calls(), 0, "no request reached the instance");
}

/// Issue 9, defect 6: an allowlisted origin is scheme, host and port; the
/// same host name on another port or scheme is an ordinary user host (and
/// loopback, so refused): not even a TCP connection is opened to it.
#[tokio::test]
async fn an_allowlisted_origin_does_not_trust_its_host_on_other_ports_or_schemes() {
    let allowed = FakeMastodon::start().await.unwrap();
    let allowed_port = allowed.origin().rsplit(':').next().unwrap().to_owned();
    // A bare listener that counts connections, whatever is spoken on them.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let other_port = listener.local_addr().unwrap().port();
    let connections = Arc::new(AtomicU32::new(0));
    let counter = connections.clone();
    let accepting = tokio::spawn(async move {
        while let Ok((socket, _)) = listener.accept().await {
            counter.fetch_add(1, Ordering::SeqCst);
            drop(socket);
        }
    });
    let origin: url::Url = format!("http://localhost:{allowed_port}").parse().unwrap();
    let env = TestEnv::with(move |s| {
        let section = s.providers.get_mut(Provider::Mastodon);
        section.flow = Flow::Mastodon;
        section.allowed_origins = vec![origin];
    })
    .await;
    let access = allowed.issue(MastodonTokenState::Live);
    for host in [
        format!("localhost:{other_port}"),
        format!("LOCALHOST:{other_port}"),
        format!("https://localhost:{other_port}"),
        format!("http://localhost:{other_port}"),
        format!("http://LocalHost:{other_port}"),
        format!("https://localhost:{allowed_port}"),
        "https://localhost".to_owned(),
        "localhost".to_owned(),
    ] {
        check_refused(&env, &access, &host).await;
        assert_eq!(
            connections.load(Ordering::SeqCst),
            0,
            "{host}: a connection reached the other port"
        );
    }
    assert_eq!(
        allowed.calls(),
        0,
        "nothing reached the allowed port over https"
    );

    let id = mastodon_account(&env, &access, &format!("http://LOCALHOST:{allowed_port}")).await;
    assert_outcome(&health_check(&env, &id).await, Outcome::Healthy);
    assert_eq!(allowed.calls(), 1);
    accepting.abort();
}

#[tokio::test]
async fn mastodon_account_without_an_instance_host_is_flagged_not_paused() {
    let fake = FakeMastodon::start().await.unwrap();
    let env = mastodon_env(&fake, true).await;
    let access = fake.issue(MastodonTokenState::Live);
    let id = mastodon_account(&env, &access, "").await;
    let report = health_check(&env, &id).await;
    assert_outcome(&report, Outcome::TransientError);
    assert_eq!(
        report.provider_error_code.as_deref(),
        Some("instance_unknown")
    );
    assert_active(&env, &id, &report).await;
    assert_eq!(fake.calls(), 0);
}
