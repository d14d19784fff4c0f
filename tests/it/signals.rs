//! SIGHUP is logged and ignored by every role (a closed terminal or a stray `kill -HUP`
//! does not stop a role uncleanly); SIGTERM still stops it cleanly.

use std::time::Duration;

use crate::support::host::{free_port, signal, Host, HostProcess};
use crate::support::sim::Simulator;

fn hup_then_term(mut p: HostProcess, role: &str) {
    std::thread::sleep(Duration::from_millis(800));
    assert!(p.is_running(), "{role} did not start: {}", p.log_text());
    signal(p.id(), "HUP");
    std::thread::sleep(Duration::from_millis(800));
    assert!(p.is_running(), "{role} died of SIGHUP: {}", p.log_text());
    let log = p.log_text();
    assert!(log.contains("SIGHUP ignored"), "{role}: {log}");
    let status = p.terminate();
    assert!(status.success(), "{role} after SIGTERM: {status:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_is_survived_and_sigterm_still_stops() {
    let sim = Simulator::start().await.unwrap();
    let host = Host::new(&sim.url(), 1, 60);
    hup_then_term(host.spawn_manager(), "cluster-manager");

    let port = free_port();
    let config = host.dir.path().join("monitor.toml");
    let text = std::fs::read_to_string(&host.config).unwrap();
    std::fs::write(
        &config,
        format!("{text}[monitor]\nlisten = \"127.0.0.1:{port}\"\n"),
    )
    .unwrap();
    let monitor = HostProcess::role("monitor", &config, &host.dir.path().join("monitor.log"));
    hup_then_term(monitor, "monitor");
}
