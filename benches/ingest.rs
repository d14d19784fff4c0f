//! Ingest benchmark: the cluster manager against a simulated fleet of 10,000 clusters.
//!
//!     cargo bench --bench ingest            (results go to stdout; see docs/performance.md)
//!     INGEST_CLUSTERS=1000 cargo bench --bench ingest
//!
//! Measures, as medians over several rounds: the first cycle (every cluster new), a
//! no-change cycle, and the parts of a cycle (parse of the status answer, diff, commit),
//! then the resident memory of a real `skypilot-host cluster-manager` process holding
//! the fleet.

#[path = "../tests/support/mod.rs"]
mod support;

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use skypilot_host::cluster_manager::{diff, Manager};
use skypilot_host::config::Config;
use skypilot_host::skypilot::wire::{parse_records, StatusRecord};
use skypilot_host::skypilot::{parse_status, Client, RefreshMode};
use skypilot_host::store::{PollOutcome, PollRun, Store};
use skypilot_host::time::{SystemClock, Timestamp};
use support::sim::Simulator;

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
    c.cluster_manager.database = db.to_path_buf();
    // The benchmark measures plain polls; forced ones ask the clouds.
    c.cluster_manager.force_refresh_interval_secs = 1_000_000;
    c
}

fn rss_kib(pid: u32, field: &str) -> Option<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    s.lines()
        .find(|l| l.starts_with(field))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

