//! YouTube (Google): a refresh token Google does not return (so kept), the
//! granted scopes read from the answer, refresh-token lifetimes for
//! time-based grants and apps in testing, and quota answers told apart.

use serde_json::json;
use tokenwarden::domain::{Outcome, Provider};
use tokenwarden_fakes::{GoogleGrant, ScriptedResponse, YOUTUBE_UPLOAD_SCOPE};

use crate::support::{
    Account, assert_active, assert_outcome, assert_seconds_until, forced, register, seconds_until,
    youtube_account, youtube_env, youtube_env_with,
};

/// A YouTube Data API error, as Google words it.
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
async fn youtube_refresh_keeps_the_stored_refresh_token_when_google_returns_none() {
    let (env, fake) = youtube_env().await;
    let (id, refresh) = youtube_account(&env, &fake).await;
    assert_eq!(
        env.row(&id).await.missing_scopes,
        vec![YOUTUBE_UPLOAD_SCOPE.to_owned()],
        "registered with only `read`"
    );
    assert_outcome(&forced(&env, &id).await, Outcome::Refreshed);
    assert_eq!(env.stored_refresh_token(&id).await.unwrap(), refresh);
    let row = env.row(&id).await;
    assert_seconds_until(row.token_expires_at, 3590..=3600);
    // The answer's `scope` replaced the granted list and cleared what was missing.
    assert!(
        row.granted_scopes
            .contains(&YOUTUBE_UPLOAD_SCOPE.to_owned())
    );
    assert!(row.missing_scopes.is_empty(), "{:?}", row.missing_scopes);
    // And a second refresh still works with the kept token.
    assert_outcome(&forced(&env, &id).await, Outcome::Refreshed);
}

#[tokio::test]
async fn youtube_quota_exceeded_is_rate_limited_until_the_daily_reset_not_an_auth_error() {
    let (env, fake) = youtube_env().await;
    let (id, refresh) = youtube_account(&env, &fake).await;
    fake.script_next(google_api_error(403, "quotaExceeded"));
    let report = forced(&env, &id).await;
    assert_outcome(&report, Outcome::RateLimited);
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
    let report = forced(&env, &id).await;
    assert_outcome(&report, Outcome::RateLimited);
    assert!(report.account_only);
    fake.script_next(google_api_error(403, "rateLimitExceeded").header("retry-after", "30"));
    let report = forced(&env, &id).await;
    assert_outcome(&report, Outcome::RateLimited);
    assert!(!report.account_only);
    assert_seconds_until(report.retry_at, 25..=31);
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
    let report = forced(&env, &id).await;
    assert_outcome(&report, Outcome::RateLimited);
    assert_seconds_until(report.retry_at, 55..=61);
    fake.script_next(ScriptedResponse::json(
        503,
        json!({"error": "temporarily_unavailable"}),
    ));
    let report = forced(&env, &id).await;
    assert_outcome(&report, Outcome::TransientError);
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
    assert_outcome(&forced(&env, &id).await, Outcome::Refreshed);
    assert_seconds_until(env.row(&id).await.refresh_token_expires_at, 86_390..=86_400);
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
    assert_outcome(&forced(&env, &id).await, Outcome::Refreshed);
    assert_eq!(env.stored_refresh_token(&id).await.unwrap(), refresh);
    let after = seconds_until(env.row(&id).await.refresh_token_expires_at);
    assert!(after <= left, "{after} > {left}");
    // Production apps have no fixed lifetime.
    let (prod_env, prod_fake) = youtube_env().await;
    assert!(prod_env.settings.warnings().is_empty());
    let (prod_id, _) = youtube_account(&prod_env, &prod_fake).await;
    assert_eq!(prod_env.row(&prod_id).await.refresh_token_expires_at, None);
}
