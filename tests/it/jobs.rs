//! Managed jobs: the contract of `/jobs/queue/v2` (the same cases against the simulator
//! and a real SkyPilot 0.14.1 whose jobs controller runs on the API server's host), and
//! the cluster manager recording the queue, as a process, with `status --jobs` and the
//! monitor's series read back.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use serde_json::{json, Value};

use crate::support::api::{return_value, run_op, start_sim};
use crate::support::host::Host;
#[cfg(feature = "real-server")]
use crate::support::real::OwnServer;
use crate::support::sim::{Op, Outcome, SimJob, Simulator};

use skypilot_host::jobs::{parse_queue, JobStatus, QUEUE_FIELDS};

/// Where the cases run: the simulator, or a real server of their own.
enum Fleet<'a> {
    Sim(&'a Simulator),
    #[cfg(feature = "real-server")]
    Real(&'a OwnServer),
}

impl Fleet<'_> {
    fn url(&self) -> String {
        match self {
            Fleet::Sim(s) => s.url(),
            #[cfg(feature = "real-server")]
            Fleet::Real(r) => r.url.clone(),
        }
    }

    /// A PENDING job of `user`, as `sky jobs launch` records it: its id.
    fn add(&self, name: &str, user: &str) -> i64 {
        match self {
            Fleet::Sim(s) => {
                let id = s.next_job_id();
                s.upsert_job(SimJob::new(id, name, user));
                id
            }
            #[cfg(feature = "real-server")]
            Fleet::Real(r) => r
                .skyctl_output(&["job", name, "--user", user])
                .trim()
                .parse()
                .unwrap(),
        }
    }

    /// Moves job `id` on to `state` as its controller would.
    fn set(
        &self,
        id: i64,
        state: &str,
        recoveries: i64,
        reason: Option<&str>,
        cluster: Option<&str>,
    ) {
        match self {
            Fleet::Sim(s) => {
                let now = 1_796_540_000.0;
                assert!(s.update_job(id, |j| {
                    let started = state != "CANCELLED" || j.start_at.is_some();
                    j.status = state.to_string();
                    j.recovery_count = recoveries;
                    if started {
                        j.submitted_at = Some(now);
                        j.start_at = Some(now);
                    }
                    j.cluster = cluster.map(str::to_string);
                    if state.starts_with("FAILED") {
                        j.failure_reason = reason.map(str::to_string);
                    }
                    if matches!(state, "SUCCEEDED" | "CANCELLED") || state.starts_with("FAILED") {
                        j.end_at = Some(now + 60.0);
                    }
                }));
            }
            #[cfg(feature = "real-server")]
            Fleet::Real(r) => {
                let id = id.to_string();
                let n = recoveries.to_string();
                let mut args = vec!["job-state", &id, state, "--recoveries", &n];
                if let Some(reason) = reason {
                    args.extend(["--reason", reason]);
                }
                if let Some(c) = cluster {
                    args.extend(["--cluster", c]);
                }
                r.skyctl(&args);
            }
        }
    }
}

/// The body the cluster manager sends.
fn queue_body(skip_finished: bool) -> Value {
    json!({
        "refresh": false,
        "skip_finished": skip_finished,
        "all_users": true,
        "fields": QUEUE_FIELDS,
    })
}

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "bool",
        Value::Number(n) if n.is_i64() => "int",
        Value::Number(_) => "float",
        Value::String(_) => "str",
        Value::Array(_) => "list",
        Value::Object(_) => "dict",
    }
}

fn shape(v: &Value) -> BTreeMap<String, &'static str> {
    v.as_object()
        .unwrap()
        .iter()
        .map(|(k, v)| (k.clone(), type_name(v)))
        .collect()
}

fn find(answer: &Value, id: i64) -> Value {
    answer["jobs"]
        .as_array()
        .unwrap()
        .iter()
        .find(|j| j["job_id"] == json!(id))
        .cloned()
        .unwrap_or_else(|| panic!("job {id} not in the queue: {answer:#}"))
}

