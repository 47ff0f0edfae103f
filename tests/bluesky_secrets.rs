//! Canary Bluesky tokens and DPoP private keys never show up in logs (at
//! TRACE, ours and every library's), errors, reports, rows or Debug output.
//! A test binary of its own: it installs the global log subscriber.

mod common;

use common::capture::Capture;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{TimeDelta, Utc};
use common::TestEnv;
use secrecy::ExposeSecret;
use serde_json::json;
use tokenwarden::config::Flow;
use tokenwarden::domain::{Outcome, Provider, Trigger};
use tokenwarden::policy::RefreshPolicy;
use tokenwarden::providers::DpopKey;
use tokenwarden::store::accounts;
use tokenwarden_fakes::{FakeBluesky, IssuedTokens, ScriptedResponse};

const CLIENT_METADATA: &str = "https://app.example/oauth-client-metadata.json";

/// A JWT with a readable `exp` whose signature part is the canary, so any
/// copy of the token carries the canary with it.
fn canary_jwt(canary: &str) -> String {
    let claims = json!({"exp": Utc::now().timestamp() + 3600});
    format!(
        "eyJhbGciOiJIUzI1NiJ9.{}.{canary}",
        URL_SAFE_NO_PAD.encode(claims.to_string())
    )
}

/// Tokens and the DPoP private key never show in logs (everything at
/// TRACE), errors, reports, rows or Debug output.
#[tokio::test]
async fn canary_tokens_and_dpop_keys_never_leak() {
    const AT: &str = "canaryBskyAccess1c2d3e4f";
    const RT: &str = "canaryBskyRefresh5a6b7c8d";
    const NEW_AT: &str = "canaryBskyNewAccess9e0f1a";
    const NEW_RT: &str = "canaryBskyNewRefresh2b3c4d";
    const OAUTH_RT: &str = "canaryOauthRefresh5e6f7a8b";
    let capture = Capture::install_trace();

    let fake = FakeBluesky::start(CLIENT_METADATA).await.unwrap();
    let origin: url::Url = fake.origin().parse().unwrap();
    let env = TestEnv::with(move |s| {
        let section = s.providers.get_mut(Provider::Bluesky);
        section.flow = Flow::Bluesky;
        section.client_id = Some(CLIENT_METADATA.into());
        section.allowed_origins = vec![origin];
    })
    .await;
    let policy = RefreshPolicy::from(env.settings.providers.get(Provider::Bluesky));
    let mut seen: Vec<String> = Vec::new();

    let tokens = IssuedTokens {
        access_token: AT.into(),
        refresh_token: RT.into(),
        expires_in: 0,
    };
    let mut new = common::new_account(
        Provider::Bluesky,
        "canary",
        &tokens,
        Utc::now() - TimeDelta::hours(1),
        Some(Utc::now() + TimeDelta::seconds(60)),
    );
    new.meta = json!({"pds_host": fake.origin()});
    seen.push(format!("{new:?}"));
    let id = accounts::register(env.pool(), &env.keyring, &policy, &new)
        .await
        .unwrap()
        .account
        .id;
    fake.script_next(ScriptedResponse::json(
        502,
        json!({"error": "UpstreamFailure", "message": format!("upstream choked on {RT}")}),
    ));
    fake.script_next(ScriptedResponse::json(
        200,
        json!({"accessJwt": NEW_AT, "refreshJwt": canary_jwt(NEW_RT)}),
    ));
    fake.script_next(ScriptedResponse::json(
        200,
        json!({"accessJwt": canary_jwt(NEW_AT), "refreshJwt": canary_jwt(NEW_RT)}),
    ));
    fake.script_next(ScriptedResponse::json(
        400,
        json!({"error": "InvalidToken", "message": format!("bad token {}", canary_jwt(NEW_RT))}),
    ));
    let mut outcomes = Vec::new();
    for _ in 0..4 {
        let report = env.engine.refresh(&id, Trigger::Forced).await.unwrap();
        outcomes.push(report.outcome);
        seen.push(format!("{report:?}"));
        seen.push(serde_json::to_string(&report).unwrap());
    }
    assert_eq!(
        outcomes,
        [
            Outcome::TransientError,
            Outcome::TransientError,
            Outcome::Refreshed,
            Outcome::RejectedExpired
        ]
    );

    // OAuth: a supplied key, an unknown token, then an error echoing it.
    let key = DpopKey::generate();
    let private_jwk = key.to_private_jwk().expose_secret().to_owned();
    let scalar = key.private_scalar_b64();
    let spec: tokenwarden::registration::AccountSpec = serde_json::from_value(json!({
        "workspace_id": "ws", "provider": "BLUESKY", "external_id": "did:plc:canary",
        "meta": {"auth_server": fake.origin()},
        "credentials": {"access_token": AT, "refresh_token": OAUTH_RT, "dpop_private_jwk": private_jwk, "expires_in": 3600},
    }))
    .unwrap();
    seen.push(format!("{spec:?}"));
    let new = spec.into_new_account(Utc::now()).unwrap();
    seen.push(format!("{new:?}"));
    let oauth_id = accounts::register(env.pool(), &env.keyring, &policy, &new)
        .await
        .unwrap()
        .account
        .id;
    let report = env
        .engine
        .refresh(&oauth_id, Trigger::Forced)
        .await
        .unwrap();
    assert_eq!(report.outcome, Outcome::RejectedExpired, "{report:?}");
    seen.push(format!("{report:?}"));
    fake.script_next(ScriptedResponse::json(
        400,
        json!({"error": "invalid_grant", "error_description": format!("{OAUTH_RT} is unknown (key {scalar})")}),
    ));
    let report = env
        .engine
        .refresh(&oauth_id, Trigger::Forced)
        .await
        .unwrap();
    assert_eq!(report.outcome, Outcome::RejectedExpired, "{report:?}");
    seen.push(format!("{report:?}"));

    for account in [&id, &oauth_id] {
        let row = env.row(account).await;
        seen.push(format!("{row:?}"));
        seen.push(row.last_refresh_error.clone().unwrap_or_default());
        for attempt in tokenwarden::store::attempts::for_account(env.pool(), account, 20)
            .await
            .unwrap()
        {
            seen.push(format!("{attempt:?}"));
        }
    }
    let logs = capture.text();
    assert!(
        logs.contains("refresh failed") && logs.contains("TRACE"),
        "the capture works"
    );
    seen.push(logs);
    for (i, text) in seen.iter().enumerate() {
        for canary in [
            AT,
            RT,
            NEW_AT,
            NEW_RT,
            OAUTH_RT,
            scalar.as_str(),
            private_jwk.as_str(),
        ] {
            assert!(!text.contains(canary), "value {i} leaks {canary}:\n{text}");
        }
    }
}
