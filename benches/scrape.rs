//! Scrape benchmark of `skypilot-host monitor` (not a test; prints figures).
//!
//! For 1,000 and 10,000 clusters: generates a host database, runs the real binary
//! against it, scrapes `/metrics` over loopback (Prometheus text; the OpenMetrics size
//! too) and prints median/p90/min time, bytes, and the monitor's RSS after the scrapes.
//!
//! Optional: `SKYPILOT_METRICS_URL=http://127.0.0.1:PORT/metrics` (SkyPilot's own
//! metrics endpoint, `SKY_API_SERVER_METRICS_ENABLED=true`) is scraped alternately with
//! the monitor at 1,000 clusters, so both see the same load, and the ratio printed. `SCRAPE_BENCH_RUNS` sets the number of timed scrapes (50).
//!
//! Run: `cargo bench --bench scrape`

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{ensure, Context};

use skypilot_host::cluster::{Cluster, ClusterStatus};
use skypilot_host::store::{
    ApiServerHealth, AuditEntry, ClusterChanges, ClusterRow, PollOutcome, PollRun, Store,
};

const NOW: i64 = 1_800_000_000;

fn now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(NOW as f64)
}

/// A fleet of `n` clusters over 3 clouds, 9 regions, 4 workspaces, mixed statuses,
/// autostop settings and prices.
fn generate(db: &Path, n: usize) -> anyhow::Result<()> {
    let mut store = Store::open(db).context("open the benchmark database")?;
    let clouds = [
        ("aws", ["us-east-1", "us-west-2", "eu-west-1"]),
        ("gcp", ["us-central1", "europe-west4", "asia-east1"]),
        ("azure", ["eastus", "westeurope", "japaneast"]),
    ];
    let types = [
        "m6i.large",
        "m6i.2xlarge",
        "g5.xlarge",
        "p4d.24xlarge",
        "n2-standard-8",
    ];
    let t = now() as i64;
    let upserts = (0..n)
        .map(|i| {
            let (cloud, regions) = clouds[i % 3];
            let status = match i % 20 {
                0..=11 => ClusterStatus::Up,
                12..=16 => ClusterStatus::Stopped,
                17 | 18 => ClusterStatus::Init,
                _ => ClusterStatus::Gone,
            };
            let name = format!(
                "team-{}-cluster-{i:05}",
                ["ml", "data", "infra", "research"][i % 4]
            );
            ClusterRow {
                cluster: Cluster {
                    name: name.clone(),
                    cluster_hash: format!("{i:08x}"),
                    status,
                    cloud: Some(cloud.to_string()),
                    region: Some(regions[(i / 3) % 3].to_string()),
                    zone: None,
                    instance_type: Some(types[i % types.len()].to_string()),
                    nodes: 1 + (i % 4) as i64,
                    cpus: Some("8".into()),
                    memory: Some("32".into()),
                    accelerators: None,
                    resources: Some(format!(
                        "1x(cpus=8, mem=32, {}, disk=256)",
                        types[i % types.len()]
                    )),
                    workspace: ["default", "ml", "data", "research"][i % 4].to_string(),
                    user_name: Some(format!("user{}", i % 50)),
                    user_hash: Some(format!("{:08x}", i % 50)),
                    launched_at: Some(t - 60 * (i as i64 % 5000)),
                    status_updated_at: Some(t - 30),
                    autostop_minutes: if i % 7 == 0 {
                        -1
                    } else {
                        10 * (1 + (i % 6) as i64)
                    },
                    autostop_to_down: i % 5 == 0,
                    is_managed: false,
                    last_use: Some("sky launch task.yaml".into()),
                },
                hourly_cost: (i % 11 != 0).then_some(0.1 + (i % 40) as f64 * 0.37),
                total_cost: (i % 9 != 0).then_some((i % 300) as f64 * 1.13),
                first_seen: t - 100_000,
                last_seen: t - 10,
                last_changed: t - 10,
                gone_at: (status == ClusterStatus::Gone).then_some(t - 1000),
            }
        })
        .collect();
    let run = |ago: f64, outcome, kind: Option<&str>| PollRun {
        id: 0,
        started_at: now() - ago - 1.0,
        finished_at: now() - ago,
        refresh: "NONE".into(),
        outcome,
        error_kind: kind.map(str::to_string),
        error: kind.map(str::to_string),
        clusters: None,
        changes: None,
    };
    for k in ["timeout", "connect", "http_500"] {
        store
            .record_poll_failure(&run(600.0, PollOutcome::Error, Some(k)))
            .context("record a poll failure")?;
    }
    store
        .commit_poll(
            &ClusterChanges {
                upserts,
                gone: vec![],
                transitions: vec![],
            },
            &run(5.0, PollOutcome::Ok, None),
        )
        .context("write the fleet")?;
    store
        .set_api_server_health(&ApiServerHealth {
            checked_at: now() - 3.0,
            healthy: true,
            version: Some("0.14.1".into()),
            api_version: Some("62".into()),
            commit: Some("bench".into()),
            latency_ms: Some(4.2),
            error: None,
        })
        .context("write API server health")?;
    for (action, outcome) in [
        ("autostop", "ok"),
        ("autostop", "error"),
        ("stop", "ok"),
        ("login", "ok"),
    ] {
        store
            .append_audit(&AuditEntry {
                at: now() - 100.0,
                actor: "bench".into(),
                action: action.into(),
                cluster: None,
                outcome: outcome.into(),
                detail: None,
            })
            .context("append audit")?;
    }
    Ok(())
}

