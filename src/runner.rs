//! How a long-running role runs, written once: its runtime, binding its address, telling
//! systemd it is ready, feeding the watchdog, stopping on SIGTERM/SIGINT, and the deadline
//! for what is still in flight when it stops.
//!
//! Two shapes of role use it:
//! - **servers** (monitor, launch policy, web UI): [`bind`] their address, [`Serving::ready`]
//!   once they can answer (it feeds the watchdog from a task while they serve), and hand
//!   [`Serving::shutdown`] to [`crate::http`];
//! - **loops** (cluster manager, autostop enforcer): a [`Periodic`] driven by
//!   [`run_periodic`], which feeds the watchdog after each round and in slices while it
//!   waits for the next, so a round that hangs stops the feeding and systemd restarts it.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::time::Duration;

use anyhow::Context as _;
use tokio::net::TcpListener;

use crate::systemd;

/// How long a server's connections still open after its shutdown may keep the process:
/// they are dropped with the runtime after this.
const RUNTIME_SHUTDOWN: Duration = Duration::from_secs(1);

/// The runtime a role runs on: a single thread for the loops (one round at a time: fewer
/// threads, one malloc arena, a smaller footprint), two workers for the servers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Threads {
    One,
    Two,
}

/// Runs `role` to its end on a runtime of `threads`, then drops what is still running
/// after [`RUNTIME_SHUTDOWN`].
pub(crate) fn block_on(
    threads: Threads,
    role: impl Future<Output = anyhow::Result<()>>,
) -> anyhow::Result<()> {
    let mut builder = match threads {
        Threads::One => tokio::runtime::Builder::new_current_thread(),
        Threads::Two => {
            let mut b = tokio::runtime::Builder::new_multi_thread();
            b.worker_threads(2);
            b
        }
    };
    let rt = builder
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let result = rt.block_on(role);
    rt.shutdown_timeout(RUNTIME_SHUTDOWN);
    result
}

/// Binds `addr`, the value of the config key `key`, naming both when it cannot.
pub(crate) async fn bind(key: &str, addr: SocketAddr) -> anyhow::Result<TcpListener> {
    TcpListener::bind(addr)
        .await
        .with_context(|| format!("{key} = {addr}: cannot listen there"))
}

/// A server that told systemd it is ready: feeds the watchdog (when the unit has one)
/// from a task until it is dropped.
pub(crate) struct Serving {
    feeder: Option<tokio::task::JoinHandle<()>>,
}

impl Serving {
    /// Sends READY with `status`, and starts feeding the watchdog.
    pub(crate) fn ready(status: &str) -> Serving {
        systemd::ready(status);
        let feeder = systemd::watchdog_interval().map(|every| {
            tokio::spawn(async move {
                loop {
                    systemd::watchdog();
                    tokio::time::sleep(every / 2).await;
                }
            })
        });
        Serving { feeder }
    }

    /// Resolves on SIGTERM or SIGINT, after telling systemd the role is stopping.
    pub(crate) async fn shutdown() {
        systemd::shutdown_signal().await;
        systemd::stopping();
    }
}

impl Drop for Serving {
    fn drop(&mut self) {
        if let Some(f) = self.feeder.take() {
            f.abort();
        }
    }
}

/// One round of a loop role, and what it tells systemd.
pub(crate) struct Round {
    /// The unit's status line after this round.
    pub(crate) status: String,
    /// How long to wait before the next round.
    pub(crate) wait: Duration,
}

/// A loop role's work: [`run_periodic`] calls `round` until shutdown.
pub(crate) trait Periodic {
    fn round(&mut self) -> impl Future<Output = Round>;
}

/// Sends READY with `status`, then runs `work`'s rounds until `shutdown` resolves (also
/// in the middle of a round: the round is dropped), feeding the watchdog after each round
/// and while waiting. Tells systemd it is stopping at the end.
pub(crate) async fn run_periodic(
    status: &str,
    work: &mut impl Periodic,
    shutdown: impl Future<Output = ()>,
) {
    systemd::ready(status);
    let watchdog = systemd::watchdog_interval();
    tokio::pin!(shutdown);
    loop {
        let round = tokio::select! {
            r = work.round() => r,
            () = &mut shutdown => break,
        };
        systemd::watchdog();
        systemd::status(&round.status);
        if !wait_fed(round.wait, watchdog, shutdown.as_mut()).await {
            break;
        }
    }
    systemd::stopping();
}

/// Waits `wait` in slices of half the watchdog interval, feeding it after each; `false`
/// when `shutdown` resolved first.
async fn wait_fed(
    wait: Duration,
    watchdog: Option<Duration>,
    mut shutdown: Pin<&mut impl Future<Output = ()>>,
) -> bool {
    let mut remaining = wait;
    while !remaining.is_zero() {
        let slice = watchdog.map_or(remaining, |w| remaining.min(w / 2));
        tokio::select! {
            () = tokio::time::sleep(slice) => {}
            () = &mut shutdown => return false,
        }
        remaining = remaining.saturating_sub(slice);
        if watchdog.is_some() {
            systemd::watchdog();
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    struct Counter {
        rounds: u32,
        third: Arc<tokio::sync::Notify>,
    }

    impl Periodic for Counter {
        async fn round(&mut self) -> Round {
            self.rounds += 1;
            if self.rounds == 3 {
                self.third.notify_one();
            }
            Round {
                status: format!("round {}", self.rounds),
                wait: Duration::from_millis(if self.rounds < 3 { 1 } else { 3_600_000 }),
            }
        }
    }

    #[tokio::test]
    async fn rounds_run_until_shutdown_even_during_a_long_wait() {
        let third = Arc::new(tokio::sync::Notify::new());
        let mut work = Counter {
            rounds: 0,
            third: third.clone(),
        };
        // Shut down once the third round has begun its hour-long wait.
        let shutdown = async move { third.notified().await };
        let ran = tokio::time::timeout(
            Duration::from_secs(30),
            run_periodic("started", &mut work, shutdown),
        )
        .await;
        assert!(ran.is_ok(), "the loop did not stop during its wait");
        assert_eq!(
            work.rounds, 3,
            "two short waits, then stopped inside the hour-long one"
        );
    }

    #[tokio::test]
    async fn wait_fed_reports_a_shutdown_and_a_full_wait() {
        let done = std::future::pending::<()>();
        tokio::pin!(done);
        assert!(
            wait_fed(
                Duration::from_millis(10),
                Some(Duration::from_millis(4)),
                done.as_mut()
            )
            .await
        );
        let now = std::future::ready(());
        tokio::pin!(now);
        assert!(!wait_fed(Duration::from_secs(10), None, now.as_mut()).await);
    }

    #[test]
    fn block_on_returns_the_roles_error() {
        let r = block_on(Threads::One, async { anyhow::bail!("role failed") });
        assert_eq!(format!("{:#}", r.unwrap_err()), "role failed");
        assert!(block_on(Threads::Two, async { Ok(()) }).is_ok());
    }
}
