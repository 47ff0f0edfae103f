//! App-password sessions (refreshSession): rotation, the reuse grace, both
//! JWT expiries, a deactivated account over time, and what a row cannot
//! script: rate-limit and retry headers, a redirect, malformed sessions.

use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::Utc;
use serde_json::{Value, json};
use tokenwarden::domain::{AccountStatus, Outcome};
use tokenwarden_fakes::{BlueskyAccountState, ScriptedResponse, SessionSpec};

use crate::support::{
    app_password, assert_status, assert_untouched, refresh, seconds_until, session_setup,
};

#[tokio::test]
async fn refresh_session_rotates_and_reads_both_jwt_expiries() {
    let (fake, env, session, id) = session_setup(SessionSpec::default()).await;
    let report = refresh(&env, &id).await;
    assert_eq!(report.outcome, Outcome::Refreshed, "{:?}", report.message);
    let first = env.stored_refresh_token(&id).await.unwrap();
    assert_ne!(first, session.refresh_jwt);
    assert_ne!(env.stored_access_token(&id).await, session.access_jwt);
    assert!(fake.is_live_session(&first) && !fake.is_live_session(&session.refresh_jwt));
    let row = env.row(&id).await;
    assert!((7190..=7200).contains(&seconds_until(row.token_expires_at)));
    let refresh_left = seconds_until(row.refresh_token_expires_at);
    assert!(
        (90 * 86_400 - 10..=90 * 86_400).contains(&refresh_left),
        "{refresh_left}"
    );

    let report = refresh(&env, &id).await;
    assert_eq!(report.outcome, Outcome::Refreshed);
    let second = env.stored_refresh_token(&id).await.unwrap();
    assert!(second != first && fake.is_live_session(&second));
    assert_eq!(fake.reuse_detected(), 0, "no spent JWT was presented again");
}

#[tokio::test]
async fn strict_pds_revokes_the_session_when_a_spent_refresh_jwt_returns() {
    let (fake, env, session, id) = session_setup(SessionSpec::default()).await;
    assert_eq!(refresh(&env, &id).await.outcome, Outcome::Refreshed);
    let current = env.stored_refresh_token(&id).await.unwrap();
    // The user's side reconnects with the spent pair, as a lost write would leave it.
    let id = app_password(&env, &session, &fake.origin()).await;
    let report = refresh(&env, &id).await;
    // "Token has been revoked": the session is gone (case 3), TOKEN_EXPIRED.
    assert_eq!(report.outcome, Outcome::RejectedExpired);
    assert_status(&env, &id, &report, AccountStatus::TokenExpired).await;
    assert_eq!(fake.reuse_detected(), 1);
    assert!(!fake.is_live_session(&current), "the whole session died");
}

#[tokio::test]
async fn within_the_grace_period_a_spent_jwt_yields_the_same_next_session() {
    let (fake, env, session, id) = session_setup(SessionSpec::default()).await;
    fake.set_reuse_grace(Some(Duration::from_secs(7200)));
    assert_eq!(refresh(&env, &id).await.outcome, Outcome::Refreshed);
    let next = env.stored_refresh_token(&id).await.unwrap();
    let id = app_password(&env, &session, &fake.origin()).await;
    let report = refresh(&env, &id).await;
    assert_eq!(report.outcome, Outcome::Refreshed, "{:?}", report.message);
    assert_eq!(env.stored_refresh_token(&id).await.unwrap(), next);
}

/// Issue 10, case 5: the PDS refreshes a deactivated account's session and
/// says `active: false, status: deactivated`. The new tokens are stored, the
/// account stays ACTIVE (the user can reactivate), flagged inactive with the
/// reason, unable to post, and the change is an event; reactivation clears it.
#[tokio::test]
async fn account_deactivated_is_flagged_without_a_status_change() {
    let (fake, env, session, id) = session_setup(SessionSpec::default()).await;
    fake.set_account_state(&session.did, BlueskyAccountState::Deactivated);
    let report = refresh(&env, &id).await;
    assert_eq!(report.outcome, Outcome::Refreshed, "{:?}", report.message);
    assert_eq!(report.status, AccountStatus::Active);
    let row = env.row(&id).await;
    assert_eq!(row.status, AccountStatus::Active);
    let stored = env.stored_refresh_token(&id).await.unwrap();
    assert!(stored != session.refresh_jwt && fake.is_live_session(&stored));
    assert!(
        row.account_inactive_reason
            .as_deref()
            .unwrap()
            .contains("deactivated")
    );
    let health = tokenwarden::api::views::health(&row, Utc::now());
    assert!(!health.can_post);
    assert!(health.flags.contains(&"account_inactive"));
    assert!(health.reason.unwrap().contains("deactivated"));
    let events = env.events(&id).await;
    assert_eq!(events.len(), 2, "{events:?}");
    assert_eq!(
        (events[1].0.as_deref(), events[1].1.as_str()),
        (Some("ACTIVE"), "ACTIVE")
    );

    // Still deactivated: no second event.
    assert_eq!(refresh(&env, &id).await.outcome, Outcome::Refreshed);
    assert_eq!(env.events(&id).await.len(), 2);

    fake.set_account_state(&session.did, BlueskyAccountState::Active);
    assert_eq!(refresh(&env, &id).await.outcome, Outcome::Refreshed);
    let row = env.row(&id).await;
    assert_eq!(row.account_inactive_reason, None);
    assert!(tokenwarden::api::views::health(&row, Utc::now()).can_post);
    assert_eq!(
        env.events(&id).await.len(),
        3,
        "reactivation is an event too"
    );
}

