//! `tokenwarden keys`: encryption keys for stored credentials.

use std::process::ExitCode;

use anyhow::bail;
use clap::Subcommand;

use tokenwarden::app::App;
use tokenwarden::config::Settings;
use tokenwarden::store;

#[derive(Subcommand, Debug)]
pub enum KeysCommand {
    /// Re-encrypt every stored credential under the newest key (the first in
    /// crypto.keys). Online and resumable.
    Rotate {
        #[arg(long, default_value_t = 500)]
        batch_size: i64,
    },
    /// Print a new random key entry for crypto.keys.
    Generate {
        #[arg(long, default_value = "k1")]
        id: String,
    },
}

/// Prints a new key entry. Needs no configuration, so it runs before any is
/// loaded.
pub(super) fn generate(id: &str) -> anyhow::Result<ExitCode> {
    use base64::Engine as _;
    // The rule start-up applies, so a printed key is always accepted; the
    // value is not echoed (it may be something pasted in the wrong place).
    tokenwarden::crypto::validate_key_id(id)
        .map_err(|problem| tokenwarden::config::ConfigError::invalid("--id", problem))?;
    let key: [u8; 32] = rand::random();
    println!(
        "{id}:{}",
        base64::engine::general_purpose::STANDARD.encode(key)
    );
    Ok(ExitCode::SUCCESS)
}

pub(super) async fn rotate(settings: Settings, batch_size: i64) -> anyhow::Result<ExitCode> {
    if batch_size < 1 {
        bail!("--batch-size must be at least 1");
    }
    let app = App::start(settings).await?;
    let report = store::keys::rotate(&app.pool, &app.keyring, batch_size).await?;
    println!(
        "re-encrypted {} account(s) under key {:?}",
        report.rotated,
        app.keyring.primary_key_id()
    );
    for (id, error) in &report.failed {
        println!("  could not re-encrypt {id}: {error}");
    }
    if report.remaining > 0 {
        println!(
            "{} account(s) still use an older key; run the command again",
            report.remaining
        );
        return Ok(ExitCode::FAILURE);
    }
    Ok(ExitCode::SUCCESS)
}
