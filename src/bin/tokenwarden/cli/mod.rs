//! The command line: one binary, operational subcommands.

use std::io::Read;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, bail};
use chrono::{DateTime, Utc};
use clap::{Args, Parser, Subcommand};

use tokenwarden::app::{self, App};
use tokenwarden::config::{Flow, Settings};
use tokenwarden::domain::{AccountId, AccountStatus, ConnectionType, Provider, Trigger};
use tokenwarden::policy::RefreshPolicy;
use tokenwarden::registration::{AccountSpec, CredentialsSpec};
use tokenwarden::store::{self, accounts};

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

#[derive(Subcommand, Debug)]
pub enum AccountsCommand {
    /// Register an account (or reconnect it: same workspace, provider and external id).
    Add(Box<AddArgs>),
    /// List accounts, newest connected first.
    List {
        #[arg(long, value_parser = parse_status)]
        status: Option<AccountStatus>,
        #[arg(long, value_parser = parse_provider)]
        provider: Option<Provider>,
        #[arg(long)]
        workspace: Option<String>,
        #[arg(long, default_value_t = 50)]
        limit: i64,
    },
    /// Show one account and its latest attempts.
    Show { id: AccountId },
}

#[derive(Args, Debug)]
pub struct AddArgs {
    /// A JSON file with the whole account (`-` reads standard input); see the README.
    #[arg(long, value_name = "FILE", conflicts_with_all = ["workspace", "provider", "external_id"])]
    pub json: Option<PathBuf>,
    #[arg(long, required_unless_present = "json")]
    pub workspace: Option<String>,
    #[arg(long, required_unless_present = "json", value_parser = parse_provider)]
    pub provider: Option<Provider>,
    #[arg(long, required_unless_present = "json")]
    pub external_id: Option<String>,
    #[arg(long)]
    pub handle: Option<String>,
    #[arg(long)]
    pub display_name: Option<String>,
    #[arg(long)]
    pub avatar_url: Option<String>,
    /// Granted scopes, comma-separated.
    #[arg(long, value_delimiter = ',')]
    pub scopes: Vec<String>,
    #[arg(long, value_parser = parse_connection_type)]
    pub connection_type: Option<ConnectionType>,
    /// File holding the access token (tokens are never taken as arguments:
    /// arguments show up in process listings).
    #[arg(long, value_name = "FILE", required_unless_present = "json")]
    pub access_token_file: Option<PathBuf>,
    #[arg(long, value_name = "FILE")]
    pub refresh_token_file: Option<PathBuf>,
    /// Access token lifetime in seconds from now.
    #[arg(long, conflicts_with = "token_expires_at")]
    pub expires_in: Option<i64>,
    /// Access token expiry (RFC 3339).
    #[arg(long)]
    pub token_expires_at: Option<DateTime<Utc>>,
    #[arg(long)]
    pub refresh_token_expires_at: Option<DateTime<Utc>>,
    /// Free-form JSON object.
    #[arg(long)]
    pub meta: Option<String>,
    #[arg(long)]
    pub default_board_id: Option<String>,
}

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

fn parse_trigger(s: &str) -> Result<Trigger, String> {
    s.parse()
        .map_err(|e: tokenwarden::domain::UnknownVariant| e.to_string())
}
fn parse_status(s: &str) -> Result<AccountStatus, String> {
    s.to_ascii_uppercase()
        .parse()
        .map_err(|e: tokenwarden::domain::UnknownVariant| e.to_string())
}
fn parse_provider(s: &str) -> Result<Provider, String> {
    s.to_ascii_uppercase()
        .parse()
        .map_err(|e: tokenwarden::domain::UnknownVariant| e.to_string())
}
fn parse_connection_type(s: &str) -> Result<ConnectionType, String> {
    s.to_ascii_lowercase()
        .parse()
        .map_err(|e: tokenwarden::domain::UnknownVariant| e.to_string())
}