/// The answer itself (502 `UpstreamFailure`) is a row of
/// `docs/platform-answers.md`; a row cannot send a `Retry-After`.
#[tokio::test]
async fn a_5xx_is_transient_and_waits_for_its_retry_after() {
    let (fake, env, session, id) = session_setup(SessionSpec::default()).await;
    fake.script_next(
        ScriptedResponse::raw(503, "text/html", "<h1>down</h1>").header("retry-after", "42"),
    );
    let report = refresh(&env, &id).await;
    assert_eq!(report.outcome, Outcome::TransientError);
    assert!((40..=42).contains(&seconds_until(report.retry_at)));
    assert_untouched(&env, &id, &report, &session.refresh_jwt).await;
    assert!(fake.is_live_session(&session.refresh_jwt));
}

#[tokio::test]
async fn rate_limit_waits_for_the_epoch_reset() {
    let (fake, env, session, id) = session_setup(SessionSpec::default()).await;
    let reset = Utc::now().timestamp() + 300;
    fake.script_next(
        ScriptedResponse::json(
            429,
            json!({"error": "RateLimitExceeded", "message": "Rate Limit Exceeded"}),
        )
        .header("ratelimit-limit", "30")
        .header("ratelimit-remaining", "0")
        .header("ratelimit-reset", reset.to_string()),
    );
    let report = refresh(&env, &id).await;
    assert_eq!(report.outcome, Outcome::RateLimited);
    let wait = seconds_until(report.retry_at);
    assert!((295..=302).contains(&wait), "{wait}s");
    assert_untouched(&env, &id, &report, &session.refresh_jwt).await;
}

/// A redirect is not followed. The unknown errors (400 `InvalidRequest`,
/// 401 `AuthMissing`) are rows of `docs/platform-answers.md`; a row cannot
/// send a `Location`.
#[tokio::test]
async fn a_redirect_is_transient_and_not_followed() {
    let (fake, env, session, id) = session_setup(SessionSpec::default()).await;
    fake.script_next(
        ScriptedResponse::raw(302, "text/html", "")
            .header("location", "https://elsewhere.example/"),
    );
    let report = refresh(&env, &id).await;
    assert_eq!(report.outcome, Outcome::TransientError);
    assert_eq!(report.http_status, Some(302));
    assert_untouched(&env, &id, &report, &session.refresh_jwt).await;
}

fn fake_jwt(claims: Value) -> String {
    format!(
        "eyJhbGciOiJIUzI1NiJ9.{}.c2ln",
        URL_SAFE_NO_PAD.encode(claims.to_string())
    )
}

#[tokio::test]
async fn malformed_sessions_are_transient_and_never_stored() {
    let (fake, env, session, id) = session_setup(SessionSpec::default()).await;
    let later = Utc::now().timestamp() + 3600;
    let good = fake_jwt(json!({"exp": later}));
    let answers = [
        ScriptedResponse::raw(200, "text/html", "<html>login</html>"),
        ScriptedResponse::json(200, json!({"refreshJwt": good})),
        ScriptedResponse::json(200, json!({"accessJwt": good})),
        ScriptedResponse::json(200, json!({"accessJwt": "opaque", "refreshJwt": good})),
        ScriptedResponse::json(200, json!({"accessJwt": good, "refreshJwt": "a.%%%.c"})),
        ScriptedResponse::json(
            200,
            json!({"accessJwt": format!("a.{}.c", URL_SAFE_NO_PAD.encode("nope")), "refreshJwt": good}),
        ),
        ScriptedResponse::json(
            200,
            json!({"accessJwt": fake_jwt(json!({"sub": "x"})), "refreshJwt": good}),
        ),
        ScriptedResponse::json(
            200,
            json!({"accessJwt": fake_jwt(json!({"exp": "soon"})), "refreshJwt": good}),
        ),
        ScriptedResponse::json(
            200,
            json!({"accessJwt": fake_jwt(json!({"exp": 1000})), "refreshJwt": good}),
        ),
        ScriptedResponse::json(200, json!({"accessJwt": good, "refreshJwt": 7})),
    ];
    for (i, answer) in answers.into_iter().enumerate() {
        fake.script_next(answer);
        let report = refresh(&env, &id).await;
        assert_eq!(report.outcome, Outcome::TransientError, "answer {i}");
        let message = report.message.clone().unwrap_or_default();
        assert!(
            message.contains("malformed") || message.contains("not a JSON object"),
            "answer {i}: {message}"
        );
        assert!(!message.contains(&good), "answer {i} echoed a token");
        assert_untouched(&env, &id, &report, &session.refresh_jwt).await;
    }
}
