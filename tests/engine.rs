//! The refresh engine against real PostgreSQL and a strict fake platform:
//! ARCHITECTURE.md's status table, status rules and refresh-safety rules,
//! one case each, plus malformed answers.

mod common;

use std::sync::Arc;
use std::time::Duration;

use chrono::{TimeDelta, Utc};
use common::{TestEnv, engine_for, google_like, rotating};
use serde_json::json;
use tokenwarden::domain::{AccountStatus, Outcome, Provider, Trigger};
use tokenwarden::engine::EngineError;
use tokenwarden::store::attempts;
use tokenwarden_fakes::{ClientAuthSeen, FamilySpec, ScriptedResponse};

// ---- status table -------------------------------------------------------

#[tokio::test]
async fn registration_sets_active_and_emits_one_event() {
    let env = TestEnv::new().await;
    let (id, _) = env.connect(Provider::X, rotating()).await;
    let row = env.row(&id).await;
    assert_eq!(row.status, AccountStatus::Active);
    assert_eq!(
        env.events(&id).await,
        vec![(None, "ACTIVE".into(), "connected".into())]
    );
}

#[tokio::test]
async fn successful_refresh_rotates_and_persists_the_new_refresh_token() {
    let env = TestEnv::new().await;
    let (id, first) = env.connect(Provider::X, rotating()).await;

    let report = env.engine.refresh(&id, Trigger::Scheduled).await.unwrap();
    assert_eq!(report.outcome, Outcome::Refreshed);
    let stored = env.stored_refresh_token(&id).await.unwrap();
    assert_ne!(
        stored, first.refresh_token,
        "the rotated refresh token is stored"
    );
    assert!(env.fake.is_live(&stored));
    assert!(!env.fake.is_live(&first.refresh_token));

    let row = env.row(&id).await;
    assert_eq!(row.status, AccountStatus::Active);
    assert_eq!(row.credentials_version, 2);
    assert!(row.last_refreshed_at.is_some());
    let expires = row.token_expires_at.unwrap();
    assert!(
        (expires - (Utc::now() + TimeDelta::hours(1)))
            .num_seconds()
            .abs()
            < 10
    );
    // Next refresh planned at 2/3 of the new lifetime, spread up to the
    // configured jitter (5 min) earlier.
    let next = (row.next_attempt_at.unwrap() - Utc::now()).num_seconds();
    assert!((35 * 60 - 10..=40 * 60 + 10).contains(&next), "{next}s");

    // The next scheduled refresh uses the new token and works again.
    env.db.pool.execute_due_now(&id).await;
    let report = env.engine.refresh(&id, Trigger::Scheduled).await.unwrap();
    assert_eq!(report.outcome, Outcome::Refreshed);
    assert_eq!(env.fake.reuse_detected(), 0);
}

#[tokio::test]
async fn invalid_grant_moves_to_token_expired_with_one_event() {
    let env = TestEnv::new().await;
    let (id, _) = env
        .connect(
            Provider::X,
            FamilySpec {
                expire_after: Some(0),
                ..rotating()
            },
        )
        .await;
    let report = env.engine.refresh(&id, Trigger::Scheduled).await.unwrap();
    assert_eq!(report.outcome, Outcome::RejectedExpired);
    assert_eq!(report.status, AccountStatus::TokenExpired);
    let row = env.row(&id).await;
    assert_eq!(row.status, AccountStatus::TokenExpired);
    assert_eq!(row.last_refresh_error_status, Some(400));
    assert!(row.last_refresh_error.unwrap().contains("invalid_grant"));
    let events = env.events(&id).await;
    assert_eq!(events.len(), 2);
    assert_eq!(events[1].0.as_deref(), Some("ACTIVE"));
    assert_eq!(events[1].1, "TOKEN_EXPIRED");
}

/// RFC 6749's `invalid_grant` covers "invalid, expired, revoked" alike: the
/// word "revoked" in its text does not say the user withdrew access (rule
/// 2a), so the status is TOKEN_EXPIRED with the platform's text kept.
#[tokio::test]
async fn revoked_grant_is_token_expired_with_the_platforms_text() {
    let env = TestEnv::new().await;
    let (id, _) = env
        .connect(
            Provider::X,
            FamilySpec {
                revoke_after: Some(0),
                ..rotating()
            },
        )
        .await;
    let report = env.engine.refresh(&id, Trigger::Scheduled).await.unwrap();
    assert_eq!(report.outcome, Outcome::RejectedExpired);
    let row = env.row(&id).await;
    assert_eq!(row.status, AccountStatus::TokenExpired);
    assert!(row.status_reason.unwrap().contains("revoked"));
    assert_eq!(env.events(&id).await.last().unwrap().1, "TOKEN_EXPIRED");
}

