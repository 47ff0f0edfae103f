//! Refresh now, Health check now, Disconnect and Resume: each needs the
//! session's CSRF token, does what the API or the gate does, shows its
//! result, and is written to the outbox with the operator key's id.

use std::sync::Arc;
use std::time::Duration;

use reqwest::StatusCode;
use tokenwarden::domain::{Outcome, Provider};
use tokenwarden::gate::{self, ProviderGates};
use tokenwarden::store::events;

use crate::common::rotating;
use crate::support::{ALICE_KEY, BOB_KEY, Console};

async fn attempts(console: &Console) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM refresh_attempts")
        .fetch_one(console.env.pool())
        .await
        .unwrap()
}

/// The operator actions on an account: (reason, operator key id).
async fn operator_actions(console: &Console, id: &str) -> Vec<(String, String)> {
    events::for_account(console.env.pool(), id)
        .await
        .unwrap()
        .into_iter()
        .filter(|e| e.kind == "operator_action")
        .map(|e| (e.reason, e.operator_key_id.unwrap_or_default()))
        .collect()
}

#[tokio::test]
async fn actions_refuse_a_missing_or_foreign_csrf_token() {
    let console = Console::start().await;
    let (id, _) = console.env.connect(Provider::X, rotating()).await;
    let alice = console.sign_in(ALICE_KEY).await;
    let bob = console.sign_in(BOB_KEY).await;
    for path in ["refresh", "health-check", "disconnect"] {
        for csrf in ["", "forged", bob.csrf.as_str()] {
            let page = console
                .post(
                    Some(&alice),
                    &format!("/accounts/{id}/{path}"),
                    &[("csrf", csrf), ("confirm", "yes")],
                )
                .await;
            assert_eq!(page.status, StatusCode::FORBIDDEN, "{path} with {csrf:?}");
        }
    }
    let page = console
        .post(Some(&alice), "/platforms/x/resume", &[("csrf", "forged")])
        .await;
    assert_eq!(page.status, StatusCode::FORBIDDEN);
    assert_eq!(attempts(&console).await, 0);
    assert_eq!(console.env.row(&id).await.status.as_str(), "ACTIVE");
    assert!(operator_actions(&console, id.as_str()).await.is_empty());
}

#[tokio::test]
async fn refresh_now_fixes_a_failing_account_and_is_audited() {
    let console = Console::start().await;
    let (id, _) = console.env.connect(Provider::X, rotating()).await;
    console
        .env
        .update_account(
            &id,
            "consecutive_failures = 3, last_refresh_error = 'platform unavailable (HTTP 503)'",
        )
        .await;
    let session = console.sign_in(ALICE_KEY).await;
    let before = console
        .get(Some(&session), &format!("/accounts/{id}"))
        .await;
    assert!(
        before.body.contains("badge degraded")
            && before.body.contains("platform unavailable (HTTP 503)")
    );

    let pressed = console
        .post(Some(&session), &format!("/accounts/{id}/refresh"), &[])
        .await;
    assert_eq!(pressed.status, StatusCode::SEE_OTHER);
    let location = pressed.location().to_owned();
    assert!(
        location.starts_with(&format!("/console/accounts/{id}?action=refresh&attempt=")),
        "{location}"
    );
    let after = console
        .get(Some(&session), location.trim_start_matches("/console"))
        .await;
    assert!(
        after
            .body
            .contains("Refresh now: <span class=\"badge refreshed\">refreshed</span>"),
        "{}",
        after.body
    );
    assert!(after.body.contains("badge healthy"));
    assert_eq!(console.env.row(&id).await.consecutive_failures, 0);
    assert_eq!(
        operator_actions(&console, id.as_str()).await,
        [("refresh now: refreshed".to_owned(), "alice".to_owned())]
    );
    assert!(after.body.contains("operator action") && after.body.contains("<td>alice</td>"));

    // The API's rate limit holds for the console too: no second platform call.
    let calls = attempts(&console).await;
    let again = console
        .post(Some(&session), &format!("/accounts/{id}/refresh"), &[])
        .await;
    assert!(
        again.location().contains("action=refresh&wait="),
        "{}",
        again.location()
    );
    assert_eq!(attempts(&console).await, calls);
    let shown = console
        .get(
            Some(&session),
            again.location().trim_start_matches("/console"),
        )
        .await;
    assert!(shown.body.contains("force-refreshed moments ago"));
    assert_eq!(operator_actions(&console, id.as_str()).await.len(), 2);
}

#[tokio::test]
async fn health_check_now_runs_and_is_audited() {
    let console = Console::start().await;
    let (id, _) = console.env.connect(Provider::X, rotating()).await;
    let session = console.sign_in(BOB_KEY).await;
    let pressed = console
        .post(Some(&session), &format!("/accounts/{id}/health-check"), &[])
        .await;
    assert_eq!(pressed.status, StatusCode::SEE_OTHER);
    assert!(
        pressed.location().contains("action=health_check&attempt="),
        "{}",
        pressed.location()
    );
    let page = console
        .get(
            Some(&session),
            pressed.location().trim_start_matches("/console"),
        )
        .await;
    assert!(page.body.contains("Health check now: "), "{}", page.body);
    let actions = operator_actions(&console, id.as_str()).await;
    assert_eq!(actions.len(), 1);
    assert!(
        actions[0].0.starts_with("health check now: "),
        "{actions:?}"
    );
    assert_eq!(actions[0].1, "bob");
    let trigger: String =
        sqlx::query_scalar("SELECT trigger FROM refresh_attempts WHERE account_id = $1")
            .bind(id.as_str())
            .fetch_one(console.env.pool())
            .await
            .unwrap();
    assert_eq!(trigger, "health_check");
}

