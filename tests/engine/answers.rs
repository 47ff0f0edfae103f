//! The platform's side of a refresh: client authentication sent as
//! configured, malformed answers (nothing overwritten, transient, no panic)
//! and answers with odd lifetimes (stored, the oddity recorded).

use chrono::{TimeDelta, Utc};
use serde_json::json;
use tokenwarden::domain::{AccountStatus, Outcome, Provider, Trigger};
use tokenwarden::store::attempts;
use tokenwarden_fakes::{ClientAuthSeen, ScriptedResponse};

use crate::common::{TestEnv, google_like, rotating};
use crate::support::{assert_near, x_account};

#[tokio::test]
async fn client_auth_follows_configuration() {
    let env = TestEnv::new().await;
    let (x, _) = env.connect(Provider::X, rotating()).await;
    let (yt, _) = env
        .connect_expiring_now(Provider::Youtube, google_like())
        .await;
    env.refresh(&x, Trigger::Forced).await;
    env.refresh(&yt, Trigger::Forced).await;
    let seen: Vec<_> = env
        .fake
        .calls()
        .into_iter()
        .map(|c| (c.path, c.client_auth))
        .collect();
    assert_eq!(
        seen,
        vec![
            ("/x/token".to_owned(), ClientAuthSeen::Basic),
            ("/youtube/token".to_owned(), ClientAuthSeen::Body)
        ]
    );
}

// ---- malformed answers: nothing overwritten, transient, no panic ---------

async fn assert_malformed_is_transient(response: ScriptedResponse, expect_in_message: &str) {
    let (env, id, tokens) = x_account().await;
    let before = env.row(&id).await;
    env.fake.script_next(response);
    let report = env.refresh(&id, Trigger::Scheduled).await;
    assert_eq!(
        report.outcome,
        Outcome::TransientError,
        "{:?}",
        report.message
    );
    let message = report.message.unwrap();
    assert!(message.contains(expect_in_message), "{message}");
    let after = env.row(&id).await;
    assert_eq!(after.status, AccountStatus::Active);
    assert_eq!(after.credentials_version, before.credentials_version);
    assert_eq!(
        after.access_token_ciphertext,
        before.access_token_ciphertext
    );
    assert_eq!(
        after.refresh_token_ciphertext,
        before.refresh_token_ciphertext
    );
    assert_eq!(after.token_expires_at, before.token_expires_at);
    assert_eq!(
        env.stored_refresh_token(&id).await.unwrap(),
        tokens.refresh_token
    );
    assert!(!message.contains(&tokens.refresh_token));
}

#[tokio::test]
async fn malformed_html_error_page() {
    assert_malformed_is_transient(
        ScriptedResponse::raw(
            200,
            "text/html",
            "<html><body>Service Unavailable</body></html>",
        ),
        "not a JSON object (text/html",
    )
    .await;
}

#[tokio::test]
async fn malformed_truncated_json() {
    assert_malformed_is_transient(
        ScriptedResponse::raw(
            200,
            "application/json",
            r#"{"access_token":"at_x","expires_in":36"#,
        ),
        "not a JSON object",
    )
    .await;
}

