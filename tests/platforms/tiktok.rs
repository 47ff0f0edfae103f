//! TikTok: `client_key` in the form, rotating refresh tokens whose lifetime
//! the answer gives, and rate limits whichever way they come.

use serde_json::json;
use tokenwarden::domain::{Outcome, Provider};
use tokenwarden_fakes::{ScriptedResponse, TIKTOK_REFRESH_LIFETIME};

use crate::support::{
    Account, assert_active, assert_outcome, assert_seconds_until, forced, register, tiktok_env,
};

#[tokio::test]
async fn tiktok_refresh_sends_client_key_rotates_and_reads_refresh_expires_in() {
    let (env, fake) = tiktok_env().await;
    let (access, refresh) = fake.issue();
    let id = register(
        &env,
        Account::new(Provider::TiktokBusiness, &access, Some(&refresh)),
    )
    .await;
    // The fake refuses anything but client_key + client_secret.
    assert_outcome(&forced(&env, &id).await, Outcome::Refreshed);
    let stored = env.stored_refresh_token(&id).await.unwrap();
    assert!(stored != refresh && fake.is_live(&stored) && !fake.is_live(&refresh));
    let lifetime = TIKTOK_REFRESH_LIFETIME as i64;
    assert_seconds_until(
        env.row(&id).await.refresh_token_expires_at,
        lifetime - 10..=lifetime,
    );
    env.assert_expiry_copies().await;
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
    let report = forced(&env, &id).await;
    assert_outcome(&report, Outcome::RateLimited);
    assert_seconds_until(report.retry_at, 115..=121);
    fake.script_next(ScriptedResponse::json(
        200,
        json!({"error": {"code": "rate_limit_exceeded", "message": "slow down", "log_id": "l3"}}),
    ));
    let report = forced(&env, &id).await;
    assert_outcome(&report, Outcome::RateLimited);
    assert_active(&env, &id, &report).await;
    assert!(fake.is_live(&refresh));
}
