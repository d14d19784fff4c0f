//! The cluster manager bounds its own load on the API server: a slow `/status` (the
//! simulator's `Fault::Delay`) stretches its poll interval to keep within
//! `cluster_manager.load_budget`; `status` and the monitor's metrics show it, and the
//! staleness rule follows the effective interval.

use std::sync::Arc;
use std::time::{Duration, Instant};

use skypilot_host::config::Config;
use skypilot_host::monitor;
use skypilot_host::time::SystemClock;
use tokio::net::TcpListener;

use crate::support::host::{open_db, Host};
use crate::support::sim::{Fault, SimCluster, Simulator};

const POLL_SECS: u64 = 1;
const BUDGET: f64 = 0.1;
const DELAY: Duration = Duration::from_millis(500);

/// Prometheus text -> value of an unlabelled series.
fn series(text: &str, name: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
}

#[test]
fn a_slow_status_stretches_the_interval_and_everything_follows_it() {
    let rt = crate::support::runtime(1);
    let sim = rt.block_on(Simulator::start()).unwrap();
    sim.add_cluster(SimCluster::new("lb-a"));
    sim.add_cluster(SimCluster::new("lb-b"));
    let host = Host::new(&sim.url(), POLL_SECS, 3600);
    let text = std::fs::read_to_string(&host.config).unwrap();
    std::fs::write(
        &host.config,
        text.replacen(
            "load_budget = 1.0\n",
            &format!("load_budget = {BUDGET}\n"),
            1,
        ),
    )
    .unwrap();

    let m = host.spawn_manager();
    // A fast server: polled every poll_interval_secs.
    let s = host.wait_status("first measured poll", Duration::from_secs(30), |s| {
        s["polling"]["load"].is_object() && s["state"]["stale"] == false
    });
    assert_eq!(s["polling"]["poll_interval_secs"], POLL_SECS);
    assert_eq!(s["polling"]["effective_interval_secs"], 1.0, "{s:#}");

    // Every /status answered DELAY late: each read takes at least DELAY and is counted
    // as twice that of the server's CPU (src/load_budget.rs, CPU_PER_WALL), so the
    // interval that keeps within the budget is at least 2 × DELAY / BUDGET.
    sim.set_fault_on("/status", Fault::Delay(DELAY));
    let floor = 2.0 * DELAY.as_secs_f64() / BUDGET;
    let s = host.wait_status("interval stretched", Duration::from_secs(60), |s| {
        s["polling"]["effective_interval_secs"]
            .as_f64()
            .is_some_and(|i| i >= floor)
    });
    let load = &s["polling"]["load"];
    assert!(
        load["status_secs"].as_f64().unwrap() >= DELAY.as_secs_f64(),
        "{s:#}"
    );
    let share = load["share"].as_f64().unwrap();
    assert!(
        share <= BUDGET + 1e-9,
        "share {share} above the budget: {s:#}"
    );
    assert_eq!(load["budget"], BUDGET);

    // The manager really waits that long: the next two polls start at least the
    // stretched interval apart.
    let before: i64 = open_db(&host.db)
        .query_row("SELECT MAX(id) FROM poll_runs", [], |r| r.get(0))
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    let starts: Vec<f64> = loop {
        let starts: Vec<f64> = open_db(&host.db)
            .prepare(
                "SELECT started_at FROM poll_runs WHERE id > ?1 AND outcome = 'ok' ORDER BY id",
            )
            .unwrap()
            .query_map([before], |r| r.get(0))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        if starts.len() >= 2 {
            break starts;
        }
        assert!(Instant::now() < deadline, "no two polls within 60 s");
        std::thread::sleep(Duration::from_millis(200));
    };
    let gap = starts[1] - starts[0];
    assert!(
        gap >= floor,
        "polls {gap:.2} s apart, expected at least {floor} s"
    );

    // `status` says so.
    let table = host.status_table();
    assert!(
        table.contains(&format!(
            "stretched from poll_interval_secs {POLL_SECS} s to keep within load_budget 10.0%"
        )),
        "{table}"
    );

    // The monitor exports the effective interval and the share.
    let mut config = Config::default();
    config.cluster_manager.database = host.db.clone();
    let metrics = rt.block_on(async {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/metrics", listener.local_addr().unwrap());
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(monitor::serve(
            listener,
            config,
            Arc::new(SystemClock),
            async {
                let _ = rx.await;
            },
        ));
        let body = reqwest::get(&url).await.unwrap().text().await.unwrap();
        let _ = tx.send(());
        task.await.unwrap().unwrap();
        body
    });
    let interval = series(&metrics, "skypilot_host_poll_interval_effective_seconds")
        .unwrap_or_else(|| panic!("no effective interval in:\n{metrics}"));
    assert!(interval >= floor, "{interval}");
    let share = series(&metrics, "skypilot_host_poll_load_share").unwrap();
    assert!(share > 0.0 && share <= BUDGET + 1e-9, "{share}");
    assert_eq!(
        series(&metrics, "skypilot_host_poll_load_budget"),
        Some(BUDGET)
    );
    assert!(
        series(&metrics, "skypilot_host_status_request_duration_seconds").unwrap()
            >= DELAY.as_secs_f64()
    );

    // Staleness follows the effective interval: with the manager stopped, the state is
    // still fresh well past three poll_interval_secs, and stale after three effective
    // intervals.
    assert!(m.terminate().success());
    let s = host.wait_status(
        "past 3 × poll_interval_secs",
        Duration::from_secs(30),
        |s| {
            s["state"]["age_secs"]
                .as_f64()
                .is_some_and(|a| a > 3.0 * POLL_SECS as f64 + 1.0)
        },
    );
    assert_eq!(s["state"]["stale"], false, "{s:#}");
    let effective = s["polling"]["effective_interval_secs"].as_f64().unwrap();
    let s = host.wait_status("stale at last", Duration::from_secs(120), |s| {
        s["state"]["stale"] == true
    });
    let age = s["state"]["age_secs"].as_f64().unwrap();
    assert!(
        age > 3.0 * effective,
        "stale at {age} s, effective interval {effective} s"
    );
}
