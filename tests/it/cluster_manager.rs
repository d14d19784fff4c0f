//! The cluster manager as a process: against the real SkyPilot API server, and against
//! the simulator for faults.

use std::time::{Duration, Instant};

use crate::support::host::{cluster, open_db, signal, wait_exit, Host};

#[cfg(feature = "real-server")]
mod real {
    use super::*;
    use crate::support::real::{api_url, skyctl, unique, OwnServer};

    /// Clusters created through SkyPilot's own API show up with status and autostop;
    /// status changes become transitions; removal marks the cluster gone.
    #[test]
    fn records_clusters_of_the_real_server() {
        let up = unique("cm-up");
        let stopped = unique("cm-stopped");
        skyctl(&["create", &up, "--autostop", "30", "--down"]);
        skyctl(&[
            "create",
            &stopped,
            "--status",
            "STOPPED",
            "--instance-type",
            "m6i.xlarge",
        ]);
        let host = Host::new(&api_url(), 1, 3600);
        let mut m = host.spawn_manager();
        let s = host.wait_status("both clusters listed", Duration::from_secs(60), |s| {
            cluster(s, &up).is_some() && cluster(s, &stopped).is_some()
        });
        let c = cluster(&s, &up).unwrap();
        assert_eq!(c["status"], "UP");
        assert_eq!(c["autostop_minutes"], 30);
        assert_eq!(c["autostop_to_down"], true);
        assert_eq!(c["cloud"], "AWS");
        assert_eq!(c["region"], "us-west-2");
        assert_eq!(c["instance_type"], "m6i.large");
        let c = cluster(&s, &stopped).unwrap();
        assert_eq!(c["status"], "STOPPED");
        assert_eq!(c["autostop_minutes"], -1);
        assert_eq!(c["instance_type"], "m6i.xlarge");
        assert_eq!(s["api_server"]["version"], "0.14.1");
        assert_eq!(s["state"]["stale"], false);

        let table = host.status_table();
        let line = table.lines().find(|l| l.starts_with(&up)).unwrap();
        assert!(
            line.contains("UP") && line.contains("30m (down)"),
            "{table}"
        );

        // A user cancels autostop and the cluster stops: both are seen.
        skyctl(&["set-autostop", &up, "-1"]);
        skyctl(&["set-status", &up, "STOPPED"]);
        host.wait_status("status and autostop change", Duration::from_secs(30), |s| {
            cluster(s, &up).is_some_and(|c| c["status"] == "STOPPED" && c["autostop_minutes"] == -1)
        });
        skyctl(&["remove", &stopped]);
        let s = host.wait_status("removed cluster gone", Duration::from_secs(30), |s| {
            cluster(s, &stopped).is_some_and(|c| c["status"] == "GONE")
        });
        assert!(cluster(&s, &stopped).unwrap()["gone_at"].is_i64());
        assert!(m.is_running());
        assert!(m.terminate().success());

        let db = open_db(&host.db);
        let transitions: Vec<(Option<String>, String)> = db
            .prepare(
                "SELECT from_status, to_status FROM transitions WHERE cluster = ?1 ORDER BY id",
            )
            .unwrap()
            .query_map([&up], |r| Ok((r.get(0)?, r.get(1)?)))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(
            transitions,
            vec![
                (None, "UP".to_string()),
                (Some("UP".into()), "STOPPED".into())
            ]
        );
        let gone: Vec<(Option<String>, String)> = db
            .prepare(
                "SELECT from_status, to_status FROM transitions WHERE cluster = ?1 ORDER BY id",
            )
            .unwrap()
            .query_map([&stopped], |r| Ok((r.get(0)?, r.get(1)?)))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(
            gone.last().unwrap(),
            &(Some("STOPPED".into()), "GONE".into())
        );
    }

    /// The forced refresh asks the clouds; this server has no cloud SDKs, so SkyPilot
    /// fails it. The failure is recorded with SkyPilot's error type, and the state stays
    /// fresh from an unrefreshed read in the same poll.
    #[test]
    fn failed_forced_refresh_is_recorded_and_state_stays_fresh() {
        let name = unique("cm-force");
        skyctl(&["create", &name]);
        let host = Host::new(&api_url(), 1, 1);
        let m = host.spawn_manager();
        host.wait_status("cluster listed", Duration::from_secs(60), |s| {
            cluster(s, &name).is_some()
        });
        // Wait for a forced poll's record.
        let start = Instant::now();
        let (kind, error): (String, String) = loop {
            let db = open_db(&host.db);
            let row = db
                .query_row(
                    "SELECT error_kind, error FROM poll_runs WHERE refresh = 'FORCE' AND outcome = 'error' ORDER BY id DESC LIMIT 1",
                    [],
                    |r| Ok((r.get(0)?, r.get(1)?)),
                );
            if let Ok(row) = row {
                break row;
            }
            assert!(
                start.elapsed() < Duration::from_secs(60),
                "no failed forced poll recorded"
            );
            std::thread::sleep(Duration::from_millis(300));
        };
        assert!(kind.starts_with("sky_"), "{kind}");
        assert!(
            error.contains(&api_url().replace("http://", "")),
            "error names the server: {error}"
        );
        let s = host.status_json();
        assert_eq!(s["state"]["stale"], false, "{s:#}");
        assert!(m.terminate().success());
    }

