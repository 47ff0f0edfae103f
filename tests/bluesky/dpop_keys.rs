//! The DPoP key at rest: generated when absent, kept when supplied, and
//! re-encrypted with the tokens on key rotation.

use std::sync::Arc;

use base64::Engine as _;
use chrono::Utc;
use secrecy::ExposeSecret;
use serde_json::json;
use tokenwarden::crypto::{Field, Keyring};
use tokenwarden::domain::{Outcome, Provider, Trigger};
use tokenwarden::policy::RefreshPolicy;
use tokenwarden::providers::DpopKey;
use tokenwarden::store::{accounts, keys};
use tokenwarden_fakes::{IssuedTokens, OAuthSessionSpec};

use crate::common;
use crate::support::{bsky_env, oauth, register, start};

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
