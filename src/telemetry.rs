//! Logging: tracing to stderr, text for terminals or JSON for shippers.

use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::MakeWriter;

use crate::config::{LogFormat, LogSettings};

/// Installs the global subscriber. `RUST_LOG` overrides `log.filter`.
pub fn init(settings: &LogSettings) {
    init_with_writer(settings, std::io::stderr);
}

pub fn init_with_writer<W>(settings: &LogSettings, writer: W)
where
    W: for<'w> MakeWriter<'w> + Send + Sync + 'static,
{
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(&settings.filter))
        .unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(writer)
        // A log line that cannot be written (a full disk under stderr) is
        // lost, never a panic: the default reports it with eprintln!, which
        // panics on that same stderr, possibly between a platform's answer
        // and the write of its tokens.
        .log_internal_errors(false);
    // A second init (tests, or a command that re-initialises) is harmless.
    let _ = match settings.format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
    };
}
