//! Pinterest: Basic client authentication, rotating refresh tokens whose
//! lifetime the answer gives, `continuous_refresh` when configured, and
//! rate limits read from `retry-after`.

use serde_json::json;
use tokenwarden::domain::Outcome;
use tokenwarden_fakes::{PINTEREST_REFRESH_LIFETIME, ScriptedResponse};

use crate::support::{
    assert_active, assert_outcome, assert_seconds_until, forced, pinterest_account,
    pinterest_env_with,
};

#[tokio::test]
async fn pinterest_refresh_rotates_persists_the_new_token_and_reads_its_lifetime() {
    let (env, fake) = pinterest_env_with(|_| {}).await;
    let (id, refresh) = pinterest_account(&env, &fake).await;
    assert_eq!(
        env.row(&id).await.missing_scopes,
        vec!["pins:write".to_owned(), "boards:read".to_owned()]
    );
    for _ in 0..2 {
        assert_outcome(&forced(&env, &id).await, Outcome::Refreshed);
    }
    let stored = env.stored_refresh_token(&id).await.unwrap();
    assert!(stored != refresh && fake.is_live(&stored) && !fake.is_live(&refresh));
    assert_eq!(fake.reuse_detected(), 0);
    let row = env.row(&id).await;
    let want = PINTEREST_REFRESH_LIFETIME as i64;
    assert_seconds_until(row.refresh_token_expires_at, want - 10..=want);
    assert_seconds_until(row.token_expires_at, 30 * 86_400 - 10..=30 * 86_400);
    assert!(row.missing_scopes.is_empty(), "{:?}", row.missing_scopes);
    assert_eq!(
        fake.continuous_refresh_seen(),
        vec![None, None],
        "not asked for"
    );
    env.assert_expiry_copies().await;
}

#[tokio::test]
async fn pinterest_sends_continuous_refresh_when_configured() {
    let (env, fake) = pinterest_env_with(|s| s.providers.pinterest.continuous_refresh = true).await;
    let (id, _) = pinterest_account(&env, &fake).await;
    assert_outcome(&forced(&env, &id).await, Outcome::Refreshed);
    assert_eq!(
        fake.continuous_refresh_seen(),
        vec![Some("true".to_owned())]
    );
}

#[tokio::test]
async fn pinterest_429_is_rate_limited_and_5xx_is_transient() {
    let (env, fake) = pinterest_env_with(|_| {}).await;
    let (id, refresh) = pinterest_account(&env, &fake).await;
    fake.script_next(
        ScriptedResponse::json(429, json!({"code": 8, "message": "Rate limit exceeded."}))
            .header("retry-after", "90"),
    );
    let report = forced(&env, &id).await;
    assert_outcome(&report, Outcome::RateLimited);
    assert_seconds_until(report.retry_at, 85..=91);
    fake.script_next(ScriptedResponse::raw(
        502,
        "text/html",
        "<html>bad gateway</html>",
    ));
    let report = forced(&env, &id).await;
    assert_outcome(&report, Outcome::TransientError);
    assert_active(&env, &id, &report).await;
    assert_eq!(env.stored_refresh_token(&id).await.unwrap(), refresh);
    assert!(fake.is_live(&refresh));
}
