//! What the platform tests share: each platform's environment (its fake and
//! the settings pointing at it), accounts registered as a connected user's
//! would be, and the few checks every test repeats.

use std::ops::RangeInclusive;

use chrono::{DateTime, TimeDelta, Utc};
use secrecy::SecretString;
use serde_json::json;
use tokenwarden::config::{Flow, Settings};
use tokenwarden::domain::{
    AccessToken, AccountId, AccountStatus, Outcome, Provider, RefreshReport, RefreshToken, Trigger,
};
use tokenwarden::policy::RefreshPolicy;
use tokenwarden::store::accounts;
use tokenwarden_fakes::{
    FakeGoogle, FakeGraph, FakeLinkedin, FakeMastodon, FakePinterest, FakeTiktok, FakeX,
    GoogleGrant, IssuedTokens, PinterestGrant,
};

use crate::common::{self, CLIENT_ID, CLIENT_SECRET, TestEnv};

/// Points `provider` at a fake's token endpoint with the test client.
pub fn client(settings: &mut Settings, provider: Provider, flow: Flow, url: url::Url) {
    let section = settings.providers.get_mut(provider);
    section.flow = flow;
    section.token_url = Some(url);
    section.client_id = Some(CLIENT_ID.into());
    section.client_secret = Some(SecretString::from(CLIENT_SECRET));
}

/// An account to register; `new` is one issued an hour ago, due in a minute.
pub struct Account<'a> {
    pub provider: Provider,
    pub access: &'a str,
    pub refresh: Option<&'a str>,
    pub issued_at: DateTime<Utc>,
    pub expires_at: Option<DateTime<Utc>>,
    pub meta: serde_json::Value,
}