    /// A real API server of its own, killed mid-run and restarted on the same port and
    /// state: the cluster manager stays up, `status` shows the state stale with the
    /// error, and it recovers within one poll once the server is back.
    #[test]
    fn survives_real_server_kill_and_restart() {
        let server = OwnServer::start();
        server.skyctl(&["create", "fault-a", "--autostop", "15"]);
        let host = Host::new(&server.url, 2, 3600);
        let mut m = host.spawn_manager();
        host.wait_status("cluster listed", Duration::from_secs(60), |s| {
            cluster(s, "fault-a").is_some_and(|c| c["status"] == "UP")
        });
        let server = server.kill();
        let s = host.wait_status("state marked stale", Duration::from_secs(30), |s| {
            s["state"]["stale"] == true
        });
        assert!(s["state"]["last_error"]
            .as_str()
            .unwrap()
            .contains(&server.url.replace("http://", "")));
        let c = cluster(&s, "fault-a").unwrap();
        assert_eq!(c["status"], "UP", "last known state kept");
        assert_eq!(c["stale"], true);
        let table = host.status_table();
        assert!(table.contains("STALE"), "{table}");
        assert!(table.contains("Last poll failed"), "{table}");
        assert!(
            m.is_running(),
            "cluster manager must stay up: {}",
            m.log_text()
        );

        std::thread::sleep(Duration::from_secs(3));
        assert!(m.is_running());
        let server = server.restart();
        server.skyctl(&["set-status", "fault-a", "STOPPED"]);
        let back = Instant::now();
        host.wait_status("recovered", Duration::from_secs(40), |s| {
            s["state"]["stale"] == false
                && cluster(s, "fault-a").is_some_and(|c| c["status"] == "STOPPED")
        });
        eprintln!("recovered {:?} after the server answered", back.elapsed());
        assert!(m.terminate().success());
        drop(server);
    }
}

mod sim {
    use super::*;
    use std::path::Path;

    use crate::support::sim::{Fault, SimCluster, SimStatus, Simulator};

    fn last_error_kind(db: &Path) -> Option<String> {
        open_db(db)
            .query_row(
                "SELECT error_kind FROM poll_runs WHERE outcome = 'error' ORDER BY id DESC LIMIT 1",
                [],
                |r| r.get(0),
            )
            .ok()
    }

