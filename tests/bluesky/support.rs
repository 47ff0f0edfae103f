//! What the Bluesky tests share: an environment trusting the fakes, accounts
//! of both session kinds, the two calls, and the checks every test repeats.

use chrono::{DateTime, TimeDelta, Utc};
use serde_json::{Value, json};
use tokenwarden::config::Flow;
use tokenwarden::domain::RefreshReport;
use tokenwarden::domain::{AccountId, AccountStatus, Provider, Trigger};
use tokenwarden::policy::RefreshPolicy;
use tokenwarden::providers::DpopKey;
use tokenwarden::store::accounts;
use tokenwarden_fakes::{
    FakeBluesky, IssuedOAuth, IssuedSession, IssuedTokens, OAuthSessionSpec, SessionSpec,
};

use crate::common::{self, TestEnv};

pub const CLIENT_METADATA: &str = "https://app.example/oauth-client-metadata.json";

/// An environment whose Bluesky flow trusts the given fakes' origins (or,
/// with none, only public https hosts).
pub async fn bsky_env(allowed: &[&FakeBluesky]) -> TestEnv {
    let origins: Vec<url::Url> = allowed
        .iter()
        .map(|f| f.origin().parse().unwrap())
        .collect();
    TestEnv::with(move |s| {
        let section = s.providers.get_mut(Provider::Bluesky);
        section.flow = Flow::Bluesky;
        section.client_id = Some(CLIENT_METADATA.into());
        section.allowed_origins = origins;
    })
    .await
}

pub async fn start() -> FakeBluesky {
    FakeBluesky::start(CLIENT_METADATA).await.unwrap()
}

pub async fn register(
    env: &TestEnv,
    external_id: &str,
    access: &str,
    refresh: &str,
    meta: Value,
    dpop_key: Option<DpopKey>,
) -> AccountId {
    let tokens = IssuedTokens {
        access_token: access.into(),
        refresh_token: refresh.into(),
        expires_in: 0,
    };
    let mut new = common::new_account(
        Provider::Bluesky,
        external_id,
        &tokens,
        Utc::now() - TimeDelta::hours(1),
        Some(Utc::now() + TimeDelta::seconds(60)),
    );
    new.meta = meta;
    new.dpop_key = dpop_key;
    let policy = RefreshPolicy::from(env.settings.providers.get(Provider::Bluesky));
    accounts::register(env.pool(), &env.keyring, &policy, &new)
        .await
        .unwrap()
        .account
        .id
}

pub async fn app_password(env: &TestEnv, session: &IssuedSession, pds_host: &str) -> AccountId {
    register(
        env,
        &session.did,
        &session.access_jwt,
        &session.refresh_jwt,
        json!({"pds_host": pds_host}),
        None,
    )
    .await
}

pub async fn oauth(
    env: &TestEnv,
    fake: &FakeBluesky,
    issued: &IssuedOAuth,
    key: &DpopKey,
) -> AccountId {
    register(
        env,
        &issued.did,
        &issued.access_token,
        &issued.refresh_token,
        json!({"auth_server": fake.origin(), "pds_host": fake.origin()}),
        Some(key.clone()),
    )
    .await
}

/// A fake, an environment trusting it, and one app-password account on it.
pub async fn session_setup(spec: SessionSpec) -> (FakeBluesky, TestEnv, IssuedSession, AccountId) {
    let fake = start().await;
    let env = bsky_env(&[&fake]).await;
    let session = fake.issue_session(spec);
    let id = app_password(&env, &session, &fake.origin()).await;
    (fake, env, session, id)
}

pub async fn oauth_setup() -> (FakeBluesky, TestEnv, DpopKey, IssuedOAuth, AccountId) {
    let fake = start().await;
    let env = bsky_env(&[&fake]).await;
    let key = DpopKey::generate();
    let issued = fake.issue_oauth(OAuthSessionSpec::default(), &key.public_jwk());
    let id = oauth(&env, &fake, &issued, &key).await;
    (fake, env, key, issued, id)
}

pub async fn refresh(env: &TestEnv, id: &AccountId) -> RefreshReport {
    env.engine.refresh(id, Trigger::Forced).await.unwrap()
}

pub fn seconds_until(at: Option<DateTime<Utc>>) -> i64 {
    (at.expect("a time is set") - Utc::now()).num_seconds()
}

/// A failure that must leave everything as it was: status, tokens, version.
pub async fn assert_untouched(
    env: &TestEnv,
    id: &AccountId,
    report: &RefreshReport,
    refresh: &str,
) {
    assert_eq!(report.status, AccountStatus::Active, "{report:?}");
    let row = env.row(id).await;
    assert_eq!(row.status, AccountStatus::Active);
    assert_eq!(row.credentials_version, 1, "credentials were rewritten");
    assert_eq!(env.stored_refresh_token(id).await.as_deref(), Some(refresh));
    assert_eq!(env.events(id).await.len(), 1, "no status event");
}

pub async fn assert_status(
    env: &TestEnv,
    id: &AccountId,
    report: &RefreshReport,
    status: AccountStatus,
) {
    assert_eq!(report.status, status, "{report:?}");
    assert_eq!(env.row(id).await.status, status);
}
