//! End-to-end daemon benchmark. One command prints, in one run, what a
//! throughput question needs:
//!
//! - PostgreSQL's own ceilings, pgbench alone on the same schema: the
//!   minimal durable outcome (a narrow account row updated, one attempt row
//!   inserted) and tokenwarden's own write (its account row and attempt row,
//!   with all their indexes);
//! - bursts: all accounts due at once, `tokenwarden run` as its own process
//!   against the fake platform, at 0 ms platform latency and at 200 ms with
//!   1,024 refreshes in flight; refreshes/s first to last and the median
//!   second, as ratios of both ceilings, calls per refresh, CPU per refresh of
//!   PostgreSQL, the daemon, Redis and the fake, and the daemon's RSS;
//! - rounds alternating ceilings and bursts, and the medians;
//! - lateness at a steady demand of 80 % of the measured burst capacity;
//! - optionally, the time to claim 1,000 due rows from a large table.
//!
//! ```text
//! scripts/bench.sh [--accounts 20000] [--rounds 3] [--concurrency 256]
//!                  [--concurrency-200ms 1024] [--skip-200ms] [--skip-lateness]
//!                  [--claim-rows 0]
//! ```

mod args;
mod claim;
mod fixture;
mod pgbench;
mod process;
mod procfs;
mod report;
mod runs;

use std::time::{Duration, Instant};

use sqlx::PgPool;

use crate::args::Args;
use crate::fixture::{Fixture, database_url};
use crate::report::Round;

const STEADY_SHARE: f64 = 0.8;
const STEADY_SPAN: Duration = Duration::from_secs(30);

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let Some(args) = args::parse()? else {
        return Ok(());
    };
    let schema = format!("tw_bench_{:08x}", rand::random::<u32>());
    let admin = PgPool::connect(&database_url()).await?;
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!("CREATE SCHEMA {schema}")))
        .execute(&admin)
        .await?;
    let result = run(&args, &schema, &admin).await;
    // The daemon processes and their queues are gone by now, whatever the
    // result; the schema goes with the result.
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!("DROP SCHEMA {schema} CASCADE")))
        .execute(&admin)
        .await?;
    result?;
    if args.claim_rows > 0 {
        claim::claim_timing(&admin, args.claim_rows).await?;
    }
    Ok(())
}

async fn run(args: &Args, schema: &str, admin: &PgPool) -> anyhow::Result<()> {
    let version: String = sqlx::query_scalar("SHOW server_version")
        .fetch_one(admin)
        .await?;
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    println!(
        "tokenwarden end-to-end benchmark: {} accounts, {} round(s), {cores} cores, PostgreSQL {version}",
        args.accounts, args.rounds
    );
    println!(
        "daemon: scheduler every {}, worker poll {}, {} database connections; ceilings: pgbench {}",
        process::SCHEDULER_INTERVAL,
        process::WORKER_POLL,
        process::DATABASE_CONNECTIONS,
        pgbench::FLAGS.join(" ")
    );

    let mut fixture = Fixture::create(schema).await?;
    let started = Instant::now();
    fixture.seed(args.accounts).await?;
    pgbench::seed_minimal(&fixture.pool, args.accounts).await?;
    println!(
        "seeded {} accounts in {:.1} s",
        args.accounts,
        started.elapsed().as_secs_f64()
    );

    let titles = [
        format!("0 ms, {} in flight", args.concurrency),
        format!("200 ms, {} in flight", args.concurrency_200ms),
    ];
    let mut rounds = Vec::new();
    for round in 1..=args.rounds {
        println!("round {round}/{}", args.rounds);
        rounds.push(one_round(args, &fixture, &titles).await?);
    }

    let capacity = report::median(&rounds.iter().map(|r| r.burst_0ms.rate).collect::<Vec<_>>());
    let steady = match capacity {
        Some(capacity) if !args.skip_lateness && capacity > 0.0 => {
            let steady = runs::steady(
                &mut fixture,
                STEADY_SHARE * capacity,
                STEADY_SPAN,
                args.concurrency,
            )
            .await?;
            Some((steady, capacity))
        }
        _ => None,
    };

    println!(
        "\nsummary: {} accounts due at once per burst; ratios against the same round's ceilings",
        args.accounts
    );
    print!(
        "{}",
        report::summary(&rounds, [titles[0].as_str(), titles[1].as_str()])
    );
    if let Some((steady, capacity)) = steady {
        println!("{}", report::steady_lines(&steady, capacity));
    }
    fixture.pool.close().await;
    Ok(())
}

/// Ceilings, then the daemon's bursts, on the same schema and in the same
/// minutes, so each ratio compares runs under the same conditions.
async fn one_round(args: &Args, fixture: &Fixture, titles: &[String; 2]) -> anyhow::Result<Round> {
    fixture.settle().await?;
    let minimal_ceiling = pgbench::minimal_outcome(&fixture.schema, args.accounts).await?;
    fixture.settle().await?;
    let own_ceiling = pgbench::own_write(&fixture.schema, args.accounts).await?;
    println!("{}", report::ceilings_line(minimal_ceiling, own_ceiling));

    let burst_0ms = runs::burst(fixture, args.accounts, Duration::ZERO, args.concurrency).await?;
    println!(
        "{}",
        report::burst_line(&titles[0], &burst_0ms, minimal_ceiling, own_ceiling)
    );
    let burst_200ms = if args.skip_200ms {
        None
    } else {
        let burst = runs::burst(
            fixture,
            args.accounts,
            Duration::from_millis(200),
            args.concurrency_200ms,
        )
        .await?;
        println!(
            "{}",
            report::burst_line(&titles[1], &burst, minimal_ceiling, own_ceiling)
        );
        Some(burst)
    };
    Ok(Round {
        minimal_ceiling,
        own_ceiling,
        burst_0ms,
        burst_200ms,
    })
}
