//! `skypilot-host autostop`: the enforcer of the idle-stop policy (`docs/autostop.md`).
//!
//! One pass reads what the host database knows (clusters, the last polls, the audit
//! history of earlier attempts), lets the [`engine`] decide per cluster, and applies the
//! decisions that act through SkyPilot's API server, recording each action and its
//! outcome in the audit table. A pass runs under a lock (`<database>.autostop.lock`): a
//! second pass while one runs (or while a `--daemon` runs) exits 0 at once, saying who
//! holds it. `--dry-run` (or `autostop.dry_run`) prints one line per cluster with the
//! decision and its reason, takes no lock and writes nothing.

use std::collections::HashMap;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::config::Config;
use crate::skypilot::Client;
use crate::store::{ClusterQuery, PollOutcome, Store};
use crate::systemd;
use crate::terminal::clean;
use crate::time::{human_duration, Clock, SystemClock, Timestamp};

mod enforcer;
pub mod engine;

pub use engine::{Action, Decision, Verdict};

/// The audit table's actor of the enforcer.
pub const ACTOR: &str = "autostop";

/// How far back the audit history is read for failures in a row: long enough to hold
/// several of the longest back-offs.
fn history_window_secs(config: &Config) -> f64 {
    (config.autostop.retry_max_secs as f64 * 4.0).max(86_400.0)
}

/// Most audit entries read for the back-off history.
const HISTORY_LIMIT: usize = 1_000_000;

/// What the engine needs, read from the store.
pub(crate) struct Snapshot {
    pub(crate) clusters: Vec<crate::store::ClusterRow>,
    pub(crate) age: engine::DataAge,
    pub(crate) failures: HashMap<String, engine::Failures>,
}

pub(crate) fn snapshot(store: &Store, config: &Config, now: Timestamp) -> anyhow::Result<Snapshot> {
    let clusters = store.query_clusters(&ClusterQuery::default())?;
    let last = store.last_poll()?;
    let last_ok = store.last_ok_poll()?;
    let age = engine::DataAge {
        last_ok_poll: last_ok.map(|p| p.finished_at),
        last_poll_error: last
            .filter(|p| p.outcome == PollOutcome::Error)
            .map(|p| p.error.unwrap_or_else(|| "unknown error".into())),
        interval_secs: crate::fleet::polling_of(store, config)?.effective_interval_secs,
    };
    let since = now.minus_secs(history_window_secs(config));
    let history = store.audit_since(since, HISTORY_LIMIT)?;
    Ok(Snapshot {
        clusters,
        age,
        failures: engine::failures_from_audit(&history, ACTOR),
    })
}

/// What a pass would decide now, for every cluster the database lists (gone ones left
/// out), in name order: the dry run, and the web UI's preview. Reads only.
pub fn preview(store: &Store, config: &Config, now: Timestamp) -> anyhow::Result<Vec<Decision>> {
    let s = snapshot(store, config, now)?;
    let policy = engine::Policy::new(&config.autostop);
    Ok(engine::decide(
        &policy,
        &s.clusters,
        &s.age,
        &s.failures,
        now,
    ))
}

/// One pass, or a loop with `daemon`; `dry_run` (or `autostop.dry_run`) prints decisions
/// and acts on nothing.
pub async fn run(config: Config, daemon: bool, dry_run: bool) -> anyhow::Result<()> {
    if dry_run || config.autostop.dry_run {
        return print_dry_run(&config, SystemClock.now());
    }
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    if daemon {
        enforcer::run_daemon(config, clock, systemd::shutdown_signal()).await
    } else {
        let Some(_lock) = PassLock::acquire_or_report(&config.cluster_manager.database)? else {
            return Ok(());
        };
        let client = Arc::new(Client::new(&config.skypilot)?);
        let report = enforcer::pass(&config, &client, clock.as_ref()).await?;
        println!("{}", report.summary());
        Ok(())
    }
}

fn print_dry_run(config: &Config, now: Timestamp) -> anyhow::Result<()> {
    let store = Store::open_read_only(&config.cluster_manager.database)?;
    let s = snapshot(&store, config, now)?;
    let policy = engine::Policy::new(&config.autostop);
    let decisions = engine::decide(&policy, &s.clusters, &s.age, &s.failures, now);
    let mut out = String::new();
    out.push_str(&format!(
        "autostop dry run: idle {}m, enforce {}; {}; nothing is done\n",
        config.autostop.idle_minutes,
        match config.autostop.enforce {
            crate::config::Enforce::Autostop => "autostop",
            crate::config::Enforce::Stop => "stop",
            crate::config::Enforce::Down => "down",
        },
        match s.age.stale_reason(now) {
            Some(why) => format!("state is stale: {why}"),
            None => format!(
                "state is {} old",
                human_duration(s.age.last_ok_poll.map_or(0.0, |t| now.age_since(t)))
            ),
        }
    ));
    out.push_str(&dry_run_lines(&decisions));
    if decisions.is_empty() {
        out.push_str("No clusters.\n");
    }
    let mut stdout = std::io::stdout().lock();
    match stdout.write_all(out.as_bytes()) {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        other => Ok(other?),
    }
}

/// One line per decision: name, verdict, reason, in aligned columns.
pub(crate) fn dry_run_lines(decisions: &[Decision]) -> String {
    let names: Vec<String> = decisions
        .iter()
        .map(|d| clean(&d.cluster).into_owned())
        .collect();
    let verdicts: Vec<String> = decisions.iter().map(Decision::verdict_text).collect();
    let wn = names.iter().map(|n| n.chars().count()).max().unwrap_or(0);
    let wv = verdicts.iter().map(|v| v.len()).max().unwrap_or(0);
    let mut out = String::new();
    for ((n, v), d) in names.iter().zip(&verdicts).zip(decisions) {
        let pad = wn.saturating_sub(n.chars().count());
        out.push_str(&format!(
            "{n}{}  {v:<wv$}  {}\n",
            " ".repeat(pad),
            clean(&d.reason)
        ));
    }
    out
}

/// One enforcer at a time per database: an exclusive `flock` on
/// `<database>.autostop.lock`, with the holder's pid inside.
pub(crate) struct PassLock {
    _file: std::fs::File,
}

impl PassLock {
    fn path(database: &Path) -> PathBuf {
        let mut p = database.as_os_str().to_owned();
        p.push(".autostop.lock");
        PathBuf::from(p)
    }

    /// The lock, or `None` after printing who holds it.
    pub(crate) fn acquire_or_report(database: &Path) -> anyhow::Result<Option<PassLock>> {
        match PassLock::acquire(database)? {
            Ok(lock) => Ok(Some(lock)),
            Err(holder) => {
                let msg = format!(
                    "another autostop pass (pid {holder}) is running on {}; this one does nothing (lock file {})",
                    database.display(),
                    PassLock::path(database).display()
                );
                tracing::info!("{msg}");
                println!("{msg}");
                Ok(None)
            }
        }
    }

    /// `Ok(Ok(lock))`, or `Ok(Err(holder pid))` when another process holds it.
    pub(crate) fn acquire(database: &Path) -> anyhow::Result<Result<PassLock, String>> {
        let path = PassLock::path(database);
        let held = crate::store::lock_with_pid(&path).map_err(|e| {
            anyhow::anyhow!("autostop lock file {}: cannot take it: {e}", path.display())
        })?;
        Ok(held.map(|file| PassLock { _file: file }))
    }
}
