//! Credentials at rest against real PostgreSQL: tampering, missing and
//! unknown keys, and online key rotation.

mod common;

use std::sync::Arc;

use base64::Engine as _;
use chrono::{TimeDelta, Utc};
use common::{TestEnv, engine_for, new_account, rotating};
use secrecy::SecretString;
use tokenwarden::crypto::Keyring;
use tokenwarden::domain::{AccountStatus, Outcome, Provider, Trigger};
use tokenwarden::engine::EngineError;
use tokenwarden::policy::RefreshPolicy;
use tokenwarden::store::{accounts, keys};

fn key_spec(entries: &[(&str, u8)]) -> SecretString {
    let spec: Vec<String> = entries
        .iter()
        .map(|(id, byte)| {
            format!(
                "{id}:{}",
                base64::engine::general_purpose::STANDARD.encode([*byte; 32])
            )
        })
        .collect();
    SecretString::from(spec.join(","))
}

#[tokio::test]
async fn a_flipped_ciphertext_bit_fails_that_account_only() {
    let env = TestEnv::new().await;
    let (victim, _) = env.connect(Provider::X, rotating()).await;
    let tokens = env.fake.issue(rotating());
    let mut other = new_account(
        Provider::X,
        "ext-2",
        &tokens,
        Utc::now() - TimeDelta::hours(1),
        Some(Utc::now()),
    );
    other.workspace_id = "ws_other".into();
    let policy = RefreshPolicy::from(env.settings.providers.get(Provider::X));
    let other = accounts::register(env.pool(), &env.keyring, &policy, &other)
        .await
        .unwrap()
        .account
        .id;

    sqlx::query(
        "UPDATE social_accounts
         SET refresh_token_ciphertext = set_byte(refresh_token_ciphertext, 20, get_byte(refresh_token_ciphertext, 20) # 1)
         WHERE id = $1",
    )
    .bind(victim.as_str())
    .execute(env.pool())
    .await
    .unwrap();

    let err = env
        .engine
        .refresh(&victim, Trigger::Forced)
        .await
        .unwrap_err();
    assert!(matches!(err, EngineError::Credentials { .. }));
    let message = err.to_string();
    assert!(
        message.contains("refresh token could not be decrypted"),
        "{message}"
    );
    let row = env.row(&victim).await;
    assert_eq!(
        row.status,
        AccountStatus::Active,
        "local corruption is not the user's doing"
    );
    assert!(
        row.last_refresh_error
            .unwrap()
            .contains("could not be decrypted")
    );
    assert!(row.lease_owner.is_none(), "lease released");
    assert_eq!(env.fake.call_count(), 0);

    let report = env.engine.refresh(&other, Trigger::Forced).await.unwrap();
    assert_eq!(report.outcome, Outcome::Refreshed);
}

#[tokio::test]
async fn ciphertext_moved_to_another_account_does_not_decrypt() {
    let env = TestEnv::new().await;
    let (a, _) = env.connect(Provider::X, rotating()).await;
    let tokens = env.fake.issue(rotating());
    let mut second = new_account(
        Provider::X,
        "ext-2",
        &tokens,
        Utc::now() - TimeDelta::hours(1),
        Some(Utc::now()),
    );
    second.external_id = "ext-b".into();
    let policy = RefreshPolicy::from(env.settings.providers.get(Provider::X));
    let b = accounts::register(env.pool(), &env.keyring, &policy, &second)
        .await
        .unwrap()
        .account
        .id;
    sqlx::query(
        "UPDATE social_accounts SET refresh_token_ciphertext = (SELECT refresh_token_ciphertext FROM social_accounts WHERE id = $1) WHERE id = $2",
    )
    .bind(a.as_str())
    .bind(b.as_str())
    .execute(env.pool())
    .await
    .unwrap();
    assert!(matches!(
        env.engine.refresh(&b, Trigger::Forced).await,
        Err(EngineError::Credentials { .. })
    ));
}

#[tokio::test]
async fn start_up_refuses_without_a_key() {
    let env = TestEnv::with(|s| s.crypto.keys = None).await;
    let err = tokenwarden::app::keyring(&env.settings)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("crypto.keys is not set") && err.contains("refuses to start"),
        "{err}"
    );
}

#[tokio::test]
async fn start_up_refuses_when_rows_use_an_unknown_key_id() {
    let env = TestEnv::new().await;
    env.connect(Provider::X, rotating()).await; // encrypted under "k1"
    let other = Keyring::parse(&key_spec(&[("k9", 9)])).unwrap();
    let err = keys::check_keys(env.pool(), &other)
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("\"k1\"") && err.contains("k9"), "{err}");
    keys::check_keys(env.pool(), &env.keyring).await.unwrap();
}

