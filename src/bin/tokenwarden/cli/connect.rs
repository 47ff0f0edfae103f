//! `tokenwarden connect PROVIDER --workspace W`: runs the connect flow from
//! a terminal, for an operator trying an app registration. The callback is
//! served on a loopback port (register `http://127.0.0.1:PORT/v1/connect/callback`
//! with the platform); the account is registered in the configured database
//! exactly as through the API.

use std::io::{BufRead, Write};
use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use axum::extract::{Query, State};
use axum::response::IntoResponse;
use tokio::sync::mpsc;
use url::Url;

use tokenwarden::api::CallbackQuery;
use tokenwarden::app::App;
use tokenwarden::config::Settings;
use tokenwarden::connect::{ConnectService, Failed, Finished, Landed, StartRequest};
use tokenwarden::domain::Provider;

#[derive(clap::Args, Debug)]
pub struct ConnectArgs {
    /// The platform, as in the API (X, LINKEDIN_PERSON, MASTODON, ...).
    #[arg(value_parser = parse_provider)]
    provider: Provider,
    /// The workspace the account belongs to.
    #[arg(long)]
    workspace: String,
    /// The loopback port the callback is served on.
    #[arg(long, default_value_t = 8765)]
    port: u16,
    /// Scopes to ask for, comma-separated; the platform's connect_scopes
    /// when absent.
    #[arg(long, value_delimiter = ',')]
    scopes: Vec<String>,
    /// Reconnect this account (acc_...).
    #[arg(long)]
    account_id: Option<String>,
    /// Platform inputs as a JSON object: {"instance": "mastodon.social"},
    /// {"handle": "alice.bsky.social"}, {"page_ids": ["123"]}.
    #[arg(long)]
    extras: Option<String>,
    /// Give up waiting for the browser after this long.
    #[arg(long, default_value = "10m", value_parser = humantime::parse_duration)]
    timeout: Duration,
}

fn parse_provider(s: &str) -> Result<Provider, String> {
    s.to_ascii_uppercase()
        .parse()
        .map_err(|e: tokenwarden::domain::UnknownVariant| e.to_string())
}

pub(super) async fn run(mut settings: Settings, args: ConnectArgs) -> anyhow::Result<ExitCode> {
    let extras = match &args.extras {
        Some(text) => Some(
            serde_json::from_str::<serde_json::Value>(text)
                .context("--extras is not a JSON object")?,
        ),
        None => None,
    };
    let listener = tokio::net::TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], args.port)))
        .await
        .with_context(|| format!("cannot listen on 127.0.0.1:{}", args.port))?;
    let port = listener.local_addr()?.port();
    let base = Url::parse(&format!("http://127.0.0.1:{port}/"))?;
    let done = base.join("done")?;
    settings.connect.public_url = Some(base.clone());
    settings.connect.allowed_redirects = vec![done.clone()];
    let app = App::start(settings).await?;
    let service = ConnectService::new(&app.settings, app.engine.clone())
        .context("building the HTTP client")?;
    let started = service
        .start(StartRequest {
            provider: args.provider,
            workspace_id: args.workspace.clone(),
            redirect_after: done.to_string(),
            scopes: (!args.scopes.is_empty()).then_some(args.scopes.clone()),
            account_id: args.account_id.clone(),
            extras,
        })
        .await
        .map_err(|e| anyhow::anyhow!("{}: {}", e.code, e.message))?;
    println!(
        "Open this URL in a browser and sign in to {}:\n",
        args.provider
    );
    println!("  {}\n", started.authorization_url);
    println!(
        "Waiting for the browser at {}v1/connect/callback (register that redirect URI with the platform)...",
        base
    );

    let (tx, mut rx) = mpsc::channel::<Result<Finished, Failed>>(1);
    let router = axum::Router::new()
        .route("/v1/connect/callback", axum::routing::get(callback))
        .route(
            "/done",
            axum::routing::get(|| async { "tokenwarden: done; you can close this window." }),
        )
        .with_state((service.clone(), tx));
    let server = tokio::spawn(async move { axum::serve(listener, router).await });
    let finished = tokio::time::timeout(args.timeout, rx.recv()).await;
    server.abort();
    let finished = match finished {
        Ok(Some(finished)) => finished,
        Ok(None) => anyhow::bail!("the callback server stopped"),
        Err(_) => anyhow::bail!(
            "no callback within {}",
            humantime::format_duration(args.timeout)
        ),
    };
    let landed = match finished {
        Ok(Finished::Connected { accounts, .. }) => accounts,
        Ok(Finished::ChoiceRequired { options, .. }) => {
            println!("\nChoose the accounts to connect:");
            for option in &options {
                println!("  {}  {}", option.id, option.name);
            }
            print!("ids, comma-separated: ");
            std::io::stdout().flush()?;
            let mut line = String::new();
            std::io::stdin().lock().read_line(&mut line)?;
            let ids: Vec<String> = line
                .split(',')
                .map(|s| s.trim().to_owned())
                .filter(|s| !s.is_empty())
                .collect();
            service
                .choose(&started.state, &ids)
                .await
                .map_err(|e| anyhow::anyhow!("{}: {}", e.code, e.message))?
        }
        Err(Failed { error, .. }) => {
            eprintln!("error: {}: {}", error.code, error.message);
            return Ok(ExitCode::FAILURE);
        }
    };
    print_landed(&landed);
    Ok(ExitCode::SUCCESS)
}

type CallbackState = (ConnectService, mpsc::Sender<Result<Finished, Failed>>);

async fn callback(
    State((service, tx)): State<CallbackState>,
    Query(query): Query<CallbackQuery>,
) -> axum::response::Response {
    let (state, callback) = query.into_parts();
    let Some(state) = state else {
        return (axum::http::StatusCode::BAD_REQUEST, "state is missing").into_response();
    };
    let finished = service.finish(&state, callback).await;
    let page = match &finished {
        Ok(Finished::Connected { .. }) => "tokenwarden: connected; you can close this window.",
        Ok(Finished::ChoiceRequired { .. }) => "tokenwarden: choose the accounts in the terminal.",
        Err(_) => "tokenwarden: the connection failed; see the terminal.",
    };
    let _ = tx.send(finished).await;
    page.into_response()
}

fn print_landed(landed: &[Landed]) {
    for one in landed {
        let account = &one.registered.account;
        println!(
            "\n{} {} ({}, external id {}{})",
            if one.registered.created {
                "connected"
            } else {
                "reconnected"
            },
            account.id,
            account.provider,
            account.external_id,
            account
                .handle
                .as_deref()
                .map(|h| format!(", @{h}"))
                .unwrap_or_default(),
        );
        for warning in &one.warnings {
            println!("  warning: {warning}");
        }
    }
}