/// Exit codes: 0 success, 1 error, 2 configuration error, 3 refresh failed.
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
        return Ok(ExitCode::SUCCESS);
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
        Command::CheckConfig => check_config(&settings)?,
        Command::Accounts { command } => accounts_command(settings, command).await?,
        Command::Refresh { id, trigger } => return refresh(settings, id, trigger).await,
        Command::Keys {
            command: KeysCommand::Rotate { batch_size },
        } => {
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
        }
        Command::Keys {
            command: KeysCommand::Generate { .. },
        } => unreachable!("handled above"),
        #[cfg(feature = "demo")]
        Command::Demo(args) => return crate::demo::run(settings, args).await,
    }
    Ok(ExitCode::SUCCESS)
}

fn check_config(settings: &Settings) -> anyhow::Result<()> {
    let keyring = app::keyring(settings)?;
    let db = store::connect_options(&settings.database, None)?;
    println!("configuration is valid");
    println!(
        "database: {}:{}/{}",
        db.get_host(),
        db.get_port(),
        db.get_database().unwrap_or("(default)")
    );
    println!(
        "encryption keys (newest first): {}",
        keyring.key_ids().collect::<Vec<_>>().join(", ")
    );
    println!("provider                  flow            client   token endpoint");
    for provider in Provider::ALL {
        let section = settings.providers.get(*provider);
        let flow = match section.flow {
            Flow::Oauth2Refresh => "oauth2_refresh",
            Flow::X => "x",
            Flow::Linkedin => "linkedin",
            Flow::Tiktok => "tiktok",
            Flow::InstagramLogin => "instagram_login",
            Flow::Threads => "threads",
            Flow::Mastodon => "mastodon",
            Flow::Google => "google",
            Flow::Pinterest => "pinterest",
            Flow::Facebook => "facebook",
            Flow::Bluesky => "bluesky",
            Flow::None => "none",
        };
        let client = if section.client_id.is_some() {
            "set"
        } else {
            "unset"
        };
        let url = section
            .token_url
            .as_ref()
            .map(|u| u.as_str())
            .unwrap_or("-");
        println!("{:<25} {flow:<15} {client:<8} {url}", provider.as_str());
    }
    for warning in settings.warnings() {
        println!("warning: {warning}");
    }
    Ok(())
}

async fn accounts_command(settings: Settings, command: AccountsCommand) -> anyhow::Result<()> {
    match command {
        AccountsCommand::Add(args) => {
            let spec = account_spec(*args)?;
            let new = spec.into_new_account(Utc::now())?;
            let app = App::start(settings).await?;
            let policy = RefreshPolicy::from(app.settings.providers.get(new.provider));
            let registered = accounts::register(&app.pool, &app.keyring, &policy, &new).await?;
            let verb = if registered.created {
                "registered"
            } else {
                "reconnected"
            };
            println!("{verb} {}", registered.account.id);
        }
        AccountsCommand::List {
            status,
            provider,
            workspace,
            limit,
        } => {
            let pool = app::connect(&settings, None).await?;
            let filter = accounts::ListFilter {
                status,
                provider,
                workspace_id: workspace,
                limit: limit.clamp(1, 10_000),
                ..Default::default()
            };
            let rows = accounts::list(&pool, &filter).await?;
            println!(
                "{:<36} {:<24} {:<13} {:<20} {:<20} {:>8}",
                "id", "provider", "status", "token expires", "next attempt", "failures"
            );
            for row in rows {
                println!(
                    "{:<36} {:<24} {:<13} {:<20} {:<20} {:>8}",
                    row.id,
                    row.provider.as_str(),
                    row.status.as_str(),
                    time(row.token_expires_at),
                    time(row.next_attempt_at),
                    row.consecutive_failures
                );
            }
        }
        AccountsCommand::Show { id } => {
            let pool = app::connect(&settings, None).await?;
            let row = accounts::get(&pool, &id)
                .await?
                .with_context(|| format!("unknown account {id}"))?;
            print_account(&row);
            let attempts = store::attempts::for_account(&pool, &id, 10).await?;
            if !attempts.is_empty() {
                println!("latest attempts:");
            }
            for a in attempts {
                println!(
                    "  {}  {:<12} {:<16} {:>4}  {}",
                    a.started_at.format("%Y-%m-%d %H:%M:%S"),
                    a.trigger.as_str(),
                    a.outcome.as_str(),
                    a.http_status.map(|s| s.to_string()).unwrap_or_default(),
                    a.message.unwrap_or_default()
                );
            }
        }
    }
    Ok(())
}

