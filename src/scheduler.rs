//! The scheduler: claims due accounts in PostgreSQL and queues one job per
//! claim. Any number of replicas run it at once: claims are row locks taken
//! with SKIP LOCKED, so replicas divide the work instead of electing a leader.

use std::time::Duration;

use sqlx::PgPool;
use tokio_util::sync::CancellationToken;

use crate::config::Settings;
use crate::domain::Provider;
use crate::queue::{self, JobStorage, RefreshJob};
use crate::store::scheduling;

pub struct Scheduler {
    pool: PgPool,
    storage: JobStorage,
    owner: String,
    interval: Duration,
    batch_size: i64,
    max_outstanding: i64,
    claim_timeout: Duration,
    sweep_batch_size: i64,
    not_refreshable_after_expiry: Vec<Provider>,
}

/// What one scan did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Tick {
    pub expired: u64,
    pub outstanding_before: i64,
    pub queued: usize,
}

impl Scheduler {
    pub fn new(settings: &Settings, pool: PgPool, storage: JobStorage, owner: &str) -> Self {
        let s = &settings.scheduler;
        Self {
            pool,
            storage,
            owner: owner.to_owned(),
            interval: s.interval,
            batch_size: s.batch_size,
            max_outstanding: s.max_outstanding,
            claim_timeout: s.claim_timeout,
            sweep_batch_size: s.sweep_batch_size,
            not_refreshable_after_expiry: Provider::ALL
                .iter()
                .copied()
                .filter(|p| !settings.providers.get(*p).refreshable_after_expiry)
                .collect(),
        }
    }

    /// One scan: sweep accounts dead by time, then claim and queue due
    /// accounts while the outstanding jobs stay under the bound.
    pub async fn tick(&mut self) -> anyhow::Result<Tick> {
        let mut tick = Tick {
            expired: scheduling::sweep_expired(
                &self.pool,
                &self.not_refreshable_after_expiry,
                self.sweep_batch_size,
            )
            .await?,
            ..Tick::default()
        };
        // Redis only carries work: if it lost the queue's data, the jobs of
        // outstanding claims are gone, and waiting out the claim timeout
        // would leave short-lived tokens to expire.
        // Two signs: the queue's marker key is gone (FLUSHALL, a restart
        // without persistence), or it holds no job at all while claims older
        // than a few scans wait (their jobs were evicted). A claim released
        // by mistake costs one skipped job ("claim superseded"), nothing more.
        let lost = if queue::mark_queue_data(&mut self.storage).await? {
            Some(Duration::ZERO)
        } else if queue::holds_no_jobs(&mut self.storage).await? {
            Some((self.interval * 10).max(Duration::from_secs(5)))
        } else {
            None
        };
        if let Some(older_than) = lost {
            let released = scheduling::release_lost_claims(&self.pool, older_than).await?;
            if released > 0 {
                tracing::warn!(
                    released,
                    "Redis lost queued jobs (emptied, restarted without persistence, or evicted); re-queueing their accounts"
                );
            }
        }
        // Claims count what runs; the queue's own depth counts jobs whose
        // claims timed out while no worker took them (workers down), so the
        // queue stays bounded either way.
        let claimed = scheduling::outstanding(&self.pool, self.claim_timeout).await?;
        let queued = queue::depth(&mut self.storage).await?;
        tick.outstanding_before = claimed.max(queued);
        let mut budget = self.max_outstanding - tick.outstanding_before;
        while budget > 0 {
            let want = budget.min(self.batch_size);
            let claimed =
                scheduling::claim_due(&self.pool, &self.owner, want, self.claim_timeout).await?;
            let count = claimed.len();
            if count == 0 {
                break;
            }
            let claims: Vec<_> = claimed
                .iter()
                .map(|c| (c.account_id.clone(), c.claim_id))
                .collect();
            let jobs: Vec<RefreshJob> = claimed.into_iter().map(RefreshJob::from).collect();
            let pushed =
                tokio::time::timeout(queue::PUSH_TIMEOUT, queue::push(&mut self.storage, jobs))
                    .await;
            if !matches!(pushed, Ok(Ok(()))) {
                // Hand the claims back so the next scan (here or on another
                // replica) queues them, instead of waiting for the timeout.
                scheduling::release_claims(&self.pool, &claims).await?;
                match pushed {
                    Ok(Err(e)) => return Err(e),
                    _ => anyhow::bail!("pushing jobs to Redis timed out"),
                }
            }
            tick.queued += count;
            budget -= count as i64;
            if (count as i64) < want {
                break;
            }
        }
        // Housekeeping in the queue; a failure here costs nothing but memory.
        if let Err(e) = queue::trim_done(&mut self.storage, 2 * self.batch_size as usize).await {
            tracing::debug!(error = %e, "trimming finished jobs failed");
        }
        Ok(tick)
    }

    /// Scans every `scheduler.interval` until `shutdown`; errors are logged
    /// and the next scan tries again (PostgreSQL or Redis may come back).
    pub async fn run(mut self, shutdown: CancellationToken) {
        let mut interval = tokio::time::interval(self.interval);
        interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = interval.tick() => {}
            }
            let result = self.tick().await;
            if result.is_ok() {
                crate::metrics::record_scan();
            }
            match result {
                Ok(tick) if tick.queued > 0 || tick.expired > 0 => {
                    tracing::info!(
                        queued = tick.queued,
                        expired = tick.expired,
                        outstanding = tick.outstanding_before,
                        "scan"
                    );
                }
                Ok(_) => {}
                Err(e) => {
                    tracing::warn!(error = %format!("{e:#}"), "scan failed; retrying next interval")
                }
            }
        }
    }
}
