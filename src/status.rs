//! `skypilot-host status [--json] [--all]`: what the host database knows of the
//! clusters, with autostop, age and staleness.

use std::io::Write;

use serde::Serialize;

use crate::cluster::ClusterStatus;
use crate::config::Config;
use crate::store::{ApiServerHealth, ClusterRow, PollOutcome, PollRun, Store};
use crate::time::{human_duration, Clock, SystemClock};

/// How fresh the recorded state is.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Freshness {
    pub stale: bool,
    /// Seconds since the last successful poll (`None`: never polled successfully).
    pub age_secs: Option<f64>,
    pub last_ok_poll_at: Option<f64>,
    /// The error of the last poll, when the last poll failed.
    pub last_error: Option<String>,
    pub last_error_at: Option<f64>,
}

/// The state is stale when the last poll failed, when there was never a successful
/// poll, or when the last success is older than three poll intervals (the cluster
/// manager is not running).
pub fn freshness(
    last: Option<&PollRun>,
    last_ok: Option<&PollRun>,
    now: f64,
    poll_interval_secs: u64,
) -> Freshness {
    let age = last_ok.map(|p| (now - p.finished_at).max(0.0));
    let failed = last.filter(|p| p.outcome == PollOutcome::Error);
    let too_old = age.is_none_or(|a| a > 3.0 * poll_interval_secs as f64);
    Freshness {
        stale: failed.is_some() || too_old,
        age_secs: age,
        last_ok_poll_at: last_ok.map(|p| p.finished_at),
        last_error: failed.and_then(|p| p.error.clone()),
        last_error_at: failed.map(|p| p.finished_at),
    }
}

#[derive(Debug, Serialize)]
pub struct StatusReport {
    pub generated_at: f64,
    pub database: String,
    pub state: Freshness,
    pub api_server: Option<ApiServerHealth>,
    pub clusters: Vec<ClusterView>,
}

#[derive(Debug, Serialize)]
pub struct ClusterView {
    #[serde(flatten)]
    pub row: ClusterRow,
    /// Seconds since launch.
    pub age_secs: Option<f64>,
    pub stale: bool,
}

pub fn report(store: &Store, config: &Config, now: f64, all: bool) -> anyhow::Result<StatusReport> {
    let last = store.last_poll()?;
    let last_ok = store.last_ok_poll()?;
    let state = freshness(
        last.as_ref(),
        last_ok.as_ref(),
        now,
        config.cluster_manager.poll_interval_secs,
    );
    let clusters = store
        .clusters()?
        .into_iter()
        .filter(|r| all || r.gone_at.is_none())
        .map(|row| ClusterView {
            age_secs: row.cluster.launched_at.map(|t| (now - t as f64).max(0.0)),
            stale: state.stale,
            row,
        })
        .collect();
    Ok(StatusReport {
        generated_at: now,
        database: store.path().display().to_string(),
        state,
        api_server: store.api_server_health()?,
        clusters,
    })
}

fn autostop_text(minutes: i64, down: bool) -> String {
    if minutes < 0 {
        "-".to_string()
    } else if down {
        format!("{minutes}m (down)")
    } else {
        format!("{minutes}m")
    }
}

