//! Integration tests: monitor. Fleets are written straight into a host database with
//! known numbers; the exporter is served on a port-0 listener with a test clock.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

use skypilot_host::cluster::{Cluster, ClusterStatus};
use skypilot_host::config::Config;
use skypilot_host::monitor;
use skypilot_host::skypilot::RefreshMode;
use skypilot_host::store::{
    ApiServerHealth, AuditEntry, ClusterChanges, ClusterRow, CpuSource, PollLoad, PollOutcome,
    PollRun, PriceSource, Store,
};
use skypilot_host::time::{Clock, Timestamp};

use crate::support::clock::TestClock;
use crate::support::host::{bin, free_port, HostProcess};
use tokio::net::TcpListener;
use tokio::sync::oneshot;

const NOW: f64 = 1_800_000_000.0;

struct Server {
    base: String,
    stop: Option<oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<anyhow::Result<()>>,
}

impl Server {
    async fn start(config: Config, clock: Arc<dyn Clock>) -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let (tx, rx) = oneshot::channel::<()>();
        let task = tokio::spawn(monitor::serve(listener, config, clock, async {
            let _ = rx.await;
        }));
        Server {
            base,
            stop: Some(tx),
            task,
        }
    }

    async fn get(&self, path: &str, accept: Option<&str>) -> (u16, String, String) {
        let mut req = reqwest::Client::new().get(format!("{}{path}", self.base));
        if let Some(a) = accept {
            req = req.header("accept", a);
        }
        let resp = req.send().await.unwrap();
        let status = resp.status().as_u16();
        let ct = resp
            .headers()
            .get("content-type")
            .map(|v| v.to_str().unwrap().to_string())
            .unwrap_or_default();
        (status, ct, resp.text().await.unwrap())
    }

    async fn metrics(&self) -> String {
        let (status, ct, body) = self.get("/metrics", None).await;
        assert_eq!(status, 200, "{body}");
        assert!(ct.starts_with("text/plain; version=0.0.4"), "{ct}");
        body
    }

    async fn stop(mut self) {
        let _ = self.stop.take().unwrap().send(());
        self.task.await.unwrap().unwrap();
    }
}

fn config_for(db: &Path) -> Config {
    let mut c = Config::default();
    c.cluster_manager.database = db.to_path_buf();
    c
}

/// Series (name and labels exactly as exposed) -> value.
fn parse(text: &str) -> BTreeMap<String, f64> {
    let mut out = BTreeMap::new();
    for line in text.lines() {
        if line.starts_with('#') || line.trim().is_empty() {
            continue;
        }
        let (series, value) = line.rsplit_once(' ').unwrap();
        let v = match value {
            "+Inf" => f64::INFINITY,
            "-Inf" => f64::NEG_INFINITY,
            v => v.parse::<f64>().unwrap(),
        };
        assert!(
            out.insert(series.to_string(), v).is_none(),
            "duplicate series {series}"
        );
    }
    out
}

fn get(m: &BTreeMap<String, f64>, series: &str) -> f64 {
    *m.get(series)
        .unwrap_or_else(|| panic!("series {series} missing; have:\n{m:#?}"))
}

fn count_prefix(m: &BTreeMap<String, f64>, prefix: &str) -> usize {
    m.keys().filter(|k| k.starts_with(prefix)).count()
}

/// A cluster of the test fleet, as the cluster manager records it at `NOW`: aws,
/// us-east-1, m6i.large, workspace default, no autostop, no price; the setters change it.
struct Row {
    name: String,
    status: ClusterStatus,
    cloud: &'static str,
    region: &'static str,
    instance_type: &'static str,
    workspace: &'static str,
    launched_ago: Option<i64>,
    autostop: i64,
    down: bool,
    hourly: Option<f64>,
    total: Option<f64>,
}

fn row(name: &str, status: ClusterStatus) -> Row {
    Row {
        name: name.to_string(),
        status,
        cloud: "aws",
        region: "us-east-1",
        instance_type: "m6i.large",
        workspace: "default",
        launched_ago: None,
        autostop: -1,
        down: false,
        hourly: None,
        total: None,
    }
}

impl Row {
    fn at(mut self, cloud: &'static str, region: &'static str, instance_type: &'static str) -> Row {
        (self.cloud, self.region, self.instance_type) = (cloud, region, instance_type);
        self
    }
    fn workspace(mut self, workspace: &'static str) -> Row {
        self.workspace = workspace;
        self
    }
    fn launched_ago(mut self, secs: i64) -> Row {
        self.launched_ago = Some(secs);
        self
    }
    fn autostop(mut self, minutes: i64, down: bool) -> Row {
        (self.autostop, self.down) = (minutes, down);
        self
    }
    fn priced(mut self, hourly: f64, total: Option<f64>) -> Row {
        (self.hourly, self.total) = (Some(hourly), total);
        self
    }

    fn build(self) -> ClusterRow {
        let now = Timestamp::from_secs_f64(NOW).floor();
        let instance_type = self.instance_type;
        ClusterRow {
            cluster: Cluster {
                name: self.name.clone(),
                cluster_hash: format!("hash-{}", self.name),
                status: self.status,
                cloud: Some(self.cloud.to_string()),
                region: Some(self.region.to_string()),
                zone: None,
                instance_type: Some(instance_type.to_string()),
                nodes: 1,
                cpus: Some("2".into()),
                memory: Some("8".into()),
                accelerators: None,
                resources: Some(format!("1x(cpus=2, mem=8, {instance_type}, disk=256)")),
                workspace: self.workspace.to_string(),
                user_name: Some("alice@example.com".into()),
                user_hash: Some("u1".into()),
                launched_at: self.launched_ago.map(|a| now - a as f64),
                status_updated_at: Some(now - 30.0),
                autostop_minutes: self.autostop,
                autostop_to_down: self.down,
                is_managed: false,
                last_use: Some("sky launch".into()),
            },
            hourly_cost: self.hourly,
            total_cost: self.total,
            price_source: self.hourly.map(|_| PriceSource::CostReport),
            first_seen: now - 10_000.0,
            last_seen: now - 45.0,
            last_changed: now - 45.0,
            gone_at: (self.status == ClusterStatus::Gone).then_some(now - 500.0),
        }
    }
}

/// Records a successful poll, `finished_ago` seconds before `NOW`, that saw `upserts`.
fn commit(store: &mut Store, upserts: Vec<ClusterRow>, finished_ago: f64) {
    store
        .commit_poll(
            &ClusterChanges {
                upserts,
                ..Default::default()
            },
            &poll(finished_ago, PollOutcome::Ok, None),
        )
        .unwrap();
}

fn poll(finished_ago: f64, outcome: PollOutcome, kind: Option<&str>) -> PollRun {
    PollRun {
        id: 0,
        started_at: Timestamp::from(NOW - finished_ago - 0.5),
        finished_at: Timestamp::from(NOW - finished_ago),
        refresh: RefreshMode::None,
        outcome,
        error_kind: kind.map(str::to_string),
        error: kind.map(|k| format!("simulated {k} failure")),
        clusters: None,
        changes: None,
    }
}

fn audit(store: &Store, action: &str, outcome: &str, n: usize) {
    for _ in 0..n {
        store
            .append_audit(&AuditEntry {
                at: Timestamp::from(NOW - 100.0),
                actor: "autostop".into(),
                action: action.parse().unwrap(),
                cluster: Some("b-up-noauto".into()),
                outcome: outcome.parse().unwrap(),
                detail: Some("free text that must not become a label".into()),
            })
            .unwrap();
    }
}

