//! Scrape benchmark of `skypilot-host monitor` (not a test; prints figures).
//!
//! For 1,000 and 10,000 clusters: generates a host database, runs the real binary
//! against it, scrapes `/metrics` over loopback (Prometheus text; the OpenMetrics size
//! too) and prints median/p90/min time, bytes, and the monitor's RSS after the scrapes.
//! Scrapes of an unchanged database, and scrapes each preceded by a write like the
//! cluster manager's (a poll that changed no cluster; one that changed a cluster), are
//! timed apart. Then, in process, where the time goes: read, rendering, the monitor's
//! scrape in each case, the hand-over to a blocking thread, and HTTP for a body of the
//! same size served from memory.
//!
//! Optional: `SKYPILOT_METRICS_URL=http://127.0.0.1:PORT/metrics` (SkyPilot's own
//! metrics endpoint, `SKY_API_SERVER_METRICS_ENABLED=true`) is scraped alternately with
//! the monitor at 1,000 clusters, so both see the same load, and the ratio printed.
//! `SCRAPE_BENCH_RUNS` sets the number of timed scrapes (50).
//!
//! Run: `cargo bench --bench scrape`

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{ensure, Context};
use bytes::Bytes;

use skypilot_host::cluster::{Cluster, ClusterStatus};
use skypilot_host::monitor::{render, Format, Reader, Scraper, Served};
use skypilot_host::skypilot::RefreshMode;
use skypilot_host::store::{
    ApiServerHealth, AuditEntry, ClusterChanges, ClusterRow, PollOutcome, PollRun, Store,
};
use skypilot_host::time::{SystemClock, Timestamp};

const NOW: i64 = 1_800_000_000;

fn now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(NOW as f64)
}

const CLOUDS: [(&str, [&str; 3]); 3] = [
    ("aws", ["us-east-1", "us-west-2", "eu-west-1"]),
    ("gcp", ["us-central1", "europe-west4", "asia-east1"]),
    ("azure", ["eastus", "westeurope", "japaneast"]),
];
const TYPES: [&str; 5] = [
    "m6i.large",
    "m6i.2xlarge",
    "g5.xlarge",
    "p4d.24xlarge",
    "n2-standard-8",
];

/// Cluster `i` of the generated fleet, as of Unix time `t`.
fn fleet_row(i: usize, t: i64) -> ClusterRow {
    let (cloud, regions) = CLOUDS[i % 3];
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
            instance_type: Some(TYPES[i % TYPES.len()].to_string()),
            nodes: 1 + (i % 4) as i64,
            cpus: Some("8".into()),
            memory: Some("32".into()),
            accelerators: None,
            resources: Some(format!(
                "1x(cpus=8, mem=32, {}, disk=256)",
                TYPES[i % TYPES.len()]
            )),
            workspace: ["default", "ml", "data", "research"][i % 4].to_string(),
            user_name: Some(format!("user{}", i % 50)),
            user_hash: Some(format!("{:08x}", i % 50)),
            launched_at: Some(Timestamp::from_secs(t - 60 * (i as i64 % 5000))),
            status_updated_at: Some(Timestamp::from_secs(t - 30)),
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
        first_seen: Timestamp::from_secs(t - 100_000),
        last_seen: Timestamp::from_secs(t - 10),
        last_changed: Timestamp::from_secs(t - 10),
        gone_at: (status == ClusterStatus::Gone).then_some(Timestamp::from_secs(t - 1000)),
        price_source: None,
    }
}

fn poll_run(ago: f64, outcome: PollOutcome, kind: Option<&str>) -> PollRun {
    PollRun {
        id: 0,
        started_at: Timestamp::from(now() - ago - 1.0),
        finished_at: Timestamp::from(now() - ago),
        refresh: RefreshMode::None,
        outcome,
        error_kind: kind.map(str::to_string),
        error: kind.map(str::to_string),
        clusters: None,
        changes: None,
    }
}

