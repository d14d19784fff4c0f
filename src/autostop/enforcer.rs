//! Applying decisions: the pass, its audit records, and the `--daemon` loop.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::task::JoinSet;

use super::engine::{self, Action, Decision};
use super::{snapshot, PassLock, ACTOR};
use crate::config::Config;
use crate::skypilot::{Client, ClientError};
use crate::store::{AuditEntry, AuditOutcome, Store};
use crate::terminal::clean;
use crate::time::Clock;

/// Actions sent to the API server at once: SkyPilot runs each as a request of its own,
/// and a few in flight keep a large backlog from taking hours without flooding it.
const IN_FLIGHT: usize = 4;

/// What one pass did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct PassReport {
    pub(crate) clusters: usize,
    pub(crate) ok: usize,
    pub(crate) failed: usize,
    pub(crate) held: usize,
    pub(crate) skipped: usize,
    /// Actions not sent because the API server could not be reached.
    pub(crate) not_sent: usize,
}

impl PassReport {
    pub(crate) fn summary(&self) -> String {
        let mut s = format!(
            "autostop pass: {} clusters, {} actions done, {} failed, {} held back, {} need nothing",
            self.clusters, self.ok, self.failed, self.held, self.skipped
        );
        if self.not_sent > 0 {
            s.push_str(&format!(
                ", {} not sent (API server unreachable)",
                self.not_sent
            ));
        }
        s
    }
}

async fn apply(client: &Client, cluster: &str, action: Action) -> Result<(), ClientError> {
    match action {
        Action::Autostop { minutes, down } => {
            client.autostop(cluster, i64::from(minutes), down).await
        }
        Action::Stop => client.stop(cluster).await,
        Action::Down => client.down(cluster).await,
    }
}

/// The audit detail of an action: on failure SkyPilot's error type (or the kind of
/// failure) and the whole error first, then what was wanted and why.
pub(crate) fn audit_detail(d: &Decision, action: Action, error: Option<&ClientError>) -> String {
    let wanted = format!("{action}: {}", d.reason);
    match error {
        None => wanted,
        Some(e) => {
            let kind = e.sky_error_type().map_or_else(|| e.kind(), str::to_string);
            format!("{kind}: {}; wanted {wanted}", clean(&e.to_string()))
        }
    }
}

/// One pass: snapshot, decide, apply, audit. Fails only when the database cannot be read
/// or written; a failed action is audited and counted.
pub(crate) async fn pass(
    config: &Config,
    client: &Arc<Client>,
    clock: &dyn Clock,
) -> anyhow::Result<PassReport> {
    let store = Store::open_writer(&config.cluster_manager.database).map_err(|e| {
        anyhow::Error::new(e)
            .context("the autostop enforcer reads what the cluster manager records: is it running?")
    })?;
    let now = clock.now();
    let snap = snapshot(&store, config, now)?;
    let policy = engine::Policy::new(&config.autostop);
    let decisions = engine::decide(&policy, &snap.clusters, &snap.age, &snap.failures, now);
    let stale = snap.age.stale_reason(now);
    drop(snap);
    let mut report = PassReport {
        clusters: decisions.len(),
        ..PassReport::default()
    };
    let mut todo = Vec::new();
    let mut first_hold: Option<String> = None;
    for d in decisions {
        match d.verdict {
            engine::Verdict::Act(a) => todo.push((d, a)),
            engine::Verdict::Hold => {
                report.held += 1;
                first_hold.get_or_insert_with(|| format!("{}: {}", clean(&d.cluster), d.reason));
            }
            engine::Verdict::Skip => report.skipped += 1,
        }
    }
    let held_reason = (report.held > 0).then(|| match (&stale, &first_hold) {
        (Some(why), _) => format!("state is stale: {why}"),
        (None, Some(first)) if report.held > 1 => {
            format!("{first} (and {} more)", report.held - 1)
        }
        (None, first) => first.clone().unwrap_or_default(),
    });
    let mut pending = todo.into_iter();
    let mut running: JoinSet<(Decision, Action, Result<(), ClientError>)> = JoinSet::new();
    let mut unreachable = false;
    loop {
        while !unreachable && running.len() < IN_FLIGHT {
            let Some((d, a)) = pending.next() else { break };
            let client = client.clone();
            tracing::info!(cluster = %clean(&d.cluster), action = %a, reason = %d.reason, "acting");
            running.spawn(async move {
                let r = apply(&client, &d.cluster, a).await;
                (d, a, r)
            });
        }
        let Some(joined) = running.join_next().await else {
            break;
        };
        let (d, a, result) = match joined {
            Ok(x) => x,
            Err(e) => {
                // A task that panicked or was cancelled: count it, keep going.
                tracing::error!(error = %e, "an autostop action task ended abnormally");
                report.failed += 1;
                continue;
            }
        };
        if result.as_ref().is_err_and(ClientError::is_unreachable) {
            unreachable = true;
        }
        record(&store, clock, &mut report, &d, a, &result)?;
    }
    report.not_sent = pending.count();
    let count = |n: usize| i64::try_from(n).unwrap_or(i64::MAX);
    let pass = crate::store::AutostopPass {
        at: clock.now(),
        clusters: count(report.clusters),
        acted: count(report.ok),
        failed: count(report.failed),
        held: count(report.held),
        not_sent: count(report.not_sent),
        held_at: held_reason.is_some().then_some(now),
        held_reason,
    };
    if let Err(e) = store.set_autostop_pass(&pass) {
        tracing::warn!(error = %e, "cannot record the pass");
    }
    if report.not_sent > 0 {
        tracing::warn!(
            not_sent = report.not_sent,
            api = client.base_url(),
            "SkyPilot's API server is unreachable: the other actions wait for the next pass"
        );
    }
    Ok(report)
}