#[tokio::test]
async fn key_rotation_round_trip() {
    let env = TestEnv::new().await;
    let old = Arc::new(Keyring::parse(&key_spec(&[("old", 1)])).unwrap());
    let policy = RefreshPolicy::from(env.settings.providers.get(Provider::X));
    let mut ids = Vec::new();
    let mut issued = Vec::new();
    for i in 0..1_203 {
        let tokens = env.fake.issue(rotating());
        let new = new_account(
            Provider::X,
            &format!("ext-{i}"),
            &tokens,
            Utc::now() - TimeDelta::hours(1),
            Some(Utc::now()),
        );
        ids.push(
            accounts::register(env.pool(), &old, &policy, &new)
                .await
                .unwrap()
                .account
                .id,
        );
        issued.push(tokens);
    }
    // One row that cannot be decrypted: reported, left alone, not fatal.
    sqlx::query("UPDATE social_accounts SET access_token_ciphertext = set_byte(access_token_ciphertext, 15, 0) WHERE id = $1")
        .bind(ids[7].as_str())
        .execute(env.pool())
        .await
        .unwrap();

    let both = Keyring::parse(&key_spec(&[("new", 2), ("old", 1)])).unwrap();
    let report = keys::rotate(env.pool(), &both, 500).await.unwrap();
    assert_eq!(report.rotated, 1_202);
    assert_eq!(report.failed.len(), 1);
    assert_eq!(report.failed[0].0, ids[7].as_str());
    assert_eq!(report.remaining, 1);

    // Running it again is a no-op: progress lives in the rows themselves.
    let again = keys::rotate(env.pool(), &both, 500).await.unwrap();
    assert_eq!(again.rotated, 0);

    // Only the new key is needed now for the rotated rows; the engine
    // refreshes with it, and its tokens are the ones originally stored.
    let only_new = Arc::new(Keyring::parse(&key_spec(&[("new", 2)])).unwrap());
    let engine = engine_for(
        env.pool(),
        &env.settings,
        only_new.clone(),
        "after-rotation",
    );
    let report = engine.refresh(&ids[3], Trigger::Forced).await.unwrap();
    assert_eq!(report.outcome, Outcome::Refreshed);
    assert!(
        !env.fake.is_live(&issued[3].refresh_token),
        "the original token was used and rotated"
    );
    let used: Vec<String> = keys::key_ids_in_use(env.pool()).await.unwrap();
    assert_eq!(
        used,
        vec!["new".to_owned(), "old".to_owned()],
        "only the damaged row is left on the old key"
    );
}

#[tokio::test]
async fn a_refresh_under_a_new_primary_key_moves_the_kept_refresh_token_too() {
    let env = TestEnv::new().await;
    let tokens = env.fake.issue(common::google_like());
    let k1 = Keyring::parse(&key_spec(&[("k1", 1)])).unwrap();
    let policy = RefreshPolicy::from(env.settings.providers.get(Provider::Youtube));
    let new = new_account(
        Provider::Youtube,
        "ext-1",
        &tokens,
        Utc::now() - TimeDelta::hours(1),
        Some(Utc::now()),
    );
    let id = accounts::register(env.pool(), &k1, &policy, &new)
        .await
        .unwrap()
        .account
        .id;

    let k2_then_k1 = Arc::new(Keyring::parse(&key_spec(&[("k2", 2), ("k1", 1)])).unwrap());
    let engine = engine_for(env.pool(), &env.settings, k2_then_k1, "new-primary");
    assert_eq!(
        engine.refresh(&id, Trigger::Forced).await.unwrap().outcome,
        Outcome::Refreshed
    );

    // Google returned no refresh token; the kept one must now be readable
    // with k2 alone, next to the new access token.
    let only_k2 = Keyring::parse(&key_spec(&[("k2", 2)])).unwrap();
    let row = env.row(&id).await;
    assert_eq!(row.credentials_key_id.as_deref(), Some("k2"));
    let kept = only_k2
        .decrypt(
            &id,
            tokenwarden::crypto::Field::RefreshToken,
            "k2",
            row.refresh_token_ciphertext.as_deref().unwrap(),
        )
        .unwrap();
    assert_eq!(
        secrecy::ExposeSecret::expose_secret(&kept),
        tokens.refresh_token
    );
}
