//! Everything the roles say to systemd and hear from the system, in one place: readiness,
//! status lines, the watchdog, and one shutdown signal. Outside systemd the
//! notifications are no-ops.

use std::time::Duration;

fn notify(state: &[sd_notify::NotifyState<'_>]) {
    if let Err(e) = sd_notify::notify(false, state) {
        tracing::debug!(error = %e, "sd_notify failed");
    }
}

/// `READY=1`, with a status line.
pub(crate) fn ready(status: &str) {
    notify(&[
        sd_notify::NotifyState::Ready,
        sd_notify::NotifyState::Status(status),
    ]);
}

/// `STATUS=…`: the line `systemctl status` shows.
pub(crate) fn status(status: &str) {
    notify(&[sd_notify::NotifyState::Status(status)]);
}

/// `WATCHDOG=1`: the role's loop is alive.
pub(crate) fn watchdog() {
    notify(&[sd_notify::NotifyState::Watchdog]);
}

/// `STOPPING=1`.
pub(crate) fn stopping() {
    notify(&[sd_notify::NotifyState::Stopping]);
}

/// The watchdog interval systemd asked for (`WatchdogSec=`), if any.
pub(crate) fn watchdog_interval() -> Option<Duration> {
    let mut usec = 0u64;
    if sd_notify::watchdog_enabled(false, &mut usec) && usec > 0 {
        Some(Duration::from_micros(usec))
    } else {
        None
    }
}

/// Resolves on SIGTERM or SIGINT: the one shutdown signal of every role. SIGHUP is
/// logged and ignored (a role does not reload its config; restart the unit to apply a
/// new one), so a closed terminal or a stray `kill -HUP` does not stop a role uncleanly.
pub(crate) async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let (term, int, hup) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
        signal(SignalKind::hangup()),
    );
    let (mut term, mut int) = match (term, int) {
        (Ok(t), Ok(i)) => (t, i),
        (Err(e), _) | (_, Err(e)) => {
            tracing::warn!(error = %e, "cannot watch SIGTERM/SIGINT; stopping on Ctrl-C only");
            if let Err(e) = tokio::signal::ctrl_c().await {
                tracing::warn!(error = %e, "cannot watch Ctrl-C either; running until killed");
                std::future::pending::<()>().await;
            }
            return;
        }
    };
    let mut hup = hup
        .map_err(|e| tracing::warn!(error = %e, "cannot watch SIGHUP"))
        .ok();
    loop {
        tokio::select! {
            _ = term.recv() => { tracing::info!("SIGTERM: stopping"); return; }
            _ = int.recv() => { tracing::info!("SIGINT: stopping"); return; }
            Some(()) = async { match hup.as_mut() { Some(h) => h.recv().await, None => std::future::pending().await } } => {
                tracing::info!("SIGHUP ignored: skypilot-host does not reload its config; restart the service to apply a new one");
            }
        }
    }
}