fn main() -> anyhow::Result<()> {
    let n: usize = std::env::var("INGEST_CLUSTERS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(10_000);
    let rounds = 7;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let sim = rt.block_on(Simulator::start())?;
    sim.generate_clusters("bench", n);
    let url = sim.url();

    // Parts: the status answer's size and parse time.
    let client = Client::new(&config(&url, std::path::Path::new("unused")).skypilot)?;
    let raw = rt.block_on(client.status_raw(RefreshMode::None))?;
    let mut fetch = Vec::new();
    for _ in 0..rounds {
        let t = Instant::now();
        let r = rt.block_on(client.status_raw(RefreshMode::None))?;
        fetch.push(ms(t.elapsed()));
        anyhow::ensure!(r.len() == raw.len(), "status answer changed size");
    }
    // The /api/get body as it arrives (the request payload whose return_value is the
    // status answer as a JSON string), to time its decoding apart from the server.
    let body: Vec<u8> = rt.block_on(async {
        let http = reqwest::Client::new();
        let resp = http
            .post(format!("{url}/status"))
            .json(&serde_json::json!({"refresh": "NONE", "include_handle": false, "include_credentials": false}))
            .send()
            .await?;
        let id = resp
            .headers()
            .get("x-skypilot-request-id")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
            .ok_or_else(|| anyhow::anyhow!("no request id"))?;
        let body = http
            .get(format!("{url}/api/get?request_id={id}"))
            .send()
            .await?
            .bytes()
            .await?;
        anyhow::Ok(body.to_vec())
    })?;
    let mut decode = Vec::new();
    for _ in 0..rounds {
        let t = Instant::now();
        let p: skypilot_host::skypilot::wire::RequestPayload = serde_json::from_slice(&body)?;
        decode.push(ms(t.elapsed()));
        anyhow::ensure!(
            p.return_value.map(|r| r.len()) == Some(raw.len()),
            "payload differs"
        );
    }
    let mut parse = Vec::new();
    let mut convert = Vec::new();
    let mut fingerprint = Vec::new();
    let mut known_fps: HashMap<String, u64> = HashMap::new();
    for _ in 0..rounds {
        let t = Instant::now();
        let records: Vec<StatusRecord> = parse_records(&raw).map_err(anyhow::Error::msg)?;
        parse.push(ms(t.elapsed()));
        anyhow::ensure!(records.len() == n, "expected {n} records");
        // The no-change path: every record's fingerprint matches a known one.
        let t = Instant::now();
        let mut same = 0;
        for r in &records {
            if known_fps.get(r.name.as_ref()) == Some(&r.fingerprint()) {
                same += 1;
            }
        }
        fingerprint.push(ms(t.elapsed()));
        anyhow::ensure!(known_fps.is_empty() || same == n, "fingerprints differ");
        let fps: Vec<(String, u64)> = records
            .iter()
            .map(|r| (r.name.to_string(), r.fingerprint()))
            .collect();
        let t = Instant::now();
        let clusters = records
            .into_iter()
            .map(|r| r.into_cluster())
            .collect::<Result<Vec<_>, _>>()
            .map_err(anyhow::Error::msg)?;
        convert.push(ms(t.elapsed()));
        anyhow::ensure!(clusters.len() == n);
        known_fps = fps.into_iter().collect();
    }

    // Full cycles through the Manager: first (all new) and no-change.
    let mut first = Vec::new();
    let mut unchanged = Vec::new();
    let mut unchanged_writes = Vec::new();
    let mut diff_ms = Vec::new();
    let mut commit_first = Vec::new();
    for _ in 0..rounds {
        let dir = tempfile::tempdir()?;
        let db = dir.path().join("host.db");
        let mut m = Manager::new(config(&url, &db), Arc::new(SystemClock))?;
        let t = Instant::now();
        let r = rt.block_on(m.poll_once());
        first.push(ms(t.elapsed()));
        anyhow::ensure!(
            r.outcome == PollOutcome::Ok,
            "first poll failed: {:?}",
            r.error
        );
        anyhow::ensure!(r.changes == n, "expected {n} changes, got {}", r.changes);
        let before = m.store().total_changes();
        let t = Instant::now();
        let r = rt.block_on(m.poll_once());
        unchanged.push(ms(t.elapsed()));
        anyhow::ensure!(r.changes == 0, "no-change poll changed {}", r.changes);
        // Rows written by the no-change cycle (the poll record and the health row).
        unchanged_writes.push((m.store().total_changes() - before) as f64);

        // Diff and commit alone, against a fresh database.
        let clusters = parse_status(&raw).map_err(anyhow::Error::msg)?;
        let t = Instant::now();
        let changes = diff(
            &HashMap::new(),
            clusters,
            &HashSet::new(),
            &HashMap::new(),
            &|_: &skypilot_host::cluster::Cluster| None,
            Timestamp::from_secs(1),
        );
        diff_ms.push(ms(t.elapsed()));
        let mut store = Store::open(&dir.path().join("parts.db"))?;
        let run = PollRun {
            id: 0,
            started_at: Timestamp::from_secs(0),
            finished_at: Timestamp::from_secs(1),
            refresh: RefreshMode::None,
            outcome: PollOutcome::Ok,
            error_kind: None,
            error: None,
            clusters: Some(n as i64),
            changes: Some(n as i64),
        };
        let t = Instant::now();
        store.commit_poll(&changes, &run)?;
        commit_first.push(ms(t.elapsed()));
    }

    // RSS of the real binary holding the fleet.
    let dir = tempfile::tempdir()?;
    let cfg_path = dir.path().join("host.toml");
    std::fs::write(
        &cfg_path,
        format!(
            "[skypilot]\napi_url = {url:?}\n[cluster_manager]\npoll_interval_secs = 1\nforce_refresh_interval_secs = 1000000\ndatabase = {:?}\n[log]\nlevel = \"warn\"\n",
            dir.path().join("host.db").to_str().unwrap_or("host.db")
        ),
    )?;
    let exe = std::env::var("SKYPILOT_HOST_BIN").unwrap_or_else(|_| {
        concat!(env!("CARGO_MANIFEST_DIR"), "/target/release/skypilot-host").to_string()
    });
    let rss = match std::process::Command::new(&exe)
        .args(["cluster-manager", "--config"])
        .arg(&cfg_path)
        .spawn()
    {
        Ok(mut child) => {
            // Let it ingest, then sample while it runs no-change polls every second.
            std::thread::sleep(Duration::from_secs(3));
            let mut samples = Vec::new();
            for _ in 0..50 {
                if let Some(kib) = rss_kib(child.id(), "VmRSS:") {
                    samples.push(kib as f64);
                }
                std::thread::sleep(Duration::from_millis(100));
            }
            let peak = rss_kib(child.id(), "VmHWM:");
            let _ = child.kill();
            let _ = child.wait();
            (!samples.is_empty()).then(|| (median(samples), peak))
        }
        Err(e) => {
            eprintln!("cannot start {exe} ({e}); build it with `cargo build --release` for the RSS figure");
            None
        }
    };

    println!(
        "clusters: {n}; status answer: {:.1} MiB of JSON",
        raw.len() as f64 / 1048576.0
    );
    let decode_ms = median(decode);
    let parse_ms = median(parse);
    println!(
        "fetch (simulator builds the answer + HTTP + payload decode): median {:7.1} ms",
        median(fetch)
    );
    println!("decode of the request payload:   median {decode_ms:7.1} ms");
    println!("parse of the status answer:      median {parse_ms:7.1} ms");
    let diff_new = median(diff_ms);
    let convert_ms = median(convert);
    // The first round had no known fingerprints; the others are the no-change path.
    let fingerprint_ms = median(fingerprint[1..].to_vec());
    let commit_ms = median(commit_first);
    println!("convert records to clusters:     median {convert_ms:7.1} ms");
    println!("diff, all new:                   median {diff_new:7.1} ms");
    println!("fingerprint check, no change:    median {fingerprint_ms:7.1} ms");
    println!("commit, all new:                 median {commit_ms:7.1} ms");
    println!(
        "ingest, first cycle (decode+parse+convert+diff+commit): {:7.1} ms",
        decode_ms + parse_ms + convert_ms + diff_new + commit_ms
    );
    println!(
        "ingest, no-change cycle (decode+parse+fingerprint check, no write): {:7.1} ms",
        decode_ms + parse_ms + fingerprint_ms
    );
    println!(
        "first cycle (HTTP+parse+diff+commit): median {:7.1} ms",
        median(first)
    );
    println!(
        "no-change cycle (HTTP+parse+diff):    median {:7.1} ms",
        median(unchanged)
    );
    println!(
        "rows written by a no-change cycle:    {} (poll record + health row; no cluster row)",
        median(unchanged_writes)
    );
    match rss {
        Some((median_kib, peak)) => println!(
            "cluster-manager RSS holding {n} clusters: median {:.1} MiB between and during polls, peak (VmHWM) {}",
            median_kib / 1024.0,
            peak.map_or("unknown".to_string(), |p| format!("{:.1} MiB", p as f64 / 1024.0))
        ),
        None => println!("cluster-manager RSS: not measured"),
    }
    Ok(())
}