impl<'a> Account<'a> {
    pub fn new(provider: Provider, access: &'a str, refresh: Option<&'a str>) -> Self {
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

pub async fn register(env: &TestEnv, account: Account<'_>) -> AccountId {
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

/// Makes an account's next attempt (a health check for tokens that never
/// expire) due now.
pub async fn due_now(env: &TestEnv, id: &AccountId) {
    sqlx::query(
        "UPDATE account_schedule SET next_attempt_at = now() - interval '1 second' WHERE account_id = $1",
    )
    .bind(id.as_str())
    .execute(env.pool())
    .await
    .unwrap();
}

/// A refresh asked for now, whatever the schedule says.
pub async fn forced(env: &TestEnv, id: &AccountId) -> RefreshReport {
    env.engine.refresh(id, Trigger::Forced).await.unwrap()
}

/// The scheduled health check of a token that is checked, not refreshed.
pub async fn health_check(env: &TestEnv, id: &AccountId) -> RefreshReport {
    env.engine.refresh(id, Trigger::HealthCheck).await.unwrap()
}

#[track_caller]
pub fn assert_outcome(report: &RefreshReport, outcome: Outcome) {
    assert_eq!(report.outcome, outcome, "{:?}", report.message);
}

pub fn seconds_until(at: Option<DateTime<Utc>>) -> i64 {
    (at.expect("a time is set") - Utc::now()).num_seconds()
}

/// `at` lies within `range` seconds from now.
#[track_caller]
pub fn assert_seconds_until(at: Option<DateTime<Utc>>, range: RangeInclusive<i64>) {
    let left = seconds_until(at);
    assert!(range.contains(&left), "{left}s, not in {range:?}");
}

/// A transient or config answer leaves the account ACTIVE.
pub async fn assert_active(env: &TestEnv, id: &AccountId, report: &RefreshReport) {
    assert_eq!(report.status, AccountStatus::Active);
    assert_eq!(env.row(id).await.status, AccountStatus::Active);
    assert_eq!(env.events(id).await.len(), 1, "no status event");
}

// ---- X and TikTok -------------------------------------------------------

pub async fn x_env() -> (TestEnv, FakeX) {
    let fake = FakeX::start(CLIENT_ID, CLIENT_SECRET).await.unwrap();
    let url = fake.token_url();
    let env = TestEnv::with(|s| client(s, Provider::X, Flow::X, url)).await;
    (env, fake)
}

pub async fn tiktok_env() -> (TestEnv, FakeTiktok) {
    let fake = FakeTiktok::start(CLIENT_ID, CLIENT_SECRET).await.unwrap();
    let url = fake.token_url();
    let env = TestEnv::with(|s| client(s, Provider::TiktokBusiness, Flow::Tiktok, url)).await;
    (env, fake)
}

// ---- Graph: Instagram Login, Threads, Facebook Login ----------------------

pub async fn graph_env(provider: Provider, fake: &FakeGraph) -> TestEnv {
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
pub fn long_lived(provider: Provider, access: &str) -> Account<'_> {
    Account {
        issued_at: Utc::now() - TimeDelta::days(2),
        expires_at: Some(Utc::now() + TimeDelta::days(58)),
        ..Account::new(provider, access, None)
    }
}

pub async fn facebook_env_for(provider: Provider, fake: &FakeGraph) -> TestEnv {
    let (exchange, debug) = (fake.exchange_url(), fake.debug_token_url());
    TestEnv::with(move |s| {
        client(s, provider, Flow::Facebook, exchange);
        s.providers.get_mut(provider).health_url = Some(debug);
    })
    .await
}

pub async fn facebook_env() -> (TestEnv, FakeGraph) {
    let fake = FakeGraph::facebook(CLIENT_ID, CLIENT_SECRET).await.unwrap();
    let env = facebook_env_for(Provider::FacebookPage, &fake).await;
    (env, fake)
}

/// A Page account (its token never expires) whose health check is due now.
pub async fn page_account(env: &TestEnv, provider: Provider, access: &str) -> AccountId {
    let id = register(
        env,
        Account {
            expires_at: None,
            ..Account::new(provider, access, None)
        },
    )
    .await;
    due_now(env, &id).await;
    id
}

// ---- LinkedIn -------------------------------------------------------------

pub async fn linkedin_env() -> (TestEnv, FakeLinkedin) {
    let fake = FakeLinkedin::start(CLIENT_ID, CLIENT_SECRET).await.unwrap();
    let url = fake.token_url();
    let env = TestEnv::with(|s| client(s, Provider::LinkedinPerson, Flow::Linkedin, url)).await;
    (env, fake)
}

/// LinkedIn with token introspection as its health check.
pub async fn linkedin_introspecting_env() -> (TestEnv, FakeLinkedin) {
    let fake = FakeLinkedin::start(CLIENT_ID, CLIENT_SECRET).await.unwrap();
    let (url, introspect) = (fake.token_url(), fake.introspect_url());
    let env = TestEnv::with(|s| {
        client(s, Provider::LinkedinPerson, Flow::Linkedin, url);
        s.providers.linkedin_person.health_url = Some(introspect);
    })
    .await;
    (env, fake)
}

// ---- Mastodon -------------------------------------------------------------

/// Mastodon, with the fake's origin allowlisted when `allow`.
pub async fn mastodon_env(fake: &FakeMastodon, allow: bool) -> TestEnv {
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
pub async fn mastodon_account(env: &TestEnv, access: &str, host: &str) -> AccountId {
    let id = register(
        env,
        Account {
            expires_at: None,
            meta: json!({"instance_host": host}),
            ..Account::new(Provider::Mastodon, access, None)
        },
    )
    .await;
    due_now(env, &id).await;
    id
}

// ---- YouTube and Pinterest ------------------------------------------------

pub async fn youtube_env_with(tweak: impl FnOnce(&mut Settings)) -> (TestEnv, FakeGoogle) {
    let fake = FakeGoogle::start(CLIENT_ID, CLIENT_SECRET).await.unwrap();
    let url = fake.token_url();
    let env = TestEnv::with(|s| {
        client(s, Provider::Youtube, Flow::Google, url);
        tweak(s);
    })
    .await;
    (env, fake)
}

pub async fn youtube_env() -> (TestEnv, FakeGoogle) {
    youtube_env_with(|_| {}).await
}

/// A YouTube account and its refresh token.
pub async fn youtube_account(env: &TestEnv, fake: &FakeGoogle) -> (AccountId, String) {
    let (access, refresh) = fake.issue(GoogleGrant::default());
    let id = register(
        env,
        Account::new(Provider::Youtube, &access, Some(&refresh)),
    )
    .await;
    (id, refresh)
}

pub async fn pinterest_env_with(tweak: impl FnOnce(&mut Settings)) -> (TestEnv, FakePinterest) {
    let fake = FakePinterest::start(CLIENT_ID, CLIENT_SECRET)
        .await
        .unwrap();
    let url = fake.token_url();
    let env = TestEnv::with(|s| {
        client(s, Provider::Pinterest, Flow::Pinterest, url);
        tweak(s);
    })
    .await;
    (env, fake)
}

/// A Pinterest account and its refresh token.
pub async fn pinterest_account(env: &TestEnv, fake: &FakePinterest) -> (AccountId, String) {
    let (access, refresh) = fake.issue(PinterestGrant::default());
    let id = register(
        env,
        Account::new(Provider::Pinterest, &access, Some(&refresh)),
    )
    .await;
    (id, refresh)
}
