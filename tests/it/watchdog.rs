//! A slow but working API server never starves systemd's watchdog: a poll has a total
//! deadline below the watchdog period and the manager says it is alive between requests.

use std::os::unix::net::UnixDatagram;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use skypilot_host::store::{PollOutcome, Store};

use crate::support::sim::{Fault, SimCluster, Simulator};

const BIN: &str = env!("CARGO_BIN_EXE_skypilot-host");

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_request_slow_keeps_the_watchdog_fed_and_the_poll_bounded() {
    let sim = Simulator::start().await.unwrap();
    sim.add_cluster(SimCluster::new("slow"));
    // Every request answers after 1.5 s: a forced poll makes 5 or more of them.
    sim.set_fault(Fault::Delay(Duration::from_millis(1500)));
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("host.db");
    let config = dir.path().join("host.toml");
    std::fs::write(
        &config,
        format!(
            "[skypilot]\napi_url = \"{}\"\nrequest_timeout_secs = 3\nconnect_attempts = 1\n[cluster_manager]\ndatabase = \"{}\"\npoll_interval_secs = 1\nforce_refresh_interval_secs = 1\npoll_deadline_secs = 4\n",
            sim.url(),
            db.display()
        ),
    )
    .unwrap();
    let sock_path = dir.path().join("notify.sock");
    let sock = UnixDatagram::bind(&sock_path).unwrap();
    sock.set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let watchdog = Duration::from_secs(6);
    // WATCHDOG_PID must be the manager's own pid: exec keeps the shell's.
    let mut child = Command::new("sh")
        .args([
            "-c",
            &format!(
                "WATCHDOG_PID=$$ exec {BIN} cluster-manager --config {}",
                config.display()
            ),
        ])
        .env("NOTIFY_SOCKET", &sock_path)
        .env("WATCHDOG_USEC", watchdog.as_micros().to_string())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let started = Instant::now();
    let mut last_pet = started;
    let mut longest_gap = Duration::ZERO;
    let mut pets = 0;
    let mut buf = [0u8; 4096];
    while started.elapsed() < Duration::from_secs(16) {
        if let Ok(n) = sock.recv(&mut buf) {
            let msg = String::from_utf8_lossy(&buf[..n]);
            if msg.lines().any(|l| l == "WATCHDOG=1") {
                longest_gap = longest_gap.max(last_pet.elapsed());
                last_pet = Instant::now();
                pets += 1;
            }
        }
    }
    longest_gap = longest_gap.max(last_pet.elapsed());
    let _ = child.kill();
    let _ = child.wait();
    assert!(pets >= 3, "{pets} watchdog notifications in 16 s");
    assert!(
        longest_gap < watchdog,
        "{longest_gap:?} without WATCHDOG=1, watchdog {watchdog:?}"
    );
    let polls = Store::open_read_only(&db)
        .unwrap()
        .recent_polls(100)
        .unwrap();
    let deadline = polls
        .iter()
        .find(|p| p.error_kind.as_deref() == Some("deadline"))
        .unwrap_or_else(|| panic!("no poll hit its deadline: {polls:?}"));
    assert_eq!(deadline.outcome, PollOutcome::Error);
    assert!(deadline
        .error
        .as_deref()
        .unwrap_or("")
        .contains("cluster_manager.poll_deadline_secs"));
    let took = deadline.finished_at.secs_since(deadline.started_at);
    assert!(took < 5.0, "the poll ran {took} s past a 4 s deadline");
}
