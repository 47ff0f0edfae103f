//! Rules that hold whatever the platform: the scopes an account is missing,
//! and which failures may pause a platform (ARCHITECTURE.md rule 1).

use chrono::{TimeDelta, Utc};
use tokenwarden::domain::{AccountId, Outcome, Provider};
use tokenwarden::gate::ProviderGates;
use tokenwarden::policy::RefreshPolicy;
use tokenwarden::store::accounts;
use tokenwarden_fakes::{FakeMastodon, GoogleGrant, MastodonTokenState, ScriptedResponse};

use crate::common::{self, TestEnv};
use crate::support::{
    Account, assert_outcome, forced, mastodon_account, mastodon_env, register, youtube_account,
    youtube_env,
};

#[tokio::test]
async fn missing_scopes_are_computed_at_registration_and_by_update_scopes() {
    let env = TestEnv::new().await;
    let tokens = env.fake.issue(common::rotating());
    let mut new = common::new_account(
        Provider::Pinterest,
        "ext-scopes",
        &tokens,
        Utc::now(),
        Some(Utc::now() + TimeDelta::days(30)),
    );
    new.granted_scopes = vec!["boards:read,pins:read".into()];
    let policy = RefreshPolicy::from(env.settings.providers.get(Provider::Pinterest));
    let row = accounts::register(env.pool(), &env.keyring, &policy, &new)
        .await
        .unwrap()
        .account;
    assert_eq!(row.missing_scopes, vec!["pins:write".to_owned()]);
    let granted = vec!["boards:read".to_owned(), "pins:write".to_owned()];
    let row = accounts::update_scopes(env.pool(), &row.id, &policy, &granted)
        .await
        .unwrap()
        .unwrap();
    assert!(row.missing_scopes.is_empty());
    assert_eq!(row.granted_scopes, granted);
    let unknown = AccountId::generate();
    assert!(
        accounts::update_scopes(env.pool(), &unknown, &policy, &granted)
            .await
            .unwrap()
            .is_none()
    );
}

/// Gives an account an external id of its own: the circuit counts distinct
/// accounts.
async fn set_external_id(env: &TestEnv, id: &AccountId, external_id: &str) {
    sqlx::query("UPDATE social_accounts SET external_id = $2 WHERE id = $1")
        .bind(id.as_str())
        .bind(external_id)
        .execute(env.pool())
        .await
        .unwrap();
}

#[tokio::test]
async fn per_account_failures_do_not_pause_the_platform_but_platform_failures_do() {
    // Mastodon: a disabled login and a refused host, again and again.
    let fake = FakeMastodon::start().await.unwrap();
    let env = mastodon_env(&fake, true).await;
    let gates = ProviderGates::from_settings(&env.settings);
    let disabled = fake.issue(MastodonTokenState::Disabled);
    let disabled_id = mastodon_account(&env, &disabled, &fake.origin()).await;
    let refused_id = mastodon_account(&env, &disabled, "10.0.0.1").await;
    let min_calls = env.settings.circuit.min_calls;
    for _ in 0..min_calls {
        for id in [&disabled_id, &refused_id] {
            let report = forced(&env, id).await;
            assert_eq!(report.outcome, Outcome::TransientError);
            assert!(report.account_only, "{:?}", report.message);
            gates.record_report(&report);
        }
    }
    assert!(!gates.is_paused(Provider::Mastodon));

    // YouTube: the token endpoint is down for everyone, as enough distinct
    // accounts see (one account failing again and again weighs one).
    let (env, google) = youtube_env().await;
    let gates = ProviderGates::from_settings(&env.settings);
    let (id, _) = youtube_account(&env, &google).await;
    for _ in 0..min_calls {
        google.script_next(ScriptedResponse::raw(503, "text/plain", "unavailable"));
        let report = forced(&env, &id).await;
        assert_outcome(&report, Outcome::TransientError);
        assert!(!report.account_only);
        gates.record_report(&report);
    }
    assert!(
        !gates.is_paused(Provider::Youtube),
        "one account is no evidence"
    );
    set_external_id(&env, &id, "yt-0").await;
    for n in 1..min_calls {
        let (access, refresh) = google.issue(GoogleGrant::default());
        let other = register(
            &env,
            Account::new(Provider::Youtube, &access, Some(&refresh)),
        )
        .await;
        set_external_id(&env, &other, &format!("yt-{n}")).await;
        google.script_next(ScriptedResponse::raw(503, "text/plain", "unavailable"));
        let report = forced(&env, &other).await;
        assert_outcome(&report, Outcome::TransientError);
        gates.record_report(&report);
    }
    assert!(gates.is_paused(Provider::Youtube));
}
