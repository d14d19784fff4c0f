//! `skypilot-host status [--json] [--all]`: what the host database knows of the
//! clusters, with autostop, age and staleness. A view of [`crate::fleet`]'s report.

use std::io::Write;

use crate::cluster::ClusterStatus;
use crate::config::Config;
use crate::fleet::{report, Polling, StatusReport};
use crate::store::{ClusterQuery, Store};
use crate::terminal::clean;
use crate::time::{human_duration, when, Clock, SystemClock};

fn autostop_text(minutes: i64, down: bool) -> String {
    if minutes < 0 {
        "-".to_string()
    } else if down {
        format!("{minutes}m (down)")
    } else {
        format!("{minutes}m")
    }
}

/// How often the cluster manager polls, and what its reads cost the API server.
fn polling_line(p: &Polling) -> String {
    let every = format!("{:.0} s", p.effective_interval_secs);
    match &p.load {
        None => format!("Polling every {every} (no /status measured yet)\n"),
        Some(l) => {
            let why = if p.effective_interval_secs > p.poll_interval_secs as f64 {
                format!(
                    "stretched from poll_interval_secs {} s to keep within load_budget {:.1}%",
                    p.poll_interval_secs,
                    l.budget * 100.0
                )
            } else {
                format!("load_budget {:.1}%", l.budget * 100.0)
            };
            format!(
                "Polling every {every}: /status takes {:.2} s and {:.2} s of the API server's CPU, counted from {}: {:.2}% of its time ({why})\n",
                l.status_secs,
                l.cpu_secs,
                l.cpu_source.describe(),
                l.share * 100.0
            )
        }
    }
}

/// One cluster's cells of [`render_table`].
fn table_row(r: &StatusReport, v: &crate::fleet::ClusterView) -> [String; 11] {
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
    // Every cell that holds SkyPilot's text is escaped for the terminal.
    [
        clean(&c.name).into_owned(),
        c.status.to_string(),
        clean(&infra).into_owned(),
        clean(&res).into_owned(),
        clean(&c.workspace).into_owned(),
        clean(c.user_name.as_deref().unwrap_or("-")).into_owned(),
        autostop_text(c.autostop_minutes, c.autostop_to_down),
        c.launched_at
            .map(|t| when(t, r.generated_at))
            .unwrap_or_else(|| "-".into()),
        dollars(v.row.hourly_cost),
        dollars(v.cost_so_far),
        data,
    ]
}

/// When the last successful poll was, for people.
fn as_of(r: &StatusReport, age: f64) -> String {
    r.state.last_ok_poll_at.map_or_else(
        || format!("{} ago", human_duration(age)),
        |t| when(t, r.generated_at),
    )
}

/// Dollars to the cent, `-` when unknown.
fn dollars(v: Option<f64>) -> String {
    v.filter(|x| x.is_finite())
        .map_or_else(|| "-".into(), |x| format!("${:.2}", x + 0.0))
}

/// `headers` and `rows` as columns padded to their widest cell, two spaces apart.
fn columns<R: AsRef<[String]>>(headers: &[&str], rows: &[R]) -> String {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.len()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row.as_ref()) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: &mut dyn Iterator<Item = &str>| {
        let mut s = String::new();
        let cells: Vec<&str> = cells.collect();
        for (i, (cell, w)) in cells.iter().zip(widths.iter()).enumerate() {
            if i + 1 == cells.len() {
                s.push_str(cell);
            } else {
                s.push_str(&format!("{cell:<w$}  ", w = *w));
            }
        }
        s.trim_end().to_string() + "\n"
    };
    let mut out = line(&mut headers.iter().copied());
    for row in rows {
        out.push_str(&line(&mut row.as_ref().iter().map(String::as_str)));
    }
    out
}

/// The report as a table like `sky status`, with header lines on freshness and polling.
pub(crate) fn render_table(r: &StatusReport) -> String {
    let mut out = String::new();
    match (&r.state.age_secs, r.state.stale) {
        (None, _) => {
            out.push_str("STALE: the cluster manager has not polled SkyPilot successfully yet\n")
        }
        (Some(age), false) => out.push_str(&format!("State as of {} (fresh)\n", as_of(r, *age))),
        (Some(age), true) => {
            out.push_str(&format!("STALE: last successful poll {}\n", as_of(r, *age)))
        }
    }
    if let (Some(e), Some(at)) = (&r.state.last_error, r.state.last_error_at) {
        out.push_str(&format!(
            "Last poll failed {}: {}\n",
            when(at, r.generated_at),
            clean(e)
        ));
    }
    out.push_str(&polling_line(&r.polling));
    let headers = [
        "NAME",
        "STATUS",
        "INFRA",
        "RESOURCES",
        "WORKSPACE",
        "USER",
        "AUTOSTOP",
        "LAUNCHED",
        "$/H",
        "COST",
        "DATA",
    ];
    let rows: Vec<[String; 11]> = r.clusters.iter().map(|v| table_row(r, v)).collect();
    if rows.is_empty() {
        out.push_str("No clusters.\n");
        return out;
    }
    out.push_str(&columns(&headers, &rows));
    out
}

