//! Bluesky through the engine against the fake PDS and authorization server:
//! one test per error-table row of both session kinds, rotation, per-account
//! hosts, the host guard, DPoP nonces and proofs, and the DPoP key at rest.
//! Canary tokens and keys: `tests/bluesky_secrets.rs`.

mod common;

use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, TimeDelta, Utc};
use common::TestEnv;
use secrecy::ExposeSecret;
use serde_json::{Value, json};
use tokenwarden::config::Flow;
use tokenwarden::crypto::{Field, Keyring};
use tokenwarden::domain::RefreshReport;
use tokenwarden::domain::{AccountId, AccountStatus, Outcome, Provider, Trigger};
use tokenwarden::policy::RefreshPolicy;
use tokenwarden::providers::DpopKey;
use tokenwarden::store::{accounts, keys};
use tokenwarden_fakes::{
    BlueskyAccountState, FakeBluesky, IssuedOAuth, IssuedSession, IssuedTokens, OAuthSessionSpec,
    ScriptedResponse, SessionSpec,
};

const CLIENT_METADATA: &str = "https://app.example/oauth-client-metadata.json";

/// An environment whose Bluesky flow trusts the given fakes' origins (or,
/// with none, only public https hosts).
async fn bsky_env(allowed: &[&FakeBluesky]) -> TestEnv {
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

fn ring(keys: &[(&str, u8)]) -> Keyring {
    let spec: Vec<String> = keys
        .iter()
        .map(|(id, byte)| {
            format!(
                "{id}:{}",
                base64::engine::general_purpose::STANDARD.encode([*byte; 32])
            )
        })
        .collect();
    Keyring::parse(&secrecy::SecretString::from(spec.join(","))).unwrap()
}

async fn start() -> FakeBluesky {
    FakeBluesky::start(CLIENT_METADATA).await.unwrap()
}

async fn register(
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

async fn app_password(env: &TestEnv, session: &IssuedSession, pds_host: &str) -> AccountId {
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

async fn oauth(
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
async fn session_setup(spec: SessionSpec) -> (FakeBluesky, TestEnv, IssuedSession, AccountId) {
    let fake = start().await;
    let env = bsky_env(&[&fake]).await;
    let session = fake.issue_session(spec);
    let id = app_password(&env, &session, &fake.origin()).await;
    (fake, env, session, id)
}

async fn oauth_setup() -> (FakeBluesky, TestEnv, DpopKey, IssuedOAuth, AccountId) {
    let fake = start().await;
    let env = bsky_env(&[&fake]).await;
    let key = DpopKey::generate();
    let issued = fake.issue_oauth(OAuthSessionSpec::default(), &key.public_jwk());
    let id = oauth(&env, &fake, &issued, &key).await;
    (fake, env, key, issued, id)
}

/// A health check, made due first (a check that is not due is skipped).
async fn check(env: &TestEnv, id: &AccountId) -> RefreshReport {
    sqlx::query(
        "UPDATE social_accounts SET next_attempt_at = now() - interval '1 second' WHERE id = $1",
    )
    .bind(id.as_str())
    .execute(env.pool())
    .await
    .unwrap();
    env.engine.refresh(id, Trigger::HealthCheck).await.unwrap()
}

async fn refresh(env: &TestEnv, id: &AccountId) -> RefreshReport {
    env.engine.refresh(id, Trigger::Forced).await.unwrap()
}

fn seconds_until(at: Option<DateTime<Utc>>) -> i64 {
    (at.expect("a time is set") - Utc::now()).num_seconds()
}

/// A failure that must leave everything as it was: status, tokens, version.
async fn assert_untouched(env: &TestEnv, id: &AccountId, report: &RefreshReport, refresh: &str) {
    assert_eq!(report.status, AccountStatus::Active, "{report:?}");
    let row = env.row(id).await;
    assert_eq!(row.status, AccountStatus::Active);
    assert_eq!(row.credentials_version, 1, "credentials were rewritten");
    assert_eq!(env.stored_refresh_token(id).await.as_deref(), Some(refresh));
    assert_eq!(env.events(id).await.len(), 1, "no status event");
}

async fn assert_status(
    env: &TestEnv,
    id: &AccountId,
    report: &RefreshReport,
    status: AccountStatus,
) {
    assert_eq!(report.status, status, "{report:?}");
    assert_eq!(env.row(id).await.status, status);
}

// ---- App-password sessions: refreshSession -------------------------------

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

#[tokio::test]
async fn expired_token_expired_is_token_expired() {
    let (_fake, env, _, id) = session_setup(SessionSpec {
        refresh_lifetime: 0,
        ..SessionSpec::default()
    })
    .await;
    let report = refresh(&env, &id).await;
    assert_eq!(report.outcome, Outcome::RejectedExpired);
    assert_eq!(report.http_status, Some(400));
    assert_eq!(report.provider_error_code.as_deref(), Some("ExpiredToken"));
    assert!(
        report
            .message
            .as_deref()
            .unwrap()
            .contains("Token has expired")
    );
    assert_status(&env, &id, &report, AccountStatus::TokenExpired).await;
}

/// Issue 10, case 3: the PDS says "Token has been revoked" for any refresh
/// row it no longer holds (spent past its grace, app password deleted,
/// password changed): the session is gone, TOKEN_EXPIRED, text kept.
#[tokio::test]
async fn expired_token_revoked_is_token_expired_with_the_text_kept() {
    let (fake, env, session, id) = session_setup(SessionSpec::default()).await;
    fake.revoke_session(&session.refresh_jwt);
    let report = refresh(&env, &id).await;
    assert_eq!(report.outcome, Outcome::RejectedExpired);
    assert_eq!(report.provider_error_code.as_deref(), Some("ExpiredToken"));
    assert!(
        report
            .message
            .as_deref()
            .unwrap()
            .contains("Token has been revoked")
    );
    assert_status(&env, &id, &report, AccountStatus::TokenExpired).await;
    assert!(
        env.row(&id)
            .await
            .status_reason
            .unwrap()
            .contains("Token has been revoked")
    );
}

#[tokio::test]
async fn invalid_token_is_token_expired() {
    let fake = start().await;
    let env = bsky_env(&[&fake]).await;
    let id = register(
        &env,
        "did:plc:unknown",
        "a.b.c",
        "never-issued",
        json!({"pds_host": fake.origin()}),
        None,
    )
    .await;
    let report = refresh(&env, &id).await;
    assert_eq!(report.outcome, Outcome::RejectedExpired);
    assert_eq!(report.provider_error_code.as_deref(), Some("InvalidToken"));
    assert_status(&env, &id, &report, AccountStatus::TokenExpired).await;
}

#[tokio::test]
async fn account_takedown_is_revoked() {
    let (fake, env, session, id) = session_setup(SessionSpec::default()).await;
    fake.set_account_state(&session.did, BlueskyAccountState::TakenDown);
    let report = refresh(&env, &id).await;
    assert_eq!(report.outcome, Outcome::RejectedRevoked);
    assert_eq!(report.http_status, Some(401));
    assert_eq!(
        report.provider_error_code.as_deref(),
        Some("AccountTakedown")
    );
    assert_status(&env, &id, &report, AccountStatus::Revoked).await;
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

#[tokio::test]
async fn upstream_failure_and_other_5xx_are_transient() {
    let (fake, env, session, id) = session_setup(SessionSpec::default()).await;
    fake.script_next(ScriptedResponse::json(
        502,
        json!({"error": "UpstreamFailure", "message": "Upstream Failure"}),
    ));
    let report = refresh(&env, &id).await;
    assert_eq!(report.outcome, Outcome::TransientError);
    assert_eq!(report.http_status, Some(502));
    assert_eq!(
        report.provider_error_code.as_deref(),
        Some("UpstreamFailure")
    );
    assert_untouched(&env, &id, &report, &session.refresh_jwt).await;

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

#[tokio::test]
async fn redirects_and_unknown_errors_are_transient() {
    let (fake, env, session, id) = session_setup(SessionSpec::default()).await;
    for answer in [
        ScriptedResponse::raw(302, "text/html", "")
            .header("location", "https://elsewhere.example/"),
        ScriptedResponse::json(
            400,
            json!({"error": "InvalidRequest", "message": "Input must be valid"}),
        ),
        ScriptedResponse::json(401, json!({"error": "AuthMissing"})),
    ] {
        let status = answer.status;
        fake.script_next(answer);
        let report = refresh(&env, &id).await;
        assert_eq!(report.outcome, Outcome::TransientError, "{status}");
        assert_eq!(report.http_status, Some(status));
        assert_untouched(&env, &id, &report, &session.refresh_jwt).await;
    }
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

#[tokio::test]
async fn each_account_refreshes_on_its_own_pds() {
    let (a, b) = (start().await, start().await);
    let env = bsky_env(&[&a, &b]).await;
    let on_a = a.issue_session(SessionSpec::default());
    let on_b = b.issue_session(SessionSpec::default());
    let id_a = app_password(&env, &on_a, &a.origin()).await;
    let id_b = app_password(&env, &on_b, &b.origin()).await;
    for id in [&id_a, &id_b] {
        assert_eq!(refresh(&env, id).await.outcome, Outcome::Refreshed);
    }
    assert_eq!((a.pds_calls(), b.pds_calls()), (1, 1));
    assert!(a.is_live_session(&env.stored_refresh_token(&id_a).await.unwrap()));
    assert!(b.is_live_session(&env.stored_refresh_token(&id_b).await.unwrap()));
}

#[tokio::test]
async fn private_and_plain_http_pds_hosts_are_refused_before_connecting() {
    let fake = start().await;
    let env = bsky_env(&[]).await;
    let session = fake.issue_session(SessionSpec::default());
    let port = fake.origin().rsplit(':').next().unwrap().to_owned();
    for (i, host) in [
        fake.origin(),
        format!("127.0.0.1:{port}"),
        format!("https://localhost:{port}"),
        format!("[::1]:{port}"),
        format!("[::ffff:127.0.0.1]:{port}"),
        "10.0.0.8".to_owned(),
        "169.254.169.254".to_owned(),
    ]
    .into_iter()
    .enumerate()
    {
        // One account per host: re-registering one account would bump its
        // credentials version.
        let id = register(
            &env,
            &format!("host-{i}"),
            &session.access_jwt,
            &session.refresh_jwt,
            json!({"pds_host": host}),
            None,
        )
        .await;
        let report = refresh(&env, &id).await;
        assert_eq!(report.outcome, Outcome::TransientError, "{host}");
        // Names are refused by the resolver, literal addresses before it.
        let refused = report.provider_error_code.as_deref() == Some("host_refused")
            || report
                .message
                .as_deref()
                .is_some_and(|m| m.contains("not resolve to a public address"));
        assert!(refused, "{host}: {report:?}");
        assert_untouched(&env, &id, &report, &session.refresh_jwt).await;
    }
    let id = register(&env, "no-host", "a", "r", json!({}), None).await;
    let report = refresh(&env, &id).await;
    assert_eq!(report.provider_error_code.as_deref(), Some("pds_unknown"));
    assert_untouched(&env, &id, &report, "r").await;
    assert_eq!(fake.pds_calls(), 0, "no request reached the PDS");
}

// ---- App-password sessions: getSession health check -----------------------

#[tokio::test]
async fn get_session_health_check_rows() {
    let (fake, env, session, id) = session_setup(SessionSpec::default()).await;
    let report = check(&env, &id).await;
    assert_eq!(report.outcome, Outcome::Healthy, "{:?}", report.message);

    // The token works: healthy, with the account flagged inactive.
    fake.set_account_state(&session.did, BlueskyAccountState::Deactivated);
    let report = check(&env, &id).await;
    assert_eq!(report.outcome, Outcome::Healthy, "{:?}", report.message);
    let row = env.row(&id).await;
    assert!(
        row.account_inactive_reason
            .as_deref()
            .unwrap()
            .contains("deactivated")
    );
    assert!(!tokenwarden::api::views::health(&row, Utc::now()).can_post);

    fake.set_account_state(&session.did, BlueskyAccountState::TakenDown);
    let report = check(&env, &id).await;
    assert_eq!(report.outcome, Outcome::RejectedRevoked);
    assert_status(&env, &id, &report, AccountStatus::Revoked).await;
    assert_eq!(fake.pds_calls(), 3);
}

#[tokio::test]
async fn an_expired_access_jwt_does_not_condemn_the_session() {
    let (_fake, env, session, id) = session_setup(SessionSpec {
        access_lifetime: -60,
        ..SessionSpec::default()
    })
    .await;
    let report = check(&env, &id).await;
    assert_eq!(report.outcome, Outcome::TransientError);
    assert_eq!(report.provider_error_code.as_deref(), Some("ExpiredToken"));
    assert_untouched(&env, &id, &report, &session.refresh_jwt).await;
}

// ---- atproto OAuth sessions (DPoP) ----------------------------------------

#[tokio::test]
async fn oauth_refresh_answers_the_nonce_challenge_and_rotates() {
    let (fake, env, _key, issued, id) = oauth_setup().await;
    let report = refresh(&env, &id).await;
    assert_eq!(report.outcome, Outcome::Refreshed, "{:?}", report.message);
    assert_eq!(fake.nonce_challenges(), 1);
    assert_eq!(fake.token_calls(), 2, "one challenge, one retry");
    assert!(
        fake.proof_rejections().is_empty(),
        "{:?}",
        fake.proof_rejections()
    );
    let first = env.stored_refresh_token(&id).await.unwrap();
    assert!(fake.is_live_oauth(&first) && !fake.is_live_oauth(&issued.refresh_token));
    assert!((3590..=3600).contains(&seconds_until(env.row(&id).await.token_expires_at)));

    // The nonce is remembered: no second challenge.
    assert_eq!(refresh(&env, &id).await.outcome, Outcome::Refreshed);
    assert_eq!((fake.nonce_challenges(), fake.token_calls()), (1, 3));
    // A rotated nonce costs one retry.
    fake.rotate_nonce();
    assert_eq!(refresh(&env, &id).await.outcome, Outcome::Refreshed);
    assert_eq!((fake.nonce_challenges(), fake.token_calls()), (2, 5));
    assert_eq!(fake.reuse_detected(), 0);
    assert!(fake.is_live_oauth(&env.stored_refresh_token(&id).await.unwrap()));
}

#[tokio::test]
async fn oauth_nonce_demanded_twice_is_transient_after_one_retry() {
    let (fake, env, _key, _issued, id) = oauth_setup().await;
    assert_eq!(refresh(&env, &id).await.outcome, Outcome::Refreshed);
    let stored = env.stored_refresh_token(&id).await.unwrap();
    let version = env.row(&id).await.credentials_version;
    let calls = fake.token_calls();
    for _ in 0..2 {
        fake.script_next(
            ScriptedResponse::json(401, json!({"error": "use_dpop_nonce"}))
                .header("dpop-nonce", format!("n-{:x}", rand::random::<u64>())),
        );
    }
    let report = refresh(&env, &id).await;
    assert_eq!(report.outcome, Outcome::TransientError);
    assert_eq!(
        report.provider_error_code.as_deref(),
        Some("use_dpop_nonce")
    );
    assert_eq!(fake.token_calls(), calls + 2, "exactly one retry");
    assert_eq!(env.row(&id).await.status, AccountStatus::Active);
    assert_eq!(env.row(&id).await.credentials_version, version);
    assert_eq!(env.stored_refresh_token(&id).await.unwrap(), stored);
}

#[tokio::test]
async fn oauth_replayed_refresh_token_is_token_expired_and_kills_the_session() {
    let (fake, env, key, issued, id) = oauth_setup().await;
    assert_eq!(refresh(&env, &id).await.outcome, Outcome::Refreshed);
    let current = env.stored_refresh_token(&id).await.unwrap();
    let id = oauth(&env, &fake, &issued, &key).await;
    let report = refresh(&env, &id).await;
    assert_eq!(report.outcome, Outcome::RejectedExpired);
    assert_eq!(report.provider_error_code.as_deref(), Some("invalid_grant"));
    assert!(report.message.as_deref().unwrap().contains("replayed"));
    assert_status(&env, &id, &report, AccountStatus::TokenExpired).await;
    assert_eq!(fake.reuse_detected(), 1);
    assert!(!fake.is_live_oauth(&current));
}

/// `invalid_grant` "Token has been revoked": RFC 6749's word for any dead
/// grant, so TOKEN_EXPIRED with the text kept (rule 2a).
#[tokio::test]
async fn oauth_revoked_session_is_token_expired() {
    let (fake, env, _key, issued, id) = oauth_setup().await;
    fake.revoke_oauth(&issued.refresh_token);
    let report = refresh(&env, &id).await;
    assert_eq!(report.outcome, Outcome::RejectedExpired);
    assert!(report.message.as_deref().unwrap().contains("revoked"));
    assert_status(&env, &id, &report, AccountStatus::TokenExpired).await;
}

#[tokio::test]
async fn oauth_rate_limit_and_outage_are_transient() {
    let (fake, env, _key, _issued, id) = oauth_setup().await;
    assert_eq!(refresh(&env, &id).await.outcome, Outcome::Refreshed);
    let stored = env.stored_refresh_token(&id).await.unwrap();
    let reset = Utc::now().timestamp() + 120;
    fake.script_next(
        ScriptedResponse::json(429, json!({"error": "rate_limited"}))
            .header("ratelimit-reset", reset.to_string()),
    );
    let report = refresh(&env, &id).await;
    assert_eq!(report.outcome, Outcome::RateLimited);
    assert!((115..=122).contains(&seconds_until(report.retry_at)));
    fake.script_next(ScriptedResponse::raw(503, "text/plain", "down"));
    let report = refresh(&env, &id).await;
    assert_eq!(report.outcome, Outcome::TransientError);
    assert_eq!(env.row(&id).await.status, AccountStatus::Active);
    assert_eq!(env.stored_refresh_token(&id).await.unwrap(), stored);
}

#[tokio::test]
async fn oauth_client_refused_by_the_server_is_a_config_error() {
    let (fake, env, _key, _issued, id) = oauth_setup().await;
    assert_eq!(refresh(&env, &id).await.outcome, Outcome::Refreshed);
    let stored = env.stored_refresh_token(&id).await.unwrap();
    fake.script_next(ScriptedResponse::json(
        400,
        json!({"error": "invalid_client", "error_description": "Unknown client"}),
    ));
    let report = refresh(&env, &id).await;
    assert_eq!(report.outcome, Outcome::ConfigError);
    assert_eq!(env.row(&id).await.status, AccountStatus::Active);
    assert_eq!(env.stored_refresh_token(&id).await.unwrap(), stored);
}

#[tokio::test]
async fn oauth_metadata_naming_another_issuer_is_refused() {
    let (fake, env, _key, issued, id) = oauth_setup().await;
    fake.script_next(ScriptedResponse::json(
        200,
        json!({"issuer": "https://evil.example", "token_endpoint": "https://evil.example/token"}),
    ));
    let report = refresh(&env, &id).await;
    assert_eq!(report.outcome, Outcome::TransientError);
    assert_eq!(
        report.provider_error_code.as_deref(),
        Some("metadata_unusable")
    );
    assert_untouched(&env, &id, &report, &issued.refresh_token).await;
    assert_eq!(fake.token_calls(), 0);
}

#[tokio::test]
async fn oauth_without_a_client_id_is_the_operators_problem() {
    let fake = start().await;
    let origin: url::Url = fake.origin().parse().unwrap();
    let env = TestEnv::with(move |s| {
        let section = s.providers.get_mut(Provider::Bluesky);
        section.allowed_origins = vec![origin];
    })
    .await;
    let key = DpopKey::generate();
    let issued = fake.issue_oauth(OAuthSessionSpec::default(), &key.public_jwk());
    let id = oauth(&env, &fake, &issued, &key).await;
    let report = refresh(&env, &id).await;
    assert_eq!(report.outcome, Outcome::ConfigError);
    assert!(report.message.as_deref().unwrap().contains("client_id"));
    assert_untouched(&env, &id, &report, &issued.refresh_token).await;
    assert_eq!(fake.token_calls(), 0);
}

#[tokio::test]
async fn oauth_private_authorization_servers_are_refused_before_connecting() {
    let fake = start().await;
    let env = bsky_env(&[]).await;
    let key = DpopKey::generate();
    let issued = fake.issue_oauth(OAuthSessionSpec::default(), &key.public_jwk());
    let port = fake.origin().rsplit(':').next().unwrap().to_owned();
    for host in [
        fake.origin(),
        format!("127.0.0.1:{port}"),
        "192.168.0.10".into(),
    ] {
        let id = register(
            &env,
            &issued.did,
            &issued.access_token,
            &issued.refresh_token,
            json!({"auth_server": host}),
            Some(key.clone()),
        )
        .await;
        let report = refresh(&env, &id).await;
        assert_eq!(
            report.provider_error_code.as_deref(),
            Some("host_refused"),
            "{host}"
        );
        assert_eq!(env.row(&id).await.status, AccountStatus::Active);
    }
    assert_eq!(fake.token_calls(), 0);
}

/// Posts to the fake's token endpoint with a hand-made DPoP header.
async fn post_token(
    fake: &FakeBluesky,
    proof: Option<String>,
    refresh_token: &str,
) -> (u16, Value) {
    let mut request = reqwest::Client::new().post(fake.token_endpoint()).form(&[
        ("grant_type", "refresh_token"),
        ("refresh_token", refresh_token),
        ("client_id", CLIENT_METADATA),
    ]);
    if let Some(proof) = proof {
        request = request.header("DPoP", proof);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

/// The fake checks what a real server checks; otherwise the flow's tests
/// would prove nothing about its proofs.
#[tokio::test]
async fn the_fake_authorization_server_verifies_dpop_proofs() {
    let fake = start().await;
    let key = DpopKey::generate();
    let issued = fake.issue_oauth(OAuthSessionSpec::default(), &key.public_jwk());
    let url = fake.token_endpoint();
    let now = Utc::now().timestamp();
    let rt = issued.refresh_token.as_str();

    let (status, body) = post_token(&fake, None, rt).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_dpop_proof"))
    );

    // Another key's JWK in the header: the signature no longer verifies.
    let proof = key.proof("POST", &url, None, now);
    let mut parts: Vec<String> = proof.split('.').map(str::to_owned).collect();
    let mut header: Value =
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(&parts[0]).unwrap()).unwrap();
    header["jwk"] = DpopKey::generate().public_jwk();
    parts[0] = URL_SAFE_NO_PAD.encode(header.to_string());
    let (status, _) = post_token(&fake, Some(parts.join(".")), rt).await;
    assert_eq!(status, 400);
    let other_url = url::Url::parse(&format!("{}/elsewhere", fake.origin())).unwrap();
    for bad in [
        key.proof("GET", &url, None, now),
        key.proof("POST", &other_url, None, now),
        key.proof("POST", &url, None, now - 600),
    ] {
        let (status, body) = post_token(&fake, Some(bad), rt).await;
        assert_eq!(
            (status, body["error"].as_str()),
            (400, Some("invalid_dpop_proof"))
        );
    }
    // A good proof without the nonce is challenged; with it, accepted once.
    let (status, body) = post_token(&fake, Some(key.proof("POST", &url, None, now)), rt).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("use_dpop_nonce"))
    );
    let nonce = reqwest::Client::new()
        .post(fake.token_endpoint())
        .header("DPoP", key.proof("POST", &url, None, now))
        .send()
        .await
        .unwrap()
        .headers()
        .get("dpop-nonce")
        .unwrap()
        .to_str()
        .unwrap()
        .to_owned();
    let proof = key.proof("POST", &url, Some(&nonce), now);
    let (status, body) = post_token(&fake, Some(proof.clone()), rt).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["token_type"], "DPoP");
    let (status, body) =
        post_token(&fake, Some(proof), body["refresh_token"].as_str().unwrap()).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_dpop_proof")),
        "jti reuse"
    );
    let rejections = fake.proof_rejections();
    for why in [
        "no DPoP proof",
        "does not verify",
        "htm",
        "htu",
        "iat",
        "jti",
    ] {
        assert!(
            rejections.iter().any(|r| r.contains(why)),
            "{why}: {rejections:?}"
        );
    }
}

#[tokio::test]
async fn dpop_keys_are_generated_when_absent_kept_when_supplied_and_follow_key_rotation() {
    let fake = start().await;
    let env = bsky_env(&[&fake]).await;
    let decrypt = |row: &accounts::AccountRow, ring: &Keyring| {
        let jwk = ring
            .decrypt(
                &row.id,
                Field::DpopKey,
                row.credentials_key_id.as_deref().unwrap(),
                row.dpop_key_ciphertext
                    .as_deref()
                    .expect("a DPoP key is stored"),
            )
            .unwrap();
        DpopKey::from_jwk(jwk.expose_secret()).unwrap()
    };
    let meta = json!({"auth_server": fake.origin()});
    let generated = register(&env, "gen", "a", "r", meta.clone(), None).await;
    decrypt(&env.row(&generated).await, &env.keyring);
    let app_pw = register(
        &env,
        "pw",
        "a",
        "r",
        json!({"pds_host": fake.origin()}),
        None,
    )
    .await;
    assert!(env.row(&app_pw).await.dpop_key_ciphertext.is_none());

    let key = DpopKey::generate();
    let issued = fake.issue_oauth(OAuthSessionSpec::default(), &key.public_jwk());
    let id = oauth(&env, &fake, &issued, &key).await;
    assert_eq!(
        decrypt(&env.row(&id).await, &env.keyring).public_jwk(),
        key.public_jwk()
    );

    // Under an old key, rotated to a new primary: the DPoP key moves with
    // the tokens, and an engine holding only the new key still signs with it.
    let old = ring(&[("old", 1)]);
    let issued = fake.issue_oauth(OAuthSessionSpec::default(), &key.public_jwk());
    let tokens = IssuedTokens {
        access_token: issued.access_token.clone(),
        refresh_token: issued.refresh_token.clone(),
        expires_in: 0,
    };
    let mut new = common::new_account(Provider::Bluesky, "rotated", &tokens, Utc::now(), None);
    new.meta = json!({"auth_server": fake.origin()});
    new.dpop_key = Some(key.clone());
    let policy = RefreshPolicy::from(env.settings.providers.get(Provider::Bluesky));
    let id = accounts::register(env.pool(), &old, &policy, &new)
        .await
        .unwrap()
        .account
        .id;
    let both = ring(&[("new", 2), ("old", 1)]);
    let report = keys::rotate(env.pool(), &both, 100).await.unwrap();
    // The other accounts here are under the test keyring's k1, not given.
    assert!(
        !report
            .failed
            .iter()
            .any(|(failed, _)| failed == id.as_str()),
        "{:?}",
        report.failed
    );
    let only_new = ring(&[("new", 2)]);
    let row = env.row(&id).await;
    assert_eq!(row.credentials_key_id.as_deref(), Some("new"));
    assert_eq!(decrypt(&row, &only_new).public_jwk(), key.public_jwk());
    let engine = common::engine_for(env.pool(), &env.settings, Arc::new(only_new), "engine-new");
    let report = engine.refresh(&id, Trigger::Forced).await.unwrap();
    assert_eq!(report.outcome, Outcome::Refreshed, "{:?}", report.message);
}
