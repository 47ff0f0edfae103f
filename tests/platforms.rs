//! Each platform's flow through the engine against a fake that speaks the
//! platform's wire format: one test per error-table row, rotation, the
//! Instagram/Threads age rule, TikTok's error-in-200, Mastodon's host
//! guard, Facebook's debug_token checks, LinkedIn's introspection, and
//! which failures may pause a platform.

mod common;

use chrono::{DateTime, TimeDelta, Utc};
use common::{CLIENT_ID, CLIENT_SECRET, TestEnv};
use secrecy::SecretString;
use serde_json::json;
use tokenwarden::config::{Flow, Settings};
use tokenwarden::domain::RefreshReport;
use tokenwarden::domain::{
    AccessToken, AccountId, AccountStatus, Outcome, Provider, RefreshToken, Trigger,
};
use tokenwarden::policy::RefreshPolicy;
use tokenwarden::store::accounts;
use tokenwarden_fakes::IssuedTokens;
use tokenwarden_fakes::{
    FakeGoogle, FakeGraph, FakeLinkedin, FakeMastodon, FakePinterest, FakeTiktok, FakeX,
    GoogleGrant, GraphTokenState, LINKEDIN_REFRESH_LIFETIME, LONG_LIVED_SECONDS,
    MastodonTokenState, PINTEREST_REFRESH_LIFETIME, PinterestGrant, ScriptedResponse,
    TIKTOK_REFRESH_LIFETIME, YOUTUBE_UPLOAD_SCOPE, graph_error_body,
};

fn client(settings: &mut Settings, provider: Provider, flow: Flow, url: url::Url) {
    let section = settings.providers.get_mut(provider);
    section.flow = flow;
    section.token_url = Some(url);
    section.client_id = Some(CLIENT_ID.into());
    section.client_secret = Some(SecretString::from(CLIENT_SECRET));
}

struct Account<'a> {
    provider: Provider,
    access: &'a str,
    refresh: Option<&'a str>,
    issued_at: DateTime<Utc>,
    expires_at: Option<DateTime<Utc>>,
    meta: serde_json::Value,
}

impl<'a> Account<'a> {
    fn new(provider: Provider, access: &'a str, refresh: Option<&'a str>) -> Self {
        Self {
            provider,
            access,
            refresh,
            issued_at: Utc::now() - TimeDelta::hours(1),
            expires_at: Some(Utc::now() + TimeDelta::seconds(60)),
            meta: json!({}),
        }
    }
}

async fn register(env: &TestEnv, account: Account<'_>) -> AccountId {
    let tokens = IssuedTokens {
        access_token: account.access.into(),
        refresh_token: account.refresh.unwrap_or("").into(),
        expires_in: 0,
    };
    let mut new = common::new_account(
        account.provider,
        "ext-1",
        &tokens,
        account.issued_at,
        account.expires_at,
    );
    new.access_token = AccessToken::new(account.access.to_owned());
    new.refresh_token = account.refresh.map(|r| RefreshToken::new(r.to_owned()));
    new.meta = account.meta;
    let policy = RefreshPolicy::from(env.settings.providers.get(account.provider));
    accounts::register(env.pool(), &env.keyring, &policy, &new)
        .await
        .unwrap()
        .account
        .id
}

fn seconds_until(at: Option<DateTime<Utc>>) -> i64 {
    (at.expect("a time is set") - Utc::now()).num_seconds()
}

/// A transient or config answer leaves the account ACTIVE.
async fn assert_active(env: &TestEnv, id: &AccountId, report: &RefreshReport) {
    assert_eq!(report.status, AccountStatus::Active);
    assert_eq!(env.row(id).await.status, AccountStatus::Active);
    assert_eq!(env.events(id).await.len(), 1, "no status event");
}

// ---- X ------------------------------------------------------------------

async fn x_env() -> (TestEnv, FakeX) {
    let fake = FakeX::start(CLIENT_ID, CLIENT_SECRET).await.unwrap();
    let url = fake.token_url();
    let env = TestEnv::with(|s| client(s, Provider::X, Flow::X, url)).await;
    (env, fake)
}

#[tokio::test]
async fn x_refresh_rotates_and_the_spent_token_is_dead() {
    let (env, fake) = x_env().await;
    let (access, refresh) = fake.issue();
    let id = register(&env, Account::new(Provider::X, &access, Some(&refresh))).await;
    let report = env.engine.refresh(&id, Trigger::Forced).await.unwrap();
    assert_eq!(report.outcome, Outcome::Refreshed, "{:?}", report.message);
    let stored = env.stored_refresh_token(&id).await.unwrap();
    assert_ne!(stored, refresh);
    assert!(fake.is_live(&stored) && !fake.is_live(&refresh));
    assert!((7195..=7205).contains(&seconds_until(env.row(&id).await.token_expires_at)));
}

#[tokio::test]
async fn x_unauthorized_client_is_a_config_error() {
    let fake = FakeX::start(CLIENT_ID, CLIENT_SECRET).await.unwrap();
    let url = fake.token_url();
    // Credentials in the body: X answers 401 "Missing valid authorization header".
    let env = TestEnv::with(|s| {
        client(s, Provider::X, Flow::X, url);
        s.providers.x.client_auth = tokenwarden::config::ClientAuth::Body;
    })
    .await;
    let (access, refresh) = fake.issue();
    let id = register(&env, Account::new(Provider::X, &access, Some(&refresh))).await;
    let report = env.engine.refresh(&id, Trigger::Forced).await.unwrap();
    assert_eq!(report.outcome, Outcome::ConfigError);
    assert_eq!(report.http_status, Some(401));
    assert_eq!(
        report.provider_error_code.as_deref(),
        Some("unauthorized_client")
    );
    assert_active(&env, &id, &report).await;
    assert_eq!(env.row(&id).await.consecutive_failures, 0);
    assert!(fake.is_live(&refresh), "nothing was consumed");
}

#[tokio::test]
async fn x_429_waits_for_x_rate_limit_reset() {
    let (env, fake) = x_env().await;
    let (access, refresh) = fake.issue();
    let id = register(&env, Account::new(Provider::X, &access, Some(&refresh))).await;
    fake.rate_limit_next(Utc::now().timestamp() + 900);
    let report = env.engine.refresh(&id, Trigger::Forced).await.unwrap();
    assert_eq!(report.outcome, Outcome::RateLimited);
    assert_eq!(report.provider_error_code.as_deref(), Some("88"));
    let wait = seconds_until(report.retry_at);
    assert!((895..=905).contains(&wait), "{wait}s");
    assert_active(&env, &id, &report).await;
}

// ---- TikTok -------------------------------------------------------------

async fn tiktok_env() -> (TestEnv, FakeTiktok) {
    let fake = FakeTiktok::start(CLIENT_ID, CLIENT_SECRET).await.unwrap();
    let url = fake.token_url();
    let env = TestEnv::with(|s| client(s, Provider::TiktokBusiness, Flow::Tiktok, url)).await;
    (env, fake)
}

#[tokio::test]
async fn tiktok_refresh_sends_client_key_rotates_and_reads_refresh_expires_in() {
    let (env, fake) = tiktok_env().await;
    let (access, refresh) = fake.issue();
    let id = register(
        &env,
        Account::new(Provider::TiktokBusiness, &access, Some(&refresh)),
    )
    .await;
    let report = env.engine.refresh(&id, Trigger::Forced).await.unwrap();
    // The fake refuses anything but client_key + client_secret.
    assert_eq!(report.outcome, Outcome::Refreshed, "{:?}", report.message);
    let stored = env.stored_refresh_token(&id).await.unwrap();
    assert!(stored != refresh && fake.is_live(&stored) && !fake.is_live(&refresh));
    let rt_left = seconds_until(env.row(&id).await.refresh_token_expires_at);
    assert!(
        (TIKTOK_REFRESH_LIFETIME as i64 - 10..=TIKTOK_REFRESH_LIFETIME as i64).contains(&rt_left)
    );
}

