//! The demo's verdict at the end.

use std::process::ExitCode;

use secrecy::ExposeSecret;

use tokenwarden::app::App;
use tokenwarden::crypto::Field;
use tokenwarden::domain::{AccountStatus, Provider};
use tokenwarden::store::accounts;

use super::fakes::DemoFakes;

/// The demo's own proof that rotation was handled: every ACTIVE account on a
/// rotating platform holds a refresh token the platform still accepts, and
/// the platform never saw a spent token again.
pub(super) async fn verify(app: &App, fake: &DemoFakes) -> anyhow::Result<ExitCode> {
    let rows = accounts::list(
        &app.pool,
        &accounts::ListFilter {
            status: Some(AccountStatus::Active),
            limit: i64::MAX,
            ..Default::default()
        },
    )
    .await?;
    let mut checked = 0;
    let mut stranded = 0;
    for row in rows.iter().filter(|r| {
        matches!(
            r.provider,
            Provider::X | Provider::Pinterest | Provider::Bluesky
        )
    }) {
        let (Some(blob), Some(key_id)) = (&row.refresh_token_ciphertext, &row.credentials_key_id)
        else {
            continue;
        };
        let refresh = app
            .keyring
            .decrypt(&row.id, Field::RefreshToken, key_id, blob)?;
        checked += 1;
        let live = match row.provider {
            Provider::Pinterest => fake.pinterest.is_live(refresh.expose_secret()),
            Provider::Bluesky if row.meta.get("auth_server").is_some() => {
                fake.bluesky.is_live_oauth(refresh.expose_secret())
            }
            Provider::Bluesky => fake.bluesky.is_live_session(refresh.expose_secret()),
            _ => fake.oauth.is_live(refresh.expose_secret()),
        };
        if !live {
            stranded += 1;
        }
    }
    let replays = fake.oauth.reuse_detected()
        + fake.pinterest.reuse_detected()
        + fake.bluesky.reuse_detected();
    println!(
        "rotating accounts holding a live refresh token: {}/{checked}; spent tokens replayed: {replays}",
        checked - stranded
    );
    Ok(if stranded == 0 && replays == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
