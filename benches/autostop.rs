//! The autostop enforcer's figures (docs/performance.md, "Autostop enforcer"):
//!
//! 1. policy decisions for 10,000 clusters: the engine alone, and a whole preview (read
//!    the clusters, polls and audit history from a database, then decide);
//! 2. a cancelled autostop to its re-assertion: a simulated fleet of 10,000 clusters, the
//!    real cluster manager polling it every 5 s, a user cancels autostop on one
//!    cluster; the real `skypilot-host autostop` pass is run as soon as the cancel is
//!    recorded. Reported: how many passes it took (target: one), the pass's own time, and
//!    the time from the cancel to SkyPilot's `/autostop` with the manager's 5 s poll (with the module's timer the wait is at most one poll interval plus one timer
//!    period, 30 s + 300 s by default).
//!
//! Run:
//!
//!     cargo build --release && cargo bench --bench autostop
//!     AUTOSTOP_CLUSTERS=1000 cargo bench --bench autostop

#[path = "../tests/support/mod.rs"]
mod support;

use std::collections::HashMap;
use std::error::Error;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use skypilot_host::autostop::engine::{decide, DataAge, Failures, Policy};
use skypilot_host::cluster::{Cluster, ClusterStatus};
use skypilot_host::config::{AutostopConfig, Config};
use skypilot_host::skypilot::RefreshMode;
use skypilot_host::store::{ClusterChanges, ClusterRow, PollOutcome, PollRun, Store};
use skypilot_host::time::Timestamp;

use support::sim::{Op, SimCluster, Simulator};

const BIN: &str = env!("CARGO_BIN_EXE_skypilot-host");

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v.get(v.len() / 2).copied().unwrap_or(f64::NAN)
}

/// A mixed fleet: most UP, a tenth STOPPED, some INIT; autostop off on a third, too
/// large on a third, compliant on the rest; a few on Kubernetes.
fn fleet(n: usize, now: i64) -> Vec<ClusterRow> {
    (0..n)
        .map(|i| {
            let status = match i % 20 {
                0 | 1 => ClusterStatus::Stopped,
                2 => ClusterStatus::Init,
                _ => ClusterStatus::Up,
            };
            let t = Timestamp::from_secs(now - 3600 - i as i64);
            ClusterRow {
                cluster: Cluster {
                    name: format!("bench-{i:05}"),
                    cluster_hash: format!("h{i}"),
                    status,
                    cloud: Some(if i % 9 == 0 { "Kubernetes" } else { "AWS" }.into()),
                    region: Some("us-west-2".into()),
                    zone: None,
                    instance_type: Some("m6i.large".into()),
                    nodes: 1,
                    cpus: Some("2.0".into()),
                    memory: Some("8.0".into()),
                    accelerators: None,
                    resources: None,
                    workspace: if i % 50 == 0 { "research" } else { "default" }.into(),
                    user_name: Some(["alice", "bob", "carol"][i % 3].into()),
                    user_hash: Some(format!("u{}", i % 3)),
                    launched_at: Some(t),
                    status_updated_at: Some(t),
                    autostop_minutes: [-1, 240, 30][i % 3],
                    autostop_to_down: i % 4 == 0,
                    is_managed: false,
                    last_use: None,
                },
                hourly_cost: None,
                total_cost: None,
                first_seen: t,
                last_seen: Timestamp::from_secs(now),
                last_changed: t,
                gone_at: None,
                price_source: None,
            }
        })
        .collect()
}

fn main() -> Result<(), Box<dyn Error>> {
    let n: usize = match std::env::var("AUTOSTOP_CLUSTERS") {
        Ok(v) => v.parse()?,
        Err(_) => 10_000,
    };
    decisions(n)?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    rt.block_on(reassertion(n))
}

fn decisions(n: usize) -> Result<(), Box<dyn Error>> {
    let now = 1_800_000_000;
    let rows = fleet(n, now);
    let cfg = AutostopConfig {
        exempt_names: vec!["keep-*".into(), "*-pinned".into()],
        exempt_workspaces: vec!["research".into()],
        exempt_users: vec!["carol".into()],
        ..AutostopConfig::default()
    };
    let policy = Policy::new(&cfg);
    let age = DataAge {
        last_ok_poll: Some(Timestamp::from_secs(now - 5)),
        last_poll_error: None,
        interval_secs: 30.0,
    };
    let failures: HashMap<String, Failures> = rows
        .iter()
        .step_by(7)
        .map(|r| {
            (
                r.cluster.name.clone(),
                Failures {
                    count: 2,
                    last_at: Timestamp::from_secs(now - 90),
                    last_ok_at: None,
                },
            )
        })
        .collect();
    let mut times = Vec::new();
    let mut acting = 0;
    for _ in 0..51 {
        let t = Instant::now();
        let d = decide(&policy, &rows, &age, &failures, Timestamp::from_secs(now));
        times.push(t.elapsed().as_secs_f64() * 1e3);
        acting = d.iter().filter(|d| d.action().is_some()).count();
    }
    println!(
        "engine: decisions for {n} clusters: median {:.2} ms over 51 runs ({acting} act)",
        median(times)
    );

    // The whole preview: the same fleet in a database, read and decided.
    let dir = tempfile::tempdir()?;
    let db = dir.path().join("host.db");
    let mut store = Store::open(&db)?;
    let wall_secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_secs() as i64;
    let wall = Timestamp::from_secs(wall_secs);
    let live = fleet(n, wall_secs);
    store.commit_poll(
        &ClusterChanges {
            upserts: live,
            gone: vec![],
            transitions: vec![],
        },
        &PollRun {
            id: 0,
            started_at: wall,
            finished_at: wall,
            refresh: RefreshMode::None,
            outcome: PollOutcome::Ok,
            error_kind: None,
            error: None,
            clusters: Some(n as i64),
            changes: Some(n as i64),
        },
    )?;
    let config = Config::default();
    let mut times = Vec::new();
    for _ in 0..21 {
        let t = Instant::now();
        let d = skypilot_host::autostop::preview(&store, &config, wall)?;
        times.push(t.elapsed().as_secs_f64() * 1e3);
        assert_eq!(d.len(), n);
    }
    println!(
        "preview: database read + decisions for {n} clusters: median {:.1} ms over 21 runs",
        median(times)
    );
    Ok(())
}