#[tokio::test]
async fn tiktok_invalid_grant_in_a_200_body_is_token_expired() {
    let (env, fake) = tiktok_env().await;
    fake.errors_in_200(true);
    let (access, _) = fake.issue();
    let id = register(
        &env,
        Account::new(Provider::TiktokBusiness, &access, Some("dead")),
    )
    .await;
    let report = env.engine.refresh(&id, Trigger::Forced).await.unwrap();
    assert_eq!(report.outcome, Outcome::RejectedExpired);
    assert_eq!(report.http_status, Some(200));
    assert_eq!(report.provider_error_code.as_deref(), Some("invalid_grant"));
    assert_eq!(env.row(&id).await.status, AccountStatus::TokenExpired);
}

#[tokio::test]
async fn tiktok_invalid_client_in_a_200_body_is_a_config_error() {
    let fake = FakeTiktok::start(CLIENT_ID, "another-secret")
        .await
        .unwrap();
    fake.errors_in_200(true);
    let url = fake.token_url();
    let env = TestEnv::with(|s| client(s, Provider::TiktokBusiness, Flow::Tiktok, url)).await;
    let (access, refresh) = fake.issue();
    let id = register(
        &env,
        Account::new(Provider::TiktokBusiness, &access, Some(&refresh)),
    )
    .await;
    let report = env.engine.refresh(&id, Trigger::Forced).await.unwrap();
    assert_eq!(report.outcome, Outcome::ConfigError);
    assert_eq!(
        report.provider_error_code.as_deref(),
        Some("invalid_client")
    );
    assert_active(&env, &id, &report).await;
}

#[tokio::test]
async fn tiktok_429_and_api_style_rate_limit_are_rate_limited() {
    let (env, fake) = tiktok_env().await;
    let (access, refresh) = fake.issue();
    let id = register(
        &env,
        Account::new(Provider::TiktokBusiness, &access, Some(&refresh)),
    )
    .await;
    fake.script_next(
        ScriptedResponse::json(
            429,
            json!({"error": {"code": "rate_limit_exceeded", "message": "slow down", "log_id": "l2"}}),
        )
        .header("retry-after", "120"),
    );
    let report = env.engine.refresh(&id, Trigger::Forced).await.unwrap();
    assert_eq!(report.outcome, Outcome::RateLimited);
    assert!((115..=121).contains(&seconds_until(report.retry_at)));
    fake.script_next(ScriptedResponse::json(
        200,
        json!({"error": {"code": "rate_limit_exceeded", "message": "slow down", "log_id": "l3"}}),
    ));
    let report = env.engine.refresh(&id, Trigger::Forced).await.unwrap();
    assert_eq!(report.outcome, Outcome::RateLimited);
    assert_active(&env, &id, &report).await;
    assert!(fake.is_live(&refresh));
}

// ---- Instagram Login and Threads ------------------------------------------

async fn graph_env(provider: Provider, fake: &FakeGraph) -> TestEnv {
    let url = fake.refresh_url();
    let flow = if provider == Provider::Threads {
        Flow::Threads
    } else {
        Flow::InstagramLogin
    };
    TestEnv::with(move |s| {
        let section = s.providers.get_mut(provider);
        section.flow = flow;
        section.token_url = Some(url);
    })
    .await
}

/// An Instagram/Threads account: no refresh token, two days old.
fn long_lived(provider: Provider, access: &str) -> Account<'_> {
    Account {
        issued_at: Utc::now() - TimeDelta::days(2),
        expires_at: Some(Utc::now() + TimeDelta::days(58)),
        ..Account::new(provider, access, None)
    }
}

#[tokio::test]
async fn instagram_refresh_replaces_the_access_token_without_a_refresh_token() {
    let fake = FakeGraph::instagram().await.unwrap();
    let env = graph_env(Provider::InstagramLogin, &fake).await;
    let access = fake.issue(GraphTokenState::Live);
    let id = register(&env, long_lived(Provider::InstagramLogin, &access)).await;
    let report = env.engine.refresh(&id, Trigger::Forced).await.unwrap();
    assert_eq!(report.outcome, Outcome::Refreshed, "{:?}", report.message);
    let stored = env.stored_access_token(&id).await;
    assert_ne!(stored, access);
    assert!(fake.is_live(&stored));
    assert!(env.stored_refresh_token(&id).await.is_none());
    let left = seconds_until(env.row(&id).await.token_expires_at);
    assert!((LONG_LIVED_SECONDS as i64 - 10..=LONG_LIVED_SECONDS as i64).contains(&left));
}

#[tokio::test]
async fn instagram_token_younger_than_24_hours_is_not_sent() {
    let fake = FakeGraph::instagram().await.unwrap();
    let env = graph_env(Provider::InstagramLogin, &fake).await;
    let access = fake.issue(GraphTokenState::Live);
    let id = register(
        &env,
        Account {
            issued_at: Utc::now() - TimeDelta::hours(20),
            ..long_lived(Provider::InstagramLogin, &access)
        },
    )
    .await;
    let report = env.engine.refresh(&id, Trigger::Forced).await.unwrap();
    assert_eq!(report.outcome, Outcome::TransientError);
    assert_eq!(
        report.provider_error_code.as_deref(),
        Some("token_too_young")
    );
    assert_eq!(fake.calls(), 0);
    // Tried again once the token is 24 h old.
    let wait = seconds_until(report.retry_at);
    assert!((4 * 3600 - 10..=4 * 3600 + 10).contains(&wait), "{wait}s");
    assert_active(&env, &id, &report).await;
}

