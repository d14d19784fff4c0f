//! The host database with two writers: the cluster manager committing polls and another
//! process appending audit entries, both killed with SIGKILL at random points, leave an
//! intact database with every committed row, and neither sees SQLITE_BUSY as a failure.

use std::collections::BTreeSet;
use std::io::Read;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use skypilot_host::store::{PollOutcome, Store};

use crate::support::sim::{SimStatus, Simulator};

const BIN: &str = env!("CARGO_BIN_EXE_skypilot-host");

fn ok_polls(db: &std::path::Path) -> usize {
    Store::open_read_only(db)
        .and_then(|s| s.recent_polls(100_000))
        .map(|p| p.iter().filter(|p| p.outcome == PollOutcome::Ok).count())
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_writers_under_kill_9_lose_no_committed_row() {
    let sim = Simulator::start().await.unwrap();
    sim.generate_clusters("c", 300);
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("host.db");
    let config = dir.path().join("config.toml");
    std::fs::write(
        &config,
        format!(
            "[skypilot]\napi_url = \"{}\"\n[cluster_manager]\ndatabase = \"{}\"\npoll_interval_secs = 1\nforce_refresh_interval_secs = 1\n",
            sim.url(),
            db.display()
        ),
    )
    .unwrap();
    let names = sim.cluster_names();
    let mut committed = BTreeSet::new();
    let mut polls_before = 0;
    for round in 0..3 {
        let manager_log = dir.path().join(format!("manager-{round}.log"));
        let mut manager = Command::new(BIN)
            .args(["cluster-manager", "--config", config.to_str().unwrap()])
            .env("SKYPILOT_HOST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&manager_log).unwrap())
            .spawn()
            .unwrap();
        // The writer opens without migrating: wait for the manager's first poll.
        let deadline = Instant::now() + Duration::from_secs(30);
        while ok_polls(&db) <= polls_before {
            assert!(
                Instant::now() < deadline,
                "no poll in round {round}: {}",
                std::fs::read_to_string(&manager_log).unwrap()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let writer_log = dir.path().join(format!("writer-{round}.log"));
        let mut writer = Command::new(BIN)
            .args([
                "debug-audit-writer",
                "--config",
                config.to_str().unwrap(),
                "--count",
                "1000000",
            ])
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&writer_log).unwrap())
            .spawn()
            .unwrap();
        // Churn, so every poll writes rows and transitions while the writer appends.
        let churn_until = Instant::now() + Duration::from_millis(2500 + 300 * round);
        let mut flip = 0usize;
        while Instant::now() < churn_until {
            for n in names.iter().skip(flip % 3).step_by(3) {
                let s = if flip % 2 == 0 {
                    SimStatus::Stopped
                } else {
                    SimStatus::Up
                };
                sim.set_status(n, s);
            }
            flip += 1;
            tokio::time::sleep(Duration::from_millis(150)).await;
        }
        // SIGKILL, writer first in even rounds and the manager first in odd ones.
        if round % 2 == 0 {
            writer.kill().unwrap();
            manager.kill().unwrap();
        } else {
            manager.kill().unwrap();
            writer.kill().unwrap();
        }
        manager.wait().unwrap();
        writer.wait().unwrap();
        let mut out = String::new();
        writer
            .stdout
            .take()
            .unwrap()
            .read_to_string(&mut out)
            .unwrap();
        // Only complete lines name committed rows.
        let complete = out.rsplit_once('\n').map_or("", |(done, _)| done);
        let ids: Vec<i64> = complete.lines().map(|l| l.parse().unwrap()).collect();
        assert!(
            ids.len() > 10,
            "round {round}: the writer committed only {} rows",
            ids.len()
        );
        committed.extend(ids);
        for log in [&manager_log, &writer_log] {
            let text = std::fs::read_to_string(log).unwrap();
            for bad in ["locked", "busy", "BUSY", "cannot record"] {
                assert!(
                    !text.contains(bad),
                    "{} mentions {bad:?}:\n{text}",
                    log.display()
                );
            }
        }
        let polls = ok_polls(&db);
        assert!(
            polls > polls_before + 1,
            "round {round}: {polls} ok polls, {polls_before} before"
        );
        polls_before = polls;
    }

    let conn = rusqlite::Connection::open(&db).unwrap();
    let integrity: String = conn
        .query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .unwrap();
    assert_eq!(integrity, "ok");
    let mut stmt = conn.prepare("SELECT id FROM audit").unwrap();
    let stored: BTreeSet<i64> = stmt
        .query_map([], |r| r.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    let lost: Vec<&i64> = committed.difference(&stored).collect();
    assert!(
        lost.is_empty(),
        "{} committed audit rows lost, e.g. {:?}",
        lost.len(),
        &lost[..lost.len().min(5)]
    );
    let errors: i64 = conn
        .query_row(
            "SELECT COUNT(*) FROM poll_runs WHERE outcome = 'error'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(errors, 0, "a poll failed while the other writer wrote");
    // Every transition the manager recorded belongs to a committed poll: the clusters
    // table agrees with the last transition of each cluster.
    let mismatched: i64 = conn
        .query_row(
            "SELECT COUNT(*) FROM clusters c WHERE c.status != (SELECT to_status FROM transitions t WHERE t.cluster = c.name ORDER BY id DESC LIMIT 1)",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(mismatched, 0);
}

/// The typed queries the web UI and the autostop enforcer read through.
mod queries {
    use skypilot_host::cluster::{Cluster, ClusterStatus};
    use skypilot_host::skypilot::RefreshMode;
    use skypilot_host::store::{
        AuditAction, AuditEntry, AuditOutcome, ClusterChanges, ClusterOrder, ClusterQuery,
        ClusterRow, PollOutcome, PollRun, Store, Transition,
    };
    use skypilot_host::time::Timestamp;

    fn row(
        name: &str,
        status: ClusterStatus,
        cloud: &str,
        user: &str,
        launched: i64,
        hourly: f64,
    ) -> ClusterRow {
        ClusterRow {
            cluster: Cluster {
                name: name.into(),
                cluster_hash: format!("h-{name}"),
                status,
                cloud: Some(cloud.into()),
                region: Some("r1".into()),
                zone: None,
                instance_type: None,
                nodes: 1,
                cpus: None,
                memory: None,
                accelerators: None,
                resources: None,
                workspace: "default".into(),
                user_name: Some(user.into()),
                user_hash: None,
                launched_at: Some(Timestamp::from_secs(launched)),
                status_updated_at: None,
                autostop_minutes: -1,
                autostop_to_down: false,
                is_managed: false,
                last_use: None,
            },
            hourly_cost: Some(hourly),
            total_cost: None,
            first_seen: Timestamp::from_secs(launched),
            last_seen: Timestamp::from_secs(launched),
            last_changed: Timestamp::from_secs(launched),
            gone_at: None,
            price_source: None,
        }
    }

    fn store() -> (tempfile::TempDir, Store) {
        use ClusterStatus::*;
        let dir = tempfile::tempdir().unwrap();
        let mut s = Store::open(&dir.path().join("host.db")).unwrap();
        let rows = vec![
            row("alpha", Up, "AWS", "ann", 100, 3.0),
            row("Bravo", Stopped, "GCP", "bob", 300, 1.0),
            row("charlie", Up, "AWS", "bob", 200, 2.0),
            row("delta", Init, "Kubernetes", "ann", 400, 0.5),
        ];
        let changes = ClusterChanges {
            transitions: rows
                .iter()
                .map(|r| Transition {
                    cluster: r.cluster.name.clone(),
                    from: None,
                    to: r.cluster.status,
                    at: r.first_seen,
                })
                .collect(),
            upserts: rows,
            gone: vec![],
        };
        let run = |at: i64| PollRun {
            id: 0,
            started_at: Timestamp::from_secs(at),
            finished_at: Timestamp::from_secs(at),
            refresh: RefreshMode::None,
            outcome: PollOutcome::Ok,
            error_kind: None,
            error: None,
            clusters: Some(4),
            changes: Some(4),
        };
        s.commit_poll(&changes, &run(500)).unwrap();
        let gone = ClusterChanges {
            upserts: vec![],
            gone: vec![("delta".into(), Timestamp::from_secs(600))],
            transitions: vec![Transition {
                cluster: "delta".into(),
                from: Some(Init),
                to: Gone,
                at: Timestamp::from_secs(600),
            }],
        };
        s.commit_poll(&gone, &run(600)).unwrap();
        (dir, s)
    }

    fn names(rows: &[ClusterRow]) -> Vec<&str> {
        rows.iter().map(|r| r.cluster.name.as_str()).collect()
    }

    #[test]
    fn clusters_with_filters_and_order() {
        let (_dir, s) = store();
        let all = s.query_clusters(&ClusterQuery::default()).unwrap();
        assert_eq!(
            names(&all),
            ["Bravo", "alpha", "charlie"],
            "gone ones are left out, by name"
        );
        let with_gone = s
            .query_clusters(&ClusterQuery {
                include_gone: true,
                ..Default::default()
            })
            .unwrap();
        assert_eq!(names(&with_gone), ["Bravo", "alpha", "charlie", "delta"]);
        let up_by_cost = s
            .query_clusters(&ClusterQuery {
                statuses: vec![ClusterStatus::Up],
                order: ClusterOrder::HourlyCost,
                descending: true,
                ..Default::default()
            })
            .unwrap();
        assert_eq!(names(&up_by_cost), ["alpha", "charlie"]);
        let bobs = s
            .query_clusters(&ClusterQuery {
                user: Some("bob".into()),
                order: ClusterOrder::LaunchedAt,
                ..Default::default()
            })
            .unwrap();
        assert_eq!(names(&bobs), ["charlie", "Bravo"]);
        let aws_named = s
            .query_clusters(&ClusterQuery {
                cloud: Some("AWS".into()),
                name_contains: Some("ARL".into()),
                ..Default::default()
            })
            .unwrap();
        assert_eq!(names(&aws_named), ["charlie"]);
        let first = s
            .query_clusters(&ClusterQuery {
                limit: Some(1),
                ..Default::default()
            })
            .unwrap();
        assert_eq!(names(&first), ["Bravo"]);
        // A present cluster was last seen at the last successful poll.
        assert_eq!(all[1].last_seen, Timestamp::from_secs(600));
    }

    #[test]
    fn one_cluster_with_its_history_and_audit_since() {
        let (_dir, s) = store();
        for (at, action, cluster, outcome) in [
            (700, AuditAction::Autostop, "alpha", AuditOutcome::Ok),
            (710, AuditAction::Stop, "charlie", AuditOutcome::Error),
            (720, AuditAction::Stop, "alpha", AuditOutcome::Ok),
        ] {
            s.append_audit(&AuditEntry {
                at: Timestamp::from_secs(at),
                actor: "autostop".into(),
                action,
                cluster: Some(cluster.into()),
                outcome,
                detail: None,
            })
            .unwrap();
        }
        let d = s.cluster_detail("delta").unwrap().unwrap();
        assert_eq!(d.row.cluster.status, ClusterStatus::Gone);
        let tos: Vec<ClusterStatus> = d.transitions.iter().map(|t| t.to).collect();
        assert_eq!(tos, [ClusterStatus::Init, ClusterStatus::Gone]);
        let a = s.cluster_detail("alpha").unwrap().unwrap();
        let actions: Vec<AuditAction> = a.audit.iter().map(|e| e.action).collect();
        assert_eq!(
            actions,
            [AuditAction::Stop, AuditAction::Autostop],
            "newest first"
        );
        assert!(s.cluster_detail("nobody").unwrap().is_none());
        let since = s.audit_since(Timestamp::from_secs(710), 10).unwrap();
        let at: Vec<Timestamp> = since.iter().map(|e| e.at).collect();
        assert_eq!(
            at,
            [Timestamp::from_secs(710), Timestamp::from_secs(720)],
            "oldest first"
        );
        assert_eq!(s.transitions(None).unwrap().len(), 5);
    }
}
