//! The records `status` and `cost_report` return, field for field as the real server
//! sends them.

use serde::Serialize;
use serde_json::{json, Value};

use super::fleet::{SimCluster, SimStatus};
use super::{PICKLED_NONE, PICKLED_STANDIN};

/// One status record, with the fields (and field order) the real server sends for
/// `POST /status` with `include_handle: false`: fields whose value is None are left out.
#[derive(Serialize)]
struct StatusRecordOut<'a> {
    name: &'a str,
    launched_at: i64,
    last_use: &'a str,
    status: &'a str,
    autostop: i64,
    to_down: bool,
    metadata: Value,
    cluster_hash: &'a str,
    cluster_ever_up: bool,
    status_updated_at: i64,
    user_hash: &'a str,
    user_name: &'a str,
    workspace: &'a str,
    last_creation_command: &'a str,
    is_managed: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    init_kind: Option<&'a str>,
    resources_str: String,
    resources_str_full: String,
    nodes: i64,
    cloud: &'a str,
    region: &'a str,
    cpus: &'a str,
    memory: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    accelerators: Option<&'a str>,
    labels: Value,
    cluster_name_on_cloud: String,
    priority: i64,
    links: Value,
    handle: &'a str,
    storage_mounts_metadata: &'a str,
}

fn status_record(c: &SimCluster) -> StatusRecordOut<'_> {
    StatusRecordOut {
        name: &c.name,
        launched_at: c.launched_at,
        last_use: &c.last_use,
        status: c.status.as_str(),
        autostop: c.autostop,
        to_down: c.to_down,
        metadata: json!({}),
        cluster_hash: &c.cluster_hash,
        cluster_ever_up: c.cluster_ever_up,
        status_updated_at: c.status_updated_at,
        user_hash: &c.user_hash,
        user_name: &c.user_name,
        workspace: &c.workspace,
        last_creation_command: &c.last_use,
        is_managed: c.is_managed,
        init_kind: (c.status == SimStatus::Init).then_some("launching"),
        resources_str: c.resources_str(),
        resources_str_full: c.resources_str_full(),
        nodes: c.nodes,
        cloud: &c.cloud,
        region: &c.region,
        cpus: &c.cpus,
        memory: &c.memory,
        accelerators: c.accelerators.as_deref(),
        labels: json!({}),
        cluster_name_on_cloud: format!("{}-{}", c.name, &c.user_hash),
        priority: 0,
        links: json!({}),
        handle: PICKLED_NONE,
        storage_mounts_metadata: PICKLED_NONE,
    }
}

pub(super) fn render_status(records: &[&SimCluster], missing: &[&str]) -> String {
    if missing.is_empty() {
        let out: Vec<StatusRecordOut<'_>> = records.iter().map(|c| status_record(c)).collect();
        return serde_json::to_string(&out).unwrap_or_else(|_| "[]".into());
    }
    let out: Vec<Value> = records
        .iter()
        .map(|c| {
            let mut v = serde_json::to_value(status_record(c)).unwrap_or(Value::Null);
            if let Value::Object(m) = &mut v {
                for f in missing {
                    m.remove(*f);
                }
            }
            v
        })
        .collect();
    Value::Array(out).to_string()
}

/// One `cost_report` record, with the real server's fields (None is sent as null here).
#[derive(Serialize)]
struct CostRecordOut<'a> {
    name: &'a str,
    launched_at: i64,
    duration: i64,
    num_nodes: i64,
    resources: &'a str,
    priority: Option<i64>,
    priority_class: Option<&'a str>,
    cluster_hash: &'a str,
    usage_intervals: Vec<(i64, Option<i64>)>,
    status: Option<&'a str>,
    user_hash: &'a str,
    user_name: &'a str,
    workspace: &'a str,
    last_event: Option<&'a str>,
    node_names: Option<Vec<String>>,
    last_creation_yaml: Option<&'a str>,
    last_creation_command: Option<&'a str>,
    total_cost: f64,
    cloud: &'a str,
    region: &'a str,
    cpus: &'a str,
    memory: &'a str,
    /// SkyPilot sends the string "None" for a CPU instance.
    accelerators: &'a str,
    resources_str: String,
    resources_str_full: String,
}

pub(super) fn render_cost(rows: &[(&SimCluster, bool)], now: i64, missing: &[&str]) -> String {
    let out: Vec<Value> = rows
        .iter()
        .map(|(c, alive)| {
            let duration = c.duration(now);
            let rec = CostRecordOut {
                name: &c.name,
                launched_at: c.launched_at,
                duration,
                num_nodes: c.nodes,
                resources: PICKLED_STANDIN,
                priority: None,
                priority_class: None,
                cluster_hash: &c.cluster_hash,
                usage_intervals: c.usage_intervals.clone(),
                status: alive.then(|| c.status.as_str()),
                user_hash: &c.user_hash,
                user_name: &c.user_name,
                workspace: &c.workspace,
                last_event: None,
                node_names: None,
                last_creation_yaml: None,
                last_creation_command: None,
                total_cost: c.hourly_price * c.nodes as f64 * duration as f64 / 3600.0,
                cloud: &c.cloud,
                region: &c.region,
                cpus: &c.cpus,
                memory: &c.memory,
                accelerators: c.accelerators.as_deref().unwrap_or("None"),
                resources_str: c.resources_str(),
                resources_str_full: c.resources_str_full(),
            };
            let mut v = serde_json::to_value(rec).unwrap_or(Value::Null);
            if let Value::Object(m) = &mut v {
                for f in missing {
                    m.remove(*f);
                }
            }
            v
        })
        .collect();
    Value::Array(out).to_string()
}