#[tokio::test]
async fn instagram_graph_throttling_reads_the_usage_header_in_minutes() {
    let fake = FakeGraph::instagram().await.unwrap();
    let env = graph_env(Provider::InstagramLogin, &fake).await;
    let access = fake.issue(GraphTokenState::Live);
    let id = register(&env, long_lived(Provider::InstagramLogin, &access)).await;
    fake.script_next(
        ScriptedResponse::json(400, graph_error_body(80002, None, "Too many calls"))
            .header("x-business-use-case-usage", r#"{"17841":[{"type":"instagram","call_count":100,"total_cputime":10,"total_time":10,"estimated_time_to_regain_access":15}]}"#),
    );
    let report = env.engine.refresh(&id, Trigger::Forced).await.unwrap();
    assert_eq!(report.outcome, Outcome::RateLimited);
    assert!((895..=901).contains(&seconds_until(report.retry_at)));
    assert_active(&env, &id, &report).await;
}

#[tokio::test]
async fn instagram_transport_errors_never_carry_the_url_or_token() {
    let fake = FakeGraph::instagram().await.unwrap();
    let env = TestEnv::with(|s| {
        let section = s.providers.get_mut(Provider::InstagramLogin);
        section.flow = Flow::InstagramLogin;
        section.token_url = Some("http://127.0.0.1:9/refresh_access_token".parse().unwrap());
    })
    .await;
    let access = fake.issue(GraphTokenState::Live);
    let id = register(&env, long_lived(Provider::InstagramLogin, &access)).await;
    let report = env.engine.refresh(&id, Trigger::Forced).await.unwrap();
    assert_eq!(report.outcome, Outcome::TransientError);
    let message = env.row(&id).await.last_refresh_error.unwrap();
    for leak in [
        access.as_str(),
        "access_token",
        "127.0.0.1:9",
        "refresh_access_token",
    ] {
        assert!(!message.contains(leak), "{leak:?} in {message:?}");
    }
}

#[tokio::test]
async fn threads_refresh_uses_th_refresh_token() {
    let fake = FakeGraph::threads().await.unwrap();
    let env = graph_env(Provider::Threads, &fake).await;
    let access = fake.issue(GraphTokenState::Live);
    let id = register(&env, long_lived(Provider::Threads, &access)).await;
    // The fake answers 100 to any other grant type.
    let report = env.engine.refresh(&id, Trigger::Forced).await.unwrap();
    assert_eq!(report.outcome, Outcome::Refreshed, "{:?}", report.message);
    assert!(fake.is_live(&env.stored_access_token(&id).await));
}

#[tokio::test]
async fn threads_expired_token_is_token_expired_and_young_tokens_wait() {
    let fake = FakeGraph::threads().await.unwrap();
    let env = graph_env(Provider::Threads, &fake).await;
    let access = fake.issue(GraphTokenState::Expired);
    let id = register(&env, long_lived(Provider::Threads, &access)).await;
    let report = env.engine.refresh(&id, Trigger::Forced).await.unwrap();
    assert_eq!(report.outcome, Outcome::RejectedExpired);
    assert_eq!(env.row(&id).await.status, AccountStatus::TokenExpired);

    let young = fake.issue(GraphTokenState::Live);
    let young_id = register(
        &env,
        Account {
            issued_at: Utc::now() - TimeDelta::hours(1),
            ..long_lived(Provider::Threads, &young)
        },
    )
    .await;
    let report = env
        .engine
        .refresh(&young_id, Trigger::Forced)
        .await
        .unwrap();
    assert_eq!(
        report.provider_error_code.as_deref(),
        Some("token_too_young")
    );
    assert_eq!(fake.calls(), 1, "only the old token was sent");
}

// ---- LinkedIn -----------------------------------------------------------

async fn linkedin_env() -> (TestEnv, FakeLinkedin) {
    let fake = FakeLinkedin::start(CLIENT_ID, CLIENT_SECRET).await.unwrap();
    let url = fake.token_url();
    let env = TestEnv::with(|s| client(s, Provider::LinkedinPerson, Flow::Linkedin, url)).await;
    (env, fake)
}

#[tokio::test]
async fn linkedin_keeps_its_refresh_token_and_reads_its_remaining_lifetime() {
    let (env, fake) = linkedin_env().await;
    let (access, refresh) = fake.issue(std::time::Duration::from_secs(59 * 86_400));
    let id = register(
        &env,
        Account::new(Provider::LinkedinPerson, &access, Some(&refresh)),
    )
    .await;
    let report = env.engine.refresh(&id, Trigger::Forced).await.unwrap();
    assert_eq!(report.outcome, Outcome::Refreshed, "{:?}", report.message);
    assert_eq!(env.stored_refresh_token(&id).await.unwrap(), refresh);
    // Day 59 of 365: 306 days left, counted from the first login.
    let left = seconds_until(env.row(&id).await.refresh_token_expires_at);
    let want = LINKEDIN_REFRESH_LIFETIME as i64 - 59 * 86_400;
    assert!((want - 10..=want).contains(&left), "{left}");
}

#[tokio::test]
async fn linkedin_invalid_client_is_a_config_error() {
    let fake = FakeLinkedin::start(CLIENT_ID, "rotated-secret")
        .await
        .unwrap();
    let url = fake.token_url();
    let env = TestEnv::with(|s| client(s, Provider::LinkedinPerson, Flow::Linkedin, url)).await;
    let (access, refresh) = fake.issue(std::time::Duration::ZERO);
    let id = register(
        &env,
        Account::new(Provider::LinkedinPerson, &access, Some(&refresh)),
    )
    .await;
    let report = env.engine.refresh(&id, Trigger::Forced).await.unwrap();
    assert_eq!(report.outcome, Outcome::ConfigError);
    assert_active(&env, &id, &report).await;
}

// ---- Mastodon -----------------------------------------------------------

async fn mastodon_env(fake: &FakeMastodon, allow: bool) -> TestEnv {
    let origin: url::Url = fake.origin().parse().unwrap();
    TestEnv::with(move |s| {
        let section = s.providers.get_mut(Provider::Mastodon);
        section.flow = Flow::Mastodon;
        if allow {
            section.allowed_origins = vec![origin];
        }
    })
    .await
}

/// A Mastodon account (no expiry) whose health check is due now.
async fn mastodon_account(env: &TestEnv, access: &str, host: &str) -> AccountId {
    let id = register(
        env,
        Account {
            expires_at: None,
            meta: json!({"instance_host": host}),
            ..Account::new(Provider::Mastodon, access, None)
        },
    )
    .await;
    sqlx::query(
        "UPDATE social_accounts SET next_attempt_at = now() - interval '1 second' WHERE id = $1",
    )
    .bind(id.as_str())
    .execute(env.pool())
    .await
    .unwrap();
    id
}

async fn mastodon_check(state: MastodonTokenState) -> (RefreshReport, TestEnv, AccountId) {
    let fake = FakeMastodon::start().await.unwrap();
    let env = mastodon_env(&fake, true).await;
    let access = fake.issue(state);
    let id = mastodon_account(&env, &access, &fake.origin()).await;
    let report = env.engine.refresh(&id, Trigger::HealthCheck).await.unwrap();
    assert_eq!(fake.calls(), 1);
    (report, env, id)
}

#[tokio::test]
async fn mastodon_401_revoked_is_revoked() {
    let (report, env, id) = mastodon_check(MastodonTokenState::Revoked).await;
    assert_eq!(report.outcome, Outcome::RejectedRevoked);
    assert_eq!(env.row(&id).await.status, AccountStatus::Revoked);
    assert!(report.message.unwrap().contains("was revoked"));
}

#[tokio::test]
async fn mastodon_403_disabled_login_is_flagged_without_a_status_change() {
    let (report, env, id) = mastodon_check(MastodonTokenState::Disabled).await;
    assert_eq!(report.outcome, Outcome::TransientError);
    assert_eq!(
        report.provider_error_code.as_deref(),
        Some("account_disabled")
    );
    assert_eq!(report.status, AccountStatus::Active);
    assert_eq!(env.row(&id).await.status, AccountStatus::Active);
    // No status event; the login's own state changed, and says so.
    let events = env.events(&id).await;
    assert_eq!(events.len(), 2, "{events:?}");
    assert_eq!(events[1].0.as_deref(), Some("ACTIVE"));
    assert_eq!(events[1].1, "ACTIVE");
    let health = tokenwarden::api::views::health(&env.row(&id).await, Utc::now());
    assert!(!health.can_post);
    assert!(health.flags.contains(&"account_inactive"));
    assert!(health.reason.unwrap().contains("currently disabled"));
    let row = env.row(&id).await;
    assert_eq!(row.last_refresh_error_status, Some(403));
    assert!(
        row.last_refresh_error
            .unwrap()
            .contains("currently disabled")
    );
}

#[tokio::test]
async fn mastodon_429_reads_the_iso_8601_reset() {
    let fake = FakeMastodon::start().await.unwrap();
    let env = mastodon_env(&fake, true).await;
    let access = fake.issue(MastodonTokenState::Live);
    let id = mastodon_account(&env, &access, &fake.origin()).await;
    fake.rate_limit_next(Utc::now() + TimeDelta::seconds(300));
    let report = env.engine.refresh(&id, Trigger::HealthCheck).await.unwrap();
    assert_eq!(report.outcome, Outcome::RateLimited);
    let wait = seconds_until(report.retry_at);
    assert!((295..=302).contains(&wait), "{wait}s");
    assert_active(&env, &id, &report).await;
}

#[tokio::test]
async fn mastodon_forced_refresh_checks_instead() {
    let fake = FakeMastodon::start().await.unwrap();
    let env = mastodon_env(&fake, true).await;
    let access = fake.issue(MastodonTokenState::Live);
    let id = mastodon_account(&env, &access, &fake.origin()).await;
    let report = env.engine.refresh(&id, Trigger::Forced).await.unwrap();
    assert_eq!(report.outcome, Outcome::Healthy, "{:?}", report.message);
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
        let id = mastodon_account(&env, &access, &host).await;
        let report = env.engine.refresh(&id, Trigger::HealthCheck).await.unwrap();
        assert_eq!(report.outcome, Outcome::TransientError, "{host}");
        assert_active(&env, &id, &report).await;
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
    let connections = std::sync::Arc::new(std::sync::atomic::AtomicU32::new(0));
    let counter = connections.clone();
    let accepting = tokio::spawn(async move {
        while let Ok((socket, _)) = listener.accept().await {
            counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
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
        let id = mastodon_account(&env, &access, &host).await;
        let report = env.engine.refresh(&id, Trigger::HealthCheck).await.unwrap();
        assert_eq!(report.outcome, Outcome::TransientError, "{host}");
        assert_active(&env, &id, &report).await;
        assert_eq!(
            connections.load(std::sync::atomic::Ordering::SeqCst),
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
    let report = env.engine.refresh(&id, Trigger::HealthCheck).await.unwrap();
    assert_eq!(report.outcome, Outcome::Healthy, "{:?}", report.message);
    assert_eq!(allowed.calls(), 1);
    accepting.abort();
}

#[tokio::test]
async fn mastodon_account_without_an_instance_host_is_flagged_not_paused() {
    let fake = FakeMastodon::start().await.unwrap();
    let env = mastodon_env(&fake, true).await;
    let access = fake.issue(MastodonTokenState::Live);
    let id = mastodon_account(&env, &access, "").await;
    let report = env.engine.refresh(&id, Trigger::HealthCheck).await.unwrap();
    assert_eq!(report.outcome, Outcome::TransientError);
    assert_eq!(
        report.provider_error_code.as_deref(),
        Some("instance_unknown")
    );
    assert_active(&env, &id, &report).await;
    assert_eq!(fake.calls(), 0);
}

// ---- YouTube (Google) ---------------------------------------------------

async fn youtube_env_with(tweak: impl FnOnce(&mut Settings)) -> (TestEnv, FakeGoogle) {
    let fake = FakeGoogle::start(CLIENT_ID, CLIENT_SECRET).await.unwrap();
    let url = fake.token_url();
    let env = TestEnv::with(|s| {
        client(s, Provider::Youtube, Flow::Google, url);
        tweak(s);
    })
    .await;
    (env, fake)
}

async fn youtube_env() -> (TestEnv, FakeGoogle) {
    youtube_env_with(|_| {}).await
}

async fn youtube_account(env: &TestEnv, fake: &FakeGoogle) -> (AccountId, String) {
    let (access, refresh) = fake.issue(GoogleGrant::default());
    let id = register(
        env,
        Account::new(Provider::Youtube, &access, Some(&refresh)),
    )
    .await;
    (id, refresh)
}

#[tokio::test]
async fn youtube_refresh_keeps_the_stored_refresh_token_when_google_returns_none() {
    let (env, fake) = youtube_env().await;
    let (id, refresh) = youtube_account(&env, &fake).await;
    assert_eq!(
        env.row(&id).await.missing_scopes,
        vec![YOUTUBE_UPLOAD_SCOPE.to_owned()],
        "registered with only `read`"
    );
    let report = env.engine.refresh(&id, Trigger::Forced).await.unwrap();
    assert_eq!(report.outcome, Outcome::Refreshed, "{:?}", report.message);
    assert_eq!(env.stored_refresh_token(&id).await.unwrap(), refresh);
    let row = env.row(&id).await;
    assert!((3590..=3600).contains(&seconds_until(row.token_expires_at)));
    // The answer's `scope` replaced the granted list and cleared what was missing.
    assert!(
        row.granted_scopes
            .contains(&YOUTUBE_UPLOAD_SCOPE.to_owned())
    );
    assert!(row.missing_scopes.is_empty(), "{:?}", row.missing_scopes);
    // And a second refresh still works with the kept token.
    let report = env.engine.refresh(&id, Trigger::Forced).await.unwrap();
    assert_eq!(report.outcome, Outcome::Refreshed);
}

#[tokio::test]
async fn youtube_invalid_client_is_a_config_error() {
    let fake = FakeGoogle::start(CLIENT_ID, "rotated-secret")
        .await
        .unwrap();
    let url = fake.token_url();
    let env = TestEnv::with(|s| client(s, Provider::Youtube, Flow::Google, url)).await;
    let (id, refresh) = youtube_account(&env, &fake).await;
    let report = env.engine.refresh(&id, Trigger::Forced).await.unwrap();
    assert_eq!(report.outcome, Outcome::ConfigError);
    assert_eq!(report.http_status, Some(401));
    assert_eq!(
        report.provider_error_code.as_deref(),
        Some("invalid_client")
    );
    assert_active(&env, &id, &report).await;
    assert_eq!(env.stored_refresh_token(&id).await.unwrap(), refresh);
}

fn google_api_error(status: u16, reason: &str) -> ScriptedResponse {
    ScriptedResponse::json(
        status,
        json!({"error": {
            "code": status,
            "message": format!("The request cannot be completed: {reason}"),
            "errors": [{"message": "limit", "domain": "youtube.quota", "reason": reason}],
            "status": if status == 429 { "RESOURCE_EXHAUSTED" } else { "PERMISSION_DENIED" },
        }}),
    )
}

#[tokio::test]
async fn youtube_quota_exceeded_is_rate_limited_until_the_daily_reset_not_an_auth_error() {
    let (env, fake) = youtube_env().await;
    let (id, refresh) = youtube_account(&env, &fake).await;
    fake.script_next(google_api_error(403, "quotaExceeded"));
    let report = env.engine.refresh(&id, Trigger::Forced).await.unwrap();
    assert_eq!(report.outcome, Outcome::RateLimited);
    assert_eq!(report.provider_error_code.as_deref(), Some("quotaExceeded"));
    assert!(!report.account_only, "a project-wide quota");
    let retry_at = report.retry_at.unwrap();
    assert_eq!(retry_at.format("%H:%M").to_string(), "08:00");
    assert!(seconds_until(Some(retry_at)) <= 24 * 3600);
    assert_active(&env, &id, &report).await;
    assert_eq!(env.stored_refresh_token(&id).await.unwrap(), refresh);
}

#[tokio::test]
async fn youtube_user_rate_limit_is_the_accounts_own_and_rate_limit_exceeded_is_not() {
    let (env, fake) = youtube_env().await;
    let (id, _) = youtube_account(&env, &fake).await;
    fake.script_next(google_api_error(403, "userRateLimitExceeded"));
    let report = env.engine.refresh(&id, Trigger::Forced).await.unwrap();
    assert_eq!(report.outcome, Outcome::RateLimited);
    assert!(report.account_only);
    fake.script_next(google_api_error(403, "rateLimitExceeded").header("retry-after", "30"));
    let report = env.engine.refresh(&id, Trigger::Forced).await.unwrap();
    assert_eq!(report.outcome, Outcome::RateLimited);
    assert!(!report.account_only);
    assert!((25..=31).contains(&seconds_until(report.retry_at)));
    assert_active(&env, &id, &report).await;
}

#[tokio::test]
async fn youtube_429_is_rate_limited_and_5xx_is_transient() {
    let (env, fake) = youtube_env().await;
    let (id, refresh) = youtube_account(&env, &fake).await;
    fake.script_next(
        ScriptedResponse::raw(429, "text/html", "<html>slow down</html>")
            .header("retry-after", "60"),
    );
    let report = env.engine.refresh(&id, Trigger::Forced).await.unwrap();
    assert_eq!(report.outcome, Outcome::RateLimited);
    assert!((55..=61).contains(&seconds_until(report.retry_at)));
    fake.script_next(ScriptedResponse::json(
        503,
        json!({"error": "temporarily_unavailable"}),
    ));
    let report = env.engine.refresh(&id, Trigger::Forced).await.unwrap();
    assert_eq!(report.outcome, Outcome::TransientError);
    assert_active(&env, &id, &report).await;
    assert_eq!(env.stored_refresh_token(&id).await.unwrap(), refresh);
}

#[tokio::test]
async fn youtube_time_based_grant_reads_refresh_token_expires_in() {
    let (env, fake) = youtube_env().await;
    let (access, refresh) = fake.issue(GoogleGrant {
        refresh_expires_in: Some(86_400),
        ..GoogleGrant::default()
    });
    let id = register(
        &env,
        Account::new(Provider::Youtube, &access, Some(&refresh)),
    )
    .await;
    let report = env.engine.refresh(&id, Trigger::Forced).await.unwrap();
    assert_eq!(report.outcome, Outcome::Refreshed, "{:?}", report.message);
    let left = seconds_until(env.row(&id).await.refresh_token_expires_at);
    assert!((86_390..=86_400).contains(&left), "{left}");
}

#[tokio::test]
async fn youtube_app_in_testing_gives_refresh_tokens_seven_days_and_a_warning() {
    let (env, fake) = youtube_env_with(|s| s.providers.youtube.app_in_testing = true).await;
    assert!(
        env.settings
            .warnings()
            .iter()
            .any(|w| w.contains("providers.youtube.app_in_testing") && w.contains("7 days"))
    );
    let (id, refresh) = youtube_account(&env, &fake).await;
    // Counted from consent, an hour before registration here.
    let left = seconds_until(env.row(&id).await.refresh_token_expires_at);
    let want = 7 * 86_400 - 3600;
    assert!((want - 10..=want).contains(&left), "{left}");
    // A refresh keeps the token, so it keeps its expiry from consent.
    let report = env.engine.refresh(&id, Trigger::Forced).await.unwrap();
    assert_eq!(report.outcome, Outcome::Refreshed);
    assert_eq!(env.stored_refresh_token(&id).await.unwrap(), refresh);
    let after = seconds_until(env.row(&id).await.refresh_token_expires_at);
    assert!(after <= left, "{after} > {left}");
    // Production apps have no fixed lifetime.
    let (prod_env, prod_fake) = youtube_env().await;
    assert!(prod_env.settings.warnings().is_empty());
    let (prod_id, _) = youtube_account(&prod_env, &prod_fake).await;
    assert_eq!(prod_env.row(&prod_id).await.refresh_token_expires_at, None);
}

// ---- Pinterest ----------------------------------------------------------

async fn pinterest_env_with(
    secret: &str,
    tweak: impl FnOnce(&mut Settings),
) -> (TestEnv, FakePinterest) {
    let fake = FakePinterest::start(CLIENT_ID, secret).await.unwrap();
    let url = fake.token_url();
    let env = TestEnv::with(|s| {
        client(s, Provider::Pinterest, Flow::Pinterest, url);
        tweak(s);
    })
    .await;
    (env, fake)
}

async fn pinterest_account(env: &TestEnv, fake: &FakePinterest) -> (AccountId, String) {
    let (access, refresh) = fake.issue(PinterestGrant::default());
    let id = register(
        env,
        Account::new(Provider::Pinterest, &access, Some(&refresh)),
    )
    .await;
    (id, refresh)
}

#[tokio::test]
async fn pinterest_refresh_rotates_persists_the_new_token_and_reads_its_lifetime() {
    let (env, fake) = pinterest_env_with(CLIENT_SECRET, |_| {}).await;
    let (id, refresh) = pinterest_account(&env, &fake).await;
    assert_eq!(
        env.row(&id).await.missing_scopes,
        vec!["pins:write".to_owned(), "boards:read".to_owned()]
    );
    for _ in 0..2 {
        let report = env.engine.refresh(&id, Trigger::Forced).await.unwrap();
        assert_eq!(report.outcome, Outcome::Refreshed, "{:?}", report.message);
    }
    let stored = env.stored_refresh_token(&id).await.unwrap();
    assert!(stored != refresh && fake.is_live(&stored) && !fake.is_live(&refresh));
    assert_eq!(fake.reuse_detected(), 0);
    let row = env.row(&id).await;
    let left = seconds_until(row.refresh_token_expires_at);
    let want = PINTEREST_REFRESH_LIFETIME as i64;
    assert!((want - 10..=want).contains(&left), "{left}");
    assert!((30 * 86_400 - 10..=30 * 86_400).contains(&seconds_until(row.token_expires_at)));
    assert!(row.missing_scopes.is_empty(), "{:?}", row.missing_scopes);
    assert_eq!(
        fake.continuous_refresh_seen(),
        vec![None, None],
        "not asked for"
    );
}

#[tokio::test]
async fn pinterest_sends_continuous_refresh_when_configured() {
    let (env, fake) = pinterest_env_with(CLIENT_SECRET, |s| {
        s.providers.pinterest.continuous_refresh = true
    })
    .await;
    let (id, _) = pinterest_account(&env, &fake).await;
    let report = env.engine.refresh(&id, Trigger::Forced).await.unwrap();
    assert_eq!(report.outcome, Outcome::Refreshed, "{:?}", report.message);
    assert_eq!(
        fake.continuous_refresh_seen(),
        vec![Some("true".to_owned())]
    );
}

#[tokio::test]
async fn pinterest_authentication_failed_is_a_config_error() {
    let (env, fake) = pinterest_env_with("another-secret", |_| {}).await;
    let (id, refresh) = pinterest_account(&env, &fake).await;
    let report = env.engine.refresh(&id, Trigger::Forced).await.unwrap();
    assert_eq!(report.outcome, Outcome::ConfigError);
    assert_eq!(report.http_status, Some(401));
    assert_eq!(report.provider_error_code.as_deref(), Some("2"));
    assert_active(&env, &id, &report).await;
    assert!(fake.is_live(&refresh), "nothing consumed");
}

#[tokio::test]
async fn pinterest_429_is_rate_limited_and_5xx_is_transient() {
    let (env, fake) = pinterest_env_with(CLIENT_SECRET, |_| {}).await;
    let (id, refresh) = pinterest_account(&env, &fake).await;
    fake.script_next(
        ScriptedResponse::json(429, json!({"code": 8, "message": "Rate limit exceeded."}))
            .header("retry-after", "90"),
    );
    let report = env.engine.refresh(&id, Trigger::Forced).await.unwrap();
    assert_eq!(report.outcome, Outcome::RateLimited);
    assert!((85..=91).contains(&seconds_until(report.retry_at)));
    fake.script_next(ScriptedResponse::raw(
        502,
        "text/html",
        "<html>bad gateway</html>",
    ));
    let report = env.engine.refresh(&id, Trigger::Forced).await.unwrap();
    assert_eq!(report.outcome, Outcome::TransientError);
    assert_active(&env, &id, &report).await;
    assert_eq!(env.stored_refresh_token(&id).await.unwrap(), refresh);
    assert!(fake.is_live(&refresh));
}

// ---- LinkedIn introspection ---------------------------------------------

async fn linkedin_introspecting_env(secret: &str) -> (TestEnv, FakeLinkedin) {
    let fake = FakeLinkedin::start(CLIENT_ID, secret).await.unwrap();
    let (url, introspect) = (fake.token_url(), fake.introspect_url());
    let env = TestEnv::with(|s| {
        client(s, Provider::LinkedinPerson, Flow::Linkedin, url);
        s.providers.linkedin_person.health_url = Some(introspect);
    })
    .await;
    (env, fake)
}

/// An account of an app without programmatic refresh: 30 days left.
async fn linkedin_without_refresh(env: &TestEnv, access: &str) -> AccountId {
    register(
        env,
        Account {
            issued_at: Utc::now() - TimeDelta::days(30),
            expires_at: Some(Utc::now() + TimeDelta::days(30)),
            ..Account::new(Provider::LinkedinPerson, access, None)
        },
    )
    .await
}

#[tokio::test]
async fn linkedin_without_a_refresh_token_is_checked_by_introspection_until_expiry() {
    let (env, fake) = linkedin_introspecting_env(CLIENT_SECRET).await;
    let access = fake.issue_access_only();
    let id = linkedin_without_refresh(&env, &access).await;
    let report = env.engine.refresh(&id, Trigger::Scheduled).await;
    // Not due yet: registration planned it at 2/3 of the lifetime.
    assert_eq!(report.unwrap().outcome, Outcome::Skipped);
    let report = env.engine.refresh(&id, Trigger::Forced).await.unwrap();
    assert_eq!(report.outcome, Outcome::Healthy, "{:?}", report.message);
    assert!(report.message.unwrap().contains("must reconnect before"));
    assert_eq!(fake.introspections(), 1);
    let row = env.row(&id).await;
    assert_eq!(row.status, AccountStatus::Active);
    let next = seconds_until(row.next_attempt_at);
    assert!((86_390..=86_400).contains(&next), "daily: {next}");
}

#[tokio::test]
async fn linkedin_expired_token_without_refresh_token_is_not_introspected() {
    let (env, fake) = linkedin_introspecting_env(CLIENT_SECRET).await;
    let access = fake.issue_access_only();
    let id = register(
        &env,
        Account {
            issued_at: Utc::now() - TimeDelta::days(61),
            expires_at: Some(Utc::now() - TimeDelta::days(1)),
            ..Account::new(Provider::LinkedinPerson, &access, None)
        },
    )
    .await;
    let report = env.engine.refresh(&id, Trigger::Forced).await.unwrap();
    assert_eq!(report.outcome, Outcome::RejectedExpired);
    assert_eq!(fake.introspections(), 0);
}

// ---- Facebook Pages and Instagram with Facebook Login -------------------

async fn facebook_env_for(provider: Provider, fake: &FakeGraph) -> TestEnv {
    let (exchange, debug) = (fake.exchange_url(), fake.debug_token_url());
    TestEnv::with(move |s| {
        client(s, provider, Flow::Facebook, exchange);
        s.providers.get_mut(provider).health_url = Some(debug);
    })
    .await
}

async fn facebook_env() -> (TestEnv, FakeGraph) {
    let fake = FakeGraph::facebook(CLIENT_ID, CLIENT_SECRET).await.unwrap();
    let env = facebook_env_for(Provider::FacebookPage, &fake).await;
    (env, fake)
}

/// A Page account (its token never expires) whose health check is due now.
async fn page_account(env: &TestEnv, provider: Provider, access: &str) -> AccountId {
    let id = register(
        env,
        Account {
            expires_at: None,
            ..Account::new(provider, access, None)
        },
    )
    .await;
    sqlx::query(
        "UPDATE social_accounts SET next_attempt_at = now() - interval '1 second' WHERE id = $1",
    )
    .bind(id.as_str())
    .execute(env.pool())
    .await
    .unwrap();
    id
}

async fn page_check(state: GraphTokenState) -> (RefreshReport, TestEnv, AccountId) {
    let (env, fake) = facebook_env().await;
    let access = fake.issue_page(state);
    let id = page_account(&env, Provider::FacebookPage, &access).await;
    let report = env.engine.refresh(&id, Trigger::HealthCheck).await.unwrap();
    assert_eq!(fake.calls(), 1);
    let row = env.row(&id).await;
    for leak in [access.as_str(), CLIENT_SECRET] {
        let text = format!("{:?} {:?}", row.last_refresh_error, report.message);
        assert!(!text.contains(leak), "{leak:?} leaked: {text}");
    }
    (report, env, id)
}

#[tokio::test]
async fn facebook_page_token_is_health_checked_with_debug_token() {
    let (report, env, id) = page_check(GraphTokenState::Live).await;
    assert_eq!(report.outcome, Outcome::Healthy, "{:?}", report.message);
    let row = env.row(&id).await;
    assert_eq!(row.status, AccountStatus::Active);
    assert_eq!(row.token_expires_at, None, "never refreshed");
    assert!((86_390..=86_400).contains(&seconds_until(row.next_attempt_at)));
    assert_eq!(row.missing_scopes, vec!["pages_manage_posts".to_owned()]);
}

#[tokio::test]
async fn facebook_unparseable_token_is_token_expired() {
    let (env, fake) = facebook_env().await;
    let id = page_account(&env, Provider::FacebookPage, "not-a-page-token").await;
    let report = env.engine.refresh(&id, Trigger::HealthCheck).await.unwrap();
    assert_eq!(report.outcome, Outcome::RejectedExpired);
    assert_eq!(report.provider_error_code.as_deref(), Some("190"));
    assert_eq!(fake.calls(), 1);
}

#[tokio::test]
async fn facebook_wrong_app_secret_is_a_config_error_not_the_pages() {
    let fake = FakeGraph::facebook(CLIENT_ID, "the-real-secret")
        .await
        .unwrap();
    let env = facebook_env_for(Provider::FacebookPage, &fake).await;
    let access = fake.issue_page(GraphTokenState::Live);
    let id = page_account(&env, Provider::FacebookPage, &access).await;
    let report = env.engine.refresh(&id, Trigger::HealthCheck).await.unwrap();
    // A top-level 190 is about the app token, never the page token.
    assert_eq!(report.outcome, Outcome::ConfigError);
    assert_eq!(report.provider_error_code.as_deref(), Some("190"));
    assert_active(&env, &id, &report).await;
}

#[tokio::test]
async fn facebook_throttling_codes_are_rate_limited_and_page_throttles_are_the_accounts_own() {
    let (env, fake) = facebook_env().await;
    let access = fake.issue_page(GraphTokenState::Live);
    let id = page_account(&env, Provider::FacebookPage, &access).await;
    fake.script_next(
        ScriptedResponse::json(
            400,
            graph_error_body(4, None, "Application request limit reached"),
        )
        .header(
            "x-app-usage",
            r#"{"call_count":100,"total_cputime":20,"total_time":35}"#,
        ),
    );
    let report = env.engine.refresh(&id, Trigger::Forced).await.unwrap();
    assert_eq!(report.outcome, Outcome::RateLimited);
    assert!(!report.account_only, "code 4 is the app's");
    assert!(
        report
            .message
            .as_deref()
            .unwrap()
            .contains("app usage 100%")
    );
    fake.script_next(
        ScriptedResponse::json(400, graph_error_body(32, None, "Page request limit reached"))
            .header("x-business-use-case-usage", r#"{"20000000000002":[{"type":"pages","call_count":100,"total_cputime":1,"total_time":1,"estimated_time_to_regain_access":5}]}"#),
    );
    let report = env.engine.refresh(&id, Trigger::Forced).await.unwrap();
    assert_eq!(report.outcome, Outcome::RateLimited);
    assert!(report.account_only, "code 32 is this page's");
    assert!((295..=301).contains(&seconds_until(report.retry_at)));
    fake.script_next(ScriptedResponse::json(
        500,
        graph_error_body(2, None, "Service temporarily unavailable"),
    ));
    let report = env.engine.refresh(&id, Trigger::Forced).await.unwrap();
    assert_eq!(report.outcome, Outcome::TransientError);
    assert_active(&env, &id, &report).await;
}

/// An account storing a long-lived user token (it has an expiry).
async fn user_token_account(env: &TestEnv, access: &str) -> AccountId {
    register(
        env,
        Account {
            issued_at: Utc::now() - TimeDelta::days(45),
            expires_at: Some(Utc::now() + TimeDelta::days(15)),
            ..Account::new(Provider::FacebookPage, access, None)
        },
    )
    .await
}

#[tokio::test]
async fn facebook_long_lived_user_token_is_re_extended_with_fb_exchange_token() {
    let (env, fake) = facebook_env().await;
    let access = fake.issue_user(GraphTokenState::Live, 15 * 86_400);
    let id = user_token_account(&env, &access).await;
    let missing_before = env.row(&id).await.missing_scopes;
    let report = env.engine.refresh(&id, Trigger::Scheduled).await.unwrap();
    assert_eq!(report.outcome, Outcome::Refreshed, "{:?}", report.message);
    let stored = env.stored_access_token(&id).await;
    assert!(stored != access && fake.is_live(&stored));
    assert!(env.stored_refresh_token(&id).await.is_none());
    let row = env.row(&id).await;
    let left = seconds_until(row.token_expires_at);
    assert!((LONG_LIVED_SECONDS as i64 - 10..=LONG_LIVED_SECONDS as i64).contains(&left));
    assert_eq!(
        row.missing_scopes, missing_before,
        "no scope in the answer: kept"
    );
}

#[tokio::test]
async fn facebook_exchange_with_a_wrong_secret_is_a_config_error() {
    let fake = FakeGraph::facebook(CLIENT_ID, "the-real-secret")
        .await
        .unwrap();
    let env = facebook_env_for(Provider::FacebookPage, &fake).await;
    let access = fake.issue_user(GraphTokenState::Live, 15 * 86_400);
    let id = user_token_account(&env, &access).await;
    let report = env.engine.refresh(&id, Trigger::Forced).await.unwrap();
    assert_eq!(report.outcome, Outcome::ConfigError, "{:?}", report.message);
    assert_active(&env, &id, &report).await;
    assert!(fake.is_live(&access));
    let text = format!("{:?}", env.row(&id).await.last_refresh_error);
    assert!(!text.contains(CLIENT_SECRET) && !text.contains(&access));
}

#[tokio::test]
async fn instagram_with_facebook_login_page_tokens_use_the_same_checks() {
    let fake = FakeGraph::facebook(CLIENT_ID, CLIENT_SECRET).await.unwrap();
    let env = facebook_env_for(Provider::InstagramFacebookLogin, &fake).await;
    let live = fake.issue_page(GraphTokenState::Live);
    let id = page_account(&env, Provider::InstagramFacebookLogin, &live).await;
    let report = env.engine.refresh(&id, Trigger::Forced).await.unwrap();
    assert_eq!(report.outcome, Outcome::Healthy, "{:?}", report.message);
    fake.set_state(&live, GraphTokenState::AppRemoved);
    let report = env.engine.refresh(&id, Trigger::Forced).await.unwrap();
    assert_eq!(report.outcome, Outcome::RejectedRevoked);
    assert_eq!(env.row(&id).await.status, AccountStatus::Revoked);
}

// ---- missing_scopes and the circuit breaker -----------------------------

#[tokio::test]
async fn missing_scopes_are_computed_at_registration_and_by_update_scopes() {
    let env = TestEnv::new().await;
    let tokens = env.fake.issue(common::rotating());
    let mut new = common::new_account(
        Provider::Pinterest,
        "ext-scopes",
        &tokens,
        Utc::now(),
        Some(Utc::now() + TimeDelta::days(30)),
    );
    new.granted_scopes = vec!["boards:read,pins:read".into()];
    let policy = RefreshPolicy::from(env.settings.providers.get(Provider::Pinterest));
    let row = accounts::register(env.pool(), &env.keyring, &policy, &new)
        .await
        .unwrap()
        .account;
    assert_eq!(row.missing_scopes, vec!["pins:write".to_owned()]);
    let granted = vec!["boards:read".to_owned(), "pins:write".to_owned()];
    let row = accounts::update_scopes(env.pool(), &row.id, &policy, &granted)
        .await
        .unwrap()
        .unwrap();
    assert!(row.missing_scopes.is_empty());
    assert_eq!(row.granted_scopes, granted);
    let unknown = AccountId::generate();
    assert!(
        accounts::update_scopes(env.pool(), &unknown, &policy, &granted)
            .await
            .unwrap()
            .is_none()
    );
}

#[tokio::test]
async fn per_account_failures_do_not_pause_the_platform_but_platform_failures_do() {
    use tokenwarden::gate::ProviderGates;
    // Mastodon: a disabled login and a refused host, again and again.
    let fake = FakeMastodon::start().await.unwrap();
    let env = mastodon_env(&fake, true).await;
    let gates = ProviderGates::from_settings(&env.settings);
    let disabled = fake.issue(MastodonTokenState::Disabled);
    let disabled_id = mastodon_account(&env, &disabled, &fake.origin()).await;
    let refused_id = mastodon_account(&env, &disabled, "10.0.0.1").await;
    let min_calls = env.settings.circuit.min_calls;
    for _ in 0..min_calls {
        for id in [&disabled_id, &refused_id] {
            let report = env.engine.refresh(id, Trigger::Forced).await.unwrap();
            assert_eq!(report.outcome, Outcome::TransientError);
            assert!(report.account_only, "{:?}", report.message);
            gates.record_report(&report);
        }
    }
    assert!(!gates.is_paused(Provider::Mastodon));

    // YouTube: the token endpoint is down for everyone, as enough distinct
    // accounts see (one account failing again and again weighs one).
    let (env, google) = youtube_env().await;
    let gates = ProviderGates::from_settings(&env.settings);
    let (id, _) = youtube_account(&env, &google).await;
    for _ in 0..min_calls {
        google.script_next(ScriptedResponse::raw(503, "text/plain", "unavailable"));
        let report = env.engine.refresh(&id, Trigger::Forced).await.unwrap();
        assert_eq!(report.outcome, Outcome::TransientError);
        assert!(!report.account_only);
        gates.record_report(&report);
    }
    assert!(
        !gates.is_paused(Provider::Youtube),
        "one account is no evidence"
    );
    sqlx::query("UPDATE social_accounts SET external_id = 'yt-0' WHERE id = $1")
        .bind(id.as_str())
        .execute(env.pool())
        .await
        .unwrap();
    for n in 1..min_calls {
        let (access, refresh) = google.issue(GoogleGrant::default());
        let other = register(
            &env,
            Account::new(Provider::Youtube, &access, Some(&refresh)),
        )
        .await;
        sqlx::query("UPDATE social_accounts SET external_id = $2 WHERE id = $1")
            .bind(other.as_str())
            .bind(format!("yt-{n}"))
            .execute(env.pool())
            .await
            .unwrap();
        google.script_next(ScriptedResponse::raw(503, "text/plain", "unavailable"));
        let report = env.engine.refresh(&other, Trigger::Forced).await.unwrap();
        assert_eq!(report.outcome, Outcome::TransientError);
        gates.record_report(&report);
    }
    assert!(gates.is_paused(Provider::Youtube));
}

// ---- The answers table: docs/platform-answers.md, one row one case ------

/// One row of the table.
#[derive(Debug)]
struct AnswerRow {
    flow: String,
    http: u16,
    body: String,
    outcome: Outcome,
    status: AccountStatus,
    whose: String,
    code: Option<String>,
}

fn answer_rows() -> Vec<AnswerRow> {
    let table = include_str!("../docs/platform-answers.md");
    table
        .lines()
        .filter_map(|line| {
            let cells: Vec<&str> = line.trim().trim_matches('|').split(" | ").collect();
            if cells.len() != 8 {
                return None;
            }
            let http = cells[1].trim().parse::<u16>().ok()?;
            let body = cells[2].trim().strip_prefix('`')?.strip_suffix('`')?;
            let code = cells[6].trim();
            Some(AnswerRow {
                flow: cells[0].trim().to_owned(),
                http,
                body: body.to_owned(),
                outcome: cells[3].trim().parse().expect("an outcome"),
                status: cells[4].trim().parse().expect("a status"),
                whose: cells[5].trim().to_owned(),
                code: (code != "-").then(|| code.to_owned()),
            })
        })
        .collect()
}

fn jwt_expiring_in(seconds: i64) -> String {
    use base64::Engine as _;
    let payload = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(format!(
        r#"{{"exp":{},"sub":"did:plc:placeholder"}}"#,
        Utc::now().timestamp() + seconds
    ));
    format!("eyJhbGciOiJIUzI1NiJ9.{payload}.c2ln")
}

/// A platform's fake, scripted to answer the next call with a row's answer.
enum RowFake {
    X(FakeX),
    Tiktok(FakeTiktok),
    Graph(FakeGraph),
    Linkedin(FakeLinkedin),
    Google(FakeGoogle),
    Pinterest(FakePinterest),
    Mastodon(FakeMastodon),
    Bluesky(tokenwarden_fakes::FakeBluesky),
}

impl RowFake {
    fn script(&self, answer: ScriptedResponse) {
        match self {
            RowFake::X(f) => f.script_next(answer),
            RowFake::Tiktok(f) => f.script_next(answer),
            RowFake::Graph(f) => f.script_next(answer),
            RowFake::Linkedin(f) => f.script_next(answer),
            RowFake::Google(f) => f.script_next(answer),
            RowFake::Pinterest(f) => f.script_next(answer),
            RowFake::Mastodon(f) => f.script_next(answer),
            RowFake::Bluesky(f) => f.script_next(answer),
        }
    }
}

/// The environment of a row's flow: its fake, its settings, and an account
/// whose refresh or check is due; `check` says which call the row is about.
struct RowFlow {
    env: TestEnv,
    fake: RowFake,
    provider: Provider,
    check: bool,
}

async fn row_flow(flow: &str) -> RowFlow {
    let (fake, env, provider, check) = match flow {
        "x" => {
            let (env, fake) = x_env().await;
            (RowFake::X(fake), env, Provider::X, false)
        }
        "tiktok" => {
            let (env, fake) = tiktok_env().await;
            (RowFake::Tiktok(fake), env, Provider::TiktokBusiness, false)
        }
        "instagram" | "threads" => {
            let provider = if flow == "threads" {
                Provider::Threads
            } else {
                Provider::InstagramLogin
            };
            let fake = if flow == "threads" {
                FakeGraph::threads().await.unwrap()
            } else {
                FakeGraph::instagram().await.unwrap()
            };
            let env = graph_env(provider, &fake).await;
            (RowFake::Graph(fake), env, provider, false)
        }
        "linkedin" => {
            let (env, fake) = linkedin_env().await;
            (
                RowFake::Linkedin(fake),
                env,
                Provider::LinkedinPerson,
                false,
            )
        }
        "linkedin_check" => {
            let (env, fake) = linkedin_introspecting_env(CLIENT_SECRET).await;
            (RowFake::Linkedin(fake), env, Provider::LinkedinPerson, true)
        }
        "youtube" => {
            let (env, fake) = youtube_env().await;
            (RowFake::Google(fake), env, Provider::Youtube, false)
        }
        "pinterest" => {
            let (env, fake) = pinterest_env_with(CLIENT_SECRET, |_| {}).await;
            (RowFake::Pinterest(fake), env, Provider::Pinterest, false)
        }
        "facebook" | "facebook_check" => {
            let (env, fake) = facebook_env().await;
            let check = flow == "facebook_check";
            (RowFake::Graph(fake), env, Provider::FacebookPage, check)
        }
        "mastodon_check" => {
            let fake = FakeMastodon::start().await.unwrap();
            let env = mastodon_env(&fake, true).await;
            (RowFake::Mastodon(fake), env, Provider::Mastodon, true)
        }
        "bluesky" | "bluesky_check" => {
            let fake =
                tokenwarden_fakes::FakeBluesky::start("https://app.example/client-metadata.json")
                    .await
                    .unwrap();
            let origin: url::Url = fake.origin().parse().unwrap();
            let env = TestEnv::with(move |s| {
                let section = s.providers.get_mut(Provider::Bluesky);
                section.flow = Flow::Bluesky;
                section.allowed_origins = vec![origin];
            })
            .await;
            (
                RowFake::Bluesky(fake),
                env,
                Provider::Bluesky,
                flow == "bluesky_check",
            )
        }
        other => panic!("docs/platform-answers.md names an unknown flow {other:?}"),
    };
    RowFlow {
        env,
        fake,
        provider,
        check,
    }
}

/// Registers an account of the row's flow, as a connected user's would be.
async fn row_account(flow: &RowFlow, name: &str, access: &str, refresh: &str) -> AccountId {
    let mut account = Account::new(flow.provider, access, Some(refresh));
    match flow.provider {
        Provider::InstagramLogin | Provider::Threads => {
            account = long_lived(flow.provider, access);
        }
        Provider::LinkedinPerson if flow.check => {
            account.refresh = None;
            account.expires_at = Some(Utc::now() + TimeDelta::days(30));
        }
        Provider::FacebookPage => {
            account.refresh = None;
            if flow.check {
                account.expires_at = None;
            } else {
                account.issued_at = Utc::now() - TimeDelta::days(45);
                account.expires_at = Some(Utc::now() + TimeDelta::days(15));
            }
        }
        Provider::Mastodon => {
            account.refresh = None;
            account.expires_at = None;
            account.meta = json!({"instance_host": match &flow.fake {
                RowFake::Mastodon(f) => f.origin(),
                _ => unreachable!(),
            }});
        }
        Provider::Bluesky => {
            account.meta = json!({"pds_host": match &flow.fake {
                RowFake::Bluesky(f) => f.origin(),
                _ => unreachable!(),
            }});
        }
        _ => {}
    }
    let id = register(&flow.env, account).await;
    // Each row's account is an account of its own, and due now.
    sqlx::query(
        "UPDATE social_accounts SET external_id = $2,
             next_attempt_at = now() - interval '1 second' WHERE id = $1",
    )
    .bind(id.as_str())
    .bind(name)
    .execute(flow.env.pool())
    .await
    .unwrap();
    id
}

async fn run_row(flow: &RowFlow, row: &AnswerRow, index: usize) {
    let env = &flow.env;
    let what = format!("{} {} {}", row.flow, row.http, row.body);
    let access = format!("row-access-{index}-{}", rand::random::<u64>());
    let refresh = format!("row-refresh-{index}-{}", rand::random::<u64>());
    let id = row_account(flow, &format!("row-{index}"), &access, &refresh).await;
    let refresh_before = env.stored_refresh_token(&id).await;
    let body = row
        .body
        .replace("$JWT", &jwt_expiring_in(7200))
        .replace("$TOKEN", &format!("tok-{}", rand::random::<u64>()));
    let content_type = if body.starts_with('{') {
        "application/json"
    } else {
        "text/html"
    };
    flow.fake
        .script(ScriptedResponse::raw(row.http, content_type, body.clone()));
    let trigger = if flow.check {
        Trigger::HealthCheck
    } else {
        Trigger::Forced
    };
    let report = env.engine.refresh(&id, trigger).await.unwrap();
    let stored = env.row(&id).await;
    assert_eq!(report.outcome, row.outcome, "{what}: {:?}", report.message);
    assert_eq!(report.status, row.status, "{what}");
    assert_eq!(stored.status, row.status, "{what}");
    assert_eq!(report.provider_error_code, row.code, "{what}");

    let words: Vec<&str> = row.whose.split_whitespace().collect();
    let failed = !report.outcome.is_success();
    match words[0] {
        "app" => assert!(
            report.outcome == Outcome::ConfigError && !report.account_only && !report.unrecognised,
            "{what}: {report:?}"
        ),
        "platform" => assert!(
            failed && !report.account_only && !report.unrecognised,
            "{what}: {report:?}"
        ),
        "account" => assert!(
            !failed
                || report.account_only
                || matches!(
                    report.outcome,
                    Outcome::RejectedExpired | Outcome::RejectedRevoked
                ),
            "{what}: {report:?}"
        ),
        other => panic!("{what}: unknown whose {other:?}"),
    }
    let health = tokenwarden::api::views::health(&stored, Utc::now());
    let unrecognised = words.contains(&"unrecognised");
    assert_eq!(report.unrecognised, unrecognised, "{what}");
    assert_eq!(stored.unrecognised_answer, unrecognised, "{what}");
    assert_eq!(
        health.flags.contains(&"unrecognised_answer"),
        unrecognised,
        "{what}"
    );
    if unrecognised {
        // Kept verbatim, as far as the stored text goes.
        let error = stored.last_refresh_error.clone().unwrap_or_default();
        let start: String = body.chars().take(40).collect();
        assert!(error.contains(start.trim()), "{what}: {error}");
    }
    let inactive = words.contains(&"inactive");
    assert_eq!(stored.account_inactive_reason.is_some(), inactive, "{what}");
    if inactive {
        assert!(!health.can_post, "{what}");
        assert!(health.flags.contains(&"account_inactive"), "{what}");
    }
    for missing in words.iter().filter_map(|w| w.strip_prefix("missing:")) {
        assert!(
            stored.missing_scopes.contains(&missing.to_owned()),
            "{what}"
        );
        assert!(!health.can_post, "{what}");
        assert!(
            health.reason.as_deref().unwrap_or("").contains(missing),
            "{what}"
        );
    }
    let events = env.events(&id).await;
    if row.status == AccountStatus::Active {
        // No status event: only the connection, and an inactive flag's own.
        assert_eq!(
            events.len(),
            1 + usize::from(inactive),
            "{what}: {events:?}"
        );
    } else {
        assert_eq!(events.last().unwrap().1, row.status.as_str(), "{what}");
    }
    if failed {
        assert_eq!(
            stored.last_refresh_error_status,
            Some(i32::from(row.http)),
            "{what}"
        );
        assert_eq!(
            env.stored_refresh_token(&id).await,
            refresh_before,
            "{what}: nothing overwritten"
        );
        assert_eq!(
            env.stored_access_token(&id).await,
            access,
            "{what}: nothing overwritten"
        );
        let error = format!("{:?} {:?}", stored.last_refresh_error, report.message);
        assert!(
            !error.contains(&access) && !error.contains(&refresh),
            "{what}: a token leaked"
        );
        if report.outcome == Outcome::ConfigError {
            assert_eq!(
                stored.consecutive_failures, 0,
                "{what}: not the account's failure"
            );
        }
    }
}

#[tokio::test]
async fn every_row_of_docs_platform_answers() {
    let rows = answer_rows();
    assert!(rows.len() >= 90, "the table parsed: {} rows", rows.len());
    let mut flows: Vec<&str> = rows.iter().map(|r| r.flow.as_str()).collect();
    flows.dedup();
    for name in flows {
        let flow = row_flow(name).await;
        for (index, row) in rows.iter().enumerate().filter(|(_, r)| r.flow == name) {
            run_row(&flow, row, index).await;
        }
    }
}
