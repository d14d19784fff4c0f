//! Managed-jobs benchmark: the cluster manager taking in SkyPilot's job queue, and the
//! monitor's scrape with the jobs beside the clusters.
//!
//!     cargo bench --bench jobs                     (the simulator: 10,000 jobs, 1,000 clusters)
//!     BENCH_JOBS=1000 cargo bench --bench jobs
//!     JOBS_API_URL=http://127.0.0.1:PORT cargo bench --bench jobs
//!         also a real SkyPilot API server holding the jobs (scripts/bench-jobs.sh makes
//!         one): its /jobs/queue/v2 round trip and the ingest of its own answer
//!
//! Medians over 7 rounds (5 against a real server). Results go to stdout; see
//! docs/performance.md.

#[path = "../tests/support/mod.rs"]
mod support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use skypilot_host::cluster_manager::Manager;
use skypilot_host::config::Config;
use skypilot_host::skypilot::Client;
use skypilot_host::time::SystemClock;
use support::sim::{SimJob, Simulator};

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn config(url: &str, db: &std::path::Path) -> Config {
    let mut c = Config::default();
    c.skypilot.api_url = url.to_string();
    c.skypilot.request_timeout_secs = 300;
    c.cluster_manager.database = db.to_path_buf();
    c.cluster_manager.force_refresh_interval_secs = 1_000_000;
    c
}

/// The same mix as `skyctl.py jobs-bulk`: every 10th running on a cluster, every 10th
/// failed, the rest succeeded.
fn fill(sim: &Simulator, n: usize) {
    let now = 1_796_540_000.0;
    for i in 0..n {
        let id = i as i64 + 1;
        let mut j = SimJob::new(id, &format!("bench-{i:05}"), "bench");
        j.submitted_at = Some(now);
        j.start_at = Some(now);
        match i % 10 {
            0 => {
                j.status = "RUNNING".into();
                j.cluster = Some(format!("bench-{i:05}-1"));
            }
            1 => {
                j.status = "FAILED".into();
                j.failure_reason = Some("exit 1 (benchmark)".into());
                j.end_at = Some(now + 60.0);
            }
            _ => {
                j.status = "SUCCEEDED".into();
                j.end_at = Some(now + 60.0);
            }
        }
        sim.upsert_job(j);
    }
}

/// First ingest (fresh database) and no-change ingest through `Manager::poll_jobs`
/// against `url`: (first medians, no-change median, jobs read).
fn ingest(
    rt: &tokio::runtime::Runtime,
    url: &str,
    rounds: usize,
) -> anyhow::Result<(f64, f64, usize)> {
    let mut first = Vec::new();
    let mut again = Vec::new();
    let mut jobs = 0;
    for _ in 0..rounds {
        let dir = tempfile::tempdir()?;
        let mut m = Manager::new(
            config(url, &dir.path().join("host.db")),
            Arc::new(SystemClock),
        )?;
        let t = Instant::now();
        let r = rt.block_on(m.poll_jobs());
        first.push(ms(t.elapsed()));
        anyhow::ensure!(r.error.is_none(), "ingest failed: {:?}", r.error);
        jobs = r.records;
        let t = Instant::now();
        let r = rt.block_on(m.poll_jobs());
        again.push(ms(t.elapsed()));
        anyhow::ensure!(
            r.changes == 0,
            "a no-change read changed {} jobs",
            r.changes
        );
    }
    Ok((median(first), median(again), jobs))
}

/// The host's own work on one answer `text`, medians: parse + diff + commit into a fresh
/// database (every job new), and parse + diff against what is known (no change, no write).
fn host_work(text: &str, rounds: usize) -> anyhow::Result<(f64, f64)> {
    use skypilot_host::jobs::{apply_jobs, diff_jobs, parse_queue, KnownJobs};
    use skypilot_host::store::{FeedState, Store};
    use skypilot_host::time::Timestamp;
    let mut first = Vec::new();
    let mut again = Vec::new();
    for _ in 0..rounds {
        let dir = tempfile::tempdir()?;
        let mut store = Store::open(&dir.path().join("host.db"))?;
        let now = Timestamp::from_secs(1_796_540_000);
        let feed = FeedState {
            attempted_at: now,
            ok_at: Some(now),
            records: None,
            seconds: None,
            interval_secs: None,
            error_kind: None,
            error: None,
        };
        let mut known = KnownJobs::new();
        let t = Instant::now();
        let jobs = parse_queue(text).map_err(anyhow::Error::msg)?;
        let changes = diff_jobs(&known, jobs, now);
        store.commit_jobs(&changes, &feed)?;
        first.push(ms(t.elapsed()));
        apply_jobs(&mut known, changes);
        let t = Instant::now();
        let jobs = parse_queue(text).map_err(anyhow::Error::msg)?;
        let changes = diff_jobs(&known, jobs, now);
        again.push(ms(t.elapsed()));
        anyhow::ensure!(
            changes.is_empty(),
            "a no-change read changed {} jobs",
            changes.len()
        );
    }
    Ok((median(first), median(again)))
}