/// The report as a table like `sky status`, with a header line on freshness.
pub fn render_table(r: &StatusReport) -> String {
    let mut out = String::new();
    match (&r.state.age_secs, r.state.stale) {
        (None, _) => {
            out.push_str("STALE: the cluster manager has not polled SkyPilot successfully yet\n")
        }
        (Some(age), false) => out.push_str(&format!(
            "State as of {} ago (fresh)\n",
            human_duration(*age)
        )),
        (Some(age), true) => out.push_str(&format!(
            "STALE: last successful poll {} ago\n",
            human_duration(*age)
        )),
    }
    if let (Some(e), Some(at)) = (&r.state.last_error, r.state.last_error_at) {
        out.push_str(&format!(
            "Last poll failed {} ago: {e}\n",
            human_duration(r.generated_at - at)
        ));
    }
    let headers = [
        "NAME",
        "STATUS",
        "INFRA",
        "RESOURCES",
        "WORKSPACE",
        "USER",
        "AUTOSTOP",
        "AGE",
        "DATA",
    ];
    let rows: Vec<[String; 9]> = r
        .clusters
        .iter()
        .map(|v| {
            let c = &v.row.cluster;
            let infra = match (&c.cloud, &c.region) {
                (Some(cl), Some(rg)) => format!("{cl} ({rg})"),
                (Some(cl), None) => cl.clone(),
                _ => "-".into(),
            };
            let res = match &c.instance_type {
                Some(t) => format!("{}x {t}", c.nodes),
                None => c.resources.clone().unwrap_or_else(|| "-".into()),
            };
            let data = if c.status == ClusterStatus::Gone {
                "gone".to_string()
            } else if v.stale {
                match r.state.age_secs {
                    Some(a) => format!("stale {}", human_duration(a)),
                    None => "stale".into(),
                }
            } else {
                "fresh".into()
            };
            [
                c.name.clone(),
                c.status.to_string(),
                infra,
                res,
                c.workspace.clone(),
                c.user_name.clone().unwrap_or_else(|| "-".into()),
                autostop_text(c.autostop_minutes, c.autostop_to_down),
                v.age_secs.map(human_duration).unwrap_or_else(|| "-".into()),
                data,
            ]
        })
        .collect();
    if rows.is_empty() {
        out.push_str("No clusters.\n");
        return out;
    }
    let mut widths = headers.map(|h| h.len());
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row.iter()) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: &[String]| {
        let mut s = String::new();
        for (i, (cell, w)) in cells.iter().zip(widths.iter()).enumerate() {
            if i + 1 == cells.len() {
                s.push_str(cell);
            } else {
                s.push_str(&format!("{cell:<w$}  ", w = *w));
            }
        }
        s.trim_end().to_string() + "\n"
    };
    out.push_str(&line(&headers.map(String::from)));
    for row in &rows {
        out.push_str(&line(row));
    }
    out
}

pub fn run(config: &Config, json: bool, all: bool) -> anyhow::Result<()> {
    let path = &config.cluster_manager.database;
    if !path.exists() {
        anyhow::bail!(
            "host database {} does not exist: is the cluster manager running (skypilot-host cluster-manager)?",
            path.display()
        );
    }
    let store = Store::open_read_only(path)?;
    let r = report(&store, config, SystemClock.now(), all)?;
    let text = if json {
        serde_json::to_string_pretty(&r)? + "\n"
    } else {
        render_table(&r)
    };
    let mut stdout = std::io::stdout().lock();
    // A closed pipe (`| head`) is not an error worth a message.
    match stdout.write_all(text.as_bytes()) {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        other => Ok(other?),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn poll(id: i64, at: f64, ok: bool) -> PollRun {
        PollRun {
            id,
            started_at: at - 0.1,
            finished_at: at,
            refresh: "NONE".into(),
            outcome: if ok {
                PollOutcome::Ok
            } else {
                PollOutcome::Error
            },
            error_kind: (!ok).then(|| "connect".into()),
            error: (!ok).then(|| "refused".into()),
            clusters: None,
            changes: None,
        }
    }

    #[test]
    fn fresh_after_recent_ok_poll() {
        let ok = poll(1, 1000.0, true);
        let f = freshness(Some(&ok), Some(&ok), 1010.0, 30);
        assert!(!f.stale);
        assert_eq!(f.age_secs, Some(10.0));
        assert_eq!(f.last_error, None);
    }

    #[test]
    fn stale_after_failed_poll() {
        let ok = poll(1, 1000.0, true);
        let bad = poll(2, 1030.0, false);
        let f = freshness(Some(&bad), Some(&ok), 1040.0, 30);
        assert!(f.stale);
        assert_eq!(f.age_secs, Some(40.0));
        assert_eq!(f.last_error.as_deref(), Some("refused"));
    }

    #[test]
    fn stale_when_manager_silent() {
        let ok = poll(1, 1000.0, true);
        assert!(freshness(Some(&ok), Some(&ok), 1000.0 + 91.0, 30).stale);
        assert!(!freshness(Some(&ok), Some(&ok), 1000.0 + 89.0, 30).stale);
        assert!(freshness(None, None, 1000.0, 30).stale);
    }

    #[test]
    fn autostop_column() {
        assert_eq!(autostop_text(-1, false), "-");
        assert_eq!(autostop_text(30, false), "30m");
        assert_eq!(autostop_text(10, true), "10m (down)");
    }
}