#[tokio::test]
async fn malformed_ten_megabyte_body() {
    let body = format!(r#"{{"access_token":"{}"}}"#, "a".repeat(10 * 1024 * 1024));
    assert_malformed_is_transient(
        ScriptedResponse::raw(200, "application/json", body),
        "exceeds the 1048576-byte limit",
    )
    .await;
}

#[tokio::test]
async fn malformed_200_carrying_an_error_object() {
    assert_malformed_is_transient(
        ScriptedResponse::json(
            200,
            json!({"error": "invalid_grant", "error_description": "nope"}),
        ),
        // No shape RFC 6749 defines: kept verbatim as an unrecognised answer.
        r#"unrecognised answer: HTTP 200: {"error":"invalid_grant","error_description":"nope"}"#,
    )
    .await;
}

#[tokio::test]
async fn malformed_missing_access_token() {
    assert_malformed_is_transient(
        ScriptedResponse::json(200, json!({"token_type": "bearer", "expires_in": 3600})),
        "access_token is missing",
    )
    .await;
}

#[tokio::test]
async fn malformed_unknown_4xx_without_oauth_body_is_transient() {
    assert_malformed_is_transient(
        ScriptedResponse::raw(418, "text/plain", "teapot"),
        "unrecognised answer: HTTP 418: teapot",
    )
    .await;
}

// ---- odd lifetimes: the tokens beside them are the grant -----------------
//
// An answer whose tokens are usable but whose lifetime is odd is stored:
// refusing it would drop a rotated refresh token, the one loss that cannot
// be undone. The lifetime is clamped to 1 s .. 10 years (or, when it is no
// number at all, the configured default applies) and the oddity is kept in
// the attempt history.

async fn assert_odd_lifetime_is_stored(
    answer: serde_json::Value,
    expected_lifetime: Option<TimeDelta>,
    expect_in_message: &str,
) {
    let (env, id, _) = x_account().await;
    env.fake.script_next(ScriptedResponse::json(200, answer));
    let report = env.refresh(&id, Trigger::Scheduled).await;
    assert_eq!(report.outcome, Outcome::Refreshed, "{:?}", report.message);
    let message = report.message.unwrap();
    assert!(message.contains(expect_in_message), "{message}");
    let row = env.row(&id).await;
    assert_eq!(row.status, AccountStatus::Active);
    assert!(row.lease_owner.is_none());
    assert_eq!(env.stored_refresh_token(&id).await.unwrap(), "rt_new");
    let lifetime = row.token_expires_at.unwrap() - row.token_issued_at.unwrap();
    let expected = expected_lifetime.unwrap_or_else(|| {
        TimeDelta::from_std(env.settings.providers.x.default_access_token_lifetime).unwrap()
    });
    assert!(
        (lifetime - expected).num_seconds().abs() <= 1,
        "{lifetime} vs {expected}"
    );
    let attempts = attempts::for_account(&env.db.pool, &id, 1).await.unwrap();
    assert_eq!(attempts[0].message.as_deref(), Some(message.as_str()));
}

#[tokio::test]
async fn negative_expires_in_is_clamped_to_one_second() {
    assert_odd_lifetime_is_stored(
        json!({"access_token": "at_new", "expires_in": -3600, "refresh_token": "rt_new"}),
        Some(TimeDelta::seconds(1)),
        "expires_in was -3600",
    )
    .await;
}

#[tokio::test]
async fn non_numeric_expires_in_is_ignored_for_the_default() {
    assert_odd_lifetime_is_stored(
        json!({"access_token": "at_new", "expires_in": "an hour", "refresh_token": "rt_new"}),
        None,
        "expires_in is not a number of seconds",
    )
    .await;
}

/// Issue: `expires_in` >= ~8.2e12 overflowed `now + lifetime` after the
/// platform had rotated, so the new tokens were never stored.
#[tokio::test]
async fn absurd_expires_in_is_clamped_to_ten_years_and_stored() {
    for huge in [
        json!(8.2e12),
        json!(u64::MAX),
        json!(1e300),
        json!("99999999999999999999"),
    ] {
        assert_odd_lifetime_is_stored(
            json!({"access_token": "at_new", "expires_in": huge, "refresh_token": "rt_new", "refresh_token_expires_in": huge}),
            Some(TimeDelta::days(3650)),
            "taken as 10 years",
        )
        .await;
    }
}

#[tokio::test]
async fn expires_in_as_a_numeric_string_is_a_documented_variant() {
    let (env, id, tokens) = x_account().await;
    env.fake.script_next(ScriptedResponse::json(
        200,
        json!({"access_token": "at_new", "expires_in": "7200", "refresh_token": "rt_new"}),
    ));
    let report = env.refresh(&id, Trigger::Scheduled).await;
    assert_eq!(report.outcome, Outcome::Refreshed);
    let row = env.row(&id).await;
    assert_near(
        row.token_expires_at.unwrap(),
        Utc::now() + TimeDelta::hours(2),
    );
    assert_eq!(env.stored_refresh_token(&id).await.unwrap(), "rt_new");
    assert_ne!(tokens.refresh_token, "rt_new");
}

#[tokio::test]
async fn missing_expires_in_stores_the_tokens_and_assumes_the_configured_lifetime() {
    // A rotating platform's answer is the only copy of the new refresh token:
    // refusing it for a missing (optional, RFC 6749 5.1) expires_in would
    // strand the account. The configured default lifetime applies.
    let (env, id, _) = x_account().await;
    env.fake.script_next(ScriptedResponse::json(
        200,
        json!({"access_token": "at_new", "refresh_token": "rt_new"}),
    ));
    let report = env.refresh(&id, Trigger::Scheduled).await;
    assert_eq!(report.outcome, Outcome::Refreshed);
    assert!(report.message.unwrap().contains("no expires_in"));
    let row = env.row(&id).await;
    let default = env
        .settings
        .providers
        .x
        .default_access_token_lifetime
        .as_secs() as i64;
    assert_near(
        row.token_expires_at.unwrap(),
        Utc::now() + TimeDelta::seconds(default),
    );
    assert_eq!(env.stored_refresh_token(&id).await.unwrap(), "rt_new");
}
