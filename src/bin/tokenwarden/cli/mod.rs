//! The command line: one binary, operational subcommands.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};

use tokenwarden::app::{self, App};
use tokenwarden::config::Settings;
use tokenwarden::domain::{AccountId, Trigger};
use tokenwarden::store;

mod accounts;
mod check_config;
mod connect;
mod keys;
mod refresh;
mod transfer;

use accounts::AccountsCommand;
use keys::KeysCommand;

#[derive(Parser, Debug)]
#[command(
    name = "tokenwarden",
    version,
    about = "OAuth token-refresh and account-health daemon"
)]
pub struct Cli {
    /// Configuration file layered over the built-in defaults.
    #[arg(long, global = true, env = "TOKENWARDEN_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run the daemon: scheduler and workers (select with --role).
    Run {
        /// Comma-separated subset of scheduler, worker, api.
        #[arg(long, value_delimiter = ',', default_value = "scheduler,worker,api")]
        role: Vec<tokenwarden::daemon::Role>,
    },
    /// Apply pending database migrations.
    Migrate,
    /// Register, list and inspect accounts.
    Accounts {
        #[command(subcommand)]
        command: AccountsCommand,
    },
    /// Refresh one account now through the engine (lease and single-flight
    /// apply); exits non-zero unless the refresh succeeded.
    Refresh {
        /// The account id (acc_...).
        id: AccountId,
        /// Recorded as the attempt's trigger; only forced and on_demand
        /// refresh an account that is not yet due.
        #[arg(long, default_value = "forced", value_parser = parse_trigger)]
        trigger: Trigger,
    },
    /// Connect an account through the platform's authorization page: prints
    /// the URL and waits for the browser on a loopback port.
    Connect(connect::ConnectArgs),
    /// Load and validate the configuration and print a summary without secrets.
    CheckConfig,
    /// Encryption keys for stored credentials.
    Keys {
        #[command(subcommand)]
        command: KeysCommand,
    },
    /// Run the whole refresh loop against built-in fake platforms on loopback,
    /// in a schema of its own, printing progress.
    #[cfg(feature = "demo")]
    Demo(crate::demo::DemoArgs),
}

fn parse_trigger(s: &str) -> Result<Trigger, String> {
    s.parse()
        .map_err(|e: tokenwarden::domain::UnknownVariant| e.to_string())
}

/// Exit codes: 0 success, 1 error (for `accounts import`: a line was not
/// imported), 2 configuration error, 3 refresh failed.
pub fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => match usage_error_without_values(&e) {
            Some(message) => {
                eprintln!("{message}");
                return ExitCode::from(2);
            }
            None => e.exit(),
        },
    };
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            if e.downcast_ref::<tokenwarden::config::ConfigError>()
                .is_some()
            {
                ExitCode::from(2)
            } else {
                ExitCode::FAILURE
            }
        }
    }
}

/// clap repeats a value it could not use; a secret pasted into the wrong
/// argument must not be printed back. These errors are rewritten to name
/// the argument only (None: clap's own message repeats nothing given).
fn usage_error_without_values(e: &clap::Error) -> Option<String> {
    use clap::error::{ContextKind, ErrorKind};
    let arg = e
        .get(ContextKind::InvalidArg)
        .map(|a| a.to_string())
        .filter(|a| a.starts_with('-') || a.starts_with('<'));
    match e.kind() {
        ErrorKind::InvalidValue | ErrorKind::ValueValidation | ErrorKind::InvalidUtf8 => {
            let hint = std::error::Error::source(e)
                .map(|s| tokenwarden::registration::redact_values(&s.to_string()))
                .map(|s| format!(": {s}"))
                .unwrap_or_default();
            Some(format!(
                "error: invalid value for {}{hint} (the value is not repeated)\n\nFor more information, try '--help'.",
                arg.as_deref().unwrap_or("an argument")
            ))
        }
        ErrorKind::UnknownArgument | ErrorKind::InvalidSubcommand | ErrorKind::NoEquals => {
            let named = arg
                .filter(|a| {
                    a.len() <= 40
                        && a.starts_with("--")
                        && a[2..].bytes().all(|b| b.is_ascii_lowercase() || b == b'-')
                })
                .map(|a| format!(" '{a}'"))
                .unwrap_or_else(|| " (not repeated: it may be a secret)".to_owned());
            Some(format!(
                "error: unexpected argument{named}\n\nFor more information, try '--help'."
            ))
        }
        _ => None,
    }
}

async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    if let Command::Keys {
        command: KeysCommand::Generate { id },
    } = &cli.command
    {
        return keys::generate(id);
    }
    let settings = Settings::load(cli.config.as_deref())?;
    #[cfg(feature = "demo")]
    let settings = {
        let mut settings = settings;
        if matches!(cli.command, Command::Demo(_)) {
            settings.log.filter = "error".into();
        }
        settings
    };
    tokenwarden::telemetry::init(&settings.log);
    match cli.command {
        Command::Run { role } => {
            let queue = settings.redis.queue.clone();
            let shutdown = tokenwarden::daemon::shutdown_on_signals();
            let app = App::start(settings).await?;
            tokenwarden::daemon::run(app, role, queue, shutdown).await?;
        }
        Command::Migrate => {
            let pool = app::connect(&settings, None).await?;
            store::migrate(&pool).await.context("applying migrations")?;
            println!("migrations applied");
        }
        Command::CheckConfig => check_config::run(&settings)?,
        Command::Connect(args) => return connect::run(settings, args).await,
        Command::Accounts { command } => return accounts::run(settings, command).await,
        Command::Refresh { id, trigger } => return refresh::run(settings, id, trigger).await,
        Command::Keys {
            command: KeysCommand::Rotate { batch_size },
        } => return keys::rotate(settings, batch_size).await,
        Command::Keys {
            command: KeysCommand::Generate { .. },
        } => unreachable!("handled above"),
        #[cfg(feature = "demo")]
        Command::Demo(args) => return crate::demo::run(settings, args).await,
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_definition_is_consistent() {
        Cli::command().debug_assert();
    }
}
