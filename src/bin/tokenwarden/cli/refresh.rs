//! `tokenwarden refresh`: one account now, through the engine.

use std::process::ExitCode;

use tokenwarden::app::App;
use tokenwarden::config::Settings;
use tokenwarden::domain::{AccountId, Trigger};

pub(super) async fn run(
    settings: Settings,
    id: AccountId,
    trigger: Trigger,
) -> anyhow::Result<ExitCode> {
    let app = App::start(settings).await?;
    let report = app.engine.refresh(&id, trigger).await?;
    println!("account:  {}", report.account_id);
    println!(
        "outcome:  {}{}",
        report.outcome,
        if report.joined {
            " (joined a refresh already in flight)"
        } else {
            ""
        }
    );
    println!("status:   {}", report.status);
    if let Some(at) = report.token_expires_at {
        println!("expires:  {}", at.format("%Y-%m-%d %H:%M:%S"));
    }
    if let Some(message) = &report.message {
        println!("message:  {message}");
    }
    if let Some(at) = report.retry_at {
        println!("retry at: {}", at.format("%Y-%m-%d %H:%M:%S"));
    }
    Ok(if report.succeeded() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(3)
    })
}
