//! Meta's Graph: Instagram Login and Threads refresh a long-lived token with
//! no refresh token (never before it is 24 hours old); Facebook Pages and
//! Instagram with Facebook Login check never-expiring Page tokens with
//! debug_token and re-extend long-lived user tokens with fb_exchange_token.

use chrono::{TimeDelta, Utc};
use tokenwarden::config::Flow;
use tokenwarden::domain::{AccountId, AccountStatus, Outcome, Provider, Trigger};
use tokenwarden_fakes::{
    FakeGraph, GraphTokenState, LONG_LIVED_SECONDS, ScriptedResponse, graph_error_body,
};

use crate::common::{CLIENT_ID, CLIENT_SECRET, TestEnv};
use crate::support::{
    Account, assert_active, assert_outcome, assert_seconds_until, facebook_env, facebook_env_for,
    forced, graph_env, health_check, long_lived, page_account, register,
};

/// Instagram Login with one live, two-day-old account.
async fn instagram_account() -> (TestEnv, FakeGraph, AccountId, String) {
    let fake = FakeGraph::instagram().await.unwrap();
    let env = graph_env(Provider::InstagramLogin, &fake).await;
    let access = fake.issue(GraphTokenState::Live);
    let id = register(&env, long_lived(Provider::InstagramLogin, &access)).await;
    (env, fake, id, access)
}

const LONG_LIVED: i64 = LONG_LIVED_SECONDS as i64;

#[tokio::test]
async fn instagram_refresh_replaces_the_access_token_without_a_refresh_token() {
    let (env, fake, id, access) = instagram_account().await;
    assert_outcome(&forced(&env, &id).await, Outcome::Refreshed);
    let stored = env.stored_access_token(&id).await;
    assert_ne!(stored, access);
    assert!(fake.is_live(&stored));
    assert!(env.stored_refresh_token(&id).await.is_none());
    assert_seconds_until(
        env.row(&id).await.token_expires_at,
        LONG_LIVED - 10..=LONG_LIVED,
    );
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
    let report = forced(&env, &id).await;
    assert_outcome(&report, Outcome::TransientError);
    assert_eq!(
        report.provider_error_code.as_deref(),
        Some("token_too_young")
    );
    assert_eq!(fake.calls(), 0);
    // Tried again once the token is 24 h old.
    assert_seconds_until(report.retry_at, 4 * 3600 - 10..=4 * 3600 + 10);
    assert_active(&env, &id, &report).await;
}

#[tokio::test]
async fn instagram_graph_throttling_reads_the_usage_header_in_minutes() {
    let (env, fake, id, _) = instagram_account().await;
    fake.script_next(
        ScriptedResponse::json(400, graph_error_body(80002, None, "Too many calls"))
            .header("x-business-use-case-usage", r#"{"17841":[{"type":"instagram","call_count":100,"total_cputime":10,"total_time":10,"estimated_time_to_regain_access":15}]}"#),
    );
    let report = forced(&env, &id).await;
    assert_outcome(&report, Outcome::RateLimited);
    assert_seconds_until(report.retry_at, 895..=901);
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
    assert_outcome(&forced(&env, &id).await, Outcome::TransientError);
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
    assert_outcome(&forced(&env, &id).await, Outcome::Refreshed);
    assert!(fake.is_live(&env.stored_access_token(&id).await));
}

#[tokio::test]
async fn threads_expired_token_is_token_expired_and_young_tokens_wait() {
    let fake = FakeGraph::threads().await.unwrap();
    let env = graph_env(Provider::Threads, &fake).await;
    let access = fake.issue(GraphTokenState::Expired);
    let id = register(&env, long_lived(Provider::Threads, &access)).await;
    assert_outcome(&forced(&env, &id).await, Outcome::RejectedExpired);
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
    let report = forced(&env, &young_id).await;
    assert_eq!(
        report.provider_error_code.as_deref(),
        Some("token_too_young")
    );
    assert_eq!(fake.calls(), 1, "only the old token was sent");
}

// ---- Facebook Pages and Instagram with Facebook Login -------------------

#[tokio::test]
async fn facebook_page_token_is_health_checked_with_debug_token() {
    let (env, fake) = facebook_env().await;
    let access = fake.issue_page(GraphTokenState::Live);
    let id = page_account(&env, Provider::FacebookPage, &access).await;
    let report = health_check(&env, &id).await;
    assert_eq!(fake.calls(), 1);
    let row = env.row(&id).await;
    for leak in [access.as_str(), CLIENT_SECRET] {
        let text = format!("{:?} {:?}", row.last_refresh_error, report.message);
        assert!(!text.contains(leak), "{leak:?} leaked: {text}");
    }
    assert_outcome(&report, Outcome::Healthy);
    assert_eq!(row.status, AccountStatus::Active);
    assert_eq!(row.token_expires_at, None, "never refreshed");
    assert_seconds_until(row.next_attempt_at, 86_390..=86_400);
    assert_eq!(row.missing_scopes, vec!["pages_manage_posts".to_owned()]);
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
    let report = forced(&env, &id).await;
    assert_outcome(&report, Outcome::RateLimited);
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
    let report = forced(&env, &id).await;
    assert_outcome(&report, Outcome::RateLimited);
    assert!(report.account_only, "code 32 is this page's");
    assert_seconds_until(report.retry_at, 295..=301);
    fake.script_next(ScriptedResponse::json(
        500,
        graph_error_body(2, None, "Service temporarily unavailable"),
    ));
    let report = forced(&env, &id).await;
    assert_outcome(&report, Outcome::TransientError);
    assert_active(&env, &id, &report).await;
}

#[tokio::test]
async fn facebook_long_lived_user_token_is_re_extended_with_fb_exchange_token() {
    let (env, fake) = facebook_env().await;
    let access = fake.issue_user(GraphTokenState::Live, 15 * 86_400);
    // A long-lived user token: it has an expiry.
    let id = register(
        &env,
        Account {
            issued_at: Utc::now() - TimeDelta::days(45),
            expires_at: Some(Utc::now() + TimeDelta::days(15)),
            ..Account::new(Provider::FacebookPage, &access, None)
        },
    )
    .await;
    let missing_before = env.row(&id).await.missing_scopes;
    let report = env.engine.refresh(&id, Trigger::Scheduled).await.unwrap();
    assert_outcome(&report, Outcome::Refreshed);
    let stored = env.stored_access_token(&id).await;
    assert!(stored != access && fake.is_live(&stored));
    assert!(env.stored_refresh_token(&id).await.is_none());
    let row = env.row(&id).await;
    assert_seconds_until(row.token_expires_at, LONG_LIVED - 10..=LONG_LIVED);
    assert_eq!(
        row.missing_scopes, missing_before,
        "no scope in the answer: kept"
    );
}

#[tokio::test]
async fn instagram_with_facebook_login_page_tokens_use_the_same_checks() {
    let fake = FakeGraph::facebook(CLIENT_ID, CLIENT_SECRET).await.unwrap();
    let env = facebook_env_for(Provider::InstagramFacebookLogin, &fake).await;
    let live = fake.issue_page(GraphTokenState::Live);
    let id = page_account(&env, Provider::InstagramFacebookLogin, &live).await;
    assert_outcome(&forced(&env, &id).await, Outcome::Healthy);
    fake.set_state(&live, GraphTokenState::AppRemoved);
    assert_outcome(&forced(&env, &id).await, Outcome::RejectedRevoked);
    assert_eq!(env.row(&id).await.status, AccountStatus::Revoked);
}
