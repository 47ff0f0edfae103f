//! The printed figures: one line per run as it finishes, and the summary
//! table of every round and the medians at the end.

use crate::procfs::PROGRAMS;
use crate::runs::{Burst, Steady};

pub struct Round {
    pub minimal_ceiling: f64,
    pub own_ceiling: f64,
    pub burst_0ms: Burst,
    pub burst_200ms: Option<Burst>,
}

pub fn median(values: &[f64]) -> Option<f64> {
    let mut sorted: Vec<f64> = values.iter().copied().filter(|v| !v.is_nan()).collect();
    sorted.sort_by(f64::total_cmp);
    let n = sorted.len();
    match n {
        0 => None,
        _ if n % 2 == 1 => Some(sorted[n / 2]),
        _ => Some((sorted[n / 2 - 1] + sorted[n / 2]) / 2.0),
    }
}

fn mb(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

fn cpu_text(cpu_ms: &[f64; 4]) -> String {
    PROGRAMS
        .iter()
        .zip(cpu_ms)
        .map(|(name, ms)| format!("{name} {ms:.2}"))
        .collect::<Vec<_>>()
        .join(", ")
}

pub fn ceilings_line(minimal: f64, own: f64) -> String {
    format!("  ceilings (pgbench tx/s): minimal outcome {minimal:.0}, own write {own:.0}")
}

pub fn burst_line(name: &str, burst: &Burst, minimal: f64, own: f64) -> String {
    format!(
        "  burst {name}: {}/{} refreshed in {:.1} s = {:.0}/s (steady median {}), \
         x{:.2} minimal, x{:.2} own write; {:.3} calls/refresh\n    \
         CPU ms/refresh: {}; daemon RSS idle {:.1} MB, peak {:.1} MB\n    \
         row updates/refresh: account {:.2} ({:.0} % heap-only), schedule {:.2} ({:.0} % heap-only)",
        burst.refreshed,
        burst.accounts,
        burst.window_secs,
        burst.rate,
        burst
            .steady_rate
            .map_or("-".to_owned(), |r| format!("{r:.0}/s")),
        burst.rate / minimal,
        burst.rate / own,
        burst.calls_per_refresh,
        cpu_text(&burst.cpu_ms),
        mb(burst.idle_rss_kib),
        mb(burst.peak_rss_kib),
        burst.row_updates[0].0,
        burst.row_updates[0].1 * 100.0,
        burst.row_updates[1].0,
        burst.row_updates[1].1 * 100.0,
    )
}

pub fn steady_lines(steady: &Steady, capacity: f64) -> String {
    format!(
        "lateness at {:.0} % of burst capacity ({capacity:.0}/s): {:.0} due/s for {:.0} s ({} accounts)\n  \
         refresh start - planned: p50 {:.3} s, p99 {:.3} s, max {:.3} s\n  \
         refreshed {}/{} at {:.0}/s, expired un-refreshed {}, {:.3} calls/refresh\n  \
         CPU ms/refresh: {}; daemon RSS peak {:.1} MB",
        steady.rate / capacity * 100.0,
        steady.rate,
        steady.span_secs,
        steady.accounts,
        steady.lateness.p50,
        steady.lateness.p99,
        steady.lateness.max,
        steady.refreshed,
        steady.accounts,
        steady.achieved,
        steady.lateness.expired,
        steady.calls_per_refresh,
        cpu_text(&steady.cpu_ms),
        mb(steady.peak_rss_kib),
    )
}

/// One figure across the rounds; None where a round has no such figure.
struct Row {
    label: String,
    values: Vec<Option<f64>>,
    decimals: usize,
}

fn burst_rows(
    rows: &mut Vec<Row>,
    rounds: &[Round],
    title: &str,
    pick: impl Fn(&Round) -> Option<&Burst>,
) {
    if rounds.iter().all(|r| pick(r).is_none()) {
        return;
    }
    let mut row = |label: &str, decimals: usize, value: &dyn Fn(&Round, &Burst) -> Option<f64>| {
        rows.push(Row {
            label: format!("  {label}"),
            values: rounds
                .iter()
                .map(|r| pick(r).and_then(|b| value(r, b)))
                .collect(),
            decimals,
        });
    };
    row(
        &format!("{title}: refreshes/s, first to last"),
        0,
        &|_, b| Some(b.rate),
    );
    row("refreshes/s, median second (steady)", 0, &|_, b| {
        b.steady_rate
    });
    row("x minimal-outcome ceiling (goal 0.9)", 2, &|r, b| {
        Some(b.rate / r.minimal_ceiling)
    });
    row("x own-write ceiling", 2, &|r, b| {
        Some(b.rate / r.own_ceiling)
    });
    row("calls per refresh", 3, &|_, b| Some(b.calls_per_refresh));
    for (i, name) in PROGRAMS.iter().enumerate() {
        row(&format!("CPU ms/refresh, {name}"), 2, &|_, b| {
            Some(b.cpu_ms[i])
        });
    }
    for (i, table) in ["account", "schedule"].iter().enumerate() {
        row(&format!("{table} row updates/refresh"), 2, &|_, b| {
            Some(b.row_updates[i].0)
        });
        row(&format!("{table} row updates heap-only, %"), 0, &|_, b| {
            Some(b.row_updates[i].1 * 100.0)
        });
    }
    row("daemon RSS idle, MB", 1, &|_, b| Some(mb(b.idle_rss_kib)));
    row("daemon RSS peak, MB", 1, &|_, b| Some(mb(b.peak_rss_kib)));
    row("un-refreshed at the end", 0, &|_, b| {
        Some((b.accounts - b.refreshed.min(b.accounts)) as f64)
    });
}

pub fn summary(rounds: &[Round], titles: [&str; 2]) -> String {
    let mut rows = vec![
        Row {
            label: "ceiling, minimal outcome (pgbench tx/s)".into(),
            values: rounds.iter().map(|r| Some(r.minimal_ceiling)).collect(),
            decimals: 0,
        },
        Row {
            label: "ceiling, own write (pgbench tx/s)".into(),
            values: rounds.iter().map(|r| Some(r.own_ceiling)).collect(),
            decimals: 0,
        },
    ];
    burst_rows(&mut rows, rounds, titles[0], |r| Some(&r.burst_0ms));
    burst_rows(&mut rows, rounds, titles[1], |r| r.burst_200ms.as_ref());

    let width = rows.iter().map(|r| r.label.len()).max().unwrap_or(0);
    let mut out = format!("{:<width$}", "");
    for i in 1..=rounds.len() {
        out += &format!(" {:>9}", format!("round {i}"));
    }
    out += &format!(" {:>9}\n", "median");
    let cell = |v: Option<f64>, decimals: usize| {
        v.filter(|v| !v.is_nan())
            .map_or("-".to_owned(), |v| format!("{v:.decimals$}"))
    };
    for row in &rows {
        out += &format!("{:<width$}", row.label);
        for value in &row.values {
            out += &format!(" {:>9}", cell(*value, row.decimals));
        }
        let present: Vec<f64> = row.values.iter().flatten().copied().collect();
        out += &format!(" {:>9}\n", cell(median(&present), row.decimals));
    }
    if rows.iter().any(|r| r.values.iter().any(Option::is_none)) {
        out += "-: no figure (a burst too short to have a whole second between 10 % and 90 % of its refreshes)\n";
    }
    out
}
