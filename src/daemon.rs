//! `tokenwarden run`: the long-running daemon, in the roles asked for.

use std::str::FromStr;
use std::sync::Arc;

use anyhow::Context;
use tokio_util::sync::CancellationToken;

use futures::FutureExt;

use crate::api::{self, ApiState};
use crate::app::App;
use crate::console::{self, ConsoleState};
use crate::gate::ProviderGates;
use crate::queue::{self, worker};
use crate::scheduler::Scheduler;
use crate::systemd;
use crate::webhooks::Dispatcher;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    Scheduler,
    Worker,
    Api,
}

impl FromStr for Role {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim() {
            "scheduler" => Ok(Role::Scheduler),
            "worker" => Ok(Role::Worker),
            "api" => Ok(Role::Api),
            other => Err(format!(
                "unknown role {other:?}; expected scheduler, worker or api"
            )),
        }
    }
}

/// Runs the roles until `shutdown` fires; in-flight refreshes get
/// `shutdown.grace` to finish.
pub async fn run(
    app: App,
    roles: Vec<Role>,
    queue_name: String,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    for warning in app.settings.warnings() {
        tracing::warn!("{warning}");
    }
    let storage = queue::connect(&app.settings, &queue_name).await?;
    let owner = app.engine.owner().to_owned();
    let engine = app.engine.clone();
    let grace = app.settings.shutdown.grace;
    let mut tasks = tokio::task::JoinSet::new();
    {
        let state = ApiState::new(&app.settings, app.engine.clone())?;
        let settings = app.settings.clone();
        let stop = shutdown.clone();
        let with_v1 = roles.contains(&Role::Api);
        let console = ConsoleState::new(&app.settings, app.engine.clone()).map(console::router);
        if console.is_some() {
            tracing::info!(path = %app.settings.console.path, "operator console served");
        }
        tasks.spawn(async move { api::serve(&settings, state, with_v1, console, stop).await });
    }
    if roles.contains(&Role::Api) {
        let (pool, metrics, webhooks) = (
            app.pool.clone(),
            app.settings.metrics.clone(),
            app.settings.webhooks.url.is_some(),
        );
        let stop = shutdown.clone();
        tasks.spawn(async move {
            crate::store::census::collect_state(
                pool,
                metrics.state_interval,
                metrics.overdue_after,
                webhooks,
                stop,
            )
            .await;
            Ok(())
        });
    }
    if roles.contains(&Role::Scheduler) {
        if let Some(dispatcher) =
            Dispatcher::from_settings(&app.settings.webhooks, app.pool.clone())?
        {
            let stop = shutdown.clone();
            tasks.spawn(async move {
                dispatcher.run(stop).await;
                Ok(())
            });
        }
        let scheduler = Scheduler::new(&app.settings, app.pool.clone(), storage.clone(), &owner);
        let stop = shutdown.clone();
        tasks.spawn(async move {
            scheduler.run(stop).await;
            Ok(())
        });
    }
    if roles.contains(&Role::Worker) {
        let gates = Arc::new(ProviderGates::from_settings(&app.settings));
        let stop = shutdown.clone();
        tasks.spawn(crate::gate::publish_gauges(gates.clone(), stop).map(Ok));
        let stop = shutdown.clone();
        tasks.spawn(
            crate::gate::share_state(gates.clone(), app.pool.clone(), owner.clone(), stop).map(Ok),
        );
        let ctx = Arc::new(worker::JobContext {
            engine: app.engine.clone(),
            gates,
            pool: app.pool.clone(),
            job_timeout: app.settings.worker.job_timeout,
            refreshes: tokio_util::task::TaskTracker::new(),
        });
        // Refreshes outlive their job only up to the lease.
        let last_call = app.settings.lease_duration();
        let settings = Arc::new(app.settings);
        let stop = shutdown.clone();
        tasks.spawn(async move {
            let result = worker::run(&settings, storage, ctx.clone(), &owner, stop).await;
            ctx.refreshes.close();
            if tokio::time::timeout(last_call, ctx.refreshes.wait())
                .await
                .is_err()
            {
                tracing::error!("refreshes still running at exit; their leases will expire");
            }
            result
        });
    }
    tracing::info!(?roles, queue = %queue_name, "tokenwarden running");
    systemd::ready();
    let watchdog = systemd::watchdog(shutdown.clone());
    let mut result = Ok(());
    // Counted from the first signal (or the first role to fail).
    let mut exit_by: Option<tokio::time::Instant> = None;
    loop {
        let done = match exit_by {
            None => tokio::select! {
                done = tasks.join_next() => done,
                _ = shutdown.cancelled() => {
                    exit_by = Some(tokio::time::Instant::now() + grace);
                    continue;
                }
            },
            Some(deadline) => match tokio::time::timeout_at(deadline, tasks.join_next()).await {
                Ok(done) => done,
                Err(_) => {
                    tracing::error!("roles still running after shutdown.grace; stopping them");
                    tasks.abort_all();
                    break;
                }
            },
        };
        let Some(done) = done else { break };
        let outcome = done.context("a daemon task panicked").and_then(|r| r);
        if let Err(e) = outcome {
            tracing::error!(error = %format!("{e:#}"), "a daemon role stopped");
            shutdown.cancel();
            result = Err(e);
        }
    }
    systemd::stopping();
    watchdog.abort();
    let deadline = exit_by.unwrap_or_else(|| tokio::time::Instant::now() + grace);
    match wait_for_refreshes(&engine, deadline).await {
        Ok(()) => result,
        Err(e) => Err(result.err().map_or(e, |first| {
            first.context("also: grants in hand were not stored")
        })),
    }
}

/// Refreshes run in tasks of their own: each gets until `deadline` to
/// finish. New tokens the platform issued and the database never stored
/// are the one loss the daemon cannot undo, so each is logged (the account,
/// never the token) and the exit is a failure.
async fn wait_for_refreshes(
    engine: &crate::engine::Engine,
    deadline: tokio::time::Instant,
) -> anyhow::Result<()> {
    let refreshes = engine.refreshes();
    refreshes.close();
    if tokio::time::timeout_at(deadline, refreshes.wait())
        .await
        .is_err()
    {
        tracing::warn!(
            running = refreshes.len(),
            "refreshes still running at exit; their leases will expire and mark them interrupted"
        );
    }
    let stranded = engine.grants_in_hand();
    for account in &stranded {
        tracing::error!(
            account_id = %account,
            "a grant in hand could not be stored before exit: the platform issued new tokens \
             that were not written; if its refresh tokens rotate, the account needs a reconnect"
        );
    }
    if stranded.is_empty() {
        Ok(())
    } else {
        anyhow::bail!(
            "{} grant(s) in hand could not be stored before exit (see the log for the accounts)",
            stranded.len()
        )
    }
}

/// A token cancelled by the first SIGTERM or Ctrl-C; a second signal exits
/// the process at once.
pub fn shutdown_on_signals() -> CancellationToken {
    let token = CancellationToken::new();
    let cancel = token.clone();
    tokio::spawn(async move {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(term) => term,
                Err(e) => {
                    tracing::error!(error = %e, "cannot listen for SIGTERM");
                    return;
                }
            };
        for count in 0.. {
            tokio::select! {
                _ = term.recv() => {}
                _ = tokio::signal::ctrl_c() => {}
            }
            if count == 0 {
                tracing::info!(
                    "shutting down: finishing refreshes in flight (a second signal exits at once)"
                );
                cancel.cancel();
            } else {
                tracing::warn!("second signal: exiting now");
                std::process::exit(130);
            }
        }
    });
    token
}