fn api_health(ago: f64) -> ApiServerHealth {
    ApiServerHealth {
        checked_at: Timestamp::from(now() - ago),
        healthy: true,
        version: Some("0.14.1".into()),
        api_version: Some("62".into()),
        commit: Some("bench".into()),
        latency_ms: Some(4.2),
        error: None,
    }
}

/// A fleet of `n` clusters over 3 clouds, 9 regions, 4 workspaces, mixed statuses,
/// autostop settings and prices.
fn generate(db: &Path, n: usize) -> anyhow::Result<()> {
    let mut store = Store::open(db).context("open the benchmark database")?;
    let t = now() as i64;
    let upserts = (0..n).map(|i| fleet_row(i, t)).collect();
    for k in ["timeout", "connect", "http_500"] {
        store
            .record_poll_failure(&poll_run(600.0, PollOutcome::Error, Some(k)))
            .context("record a poll failure")?;
    }
    store
        .commit_poll(
            &ClusterChanges {
                upserts,
                ..Default::default()
            },
            &poll_run(5.0, PollOutcome::Ok, None),
        )
        .context("write the fleet")?;
    store
        .set_api_server_health(&api_health(3.0))
        .context("write API server health")?;
    for (action, outcome) in [
        ("autostop", "ok"),
        ("autostop", "error"),
        ("stop", "ok"),
        ("login", "ok"),
    ] {
        store
            .append_audit(&AuditEntry {
                at: Timestamp::from(now() - 100.0),
                actor: "bench".into(),
                action: action.parse().map_err(anyhow::Error::msg)?,
                cluster: None,
                outcome: outcome.parse().map_err(anyhow::Error::msg)?,
                detail: None,
            })
            .context("append audit")?;
    }
    Ok(())
}

/// What the cluster manager writes between two scrapes.
#[derive(Clone, Copy, PartialEq)]
enum Change {
    /// A poll that changed no cluster: its record and the API server's health.
    Poll,
    /// A poll that changed one cluster's accrued cost.
    ClusterChange,
}