#[tokio::test]
async fn disconnect_asks_first_then_disconnects_and_is_audited() {
    let console = Console::start().await;
    let (id, _) = console.env.connect(Provider::X, rotating()).await;
    let session = console.sign_in(ALICE_KEY).await;
    let asked = console
        .post(Some(&session), &format!("/accounts/{id}/disconnect"), &[])
        .await;
    assert_eq!(asked.status, StatusCode::OK);
    assert!(
        asked.body.contains("Yes, disconnect")
            && asked.body.contains("name=\"confirm\" value=\"yes\"")
    );
    assert_eq!(console.env.row(&id).await.status.as_str(), "ACTIVE");

    let done = console
        .post(
            Some(&session),
            &format!("/accounts/{id}/disconnect"),
            &[("confirm", "yes")],
        )
        .await;
    assert_eq!(done.status, StatusCode::SEE_OTHER);
    let row = console.env.row(&id).await;
    assert_eq!(row.status.as_str(), "DISCONNECTED");
    assert!(row.access_token_ciphertext.is_none());
    assert_eq!(
        operator_actions(&console, id.as_str()).await,
        [(
            "disconnect: the platform has no revocation".to_owned(),
            "alice".to_owned()
        )]
    );
    let page = console
        .get(
            Some(&session),
            done.location().trim_start_matches("/console"),
        )
        .await;
    assert!(page.body.contains("Disconnected.") && !page.body.contains("Refresh now"));
    let again = console
        .post(
            Some(&session),
            &format!("/accounts/{id}/disconnect"),
            &[("confirm", "yes")],
        )
        .await;
    assert_eq!(again.status, StatusCode::CONFLICT);
}

#[tokio::test]
async fn a_paused_platform_is_shown_with_its_reason_and_resumed_by_an_operator() {
    let console = Console::start().await;
    let gates = Arc::new(ProviderGates::from_settings(&console.env.settings));
    let mut seen = None;
    gate::share_once(&gates, console.env.pool(), "worker-1", &mut seen)
        .await
        .unwrap();
    let session = console.sign_in(ALICE_KEY).await;
    let page = console.get(Some(&session), "/platforms/x").await;
    assert!(page.body.contains("badge closed"), "{}", page.body);
    assert!(!page.body.contains("Resume X"));

    gates.record(
        Provider::X,
        Outcome::RateLimited,
        Some(Duration::from_secs(600)),
    );
    gate::share_once(&gates, console.env.pool(), "worker-1", &mut seen)
        .await
        .unwrap();
    let page = console.get(Some(&session), "/platforms/x").await;
    assert!(
        page.body.contains("badge paused") && page.body.contains("rate limit"),
        "{}",
        page.body
    );
    // Policy and limits as configured.
    for shown in [
        "Refresh window",
        "Margin",
        "Jitter",
        "Concurrency",
        "Rate",
        "calls at once per worker",
    ] {
        assert!(page.body.contains(shown), "{shown}");
    }
    let overview = console.get(Some(&session), "/").await;
    assert!(overview.body.contains("Paused platforms: "));

    let resumed = console
        .post(Some(&session), "/platforms/x/resume", &[])
        .await;
    assert_eq!(resumed.status, StatusCode::SEE_OTHER);
    let by: Vec<(String, String)> =
        sqlx::query_as("SELECT provider, operator_key_id FROM provider_resumes")
            .fetch_all(console.env.pool())
            .await
            .unwrap();
    assert_eq!(by, [("X".to_owned(), "alice".to_owned())]);
    assert!(
        gates.is_paused(Provider::X),
        "applied by the worker, not the console"
    );
    gate::share_once(&gates, console.env.pool(), "worker-1", &mut seen)
        .await
        .unwrap();
    assert!(!gates.is_paused(Provider::X));
    let page = console.get(Some(&session), "/platforms/x?resumed=1").await;
    assert!(
        page.body.contains("badge closed") && page.body.contains("by <strong>alice</strong>"),
        "{}",
        page.body
    );
    assert_eq!(
        console
            .get(Some(&session), "/platforms/myspace")
            .await
            .status,
        StatusCode::NOT_FOUND
    );
}

/// A worker that starts after a resume request does not apply it to its
/// fresh breakers.
#[tokio::test]
async fn old_resume_requests_do_not_touch_a_new_worker() {
    let console = Console::start().await;
    tokenwarden::store::gate_states::request_resume(console.env.pool(), "X", "alice")
        .await
        .unwrap();
    let gates = ProviderGates::from_settings(&console.env.settings);
    gates.record(
        Provider::X,
        Outcome::RateLimited,
        Some(Duration::from_secs(600)),
    );
    let mut seen = None;
    gate::share_once(&gates, console.env.pool(), "worker-2", &mut seen)
        .await
        .unwrap();
    gate::share_once(&gates, console.env.pool(), "worker-2", &mut seen)
        .await
        .unwrap();
    assert!(gates.is_paused(Provider::X));
}