/// The simulated fleet with known numbers (see the expectations in `fleet_values`).
fn write_fleet(db: &Path) {
    use ClusterStatus::*;
    let mut store = Store::open(db).unwrap();
    for (k, ago) in [("timeout", 300.0), ("timeout", 200.0), ("connect", 150.0)] {
        store
            .record_poll_failure(&poll(ago, PollOutcome::Error, Some(k)))
            .unwrap();
    }
    let upserts = vec![
        row("a-up-aws", Up)
            .launched_ago(3600)
            .autostop(30, false)
            .priced(0.5, Some(2.0))
            .build(),
        row("b-up-noauto", Up)
            .at("aws", "us-east-1", "m6i.xlarge")
            .launched_ago(7200)
            .priced(1.25, Some(10.0))
            .build(),
        row("c-up-gcp", Up)
            .at("gcp", "us-central1", "n2-standard-4")
            .workspace("research")
            .launched_ago(60)
            .autostop(10, true)
            .build(),
        row("d-stopped", Stopped)
            .launched_ago(90_000)
            .priced(0.5, Some(3.0))
            .build(),
        row("e-init", Init)
            .at("aws", "us-west-2", "m6i.large")
            .autostop(5, false)
            .priced(0.25, None)
            .build(),
        row("f-gone", Gone)
            .at("aws", "us-east-1", "p4d.24xlarge")
            .launched_ago(4000)
            .priced(3.0, Some(7.0))
            .build(),
    ];
    commit(&mut store, upserts, 45.0);
    store
        .set_api_server_health(&ApiServerHealth {
            checked_at: Timestamp::from(NOW - 10.0),
            healthy: true,
            version: Some("0.14.1".into()),
            api_version: Some("62".into()),
            commit: Some("abc123".into()),
            latency_ms: Some(12.5),
            error: None,
        })
        .unwrap();
    store
        .set_poll_load(&PollLoad {
            measured_at: Timestamp::from(NOW - 45.0),
            status_secs: 1.5,
            cpu_secs: 1.5,
            cpu_source: CpuSource::Cgroup,
            interval_secs: 75.0,
            share: 0.02,
            budget: 0.02,
        })
        .unwrap();
    audit(&store, "autostop", "ok", 3);
    audit(&store, "autostop", "error", 1);
    audit(&store, "stop", "ok", 1);
    audit(&store, "login", "ok", 2);
    audit(&store, "login", "failure", 1);
    audit(&store, "logout", "ok", 1);
    write_jobs(&mut store);
    write_services(&mut store);
}

/// SkyServe services: alice's "api" ready on one of two replicas, bob's "chat" with its
/// only replica failed, alice's "old" shutting down (no ready-replicas series).
fn write_services(store: &mut Store) {
    use skypilot_host::services::{diff_services, parse_status, KnownServices};
    use skypilot_host::store::FeedState;
    let answer = r#"[
        {"name": "api", "status": "READY", "user_name": "alice", "replica_info": [
            {"replica_id": 1, "name": "api-1", "status": "READY"},
            {"replica_id": 2, "name": "api-2", "status": "PROVISIONING"}]},
        {"name": "chat", "status": "FAILED", "user_name": "bob", "replica_info": [
            {"replica_id": 1, "name": "chat-1", "status": "FAILED"}]},
        {"name": "old", "status": "SHUTTING_DOWN", "user_name": "alice", "replica_info": []}
    ]"#;
    let changes = diff_services(
        &KnownServices::new(),
        parse_status(answer).unwrap(),
        Timestamp::from(NOW - 30.0),
    );
    store
        .commit_services(
            &changes,
            &FeedState {
                attempted_at: Timestamp::from(NOW - 30.0),
                ok_at: Some(Timestamp::from(NOW - 30.0)),
                records: Some(3),
                seconds: Some(0.2),
                interval_secs: Some(60.0),
                error_kind: None,
                error: None,
            },
        )
        .unwrap();
}

/// Managed jobs: alice's job 7 running for 30 min on a-up-aws after 4 recoveries, bob's
/// job 8 failed, bob's job 9 cancelled (not a failure).
fn write_jobs(store: &mut Store) {
    use skypilot_host::jobs::{diff_jobs, parse_queue, KnownJobs};
    use skypilot_host::store::FeedState;
    let queue = format!(
        r#"{{"jobs": [
            {{"job_id": 7, "task_id": 0, "job_name": "train", "status": "RUNNING", "user_name": "alice",
              "recovery_count": 4, "current_cluster_name": "a-up-aws", "start_at": {started}}},
            {{"job_id": 8, "task_id": 0, "job_name": "eval", "status": "FAILED", "user_name": "bob",
              "failure_reason": "exit 1", "start_at": {started}, "end_at": {ended}}},
            {{"job_id": 9, "task_id": 0, "job_name": "sweep", "status": "CANCELLED", "user_name": "bob"}}
        ]}}"#,
        started = NOW - 1800.0,
        ended = NOW - 600.0
    );
    let changes = diff_jobs(
        &KnownJobs::new(),
        parse_queue(&queue).unwrap(),
        Timestamp::from(NOW - 45.0),
    );
    store
        .commit_jobs(
            &changes,
            &FeedState {
                attempted_at: Timestamp::from(NOW - 45.0),
                ok_at: Some(Timestamp::from(NOW - 45.0)),
                records: Some(3),
                seconds: Some(0.5),
                interval_secs: Some(60.0),
                error_kind: None,
                error: None,
            },
        )
        .unwrap();
}

fn fleet_db() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("host.db");
    write_fleet(&db);
    (dir, db)
}