#[tokio::test]
async fn expired_access_token_without_refresh_token_is_token_expired() {
    let env = TestEnv::new().await;
    let tokens = env.fake.issue(rotating());
    let mut new = common::new_account(
        Provider::LinkedinPerson,
        "no-rt",
        &tokens,
        Utc::now() - TimeDelta::days(61),
        Some(Utc::now() - TimeDelta::minutes(1)),
    );
    new.refresh_token = None;
    let policy = tokenwarden::policy::RefreshPolicy::from(
        env.settings.providers.get(Provider::LinkedinPerson),
    );
    let id = tokenwarden::store::accounts::register(env.pool(), &env.keyring, &policy, &new)
        .await
        .unwrap()
        .account
        .id;

    let report = env.engine.refresh(&id, Trigger::Scheduled).await.unwrap();
    assert_eq!(report.outcome, Outcome::RejectedExpired);
    assert_eq!(env.row(&id).await.status, AccountStatus::TokenExpired);
    assert_eq!(
        env.fake.call_count(),
        0,
        "nothing to call without a refresh token"
    );
}

#[tokio::test]
async fn valid_access_token_without_refresh_token_stays_active_until_expiry() {
    let env = TestEnv::new().await;
    let tokens = env.fake.issue(rotating());
    let expires = Utc::now() + TimeDelta::days(10);
    let mut new = common::new_account(
        Provider::LinkedinPerson,
        "no-rt",
        &tokens,
        Utc::now() - TimeDelta::days(50),
        Some(expires),
    );
    new.refresh_token = None;
    let policy = tokenwarden::policy::RefreshPolicy::from(
        env.settings.providers.get(Provider::LinkedinPerson),
    );
    let id = tokenwarden::store::accounts::register(env.pool(), &env.keyring, &policy, &new)
        .await
        .unwrap()
        .account
        .id;

    let report = env.engine.refresh(&id, Trigger::Scheduled).await.unwrap();
    assert_eq!(report.outcome, Outcome::Skipped);
    let row = env.row(&id).await;
    assert_eq!(row.status, AccountStatus::Active);
    assert!(row.last_refresh_error.unwrap().contains("reconnect before"));
    assert_eq!(
        row.next_attempt_at.unwrap().timestamp(),
        expires.timestamp(),
        "looked at again at expiry"
    );
}

#[tokio::test]
async fn disconnected_accounts_are_never_refreshed() {
    let env = TestEnv::new().await;
    let (id, _) = env.connect(Provider::X, rotating()).await;
    sqlx::query("UPDATE social_accounts SET status = 'DISCONNECTED' WHERE id = $1")
        .bind(id.as_str())
        .execute(env.pool())
        .await
        .unwrap();
    let err = env.engine.refresh(&id, Trigger::Forced).await.unwrap_err();
    assert!(matches!(err, EngineError::Disconnected(_)), "{err}");
    assert_eq!(env.fake.call_count(), 0);
}

#[tokio::test]
async fn reconnect_after_expiry_returns_to_active_with_a_recovery_event() {
    let env = TestEnv::new().await;
    let (id, _) = env
        .connect(
            Provider::X,
            FamilySpec {
                expire_after: Some(0),
                ..rotating()
            },
        )
        .await;
    env.engine.refresh(&id, Trigger::Scheduled).await.unwrap();
    assert_eq!(env.row(&id).await.status, AccountStatus::TokenExpired);

    let fresh = env.fake.issue(rotating());
    let again = env
        .register(
            Provider::X,
            &fresh,
            Utc::now(),
            Some(Utc::now() + TimeDelta::hours(2)),
        )
        .await;
    assert_eq!(
        again, id,
        "same workspace, provider and external id: same account"
    );
    let row = env.row(&id).await;
    assert_eq!(row.status, AccountStatus::Active);
    assert_eq!(row.consecutive_failures, 0);
    assert!(row.last_refresh_error.is_none());
    let events = env.events(&id).await;
    assert_eq!(
        events.last().unwrap(),
        &(
            Some("TOKEN_EXPIRED".into()),
            "ACTIVE".into(),
            "reconnected".into()
        )
    );
}

#[tokio::test]
async fn forced_refresh_of_an_expired_account_that_succeeds_recovers_it() {
    let env = TestEnv::new().await;
    let (id, _) = env.connect(Provider::X, rotating()).await;
    sqlx::query("UPDATE social_accounts SET status = 'TOKEN_EXPIRED' WHERE id = $1")
        .bind(id.as_str())
        .execute(env.pool())
        .await
        .unwrap();
    let report = env.engine.refresh(&id, Trigger::Forced).await.unwrap();
    assert_eq!(report.status, AccountStatus::Active);
    assert_eq!(env.events(&id).await.last().unwrap().1, "ACTIVE");
}

// ---- status rules -------------------------------------------------------