/// One HTTP/1.1 GET over a new connection; returns (elapsed, status line, body bytes).
fn scrape(addr: &str, path: &str, accept: &str) -> std::io::Result<(Duration, String, usize)> {
    let started = Instant::now();
    let mut s = TcpStream::connect(addr)?;
    s.set_read_timeout(Some(Duration::from_secs(30)))?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nAccept: {accept}\r\nConnection: close\r\n\r\n"
    )?;
    let mut buf = Vec::with_capacity(1 << 20);
    s.read_to_end(&mut buf)?;
    let elapsed = started.elapsed();
    let text = String::from_utf8_lossy(&buf);
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head.lines().next().unwrap_or("").to_string();
    let len = head
        .lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case("content-length")
                .then(|| v.trim().parse::<usize>().ok())
                .flatten()
        })
        .unwrap_or(body.len());
    Ok((elapsed, status, len))
}

struct Stats {
    median_ms: f64,
    p90_ms: f64,
    min_ms: f64,
    bytes: usize,
}

fn measure(addr: &str, path: &str, accept: &str, runs: usize) -> anyhow::Result<Stats> {
    for _ in 0..3 {
        let (_, status, _) = scrape(addr, path, accept).context("warm-up scrape")?;
        ensure!(status.contains(" 200 "), "{addr}{path}: {status}");
    }
    let mut times = Vec::with_capacity(runs);
    let mut bytes = 0;
    for _ in 0..runs {
        let (t, status, len) = scrape(addr, path, accept).context("scrape")?;
        ensure!(status.contains(" 200 "), "{addr}{path}: {status}");
        times.push(t.as_secs_f64() * 1000.0);
        bytes = len;
    }
    times.sort_by(|a, b| a.total_cmp(b));
    ensure!(
        !times.is_empty(),
        "no timed scrapes (SCRAPE_BENCH_RUNS = 0)"
    );
    Ok(Stats {
        median_ms: times[times.len() / 2],
        p90_ms: times[(times.len() * 9 / 10).min(times.len() - 1)],
        min_ms: times[0],
        bytes,
    })
}

fn rss_kib(pid: u32) -> (u64, u64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

struct Monitor(Child);

impl Drop for Monitor {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.0.id().to_string()])
            .status();
        let _ = self.0.wait();
    }
}

fn start_monitor(dir: &Path, db: &Path) -> anyhow::Result<(Monitor, String)> {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .context("pick a free port")?
        .port();
    let addr = format!("127.0.0.1:{port}");
    let cfg = dir.join("host.toml");
    std::fs::write(
        &cfg,
        format!(
            "[cluster_manager]\ndatabase = {:?}\n[monitor]\nlisten = \"{addr}\"\n[log]\nlevel = \"warn\"\n",
            db.display().to_string()
        ),
    )
    .context("write the config")?;
    let child = Command::new(env!("CARGO_BIN_EXE_skypilot-host"))
        .args(["monitor", "--config"])
        .arg(&cfg)
        .stdout(Stdio::null())
        .spawn()
        .context("start skypilot-host monitor")?;
    let monitor = Monitor(child);
    for _ in 0..200 {
        if scrape(&addr, "/healthz", "*/*").is_ok() {
            return Ok((monitor, addr));
        }
        std::thread::sleep(Duration::from_millis(25));
    }
    anyhow::bail!("the monitor did not come up on {addr}")
}

