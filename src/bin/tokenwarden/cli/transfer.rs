//! `tokenwarden accounts import` and `accounts export`: the terminal side
//! (files, progress bar, summary) of `tokenwarden::bulk`.

use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use secrecy::SecretString;
use tokio::io::{AsyncBufRead, BufReader};

use tokenwarden::app::{self, App};
use tokenwarden::bulk::{
    ExportOptions, Identities, Import, ImportContext, ImportOptions, Outcome, Summary,
};
use tokenwarden::config::Settings;

use super::accounts::{ExportArgs, ImportArgs};

pub(super) async fn import(settings: Settings, args: ImportArgs) -> anyhow::Result<ExitCode> {
    // The identity is read before anything else, so a wrong file fails
    // before any line is read.
    let identities = args
        .identity
        .as_ref()
        .map(|path| -> anyhow::Result<Identities> {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("reading --identity {}", path.display()))?;
            Identities::parse(&SecretString::from(text))
                .map_err(|problem| anyhow::anyhow!("--identity {}: {problem}", path.display()))
        })
        .transpose()?;
    let max_line_bytes = args
        .max_line_bytes
        .unwrap_or(settings.api.max_body_bytes)
        .max(1);
    let app = App::start(settings).await?;
    let options = ImportOptions {
        batch_size: usize::from(args.batch_size),
        max_line_bytes,
        dry_run: args.dry_run,
        exports: Some(identities),
    };
    let context = ImportContext {
        pool: &app.pool,
        keyring: &app.keyring,
        policies: &app.engine.config().policies,
    };
    let (input, size): (Box<dyn AsyncBufRead + Unpin + Send>, Option<u64>) =
        if args.file.as_os_str() == "-" {
            (Box::new(BufReader::new(tokio::io::stdin())), None)
        } else {
            let file = tokio::fs::File::open(&args.file)
                .await
                .with_context(|| format!("opening {}", args.file.display()))?;
            let size = file.metadata().await.ok().map(|m| m.len());
            (Box::new(BufReader::with_capacity(256 * 1024, file)), size)
        };
    let bar = progress_bar(size);
    let mut import = Import::new(context, options, input);
    while let Some(results) = import.next_batch().await? {
        for result in &results {
            if matches!(
                result.outcome,
                Outcome::Invalid { .. } | Outcome::Failed { .. }
            ) {
                // The message names the line and field, never a value.
                bar.suspend(|| eprintln!("{result}"));
            }
        }
        match size {
            Some(_) => bar.set_position(import.bytes_read()),
            None => bar.set_position(import.summary().lines),
        }
        bar.set_message(progress_message(import.summary()));
    }
    bar.finish_and_clear();
    let elapsed = import.elapsed();
    let summary = import.finish().await.context("refreshing statistics")?;
    println!("{}", summary_line(&summary, elapsed));
    if summary.is_clean() {
        Ok(ExitCode::SUCCESS)
    } else {
        eprintln!(
            "{} line(s) were not imported (listed above, by line number)",
            summary.invalid + summary.failed
        );
        Ok(ExitCode::FAILURE)
    }
}

/// A bar over the file's bytes, or a line counter for standard input;
/// drawn only when standard error is a terminal.
fn progress_bar(size: Option<u64>) -> ProgressBar {
    let bar = match size {
        Some(bytes) => ProgressBar::with_draw_target(Some(bytes), ProgressDrawTarget::stderr())
            .with_style(
                ProgressStyle::with_template(
                    "{elapsed_precise} [{bar:30}] {bytes}/{total_bytes} ({eta}) {msg}",
                )
                .expect("a valid template")
                .progress_chars("=> "),
            ),
        None => ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr()).with_style(
            ProgressStyle::with_template("{elapsed_precise} {spinner} {pos} lines {msg}")
                .expect("a valid template"),
        ),
    };
    bar.enable_steady_tick(Duration::from_millis(200));
    bar
}

fn progress_message(summary: &Summary) -> String {
    format!(
        "{} created, {} reconnected, {} unchanged, {} refused",
        summary.created,
        summary.reconnected,
        summary.unchanged,
        summary.invalid + summary.failed
    )
}

fn summary_line(summary: &Summary, elapsed: Duration) -> String {
    let seconds = elapsed.as_secs_f64();
    let rate = if seconds > 0.0 {
        summary.lines as f64 / seconds
    } else {
        0.0
    };
    let verb = if summary.dry_run {
        "dry run (nothing written): judged"
    } else {
        "imported"
    };
    let would = if summary.dry_run { "would be " } else { "" };
    format!(
        "{verb} {} lines in {seconds:.1} s ({rate:.0} lines/s): {} {would}created, {} \
         {would}reconnected, {} unchanged, {} invalid, {} failed in the database",
        summary.lines,
        summary.created,
        summary.reconnected,
        summary.unchanged,
        summary.invalid,
        summary.failed
    )
}

pub(super) async fn export(settings: Settings, args: ExportArgs) -> anyhow::Result<ExitCode> {
    let keyring = app::keyring(&settings)?;
    let pool = app::connect(&settings, None).await?;
    let options = ExportOptions {
        recipient: if args.with_credentials {
            args.recipient
        } else {
            None
        },
        workspace_id: args.workspace,
        provider: args.provider,
        page_size: 1000,
    };
    let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr()).with_style(
        ProgressStyle::with_template("{elapsed_precise} {spinner} {pos} accounts exported")
            .expect("a valid template"),
    );
    // A file is written whole or not at all: under a temporary name, then
    // renamed.
    let written = match &args.output {
        Some(path) => {
            let partial = path.with_extension("partial");
            // Only the owner reads it: it may hold sealed credentials.
            let file = tokio::fs::OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .mode(0o600)
                .open(&partial)
                .await
                .with_context(|| format!("creating {}", partial.display()))?;
            let mut out = tokio::io::BufWriter::new(file);
            let written = tokenwarden::bulk::export(&pool, &keyring, &options, &mut out, |n| {
                bar.set_position(n)
            })
            .await?;
            tokio::fs::rename(&partial, path)
                .await
                .with_context(|| format!("renaming to {}", path.display()))?;
            written
        }
        None => {
            let mut out = tokio::io::BufWriter::new(tokio::io::stdout());
            tokenwarden::bulk::export(&pool, &keyring, &options, &mut out, |n| bar.set_position(n))
                .await?
        }
    };
    bar.finish_and_clear();
    let sealed = if options.recipient.is_some() {
        " (credentials sealed to the recipient)"
    } else {
        " (no credentials)"
    };
    eprintln!("exported {written} accounts{sealed}");
    Ok(ExitCode::SUCCESS)
}