#[tokio::test]
async fn rule1_transient_failure_never_changes_status_and_schedules_a_retry() {
    let env = TestEnv::new().await;
    let (id, tokens) = env.connect(Provider::X, rotating()).await;
    // The access token has already expired: still ACTIVE, still retried.
    sqlx::query(
        "UPDATE social_accounts SET token_expires_at = now() - interval '1 minute' WHERE id = $1",
    )
    .bind(id.as_str())
    .execute(env.pool())
    .await
    .unwrap();
    env.fake
        .script_next(ScriptedResponse::raw(503, "text/plain", "down").header("retry-after", "90"));

    let report = env.engine.refresh(&id, Trigger::Scheduled).await.unwrap();
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
    let env = TestEnv::new().await;
    let (id, _) = env.connect(Provider::X, rotating()).await;
    let at = (Utc::now() + TimeDelta::seconds(300))
        .format("%a, %d %b %Y %H:%M:%S GMT")
        .to_string();
    env.fake.script_next(
        ScriptedResponse::json(429, json!({"errors": [{"code": 88}]})).header("retry-after", at),
    );
    let report = env.engine.refresh(&id, Trigger::Scheduled).await.unwrap();
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
    sqlx::query("UPDATE social_accounts SET consecutive_failures = 6 WHERE id = $1")
        .bind(id.as_str())
        .execute(env.pool())
        .await
        .unwrap();
    env.fake.script_next(ScriptedResponse::raw(
        502,
        "text/html",
        "<html>bad gateway</html>",
    ));
    env.engine.refresh(&id, Trigger::Scheduled).await.unwrap();
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
    let report = env.engine.refresh(&id, Trigger::Scheduled).await.unwrap();
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
    let report = env.engine.refresh(&id, Trigger::Forced).await.unwrap();
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
    let report = env.engine.refresh(&id, Trigger::Scheduled).await.unwrap();
    assert_eq!(report.outcome, Outcome::TransientError);
    assert!(report.message.unwrap().contains("could not connect"));
    assert_eq!(env.row(&id).await.status, AccountStatus::Active);
}

#[tokio::test]
async fn rule2_invalid_client_never_touches_the_account_status_or_failures() {
    let env = TestEnv::new().await;
    let (id, _) = env.connect(Provider::X, rotating()).await;
    env.fake.script_next(ScriptedResponse::json(
        401,
        json!({"error": "invalid_client", "error_description": "Client authentication failed"}),
    ));
    let report = env.engine.refresh(&id, Trigger::Scheduled).await.unwrap();
    assert_eq!(report.outcome, Outcome::ConfigError);
    let row = env.row(&id).await;
    assert_eq!(row.status, AccountStatus::Active);
    assert_eq!(row.consecutive_failures, 0);
    assert_eq!(row.last_refresh_error_status, Some(401));
    assert_eq!(env.events(&id).await.len(), 1);
}

#[tokio::test]
async fn rule2_unauthorized_client_and_wrong_secret_are_config_errors() {
    let env =
        TestEnv::with(|s| s.providers.x.client_secret = Some("wrong".to_owned().into())).await;
    let (id, _) = env.connect(Provider::X, rotating()).await;
    let report = env.engine.refresh(&id, Trigger::Scheduled).await.unwrap();
    assert_eq!(report.outcome, Outcome::ConfigError, "{:?}", report.message);
    env.fake.script_next(ScriptedResponse::json(
        400,
        json!({"error": "unauthorized_client"}),
    ));
    let report = env.engine.refresh(&id, Trigger::Forced).await.unwrap();
    assert_eq!(report.outcome, Outcome::ConfigError);
    assert_eq!(env.row(&id).await.status, AccountStatus::Active);
}

#[tokio::test]
async fn rule2_unconfigured_platform_is_a_config_error() {
    let env = TestEnv::new().await;
    let tokens = env.fake.issue(rotating());
    let id = env
        .register(
            Provider::FacebookPage,
            &tokens,
            Utc::now() - TimeDelta::hours(1),
            Some(Utc::now()),
        )
        .await;
    let report = env.engine.refresh(&id, Trigger::Scheduled).await.unwrap();
    assert_eq!(report.outcome, Outcome::ConfigError);
    assert!(
        report
            .message
            .unwrap()
            .contains("providers.facebook_page.client_id")
    );
    assert_eq!(env.row(&id).await.status, AccountStatus::Active);
}

#[tokio::test]
async fn rule3_stale_rejection_is_ignored_when_the_user_reconnected_meanwhile() {
    let env = TestEnv::new().await;
    let (id, _) = env.connect(Provider::X, rotating()).await;
    env.fake.script_next(ScriptedResponse::json(
        400,
        json!({"error": "invalid_grant", "error_description": "expired"}),
    ));
    env.fake.set_answer_delay(Duration::from_millis(800));

    let engine = env.engine.clone();
    let refresh_id = id.clone();
    let refresh =
        tokio::spawn(async move { engine.refresh(&refresh_id, Trigger::Scheduled).await });
    tokio::time::sleep(Duration::from_millis(300)).await;
    // The user reconnects while the provider call is in flight.
    let fresh = env.fake.issue(rotating());
    env.register(
        Provider::X,
        &fresh,
        Utc::now(),
        Some(Utc::now() + TimeDelta::hours(2)),
    )
    .await;

    let report = refresh.await.unwrap().unwrap();
    assert_eq!(report.status, AccountStatus::Active);
    assert!(report.message.unwrap().contains("ignored"));
    let row = env.row(&id).await;
    assert_eq!(row.status, AccountStatus::Active);
    assert_eq!(
        env.stored_refresh_token(&id).await.unwrap(),
        fresh.refresh_token
    );
    assert_eq!(env.events(&id).await.len(), 1, "no TOKEN_EXPIRED event");
}

