//! The daemon's measured runs: a burst (every account due at once) and a
//! steady demand (accounts due one after another at a fixed rate).

use std::time::{Duration, Instant};

use crate::fixture::{Fixture, Lateness, RowUpdates};
use crate::process::Daemon;
use crate::procfs::{Cpu, memory_kib};

/// How long the daemon idles, ready and with nothing due, before its idle
/// memory is read.
const IDLE: Duration = Duration::from_secs(1);

pub struct Burst {
    pub accounts: usize,
    pub refreshed: usize,
    /// From the first refresh's start to the last one's end.
    pub window_secs: f64,
    pub rate: f64,
    /// Median of the per-second rates between 10 % and 90 % of the work;
    /// None when the burst had no whole second in that part.
    pub steady_rate: Option<f64>,
    pub calls_per_refresh: f64,
    pub cpu_ms: [f64; 4],
    pub idle_rss_kib: u64,
    pub peak_rss_kib: u64,
    /// Account row, schedule row: (updates per refresh, share heap-only).
    pub row_updates: [(f64, f64); 2],
}

pub async fn burst(
    fixture: &Fixture,
    accounts: usize,
    latency: Duration,
    concurrency: usize,
) -> anyhow::Result<Burst> {
    fixture.settle().await?;
    fixture.fake.set_answer_delay(latency);
    let mut daemon = Daemon::start(fixture, concurrency).await?;
    let result = measure_burst(fixture, &mut daemon, accounts).await;
    let stopped = daemon.stop().await;
    fixture.fake.set_answer_delay(Duration::ZERO);
    let (mut burst, updates_before) = result?;
    stopped?;
    // The daemon's backends have handed over their counts as they exited.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let updates_after = fixture
        .row_updates(&mut *fixture.pool.acquire().await?)
        .await?;
    burst.row_updates = updates_after.per_refresh(&updates_before, burst.refreshed);
    Ok(burst)
}

/// The burst's figures, and the row updates counted before it.
async fn measure_burst(
    fixture: &Fixture,
    daemon: &mut Daemon,
    accounts: usize,
) -> anyhow::Result<(Burst, RowUpdates)> {
    tokio::time::sleep(IDLE).await;
    let idle_rss_kib = memory_kib(daemon.pid, "VmRSS:");
    let calls_before = fixture.fake.call_count();
    let updates_before = fixture.make_due_now(accounts).await?;
    let cpu_before = Cpu::take(daemon.pid);
    let deadline = Instant::now() + Duration::from_secs(60 + accounts as u64 / 100);
    let refreshed = wait_for(fixture, daemon, calls_before, accounts, deadline).await?;
    let cpu_after = Cpu::take(daemon.pid);
    let peak_rss_kib = memory_kib(daemon.pid, "VmHWM:");
    let calls = fixture.fake.call_count() - calls_before;

    let times = fixture.refresh_times().await?;
    let first = times.iter().map(|t| t.0).fold(f64::INFINITY, f64::min);
    let window_secs = window_secs(&times);
    let mut finished: Vec<f64> = times.iter().map(|t| t.1 - first).collect();
    finished.sort_by(f64::total_cmp);
    let burst = Burst {
        accounts,
        refreshed,
        window_secs,
        rate: times.len() as f64 / window_secs,
        steady_rate: steady_rate(&finished),
        calls_per_refresh: calls as f64 / refreshed.max(1) as f64,
        cpu_ms: cpu_after.ms_per(&cpu_before, refreshed),
        idle_rss_kib,
        peak_rss_kib,
        row_updates: [(0.0, 0.0); 2],
    };
    Ok((burst, updates_before))
}

/// From the first refresh's start to the last one's end.
fn window_secs(times: &[(f64, f64)]) -> f64 {
    let first = times.iter().map(|t| t.0).fold(f64::INFINITY, f64::min);
    let last = times.iter().map(|t| t.1).fold(f64::NEG_INFINITY, f64::max);
    last - first
}