/// Counts and audits the end of one action (`a` on `d`'s cluster).
fn record(
    store: &Store,
    clock: &dyn Clock,
    report: &mut PassReport,
    d: &Decision,
    a: Action,
    result: &Result<(), ClientError>,
) -> anyhow::Result<()> {
    let outcome = match result {
        Ok(()) => {
            report.ok += 1;
            tracing::info!(cluster = %clean(&d.cluster), action = %a, "done");
            AuditOutcome::Ok
        }
        Err(e) => {
            report.failed += 1;
            tracing::warn!(cluster = %clean(&d.cluster), action = %a, error = %e, "action failed; retried after the back-off");
            AuditOutcome::Error
        }
    };
    let entry = AuditEntry {
        at: clock.now(),
        actor: ACTOR.to_string(),
        action: a.audit_action(),
        cluster: Some(d.cluster.clone()),
        outcome,
        detail: Some(audit_detail(d, a, result.as_ref().err())),
    };
    store.append_audit(&entry).map(drop).map_err(|e| {
        anyhow::anyhow!(
            "cluster {}: {a} ended {outcome} but cannot be recorded: {e}",
            clean(&d.cluster)
        )
    })
}

/// How long after its start the daemon takes a missing or unmigrated host database for
/// the cluster manager still starting (a pass then waits, logged at INFO) rather than
/// an error.
const WAIT_FOR_DATABASE: Duration = Duration::from_secs(300);

/// The daemon's rounds: one pass each, every `autostop.interval_secs`.
struct Passes<'a> {
    config: &'a Config,
    client: &'a Arc<Client>,
    clock: &'a dyn Clock,
    interval: Duration,
    started: std::time::Instant,
}

/// The pass failed because the host database is not there yet or not yet migrated.
fn not_ready(e: &anyhow::Error) -> bool {
    e.downcast_ref::<crate::store::StoreError>()
        .is_some_and(crate::store::StoreError::is_not_ready)
}

/// The innermost message of an error, for one line.
fn root_cause(e: &anyhow::Error) -> String {
    e.root_cause().to_string()
}

impl crate::runner::Periodic for Passes<'_> {
    async fn round(&mut self) -> crate::runner::Round {
        let status = match pass(self.config, self.client, self.clock).await {
            Ok(report) => {
                tracing::info!("{}", report.summary());
                report.summary()
            }
            Err(e) if not_ready(&e) && self.started.elapsed() < WAIT_FOR_DATABASE => {
                tracing::info!(error = %root_cause(&e), "waiting for the cluster manager to create or migrate the host database");
                "waiting for the cluster manager to create or migrate the host database".into()
            }
            Err(e) => {
                tracing::error!(error = %format!("{e:#}"), "autostop pass failed");
                format!("last pass failed: {e:#}")
            }
        };
        crate::runner::Round {
            status,
            wait: self.interval,
        }
    }
}

/// Passes every `autostop.interval_secs` until `shutdown`, holding the lock throughout
/// (a timer pass meanwhile exits at once). A pass that fails is logged and the loop goes on.
pub(crate) async fn run_daemon(
    config: Config,
    clock: Arc<dyn Clock>,
    shutdown: impl Future<Output = ()>,
) -> anyhow::Result<()> {
    let lock = match PassLock::acquire(&config.cluster_manager.database)? {
        Ok(lock) => lock,
        Err(holder) => anyhow::bail!(
            "another autostop enforcer (pid {holder}) is running on {}; only one may",
            config.cluster_manager.database.display()
        ),
    };
    let client = Arc::new(Client::new(&config.skypilot)?);
    let interval = Duration::from_secs(config.autostop.interval_secs);
    tracing::info!(
        api = client.base_url(),
        database = %config.cluster_manager.database.display(),
        every = interval.as_secs(),
        "autostop enforcer started"
    );
    let mut passes = Passes {
        config: &config,
        client: &client,
        clock: clock.as_ref(),
        interval,
        started: std::time::Instant::now(),
    };
    crate::runner::run_periodic("started; first pass running", &mut passes, shutdown).await;
    tracing::info!("autostop enforcer stopping");
    drop(lock);
    Ok(())
}