#[tokio::test]
async fn rule4_every_status_change_writes_exactly_one_event() {
    let env = TestEnv::new().await;
    let (id, _) = env
        .connect(
            Provider::X,
            FamilySpec {
                revoke_after: Some(1),
                ..rotating()
            },
        )
        .await;
    env.engine.refresh(&id, Trigger::Forced).await.unwrap(); // ACTIVE -> ACTIVE: no event
    env.engine.refresh(&id, Trigger::Forced).await.unwrap(); // -> TOKEN_EXPIRED
    env.engine.refresh(&id, Trigger::Forced).await.unwrap(); // TOKEN_EXPIRED -> same: no event
    let events = env.events(&id).await;
    let statuses: Vec<_> = events.iter().map(|e| e.1.as_str()).collect();
    assert_eq!(statuses, vec!["ACTIVE", "TOKEN_EXPIRED"]);
}

#[tokio::test]
async fn rule5_attempt_time_is_written_every_time_and_success_clears_errors() {
    let env = TestEnv::new().await;
    let (id, _) = env.connect(Provider::X, rotating()).await;
    env.fake
        .script_next(ScriptedResponse::raw(500, "text/plain", "oops"));
    env.engine.refresh(&id, Trigger::Scheduled).await.unwrap();
    let failed = env.row(&id).await;
    let first_attempt = failed.last_refresh_attempt_at.unwrap();
    assert_eq!(failed.last_refresh_error_status, Some(500));

    env.engine.refresh(&id, Trigger::Forced).await.unwrap();
    let ok = env.row(&id).await;
    assert!(ok.last_refresh_attempt_at.unwrap() > first_attempt);
    assert!(ok.last_refresh_error.is_none());
    assert!(ok.last_refresh_error_status.is_none());
    assert_eq!(ok.consecutive_failures, 0);
    let history = attempts::for_account(env.pool(), &id, 10).await.unwrap();
    let outcomes: Vec<_> = history.iter().map(|a| a.outcome).collect();
    assert_eq!(outcomes, vec![Outcome::Refreshed, Outcome::TransientError]);
}

// ---- scheduling ---------------------------------------------------------

#[tokio::test]
async fn scheduled_refresh_of_an_account_not_yet_due_is_skipped() {
    let env = TestEnv::new().await;
    let tokens = env.fake.issue(rotating());
    let id = env
        .register(
            Provider::X,
            &tokens,
            Utc::now(),
            Some(Utc::now() + TimeDelta::hours(2)),
        )
        .await;
    let report = env.engine.refresh(&id, Trigger::Scheduled).await.unwrap();
    assert_eq!(report.outcome, Outcome::Skipped);
    assert_eq!(env.fake.call_count(), 0);
    let forced = env.engine.refresh(&id, Trigger::Forced).await.unwrap();
    assert_eq!(forced.outcome, Outcome::Refreshed);
}

#[tokio::test]
async fn unknown_account_is_a_clear_error() {
    let env = TestEnv::new().await;
    let id = tokenwarden::domain::AccountId::generate();
    let err = env.engine.refresh(&id, Trigger::Forced).await.unwrap_err();
    assert_eq!(err.to_string(), format!("unknown account {id}"));
}

// ---- refresh safety -----------------------------------------------------

