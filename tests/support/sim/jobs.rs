//! Managed jobs: the records SkyPilot 0.14.1's `/jobs/queue/v2` answers from its jobs
//! controller, with the fields of its `ManagedJobRecord` in their order, cut down to the
//! `fields` asked for, and the totals beside them.

use std::collections::BTreeMap;

use serde_json::{json, Map, Value};

use super::Simulator;

/// One managed job (of one task).
#[derive(Debug, Clone, PartialEq)]
pub struct SimJob {
    pub job_id: i64,
    pub name: String,
    pub status: String,
    pub user_name: Option<String>,
    pub user_hash: String,
    pub recovery_count: i64,
    pub cluster: Option<String>,
    pub submitted_at: Option<f64>,
    pub start_at: Option<f64>,
    pub end_at: Option<f64>,
    pub failure_reason: Option<String>,
}

impl SimJob {
    /// A PENDING job of `user` (SkyPilot's user id: md5 of the name, 8 hex digits).
    pub fn new(job_id: i64, name: &str, user: &str) -> SimJob {
        SimJob {
            job_id,
            name: name.into(),
            status: "PENDING".into(),
            user_name: Some(user.into()),
            user_hash: {
                use md5::{Digest, Md5};
                hex::encode(Md5::digest(user.as_bytes()))[..8].to_string()
            },
            recovery_count: 0,
            cluster: None,
            submitted_at: None,
            start_at: None,
            end_at: None,
            failure_reason: None,
        }
    }
}

/// `ManagedJobRecord`'s fields, in the order SkyPilot 0.14.1 sends them.
const RECORD_FIELDS: [&str; 23] = [
    "_job_id",
    "job_id",
    "task_id",
    "job_name",
    "task_name",
    "job_duration",
    "workspace",
    "status",
    "schedule_state",
    "resources",
    "cluster_resources",
    "cloud",
    "region",
    "zone",
    "infra",
    "recovery_count",
    "failure_reason",
    "user_name",
    "user_hash",
    "submitted_at",
    "start_at",
    "end_at",
    "pool",
];

/// The field after `pool` that the host asks for (the rest of SkyPilot's record is
/// not simulated).
const RECORD_TAIL: [&str; 1] = ["current_cluster_name"];

fn record(j: &SimJob, now: f64) -> Map<String, Value> {
    let running = j.cluster.is_some();
    let dash = |on: bool, v: &str| if on { json!(v) } else { json!("-") };
    let duration = match (j.start_at, j.end_at) {
        (Some(s), Some(e)) => (e - s).max(0.0),
        (Some(s), None) => (now - s).max(0.0),
        _ => 0.0,
    };
    let mut m = Map::new();
    for f in RECORD_FIELDS.iter().chain(RECORD_TAIL.iter()) {
        let v = match *f {
            "_job_id" | "job_id" => json!(j.job_id),
            "task_id" => json!(0),
            "job_name" | "task_name" => json!(j.name),
            "job_duration" => json!(duration),
            "workspace" => json!("default"),
            "status" => json!(j.status),
            "schedule_state" => json!("INACTIVE"),
            "resources" => json!("1x[CPU:2]"),
            "cluster_resources" => dash(running, "1x[CPU:2]"),
            "cloud" => dash(running, "AWS"),
            "region" => dash(running, "us-west-2"),
            "zone" => dash(running, "us-west-2a"),
            "infra" => dash(running, "AWS (us-west-2a)"),
            "recovery_count" => json!(j.recovery_count),
            "failure_reason" => json!(j.failure_reason),
            "user_name" => json!(j.user_name),
            "user_hash" => json!(j.user_hash),
            "submitted_at" => json!(j.submitted_at),
            "start_at" => json!(j.start_at),
            "end_at" => json!(j.end_at),
            "current_cluster_name" => json!(j.cluster),
            _ => Value::Null,
        };
        m.insert(f.to_string(), v);
    }
    m
}

/// The `return_value` of `/jobs/queue/v2`: newest job first; with `fields`, only those
/// (in the record's order).
pub(super) fn render_queue(
    jobs: &BTreeMap<i64, SimJob>,
    body: &Map<String, Value>,
    now: f64,
) -> String {
    let fields: Option<Vec<&str>> = body
        .get("fields")
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(Value::as_str).collect());
    let skip_finished = body
        .get("skip_finished")
        .and_then(Value::as_bool)
        .unwrap_or(false);
    let finished = |s: &str| matches!(s, "SUCCEEDED" | "CANCELLED") || s.starts_with("FAILED");
    let mut counts: BTreeMap<String, i64> = BTreeMap::new();
    let mut out = Vec::new();
    for j in jobs.values().rev() {
        if skip_finished && finished(&j.status) {
            continue;
        }
        *counts.entry(j.status.clone()).or_default() += 1;
        let mut r = record(j, now);
        if let Some(f) = &fields {
            r.retain(|k, _| f.contains(&k.as_str()));
        }
        out.push(Value::Object(r));
    }
    // Every simulated job with a cluster runs in one place.
    let infra: Vec<&str> = if jobs.values().any(|j| j.cluster.is_some()) {
        vec!["aws/us-west-2"]
    } else {
        Vec::new()
    };
    json!({
        "jobs": out,
        "total": out.len(),
        "total_no_filter": jobs.len(),
        "status_counts": counts,
        "infra_options": infra,
    })
    .to_string()
}

impl Simulator {
    /// The id the next job launched would get (SkyPilot counts from 1).
    pub fn next_job_id(&self) -> i64 {
        self.shared
            .lock()
            .jobs
            .keys()
            .next_back()
            .map_or(1, |k| k + 1)
    }

    /// Adds or replaces a managed job; its launch brings the jobs controller up.
    pub fn upsert_job(&self, job: SimJob) {
        let mut st = self.shared.lock();
        st.jobs_controller = true;
        st.jobs.insert(job.job_id, job);
    }

    /// Brings SkyPilot's jobs controller up or takes it down (it stops when idle);
    /// without one, `/jobs/queue/v2` fails with `ClusterNotUpError`.
    pub fn set_jobs_controller(&self, up: bool) {
        self.shared.lock().jobs_controller = up;
    }

    /// Changes a job; false when there is none of that id.
    pub fn update_job(&self, job_id: i64, f: impl FnOnce(&mut SimJob)) -> bool {
        match self.shared.lock().jobs.get_mut(&job_id) {
            Some(j) => {
                f(j);
                true
            }
            None => false,
        }
    }

    /// Removes a job from the queue (as a purge would); false when there is none.
    pub fn remove_job(&self, job_id: i64) -> bool {
        self.shared.lock().jobs.remove(&job_id).is_some()
    }
}