pub(crate) fn run(config: &Config, json: bool, all: bool) -> anyhow::Result<()> {
    let store = open_store(config)?;
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
    write_out(&text)
}

/// The freshness lines above a feed's table: `(records, source)` name what it lists and
/// where it is read.
fn feed_header(
    feed: Option<&crate::store::FeedState>,
    stale: bool,
    now: crate::time::Timestamp,
    (records, source): (&str, &str),
) -> String {
    let Some(f) = feed else {
        return format!("STALE: the cluster manager has not read {source} yet\n");
    };
    let ok = f
        .ok_at
        .map_or_else(|| "never".to_string(), |t| when(t, now));
    let label = if stale { "STALE" } else { "fresh" };
    let mut out = format!("{records} as of {ok} ({label})\n");
    if let Some(e) = &f.error {
        if f.failed() {
            out.push_str(&format!(
                "Last read of {source} failed {}: {}\n",
                when(f.attempted_at, now),
                clean(e)
            ));
        } else {
            out.push_str(&format!("{}\n", clean(e)));
        }
    }
    out
}

/// "N things: n STATUS, …" of counts by status (those above zero).
fn totals<S: std::fmt::Display>(
    by_status: &std::collections::BTreeMap<S, i64>,
    things: &str,
) -> String {
    let counts: Vec<String> = by_status
        .iter()
        .filter(|(_, n)| **n > 0)
        .map(|(s, n)| format!("{n} {s}"))
        .collect();
    format!(
        "{} {things}{}{}",
        by_status.values().sum::<i64>(),
        if counts.is_empty() { "" } else { ": " },
        counts.join(", ")
    )
}

/// The jobs report as a table like `sky jobs queue`, with a header line on freshness.
pub(crate) fn render_jobs_table(r: &crate::jobs::JobsReport) -> String {
    let mut out = feed_header(
        r.feed.as_ref(),
        r.stale,
        r.generated_at,
        ("Managed jobs", "SkyPilot's managed-job queue"),
    );
    out.push_str(&format!(
        "{}; {} holding a cluster, {}/h\n",
        totals(&r.by_status, "jobs"),
        r.active,
        dollars(Some(r.burn))
    ));
    let headers = [
        "ID",
        "NAME",
        "STATUS",
        "USER",
        "CLUSTER",
        "RECOVERIES",
        "SUBMITTED",
        "DURATION",
        "$/H",
        "COST",
        "REASON",
    ];
    let rows: Vec<Vec<String>> = r
        .jobs
        .iter()
        .map(|v| {
            let j = &v.row.job;
            vec![
                if j.task_id == 0 {
                    j.job_id.to_string()
                } else {
                    format!("{}.{}", j.job_id, j.task_id)
                },
                clean(&j.name).into_owned(),
                j.status.to_string(),
                clean(j.owner()).into_owned(),
                clean(j.cluster.as_deref().unwrap_or("-")).into_owned(),
                j.recovery_count.to_string(),
                j.submitted_at
                    .map(|t| when(t, r.generated_at))
                    .unwrap_or_else(|| "-".into()),
                v.running_secs.map_or_else(|| "-".into(), human_duration),
                dollars(v.row.hourly_cost),
                dollars(v.cost_so_far),
                clean(j.failure_reason.as_deref().unwrap_or("-")).into_owned(),
            ]
        })
        .collect();
    if rows.is_empty() {
        out.push_str("No managed jobs.\n");
        return out;
    }
    out.push_str(&columns(&headers, &rows));
    out
}

/// `status --jobs`: the managed jobs that have not ended (all of them with `all`).
pub(crate) fn run_jobs(config: &Config, json: bool, all: bool) -> anyhow::Result<()> {
    let store = open_store(config)?;
    let query = crate::store::JobQuery {
        active: !all,
        ..Default::default()
    };
    let r = crate::jobs::report(
        &store,
        &query,
        SystemClock.now(),
        config.cluster_manager.jobs_poll_interval_secs,
    )?;
    let text = if json {
        serde_json::to_string_pretty(&r)? + "\n"
    } else {
        render_jobs_table(&r)
    };
    write_out(&text)
}

/// The services report as a table like `sky serve status`, with a header line on
/// freshness.
pub(crate) fn render_services_table(r: &crate::services::ServicesReport) -> String {
    let mut out = feed_header(
        r.feed.as_ref(),
        r.stale,
        r.generated_at,
        ("Services", "SkyServe's services (/serve/status)"),
    );
    out.push_str(&format!(
        "{}; {} without a ready replica; replicas {}/h\n",
        totals(&r.by_status, "services"),
        r.without_ready,
        dollars(Some(r.burn))
    ));
    let headers = [
        "NAME", "STATUS", "USER", "READY", "REPLICAS", "POLICY", "ENDPOINT", "UPTIME", "$/H",
    ];
    let rows: Vec<Vec<String>> = r
        .services
        .iter()
        .map(|row| {
            let s = &row.service;
            let replicas: Vec<String> = s
                .replicas_by_status()
                .iter()
                .map(|(st, n)| format!("{n} {st}"))
                .collect();
            vec![
                clean(&s.name).into_owned(),
                s.status.to_string(),
                clean(s.owner()).into_owned(),
                format!("{}/{}", row.ready_replicas, s.replicas.len()),
                if replicas.is_empty() {
                    "-".into()
                } else {
                    replicas.join(", ")
                },
                clean(s.policy.as_deref().unwrap_or("-")).into_owned(),
                clean(s.endpoint.as_deref().unwrap_or("-")).into_owned(),
                s.ready_since
                    .map(|t| human_duration(r.generated_at.secs_since(t).max(0.0)))
                    .unwrap_or_else(|| "-".into()),
                dollars(row.hourly_cost),
            ]
        })
        .collect();
    if rows.is_empty() {
        out.push_str("No services.\n");
        return out;
    }
    out.push_str(&columns(&headers, &rows));
    out
}