#[tokio::test]
async fn client_auth_follows_configuration() {
    let env = TestEnv::new().await;
    let (x, _) = env.connect(Provider::X, rotating()).await;
    let tokens = env.fake.issue(google_like());
    let yt = env
        .register(
            Provider::Youtube,
            &tokens,
            Utc::now() - TimeDelta::hours(1),
            Some(Utc::now()),
        )
        .await;
    env.engine.refresh(&x, Trigger::Forced).await.unwrap();
    env.engine.refresh(&yt, Trigger::Forced).await.unwrap();
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

#[tokio::test]
async fn response_without_refresh_token_keeps_the_stored_one() {
    let env = TestEnv::new().await;
    let tokens = env.fake.issue(google_like());
    let id = env
        .register(
            Provider::Youtube,
            &tokens,
            Utc::now() - TimeDelta::hours(1),
            Some(Utc::now()),
        )
        .await;
    let old_access = env.stored_access_token(&id).await;
    let report = env.engine.refresh(&id, Trigger::Scheduled).await.unwrap();
    assert_eq!(report.outcome, Outcome::Refreshed);
    assert_eq!(
        env.stored_refresh_token(&id).await.unwrap(),
        tokens.refresh_token
    );
    assert_ne!(env.stored_access_token(&id).await, old_access);
}

#[tokio::test]
async fn two_tasks_racing_make_one_provider_call() {
    let env = TestEnv::new().await;
    let (id, _) = env.connect(Provider::X, rotating()).await;
    env.fake.set_answer_delay(Duration::from_millis(300));
    let (a, b) = tokio::join!(
        env.engine.refresh(&id, Trigger::Forced),
        env.engine.refresh(&id, Trigger::Forced)
    );
    let (a, b) = (a.unwrap(), b.unwrap());
    assert_eq!(env.fake.call_count(), 1);
    assert_eq!(
        (a.outcome, b.outcome),
        (Outcome::Refreshed, Outcome::Refreshed)
    );
    assert!(a.joined ^ b.joined, "one led, one joined");
    let stored = env.stored_refresh_token(&id).await.unwrap();
    assert!(
        env.fake.is_live(&stored),
        "the account still holds a working refresh token"
    );
}

#[tokio::test]
async fn two_engines_racing_on_the_database_lease_make_one_provider_call() {
    let env = TestEnv::new().await;
    let (id, _) = env.connect(Provider::X, rotating()).await;
    let other = env.other_engine("engine-b");
    env.fake.set_answer_delay(Duration::from_millis(500));
    let (a, b) = tokio::join!(
        env.engine.refresh(&id, Trigger::Forced),
        other.refresh(&id, Trigger::Forced)
    );
    let (a, b) = (a.unwrap(), b.unwrap());
    assert_eq!(
        env.fake.call_count(),
        1,
        "one provider call across both engines"
    );
    assert_eq!(env.fake.reuse_detected(), 0);
    assert_eq!(
        (a.outcome, b.outcome),
        (Outcome::Refreshed, Outcome::Refreshed)
    );
    assert!(a.joined ^ b.joined);
    assert!(
        env.fake
            .is_live(&env.stored_refresh_token(&id).await.unwrap())
    );
}

#[tokio::test]
async fn waiting_for_a_lease_held_elsewhere_is_bounded() {
    let env = TestEnv::with(|s| s.engine.single_flight_wait = Duration::from_secs(1)).await;
    let (id, _) = env.connect(Provider::X, rotating()).await;
    sqlx::query("UPDATE social_accounts SET lease_owner = 'ghost', lease_until = now() + interval '1 hour', lease_started_at = now() WHERE id = $1")
        .bind(id.as_str())
        .execute(env.pool())
        .await
        .unwrap();
    let started = std::time::Instant::now();
    let err = env.engine.refresh(&id, Trigger::Forced).await.unwrap_err();
    assert!(matches!(err, EngineError::InFlightTimeout { .. }), "{err}");
    assert!(started.elapsed() < Duration::from_secs(5));
    assert_eq!(
        env.fake.call_count(),
        0,
        "no provider call without the lease"
    );
}

#[tokio::test]
async fn fenced_write_lands_after_a_lost_lease_and_yields_to_newer_credentials() {
    let env = TestEnv::new().await;
    let (id, tokens) = env.connect(Provider::X, rotating()).await;
    env.fake.set_answer_delay(Duration::from_millis(800));
    let engine = env.engine.clone();
    let refresh_id = id.clone();
    let refresh = tokio::spawn(async move { engine.refresh(&refresh_id, Trigger::Forced).await });
    tokio::time::sleep(Duration::from_millis(300)).await;
    // Someone else now holds the lease (as after an expiry and takeover).
    sqlx::query("UPDATE social_accounts SET lease_owner = 'usurper', lease_until = now() + interval '1 minute' WHERE id = $1")
        .bind(id.as_str())
        .execute(env.pool())
        .await
        .unwrap();
    // The new tokens are the only copy of the grant: they land because no
    // newer credentials were written (the credentials version is the
    // fence), and the other process's lease is left to it.
    let report = refresh.await.unwrap().unwrap();
    assert_eq!(report.outcome, Outcome::Refreshed);
    let stored = env.stored_refresh_token(&id).await.unwrap();
    assert_ne!(stored, tokens.refresh_token);
    assert!(env.fake.is_live(&stored));
    assert_eq!(
        env.row(&id).await.lease_owner.as_deref(),
        Some("usurper"),
        "the other lease untouched"
    );
    // Newer credentials (a reconnect) do fence a result out.
    sqlx::query("UPDATE social_accounts SET lease_owner = NULL, lease_until = NULL WHERE id = $1")
        .bind(id.as_str())
        .execute(env.pool())
        .await
        .unwrap();
    let before = env.stored_refresh_token(&id).await.unwrap();
    env.fake.set_answer_delay(Duration::from_millis(800));
    let engine = env.engine.clone();
    let refresh_id = id.clone();
    let refresh = tokio::spawn(async move { engine.refresh(&refresh_id, Trigger::Forced).await });
    tokio::time::sleep(Duration::from_millis(300)).await;
    sqlx::query(
        "UPDATE social_accounts SET credentials_version = credentials_version + 1 WHERE id = $1",
    )
    .bind(id.as_str())
    .execute(env.pool())
    .await
    .unwrap();
    let report = refresh.await.unwrap().unwrap();
    assert_eq!(report.outcome, Outcome::TransientError);
    assert_eq!(
        env.stored_refresh_token(&id).await.unwrap(),
        before,
        "nothing written"
    );
    env.fake.set_answer_delay(Duration::ZERO);
}

#[tokio::test]
async fn aborted_refresh_is_reported_as_interrupted_by_the_next_attempt() {
    // request timeout 2 s + margin 1 s: the lease lasts 3 s.
    let env = TestEnv::with(|s| {
        s.http.request_timeout = Duration::from_secs(2);
        s.http.rotating_request_timeout = Duration::from_secs(2);
    })
    .await;
    let (id, _) = env.connect(Provider::X, rotating()).await;
    // The platform rotates, then the answer is lost with the process: an
    // engine on a runtime of its own (its own pool) that dies mid-call.
    env.fake.set_answer_delay(Duration::from_millis(1500));
    let (url, settings, keyring, refresh_id) = (
        env.db.url(),
        env.settings.clone(),
        env.keyring.clone(),
        id.clone(),
    );
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Runtime::new().unwrap();
        runtime.spawn(async move {
            let pool = sqlx::PgPool::connect(&url).await.unwrap();
            let engine = engine_for(&pool, &settings, keyring, "dying-process");
            let _ = engine.refresh(&refresh_id, Trigger::Forced).await;
        });
        std::thread::sleep(Duration::from_millis(700));
        runtime.shutdown_background();
    })
    .join()
    .unwrap();
    env.fake.set_answer_delay(Duration::ZERO);
    assert!(
        env.row(&id).await.lease_owner.is_some(),
        "the lease outlives the dead process"
    );

    tokio::time::sleep(Duration::from_millis(3200)).await;
    let report = env
        .other_engine("engine-b")
        .refresh(&id, Trigger::Forced)
        .await
        .unwrap();
    // The strict platform saw the spent token again and revoked the family;
    // its invalid_grant says the grant is dead, not that the user withdrew it.
    assert_eq!(report.outcome, Outcome::RejectedExpired);
    let message = report.message.unwrap();
    assert!(message.contains("interrupted refresh"), "{message}");
    let row = env.row(&id).await;
    assert_eq!(row.status, AccountStatus::TokenExpired);
    assert!(
        row.last_refresh_error
            .unwrap()
            .contains("interrupted refresh")
    );
}

