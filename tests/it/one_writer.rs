//! One cluster manager per database, and a database file that vanishes under it.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use skypilot_host::store::Store;

use crate::support::sim::{SimCluster, Simulator};

const BIN: &str = env!("CARGO_BIN_EXE_skypilot-host");

struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn write_config(dir: &std::path::Path, url: &str) -> std::path::PathBuf {
    let config = dir.join("host.toml");
    std::fs::write(
        &config,
        format!(
            "[skypilot]\napi_url = \"{url}\"\n[cluster_manager]\ndatabase = \"{}\"\npoll_interval_secs = 1\nforce_refresh_interval_secs = 60\n",
            dir.join("host.db").display()
        ),
    )
    .unwrap();
    config
}

fn manager(config: &std::path::Path, log: &std::path::Path) -> Child {
    Command::new(BIN)
        .args(["cluster-manager", "--config", config.to_str().unwrap()])
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(log).unwrap())
        .spawn()
        .unwrap()
}

fn wait_for(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_manager_on_the_same_database_exits_naming_the_first() {
    let sim = Simulator::start().await.unwrap();
    sim.add_cluster(SimCluster::new("a"));
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), &sim.url());
    // Both start at once on a database that does not exist yet.
    let a = manager(&config, &dir.path().join("a.log"));
    let b = manager(&config, &dir.path().join("b.log"));
    let (a_pid, b_pid) = (a.id(), b.id());
    let mut children = [Killed(a), Killed(b)];
    let deadline = Instant::now() + Duration::from_secs(20);
    let exited = loop {
        let done: Vec<usize> = (0..2)
            .filter(|&i| children[i].0.try_wait().unwrap().is_some())
            .collect();
        if !done.is_empty() {
            break done;
        }
        assert!(Instant::now() < deadline, "neither manager exited");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(exited.len(), 1, "exactly one of two managers must give way");
    let (loser, winner_pid) = if exited[0] == 0 {
        ("a", b_pid)
    } else {
        ("b", a_pid)
    };
    let status = children[exited[0]].0.wait().unwrap();
    assert_eq!(status.code(), Some(1));
    let log = std::fs::read_to_string(dir.path().join(format!("{loser}.log"))).unwrap();
    assert!(
        log.contains(&format!("another cluster manager (pid {winner_pid})")),
        "{log}"
    );
    assert!(!log.contains("already exists"), "{log}");
    let db = dir.path().join("host.db");
    wait_for("the first poll", || {
        Store::open_read_only(&db).is_ok_and(|s| s.clusters().is_ok_and(|c| c.len() == 1))
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deleted_database_is_recreated_and_filled_again() {
    let sim = Simulator::start().await.unwrap();
    sim.add_cluster(SimCluster::new("a"));
    sim.add_cluster(SimCluster::new("b"));
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), &sim.url());
    let log = dir.path().join("manager.log");
    let _m = Killed(manager(&config, &log));
    let db = dir.path().join("host.db");
    let clusters = |db: &std::path::Path| {
        Store::open_read_only(db)
            .and_then(|s| s.clusters())
            .map(|c| c.len())
            .unwrap_or(0)
    };
    wait_for("the first poll", || clusters(&db) == 2);
    for suffix in ["", "-wal", "-shm"] {
        let mut p = db.as_os_str().to_owned();
        p.push(suffix);
        let _ = std::fs::remove_file(std::path::PathBuf::from(p));
    }
    wait_for("a new database with both clusters", || clusters(&db) == 2);
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(text.contains("deleted or replaced"), "{text}");
    let s = Store::open_read_only(&db).unwrap();
    assert!(s.last_ok_poll().unwrap().is_some());
}
