//! The demo's accounts: issued by the fakes (some set up to be revoked,
//! expire or fail along the way) and registered as the API would.

use std::time::Duration;

use chrono::{TimeDelta, Utc};

use tokenwarden::app::App;
use tokenwarden::domain::{AccessToken, ConnectionType, Provider, RefreshToken};
use tokenwarden::policy::RefreshPolicy;
use tokenwarden::providers::DpopKey;
use tokenwarden::store::accounts::{self, NewAccount};
use tokenwarden_fakes::{
    FakeBluesky, FamilySpec, GoogleGrant, GraphTokenState, LinkedinTokenState, OAuthSessionSpec,
    PinterestGrant, SessionSpec,
};

use super::fakes::{DemoFakes, LINKEDIN_DEMO_LIFETIME};

/// The platforms the demo cycles through; one account in ten is a Facebook
/// Page, whose token never expires and is health-checked instead.
pub(super) const DEMO_PLATFORMS: &[Provider] = &[
    Provider::X,
    Provider::Pinterest,
    Provider::LinkedinPerson,
    Provider::Youtube,
];

pub(super) async fn seed(app: &App, fake: &DemoFakes, count: usize) -> anyhow::Result<()> {
    let now = Utc::now();
    for i in 0..count {
        let provider = if i % 10 == 9 {
            Provider::FacebookPage
        } else {
            DEMO_PLATFORMS[i % DEMO_PLATFORMS.len()]
        };
        let lifetime = 20 + (i as u64 * 7) % 26;
        // Two in ten on Bluesky: an app-password session, an OAuth session.
        if matches!(i % 10, 4 | 8) {
            seed_bluesky(app, &fake.bluesky, i, lifetime, i % 10 == 4).await?;
            continue;
        }
        // Roughly: 1 in 23 revoked by the user after a refresh or two,
        // 1 in 25 whose grant expires, 1 in 11 behind a flaky endpoint (the
        // moduli are prime to the platform cycle, so every platform gets some).
        let revoke_after = (i % 23 == 3).then_some(i as u32 % 2);
        let fail_every = (i % 11 == 5).then_some(3);
        let (access, refresh, expires_in) = match provider {
            Provider::X => {
                let tokens = fake.oauth.issue(FamilySpec {
                    rotating: true,
                    return_refresh_token: true,
                    access_lifetime: Some(lifetime),
                    revoke_after,
                    expire_after: (i % 25 == 7).then_some(1),
                    fail_every,
                });
                (tokens.access_token, tokens.refresh_token, Some(lifetime))
            }
            Provider::Pinterest => {
                let (access, refresh) = fake.pinterest.issue(PinterestGrant {
                    access_lifetime: lifetime,
                    fail_every,
                    revoke_after,
                });
                (access, refresh, Some(lifetime))
            }
            Provider::Youtube => {
                let (access, refresh) = fake.google.issue(GoogleGrant {
                    access_lifetime: lifetime,
                    fail_every,
                    ..GoogleGrant::default()
                });
                if revoke_after.is_some() {
                    fake.google.revoke(&refresh);
                }
                (access, refresh, Some(lifetime))
            }
            Provider::LinkedinPerson => {
                let (access, refresh) = fake.linkedin.issue(Duration::ZERO);
                if revoke_after.is_some() {
                    fake.linkedin.revoke(&refresh);
                    fake.linkedin
                        .set_access_state(&access, LinkedinTokenState::Revoked);
                }
                (access, refresh, Some(LINKEDIN_DEMO_LIFETIME))
            }
            _ => {
                // One page in four has had the app removed by its admin.
                let state = if i % 40 == 19 {
                    GraphTokenState::AppRemoved
                } else {
                    GraphTokenState::Live
                };
                (fake.graph.issue_page(state), String::new(), None)
            }
        };
        // A few accounts were connected without a refresh token (LinkedIn
        // apps without programmatic refresh are introspected until their
        // token expires; the others simply expire).
        let refresh_token =
            (!matches!(i % 50, 10 | 24) && !refresh.is_empty()).then(|| RefreshToken::new(refresh));
        let new = NewAccount {
            workspace_id: format!("ws_demo_{}", i % 7),
            provider,
            external_id: format!("user-{i}"),
            handle: Some(format!("@demo{i}")),
            display_name: Some(format!("Demo account {i}")),
            avatar_url: None,
            connection_type: ConnectionType::Oauth,
            granted_scopes: vec!["read".into(), "write".into()],
            meta: serde_json::json!({}),
            default_board_id: None,
            access_token: AccessToken::new(access),
            refresh_token,
            token_issued_at: now,
            token_expires_at: expires_in.map(|s| now + TimeDelta::seconds(s as i64)),
            refresh_token_expires_at: None,
            dpop_key: None,
        };
        let policy = RefreshPolicy::from(app.settings.providers.get(provider));
        accounts::register(&app.pool, &app.keyring, &policy, &new).await?;
    }
    Ok(())
}

/// A Bluesky account: an app-password session on the fake PDS, or an OAuth
/// session bound to a DPoP key the "API tier" supplies.
async fn seed_bluesky(
    app: &App,
    fake: &FakeBluesky,
    i: usize,
    lifetime: u64,
    app_password: bool,
) -> anyhow::Result<()> {
    let now = Utc::now();
    // Some trouble here too (seeded slots are i % 10 == 4 or 8).
    let revoke_after = (i % 40 == 14).then_some(i as u32 % 2);
    let fail_every = (i % 30 == 8).then_some(3);
    let (external_id, access, refresh, meta, dpop_key) = if app_password {
        let session = fake.issue_session(SessionSpec {
            access_lifetime: lifetime as i64,
            revoke_after,
            fail_every,
            ..SessionSpec::default()
        });
        let meta = serde_json::json!({"pds_host": fake.origin()});
        (
            session.did,
            session.access_jwt,
            session.refresh_jwt,
            meta,
            None,
        )
    } else {
        let key = DpopKey::generate();
        let issued = fake.issue_oauth(
            OAuthSessionSpec {
                access_lifetime: lifetime,
                revoke_after,
                fail_every,
            },
            &key.public_jwk(),
        );
        let meta = serde_json::json!({"pds_host": fake.origin(), "auth_server": fake.origin()});
        (
            issued.did,
            issued.access_token,
            issued.refresh_token,
            meta,
            Some(key),
        )
    };
    let new = NewAccount {
        workspace_id: format!("ws_demo_{}", i % 7),
        provider: Provider::Bluesky,
        external_id,
        handle: Some(format!("@demo{i}.bsky.social")),
        display_name: Some(format!("Demo account {i}")),
        avatar_url: None,
        connection_type: ConnectionType::Oauth,
        granted_scopes: vec![],
        meta,
        default_board_id: None,
        access_token: AccessToken::new(access),
        refresh_token: Some(RefreshToken::new(refresh)),
        token_issued_at: now,
        token_expires_at: Some(now + TimeDelta::seconds(lifetime as i64)),
        refresh_token_expires_at: None,
        dpop_key,
    };
    let policy = RefreshPolicy::from(app.settings.providers.get(Provider::Bluesky));
    accounts::register(&app.pool, &app.keyring, &policy, &new).await?;
    Ok(())
}