/// A caller that goes away (an HTTP client that hangs up, a job timeout)
/// never cuts the refresh it started: the refresh runs to its write.
#[tokio::test]
async fn a_caller_going_away_does_not_cut_its_refresh() {
    let env = TestEnv::new().await;
    let (id, _) = env.connect(Provider::X, rotating()).await;
    env.fake.set_answer_delay(Duration::from_millis(800));
    let engine = env.engine.clone();
    let refresh_id = id.clone();
    let caller = tokio::spawn(async move { engine.refresh(&refresh_id, Trigger::Forced).await });
    tokio::time::sleep(Duration::from_millis(300)).await;
    caller.abort();
    let _ = caller.await;
    env.engine.refreshes().close();
    tokio::time::timeout(Duration::from_secs(10), env.engine.refreshes().wait())
        .await
        .expect("the refresh finishes");
    let row = env.row(&id).await;
    assert!(row.lease_owner.is_none());
    assert_eq!(row.status, AccountStatus::Active);
    let stored = env.stored_refresh_token(&id).await.unwrap();
    assert!(env.fake.is_live(&stored), "the rotated token was stored");
    assert_eq!(env.fake.call_count(), 1);
}

#[tokio::test]
async fn interrupted_flag_clears_after_a_successful_refresh() {
    let env = TestEnv::new().await;
    let (id, _) = env.connect(Provider::X, rotating()).await;
    // A lease that expired without a result (the process died before calling out).
    sqlx::query("UPDATE social_accounts SET lease_owner = 'dead', lease_until = now() - interval '1 second', lease_started_at = now() - interval '30 seconds' WHERE id = $1")
        .bind(id.as_str())
        .execute(env.pool())
        .await
        .unwrap();
    let report = env.engine.refresh(&id, Trigger::Forced).await.unwrap();
    assert_eq!(report.outcome, Outcome::Refreshed);
    let row = env.row(&id).await;
    assert!(row.interrupted_refresh_at.is_none());
    assert!(row.lease_owner.is_none());
}

// ---- malformed answers: nothing overwritten, transient, no panic ---------

