//! The command line of the daemon benchmark.

use std::fmt::Display;
use std::str::FromStr;

pub const USAGE: &str = "\
scripts/bench.sh [--accounts 20000] [--rounds 3] [--concurrency 256]
                 [--concurrency-200ms 1024] [--skip-200ms] [--skip-lateness]
                 [--claim-rows 0]";

pub struct Args {
    /// Accounts due at once in each burst.
    pub accounts: usize,
    /// Rounds of (ceilings, burst at 0 ms, burst at 200 ms).
    pub rounds: usize,
    /// Refreshes in flight at 0 ms platform latency (and for the lateness run).
    pub concurrency: usize,
    /// Refreshes in flight at 200 ms platform latency.
    pub concurrency_200ms: usize,
    pub skip_200ms: bool,
    pub skip_lateness: bool,
    /// Rows of the claim-timing table; 0 skips it.
    pub claim_rows: i64,
}

pub fn parse() -> anyhow::Result<Option<Args>> {
    let mut args = Args {
        accounts: 20_000,
        rounds: 3,
        concurrency: 256,
        concurrency_200ms: 1_024,
        skip_200ms: false,
        skip_lateness: false,
        claim_rows: 0,
    };
    let mut raw = std::env::args().skip(1);
    while let Some(flag) = raw.next() {
        match flag.as_str() {
            // `cargo bench` passes this to every bench binary.
            "--bench" => {}
            "-h" | "--help" => {
                println!("{USAGE}");
                return Ok(None);
            }
            "--accounts" => args.accounts = value(&mut raw, &flag)?,
            "--rounds" => args.rounds = value(&mut raw, &flag)?,
            "--concurrency" => args.concurrency = value(&mut raw, &flag)?,
            "--concurrency-200ms" => args.concurrency_200ms = value(&mut raw, &flag)?,
            "--skip-200ms" => args.skip_200ms = true,
            "--skip-lateness" => args.skip_lateness = true,
            "--claim-rows" => args.claim_rows = value(&mut raw, &flag)?,
            other => anyhow::bail!("unknown option {other}\nusage: {USAGE}"),
        }
    }
    anyhow::ensure!(args.accounts >= 100, "--accounts must be at least 100");
    anyhow::ensure!(args.rounds >= 1, "--rounds must be at least 1");
    anyhow::ensure!(
        args.concurrency >= 1 && args.concurrency_200ms >= 1,
        "concurrency must be at least 1"
    );
    // 1 % of the claim table is due and five claims take 1,000 rows each.
    anyhow::ensure!(
        args.claim_rows == 0 || args.claim_rows >= 500_000,
        "--claim-rows must be 0 (skip) or at least 500000"
    );
    Ok(Some(args))
}

fn value<T>(raw: &mut impl Iterator<Item = String>, flag: &str) -> anyhow::Result<T>
where
    T: FromStr,
    T::Err: Display,
{
    let text = raw
        .next()
        .ok_or_else(|| anyhow::anyhow!("{flag} needs a value"))?;
    text.parse()
        .map_err(|e| anyhow::anyhow!("{flag} {text}: {e}"))
}
