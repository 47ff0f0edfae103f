//! Hosts: each account refreshes on its own PDS, and private, loopback or
//! plain-http PDS and authorization-server hosts are refused before a
//! connection is made.

use serde_json::json;
use tokenwarden::domain::{AccountStatus, Outcome};
use tokenwarden::providers::DpopKey;
use tokenwarden_fakes::{OAuthSessionSpec, SessionSpec};

use crate::support::{app_password, assert_untouched, bsky_env, refresh, register, start};

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