async fn assert_malformed_is_transient(response: ScriptedResponse, expect_in_message: &str) {
    let env = TestEnv::new().await;
    let (id, tokens) = env.connect(Provider::X, rotating()).await;
    let before = env.row(&id).await;
    env.fake.script_next(response);
    let report = env.engine.refresh(&id, Trigger::Scheduled).await.unwrap();
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
    let env = TestEnv::new().await;
    let (id, _) = env.connect(Provider::X, rotating()).await;
    env.fake.script_next(ScriptedResponse::json(200, answer));
    let report = env.engine.refresh(&id, Trigger::Scheduled).await.unwrap();
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

#[tokio::test]
async fn expires_in_as_a_numeric_string_is_a_documented_variant() {
    let env = TestEnv::new().await;
    let (id, tokens) = env.connect(Provider::X, rotating()).await;
    env.fake.script_next(ScriptedResponse::json(
        200,
        json!({"access_token": "at_new", "expires_in": "7200", "refresh_token": "rt_new"}),
    ));
    let report = env.engine.refresh(&id, Trigger::Scheduled).await.unwrap();
    assert_eq!(report.outcome, Outcome::Refreshed);
    let row = env.row(&id).await;
    assert!(
        (row.token_expires_at.unwrap() - (Utc::now() + TimeDelta::hours(2)))
            .num_seconds()
            .abs()
            < 10
    );
    assert_eq!(env.stored_refresh_token(&id).await.unwrap(), "rt_new");
    assert_ne!(tokens.refresh_token, "rt_new");
}

#[tokio::test]
async fn missing_expires_in_stores_the_tokens_and_assumes_the_configured_lifetime() {
    // A rotating platform's answer is the only copy of the new refresh token:
    // refusing it for a missing (optional, RFC 6749 5.1) expires_in would
    // strand the account. The configured default lifetime applies.
    let env = TestEnv::new().await;
    let (id, _) = env.connect(Provider::X, rotating()).await;
    env.fake.script_next(ScriptedResponse::json(
        200,
        json!({"access_token": "at_new", "refresh_token": "rt_new"}),
    ));
    let report = env.engine.refresh(&id, Trigger::Scheduled).await.unwrap();
    assert_eq!(report.outcome, Outcome::Refreshed);
    assert!(report.message.unwrap().contains("no expires_in"));
    let row = env.row(&id).await;
    let default = env
        .settings
        .providers
        .x
        .default_access_token_lifetime
        .as_secs() as i64;
    assert!(
        (row.token_expires_at.unwrap() - (Utc::now() + TimeDelta::seconds(default)))
            .num_seconds()
            .abs()
            < 10
    );
    assert_eq!(env.stored_refresh_token(&id).await.unwrap(), "rt_new");
}

/// Helper trait so tests can make an account due without waiting.
trait MakeDue {
    async fn execute_due_now(&self, id: &tokenwarden::domain::AccountId);
}

impl MakeDue for sqlx::PgPool {
    async fn execute_due_now(&self, id: &tokenwarden::domain::AccountId) {
        sqlx::query("UPDATE social_accounts SET next_attempt_at = now() - interval '1 second' WHERE id = $1")
            .bind(id.as_str())
            .execute(self)
            .await
            .unwrap();
    }
}

#[tokio::test]
async fn a_refresh_in_flight_never_brings_a_disconnected_account_back() {
    let env = TestEnv::new().await;
    let (id, _) = env.connect(Provider::X, rotating()).await;
    env.fake.set_answer_delay(Duration::from_millis(600));
    let engine = env.engine.clone();
    let refresh_id = id.clone();
    let refresh = tokio::spawn(async move { engine.refresh(&refresh_id, Trigger::Forced).await });
    tokio::time::sleep(Duration::from_millis(200)).await;
    sqlx::query("UPDATE social_accounts SET status = 'DISCONNECTED' WHERE id = $1")
        .bind(id.as_str())
        .execute(env.pool())
        .await
        .unwrap();
    let _ = refresh.await.unwrap();
    assert_eq!(env.row(&id).await.status, AccountStatus::Disconnected);
    assert_eq!(env.events(&id).await.len(), 1, "no event back to ACTIVE");
}

#[tokio::test]
async fn a_rotated_refresh_token_does_not_inherit_the_spent_tokens_expiry() {
    let env = TestEnv::new().await;
    let (id, _) = env.connect(Provider::X, rotating()).await;
    sqlx::query("UPDATE social_accounts SET refresh_token_expires_at = now() + interval '1 day' WHERE id = $1")
        .bind(id.as_str())
        .execute(env.pool())
        .await
        .unwrap();
    env.engine.refresh(&id, Trigger::Forced).await.unwrap();
    // X's refresh-token lifetime is unknown (unset): the new token's expiry
    // is unknown too, not the old one's.
    assert_eq!(env.row(&id).await.refresh_token_expires_at, None);
}

// ---- panics: never a stranded account ------------------------------------

/// A panic injected at any phase of a refresh ends as a recorded failed
/// attempt with the lease released; the account is never left leased and
/// silently ACTIVE.
#[tokio::test]
async fn a_panic_at_any_phase_ends_as_a_recorded_failure_with_the_lease_released() {
    use std::sync::atomic::{AtomicBool, Ordering};
    use tokenwarden::engine::{Engine, EngineConfig, FaultHook, Phase};
    use tokenwarden::providers::ProviderRegistry;

    for phase in [Phase::Leased, Phase::Answered, Phase::Written] {
        let env = TestEnv::new().await;
        let (id, _) = env.connect(Provider::X, rotating()).await;
        let fired = Arc::new(AtomicBool::new(false));
        let mut config = EngineConfig::from_settings(&env.settings);
        config.owner = "panicking".into();
        let once = fired.clone();
        config.fault_hook = Some(FaultHook(Arc::new(move |at| {
            if at == phase && !once.swap(true, Ordering::SeqCst) {
                panic!("injected fault at {at:?}");
            }
        })));
        let providers =
            ProviderRegistry::from_settings(&env.settings.providers, &env.settings.http).unwrap();
        let engine = Engine::new(env.db.pool.clone(), env.keyring.clone(), providers, config);

        let report = engine.refresh(&id, Trigger::Forced).await.unwrap();
        assert!(fired.load(Ordering::SeqCst), "{phase:?}");
        assert_eq!(report.outcome, Outcome::TransientError, "{phase:?}");
        assert!(report.message.unwrap().starts_with("internal error"));
        let row = env.row(&id).await;
        assert!(row.lease_owner.is_none(), "{phase:?}: lease released");
        assert_eq!(row.status, AccountStatus::Active);
        assert!(
            row.last_refresh_error
                .unwrap()
                .starts_with("internal error")
        );
        let attempts = attempts::for_account(&env.db.pool, &id, 1).await.unwrap();
        assert_eq!(attempts[0].outcome, Outcome::TransientError, "{phase:?}");
        assert!(engine.grants_in_hand().is_empty());

        // The next refresh (no fault) tells the truth about what was lost.
        let next = engine.refresh(&id, Trigger::Forced).await.unwrap();
        match phase {
            // Before the call, or after the write: nothing was lost.
            Phase::Leased | Phase::Written => {
                assert_eq!(next.outcome, Outcome::Refreshed, "{phase:?}: {next:?}")
            }
            // The platform rotated and the answer died with the panic.
            Phase::Answered => {
                let message = next.message.unwrap();
                assert!(
                    message.contains("interrupted refresh")
                        && message.contains("stopped on an internal error"),
                    "{message}"
                );
            }
        }
    }
}

// ---- forced bursts: one platform call per burst ---------------------------

/// Ten simultaneous forced refreshes per round, 50 rounds, split over two
/// engines (two processes' worth of leases and flight tables) and all to
/// one: exactly one platform call per round. A caller that reaches the
/// lease just after another refresh released it takes that refresh, which
/// finished after the caller asked, as its answer.
#[tokio::test]
async fn every_forced_burst_makes_exactly_one_platform_call() {
    let env = TestEnv::new().await;
    let (id, _) = env.connect(Provider::X, rotating()).await;
    let engines = [env.engine.clone(), env.other_engine("engine-b")];
    for split in [true, false] {
        for round in 0..50 {
            let before = env.fake.call_count();
            let requested_at = chrono::Utc::now();
            let callers: Vec<_> = (0..10)
                .map(|i| {
                    let engine = engines[if split { i % 2 } else { 0 }].clone();
                    let id = id.clone();
                    tokio::spawn(async move {
                        engine
                            .refresh_requested_at(&id, Trigger::Forced, requested_at)
                            .await
                    })
                })
                .collect();
            for caller in callers {
                let report = caller.await.unwrap().unwrap();
                assert!(report.succeeded(), "{report:?}");
            }
            assert_eq!(
                env.fake.call_count() - before,
                1,
                "round {round} (split over two engines: {split})"
            );
        }
    }
    assert_eq!(env.fake.reuse_detected(), 0);
    let stored = env.stored_refresh_token(&id).await.unwrap();
    assert!(env.fake.is_live(&stored));
}

// ---- the database refusing the write of new tokens ------------------------

/// Makes every write of new credentials in this test's schema fail with
/// `sqlstate` while the `refuse_credentials` table holds a row.
async fn refuse_credential_writes(env: &TestEnv, sqlstate: &str) {
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
        "CREATE TABLE refuse_credentials (on_ boolean);
         INSERT INTO refuse_credentials VALUES (true);
         CREATE FUNCTION refuse_credentials() RETURNS trigger LANGUAGE plpgsql AS $$
         BEGIN
             IF NEW.credentials_version <> OLD.credentials_version
                AND EXISTS (SELECT 1 FROM refuse_credentials) THEN
                 RAISE EXCEPTION 'refused by the test' USING ERRCODE = '{sqlstate}';
             END IF;
             RETURN NEW;
         END $$;
         CREATE TRIGGER refuse_credentials BEFORE UPDATE ON social_accounts
             FOR EACH ROW EXECUTE FUNCTION refuse_credentials();"
    )))
    .execute(env.pool())
    .await
    .unwrap();
}

