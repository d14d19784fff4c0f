//! `skypilot-host status [--json] [--all]`: what the host database knows of the
//! clusters, with autostop, age and staleness. A view of [`crate::fleet`]'s report.

use std::io::Write;

use crate::cluster::ClusterStatus;
use crate::config::Config;
use crate::fleet::{report, StatusReport};
use crate::store::{ClusterQuery, Store};
use crate::time::{human_duration, Clock, SystemClock};

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
            human_duration(r.generated_at.age_since(at))
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
    let query = ClusterQuery {
        include_gone: all,
        ..ClusterQuery::default()
    };
    let r = report(&store, config, SystemClock.now(), &query)?;
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

    #[test]
    fn autostop_column() {
        assert_eq!(autostop_text(-1, false), "-");
        assert_eq!(autostop_text(30, false), "30m");
        assert_eq!(autostop_text(10, true), "10m (down)");
    }
}
