//! atproto OAuth sessions: the DPoP nonce challenge and rotation, replay,
//! the rate-limit reset, the authorization server's metadata, the client id,
//! and the fake's own proof checks.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::Utc;
use serde_json::{Value, json};
use tokenwarden::domain::{AccountStatus, Outcome, Provider};
use tokenwarden::providers::DpopKey;
use tokenwarden_fakes::{FakeBluesky, OAuthSessionSpec, ScriptedResponse};

use crate::common::TestEnv;
use crate::support::{
    CLIENT_METADATA, assert_status, assert_untouched, oauth, oauth_setup, refresh, seconds_until,
    start,
};

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

/// The outage (503) is a row of `docs/platform-answers.md`; a row cannot
/// send a `ratelimit-reset`.
#[tokio::test]
async fn oauth_rate_limit_waits_for_the_epoch_reset() {
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
