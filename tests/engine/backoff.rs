//! Status rule 1: a transient failure (network, timeout, 5xx, 429) never
//! changes status; the next attempt waits for the platform's Retry-After or
//! a full-jitter backoff. And a scheduled refresh waits until it is due.

use std::time::Duration;

use chrono::{TimeDelta, Utc};
use serde_json::json;
use tokenwarden::domain::{AccountStatus, Outcome, Provider, Trigger};
use tokenwarden::store::attempts;
use tokenwarden_fakes::ScriptedResponse;

use crate::common::{TestEnv, rotating};
use crate::support::x_account;

#[tokio::test]
async fn rule1_transient_failure_never_changes_status_and_schedules_a_retry() {
    let (env, id, tokens) = x_account().await;
    // The access token has already expired: still ACTIVE, still retried.
    env.update_account(&id, "token_expires_at = now() - interval '1 minute'")
        .await;
    env.fake
        .script_next(ScriptedResponse::raw(503, "text/plain", "down").header("retry-after", "90"));

    let report = env.refresh(&id, Trigger::Scheduled).await;
    assert_eq!(report.outcome, Outcome::TransientError);
    assert_eq!(report.status, AccountStatus::Active);
    let row = env.row(&id).await;
    assert_eq!(row.status, AccountStatus::Active);
    assert_eq!(row.consecutive_failures, 1);
    assert_eq!(row.last_refresh_error_status, Some(503));
    let retry_in = (row.next_attempt_at.unwrap() - Utc::now()).num_seconds();
    assert!(
        (85..=91).contains(&retry_in),
        "Retry-After honoured, got {retry_in}s"
    );
    assert_eq!(
        env.stored_refresh_token(&id).await.unwrap(),
        tokens.refresh_token
    );
    assert_eq!(env.events(&id).await.len(), 1, "no status event");
}

#[tokio::test]
async fn rule1_rate_limit_reads_retry_after_as_an_http_date() {
    let (env, id, _) = x_account().await;
    let at = (Utc::now() + TimeDelta::seconds(300))
        .format("%a, %d %b %Y %H:%M:%S GMT")
        .to_string();
    env.fake.script_next(
        ScriptedResponse::json(429, json!({"errors": [{"code": 88}]})).header("retry-after", at),
    );
    let report = env.refresh(&id, Trigger::Scheduled).await;
    assert_eq!(report.outcome, Outcome::RateLimited);
    let retry_in = (env.row(&id).await.next_attempt_at.unwrap() - Utc::now()).num_seconds();
    assert!((290..=301).contains(&retry_in), "got {retry_in}s");
}

#[tokio::test]
async fn rule1_backoff_grows_with_consecutive_failures() {
    let env = TestEnv::with(|s| {
        s.engine.retry_base = Duration::from_secs(100);
        s.engine.retry_cap = Duration::from_secs(100_000);
    })
    .await;
    let (id, _) = env.connect(Provider::X, rotating()).await;
    env.update_account(&id, "consecutive_failures = 6").await;
    env.fake.script_next(ScriptedResponse::raw(
        502,
        "text/html",
        "<html>bad gateway</html>",
    ));
    env.refresh(&id, Trigger::Scheduled).await;
    let row = env.row(&id).await;
    assert_eq!(row.consecutive_failures, 7);
    // Full jitter over [0, 100 s * 2^6]: bounded by the ceiling.
    let retry_in = (row.next_attempt_at.unwrap() - Utc::now()).num_seconds();
    assert!(retry_in <= 6_400, "got {retry_in}s");
}