/// What the fleet of `write_fleet` exports at `NOW`: (series exactly as exposed, value).
const FLEET_VALUES: &[(&str, f64)] = &[
    // The database.
    ("skypilot_host_database_up", 1.0),
    (r#"skypilot_host_database_error{kind="missing"}"#, 0.0),
    (
        r#"skypilot_host_database_malformed_rows{table="clusters"}"#,
        0.0,
    ),
    (
        concat!(
            r#"skypilot_host_build_info{version=""#,
            env!("CARGO_PKG_VERSION"),
            r#""}"#
        ),
        1.0,
    ),
    // Managed jobs.
    (
        r#"skypilot_managed_jobs{status="RUNNING",user="alice"}"#,
        1.0,
    ),
    (r#"skypilot_managed_jobs{status="FAILED",user="bob"}"#, 1.0),
    (
        r#"skypilot_managed_jobs{status="CANCELLED",user="bob"}"#,
        1.0,
    ),
    (r#"skypilot_managed_jobs_failed_total{user="bob"}"#, 1.0),
    (
        r#"skypilot_managed_job_recoveries_total{job_id="7",name="train",user="alice"}"#,
        4.0,
    ),
    (
        r#"skypilot_managed_job_running_seconds{job_id="7",name="train",user="alice"}"#,
        1800.0,
    ),
    ("skypilot_host_jobs_feed_up", 1.0),
    ("skypilot_host_jobs_feed_age_seconds", 45.0),
    // Services.
    (r#"skypilot_services{status="READY",user="alice"}"#, 1.0),
    (r#"skypilot_services{status="FAILED",user="bob"}"#, 1.0),
    (
        r#"skypilot_services{status="SHUTTING_DOWN",user="alice"}"#,
        1.0,
    ),
    (
        r#"skypilot_service_ready_replicas{service="api",user="alice"}"#,
        1.0,
    ),
    (
        r#"skypilot_service_ready_replicas{service="chat",user="bob"}"#,
        0.0,
    ),
    (
        r#"skypilot_service_replicas{service="api",user="alice",status="PROVISIONING"}"#,
        1.0,
    ),
    (
        r#"skypilot_service_replicas{service="chat",user="bob",status="FAILED"}"#,
        1.0,
    ),
    ("skypilot_host_services_feed_up", 1.0),
    ("skypilot_host_services_feed_age_seconds", 30.0),
    // Counts.
    (r#"skypilot_clusters_by_status{status="UP"}"#, 3.0),
    (r#"skypilot_clusters_by_status{status="STOPPED"}"#, 1.0),
    (r#"skypilot_clusters_by_status{status="INIT"}"#, 1.0),
    ("skypilot_clusters_gone", 1.0),
    (
        r#"skypilot_clusters{status="UP",cloud="aws",region="us-east-1",workspace="default"}"#,
        2.0,
    ),
    (
        r#"skypilot_clusters{status="UP",cloud="gcp",region="us-central1",workspace="research"}"#,
        1.0,
    ),
    (
        r#"skypilot_clusters{status="STOPPED",cloud="aws",region="us-east-1",workspace="default"}"#,
        1.0,
    ),
    // Per-cluster series.
    (
        r#"skypilot_cluster_info{cluster="c-up-gcp",cloud="gcp",region="us-central1",instance_type="n2-standard-4",workspace="research",status="UP"}"#,
        1.0,
    ),
    // Uptime of UP clusters only, from the clock.
    (
        r#"skypilot_cluster_uptime_seconds{cluster="a-up-aws"}"#,
        3600.0,
    ),
    (
        r#"skypilot_cluster_uptime_seconds{cluster="b-up-noauto"}"#,
        7200.0,
    ),
    (
        r#"skypilot_cluster_uptime_seconds{cluster="c-up-gcp"}"#,
        60.0,
    ),
    // Autostop.
    (
        r#"skypilot_cluster_autostop_seconds{cluster="a-up-aws"}"#,
        1800.0,
    ),
    (
        r#"skypilot_cluster_autostop_seconds{cluster="b-up-noauto"}"#,
        -1.0,
    ),
    (
        r#"skypilot_cluster_autostop_seconds{cluster="c-up-gcp"}"#,
        600.0,
    ),
    (
        r#"skypilot_cluster_autostop_seconds{cluster="e-init"}"#,
        300.0,
    ),
    (r#"skypilot_cluster_autostop_down{cluster="c-up-gcp"}"#, 1.0),
    (r#"skypilot_cluster_autostop_down{cluster="a-up-aws"}"#, 0.0),
    ("skypilot_clusters_up_without_autostop", 1.0),
    // Cost.
    (
        r#"skypilot_cluster_price_dollars_per_hour{cluster="b-up-noauto",source="cost_report"}"#,
        1.25,
    ),
    (
        r#"skypilot_cluster_price_dollars_per_hour{cluster="d-stopped",source="cost_report"}"#,
        0.5,
    ),
    (
        r#"skypilot_cluster_accrued_cost_dollars{cluster="b-up-noauto"}"#,
        10.0,
    ),
    ("skypilot_burn_rate_dollars_per_hour", 1.75),
    ("skypilot_clusters_up_without_price", 1.0),
    ("skypilot_accrued_cost_dollars", 22.0),
    // Freshness.
    ("skypilot_host_state_age_seconds", 45.0),
    (
        "skypilot_host_last_successful_poll_timestamp_seconds",
        NOW - 45.0,
    ),
    ("skypilot_host_last_poll_ok", 1.0),
    ("skypilot_host_poll_interval_effective_seconds", 75.0),
    ("skypilot_host_status_request_duration_seconds", 1.5),
    ("skypilot_host_status_request_cpu_seconds", 1.5),
    ("skypilot_host_poll_load_share", 0.02),
    ("skypilot_host_poll_load_budget", 0.02),
    (r#"skypilot_host_poll_errors_total{kind="timeout"}"#, 2.0),
    (r#"skypilot_host_poll_errors_total{kind="connect"}"#, 1.0),
    ("skypilot_api_server_up", 1.0),
    ("skypilot_api_server_health_latency_seconds", 0.0125),
    ("skypilot_api_server_last_check_age_seconds", 10.0),
    (
        r#"skypilot_api_server_info{version="0.14.1",api_version="62",commit="abc123"}"#,
        1.0,
    ),
    // Actions.
    (
        r#"skypilot_cluster_actions_total{action="autostop",outcome="ok"}"#,
        3.0,
    ),
    (
        r#"skypilot_cluster_actions_total{action="autostop",outcome="error"}"#,
        1.0,
    ),
    (
        r#"skypilot_cluster_actions_total{action="stop",outcome="ok"}"#,
        1.0,
    ),
    (
        r#"skypilot_cluster_actions_total{action="down",outcome="error"}"#,
        0.0,
    ),
    (r#"skypilot_web_ui_logins_total{outcome="ok"}"#, 2.0),
    (r#"skypilot_web_ui_logins_total{outcome="failure"}"#, 1.0),
];

/// How many series of the fleet start with a prefix: (prefix, count, why).
const FLEET_SERIES_COUNTS: &[(&str, usize, &str)] = &[
    (
        "skypilot_service_ready_replicas{",
        2,
        "a service shutting down has no ready-replicas series",
    ),
    (
        "skypilot_clusters_by_status{",
        3,
        "GONE is not a status series",
    ),
    (
        "skypilot_cluster_info{",
        5,
        "per-cluster series: gone clusters are not there",
    ),
    (
        "skypilot_cluster_uptime_seconds{",
        3,
        "uptime of UP clusters only",
    ),
    (
        "skypilot_cluster_price_dollars_per_hour{",
        4,
        "a price for every present cluster that has one",
    ),
];

/// Sums over all series of a family: (prefix, sum).
const FLEET_SUMS: &[(&str, f64)] = &[("skypilot_clusters{", 5.0)];

/// Text that no series name or label of the fleet may contain: (text, why).
const FLEET_ABSENT: &[(&str, &str)] = &[
    ("f-gone", "gone cluster in per-cluster series"),
    ("@", "an e-mail address leaked into a label"),
    ("free text", "audit detail leaked into a label"),
    ("logout", "an audit action that is not a cluster action"),
];

/// The same fleet with the clock moved 100 s on: time comes from the clock.
const FLEET_VALUES_100S_LATER: &[(&str, f64)] = &[
    ("skypilot_host_state_age_seconds", 145.0),
    (
        r#"skypilot_managed_job_running_seconds{job_id="7",name="train",user="alice"}"#,
        1900.0,
    ),
    (
        r#"skypilot_cluster_uptime_seconds{cluster="a-up-aws"}"#,
        3700.0,
    ),
];

/// Every row of `table` that the scrape `m` does not match exactly, one line each.
fn mismatches(m: &BTreeMap<String, f64>, table: &[(&str, f64)]) -> Vec<String> {
    table
        .iter()
        .filter_map(|(series, want)| match m.get(*series) {
            Some(got) if got == want => None,
            Some(got) => Some(format!("{series}: {got}, expected {want}")),
            None => Some(format!("{series}: missing, expected {want}")),
        })
        .collect()
}

/// Scrapes the fleet of `write_fleet` at `clock`'s time.
async fn scrape_fleet_at(
    clock: Arc<TestClock>,
) -> (tempfile::TempDir, Server, BTreeMap<String, f64>) {
    let (dir, db) = fleet_db();
    let server = Server::start(config_for(&db), clock).await;
    let m = parse(&server.metrics().await);
    (dir, server, m)
}

#[tokio::test]
async fn fleet_values_match_the_database() {
    let (_dir, server, m) = scrape_fleet_at(TestClock::new(NOW)).await;
    let wrong = mismatches(&m, FLEET_VALUES);
    assert!(wrong.is_empty(), "{}\nscrape:\n{m:#?}", wrong.join("\n"));
    server.stop().await;
}

#[tokio::test]
async fn fleet_series_counts_match_the_database() {
    let (_dir, server, m) = scrape_fleet_at(TestClock::new(NOW)).await;
    for (prefix, want, why) in FLEET_SERIES_COUNTS {
        assert_eq!(count_prefix(&m, prefix), *want, "{prefix}: {why}");
    }
    for (prefix, want) in FLEET_SUMS {
        let sum: f64 = m
            .iter()
            .filter(|(k, _)| k.starts_with(prefix))
            .map(|(_, v)| v)
            .sum();
        assert_eq!(sum, *want, "sum of {prefix}");
    }
    server.stop().await;
}

#[tokio::test]
async fn fleet_series_leak_nothing() {
    let (_dir, server, m) = scrape_fleet_at(TestClock::new(NOW)).await;
    for (text, why) in FLEET_ABSENT {
        let leaked: Vec<&String> = m.keys().filter(|k| k.contains(text)).collect();
        assert!(leaked.is_empty(), "{why}: {leaked:?}");
    }
    server.stop().await;
}

#[tokio::test]
async fn fleet_values_follow_the_clock() {
    let clock = TestClock::new(NOW);
    let (_dir, server, _) = scrape_fleet_at(clock.clone()).await;
    clock.set(NOW + 100.0);
    let m = parse(&server.metrics().await);
    let wrong = mismatches(&m, FLEET_VALUES_100S_LATER);
    assert!(wrong.is_empty(), "{}\nscrape:\n{m:#?}", wrong.join("\n"));
    server.stop().await;
}

#[tokio::test]
async fn every_family_has_help_and_type_and_the_prefix() {
    let (_dir, db) = fleet_db();
    let server = Server::start(config_for(&db), TestClock::new(NOW)).await;
    let text = server.metrics().await;
    let mut helped = std::collections::BTreeSet::new();
    let mut typed = BTreeMap::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# HELP ") {
            let (name, help) = rest.split_once(' ').unwrap();
            assert!(!help.trim().is_empty(), "empty HELP for {name}");
            helped.insert(name.to_string());
        } else if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, t) = rest.split_once(' ').unwrap();
            typed.insert(name.to_string(), t.to_string());
        }
    }
    assert!(helped.len() >= 25, "only {} families", helped.len());
    for (name, t) in &typed {
        assert!(helped.contains(name), "{name} has no HELP");
        assert!(name.starts_with("skypilot_"), "{name} lacks the prefix");
        assert_eq!(t == "counter", name.ends_with("_total"), "{name} is a {t}");
    }
    for series in parse(&text).keys() {
        let name = series.split('{').next().unwrap();
        assert!(typed.contains_key(name), "sample {series} without TYPE");
    }
    server.stop().await;
}

fn promtool() -> PathBuf {
    let out = Command::new("promtool").arg("--version").output();
    match out {
        Ok(o) if o.status.success() => PathBuf::from("promtool"),
        _ => panic!(
            "promtool is not installed or does not run: install Debian's `prometheus` package \
             (apt-get install prometheus), which provides /usr/bin/promtool"
        ),
    }
}

fn promtool_check_metrics(text: &str) {
    use std::io::Write;
    let mut child = Command::new(promtool())
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && stdout.trim().is_empty() && stderr.trim().is_empty(),
        "promtool check metrics: {}\n{stdout}\n{stderr}\n--- scrape:\n{text}",
        out.status
    );
}

#[tokio::test]
async fn scrape_passes_promtool_check_metrics() {
    let (_dir, db) = fleet_db();
    let server = Server::start(config_for(&db), TestClock::new(NOW)).await;
    promtool_check_metrics(&server.metrics().await);
    server.stop().await;

    // A database that is missing also gives a clean scrape.
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(config_for(&dir.path().join("none.db")), TestClock::new(NOW)).await;
    promtool_check_metrics(&server.metrics().await);
    server.stop().await;
}

#[test]
fn promtool_checks_and_tests_the_alert_rules() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("contrib/prometheus");
    for args in [
        vec!["check", "rules", "alerts.yml"],
        vec!["test", "rules", "alerts_test.yml"],
    ] {
        let out = Command::new(promtool())
            .args(&args)
            .current_dir(&root)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "promtool {}: {}\n{}\n{}",
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

#[tokio::test]
async fn openmetrics_by_negotiation() {
    let (_dir, db) = fleet_db();
    let server = Server::start(config_for(&db), TestClock::new(NOW)).await;
    let accept = "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1";
    let (status, ct, body) = server.get("/metrics", Some(accept)).await;
    assert_eq!(status, 200);
    assert_eq!(
        ct,
        "application/openmetrics-text; version=1.0.0; charset=utf-8"
    );
    assert!(body.ends_with("# EOF\n"), "{body}");
    assert_eq!(body.matches("# EOF").count(), 1);
    assert!(body.contains("# TYPE skypilot_cluster info\n"), "{body}");
    assert!(body.contains("# TYPE skypilot_host_poll_errors counter\n"));
    assert!(body.contains("# UNIT skypilot_cluster_uptime_seconds seconds\n"));
    let m = parse(body.trim_end_matches("# EOF\n"));
    assert_eq!(get(&m, "skypilot_burn_rate_dollars_per_hour"), 1.75);
    assert_eq!(
        get(&m, r#"skypilot_host_poll_errors_total{kind="timeout"}"#),
        2.0
    );

    // Text when asked for, or when nothing is said.
    for accept in [Some("text/plain"), None] {
        let (status, ct, body) = server.get("/metrics", accept).await;
        assert_eq!(status, 200);
        assert_eq!(ct, "text/plain; version=0.0.4; charset=utf-8");
        assert!(!body.contains("# EOF"));
        assert!(body.contains("# TYPE skypilot_cluster_info gauge\n"));
    }
    server.stop().await;
}

#[tokio::test]
async fn missing_or_broken_database_still_answers() {
    let dir = tempfile::tempdir().unwrap();
    let cases: Vec<(&str, PathBuf, &str)> = {
        let missing = dir.path().join("missing.db");
        let empty = dir.path().join("empty.db");
        std::fs::write(&empty, b"").unwrap();
        let garbage = dir.path().join("garbage.db");
        std::fs::write(&garbage, vec![b'x'; 8192]).unwrap();
        let newer = dir.path().join("newer.db");
        {
            let c = rusqlite::Connection::open(&newer).unwrap();
            c.pragma_update(None, "user_version", 999).unwrap();
        }
        vec![
            ("missing", missing, "missing"),
            ("empty file", empty, "too_old"),
            ("not a database", garbage, "corrupt"),
            ("newer schema", newer, "too_new"),
        ]
    };
    let clock = TestClock::new(NOW);
    for (what, path, kind) in cases {
        let server = Server::start(config_for(&path), clock.clone()).await;
        let m = parse(&server.metrics().await);
        assert_eq!(get(&m, "skypilot_host_database_up"), 0.0, "{what}");
        assert_eq!(
            get(
                &m,
                &format!(r#"skypilot_host_database_error{{kind="{kind}"}}"#)
            ),
            1.0,
            "{what}"
        );
        let kinds: f64 = m
            .iter()
            .filter(|(k, _)| k.starts_with("skypilot_host_database_error{"))
            .map(|(_, v)| v)
            .sum();
        assert_eq!(kinds, 1.0, "{what}: exactly one kind");
        assert_eq!(get(&m, "skypilot_api_server_up"), 0.0, "{what}");
        assert_eq!(count_prefix(&m, "skypilot_cluster_info{"), 0, "{what}");
        let (status, _, body) = server.get("/healthz", None).await;
        assert_eq!((status, body.as_str()), (200, "ok\n"), "{what}");
        server.stop().await;
    }
}

#[tokio::test]
async fn database_appearing_later_is_picked_up() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("host.db");
    let server = Server::start(config_for(&db), TestClock::new(NOW)).await;
    let m = parse(&server.metrics().await);
    assert_eq!(get(&m, "skypilot_host_database_up"), 0.0);
    write_fleet(&db);
    let m = parse(&server.metrics().await);
    assert_eq!(get(&m, "skypilot_host_database_up"), 1.0);
    assert_eq!(get(&m, r#"skypilot_clusters_by_status{status="UP"}"#), 3.0);
    server.stop().await;
}

#[tokio::test]
async fn malformed_rows_do_not_break_a_scrape() {
    let (_dir, db) = fleet_db();
    {
        let c = rusqlite::Connection::open(&db).unwrap();
        c.execute_batch(
            "PRAGMA ignore_check_constraints = ON;
             INSERT INTO clusters (name, cluster_hash, status, workspace, first_seen, last_seen, last_changed)
                 VALUES ('zz-bad-status', 'h', 'RUNNING', 'default', 0, 0, 0);
             INSERT INTO clusters (name, cluster_hash, status, workspace, autostop_minutes, first_seen, last_seen, last_changed)
                 VALUES ('zz-bad-autostop', 'h', 'UP', 'default', 'soon', 0, 0, 0);
             UPDATE api_server SET healthy = 'very' WHERE id = 1;",
        )
        .unwrap();
    }
    let server = Server::start(config_for(&db), TestClock::new(NOW)).await;
    let text = server.metrics().await;
    let m = parse(&text);
    assert_eq!(get(&m, "skypilot_host_database_up"), 1.0);
    assert_eq!(
        get(
            &m,
            r#"skypilot_host_database_malformed_rows{table="clusters"}"#
        ),
        2.0
    );
    assert_eq!(
        get(
            &m,
            r#"skypilot_host_database_malformed_rows{table="api_server"}"#
        ),
        1.0
    );
    // The good rows are all still there.
    assert_eq!(count_prefix(&m, "skypilot_cluster_info{"), 5);
    assert_eq!(get(&m, r#"skypilot_clusters_by_status{status="UP"}"#), 3.0);
    assert_eq!(get(&m, "skypilot_burn_rate_dollars_per_hour"), 1.75);
    assert!(!text.contains("zz-bad"));
    // The malformed cluster status is nowhere among the cluster series.
    assert!(!text
        .lines()
        .any(|l| l.starts_with("skypilot_cluster") && l.contains("RUNNING")));
    promtool_check_metrics(&text);
    server.stop().await;
}

#[tokio::test]
async fn odd_label_values_are_escaped() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("host.db");
    let mut store = Store::open(&db).unwrap();
    let mut r = row("odd", ClusterStatus::Up).launched_ago(10).build();
    r.cluster.region = Some("weird \"region\"\\\nname".into());
    commit(&mut store, vec![r], 1.0);
    store
        .record_poll_failure(&poll(
            0.5,
            PollOutcome::Error,
            Some("Bad kind with spaces\n\"quoted\""),
        ))
        .unwrap();
    drop(store);
    let server = Server::start(config_for(&db), TestClock::new(NOW)).await;
    let text = server.metrics().await;
    assert!(
        text.contains(r#"region="weird \"region\"\\\nname""#),
        "{text}"
    );
    let m = parse(&text);
    assert_eq!(
        get(
            &m,
            r#"skypilot_host_poll_errors_total{kind="Bad_kind_with_spaces__quoted_"}"#
        ),
        1.0
    );
    assert_eq!(get(&m, "skypilot_host_last_poll_ok"), 0.0);
    promtool_check_metrics(&text);
    server.stop().await;
}

#[tokio::test]
async fn api_server_down_and_stale_state() {
    let (_dir, db) = fleet_db();
    {
        let mut store = Store::open(&db).unwrap();
        store
            .set_api_server_health(&ApiServerHealth {
                checked_at: Timestamp::from(NOW - 5.0),
                healthy: false,
                version: None,
                api_version: None,
                commit: None,
                latency_ms: None,
                error: Some("connection refused".into()),
            })
            .unwrap();
        store
            .record_poll_failure(&poll(5.0, PollOutcome::Error, Some("connect")))
            .unwrap();
    }
    let clock = TestClock::new(NOW + 600.0);
    let server = Server::start(config_for(&db), clock.clone()).await;
    let text = server.metrics().await;
    let m = parse(&text);
    assert_eq!(get(&m, "skypilot_api_server_up"), 0.0);
    assert_eq!(get(&m, "skypilot_api_server_last_check_age_seconds"), 605.0);
    assert_eq!(count_prefix(&m, "skypilot_api_server_info"), 0);
    assert_eq!(count_prefix(&m, "skypilot_api_server_health_latency"), 0);
    assert!(!text.contains("connection refused"), "free text in metrics");
    // The state is the last good one, and its age says how old.
    assert_eq!(get(&m, "skypilot_host_state_age_seconds"), 645.0);
    assert_eq!(get(&m, "skypilot_host_last_poll_ok"), 0.0);
    assert_eq!(
        get(&m, r#"skypilot_host_poll_errors_total{kind="connect"}"#),
        2.0
    );
    assert_eq!(get(&m, r#"skypilot_clusters_by_status{status="UP"}"#), 3.0);
    server.stop().await;
}

#[tokio::test]
async fn never_polled_state_is_infinitely_old() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("host.db");
    drop(Store::open(&db).unwrap());
    let server = Server::start(config_for(&db), TestClock::new(NOW)).await;
    let text = server.metrics().await;
    let m = parse(&text);
    assert_eq!(get(&m, "skypilot_host_database_up"), 1.0);
    assert_eq!(get(&m, "skypilot_host_state_age_seconds"), f64::INFINITY);
    assert_eq!(get(&m, "skypilot_api_server_up"), 0.0);
    assert_eq!(get(&m, "skypilot_burn_rate_dollars_per_hour"), 0.0);
    assert_eq!(get(&m, r#"skypilot_clusters_by_status{status="UP"}"#), 0.0);
    promtool_check_metrics(&text);
    server.stop().await;
}

#[tokio::test]
async fn skypilot_metrics_passthrough() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("host.db");

    // Not configured: 404 that says so.
    let server = Server::start(config_for(&db), TestClock::new(NOW)).await;
    let (status, _, body) = server.get("/metrics/skypilot", None).await;
    assert_eq!(status, 404);
    assert!(body.contains("monitor.skypilot_metrics_url"), "{body}");
    server.stop().await;

    // A fake upstream serving a fixed text.
    let upstream = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let up_addr = upstream.local_addr().unwrap();
    let app = axum::Router::new()
        .route(
            "/metrics",
            axum::routing::get(|| async {
                (
                    [("content-type", "text/plain; version=0.0.4; charset=utf-8")],
                    "# HELP sky_apiserver_requests_total x\n# TYPE sky_apiserver_requests_total counter\nsky_apiserver_requests_total 7.0\n",
                )
            }),
        )
        .route(
            "/slow",
            axum::routing::get(|| async {
                tokio::time::sleep(std::time::Duration::from_secs(30)).await;
                "late"
            }),
        )
        .route(
            "/broken",
            axum::routing::get(|| async { (axum::http::StatusCode::INTERNAL_SERVER_ERROR, "boom") }),
        );
    let up_task = tokio::spawn(async move { axum::serve(upstream, app).await });

    let mut config = config_for(&db);
    config.monitor.skypilot_metrics_url = Some(format!("http://{up_addr}/metrics"));
    let server = Server::start(config.clone(), TestClock::new(NOW)).await;
    let (status, ct, body) = server.get("/metrics/skypilot", None).await;
    assert_eq!(status, 200);
    assert_eq!(ct, "text/plain; version=0.0.4; charset=utf-8");
    assert!(body.contains("sky_apiserver_requests_total 7.0"), "{body}");
    server.stop().await;

    for (path, expect) in [("/broken", "HTTP 500"), ("/slow", "no answer within")] {
        config.monitor.skypilot_metrics_url = Some(format!("http://{up_addr}{path}"));
        let server = Server::start(config.clone(), TestClock::new(NOW)).await;
        let started = std::time::Instant::now();
        let (status, _, body) = server.get("/metrics/skypilot", None).await;
        assert_eq!(status, 502, "{path}");
        assert!(
            body.contains(expect) && body.contains(path),
            "{path}: {body}"
        );
        assert!(
            started.elapsed() < std::time::Duration::from_secs(20),
            "{path}: timeout not applied"
        );
        server.stop().await;
    }

    // Nothing listening.
    let closed = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let closed_addr = closed.local_addr().unwrap();
    drop(closed);
    config.monitor.skypilot_metrics_url = Some(format!("http://{closed_addr}/metrics"));
    let server = Server::start(config, TestClock::new(NOW)).await;
    let (status, _, body) = server.get("/metrics/skypilot", None).await;
    assert_eq!(status, 502);
    assert!(body.contains("request failed"), "{body}");
    server.stop().await;
    up_task.abort();
}

#[test]
fn binary_serves_and_stops_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("host.db");
    write_fleet(&db);
    let port = free_port();
    let cfg = dir.path().join("host.toml");
    std::fs::write(
        &cfg,
        format!(
            "[cluster_manager]\ndatabase = {:?}\n[monitor]\nlisten = \"127.0.0.1:{port}\"\n",
            db.to_str().unwrap()
        ),
    )
    .unwrap();
    let monitor = HostProcess::role("monitor", &cfg, &dir.path().join("monitor.log"));
    let rt = tokio::runtime::Runtime::new().unwrap();
    let body = rt.block_on(async {
        let url = format!("http://127.0.0.1:{port}/metrics");
        for _ in 0..100 {
            if let Ok(r) = reqwest::get(&url).await {
                return r.text().await.unwrap();
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        panic!("the monitor did not answer on {url}");
    });
    let m = parse(&body);
    assert_eq!(get(&m, r#"skypilot_clusters_by_status{status="UP"}"#), 3.0);
    // SIGTERM, and an exit within 10 s.
    let status = monitor.terminate();
    assert!(status.success(), "exit status {status}");
}

/// Metric names (`skypilot_…`) mentioned in a text.
fn metric_names(text: &str) -> std::collections::BTreeSet<String> {
    let mut out = std::collections::BTreeSet::new();
    let mut rest = text;
    while let Some(i) = rest.find("skypilot_") {
        let tail = &rest[i..];
        let end = tail
            .find(|c: char| !(c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_'))
            .unwrap_or(tail.len());
        out.insert(tail[..end].to_string());
        rest = &tail[end..];
    }
    out
}

/// A backup directory holding one complete backup (a manifest) taken at `at`, of
/// `size` bytes, and an incomplete one (no manifest) newer than it.
fn backup_dir(at: f64, size: u64) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let done = dir.path().join("skypilot-backup-20261206T000000Z");
    std::fs::create_dir(&done).unwrap();
    let manifest = serde_json::json!({
        "format": 1, "name": "skypilot-backup-20261206T000000Z", "created_at": at as i64,
        "skypilot_version": "0.14.1", "skypilot_host_version": "0.1.0", "seconds": 0.5,
        "parts": [{"file": "000-state.db", "kind": "sqlite", "root": "sky_runtime_dir",
                   "path": ".sky/state.db", "what": "state", "size": size,
                   "sha256": "00", "mode": 384, "uid": 0, "gid": 0}],
    });
    std::fs::write(done.join("manifest.json"), manifest.to_string()).unwrap();
    std::fs::create_dir(dir.path().join("skypilot-backup-20261207T000000Z")).unwrap();
    dir
}

#[tokio::test]
async fn backup_series_follow_the_newest_complete_backup() {
    let (_dir, db) = fleet_db();
    let backups = backup_dir(NOW - 3600.0, 123_456);
    let mut config = config_for(&db);
    config.backup.directory = Some(backups.path().to_path_buf());
    config.backup.interval_secs = 3600;
    let server = Server::start(config.clone(), TestClock::new(NOW)).await;
    let m = parse(&server.metrics().await);
    // In OpenMetrics too, before its closing line.
    let (_, _, om) = server
        .get(
            "/metrics",
            Some("application/openmetrics-text; version=1.0.0"),
        )
        .await;
    server.stop().await;
    assert!(om.ends_with("# EOF\n"), "{om}");
    assert!(om.contains("skypilot_host_backup_age_seconds 3600"), "{om}");
    assert_eq!(get(&m, "skypilot_host_backup_directory_readable"), 1.0);
    assert_eq!(get(&m, "skypilot_host_backup_age_seconds"), 3600.0);
    assert_eq!(get(&m, "skypilot_host_backup_interval_seconds"), 3600.0);
    assert_eq!(get(&m, "skypilot_host_backup_last_size_bytes"), 123_456.0);
    assert_eq!(
        get(&m, "skypilot_host_backup_last_success_timestamp_seconds"),
        NOW - 3600.0
    );

    // No backup yet: the age is +Inf, and there is no last success.
    let empty = tempfile::tempdir().unwrap();
    config.backup.directory = Some(empty.path().join("not-yet"));
    let server = Server::start(config.clone(), TestClock::new(NOW)).await;
    let m = parse(&server.metrics().await);
    server.stop().await;
    assert_eq!(get(&m, "skypilot_host_backup_age_seconds"), f64::INFINITY);
    assert!(!m.contains_key("skypilot_host_backup_last_success_timestamp_seconds"));

    // A manifest that does not parse: the directory is not readable, no age.
    std::fs::write(
        backups
            .path()
            .join("skypilot-backup-20261206T000000Z/manifest.json"),
        "{not json",
    )
    .unwrap();
    config.backup.directory = Some(backups.path().to_path_buf());
    let server = Server::start(config, TestClock::new(NOW)).await;
    let m = parse(&server.metrics().await);
    server.stop().await;
    assert_eq!(get(&m, "skypilot_host_backup_directory_readable"), 0.0);
    assert!(!m.contains_key("skypilot_host_backup_age_seconds"));
}

#[tokio::test]
async fn alerts_and_dashboard_use_only_exported_metrics() {
    let (_dir, db) = fleet_db();
    let backups = backup_dir(NOW - 60.0, 1);
    let mut config = config_for(&db);
    config.backup.directory = Some(backups.path().to_path_buf());
    let server = Server::start(config, TestClock::new(NOW)).await;
    let text = server.metrics().await;
    server.stop().await;
    let exported: std::collections::BTreeSet<String> = parse(&text)
        .keys()
        .map(|k| k.split('{').next().unwrap().to_string())
        .collect();
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("contrib");
    let dashboard = std::fs::read_to_string(root.join("grafana/skypilot-fleet.json")).unwrap();
    let json: serde_json::Value = serde_json::from_str(&dashboard).unwrap();
    assert!(json["panels"].as_array().unwrap().len() >= 8);
    for (file, text) in [
        (
            "prometheus/alerts.yml",
            std::fs::read_to_string(root.join("prometheus/alerts.yml")).unwrap(),
        ),
        ("grafana/skypilot-fleet.json", dashboard),
    ] {
        let used = metric_names(&text);
        assert!(used.len() >= 5, "{file}: {used:?}");
        for name in used {
            assert!(
                exported.contains(&name),
                "{file} uses {name}, which the monitor does not export"
            );
        }
    }
}

/// Against the real SkyPilot API server: clusters made through SkyPilot's own Python
/// API, recorded by the real cluster manager, are exported with the right values.
#[cfg(feature = "real-server")]
mod real {
    use std::time::Duration;

    use super::*;
    use crate::support::host::{cluster, Host};
    use crate::support::real::{api_url, skyctl, unique};

    #[test]
    fn values_match_clusters_of_the_real_server() {
        let up = unique("mon-up");
        let noauto = unique("mon-noauto");
        let stopped = unique("mon-stopped");
        skyctl(&["create", &up, "--autostop", "30", "--down"]);
        skyctl(&["create", &noauto, "--region", "us-east-1"]);
        skyctl(&[
            "create",
            &stopped,
            "--status",
            "STOPPED",
            "--instance-type",
            "m6i.xlarge",
        ]);
        let host = Host::new(&api_url(), 1, 3600);
        let manager = host.spawn_manager();
        host.wait_status("the three clusters listed", Duration::from_secs(90), |s| {
            [&up, &noauto, &stopped]
                .iter()
                .all(|n| cluster(s, n).is_some())
                && s["api_server"]["healthy"] == true
        });
        // Freeze the database so the scrape and the database can be compared exactly.
        assert!(manager.terminate().success());

        let store = Store::open_read_only(&host.db).unwrap();
        let rows = store.clusters().unwrap();
        let last_ok = store.last_ok_poll().unwrap().unwrap().finished_at;
        drop(store);
        let now = last_ok + 7.0;
        let mut config = config_for(&host.db);
        config.skypilot.api_url = api_url();

        let rt = tokio::runtime::Runtime::new().unwrap();
        let text = rt.block_on(async {
            let server = Server::start(config, TestClock::new(now)).await;
            let text = server.metrics().await;
            server.stop().await;
            text
        });
        promtool_check_metrics(&text);
        let m = parse(&text);

        // What was created through SkyPilot.
        let info = |name: &str, region: &str, itype: &str, status: &str| {
            format!(
                r#"skypilot_cluster_info{{cluster="{name}",cloud="AWS",region="{region}",instance_type="{itype}",workspace="default",status="{status}"}}"#
            )
        };
        assert_eq!(get(&m, &info(&up, "us-west-2", "m6i.large", "UP")), 1.0);
        assert_eq!(get(&m, &info(&noauto, "us-east-1", "m6i.large", "UP")), 1.0);
        assert_eq!(
            get(&m, &info(&stopped, "us-west-2", "m6i.xlarge", "STOPPED")),
            1.0
        );
        let per = |family: &str, name: &str| get(&m, &format!(r#"{family}{{cluster="{name}"}}"#));
        assert_eq!(per("skypilot_cluster_autostop_seconds", &up), 1800.0);
        assert_eq!(per("skypilot_cluster_autostop_down", &up), 1.0);
        assert_eq!(per("skypilot_cluster_autostop_seconds", &noauto), -1.0);
        assert_eq!(per("skypilot_cluster_autostop_seconds", &stopped), -1.0);
        assert!(!m.contains_key(&format!(
            r#"skypilot_cluster_uptime_seconds{{cluster="{stopped}"}}"#
        )));
        assert_eq!(get(&m, "skypilot_api_server_up"), 1.0);
        assert_eq!(
            count_prefix(&m, r#"skypilot_api_server_info{version="0.14.1","#),
            1
        );
        assert_eq!(get(&m, "skypilot_host_state_age_seconds"), 7.0);
        assert_eq!(get(&m, "skypilot_host_database_up"), 1.0);

        // Every value against the database the cluster manager wrote (the server is
        // shared with other tests, so the fleet is whatever it holds).
        let present: Vec<_> = rows.iter().filter(|r| r.gone_at.is_none()).collect();
        assert_eq!(count_prefix(&m, "skypilot_cluster_info{"), present.len());
        for status in [
            ClusterStatus::Init,
            ClusterStatus::Up,
            ClusterStatus::Stopped,
        ] {
            let n = present
                .iter()
                .filter(|r| r.cluster.status == status)
                .count();
            assert_eq!(
                get(
                    &m,
                    &format!(r#"skypilot_clusters_by_status{{status="{status}"}}"#)
                ),
                n as f64,
                "{status}"
            );
        }
        assert_eq!(
            get(&m, "skypilot_clusters_gone"),
            (rows.len() - present.len()) as f64
        );
        let up_rows: Vec<_> = present
            .iter()
            .filter(|r| r.cluster.status == ClusterStatus::Up)
            .collect();
        assert_eq!(
            get(&m, "skypilot_clusters_up_without_autostop"),
            up_rows
                .iter()
                .filter(|r| r.cluster.autostop_minutes < 0)
                .count() as f64
        );
        let burn = up_rows
            .iter()
            .filter_map(|r| r.hourly_cost)
            .fold(0.0, |a, b| a + b);
        assert!((get(&m, "skypilot_burn_rate_dollars_per_hour") - burn).abs() < 1e-9);
        for r in &present {
            let c = &r.cluster;
            let minutes = if c.autostop_minutes < 0 {
                -1.0
            } else {
                c.autostop_minutes as f64 * 60.0
            };
            assert_eq!(
                per("skypilot_cluster_autostop_seconds", &c.name),
                minutes,
                "{}",
                c.name
            );
            if let (ClusterStatus::Up, Some(t)) = (c.status, c.launched_at) {
                assert_eq!(
                    per("skypilot_cluster_uptime_seconds", &c.name),
                    now.age_since(t),
                    "{}",
                    c.name
                );
            }
            let price_series = format!(
                r#"skypilot_cluster_price_dollars_per_hour{{cluster="{}","#,
                c.name
            );
            match (r.hourly_cost, r.price_source) {
                (Some(p), Some(source)) => {
                    let source = match source {
                        PriceSource::CostReport => "cost_report",
                        PriceSource::Catalog => "catalog",
                    };
                    assert_eq!(
                        get(&m, &format!(r#"{price_series}source="{source}"}}"#)),
                        p,
                        "{}",
                        c.name
                    );
                    assert_eq!(count_prefix(&m, &price_series), 1, "{}", c.name);
                }
                (None, _) => assert_eq!(count_prefix(&m, &price_series), 0, "{}", c.name),
                (Some(_), None) => panic!("{}: a price without its source in the database", c.name),
            }
        }
        // Clean up the server's state for the other tests.
        for n in [&up, &noauto, &stopped] {
            skyctl(&["remove", n]);
        }
    }
}

/// A fleet whose exposition is many times the streaming chunk: the body arrives whole.
#[tokio::test]
async fn large_fleet_streams_completely() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("host.db");
    let mut store = Store::open(&db).unwrap();
    let n = 3000;
    let upserts = (0..n)
        .map(|i| {
            let status = if i % 3 == 0 {
                ClusterStatus::Stopped
            } else {
                ClusterStatus::Up
            };
            row(&format!("bulk-{i:05}"), status)
                .launched_ago(100)
                .autostop(10, false)
                .priced(0.5, Some(1.0))
                .build()
        })
        .collect();
    commit(&mut store, upserts, 1.0);
    drop(store);
    let server = Server::start(config_for(&db), TestClock::new(NOW)).await;
    for accept in [None, Some("application/openmetrics-text")] {
        let (status, _, body) = server.get("/metrics", accept).await;
        assert_eq!(status, 200);
        assert!(body.len() > 4 * 256 * 1024, "{} bytes", body.len());
        if accept.is_some() {
            assert!(body.ends_with("# EOF\n"));
        } else {
            promtool_check_metrics(&body);
        }
        let m = parse(body.trim_end_matches("# EOF\n"));
        assert_eq!(count_prefix(&m, "skypilot_cluster_info{"), n);
        assert_eq!(count_prefix(&m, "skypilot_cluster_uptime_seconds{"), 2000);
        assert_eq!(get(&m, "skypilot_burn_rate_dollars_per_hour"), 1000.0);
        // The last family of the exposition arrived too.
        assert!(
            body.contains("# HELP skypilot_web_ui_logins"),
            "tail missing"
        );
    }
    server.stop().await;
}

/// Connections are kept between scrapes: new commits are seen, and a database file
/// replaced by another (or removed) is noticed.
#[tokio::test]
async fn later_writes_and_a_replaced_database_are_seen() {
    let (dir, db) = fleet_db();
    let server = Server::start(config_for(&db), TestClock::new(NOW)).await;
    let m = parse(&server.metrics().await);
    assert_eq!(get(&m, r#"skypilot_clusters_by_status{status="UP"}"#), 3.0);

    // A poll adds a cluster while the monitor holds its connections.
    {
        let mut store = Store::open(&db).unwrap();
        let r = row("g-new", ClusterStatus::Up)
            .launched_ago(5)
            .autostop(15, false)
            .priced(2.0, None)
            .build();
        commit(&mut store, vec![r], 2.0);
    }
    let m = parse(&server.metrics().await);
    assert_eq!(get(&m, r#"skypilot_clusters_by_status{status="UP"}"#), 4.0);
    assert_eq!(get(&m, "skypilot_burn_rate_dollars_per_hour"), 3.75);
    assert_eq!(get(&m, "skypilot_host_state_age_seconds"), 2.0);

    // The file is replaced by another database holding one cluster.
    let other = dir.path().join("other.db");
    {
        let mut store = Store::open(&other).unwrap();
        let r = row("only", ClusterStatus::Stopped)
            .at("gcp", "us-central1", "n2-standard-4")
            .build();
        commit(&mut store, vec![r], 1.0);
        // Fold the WAL into the main file so the rename carries everything.
        rusqlite::Connection::open(&other)
            .unwrap()
            .execute_batch("PRAGMA wal_checkpoint(TRUNCATE);")
            .unwrap();
    }
    for suffix in ["-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", db.display()));
    }
    std::fs::rename(&other, &db).unwrap();
    let m = parse(&server.metrics().await);
    assert_eq!(get(&m, "skypilot_host_database_up"), 1.0);
    assert_eq!(get(&m, r#"skypilot_clusters_by_status{status="UP"}"#), 0.0);
    assert_eq!(
        get(&m, r#"skypilot_clusters_by_status{status="STOPPED"}"#),
        1.0
    );
    assert_eq!(
        count_prefix(&m, "skypilot_cluster_info{cluster=\"only\""),
        1
    );

    // And removed.
    std::fs::remove_file(&db).unwrap();
    let m = parse(&server.metrics().await);
    assert_eq!(get(&m, "skypilot_host_database_up"), 0.0);
    assert_eq!(
        get(&m, r#"skypilot_host_database_error{kind="missing"}"#),
        1.0
    );
    server.stop().await;
}

/// A lasting problem is logged when it appears and when it clears, not on every scrape.
#[test]
fn problems_are_logged_when_they_change() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("host.db");
    let port = free_port();
    let cfg = dir.path().join("host.toml");
    std::fs::write(
        &cfg,
        format!(
            "[cluster_manager]\ndatabase = {:?}\n[monitor]\nlisten = \"127.0.0.1:{port}\"\n",
            db.to_str().unwrap()
        ),
    )
    .unwrap();
    let log = dir.path().join("monitor.log");
    let mut command = bin();
    command
        .args(["monitor", "--config"])
        .arg(&cfg)
        .env_remove("SKYPILOT_HOST_LOG");
    let monitor = HostProcess::spawn(command, &log);
    let rt = tokio::runtime::Runtime::new().unwrap();
    let scrape = |rt: &tokio::runtime::Runtime| {
        rt.block_on(async {
            let url = format!("http://127.0.0.1:{port}/metrics");
            for _ in 0..100 {
                if let Ok(r) = reqwest::get(&url).await {
                    return parse(&r.text().await.unwrap());
                }
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            }
            panic!("the monitor did not answer on {url}");
        })
    };
    for _ in 0..4 {
        assert_eq!(get(&scrape(&rt), "skypilot_host_database_up"), 0.0);
    }
    write_fleet(&db);
    for _ in 0..3 {
        assert_eq!(get(&scrape(&rt), "skypilot_host_database_up"), 1.0);
    }
    assert!(monitor.terminate().success());
    let text = std::fs::read_to_string(&log).unwrap();
    assert_eq!(
        text.matches("problems reading the host database").count(),
        1,
        "{text}"
    );
    assert!(text.contains("missing"), "{text}");
    assert_eq!(text.matches("read cleanly again").count(), 1, "{text}");
}
