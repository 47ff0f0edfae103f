//! The Redis queue (apalis-redis): it carries refresh jobs from schedulers to
//! workers and nothing else. PostgreSQL claims are the truth: a job lost by
//! Redis costs a delay (its claim times out and is claimed again), and a
//! duplicate job does nothing (its claim no longer matches).

pub mod connection;
pub mod worker;

use std::time::Duration;

use apalis::prelude::TaskSink;
use apalis_redis::{Config as QueueConfig, RedisStorage};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::config::Settings;
use crate::domain::{AccountId, Provider, Trigger};
use crate::store::scheduling::Claimed;

/// One account to refresh, as queued by a scheduler.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct RefreshJob {
    pub account_id: AccountId,
    pub provider: Provider,
    pub trigger: Trigger,
    pub claim_id: Uuid,
    pub planned_at: DateTime<Utc>,
}

impl From<Claimed> for RefreshJob {
    fn from(c: Claimed) -> Self {
        Self {
            account_id: c.account_id,
            provider: c.provider,
            trigger: c.trigger,
            claim_id: c.claim_id,
            planned_at: c.planned_at,
        }
    }
}

pub type JobStorage = RedisStorage<RefreshJob, QueueConnection>;

pub use connection::{Connector, QueueConnection};

/// Connects to Redis in the configured mode (our own connection settings: 5 s
/// response timeout by default instead of the driver's 500 ms) and applies
/// the settings that
/// DEPENDENCIES.md found necessary: an explicit queue name, no per-task list
/// scan (`lock_tasks(false)`), and a short heartbeat so a dead worker's jobs
/// move on within seconds.
pub async fn connect(settings: &Settings, queue: &str) -> anyhow::Result<JobStorage> {
    let conn = Connector::new(&settings.redis)?.connect().await?;
    let config = QueueConfig::default()
        .queue(queue)
        .lock_tasks(false)
        .heartbeat_interval(settings.worker.heartbeat_interval)
        .missed_heartbeats(settings.worker.missed_heartbeats)
        // The ack channel holds 4 x batch_size; with more jobs in flight a
        // graceful shutdown deadlocks (apalis-redis 1.0).
        .batch_size(settings.worker.concurrency.div_ceil(4).max(10))
        // Nobody listens for per-job events. (Results must stay persisted:
        // without them no ack is sent and jobs are re-run.)
        .emit_events(false);
    Ok(RedisStorage::new(conn).with_config(config))
}

/// Pushes jobs in one round of commands.
pub async fn push(storage: &mut JobStorage, jobs: Vec<RefreshJob>) -> anyhow::Result<()> {
    if jobs.is_empty() {
        return Ok(());
    }
    storage
        .push_bulk(jobs)
        .await
        .map_err(|e| anyhow::anyhow!("pushing jobs to Redis failed: {e}"))
}

/// How long a queue operation may take before the scheduler gives up on it.
pub const PUSH_TIMEOUT: Duration = Duration::from_secs(10);

/// Deletes every key of a queue (demo and test queues are per run).
pub async fn purge(settings: &Settings, queue: &str) -> anyhow::Result<u64> {
    let mut conn = Connector::new(&settings.redis)?.connect().await?;
    let pattern = format!("{}*", redis_glob_escape(queue));
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg(&pattern)
        .query_async(&mut conn)
        .await?;
    let mut deleted = 0;
    for chunk in keys.chunks(500) {
        let n: u64 = redis::cmd("DEL").arg(chunk).query_async(&mut conn).await?;
        deleted += n;
    }
    // apalis also lists every queue in one global registry.
    let _: u64 = redis::cmd("ZREM")
        .arg("core:apalis:queues:list")
        .arg(format!("{queue}:workers"))
        .query_async(&mut conn)
        .await?;
    Ok(deleted)
}

fn redis_glob_escape(s: &str) -> String {
    s.chars()
        .flat_map(|c| match c {
            '*' | '?' | '[' | ']' | '\\' => vec!['\\', c],
            c => vec![c],
        })
        .collect()
}

/// apalis-redis keeps every finished job's id in `{queue}:done`, its
/// arguments in `{queue}:data` and a `{queue}:meta:<id>` hash, and never
/// removes them. The daemon reads none of it (PostgreSQL has the results),
/// so finished jobs are dropped here, up to `max` per call.
pub async fn trim_done(storage: &mut JobStorage, max: usize) -> anyhow::Result<usize> {
    let queue = storage.get_config().queue.as_ref().to_owned();
    let conn = storage.get_connection();
    let done: Vec<String> = redis::cmd("SPOP")
        .arg(format!("{queue}:done"))
        .arg(max)
        .query_async(conn)
        .await?;
    if done.is_empty() {
        return Ok(0);
    }
    let mut pipe = redis::pipe();
    pipe.cmd("HDEL")
        .arg(format!("{queue}:data"))
        .arg(&done)
        .ignore();
    let meta: Vec<String> = done.iter().map(|id| format!("{queue}:meta:{id}")).collect();
    pipe.cmd("DEL").arg(&meta).ignore();
    let () = pipe.query_async(conn).await?;
    Ok(done.len())
}

/// Jobs waiting in the queue (every push lands in apalis's scheduled set;
/// fetched ones move to the active list).
/// Makes sure this queue's marker key exists in Redis. The marker is set
/// once and lives as long as Redis keeps the queue's data: finding it gone
/// (FLUSHALL, a restart without persistence) means every job that was
/// queued is gone too. True when this call had to set it again.
pub async fn mark_queue_data(storage: &mut JobStorage) -> anyhow::Result<bool> {
    let queue = storage.get_config().queue.as_ref().to_owned();
    let conn = storage.get_connection();
    let set: Option<String> = redis::cmd("SET")
        .arg(format!("{queue}:marker"))
        .arg(Uuid::new_v4().to_string())
        .arg("NX")
        .query_async(conn)
        .await?;
    Ok(set.is_some())
}

/// Whether Redis holds no job of this queue at all, queued or in flight
/// (every job's data lives in one hash until it is trimmed after it ends).
pub async fn holds_no_jobs(storage: &mut JobStorage) -> anyhow::Result<bool> {
    let queue = storage.get_config().queue.as_ref().to_owned();
    let conn = storage.get_connection();
    let jobs: i64 = redis::cmd("HLEN")
        .arg(format!("{queue}:data"))
        .query_async(conn)
        .await?;
    Ok(jobs == 0)
}

pub async fn depth(storage: &mut JobStorage) -> anyhow::Result<i64> {
    let queue = storage.get_config().queue.as_ref().to_owned();
    let conn = storage.get_connection();
    let (scheduled, active): (i64, i64) = redis::pipe()
        .cmd("ZCARD")
        .arg(format!("{queue}:scheduled"))
        .cmd("LLEN")
        .arg(format!("{queue}:active"))
        .query_async(conn)
        .await?;
    Ok(scheduled + active)
}