/// The queue's round trip alone (request, wait, the answer's text), and its size.
fn round_trip(
    rt: &tokio::runtime::Runtime,
    client: &Client,
    rounds: usize,
) -> anyhow::Result<(f64, usize)> {
    let mut times = Vec::new();
    let mut size = 0;
    for _ in 0..rounds {
        let t = Instant::now();
        let text = rt.block_on(client.jobs_queue_raw())?;
        times.push(ms(t.elapsed()));
        size = text.len();
    }
    Ok((median(times), size))
}

fn main() -> anyhow::Result<()> {
    let n: usize = std::env::var("BENCH_JOBS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(10_000);
    let clusters = 1_000;
    let rounds = 7;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let sim = rt.block_on(Simulator::start())?;
    fill(&sim, n);
    sim.generate_clusters("bench", clusters);
    let url = sim.url();
    let client = Client::new(&config(&url, std::path::Path::new("unused")).skypilot)?;

    let (fetch, size) = round_trip(&rt, &client, rounds)?;
    let text = rt.block_on(client.jobs_queue_raw())?;
    let mut parse = Vec::new();
    for _ in 0..rounds {
        let t = Instant::now();
        let jobs = skypilot_host::jobs::parse_queue(&text).map_err(anyhow::Error::msg)?;
        parse.push(ms(t.elapsed()));
        anyhow::ensure!(jobs.len() == n, "parsed {} jobs", jobs.len());
    }
    let (first, again, read) = ingest(&rt, &url, rounds)?;
    println!(
        "simulator: {n} managed jobs, answer {:.2} MiB",
        size as f64 / 1048576.0
    );
    println!("  fetch (simulator builds and serves the answer) {fetch:.1} ms");
    println!("  parse {:.1} ms", median(parse));
    println!("  ingest, first (fetch + parse + diff + commit {read} new rows and transitions) {first:.1} ms");
    println!("  ingest, no change (fetch + parse + diff, no row written) {again:.1} ms");
    let (work_first, work_again) = host_work(&text, rounds)?;
    println!(
        "  the host's work alone: first (parse + diff + commit) {work_first:.1} ms, no change (parse + diff) {work_again:.1} ms"
    );

    // The scrape with 10,000 jobs and 1,000 clusters in the host database.
    let dir = tempfile::tempdir()?;
    let db = dir.path().join("host.db");
    {
        let mut m = Manager::new(config(&url, &db), Arc::new(SystemClock))?;
        let r = rt.block_on(m.poll_once());
        anyhow::ensure!(r.error.is_none(), "cluster poll failed: {:?}", r.error);
        let r = rt.block_on(m.poll_jobs());
        anyhow::ensure!(r.error.is_none(), "jobs read failed: {:?}", r.error);
    }
    let mut scrape = Vec::new();
    let mut bytes = 0;
    for _ in 0..rounds {
        let t = Instant::now();
        let snap = skypilot_host::monitor::collect(&db, &SystemClock);
        let body = skypilot_host::monitor::render(snap, skypilot_host::monitor::Format::Text)?;
        scrape.push(ms(t.elapsed()));
        bytes = body.len();
    }
    println!(
        "scrape ({n} jobs, {clusters} clusters, read + render, cold): {:.1} ms, {:.0} KiB",
        median(scrape),
        bytes as f64 / 1024.0
    );

    if let Ok(real) = std::env::var("JOBS_API_URL") {
        let rounds = 5;
        let client = Client::new(&config(&real, std::path::Path::new("unused")).skypilot)?;
        let (rtt, size) = round_trip(&rt, &client, rounds)?;
        let text = rt.block_on(client.jobs_queue_raw())?;
        let (first, again) = host_work(&text, rounds)?;
        let (whole_first, whole_again, read) = ingest(&rt, &real, 3)?;
        println!(
            "real SkyPilot at {real}: {read} managed jobs, answer {:.2} MiB",
            size as f64 / 1048576.0
        );
        println!("  /jobs/queue/v2 round trip (request, wait, answer) {rtt:.0} ms");
        println!(
            "  the host's work on that answer: first (parse + diff + commit) {first:.1} ms = {:.1}% of the round trip; no change (parse + diff) {again:.1} ms = {:.2}%",
            100.0 * first / rtt,
            100.0 * again / rtt
        );
        println!("  whole reads through the cluster manager: first {whole_first:.0} ms, no change {whole_again:.0} ms");
    }
    Ok(())
}