fn time(t: Option<DateTime<Utc>>) -> String {
    t.map(|t| t.format("%Y-%m-%d %H:%M:%S").to_string())
        .unwrap_or_else(|| "-".into())
}

fn print_account(row: &accounts::AccountRow) {
    let opt = |v: &Option<String>| v.clone().unwrap_or_else(|| "-".into());
    println!("id:                        {}", row.id);
    println!("workspace:                 {}", row.workspace_id);
    println!("provider:                  {}", row.provider);
    println!("external id:               {}", row.external_id);
    println!("handle:                    {}", opt(&row.handle));
    println!(
        "status:                    {}{}",
        row.status,
        row.status_reason
            .as_ref()
            .map(|r| format!(" ({r})"))
            .unwrap_or_default()
    );
    println!(
        "scopes:                    {}",
        row.granted_scopes.join(" ")
    );
    println!(
        "connected at:              {}",
        row.connected_at.format("%Y-%m-%d %H:%M:%S")
    );
    println!("last refreshed at:         {}", time(row.last_refreshed_at));
    println!("token expires at:          {}", time(row.token_expires_at));
    println!(
        "refresh token expires at:  {}",
        time(row.refresh_token_expires_at)
    );
    println!(
        "refresh token stored:      {}",
        if row.has_refresh_token() { "yes" } else { "no" }
    );
    println!("next attempt at:           {}", time(row.next_attempt_at));
    println!(
        "last refresh attempt at:   {}",
        time(row.last_refresh_attempt_at)
    );
    println!(
        "last refresh error:        {}",
        opt(&row.last_refresh_error)
    );
    println!(
        "last refresh error status: {}",
        row.last_refresh_error_status
            .map(|s| s.to_string())
            .unwrap_or_else(|| "-".into())
    );
    println!("consecutive failures:      {}", row.consecutive_failures);
    println!(
        "credentials version:       {} (key {})",
        row.credentials_version,
        opt(&row.credentials_key_id)
    );
    if let Some(owner) = &row.lease_owner {
        println!(
            "refresh in flight:         {owner} until {}",
            time(row.lease_until)
        );
    }
    if let Some(at) = row.interrupted_refresh_at {
        println!(
            "interrupted refresh at:    {}",
            at.format("%Y-%m-%d %H:%M:%S")
        );
    }
}

fn account_spec(args: AddArgs) -> anyhow::Result<AccountSpec> {
    if let Some(path) = &args.json {
        let mut text = String::new();
        if path.as_os_str() == "-" {
            std::io::stdin().read_to_string(&mut text)?;
        } else {
            text = std::fs::read_to_string(path)
                .with_context(|| format!("reading {}", path.display()))?;
        }
        // The same parser as the API: names the field, never the value.
        return tokenwarden::registration::parse_spec(text.as_bytes())
            .map_err(|e| anyhow::anyhow!("the account JSON is invalid: {e}"));
    }
    let read_token = |path: &PathBuf| -> anyhow::Result<String> {
        let text =
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        Ok(text.trim().to_owned())
    };
    let meta = args
        .meta
        .as_deref()
        .map(serde_json::from_str)
        .transpose()
        .context("--meta is not valid JSON")?;
    Ok(AccountSpec {
        workspace_id: args.workspace.unwrap_or_default(),
        provider: args.provider.context("--provider is required")?,
        external_id: args.external_id.unwrap_or_default(),
        handle: args.handle,
        display_name: args.display_name,
        avatar_url: args.avatar_url,
        connection_type: args.connection_type,
        scopes: args.scopes,
        meta,
        default_board_id: args.default_board_id,
        credentials: CredentialsSpec {
            access_token: read_token(
                args.access_token_file
                    .as_ref()
                    .context("--access-token-file is required")?,
            )?,
            refresh_token: args
                .refresh_token_file
                .as_ref()
                .map(read_token)
                .transpose()?,
            expires_in: args.expires_in,
            token_expires_at: args.token_expires_at,
            refresh_token_expires_at: args.refresh_token_expires_at,
            dpop_private_jwk: None,
        },
    })
}

async fn refresh(settings: Settings, id: AccountId, trigger: Trigger) -> anyhow::Result<ExitCode> {
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

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_definition_is_consistent() {
        Cli::command().debug_assert();
    }
}
