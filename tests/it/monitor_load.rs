//! The monitor under a hostile client population, at 10,000 clusters: clients that ask
//! and never read, idle connections, clients that send headers one byte at a time. A
//! normal scrape still gets the whole answer, memory and threads stay bounded, and
//! SIGTERM stops the process within its shutdown deadline.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use skypilot_host::cluster::{Cluster, ClusterStatus};
use skypilot_host::skypilot::RefreshMode;
use skypilot_host::store::{ClusterChanges, ClusterRow, PollOutcome, PollRun, Store};
use skypilot_host::time::Timestamp;

use crate::support::host::{free_port, signal, wait_exit, HostProcess};

fn fleet(db: &std::path::Path, n: usize) {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let t = Timestamp::from_secs(now);
    let upserts = (0..n)
        .map(|i| ClusterRow {
            cluster: Cluster {
                name: format!("cluster-{i:05}"),
                cluster_hash: format!("h{i}"),
                status: if i % 3 == 0 {
                    ClusterStatus::Stopped
                } else {
                    ClusterStatus::Up
                },
                cloud: Some(["AWS", "GCP", "Azure"][i % 3].into()),
                region: Some(format!("region-{}", i % 9)),
                zone: None,
                instance_type: Some(["m6i.large", "n2-standard-8", "p4d.24xlarge"][i % 3].into()),
                nodes: 1,
                cpus: Some("8".into()),
                memory: Some("32".into()),
                accelerators: None,
                resources: None,
                workspace: "default".into(),
                user_name: Some(format!("user{}", i % 50)),
                user_hash: None,
                launched_at: Some(t - 3600.0),
                status_updated_at: None,
                autostop_minutes: 30,
                autostop_to_down: false,
                is_managed: false,
                last_use: None,
            },
            hourly_cost: Some(0.5),
            total_cost: Some(1.0),
            first_seen: t,
            last_seen: t,
            last_changed: t,
            gone_at: None,
            price_source: None,
        })
        .collect();
    let mut store = Store::open(db).unwrap();
    store
        .commit_poll(
            &ClusterChanges {
                upserts,
                ..Default::default()
            },
            &PollRun {
                id: 0,
                started_at: t,
                finished_at: t,
                refresh: RefreshMode::None,
                outcome: PollOutcome::Ok,
                error_kind: None,
                error: None,
                clusters: Some(n as i64),
                changes: Some(n as i64),
            },
        )
        .unwrap();
}

/// A whole `GET /metrics` over a new connection: (status line, body length).
fn scrape(port: u16) -> std::io::Result<(String, usize)> {
    let at = |step: &'static str| {
        move |e: std::io::Error| std::io::Error::new(e.kind(), format!("{step}: {e}"))
    };
    let mut s = TcpStream::connect(("127.0.0.1", port)).map_err(at("connect"))?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    s.write_all(b"GET /metrics HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")
        .map_err(at("write"))?;
    let mut out = Vec::new();
    s.read_to_end(&mut out).map_err(|e| {
        std::io::Error::new(e.kind(), format!("read after {} bytes: {e}", out.len()))
    })?;
    let text = String::from_utf8_lossy(&out);
    let status = text.lines().next().unwrap_or("").to_string();
    let body = text.split_once("\r\n\r\n").map_or(0, |(_, b)| b.len());
    Ok((status, body))
}

fn tail(text: &str) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(30)..].join("\n")
}

fn proc_status(pid: u32, key: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix(key))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap()
}

#[test]
fn hostile_clients_do_not_exhaust_the_monitor() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("host.db");
    fleet(&db, 10_000);
    let port = free_port();
    let cfg = dir.path().join("host.toml");
    std::fs::write(
        &cfg,
        format!(
            "[cluster_manager]\ndatabase = {:?}\n[monitor]\nlisten = \"127.0.0.1:{port}\"\n[log]\nlevel = \"debug\"\n",
            db.to_str().unwrap()
        ),
    )
    .unwrap();
    let mut monitor = HostProcess::role("monitor", &cfg, &dir.path().join("monitor.log"));
    let pid = monitor.id();
    let started = Instant::now();
    let (status, full) = loop {
        if let Ok(r) = scrape(port) {
            break r;
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "the monitor never answered"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(status.contains("200"), "{status}");
    assert!(
        full > 2_000_000,
        "a 10,000-cluster scrape is megabytes, got {full}"
    );

    let mut hostile = Vec::new();
    // Ask and never read: each answer is megabytes. (More than a few hundred of them
    // exhaust the kernel's TCP memory here, which then resets connections itself: the
    // answers pile up in socket buffers, outside the monitor.)
    for _ in 0..250 {
        let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
        s.write_all(b"GET /metrics HTTP/1.1\r\nhost: x\r\n\r\n")
            .unwrap();
        hostile.push(s);
    }
    // Connect and say nothing.
    for _ in 0..1500 {
        hostile.push(TcpStream::connect(("127.0.0.1", port)).unwrap());
    }
    // Headers begun, never finished.
    for _ in 0..100 {
        let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
        s.write_all(b"GET /metrics HTTP/1.1\r\nhost: x\r\nx-slow: a")
            .unwrap();
        hostile.push(s);
    }
    std::thread::sleep(Duration::from_secs(2));

    let asked = Instant::now();
    let (status, body) = scrape(port)
        .unwrap_or_else(|e| panic!("a normal scrape failed: {e}\n{}", tail(&monitor.log_text())));
    let took = asked.elapsed();
    assert!(status.contains("200"), "{status}");
    assert!(
        body.abs_diff(full) < full / 100,
        "a whole answer: {body} bytes, {full} before"
    );
    assert!(
        took < Duration::from_secs(5),
        "a normal scrape took {took:?}"
    );
    assert!(monitor.is_running());
    let rss_kib = proc_status(pid, "VmRSS:");
    let threads = proc_status(pid, "Threads:");
    eprintln!("under load: scrape {took:?}, RSS {rss_kib} KiB, {threads} threads");
    assert!(
        rss_kib < 256 * 1024,
        "RSS {rss_kib} KiB with 1,850 hostile clients"
    );
    assert!(threads < 40, "{threads} threads with 1,850 hostile clients");

    // SIGTERM with all of them still connected: stops within the shutdown deadline.
    let asked = Instant::now();
    signal(pid, "TERM");
    let status = wait_exit(&mut monitor.child, Duration::from_secs(15));
    let took = asked.elapsed();
    assert!(status.success(), "{status:?}");
    assert!(took < Duration::from_secs(8), "SIGTERM took {took:?}");
    drop(hostile);
}