fn main() -> anyhow::Result<()> {
    // `cargo bench` passes `--bench`; nothing else is accepted.
    let runs: usize = std::env::var("SCRAPE_BENCH_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(50);
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, v)| v.trim().to_string())
        })
        .unwrap_or_else(|| "unknown".into());
    let nproc = std::thread::available_parallelism().map_or(0, |n| n.get());
    println!("machine: {nproc} CPUs, {cpu}; {runs} timed scrapes per case after 3 warm-ups");

    // SkyPilot's own endpoint, if given: scraped alternately with the monitor at 1,000
    // clusters, so both see the same machine load.
    let sky = match std::env::var("SKYPILOT_METRICS_URL") {
        Ok(url) => {
            let rest = url
                .strip_prefix("http://")
                .context("SKYPILOT_METRICS_URL must be an http:// URL")?;
            let (addr, path) = match rest.split_once('/') {
                Some((a, p)) => (a.to_string(), format!("/{p}")),
                None => (rest.to_string(), "/metrics".to_string()),
            };
            Some((url.clone(), addr, path))
        }
        Err(_) => None,
    };

    for n in [1_000usize, 10_000] {
        let dir = tempfile::tempdir().context("temp dir")?;
        let db = dir.path().join("host.db");
        let t = Instant::now();
        generate(&db, n)?;
        let gen = t.elapsed();
        let (monitor, addr) = start_monitor(dir.path(), &db)?;
        let (rss0, _) = rss_kib(monitor.0.id());
        let floor = measure(&addr, "/healthz", "*/*", runs)?;
        let text = measure(&addr, "/metrics", "text/plain", runs)?;
        let om = measure(
            &addr,
            "/metrics",
            "application/openmetrics-text",
            runs.min(10),
        )?;
        let (rss, hwm) = rss_kib(monitor.0.id());
        println!(
            "{n:>6} clusters: text median {:.2} ms (p90 {:.2}, min {:.2}), {} bytes; openmetrics median {:.2} ms, {} bytes; \
             monitor RSS {:.1} MiB idle, {:.1} MiB after scrapes (peak {:.1} MiB); database generated in {:.1} s",
            text.median_ms,
            text.p90_ms,
            text.min_ms,
            text.bytes,
            om.median_ms,
            om.bytes,
            rss0 as f64 / 1024.0,
            rss as f64 / 1024.0,
            hwm as f64 / 1024.0,
            gen.as_secs_f64()
        );
        println!(
            "        HTTP floor (/healthz on the same server): median {:.2} ms",
            floor.median_ms
        );
        if let (1_000, Some((url, sky_addr, sky_path))) = (n, &sky) {
            let mut ours = Vec::with_capacity(runs);
            let mut theirs = Vec::with_capacity(runs);
            let mut sky_bytes = 0;
            for _ in 0..runs {
                let (t, status, _) = scrape(&addr, "/metrics", "text/plain")?;
                ensure!(status.contains(" 200 "), "{addr}/metrics: {status}");
                ours.push(t.as_secs_f64() * 1000.0);
                let (t, status, len) = scrape(sky_addr, sky_path, "text/plain")?;
                ensure!(status.contains(" 200 "), "{url}: {status}");
                theirs.push(t.as_secs_f64() * 1000.0);
                sky_bytes = len;
            }
            let median = |v: &mut Vec<f64>| {
                v.sort_by(|a, b| a.total_cmp(b));
                v.get(v.len() / 2).copied().unwrap_or(f64::NAN)
            };
            let (o, t) = (median(&mut ours), median(&mut theirs));
            println!(
                "        alternating with SkyPilot's own {url} ({sky_bytes} bytes): SkyPilot median {t:.2} ms, monitor median {o:.2} ms: SkyPilot's scrape takes {:.1}x the monitor's",
                t / o
            );
        }
        drop(monitor);
    }
    if sky.is_none() {
        println!("SkyPilot's own /metrics not measured (set SKYPILOT_METRICS_URL to include it)");
    }
    Ok(())
}
