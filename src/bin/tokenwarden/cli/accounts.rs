//! `tokenwarden accounts`: register, list and inspect accounts.

use std::io::Read;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use chrono::{DateTime, Utc};
use clap::{Args, Subcommand};

use tokenwarden::app::{self, App};
use tokenwarden::config::Settings;
use tokenwarden::domain::{AccountId, AccountStatus, ConnectionType, Provider};
use tokenwarden::policy::RefreshPolicy;
use tokenwarden::registration::{AccountSpec, CredentialsSpec};
use tokenwarden::store::{self, accounts};

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
    /// Register or reconnect accounts from NDJSON: one registration body per
    /// line (as POST /v1/accounts takes it), or lines of `accounts export`.
    Import(ImportArgs),
    /// Write every account as NDJSON (profile, status, refresh fields);
    /// credentials only sealed to an age recipient.
    Export(ExportArgs),
}

#[derive(Args, Debug)]
pub struct ImportArgs {
    /// The NDJSON file; `-` reads standard input.
    #[arg(value_name = "FILE|-")]
    pub file: PathBuf,
    /// Judge every line and look its account up; write nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Accounts per transaction.
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u16).range(1..=10_000))]
    pub batch_size: u16,
    /// Longer lines are refused; default api.max_body_bytes (a line is one
    /// registration body).
    #[arg(long)]
    pub max_line_bytes: Option<usize>,
    /// age identity file opening the credentials of an export made with
    /// --with-credentials.
    #[arg(long, value_name = "FILE")]
    pub identity: Option<PathBuf>,
}

#[derive(Args, Debug)]
pub struct ExportArgs {
    /// Where to write; standard output when absent.
    #[arg(long, short, value_name = "FILE")]
    pub output: Option<PathBuf>,
    /// Include each account's credentials, sealed to --recipient.
    #[arg(long, requires = "recipient")]
    pub with_credentials: bool,
    /// The age public key (age1…) credentials are sealed to.
    #[arg(long, requires = "with_credentials", value_parser = parse_recipient)]
    pub recipient: Option<tokenwarden::bulk::Recipient>,
    #[arg(long)]
    pub workspace: Option<String>,
    #[arg(long, value_parser = parse_provider)]
    pub provider: Option<Provider>,
}

fn parse_recipient(s: &str) -> Result<tokenwarden::bulk::Recipient, String> {
    s.parse()
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

pub(super) async fn run(settings: Settings, command: AccountsCommand) -> anyhow::Result<ExitCode> {
    match command {
        AccountsCommand::Import(args) => return super::transfer::import(settings, args).await,
        AccountsCommand::Export(args) => return super::transfer::export(settings, args).await,
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
    Ok(ExitCode::SUCCESS)
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