async fn reassertion(n: usize) -> Result<(), Box<dyn Error>> {
    let sim = Simulator::start().await?;
    sim.generate_clusters("fleet", n);
    // Every generated cluster complies except the one the user will cancel, so the pass
    // acts on that one only; launched two hours ago (past any grace period).
    let now = sim.now();
    for name in sim.cluster_names() {
        sim.update_cluster(&name, |c| {
            c.autostop = 30;
            c.launched_at = now - 7200;
        });
    }
    sim.add_cluster(
        SimCluster::new("victim")
            .autostop(30, false)
            .launched_at(now - 7200),
    );
    let dir = tempfile::tempdir()?;
    let db = dir.path().join("host.db");
    let config = dir.path().join("host.toml");
    std::fs::write(
        &config,
        format!(
            "[skypilot]\napi_url = {:?}\n[cluster_manager]\npoll_interval_secs = 5\nforce_refresh_interval_secs = 3600\ndatabase = {:?}\n[autostop]\nidle_minutes = 60\n",
            sim.url(),
            db.to_str().ok_or("temp path is not UTF-8")?
        ),
    )?;
    let mut manager = Command::new(BIN)
        .args(["cluster-manager", "--config"])
        .arg(&config)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()?;
    let result = measure(&sim, &db, &config, n).await;
    let _ = manager.kill();
    let _ = manager.wait();
    result
}

/// The manager's last `/status` time and the interval its load budget chose (seconds).
fn poll_load(db: &std::path::Path) -> Option<(f64, f64)> {
    let conn = rusqlite::Connection::open(db).ok()?;
    conn.query_row(
        "SELECT status_secs, interval_secs FROM poll_load WHERE id = 1",
        [],
        |r| Ok((r.get(0)?, r.get(1)?)),
    )
    .ok()
}

/// The victim's autostop as the host database records it.
fn recorded_autostop(db: &std::path::Path) -> Option<i64> {
    let conn = rusqlite::Connection::open(db).ok()?;
    conn.query_row(
        "SELECT autostop_minutes FROM clusters WHERE name = 'victim'",
        [],
        |r| r.get(0),
    )
    .ok()
}

async fn wait_for(what: &str, mut f: impl FnMut() -> bool) -> Result<(), Box<dyn Error>> {
    let start = Instant::now();
    while !f() {
        if start.elapsed() > Duration::from_secs(120) {
            return Err(format!("timed out waiting for {what}").into());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Ok(())
}

async fn measure(
    sim: &Simulator,
    db: &std::path::Path,
    config: &std::path::Path,
    n: usize,
) -> Result<(), Box<dyn Error>> {
    wait_for("the fleet recorded", || recorded_autostop(db) == Some(30)).await?;
    let (mut pass_ms, mut total_ms, mut passes_needed) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..7 {
        sim.clear_requests();
        let cancelled = Instant::now();
        sim.set_autostop("victim", -1, false);
        wait_for("the cancel recorded", || recorded_autostop(db) == Some(-1)).await?;
        let mut passes = 0;
        while sim.requests_for(Op::Autostop).is_empty() {
            passes += 1;
            if passes > 5 {
                return Err("no re-assertion after 5 passes".into());
            }
            let t = Instant::now();
            let cfg = config.to_path_buf();
            let out = tokio::task::spawn_blocking(move || {
                Command::new(BIN)
                    .args(["autostop", "--config"])
                    .arg(cfg)
                    .output()
            })
            .await??;
            if !out.status.success() {
                return Err(String::from_utf8_lossy(&out.stderr).into_owned().into());
            }
            pass_ms.push(t.elapsed().as_secs_f64() * 1e3);
        }
        total_ms.push(cancelled.elapsed().as_secs_f64() * 1e3);
        passes_needed.push(passes as f64);
        let req = &sim.requests_for(Op::Autostop)[0];
        assert_eq!(req.body["cluster_name"], "victim");
        assert_eq!(req.body["idle_minutes"], 60);
        wait_for("the re-assertion recorded", || {
            recorded_autostop(db) == Some(60)
        })
        .await?;
    }
    println!(
        "re-assertion with {} clusters: passes needed after the cancel was recorded: max {} (target 1); one pass (process start, read, decide, /autostop, audit): median {:.0} ms; cancel to /autostop with poll_interval_secs = 5: median {:.0} ms over {} cancels",
        n + 1,
        passes_needed.iter().cloned().fold(0.0, f64::max),
        median(pass_ms),
        median(total_ms),
        passes_needed.len()
    );
    if let Some((status_secs, interval_secs)) = poll_load(db) {
        println!(
            "  the manager's last /status took {:.0} ms, so its load budget (default 2%) chose a {:.1} s interval: the cancel waits for the next poll",
            status_secs * 1e3,
            interval_secs
        );
    }
    Ok(())
}