/// Each job as `/jobs/queue/v2` lists it: the fields asked for and no others, of the
/// types a real 0.14.1 sends for a job in that state; totals beside them; and what
/// [`parse_queue`] makes of it.
async fn case_queue_answer(f: &Fleet<'_>) {
    let running = f.add("ct-train", "alice");
    f.set(running, "RUNNING", 2, None, Some("ct-train-1"));
    let failed = f.add("ct-eval", "bob");
    f.set(
        failed,
        "FAILED_SETUP",
        0,
        Some("setup: pip install failed"),
        None,
    );
    let pending = f.add("ct-wait", "bob");

    let (code, payload) = run_op(&f.url(), "jobs/queue/v2", queue_body(false)).await;
    assert_eq!(code, 200, "{payload:#}");
    let answer = return_value(&payload);
    let top: BTreeSet<&str> = answer
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(
        top,
        BTreeSet::from([
            "infra_options",
            "jobs",
            "status_counts",
            "total",
            "total_no_filter"
        ])
    );
    for k in ["total", "total_no_filter"] {
        assert!(answer[k].is_i64(), "{k}: {answer:#}");
    }
    assert!(answer["status_counts"]["RUNNING"].as_i64().unwrap() >= 1);

    let asked: BTreeSet<&str> = QUEUE_FIELDS.into_iter().collect();
    let common = [
        ("job_id", "int"),
        ("task_id", "int"),
        ("job_name", "str"),
        ("task_name", "str"),
        ("workspace", "str"),
        ("resources", "str"),
        ("recovery_count", "int"),
        ("user_name", "str"),
        ("user_hash", "str"),
        ("pool", "null"),
    ];
    let expect = |specific: &[(&str, &'static str)]| -> BTreeMap<String, &'static str> {
        common
            .iter()
            .chain(specific)
            .map(|(k, t)| (k.to_string(), *t))
            .collect()
    };
    let r = find(&answer, running);
    assert_eq!(
        r.as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect::<BTreeSet<_>>(),
        asked
    );
    assert_eq!(
        shape(&r),
        expect(&[
            ("status", "str"),
            ("cloud", "str"),
            ("region", "str"),
            ("infra", "str"),
            ("current_cluster_name", "str"),
            ("submitted_at", "float"),
            ("start_at", "float"),
            ("end_at", "null"),
            ("failure_reason", "null"),
        ]),
        "a running job: {r:#}"
    );
    assert_eq!(r["cloud"], "AWS");
    let e = find(&answer, failed);
    assert_eq!(
        shape(&e),
        expect(&[
            ("status", "str"),
            ("cloud", "str"),
            ("region", "str"),
            ("infra", "str"),
            ("current_cluster_name", "null"),
            ("submitted_at", "float"),
            ("start_at", "float"),
            ("end_at", "float"),
            ("failure_reason", "str"),
        ]),
        "a failed job: {e:#}"
    );
    assert_eq!(
        (e["cloud"].clone(), e["infra"].clone()),
        (json!("-"), json!("-"))
    );
    let p = find(&answer, pending);
    assert_eq!(
        shape(&p),
        expect(&[
            ("status", "str"),
            ("cloud", "str"),
            ("region", "str"),
            ("infra", "str"),
            ("current_cluster_name", "null"),
            ("submitted_at", "null"),
            ("start_at", "null"),
            ("end_at", "null"),
            ("failure_reason", "null"),
        ]),
        "a pending job: {p:#}"
    );

    let jobs = parse_queue(&answer.to_string()).unwrap();
    let get = |id: i64| jobs.iter().find(|j| j.job_id == id).unwrap();
    let j = get(running);
    assert_eq!(
        (j.status, j.recovery_count, j.cluster.as_deref(), j.owner()),
        (JobStatus::Running, 2, Some("ct-train-1"), "alice")
    );
    assert_eq!(j.cloud.as_deref(), Some("AWS"));
    assert!(j.started_at.is_some() && j.ended_at.is_none());
    let j = get(failed);
    assert_eq!(
        (j.status, j.failure_reason.as_deref(), j.cloud.as_deref()),
        (
            JobStatus::FailedSetup,
            Some("setup: pip install failed"),
            None
        )
    );
    assert!(j.ended_at.is_some());
    let j = get(pending);
    assert_eq!(
        (j.status, j.owner(), j.started_at),
        (JobStatus::Pending, "bob", None)
    );
}

/// `skip_finished` leaves out the jobs that ended (failed, cancelled, succeeded).
async fn case_skip_finished(f: &Fleet<'_>) {
    let running = f.add("ct-sf-run", "carol");
    f.set(running, "RUNNING", 0, None, Some("ct-sf-1"));
    let cancelled = f.add("ct-sf-cancel", "carol");
    f.set(cancelled, "CANCELLED", 0, None, None);
    let done = f.add("ct-sf-done", "carol");
    f.set(done, "SUCCEEDED", 0, None, None);
    let (_, payload) = run_op(&f.url(), "jobs/queue/v2", queue_body(true)).await;
    let answer = return_value(&payload);
    let ids: BTreeSet<i64> = answer["jobs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|j| j["job_id"].as_i64().unwrap())
        .collect();
    assert!(ids.contains(&running), "{answer:#}");
    assert!(
        !ids.contains(&cancelled) && !ids.contains(&done),
        "{answer:#}"
    );
    let (_, payload) = run_op(&f.url(), "jobs/queue/v2", queue_body(false)).await;
    let all = parse_queue(&return_value(&payload).to_string()).unwrap();
    let status = |id: i64| all.iter().find(|j| j.job_id == id).map(|j| j.status);
    assert_eq!(status(cancelled), Some(JobStatus::Cancelled));
    assert_eq!(status(done), Some(JobStatus::Succeeded));
}

#[tokio::test]
async fn contract_against_simulator_queue_answer() {
    let s = start_sim().await;
    case_queue_answer(&Fleet::Sim(&s)).await;
}

#[tokio::test]
async fn contract_against_simulator_skip_finished() {
    let s = start_sim().await;
    case_skip_finished(&Fleet::Sim(&s)).await;
}

/// SkyPilot's jobs controller in consolidation mode: on the API server's host, which
/// answers `/jobs/queue/v2` from its own database.
#[cfg(feature = "real-server")]
pub(crate) const CONSOLIDATED: &str = "jobs:\n  controller:\n    consolidation_mode: true\n";

/// The same cases against one real server of their own (its jobs controller runs in
/// consolidation mode: the test server of scripts/test.sh has none).
#[cfg(feature = "real-server")]
#[tokio::test(flavor = "multi_thread")]
async fn contract_against_real_server() {
    let r = tokio::task::spawn_blocking(|| OwnServer::start_with_config(CONSOLIDATED, None))
        .await
        .unwrap();
    let f = Fleet::Real(&r);
    case_queue_answer(&f).await;
    case_skip_finished(&f).await;
    drop(r);
}

// ---------------------------------------------------------------------------------------
// The cluster manager recording the queue.

fn job(report: &Value, id: i64) -> Option<&Value> {
    report["jobs"]
        .as_array()
        .unwrap()
        .iter()
        .find(|j| j["job_id"] == json!(id))
}

/// Jobs are recorded with their owner, status changes become transitions, a job that
/// leaves the queue is kept as GONE, and a failed read keeps the jobs as they were and
/// says so. The monitor exports them.
#[tokio::test(flavor = "multi_thread")]
async fn the_cluster_manager_records_the_job_queue() {
    let sim = start_sim().await;
    let f = Fleet::Sim(&sim);
    let a = f.add("train", "alice");
    let b = f.add("eval", "bob");
    f.set(b, "RUNNING", 1, None, Some("eval-1"));
    let host = Host::new(&sim.url(), 1, 3600).with_jobs_every(1);
    let _m = host.spawn_manager();
    let r = host.wait_jobs("both jobs", Duration::from_secs(30), |r| {
        job(r, a).is_some() && job(r, b).is_some()
    });
    assert_eq!(job(&r, a).unwrap()["status"], "PENDING");
    assert_eq!(job(&r, a).unwrap()["user_name"], "alice");
    assert_eq!(job(&r, b).unwrap()["recovery_count"], 1);
    assert_eq!(job(&r, b).unwrap()["cluster"], "eval-1");
    assert_eq!(r["stale"], false);
    let body = &sim.requests_for(Op::JobsQueue)[0].body;
    assert_eq!(body["all_users"], true);
    assert_eq!(body["skip_finished"], false);

    // b fails, a disappears from the queue.
    f.set(b, "FAILED", 1, Some("exit code 1"), None);
    assert!(sim.remove_job(a));
    let r = host.wait_jobs("b failed, a gone", Duration::from_secs(30), |r| {
        job(r, b).is_some_and(|j| j["status"] == "FAILED")
            && job(r, a).is_some_and(|j| j["status"] == "GONE")
    });
    assert_eq!(job(&r, b).unwrap()["failure_reason"], "exit code 1");
    let table = host.run_ok(&["status", "--jobs", "--all"]);
    assert!(
        table.contains("FAILED") && table.contains("exit code 1"),
        "{table}"
    );
    // No job holds a cluster: a burn rate of $0.00/h, not "$-0.00/h" (an empty f64 sum
    // is -0.0).
    assert!(table.contains("0 holding a cluster, $0.00/h"), "{table}");
    // Without --all, ended jobs are left out.
    let table = host.run_ok(&["status", "--jobs"]);
    assert!(table.contains("No managed jobs."), "{table}");

    // The monitor's series.
    let snap = skypilot_host::monitor::collect(&host.db, &skypilot_host::time::SystemClock);
    let text = skypilot_host::monitor::render(snap, skypilot_host::monitor::Format::Text).unwrap();
    assert!(
        text.contains(r#"skypilot_managed_jobs_failed_total{user="bob"} 1"#),
        "{text}"
    );
    assert!(
        text.contains(r#"skypilot_managed_jobs{status="GONE",user="alice"} 1"#),
        "{text}"
    );
    assert!(text.contains("skypilot_host_jobs_feed_up 1"), "{text}");

    // The queue fails: the jobs stay, the report is stale and carries the error.
    sim.set_outcome(
        Op::JobsQueue,
        Outcome::fail("RuntimeError", "the jobs controller's database is locked"),
    );
    let r = host.wait_jobs("a stale report", Duration::from_secs(30), |r| {
        r["stale"] == true
    });
    assert!(
        r["feed"]["error"]
            .as_str()
            .unwrap()
            .contains("the jobs controller's database is locked"),
        "{r:#}"
    );
    assert!(job(&r, b).is_some_and(|j| j["status"] == "FAILED"));
    let table = host.run_ok(&["status", "--jobs", "--all"]);
    assert!(
        table.contains("STALE")
            && table.contains("Last read of SkyPilot's managed-job queue failed"),
        "{table}"
    );
    sim.reset_outcomes();
    host.wait_jobs("fresh again", Duration::from_secs(30), |r| {
        r["stale"] == false
    });

    // The jobs controller stops (SkyPilot stops it once idle): no queue to read, which
    // is no failure; the jobs are kept as last read and the report says why.
    sim.set_jobs_controller(false);
    let r = host.wait_jobs("the controller is down", Duration::from_secs(30), |r| {
        r["feed"]["error_kind"] == "no_controller"
    });
    assert_eq!(r["stale"], false, "{r:#}");
    assert!(
        r["feed"]["error"]
            .as_str()
            .unwrap()
            .contains("No in-progress managed jobs"),
        "{r:#}"
    );
    assert!(job(&r, b).is_some_and(|j| j["status"] == "FAILED"));
    let snap = skypilot_host::monitor::collect(&host.db, &skypilot_host::time::SystemClock);
    let text = skypilot_host::monitor::render(snap, skypilot_host::monitor::Format::Text).unwrap();
    assert!(text.contains("skypilot_host_jobs_feed_up 1"), "{text}");
    let table = host.run_ok(&["status", "--jobs", "--all"]);
    assert!(
        !table.contains("STALE") && table.contains("jobs controller is not up"),
        "{table}"
    );
}

/// Against a real SkyPilot: the jobs made through its own state functions are recorded
/// with the owner, status, recoveries and failure reason it reports.
#[cfg(feature = "real-server")]
#[test]
fn the_cluster_manager_records_the_real_servers_jobs() {
    let r = OwnServer::start_with_config(CONSOLIDATED, None);
    let run: i64 = r
        .skyctl_output(&["job", "cm-train", "--user", "alice"])
        .trim()
        .parse()
        .unwrap();
    r.skyctl(&[
        "job-state",
        &run.to_string(),
        "RUNNING",
        "--recoveries",
        "3",
        "--cluster",
        "cm-train-1",
    ]);
    let failed: i64 = r
        .skyctl_output(&["job", "cm-eval", "--user", "bob"])
        .trim()
        .parse()
        .unwrap();
    r.skyctl(&[
        "job-state",
        &failed.to_string(),
        "FAILED_NO_RESOURCE",
        "--reason",
        "no capacity in us-west-2",
    ]);
    let host = Host::new(&r.url, 1, 3600).with_jobs_every(1);
    let _m = host.spawn_manager();
    let rep = host.wait_jobs("both jobs", Duration::from_secs(90), |rep| {
        job(rep, run).is_some() && job(rep, failed).is_some()
    });
    let j = job(&rep, run).unwrap();
    assert_eq!(
        (
            &j["status"],
            &j["recovery_count"],
            &j["user_name"],
            &j["cluster"]
        ),
        (
            &json!("RUNNING"),
            &json!(3),
            &json!("alice"),
            &json!("cm-train-1")
        )
    );
    let j = job(&rep, failed).unwrap();
    assert_eq!(
        (&j["status"], &j["failure_reason"], &j["user_name"]),
        (
            &json!("FAILED_NO_RESOURCE"),
            &json!("no capacity in us-west-2"),
            &json!("bob")
        )
    );
    // It moves on: recorded as a transition.
    r.skyctl(&["job-state", &run.to_string(), "SUCCEEDED"]);
    host.wait_jobs("the job succeeded", Duration::from_secs(60), |rep| {
        job(rep, run).is_some_and(|j| j["status"] == "SUCCEEDED")
    });
    let db = crate::support::host::open_db(&host.db);
    let tos: Vec<String> = db
        .prepare("SELECT to_status FROM job_transitions WHERE job_id = ?1 ORDER BY id")
        .unwrap()
        .query_map([run], |r| r.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(tos, vec!["RUNNING", "SUCCEEDED"]);
}
