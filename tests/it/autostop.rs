//! `skypilot-host autostop`: the real binary against the simulator (what needs a cloud:
//! actions that succeed, a user cancelling autostop, Kubernetes) and against the real
//! SkyPilot API server (`real-server`: the call reaches SkyPilot, which refuses it for
//! want of a cloud; the failure is audited and retried after the back-off).

use std::path::Path;
use std::process::Output;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::support::host::{bin, cluster, open_db, Host, HostProcess};

/// A host whose cluster manager polls every `poll` seconds, with `[autostop]` set to
/// `autostop` (TOML lines).
fn host_with(url: &str, poll: u64, autostop: &str) -> Host {
    let host = Host::new(url, poll, 3600);
    let mut text = std::fs::read_to_string(&host.config).unwrap();
    text.push_str("[autostop]\n");
    text.push_str(autostop);
    text.push('\n');
    std::fs::write(&host.config, text).unwrap();
    host
}

/// `skypilot-host autostop ARGS --config CONFIG`.
fn autostop(host: &Host, args: &[&str]) -> Output {
    let out = bin()
        .arg("autostop")
        .args(args)
        .arg("--config")
        .arg(&host.config)
        .output()
        .unwrap();
    eprintln!(
        "autostop {args:?}: {}\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// (action, cluster, outcome, detail) of the enforcer's audit entries, oldest first.
fn audit_rows(db: &Path) -> Vec<(String, String, String, String)> {
    let db = open_db(db);
    let mut stmt = db
        .prepare("SELECT action, cluster, outcome, COALESCE(detail, '') FROM audit WHERE actor = 'autostop' ORDER BY id")
        .unwrap();
    stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap()
}

/// Waits until `status --json` shows fresh state in which `pred` holds.
fn wait_fresh(host: &Host, what: &str, pred: impl Fn(&Value) -> bool) -> Value {
    wait_fresher_than(host, 1.0, what, pred)
}

/// Waits until the state is at most `max_age` seconds old and `pred` holds.
fn wait_fresher_than(
    host: &Host,
    max_age: f64,
    what: &str,
    pred: impl Fn(&Value) -> bool,
) -> Value {
    host.wait_status(what, Duration::from_secs(60), |s| {
        s["state"]["stale"] == false
            && s["state"]["age_secs"].as_f64().is_some_and(|a| a < max_age)
            && pred(s)
    })
}

fn autostop_of(s: &Value, name: &str) -> Option<(i64, bool)> {
    cluster(s, name).map(|c| {
        (
            c["autostop_minutes"].as_i64().unwrap(),
            c["autostop_to_down"].as_bool().unwrap(),
        )
    })
}

mod sim {
    use super::*;
    use crate::support::sim::{Fault, Op, Outcome, SimCluster, SimStatus, Simulator};

    fn old(name: &str) -> SimCluster {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs() as i64;
        SimCluster::new(name).launched_at(now - 7200)
    }

    /// (cluster, idle_minutes, down) of every `/autostop` the simulator received.
    fn autostops(sim: &Simulator) -> Vec<(String, i64, bool)> {
        let mut v: Vec<_> = sim
            .requests_for(Op::Autostop)
            .into_iter()
            .map(|r| {
                (
                    r.body["cluster_name"].as_str().unwrap().to_string(),
                    r.body["idle_minutes"].as_i64().unwrap(),
                    r.body["down"].as_bool().unwrap(),
                )
            })
            .collect();
        v.sort();
        v
    }

    const POLICY: &str = "idle_minutes = 60\ngrace_minutes = 10\nexempt_names = [\"keep-*\"]\nretry_base_secs = 3\nretry_max_secs = 30";

    /// The fleet: one cluster per rule.
    fn fleet(sim: &Simulator) {
        sim.add_cluster(old("as-off"));
        sim.add_cluster(old("as-big").autostop(240, true));
        sim.add_cluster(old("as-ok").autostop(30, false));
        sim.add_cluster(old("as-k8s").cloud("Kubernetes").region("kind"));
        sim.add_cluster(old("as-stopped").status(SimStatus::Stopped));
        sim.add_cluster(old("as-init").status(SimStatus::Init));
        sim.add_cluster(SimCluster::new("as-new"));
        sim.add_cluster(old("keep-me"));
    }

    fn all_listed(s: &Value) -> bool {
        [
            "as-off",
            "as-big",
            "as-ok",
            "as-k8s",
            "as-stopped",
            "as-init",
            "as-new",
            "keep-me",
        ]
        .iter()
        .all(|n| cluster(s, n).is_some())
    }

    /// One pass sets autostop where it is off or too large (autodown on Kubernetes),
    /// leaves everything else, audits each action; the next pass after the cluster
    /// manager saw the result does nothing; a user cancelling autostop is undone by the
    /// next pass; the dry run prints one line per cluster.
    #[test]
    fn enforces_reasserts_and_is_idempotent() {
        let rt = crate::support::runtime(1);
        let sim = rt.block_on(Simulator::start()).unwrap();
        fleet(&sim);
        let host = host_with(&sim.url(), 2, POLICY);
        let _m = host.spawn_manager();
        wait_fresh(&host, "fleet listed", all_listed);

        let dry = autostop(&host, &["--dry-run"]);
        assert!(dry.status.success());
        let text = stdout(&dry);
        assert_eq!(
            text.lines().count(),
            9,
            "a header and one line per cluster: {text}"
        );
        let line = |n: &str| {
            text.lines()
                .find(|l| l.starts_with(&format!("{n} ")))
                .unwrap_or_else(|| panic!("no line for {n}: {text}"))
                .to_string()
        };
        assert!(
            line("as-off").contains("act: autostop 60m (stop)"),
            "{text}"
        );
        assert!(line("as-off").contains("autostop is off"), "{text}");
        assert!(
            line("as-big").contains("act: autostop 60m (down)"),
            "{text}"
        );
        assert!(
            line("as-k8s").contains("act: autostop 60m (down)"),
            "{text}"
        );
        assert!(line("as-ok").contains("skip") && line("as-ok").contains("compliant"));
        assert!(line("as-init").contains("hold") && line("as-init").contains("INIT"));
        assert!(line("as-new").contains("hold") && line("as-new").contains("grace"));
        assert!(line("as-stopped").contains("skip"));
        assert!(line("keep-me").contains("skip") && line("keep-me").contains("exempt"));
        assert!(
            sim.requests_for(Op::Autostop).is_empty(),
            "a dry run acts on nothing"
        );
        assert!(audit_rows(&host.db).is_empty(), "a dry run writes nothing");

        let out = autostop(&host, &[]);
        assert!(out.status.success());
        assert!(
            stdout(&out).contains("3 actions done, 0 failed"),
            "{}",
            stdout(&out)
        );
        assert_eq!(
            autostops(&sim),
            vec![
                ("as-big".into(), 60, true),
                ("as-k8s".into(), 60, true),
                ("as-off".into(), 60, false),
            ]
        );
        for op in [Op::Stop, Op::Down] {
            assert!(sim.requests_for(op).is_empty(), "{op:?}");
        }
        let rows = audit_rows(&host.db);
        assert_eq!(rows.len(), 3, "{rows:?}");
        for (action, _, outcome, detail) in &rows {
            assert_eq!((action.as_str(), outcome.as_str()), ("autostop", "ok"));
            assert!(detail.starts_with("autostop 60m"), "{detail}");
        }
        assert!(rows
            .iter()
            .any(|r| r.1 == "as-off" && r.3.contains("autostop is off")));

        // Nothing changed: once the manager has seen the new values, a pass does nothing.
        wait_fresh(&host, "autostop recorded", |s| {
            autostop_of(s, "as-off") == Some((60, false))
                && autostop_of(s, "as-k8s") == Some((60, true))
                && autostop_of(s, "as-big") == Some((60, true))
        });
        sim.clear_requests();
        let out = autostop(&host, &[]);
        assert!(stdout(&out).contains("0 actions done"), "{}", stdout(&out));
        assert!(sim.requests_for(Op::Autostop).is_empty());
        assert_eq!(audit_rows(&host.db).len(), 3);

        // A user cancels autostop (`sky autostop --cancel`): the next pass restores it.
        assert!(sim.set_autostop("as-off", -1, false));
        let cancelled = Instant::now();
        wait_fresh(&host, "cancel seen", |s| {
            autostop_of(s, "as-off") == Some((-1, false))
        });
        let out = autostop(&host, &[]);
        assert!(out.status.success());
        eprintln!(
            "cancelled autostop re-asserted {:?} after the cancel, in one pass",
            cancelled.elapsed()
        );
        assert_eq!(autostops(&sim), vec![("as-off".into(), 60, false)]);
        assert_eq!(sim.cluster("as-off").unwrap().autostop, 60);
        let rows = audit_rows(&host.db);
        assert_eq!(rows.len(), 4);
        assert_eq!(rows[3].1, "as-off");
        assert_eq!(rows[3].2, "ok");
    }

    /// SkyPilot's jobs and serve controllers, and the clusters its jobs controller
    /// launched for managed jobs, are left to SkyPilot: a pass (with a lifetime backstop
    /// too) sends them nothing and says why, while an ordinary cluster beside them gets
    /// its autostop.
    #[test]
    fn leaves_controllers_and_managed_job_clusters_to_skypilot() {
        let rt = crate::support::runtime(1);
        let sim = rt.block_on(Simulator::start()).unwrap();
        sim.add_cluster(old("sky-jobs-controller-1a2b3c4d"));
        sim.add_cluster(old("sky-serve-controller-1a2b3c4d"));
        sim.add_cluster(old("train-7-alice").managed());
        sim.add_cluster(old("plain"));
        let host = host_with(
            &sim.url(),
            2,
            &format!("{POLICY}\nenforce = \"stop\"\nmax_lifetime_hours = 1"),
        );
        let _m = host.spawn_manager();
        wait_fresh(&host, "fleet listed", |s| {
            [
                "sky-jobs-controller-1a2b3c4d",
                "sky-serve-controller-1a2b3c4d",
                "train-7-alice",
                "plain",
            ]
            .iter()
            .all(|n| cluster(s, n).is_some())
        });
        let dry = autostop(&host, &["--dry-run"]);
        let text = stdout(&dry);
        let line = |n: &str| {
            text.lines()
                .find(|l| l.starts_with(&format!("{n} ")))
                .unwrap_or_else(|| panic!("no line for {n}: {text}"))
                .to_string()
        };
        for c in [
            "sky-jobs-controller-1a2b3c4d",
            "sky-serve-controller-1a2b3c4d",
        ] {
            assert!(
                line(c).contains("skip") && line(c).contains("SkyPilot's own controller"),
                "{text}"
            );
        }
        assert!(
            line("train-7-alice").contains("skip")
                && line("train-7-alice").contains("jobs controller"),
            "{text}"
        );
        let out = autostop(&host, &[]);
        assert!(out.status.success());
        // The ordinary cluster, past its lifetime, is stopped; nothing else is touched.
        let mut touched = Vec::new();
        for op in [Op::Autostop, Op::Stop, Op::Down] {
            for r in sim.requests_for(op) {
                touched.push((
                    format!("{op:?}"),
                    r.body["cluster_name"].as_str().unwrap().to_string(),
                ));
            }
        }
        assert_eq!(touched, vec![("Stop".to_string(), "plain".to_string())]);
        let acted: Vec<String> = audit_rows(&host.db).into_iter().map(|r| r.1).collect();
        assert_eq!(acted, vec!["plain".to_string()]);
    }

    /// With `enforce = "stop"` and a maximum lifetime, a cluster past it is stopped
    /// (and torn down on Kubernetes).
    #[test]
    fn lifetime_backstop_stops_and_downs() {
        let rt = crate::support::runtime(1);
        let sim = rt.block_on(Simulator::start()).unwrap();
        sim.add_cluster(old("lt-aws").autostop(30, false));
        sim.add_cluster(old("lt-k8s").cloud("Kubernetes").autostop(30, true));
        let host = host_with(
            &sim.url(),
            2,
            "idle_minutes = 60\nenforce = \"stop\"\nmax_lifetime_hours = 1",
        );
        let _m = host.spawn_manager();
        wait_fresh(&host, "listed", |s| {
            cluster(s, "lt-aws").is_some() && cluster(s, "lt-k8s").is_some()
        });
        let out = autostop(&host, &[]);
        assert!(out.status.success());
        let stops: Vec<String> = sim
            .requests_for(Op::Stop)
            .iter()
            .map(|r| r.body["cluster_name"].as_str().unwrap().to_string())
            .collect();
        let downs: Vec<String> = sim
            .requests_for(Op::Down)
            .iter()
            .map(|r| r.body["cluster_name"].as_str().unwrap().to_string())
            .collect();
        assert_eq!(stops, ["lt-aws"]);
        assert_eq!(downs, ["lt-k8s"]);
        assert_eq!(sim.cluster("lt-aws").unwrap().status, SimStatus::Stopped);
        assert!(sim.cluster("lt-k8s").is_none());
        let rows = audit_rows(&host.db);
        let mut got: Vec<(&str, &str, &str)> = rows
            .iter()
            .map(|r| (r.0.as_str(), r.1.as_str(), r.2.as_str()))
            .collect();
        got.sort();
        assert_eq!(got, [("down", "lt-k8s", "ok"), ("stop", "lt-aws", "ok")]);
    }

    /// Stale data: the cluster manager stopped, more than three poll intervals pass (the
    /// one staleness rule, `fleet.rs`); the enforcer holds back and says why. A failed
    /// last poll holds it back too.
    #[test]
    fn stale_data_holds_it_back() {
        let rt = crate::support::runtime(1);
        let sim = rt.block_on(Simulator::start()).unwrap();
        sim.add_cluster(old("st-off"));
        let host = host_with(&sim.url(), 1, "idle_minutes = 60");
        let m = host.spawn_manager();
        wait_fresh(&host, "listed", |s| cluster(s, "st-off").is_some());
        assert!(m.terminate().success());
        std::thread::sleep(Duration::from_millis(3500));
        let out = autostop(&host, &[]);
        assert!(out.status.success());
        assert!(
            stdout(&out).contains("0 actions done, 0 failed, 1 held back"),
            "{}",
            stdout(&out)
        );
        assert!(sim.requests_for(Op::Autostop).is_empty());
        assert!(audit_rows(&host.db).is_empty());
        // The pass is recorded with why it held back (the console's Autostop page).
        let (held, why): (i64, String) = open_db(&host.db)
            .query_row("SELECT held, held_reason FROM autostop_pass", [], |r| {
                Ok((r.get(0)?, r.get(1)?))
            })
            .unwrap();
        assert_eq!(held, 1);
        assert!(
            why.starts_with("state is stale: the recorded state is"),
            "{why}"
        );
        let dry = stdout(&autostop(&host, &["--dry-run"]));
        assert!(
            dry.contains("(3 × the 1s poll interval)")
                && dry.contains("is the cluster manager running?"),
            "{dry}"
        );

        // The manager back, polling a server that answers HTTP 500: still held back.
        sim.set_fault_on("/status", Fault::Http500Html);
        let m = host.spawn_manager();
        host.wait_status("poll failure recorded", Duration::from_secs(30), |s| {
            s["state"]["last_error"].is_string()
        });
        let dry = stdout(&autostop(&host, &["--dry-run"]));
        assert!(dry.contains("last poll failed"), "{dry}");
        let out = autostop(&host, &[]);
        assert!(stdout(&out).contains("1 held back"), "{}", stdout(&out));
        assert!(sim.requests_for(Op::Autostop).is_empty());
        drop(m);
    }

    /// A failure is audited with SkyPilot's error type and message; the next pass within
    /// the back-off sends nothing, one after it tries again.
    #[test]
    fn failures_are_audited_and_backed_off() {
        let rt = crate::support::runtime(1);
        let sim = rt.block_on(Simulator::start()).unwrap();
        sim.add_cluster(old("bo-off"));
        sim.set_outcome(
            Op::Autostop,
            Outcome::fail(
                "CloudUserIdentityError",
                "Failed to get AWS user identity with unknown exception.",
            ),
        );
        let host = host_with(
            &sim.url(),
            1,
            "idle_minutes = 45\nretry_base_secs = 4\nretry_max_secs = 60",
        );
        let _m = host.spawn_manager();
        wait_fresh(&host, "listed", |s| cluster(s, "bo-off").is_some());
        let out = autostop(&host, &[]);
        assert!(
            out.status.success(),
            "a failed action does not fail the pass"
        );
        assert!(stdout(&out).contains("0 actions done, 1 failed"));
        let rows = audit_rows(&host.db);
        assert_eq!(rows.len(), 1);
        let (action, cluster_name, outcome, detail) = &rows[0];
        assert_eq!(
            (action.as_str(), cluster_name.as_str(), outcome.as_str()),
            ("autostop", "bo-off", "error")
        );
        assert!(detail.starts_with("CloudUserIdentityError: "), "{detail}");
        assert!(
            detail.contains("Failed to get AWS user identity"),
            "{detail}"
        );
        assert!(
            detail.contains(&sim.url()),
            "the error names the server: {detail}"
        );
        assert!(detail.contains("wanted autostop 45m (stop)"), "{detail}");
        let first = Instant::now();

        let out = autostop(&host, &[]);
        assert!(stdout(&out).contains("1 held back"), "{}", stdout(&out));
        assert_eq!(
            sim.requests_for(Op::Autostop).len(),
            1,
            "no retry within the back-off"
        );
        let dry = stdout(&autostop(&host, &["--dry-run"]));
        assert!(
            dry.contains("1 in a row") && dry.contains("next try in"),
            "{dry}"
        );

        std::thread::sleep(
            Duration::from_secs(4).saturating_sub(first.elapsed()) + Duration::from_millis(300),
        );
        wait_fresh(&host, "fresh", |_| true);
        sim.reset_outcomes();
        let out = autostop(&host, &[]);
        assert!(stdout(&out).contains("1 actions done"), "{}", stdout(&out));
        assert_eq!(
            sim.requests_for(Op::Autostop).len(),
            2,
            "retried after the back-off"
        );
        let rows = audit_rows(&host.db);
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[1].2, "ok");
    }

    /// `--daemon`: a pass every `interval_secs`, holding the lock meanwhile (a timer pass
    /// then does nothing), stopping cleanly on SIGTERM.
    #[test]
    fn daemon_passes_repeatedly_and_holds_the_lock() {
        let rt = crate::support::runtime(1);
        let sim = rt.block_on(Simulator::start()).unwrap();
        sim.add_cluster(old("dm-off"));
        let host = host_with(&sim.url(), 1, "idle_minutes = 20\ninterval_secs = 1");
        let _m = host.spawn_manager();
        wait_fresh(&host, "listed", |s| cluster(s, "dm-off").is_some());
        let mut daemon = bin();
        daemon
            .args(["autostop", "--daemon", "--config"])
            .arg(&host.config)
            .stdout(std::process::Stdio::null());
        let mut daemon = HostProcess::spawn(daemon, &host.dir.path().join("daemon.log"));
        let start = Instant::now();
        while sim.cluster("dm-off").unwrap().autostop != 20 {
            assert!(
                start.elapsed() < Duration::from_secs(30),
                "{}",
                daemon.log_text()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        // A user cancels it; a later pass of the daemon restores it.
        sim.set_autostop("dm-off", -1, false);
        let start = Instant::now();
        while sim.cluster("dm-off").unwrap().autostop != 20 {
            assert!(
                start.elapsed() < Duration::from_secs(30),
                "{}",
                daemon.log_text()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        let other = autostop(&host, &[]);
        assert!(other.status.success());
        assert!(
            stdout(&other).contains(&format!("another autostop pass (pid {})", daemon.id())),
            "{}",
            stdout(&other)
        );
        let second = bin()
            .args(["autostop", "--daemon", "--config"])
            .arg(&host.config)
            .output()
            .unwrap();
        assert!(!second.status.success(), "a second daemon refuses to run");
        let err = String::from_utf8_lossy(&second.stderr);
        assert!(
            err.contains(&format!("another autostop enforcer (pid {})", daemon.id())),
            "{err}"
        );
        assert!(daemon.is_running());
        let rows = audit_rows(&host.db);
        assert_eq!(rows.len(), 2, "{rows:?}");
        assert!(rows.iter().all(|r| r.1 == "dm-off" && r.2 == "ok"));
        assert!(daemon.terminate().success());
    }

    /// Started before the cluster manager (as every unit of a host starts at once): the
    /// daemon waits for the host database, absent and then not yet migrated, logging at
    /// INFO, and acts once the manager has written it; no ERROR line meanwhile.
    #[test]
    fn daemon_started_first_waits_for_the_database_without_an_error() {
        let rt = crate::support::runtime(1);
        let sim = rt.block_on(Simulator::start()).unwrap();
        sim.add_cluster(old("early-off"));
        let host = host_with(&sim.url(), 1, "idle_minutes = 20\ninterval_secs = 1");
        assert!(!host.db.exists());
        let mut daemon = bin();
        daemon
            .args(["autostop", "--daemon", "--config"])
            .arg(&host.config)
            .stdout(std::process::Stdio::null());
        let daemon = HostProcess::spawn(daemon, &host.dir.path().join("daemon.log"));
        let wait_for = |what: &str, daemon: &HostProcess| {
            let start = Instant::now();
            while !daemon.log_text().contains(what) {
                assert!(
                    start.elapsed() < Duration::from_secs(20),
                    "{what}: {}",
                    daemon.log_text()
                );
                std::thread::sleep(Duration::from_millis(100));
            }
        };
        wait_for("waiting for the cluster manager", &daemon);
        // The file exists, at schema version 0: the manager created it and has not
        // committed its migration yet.
        rusqlite::Connection::open(&host.db)
            .unwrap()
            .execute_batch("CREATE TABLE placeholder (x); DROP TABLE placeholder;")
            .unwrap();
        let waits = daemon
            .log_text()
            .matches("waiting for the cluster manager")
            .count();
        let start = Instant::now();
        while daemon
            .log_text()
            .matches("waiting for the cluster manager")
            .count()
            < waits + 2
        {
            assert!(
                start.elapsed() < Duration::from_secs(20),
                "{}",
                daemon.log_text()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        assert!(
            daemon.log_text().contains("schema version 0"),
            "{}",
            daemon.log_text()
        );
        std::fs::remove_file(&host.db).unwrap();
        let _m = host.spawn_manager();
        let start = Instant::now();
        while sim.cluster("early-off").unwrap().autostop != 20 {
            assert!(
                start.elapsed() < Duration::from_secs(30),
                "{}",
                daemon.log_text()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        let log = daemon.log_text();
        assert!(!log.contains("ERROR"), "{log}");
        assert!(daemon.terminate().success());
    }

    /// Two passes at once: the second sees the first's lock, says so and exits 0 without
    /// acting; only the first acts.
    #[test]
    fn overlapping_passes_do_not_both_act() {
        let rt = crate::support::runtime(1);
        let sim = rt.block_on(Simulator::start()).unwrap();
        sim.add_cluster(old("ov-off"));
        let host = host_with(&sim.url(), 2, "idle_minutes = 60");
        let _m = host.spawn_manager();
        wait_fresh(&host, "listed", |s| cluster(s, "ov-off").is_some());
        sim.set_fault_on("/autostop", Fault::Delay(Duration::from_secs(3)));
        let mut first = bin();
        first
            .args(["autostop", "--config"])
            .arg(&host.config)
            .stdout(std::process::Stdio::null());
        let mut first = HostProcess::spawn(first, &host.dir.path().join("first.log"));
        // The first pass holds the lock once its pid is in the lock file; its action then
        // takes 3 s (the simulator's delay).
        let lock = host.dir.path().join("host.db.autostop.lock");
        let start = Instant::now();
        while std::fs::read_to_string(&lock).unwrap_or_default().trim() != first.id().to_string() {
            assert!(
                start.elapsed() < Duration::from_secs(20),
                "first pass never locked"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        assert!(first.is_running());
        let second = autostop(&host, &[]);
        assert!(second.status.success());
        assert!(
            first.is_running(),
            "the first pass was still acting when the second ended"
        );
        let text = stdout(&second);
        assert!(
            text.contains(&format!("another autostop pass (pid {})", first.id()))
                && text.contains("this one does nothing"),
            "{text}"
        );
        let status = crate::support::host::wait_exit(&mut first.child, Duration::from_secs(30));
        assert!(status.success(), "{}", first.log_text());
        assert_eq!(sim.requests_for(Op::Autostop).len(), 1);
        assert_eq!(audit_rows(&host.db).len(), 1);
    }
}

#[cfg(feature = "real-server")]
mod real {
    use super::*;
    use crate::support::real::{api_url, skyctl, unique};

    /// How many `sky.autostop` requests SkyPilot's API server has for `cluster`
    /// (`GET /api/status`, SkyPilot's own request list).
    fn sky_autostop_requests(cluster_name: &str) -> usize {
        let out = std::process::Command::new("curl")
            .args([
                "-fsS",
                "-H",
                "X-SkyPilot-API-Version: 62",
                &format!("{}/api/status?all_status=true", api_url()),
            ])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let list: Vec<Value> = serde_json::from_slice(&out.stdout).unwrap();
        list.iter()
            .filter(|r| r["name"] == "sky.autostop" && r["cluster_name"] == cluster_name)
            .count()
    }

    /// SkyPilot's refusal of an action on a cluster of a cloud it cannot reach, as the
    /// audit records it: its error type first, then its message. With the AWS SDK installed
    /// SkyPilot fails to get the AWS identity (`CloudUserIdentityError`); without it (the
    /// base install the tests' server runs) it fails to import it (`ImportError`).
    fn refused_for_want_of_a_cloud(detail: &str) -> bool {
        (detail.starts_with("CloudUserIdentityError: ")
            && detail.contains("autostop failed with CloudUserIdentityError"))
            || (detail.starts_with("ImportError: ")
                && detail.contains(
                    "autostop failed with ImportError: Failed to import dependencies for AWS",
                ))
    }

    /// A cluster made through SkyPilot's own API with autostop off is found and the
    /// enforcer calls `/autostop`; SkyPilot refuses it (no cloud here), which is audited as a failed action; a pass right after sends
    /// nothing, a pass after the back-off tries again.
    #[test]
    fn real_server_failure_is_audited_and_retried_after_the_back_off() {
        let name = unique("as-real");
        skyctl(&["create", &name]);
        let backoff = 40;
        let host = host_with(
            &api_url(),
            5,
            &format!("idle_minutes = 30\ngrace_minutes = 0\nretry_base_secs = {backoff}\nretry_max_secs = 600"),
        );
        // SkyPilot runs each action as a request of its own: 1-3 s, or a minute and more on
        // a machine busy with other builds.
        let text = std::fs::read_to_string(&host.config).unwrap();
        std::fs::write(
            &host.config,
            text.replace("request_timeout_secs = 5", "request_timeout_secs = 300")
                .replace(
                    "[cluster_manager]\n",
                    "[cluster_manager]\npoll_deadline_secs = 600\n",
                ),
        )
        .unwrap();
        let _m = host.spawn_manager();
        host.wait_status(
            "cluster listed, state fresh",
            Duration::from_secs(120),
            |s| s["state"]["stale"] == false && autostop_of(s, &name) == Some((-1, false)),
        );
        let dry = stdout(&autostop(&host, &["--dry-run"]));
        let line = dry
            .lines()
            .find(|l| l.starts_with(&format!("{name} ")))
            .unwrap_or_else(|| panic!("{dry}"));
        assert!(
            line.contains("act: autostop 30m (stop)") && line.contains("autostop is off"),
            "{line}"
        );

        let mine =
            |rows: &[(String, String, String, String)]| -> Vec<(String, String, String, String)> {
                rows.iter().filter(|r| r.1 == name).cloned().collect()
            };
        // The state must be fresh when a pass starts: the manager polls every 5 s.
        wait_fresher_than(&host, 3.0, "fresh", |_| true);
        let out = autostop(&host, &[]);
        assert!(
            out.status.success(),
            "a failed action does not fail the pass"
        );
        let first_done = Instant::now();
        let rows = mine(&audit_rows(&host.db));
        assert_eq!(rows.len(), 1, "{rows:?}");
        let (action, _, outcome, detail) = &rows[0];
        assert_eq!((action.as_str(), outcome.as_str()), ("autostop", "error"));
        assert!(
            refused_for_want_of_a_cloud(detail),
            "SkyPilot's error type first: {detail}"
        );
        assert!(
            detail.contains(&api_url()),
            "the error names the server: {detail}"
        );
        assert!(detail.contains("wanted autostop 30m (stop)"), "{detail}");
        assert_eq!(
            sky_autostop_requests(&name),
            1,
            "SkyPilot received the call"
        );

        // Right after: held back by the back-off, nothing sent.
        wait_fresher_than(&host, 3.0, "fresh", |_| true);
        assert!(
            first_done.elapsed() < Duration::from_secs(backoff / 2),
            "the machine is too slow for this check"
        );
        let dry = stdout(&autostop(&host, &["--dry-run"]));
        let line = dry
            .lines()
            .find(|l| l.starts_with(&format!("{name} ")))
            .unwrap_or_else(|| panic!("{dry}"));
        assert!(
            line.contains("hold") && line.contains("1 in a row") && line.contains("next try in"),
            "{line}"
        );
        let out = autostop(&host, &[]);
        assert!(out.status.success());
        assert_eq!(
            mine(&audit_rows(&host.db)).len(),
            1,
            "no second attempt within the back-off"
        );
        assert_eq!(
            sky_autostop_requests(&name),
            1,
            "SkyPilot got no second call"
        );

        // After the back-off: tried again, failed again, audited again.
        std::thread::sleep(
            Duration::from_secs(backoff).saturating_sub(first_done.elapsed())
                + Duration::from_secs(1),
        );
        wait_fresher_than(&host, 3.0, "fresh", |_| true);
        let out = autostop(&host, &[]);
        assert!(out.status.success());
        let rows = mine(&audit_rows(&host.db));
        assert_eq!(rows.len(), 2, "{rows:?}");
        assert_eq!(rows[1].2, "error");
        assert!(refused_for_want_of_a_cloud(&rows[1].3), "{}", rows[1].3);
        assert_eq!(sky_autostop_requests(&name), 2, "SkyPilot got the retry");
        skyctl(&["remove", &name]);
    }
}