#[tokio::test]
async fn rule1_timeout_is_transient() {
    let env = TestEnv::with(|s| {
        s.http.request_timeout = Duration::from_millis(500);
        s.http.rotating_request_timeout = Duration::from_millis(500);
    })
    .await;
    let (id, tokens) = env.connect(Provider::X, rotating()).await;
    env.fake.set_answer_delay(Duration::from_secs(2));
    let report = env.refresh(&id, Trigger::Scheduled).await;
    assert_eq!(report.outcome, Outcome::TransientError);
    assert!(report.message.unwrap().contains("timed out"));
    let row = env.row(&id).await;
    assert_eq!(row.status, AccountStatus::Active);
    // The server did rotate: the daemon cannot know; the old token stays
    // stored and the timed-out refresh is marked, so a later rejection of
    // the stored token says it may have been consumed.
    assert_eq!(
        env.stored_refresh_token(&id).await.unwrap(),
        tokens.refresh_token
    );
    assert!(row.interrupted_refresh_at.is_some());
    assert_eq!(
        row.interrupted_refresh_cause.as_deref(),
        Some("timed out after the request was sent")
    );
    env.fake.set_answer_delay(Duration::ZERO);
    let report = env.refresh(&id, Trigger::Forced).await;
    assert!(
        matches!(
            report.status,
            AccountStatus::Revoked | AccountStatus::TokenExpired
        ),
        "the strict fake kills the family: {report:?}"
    );
    let message = report.message.unwrap();
    assert!(
        message.contains("interrupted refresh")
            && message.contains("timed out after the request was sent"),
        "{message}"
    );
    let attempts = attempts::for_account(&env.db.pool, &id, 10).await.unwrap();
    assert!(
        attempts.iter().any(|a| a
            .message
            .as_deref()
            .is_some_and(|m| m.contains("timed out"))),
        "the attempt history shows the timed-out refresh"
    );
}

#[tokio::test]
async fn rule1_connection_refused_is_transient() {
    let env = TestEnv::with(|s| {
        s.providers.x.token_url = Some("http://127.0.0.1:9/token".parse().unwrap());
    })
    .await;
    let (id, _) = env.connect(Provider::X, rotating()).await;
    let report = env.refresh(&id, Trigger::Scheduled).await;
    assert_eq!(report.outcome, Outcome::TransientError);
    assert!(report.message.unwrap().contains("could not connect"));
    assert_eq!(env.row(&id).await.status, AccountStatus::Active);
}

#[tokio::test]
async fn scheduled_refresh_of_an_account_not_yet_due_is_skipped() {
    let env = TestEnv::new().await;
    let (id, _) = env.connect_x_fresh().await;
    let report = env.refresh(&id, Trigger::Scheduled).await;
    assert_eq!(report.outcome, Outcome::Skipped);
    assert_eq!(env.fake.call_count(), 0);
    let forced = env.refresh(&id, Trigger::Forced).await;
    assert_eq!(forced.outcome, Outcome::Refreshed);
}

/// A platform that echoes the Basic header it was sent echoes the client
/// secret in another spelling: it is scrubbed like the secret itself from
/// the account's error, its attempt and the report.
#[tokio::test]
async fn an_echoed_basic_header_is_scrubbed_like_the_client_secret() {
    use base64::Engine as _;
    let (env, id, _tokens) = x_account().await;
    let basic = base64::engine::general_purpose::STANDARD.encode(format!(
        "{}:{}",
        crate::common::CLIENT_ID,
        crate::common::CLIENT_SECRET
    ));
    env.fake.script_next(ScriptedResponse::json(
        400,
        // An answer no row describes is recorded verbatim: the echo with it.
        json!({"error": "header_echo", "error_description": format!("you sent Basic {basic}")}),
    ));
    let report = env.refresh(&id, Trigger::Forced).await;
    assert_eq!(report.outcome, Outcome::TransientError);
    let row = env.row(&id).await;
    let stored: Vec<String> = sqlx::query_scalar(
        "SELECT coalesce(message, '') FROM refresh_attempts WHERE account_id = $1",
    )
    .bind(id.as_str())
    .fetch_all(env.pool())
    .await
    .unwrap();
    let error = row.last_refresh_error.unwrap_or_default();
    assert!(error.contains("you sent Basic"), "{error}");
    for text in [error, format!("{report:?}"), stored.join("\n")] {
        assert!(!text.contains(&basic), "{text}");
        assert!(!text.contains(crate::common::CLIENT_SECRET), "{text}");
    }
}