/// A disk-full (53100) refusal passes: the new tokens are kept in hand and
/// land once the database takes writes again.
#[tokio::test]
async fn a_full_disk_is_waited_out_with_the_grant_in_hand() {
    let env = TestEnv::new().await;
    let (id, _) = env.connect(Provider::X, rotating()).await;
    refuse_credential_writes(&env, "53100").await;
    let engine = env.engine.clone();
    let refresh_id = id.clone();
    let refresh = tokio::spawn(async move { engine.refresh(&refresh_id, Trigger::Forced).await });
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(env.engine.grants_in_hand(), vec![id.clone()]);
    sqlx::query("DELETE FROM refuse_credentials")
        .execute(env.pool())
        .await
        .unwrap();
    let report = tokio::time::timeout(Duration::from_secs(10), refresh)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(report.outcome, Outcome::Refreshed);
    assert!(env.engine.grants_in_hand().is_empty());
    let stored = env.stored_refresh_token(&id).await.unwrap();
    assert!(env.fake.is_live(&stored));
}

/// A refusal the database will repeat (an integrity violation) loses the
/// grant; the record says so, and a later rejection names it.
#[tokio::test]
async fn a_grant_the_database_refuses_for_good_is_recorded_as_lost() {
    let env = TestEnv::new().await;
    let (id, _) = env.connect(Provider::X, rotating()).await;
    refuse_credential_writes(&env, "23514").await;
    let err = env.engine.refresh(&id, Trigger::Forced).await.unwrap_err();
    assert!(matches!(err, EngineError::Database(_)), "{err}");
    let row = env.row(&id).await;
    assert!(row.lease_owner.is_none());
    assert_eq!(row.status, AccountStatus::Active);
    assert_eq!(
        row.last_refresh_error.as_deref(),
        Some("the platform answered, but the database refused the new tokens (SQLSTATE 23514)")
    );
    assert!(row.interrupted_refresh_at.is_some());
    sqlx::query("DELETE FROM refuse_credentials")
        .execute(env.pool())
        .await
        .unwrap();
    let report = env.engine.refresh(&id, Trigger::Forced).await.unwrap();
    let message = report.message.unwrap();
    assert!(
        message.contains("was answered, but the database refused its new tokens"),
        "{message}"
    );
}
