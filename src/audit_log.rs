//! `skypilot-host audit`: the audit log on the command line.

use std::io::Write;

use crate::config::Config;
use crate::store::{AuditAction, AuditEntry, AuditOutcome, Store};
use crate::terminal::clean;
use crate::time::{when, Clock, SystemClock};

pub(crate) fn run(
    config: &Config,
    since: Option<u64>,
    limit: usize,
    json: bool,
) -> anyhow::Result<()> {
    let path = &config.cluster_manager.database;
    let store = Store::open_read_only(path)?;
    let now = SystemClock.now();
    // Newest first, as people read a log.
    let mut entries = match since {
        Some(secs) => {
            let from = now.minus_secs(std::time::Duration::from_secs(secs).as_secs_f64());
            let mut e = store.audit_since(from, usize::MAX)?;
            let skip = e.len().saturating_sub(limit);
            e.drain(..skip);
            e.reverse();
            e
        }
        None => store.audit(limit)?,
    };
    let mut out = String::new();
    if json {
        out = serde_json::to_string_pretty(&entries)? + "\n";
    } else if entries.is_empty() {
        out.push_str("No audit entries.\n");
    } else {
        for e in entries.drain(..) {
            out.push_str(&format!(
                "{}  {}  {}  {}  {}{}\n",
                when(e.at, now),
                clean(&e.actor),
                e.action,
                clean(e.cluster.as_deref().unwrap_or("-")),
                e.outcome,
                e.detail
                    .map(|d| format!("  {}", clean(&d)))
                    .unwrap_or_default()
            ));
        }
    }
    let mut stdout = std::io::stdout().lock();
    match stdout.write_all(out.as_bytes()) {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        other => Ok(other?),
    }
}

/// Appends `count` entries through [`Store::open_writer`], printing each id after its
/// commit (flushed), so a test that kills this process knows which rows must be there.
pub(crate) fn debug_writer(config: &Config, count: u64) -> anyhow::Result<()> {
    let store = Store::open_writer(&config.cluster_manager.database)?;
    let mut stdout = std::io::stdout().lock();
    for i in 0..count {
        let id = store.append_audit(&AuditEntry {
            at: SystemClock.now(),
            actor: "debug-audit-writer".into(),
            action: AuditAction::Autostop,
            cluster: Some(format!("c{}", i % 10)),
            outcome: AuditOutcome::DryRun,
            detail: Some(format!("entry {i}")),
        })?;
        writeln!(stdout, "{id}")?;
        stdout.flush()?;
    }
    Ok(())
}