/// `status --services`: the SkyServe services not gone (all of them with `all`).
pub(crate) fn run_services(config: &Config, json: bool, all: bool) -> anyhow::Result<()> {
    let store = open_store(config)?;
    let query = crate::store::ServiceQuery {
        live: !all,
        ..Default::default()
    };
    let r = crate::services::report(
        &store,
        &query,
        SystemClock.now(),
        config.cluster_manager.services_poll_interval_secs,
    )?;
    let text = if json {
        serde_json::to_string_pretty(&r)? + "\n"
    } else {
        render_services_table(&r)
    };
    write_out(&text)
}

/// The host database, read-only; an error says when the cluster manager never made it.
fn open_store(config: &Config) -> anyhow::Result<Store> {
    let path = &config.cluster_manager.database;
    if !path.exists() {
        anyhow::bail!(
            "host database {} does not exist: is the cluster manager running (skypilot-host cluster-manager)?",
            path.display()
        );
    }
    Ok(Store::open_read_only(path)?)
}

fn write_out(text: &str) -> anyhow::Result<()> {
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

    #[test]
    fn polling_line_says_when_the_interval_is_stretched() {
        use crate::load_budget::PollLoad;
        use crate::time::Timestamp;
        let load = PollLoad {
            measured_at: Timestamp::from_secs(1000),
            status_secs: 2.5,
            cpu_secs: 2.5,
            cpu_source: crate::load_budget::CpuSource::Cgroup,
            interval_secs: 125.0,
            share: 0.02,
            budget: 0.02,
        };
        let stretched = polling_line(&Polling {
            poll_interval_secs: 30,
            effective_interval_secs: 125.0,
            load: Some(load),
        });
        assert!(
            stretched.contains("/status takes 2.50 s and 2.50 s of the API server's CPU, counted from the API server's CPU from its cgroup: 2.00% of its time"),
            "{stretched}"
        );
        assert!(
            stretched.contains("stretched from poll_interval_secs 30 s"),
            "{stretched}"
        );
        assert!(stretched.starts_with("Polling every 125 s:"), "{stretched}");
        let plain = polling_line(&Polling {
            poll_interval_secs: 30,
            effective_interval_secs: 30.0,
            load: Some(PollLoad {
                status_secs: 0.1,
                interval_secs: 30.0,
                share: 0.1 / 30.0,
                ..load
            }),
        });
        assert!(!plain.contains("stretched"), "{plain}");
        assert!(plain.contains("0.33%"), "{plain}");
    }

    #[test]
    fn skypilot_text_reaches_the_table_escaped() {
        use crate::cluster::Cluster;
        use crate::fleet::{ClusterView, Freshness};
        use crate::store::ClusterRow;
        use crate::time::Timestamp;
        let now = Timestamp::from_secs(1000);
        let state = Freshness {
            stale: true,
            age_secs: Some(5.0),
            last_ok_poll_at: Some(Timestamp::from_secs(995)),
            last_error: Some("boom\x1b[2J".into()),
            last_error_at: Some(now),
        };
        let row = ClusterRow {
            cluster: Cluster {
                cloud: Some("AWS".into()),
                region: Some("us\u{202e}east".into()),
                user_name: Some("bob\r".into()),
                ..Cluster::bare("evil\x1b]0;owned\x07\nUP forged", ClusterStatus::Up)
            },
            hourly_cost: None,
            total_cost: None,
            first_seen: now,
            last_seen: now,
            last_changed: now,
            gone_at: None,
            price_source: None,
        };
        let report = StatusReport {
            generated_at: now,
            database: "db".into(),
            total: 1,
            clusters: vec![ClusterView::new(row, &state, now)],
            state,
            api_server: None,
            polling: Polling {
                poll_interval_secs: 30,
                effective_interval_secs: 30.0,
                load: None,
            },
        };
        let table = render_table(&report);
        assert!(
            !table.chars().any(|c| c.is_control() && c != '\n'),
            "{table:?}"
        );
        assert!(!table.contains('\u{202e}'), "{table:?}");
        assert_eq!(table.lines().count(), 5, "no forged row: {table}");
        assert!(
            table.contains("evil\\x1b]0;owned\\x07\\nUP forged"),
            "{table}"
        );
        assert!(table.contains("boom\\x1b[2J"), "{table}");
    }
}
