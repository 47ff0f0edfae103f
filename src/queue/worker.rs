//! Workers: take jobs from Redis, pass each through the provider's gate, run
//! it through the engine, and always return Ok: the retry policy lives in
//! PostgreSQL (next attempt time), not in the queue.

use std::sync::Arc;
use std::time::Duration;

use apalis::layers::WorkerBuilderExt;
use apalis::prelude::*;
use chrono::Utc;
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;

use crate::config::Settings;
use crate::domain::Outcome;
use crate::engine::Engine;
use crate::gate::{Admission, ProviderGates};
use crate::policy::delta;
use crate::queue::{JobStorage, RefreshJob};
use crate::store::scheduling;

/// What every job handler shares.
pub struct JobContext {
    pub engine: Engine,
    pub gates: Arc<ProviderGates>,
    pub pool: PgPool,
    pub job_timeout: Duration,
    /// Refreshes in flight; the daemon waits for them before it exits.
    pub refreshes: tokio_util::task::TaskTracker,
}

impl JobContext {
    /// Runs one job to its end; never fails the job (see module docs).
    pub async fn process(&self, job: RefreshJob) {
        let permit = match self.gates.admit(job.provider).await {
            Admission::Go(permit) => permit,
            Admission::Paused { retry_in } => {
                let until = Utc::now() + delta(retry_in);
                if let Err(e) =
                    scheduling::postpone(&self.pool, &job.account_id, job.claim_id, until).await
                {
                    tracing::warn!(account_id = %job.account_id, error = %e, "could not postpone; the claim will time out instead");
                }
                return;
            }
        };
        // The refresh runs in a task of its own: the job timeout stops the
        // waiting, never the refresh, which could otherwise be cut between
        // the platform's answer and the write of a rotated token. The
        // refresh is bounded by the lease and the single-flight wait.
        let (engine, gates) = (self.engine.clone(), self.gates.clone());
        let (account, trigger, claim) = (job.account_id.clone(), job.trigger, job.claim_id);
        let refresh = self.refreshes.spawn(async move {
            let result = engine.refresh_claimed(&account, trigger, claim).await;
            if let Ok(report) = &result {
                let superseded = report.outcome == Outcome::Skipped
                    && report.message.as_deref() == Some("claim superseded");
                if !superseded {
                    gates.record_report(report);
                }
            }
            drop(permit);
            result
        });
        match tokio::time::timeout(self.job_timeout, refresh).await {
            Ok(Ok(Ok(report))) => {
                let lateness = (Utc::now() - job.planned_at).num_milliseconds();
                tracing::debug!(account_id = %job.account_id, outcome = %report.outcome, lateness_ms = lateness, "job done");
            }
            Ok(Ok(Err(e))) => {
                tracing::warn!(account_id = %job.account_id, error = %e, "job failed; its claim will time out and be retried")
            }
            Ok(Err(e)) => {
                tracing::error!(account_id = %job.account_id, error = %e, "refresh task panicked")
            }
            Err(_) => {
                tracing::warn!(account_id = %job.account_id, "refresh still running after worker.job_timeout; it finishes in the background")
            }
        }
    }
}

async fn handle(job: RefreshJob, ctx: Data<Arc<JobContext>>) -> Result<(), BoxDynError> {
    ctx.process(job).await;
    Ok(())
}

/// Runs the worker pool until `shutdown` fires, then lets jobs in flight
/// finish within `shutdown.grace`. A worker dies on any Redis error
/// (apalis-redis 1.0); the pool is then rebuilt after a pause that doubles
/// from 0.5 s to 30 s, under a new worker name each time (apalis refuses a
/// name still within its heartbeat window).
pub async fn run(
    settings: &Settings,
    storage: JobStorage,
    ctx: Arc<JobContext>,
    owner: &str,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    const FIRST_PAUSE: Duration = Duration::from_millis(500);
    let concurrency = settings.worker.concurrency;
    let poll = settings.worker.poll_interval;
    let mut pause = FIRST_PAUSE;
    for generation in 0u64.. {
        let started = tokio::time::Instant::now();
        let (storage, ctx) = (storage.clone(), ctx.clone());
        let name = format!("{owner}-worker-{generation}");
        let monitor = Monitor::new()
            .register(move |restarts| {
                WorkerBuilder::new(format!("{name}-{restarts}"))
                    .backend(storage.clone().poll_with_interval(poll))
                    .data(ctx.clone())
                    .concurrency(concurrency)
                    .build(handle)
            })
            .should_restart(|worker, error| {
                tracing::error!(worker = worker.name(), %error, "worker stopped");
                false
            })
            .shutdown_timeout(settings.shutdown.grace);
        let stop = shutdown.clone();
        let result = monitor
            .run_with_signal(async move {
                stop.cancelled().await;
                Ok(())
            })
            .await;
        if shutdown.is_cancelled() {
            return result.map_err(|e| anyhow::anyhow!("worker pool: {e}"));
        }
        // The pool ended on its own: its worker died.
        if started.elapsed() > Duration::from_secs(60) {
            pause = FIRST_PAUSE;
        }
        tracing::warn!(
            pause_ms = pause.as_millis() as u64,
            "worker pool stopped; restarting"
        );
        tokio::select! {
            _ = tokio::time::sleep(pause) => {}
            _ = shutdown.cancelled() => return Ok(()),
        }
        pause = (pause * 2).min(Duration::from_secs(30));
    }
    unreachable!("the generation counter does not run out")
}
