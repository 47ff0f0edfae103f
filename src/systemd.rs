//! systemd integration (`Type=notify`): readiness once the roles run, a
//! watchdog ping while the runtime is responsive, and STOPPING on shutdown.
//! Outside systemd (no NOTIFY_SOCKET) every call does nothing.

use tokio_util::sync::CancellationToken;

pub fn ready() {
    notify(&[sd_notify::NotifyState::Ready]);
}

pub fn stopping() {
    notify(&[sd_notify::NotifyState::Stopping]);
}

/// Pings the watchdog at half its interval from the async runtime, so a
/// wedged runtime stops the pings and systemd restarts the process; says
/// STOPPING as soon as shutdown begins.
pub fn watchdog(shutdown: CancellationToken) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let period = sd_notify::watchdog_enabled().map(|interval| interval / 2);
        loop {
            let ping = async {
                match period {
                    Some(period) => tokio::time::sleep(period).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                _ = shutdown.cancelled() => {
                    stopping();
                    return;
                }
                _ = ping => notify(&[sd_notify::NotifyState::Watchdog]),
            }
        }
    })
}

fn notify(states: &[sd_notify::NotifyState]) {
    if std::env::var_os("NOTIFY_SOCKET").is_none() {
        return;
    }
    if let Err(e) = sd_notify::notify(states) {
        tracing::warn!(error = %e, "cannot notify systemd");
    }
}