/// Waits until `count` refreshes are recorded, or the deadline. The fake's
/// call counter is read first, so PostgreSQL is polled only near the end.
async fn wait_for(
    fixture: &Fixture,
    daemon: &mut Daemon,
    calls_before: usize,
    count: usize,
    deadline: Instant,
) -> anyhow::Result<usize> {
    loop {
        tokio::time::sleep(Duration::from_millis(100)).await;
        daemon.check_alive()?;
        let late = Instant::now() > deadline;
        if fixture.fake.call_count() - calls_before >= count || late {
            let done = fixture.refreshed().await?;
            if done >= count || late {
                return Ok(done);
            }
        }
    }
}

/// Per-second completions over the steady part: whole seconds after the
/// first 10 % and before the last 10 % of the work. `finished` is sorted,
/// in seconds from the first refresh's start.
fn steady_rate(finished: &[f64]) -> Option<f64> {
    let total = finished.len() as f64;
    let done_by = |t: f64| finished.partition_point(|&f| f <= t) as f64;
    let last = finished.last().copied().unwrap_or(0.0).floor() as usize;
    let rates: Vec<f64> = (0..last)
        .map(|s| (done_by(s as f64), done_by(s as f64 + 1.0)))
        .filter(|(from, to)| *from >= 0.1 * total && *to <= 0.9 * total)
        .map(|(from, to)| to - from)
        .collect();
    crate::report::median(&rates)
}

pub struct Steady {
    pub rate: f64,
    pub accounts: usize,
    pub span_secs: f64,
    pub refreshed: usize,
    /// Refreshes per second from the first refresh's start to the last one's
    /// end: below `rate` when the daemon fell behind.
    pub achieved: f64,
    pub lateness: Lateness,
    pub calls_per_refresh: f64,
    pub cpu_ms: [f64; 4],
    pub peak_rss_kib: u64,
}

/// `rate` refreshes per second fall due for about `span`, at 0 ms latency.
pub async fn steady(
    fixture: &mut Fixture,
    rate: f64,
    span: Duration,
    concurrency: usize,
) -> anyhow::Result<Steady> {
    let accounts = (rate * span.as_secs_f64()).round().max(1.0) as usize;
    if accounts > fixture.seeded {
        fixture.seed(accounts - fixture.seeded).await?;
    }
    fixture.settle().await?;
    let mut daemon = Daemon::start(fixture, concurrency).await?;
    let result = measure_steady(fixture, &mut daemon, accounts, rate).await;
    let stopped = daemon.stop().await;
    let steady = result?;
    stopped?;
    Ok(steady)
}

async fn measure_steady(
    fixture: &Fixture,
    daemon: &mut Daemon,
    accounts: usize,
    rate: f64,
) -> anyhow::Result<Steady> {
    tokio::time::sleep(IDLE).await;
    let calls_before = fixture.fake.call_count();
    let span = fixture
        .plan_steady(accounts, rate, Duration::from_secs(2))
        .await?;
    let cpu_before = Cpu::take(daemon.pid);
    let deadline = Instant::now() + span + Duration::from_secs(60);
    let refreshed = wait_for(fixture, daemon, calls_before, accounts, deadline).await?;
    let cpu_after = Cpu::take(daemon.pid);
    let times = fixture.refresh_times().await?;
    Ok(Steady {
        rate,
        accounts,
        span_secs: span.as_secs_f64(),
        refreshed,
        achieved: times.len() as f64 / window_secs(&times),
        lateness: fixture.lateness(accounts).await?,
        calls_per_refresh: (fixture.fake.call_count() - calls_before) as f64
            / refreshed.max(1) as f64,
        cpu_ms: cpu_after.ms_per(&cpu_before, refreshed),
        peak_rss_kib: memory_kib(daemon.pid, "VmHWM:"),
    })
}