    /// Every kind of bad server: the manager stays up, keeps the last state, marks it
    /// stale with the error, records the error's kind, and is fresh again within about
    /// one poll once the server is well.
    #[test]
    fn faults_keep_state_mark_stale_and_recover() {
        let rt = crate::support::runtime(1);
        let sim = rt.block_on(Simulator::start()).unwrap();
        sim.add_cluster(SimCluster::new("f-a").autostop(30, false));
        sim.add_cluster(SimCluster::new("f-b").status(SimStatus::Stopped));
        let poll = 2;
        let host = Host::new(&sim.url(), poll, 3600);
        let mut m = host.spawn_manager();
        host.wait_status("fleet listed", Duration::from_secs(20), |s| {
            cluster(s, "f-a").is_some()
                && cluster(s, "f-b").is_some()
                && s["state"]["stale"] == false
        });

        type Case<'a> = (&'a str, &'a str, Box<dyn Fn() + 'a>);
        let cases: Vec<Case> = vec![
            (
                "refused connections",
                "connect",
                Box::new(|| rt.block_on(sim.stop_listening())),
            ),
            ("hang", "timeout", Box::new(|| sim.set_fault(Fault::Hang))),
            (
                "HTTP 500 with HTML",
                "http_500",
                Box::new(|| sim.set_fault(Fault::Http500Html)),
            ),
            (
                "truncated body",
                "malformed",
                Box::new(|| sim.set_fault(Fault::MalformedBody)),
            ),
            (
                "malformed return value",
                "malformed",
                Box::new(|| sim.set_fault(Fault::MalformedReturnValue)),
            ),
            (
                "record without cluster_hash",
                "malformed",
                Box::new(|| sim.set_fault(Fault::MissingField("cluster_hash".into()))),
            ),
        ];
        for (round, (what, kind, inject)) in cases.iter().enumerate() {
            inject();
            // Stale, and because the last poll failed (not only because it is late).
            let s = host.wait_status(&format!("{what}: stale"), Duration::from_secs(30), |s| {
                s["state"]["stale"] == true && s["state"]["last_error"].is_string()
            });
            assert_eq!(last_error_kind(&host.db).as_deref(), Some(*kind), "{what}");
            let err = s["state"]["last_error"]
                .as_str()
                .unwrap_or_default()
                .to_string();
            assert!(
                err.contains(&sim.addr().to_string()),
                "{what}: error names the server: {err}"
            );
            if *what == "record without cluster_hash" {
                assert!(err.contains("cluster_hash"), "{what}: {err}");
            }
            let a = cluster(&s, "f-a").unwrap();
            assert_eq!(a["status"], "UP", "{what}: last known state kept");
            assert_eq!(a["stale"], true);
            assert!(m.is_running(), "{what}: manager exited: {}", m.log_text());

            // The server is well again, with a change to see.
            sim.clear_faults();
            if !sim.is_listening() {
                rt.block_on(sim.resume_listening()).unwrap();
            }
            let minutes = 40 + round as i64;
            assert!(sim.set_autostop("f-a", minutes, false));
            let back = Instant::now();
            host.wait_status(
                &format!("{what}: recovered"),
                Duration::from_secs(30),
                |s| {
                    s["state"]["stale"] == false
                        && cluster(s, "f-a").is_some_and(|c| c["autostop_minutes"] == minutes)
                },
            );
            // Within one poll interval, plus one request timeout for a hanging request
            // still in flight, plus slack for a loaded machine.
            let bound = Duration::from_secs(poll + 5 + 5);
            assert!(
                back.elapsed() < bound,
                "{what}: recovery took {:?}",
                back.elapsed()
            );
        }
        assert!(m.terminate().success());
    }

    /// Gone clusters come from the status answer, not from a failed poll: a failed poll
    /// never marks the fleet gone.
    #[test]
    fn failed_poll_never_marks_clusters_gone() {
        let rt = crate::support::runtime(1);
        let sim = rt.block_on(Simulator::start()).unwrap();
        sim.generate_clusters("g", 20);
        let host = Host::new(&sim.url(), 1, 3600);
        let m = host.spawn_manager();
        host.wait_status("fleet listed", Duration::from_secs(20), |s| {
            s["clusters"].as_array().unwrap().len() == 20
        });
        sim.set_fault(Fault::MalformedReturnValue);
        host.wait_status("stale", Duration::from_secs(20), |s| {
            s["state"]["stale"] == true
        });
        std::thread::sleep(Duration::from_secs(2));
        let s = host.status_json();
        assert!(s["clusters"]
            .as_array()
            .unwrap()
            .iter()
            .all(|c| c["status"] != "GONE"));
        sim.clear_faults();
        sim.remove_cluster("g-00003");
        let s = host.wait_status("one gone", Duration::from_secs(20), |s| {
            cluster(s, "g-00003").is_some_and(|c| c["status"] == "GONE")
        });
        let gone = s["clusters"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|c| c["status"] == "GONE")
            .count();
        assert_eq!(gone, 1);
        assert!(m.terminate().success());
    }

    /// `kill -9` while the manager writes thousands of rows per poll: the database opens
    /// afterwards, passes SQLite's integrity check, and holds whole polls only (every row
    /// carries the autostop value of one and the same poll).
    #[test]
    fn kill_9_during_writes_keeps_database_consistent() {
        let rt = crate::support::runtime(1);
        let sim = rt.block_on(Simulator::start()).unwrap();
        let n = 3000;
        let fleet = |round: i64| {
            sim.generate_clusters_with(n, |i| {
                SimCluster::new(&format!("k-{i:05}"))
                    .cluster_hash(&format!("hash-{i}"))
                    .launched_at(1_000_000)
                    .autostop(round, false)
            })
        };
        fleet(1);
        let host = Host::new(&sim.url(), 1, 3600);
        let mut kills = 0;
        for round in 1..=8i64 {
            fleet(round);
            let mut m = host.spawn_manager();
            // Kill at a different point of the poll cycle each round.
            std::thread::sleep(Duration::from_millis(300 + 170 * round as u64));
            if m.is_running() {
                signal(m.child.id(), "KILL");
                kills += 1;
            }
            let _ = wait_exit(&mut m.child, Duration::from_secs(10));
        }
        assert!(
            kills >= 6,
            "the manager should have been running when killed"
        );

        let store =
            skypilot_host::store::Store::open(&host.db).expect("database opens after kill -9");
        let rows = store.clusters().unwrap();
        let db = open_db(&host.db);
        let check: String = db
            .query_row("PRAGMA integrity_check", [], |r| r.get(0))
            .unwrap();
        assert_eq!(check, "ok");
        if !rows.is_empty() {
            assert_eq!(rows.len(), n, "a poll is committed whole or not at all");
            let first = rows[0].cluster.autostop_minutes;
            assert!(
                rows.iter().all(|r| r.cluster.autostop_minutes == first),
                "rows from different polls mixed"
            );
            let last_ok: i64 = db
                .query_row(
                    "SELECT clusters FROM poll_runs WHERE outcome = 'ok' ORDER BY id DESC LIMIT 1",
                    [],
                    |r| r.get(0),
                )
                .unwrap();
            assert_eq!(last_ok as usize, n);
        }
        // A final clean run brings the database to the last fleet.
        let m = host.spawn_manager();
        host.wait_status("last round recorded", Duration::from_secs(30), |s| {
            let cs = s["clusters"].as_array().unwrap();
            cs.len() == n && cs.iter().all(|c| c["autostop_minutes"] == 8)
        });
        assert!(m.terminate().success());
    }
}