fn write_change(store: &mut Store, what: Change, round: usize, t: i64) -> anyhow::Result<()> {
    let mut changes = ClusterChanges::default();
    if what == Change::ClusterChange {
        let mut row = fleet_row(1, t);
        row.total_cost = Some(round as f64);
        changes.upserts.push(row);
    }
    store
        .commit_poll(&changes, &poll_run(0.5, PollOutcome::Ok, None))
        .context("record a poll")?;
    store
        .set_api_server_health(&api_health(0.2))
        .context("write API server health")?;
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

impl Stats {
    fn of(mut times: Vec<f64>, bytes: usize) -> anyhow::Result<Stats> {
        ensure!(
            !times.is_empty(),
            "no timed scrapes (SCRAPE_BENCH_RUNS = 0)"
        );
        times.sort_by(|a, b| a.total_cmp(b));
        Ok(Stats {
            median_ms: times[times.len() / 2],
            p90_ms: times[(times.len() * 9 / 10).min(times.len() - 1)],
            min_ms: times[0],
            bytes,
        })
    }
}

/// 3 warm-up scrapes, then `runs` timed ones; `before(i)` runs ahead of each scrape,
/// untimed (a write to the database, or nothing).
fn measure_with(
    addr: &str,
    path: &str,
    accept: &str,
    runs: usize,
    mut before: impl FnMut(usize) -> anyhow::Result<()>,
) -> anyhow::Result<Stats> {
    let mut times = Vec::with_capacity(runs);
    let mut bytes = 0;
    for i in 0..runs + 3 {
        before(i)?;
        let (t, status, len) = scrape(addr, path, accept).context("scrape")?;
        ensure!(status.contains(" 200 "), "{addr}{path}: {status}");
        if i >= 3 {
            times.push(t.as_secs_f64() * 1000.0);
        }
        bytes = len;
    }
    Stats::of(times, bytes)
}

fn measure(addr: &str, path: &str, accept: &str, runs: usize) -> anyhow::Result<Stats> {
    measure_with(addr, path, accept, runs, |_| Ok(()))
}

/// Median of `runs` timings of `f` (milliseconds) after 3 warm-ups; `before(i)` runs
/// ahead of each, untimed.
fn time_ms<T>(
    runs: usize,
    mut before: impl FnMut(usize) -> anyhow::Result<()>,
    mut f: impl FnMut() -> anyhow::Result<T>,
) -> anyhow::Result<f64> {
    let mut times = Vec::with_capacity(runs);
    for i in 0..runs + 3 {
        before(i)?;
        let started = Instant::now();
        std::hint::black_box(f()?);
        if i >= 3 {
            times.push(started.elapsed().as_secs_f64() * 1000.0);
        }
    }
    Ok(Stats::of(times, 0)?.median_ms)
}

/// Where a scrape's time goes, in process: the read, the rendering, a scrape served by
/// the monitor's [`Scraper`] in its three cases, the hand-over to a blocking thread, and
/// HTTP with this benchmark's client for a body of the same size served from memory.
fn breakdown(db: &Path, runs: usize) -> anyhow::Result<()> {
    let clock = SystemClock;
    let mut reader = Reader::new(db);
    // The reader compares the clusters with its previous read in place: a read of an
    // unchanged table builds nothing. A cluster written before each read makes it a
    // full read.
    let read_same = time_ms(runs, |_| Ok(()), || Ok(reader.collect(&clock)))?;
    let mut store = Store::open(db).context("open the database for writing")?;
    let read = time_ms(
        runs,
        |i| write_change(&mut store, Change::ClusterChange, i, now() as i64),
        || Ok(reader.collect(&clock)),
    )?;
    drop(store);
    let snapshot = reader.collect(&clock);
    ensure!(
        snapshot.database_up(),
        "{}: {:?}",
        db.display(),
        snapshot.first_error
    );
    // Rendering consumes a snapshot: copies made ahead, untimed.
    let mut copies = vec![snapshot.clone(); runs + 3];
    let render_ms = time_ms(
        runs,
        |_| Ok(()),
        || {
            let s = copies.pop().context("snapshot copy")?;
            render(s, Format::Text).map_err(|_| anyhow::anyhow!("cannot render"))
        },
    )?;
    let text = Bytes::from(
        render(snapshot.clone(), Format::Text).map_err(|_| anyhow::anyhow!("cannot render"))?,
    );

    let mut scraper = Scraper::new(db);
    let mut scrape_case = |what: Option<Change>, want: Served| -> anyhow::Result<f64> {
        let mut store = Store::open(db).context("open the database for writing")?;
        let mut served = Vec::new();
        let ms = time_ms(
            runs,
            |i| match what {
                Some(w) => write_change(&mut store, w, i, now() as i64),
                None => Ok(()),
            },
            || {
                let (body, how) = scraper
                    .scrape_served(&clock, Format::Text)
                    .map_err(|_| anyhow::anyhow!("cannot render"))?;
                served.push(how);
                Ok(body)
            },
        )?;
        ensure!(
            served.iter().skip(3).all(|s| *s == want),
            "expected every timed scrape to be {want:?}, got {served:?}"
        );
        Ok(ms)
    };
    scrape_case(None, Served::Unchanged)?;
    let unchanged = scrape_case(None, Served::Unchanged)?;
    let after_poll = scrape_case(Some(Change::Poll), Served::SameClusters)?;
    let after_change = scrape_case(Some(Change::ClusterChange), Served::Rendered)?;

    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("start a runtime")?;
    let handover = rt.block_on(async {
        let mut times = Vec::with_capacity(runs);
        for _ in 0..runs + 3 {
            let started = Instant::now();
            tokio::task::spawn_blocking(|| ())
                .await
                .context("spawn_blocking")?;
            times.push(started.elapsed().as_secs_f64() * 1000.0);
        }
        Stats::of(times.split_off(3), 0).map(|s| s.median_ms)
    })?;
    let addr = rt.block_on(async {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .context("bind")?;
        let addr = listener.local_addr().context("address")?;
        let body = text.clone();
        let app = axum::Router::new().route(
            "/static",
            axum::routing::get(move || {
                let body = body.clone();
                async move { body }
            }),
        );
        tokio::spawn(async move {
            use axum::serve::ListenerExt;
            let listener = listener.tap_io(|tcp| {
                let _ = tcp.set_nodelay(true);
            });
            let _ = axum::serve(listener, app).await;
        });
        anyhow::Ok(addr.to_string())
    })?;
    let http = measure(&addr, "/static", "text/plain", runs)?;
    ensure!(
        http.bytes == text.len(),
        "static body: {} bytes",
        http.bytes
    );
    println!(
        "        in process: full read {read:.3} ms (clusters as before: {read_same:.3} ms), render {render_ms:.3} ms ({} bytes); \
         HTTP and client for a body of that size from memory {:.3} ms; spawn_blocking hand-over {handover:.3} ms",
        text.len(),
        http.median_ms
    );
    println!(
        "        in process, scrape's blocking part: database unchanged {unchanged:.3} ms, \
         after a poll (clusters unchanged) {after_poll:.3} ms, after a cluster change {after_change:.3} ms"
    );
    Ok(())
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
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    println!(
        "machine: {nproc} CPUs, {cpu}; load average {}; {runs} timed scrapes per case after 3 warm-ups",
        load.split_whitespace().take(3).collect::<Vec<_>>().join(" ")
    );

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
        let mut store = Store::open(&db).context("open the database for writing")?;
        let polled = measure_with(&addr, "/metrics", "text/plain", runs, |i| {
            write_change(&mut store, Change::Poll, i, now() as i64)
        })?;
        let changed = measure_with(&addr, "/metrics", "text/plain", runs, |i| {
            write_change(&mut store, Change::ClusterChange, i, now() as i64)
        })?;
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
            "        database written before every scrape: a poll that changed no cluster: text median {:.2} ms (p90 {:.2}); \
             a poll that changed one cluster: text median {:.2} ms (p90 {:.2})",
            polled.median_ms, polled.p90_ms, changed.median_ms, changed.p90_ms
        );
        println!(
            "        HTTP floor (/healthz on the same server): median {:.2} ms",
            floor.median_ms
        );
        breakdown(&db, runs)?;
        if let (1_000, Some((url, sky_addr, sky_path))) = (n, &sky) {
            let mut ours = Vec::with_capacity(runs);
            let mut ours_polled = Vec::with_capacity(runs);
            let mut theirs = Vec::with_capacity(runs);
            let mut sky_bytes = 0;
            for i in 0..runs {
                let (t, status, _) = scrape(&addr, "/metrics", "text/plain")?;
                ensure!(status.contains(" 200 "), "{addr}/metrics: {status}");
                ours.push(t.as_secs_f64() * 1000.0);
                let (t, status, len) = scrape(sky_addr, sky_path, "text/plain")?;
                ensure!(status.contains(" 200 "), "{url}: {status}");
                theirs.push(t.as_secs_f64() * 1000.0);
                sky_bytes = len;
                write_change(&mut store, Change::Poll, i, now() as i64)?;
                let (t, status, _) = scrape(&addr, "/metrics", "text/plain")?;
                ensure!(status.contains(" 200 "), "{addr}/metrics: {status}");
                ours_polled.push(t.as_secs_f64() * 1000.0);
            }
            let (o, p, t) = (
                Stats::of(ours, 0)?.median_ms,
                Stats::of(ours_polled, 0)?.median_ms,
                Stats::of(theirs, 0)?.median_ms,
            );
            println!(
                "        alternating with SkyPilot's own {url} ({sky_bytes} bytes): SkyPilot median {t:.2} ms; \
                 monitor median {o:.2} ms with the database unchanged (SkyPilot's scrape takes {:.1}x the monitor's), \
                 {p:.2} ms right after a poll ({:.1}x)",
                t / o,
                t / p
            );
        }
        drop(monitor);
    }
    if sky.is_none() {
        println!("SkyPilot's own /metrics not measured (set SKYPILOT_METRICS_URL to include it)");
    }
    Ok(())
}
