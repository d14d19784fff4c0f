//! Contract tests: ONE list of cases (see `contract_cases!` at the end), each run against
//! the SkyPilot simulator and, with `--features real-server`, against the real SkyPilot
//! 0.14.1 API server, so that the simulator stays faithful. They compare shapes (the keys
//! of each record and the JSON type of each value), error types and messages, and status
//! codes, not hashes or timestamps.
//!
//! The expected shapes below were read from a real 0.14.1 server; the real-server run
//! checks that they still hold, the simulator run that the simulator matches them.
//!
//! Tests of the simulator's own controls (faults, delays, actions, the request log) have
//! no real-server counterpart: they are in `simulator.rs`.

use std::collections::BTreeMap;

use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::support::api::{
    api_get, client, error_value, http, is_uuid_like, return_value, run_op, start_sim, status_of,
};
#[cfg(feature = "real-server")]
use crate::support::real::RealServer;
use crate::support::sim::{SimCluster, SimStatus, Simulator};

use skypilot_host::cluster::ClusterStatus;
use skypilot_host::skypilot::{Client, RefreshMode};

// ---------------------------------------------------------------------------------------
// Targets.

enum Fleet<'a> {
    Sim(&'a Simulator),
    #[cfg(feature = "real-server")]
    Real(&'a RealServer),
}

/// Where a case runs: a base URL, and a way to create, change and remove clusters.
struct Target<'a> {
    url: String,
    fleet: Fleet<'a>,
}

impl<'a> Target<'a> {
    fn sim(sim: &'a Simulator) -> Target<'a> {
        Target {
            url: sim.url(),
            fleet: Fleet::Sim(sim),
        }
    }

    #[cfg(feature = "real-server")]
    fn real(real: &'a RealServer) -> Target<'a> {
        Target {
            url: real.url.clone(),
            fleet: Fleet::Real(real),
        }
    }

    /// A cluster name unique to this test process and case (the real server is shared by
    /// every test running at the same time).
    fn name(&self, case: &str) -> String {
        format!("ct{}-{case}", std::process::id())
    }

    async fn create(&self, name: &str, status: &str, autostop: i64, down: bool) {
        self.create_many(&[(name, status, autostop, down)]).await;
    }

    /// Create clusters (name, status, autostop minutes, to_down) in one go.
    async fn create_many(&self, clusters: &[(&str, &str, i64, bool)]) {
        match &self.fleet {
            Fleet::Sim(s) => {
                for (name, status, autostop, down) in clusters {
                    s.upsert_cluster(
                        SimCluster::new(name)
                            .status(sim_status(status))
                            .autostop(*autostop, *down),
                    );
                }
            }
            #[cfg(feature = "real-server")]
            Fleet::Real(r) => {
                let commands: Vec<Vec<String>> = clusters
                    .iter()
                    .map(|(name, status, autostop, down)| {
                        let mut c = vec![
                            "create".to_string(),
                            name.to_string(),
                            "--status".into(),
                            status.to_string(),
                            "--autostop".into(),
                            autostop.to_string(),
                        ];
                        if *down {
                            c.push("--down".into());
                        }
                        c
                    })
                    .collect();
                if let Err(e) = r.skyctl_batch(&commands).await {
                    panic!("{e}");
                }
            }
        }
    }

    async fn set_status(&self, name: &str, status: &str) {
        match &self.fleet {
            Fleet::Sim(s) => assert!(s.set_status(name, sim_status(status)), "no {name}"),
            #[cfg(feature = "real-server")]
            Fleet::Real(r) => {
                if let Err(e) = r.skyctl(&["set-status", name, status]).await {
                    panic!("{e}");
                }
            }
        }
    }

    async fn set_autostop(&self, name: &str, minutes: i64, down: bool) {
        match &self.fleet {
            Fleet::Sim(s) => assert!(s.set_autostop(name, minutes, down), "no {name}"),
            #[cfg(feature = "real-server")]
            Fleet::Real(r) => {
                let m = minutes.to_string();
                let mut args = vec!["set-autostop", name, &m];
                if down {
                    args.push("--down");
                }
                if let Err(e) = r.skyctl(&args).await {
                    panic!("{e}");
                }
            }
        }
    }

    async fn remove(&self, name: &str) {
        self.remove_many(&[name]).await;
    }

    async fn remove_many(&self, names: &[&str]) {
        match &self.fleet {
            Fleet::Sim(s) => {
                for name in names {
                    assert!(s.remove_cluster(name), "no {name}");
                }
            }
            #[cfg(feature = "real-server")]
            Fleet::Real(r) => {
                let commands: Vec<Vec<String>> = names
                    .iter()
                    .map(|n| vec!["remove".to_string(), n.to_string()])
                    .collect();
                if let Err(e) = r.skyctl_batch(&commands).await {
                    panic!("{e}");
                }
            }
        }
    }

    fn client(&self) -> Client {
        client(&self.url, 60, 1)
    }
}

fn sim_status(s: &str) -> SimStatus {
    match s {
        "UP" => SimStatus::Up,
        "INIT" => SimStatus::Init,
        "STOPPED" => SimStatus::Stopped,
        other => panic!("unknown status {other}"),
    }
}

// ---------------------------------------------------------------------------------------
// Shapes.

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "bool",
        Value::Number(n) if n.is_f64() => "float",
        Value::Number(_) => "int",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

fn shape(v: &Value) -> BTreeMap<String, &'static str> {
    match v {
        Value::Object(m) => m.iter().map(|(k, v)| (k.clone(), type_name(v))).collect(),
        other => panic!("expected an object, got {other}"),
    }
}

fn expected(pairs: &[(&str, &'static str)]) -> BTreeMap<String, &'static str> {
    pairs.iter().map(|(k, t)| (k.to_string(), *t)).collect()
}

/// `GET /api/health` of 0.14.1 without authentication.
const HEALTH_SHAPE: &[(&str, &str)] = &[
    ("status", "string"),
    ("api_version", "string"),
    ("version", "string"),
    ("version_on_disk", "string"),
    ("commit", "string"),
    ("basic_auth_enabled", "bool"),
    ("user", "null"),
    ("service_account_token_enabled", "bool"),
    ("ingress_basic_auth_enabled", "bool"),
    ("latest_version", "null"),
    ("external_proxy_auth_enabled", "bool"),
    ("telemetry_enabled", "bool"),
    ("restrict_config_to_admins", "bool"),
];

/// The request payload of `/api/get` (fields that may be null or not are left to
/// `PAYLOAD_NULLABLE`).
const PAYLOAD_SHAPE: &[(&str, &str)] = &[
    ("request_id", "string"),
    ("name", "string"),
    ("entrypoint", "string"),
    ("request_body", "string"),
    ("status", "string"),
    ("created_at", "float"),
    ("user_id", "string"),
    ("return_value", "string"),
    ("error", "string"),
    ("pid", "int"),
    ("schedule_type", "string"),
    ("user_name", "null"),
    ("cluster_name", "null"),
    ("status_msg", "null"),
    ("should_retry", "bool"),
    ("finished_at", "float"),
    ("file_mounts_blob_id", "null"),
];

fn check_payload_shape(payload: &Value, cluster_name: Option<&str>) {
    let mut want = expected(PAYLOAD_SHAPE);
    if let Some(name) = cluster_name {
        want.insert("cluster_name".into(), "string");
        assert_eq!(payload["cluster_name"], json!(name));
    }
    assert_eq!(shape(payload), want, "request payload: {payload}");
}

/// A status record of an UP or STOPPED cluster made without accelerators; INIT adds
/// `init_kind`. Fields whose value is None are left out by the server.
const STATUS_SHAPE: &[(&str, &str)] = &[
    ("name", "string"),
    ("launched_at", "int"),
    ("last_use", "string"),
    ("status", "string"),
    ("autostop", "int"),
    ("to_down", "bool"),
    ("metadata", "object"),
    ("cluster_hash", "string"),
    ("cluster_ever_up", "bool"),
    ("status_updated_at", "int"),
    ("user_hash", "string"),
    ("user_name", "string"),
    ("workspace", "string"),
    ("last_creation_command", "string"),
    ("is_managed", "bool"),
    ("resources_str", "string"),
    ("resources_str_full", "string"),
    ("nodes", "int"),
    ("cloud", "string"),
    ("region", "string"),
    ("cpus", "string"),
    ("memory", "string"),
    ("labels", "object"),
    ("cluster_name_on_cloud", "string"),
    ("priority", "int"),
    ("links", "object"),
    ("handle", "string"),
    ("storage_mounts_metadata", "string"),
];

fn status_shape(status: &str) -> BTreeMap<String, &'static str> {
    let mut s = expected(STATUS_SHAPE);
    if status == "INIT" {
        s.insert("init_kind".into(), "string");
    }
    s
}

/// A `cost_report` record of a cluster that exists (`status` is null once removed).
const COST_SHAPE: &[(&str, &str)] = &[
    ("name", "string"),
    ("launched_at", "int"),
    ("duration", "int"),
    ("num_nodes", "int"),
    ("resources", "string"),
    ("priority", "null"),
    ("priority_class", "null"),
    ("cluster_hash", "string"),
    ("usage_intervals", "array"),
    ("status", "string"),
    ("user_hash", "string"),
    ("user_name", "string"),
    ("workspace", "string"),
    ("last_event", "null"),
    ("node_names", "null"),
    ("last_creation_yaml", "null"),
    ("last_creation_command", "null"),
    ("total_cost", "float"),
    ("cloud", "string"),
    ("region", "string"),
    ("cpus", "string"),
    ("memory", "string"),
    ("accelerators", "string"),
    ("resources_str", "string"),
    ("resources_str_full", "string"),
];

// ---------------------------------------------------------------------------------------
// The cases.

async fn case_health(t: &Target<'_>) {
    let resp = http()
        .get(format!("{}/api/health", t.url))
        .send()
        .await
        .unwrap_or_else(|e| panic!("GET /api/health: {e}"));
    assert_eq!(resp.status(), StatusCode::OK);
    let id = resp
        .headers()
        .get("x-skypilot-request-id")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    assert!(is_uuid_like(&id), "health carries a request id too: {id:?}");
    let v: Value = resp.json().await.unwrap_or(Value::Null);
    assert_eq!(shape(&v), expected(HEALTH_SHAPE), "health: {v}");
    assert_eq!(v["status"], "healthy");
    assert_eq!(v["api_version"], "62");
    assert_eq!(v["version"], "0.14.1");
    assert_eq!(v["basic_auth_enabled"], false);
}

async fn case_status_empty(t: &Target<'_>) {
    let missing = t.name("never-created");
    let records = status_of(&t.url, &[&missing]).await;
    assert!(
        records.is_empty(),
        "status of a missing cluster: {records:?}"
    );
}

async fn case_status_payload(t: &Target<'_>) {
    let (code, payload) = run_op(
        &t.url,
        "status",
        json!({"cluster_names": [t.name("nothing")], "refresh": "NONE"}),
    )
    .await;
    assert_eq!(code, StatusCode::OK);
    check_payload_shape(&payload, None);
    assert_eq!(payload["name"], "sky.status");
    assert_eq!(payload["schedule_type"], "short");
    assert_eq!(payload["return_value"], "[]");
}

async fn case_status_fleet(t: &Target<'_>) {
    let up = t.name("fleet-up");
    let stopped = t.name("fleet-stopped");
    let init = t.name("fleet-init");
    t.create_many(&[
        (&up, "UP", 30, true),
        (&stopped, "STOPPED", -1, false),
        (&init, "INIT", 10, false),
    ])
    .await;
    let records = status_of(&t.url, &[&up, &stopped, &init]).await;
    let names: Vec<&str> = records.iter().filter_map(|r| r["name"].as_str()).collect();
    // Sorted by name.
    let mut sorted = vec![up.as_str(), stopped.as_str(), init.as_str()];
    sorted.sort();
    assert_eq!(names, sorted);
    for r in &records {
        let status = r["status"].as_str().unwrap_or_default();
        assert_eq!(shape(r), status_shape(status), "record {r}");
        assert!(is_uuid_like(r["cluster_hash"].as_str().unwrap_or_default()));
        assert_eq!(r["cloud"], "AWS");
        assert_eq!(r["region"], "us-west-2");
        assert_eq!(r["nodes"], 1);
        assert_eq!(r["resources_str"], "1x(cpus=2, mem=8, m6i.large, ...)");
        assert_eq!(
            r["resources_str_full"],
            "1x(cpus=2, mem=8, m6i.large, disk=256)"
        );
        assert_eq!(r["workspace"], "default");
        assert_eq!(r["handle"], "gAROLg==");
    }
    let by_name = |n: &str| {
        records
            .iter()
            .find(|r| r["name"] == n)
            .cloned()
            .unwrap_or(Value::Null)
    };
    assert_eq!(by_name(&up)["status"], "UP");
    assert_eq!(by_name(&up)["autostop"], 30);
    assert_eq!(by_name(&up)["to_down"], true);
    assert_eq!(by_name(&up)["cluster_ever_up"], true);
    assert_eq!(by_name(&stopped)["status"], "STOPPED");
    assert_eq!(by_name(&stopped)["autostop"], -1);
    assert_eq!(by_name(&init)["status"], "INIT");
    assert_eq!(by_name(&init)["init_kind"], "launching");
    assert_eq!(by_name(&init)["cluster_ever_up"], false);
    t.remove_many(&[&up, &stopped, &init]).await;
}

async fn case_status_transitions(t: &Target<'_>) {
    let name = t.name("moves");
    t.create(&name, "UP", -1, false).await;
    let r = status_of(&t.url, &[&name]).await;
    assert_eq!(r.len(), 1);
    assert_eq!(r[0]["status"], "UP");
    assert_eq!(r[0]["autostop"], -1);
    let hash = r[0]["cluster_hash"].clone();

    t.set_status(&name, "STOPPED").await;
    let r = status_of(&t.url, &[&name]).await;
    assert_eq!(r[0]["status"], "STOPPED");
    assert_eq!(shape(&r[0]), status_shape("STOPPED"));
    assert_eq!(r[0]["cluster_hash"], hash, "a status change keeps the hash");

    t.set_status(&name, "UP").await;
    t.set_autostop(&name, 45, true).await;
    let r = status_of(&t.url, &[&name]).await;
    assert_eq!(r[0]["status"], "UP");
    assert_eq!(r[0]["autostop"], 45);
    assert_eq!(r[0]["to_down"], true);

    t.remove(&name).await;
    let r = status_of(&t.url, &[&name]).await;
    assert!(r.is_empty(), "removed cluster still listed: {r:?}");
}

async fn case_action_missing_cluster(t: &Target<'_>) {
    let missing = t.name("ghost");
    // autostop and queue colour the message; stop, down and start do not.
    let ops = [
        ("autostop", true),
        ("queue", true),
        ("stop", false),
        ("down", false),
        ("start", false),
    ];
    for (op, colored) in ops {
        let body = if op == "autostop" {
            json!({"cluster_name": missing, "idle_minutes": 10, "down": false})
        } else {
            json!({"cluster_name": missing})
        };
        let (code, payload) = run_op(&t.url, op, body).await;
        assert_eq!(
            code,
            StatusCode::INTERNAL_SERVER_ERROR,
            "{op} on a missing cluster"
        );
        check_payload_shape(&payload, Some(&missing));
        assert_eq!(payload["name"], format!("sky.{op}"));
        let schedule = if op == "start" { "long" } else { "short" };
        assert_eq!(payload["schedule_type"], schedule, "{op}");
        let err = error_value(&payload);
        assert_eq!(
            shape(&err),
            expected(&[
                ("object", "string"),
                ("type", "string"),
                ("message", "string")
            ])
        );
        assert_eq!(err["type"], "ClusterDoesNotExist");
        let plain = format!("Cluster '{missing}' does not exist.");
        let want = if colored {
            format!("\u{1b}[33m{plain}\u{1b}[0m")
        } else {
            plain
        };
        assert_eq!(err["message"], want, "{op}");
    }
}

/// Managed jobs without a jobs controller (the run's server has no consolidation mode
/// and no job was ever launched): SkyPilot has no queue, and says so.
async fn case_jobs_queue_without_controller(t: &Target<'_>) {
    let body = json!({"refresh": false, "skip_finished": false, "all_users": true,
                      "fields": skypilot_host::jobs::QUEUE_FIELDS});
    let (code, payload) = run_op(&t.url, "jobs/queue/v2", body).await;
    assert_eq!(code, StatusCode::INTERNAL_SERVER_ERROR, "{payload}");
    assert_eq!(payload["name"], "sky.jobs.queue_v2");
    assert_eq!(payload["schedule_type"], "short");
    let controller = payload["cluster_name"].as_str().unwrap_or_default();
    assert!(
        controller.starts_with("sky-jobs-controller-") && controller.len() == 28,
        "{payload}"
    );
    check_payload_shape(&payload, Some(controller));
    let err = error_value(&payload);
    assert_eq!(err["type"], "ClusterNotUpError");
    assert_eq!(err["message"], "No in-progress managed jobs.");
}

/// Services without a serve controller (the run's server has no consolidation mode for
/// services and no service was ever started; its network check passes through
/// tests/real/reachability.py): SkyPilot has no services to list, and says so.
async fn case_serve_status_without_controller(t: &Target<'_>) {
    let (code, payload) = run_op(&t.url, "serve/status", json!({"service_names": null})).await;
    assert_eq!(code, StatusCode::INTERNAL_SERVER_ERROR, "{payload}");
    assert_eq!(payload["name"], "sky.serve.status");
    assert_eq!(payload["schedule_type"], "short");
    let controller = payload["cluster_name"].as_str().unwrap_or_default();
    assert!(
        controller.starts_with("sky-serve-controller-") && controller.len() == 29,
        "{payload}"
    );
    check_payload_shape(&payload, Some(controller));
    let err = error_value(&payload);
    assert_eq!(err["type"], "ClusterNotUpError");
    assert_eq!(err["message"], "No live services.");
}

/// `/serve/status`'s `service_names` is required although it may be null, and must be a
/// name or a list of names: FastAPI's 422 says which.
async fn case_serve_status_validation(t: &Target<'_>) {
    let post = |body: Value| {
        let url = format!("{}/serve/status", t.url);
        async move {
            let resp = http().post(url).json(&body).send().await.unwrap();
            let code = resp.status();
            (code, resp.json::<Value>().await.unwrap_or(Value::Null))
        }
    };
    let (code, v) = post(json!({})).await;
    assert_eq!(code, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(v["detail"][0]["type"], "missing");
    assert_eq!(v["detail"][0]["loc"], json!(["body", "service_names"]));
    let (code, v) = post(json!({"service_names": 5})).await;
    assert_eq!(code, StatusCode::UNPROCESSABLE_ENTITY);
    let detail: Vec<(Value, Value)> = v["detail"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| (d["type"].clone(), d["loc"].clone()))
        .collect();
    assert_eq!(
        detail,
        [
            (
                json!("string_type"),
                json!(["body", "service_names", "str"])
            ),
            (
                json!("list_type"),
                json!(["body", "service_names", "list[str]"])
            ),
        ]
    );
}

async fn case_cost_report(t: &Target<'_>) {
    let name = t.name("costly");
    t.create(&name, "UP", -1, false).await;
    let (code, payload) = run_op(&t.url, "cost_report", json!({"days": 30})).await;
    assert_eq!(code, StatusCode::OK);
    assert_eq!(payload["name"], "sky.cost_report");
    let rv = return_value(&payload);
    let rows = rv.as_array().cloned().unwrap_or_default();
    let ours = rows
        .iter()
        .find(|r| r["name"] == json!(name))
        .unwrap_or_else(|| panic!("{name} not in cost_report: {rv}"));
    let mut got = shape(ours);
    // 0.0 may be sent for a cluster seconds old; Python still writes it as a float.
    assert_eq!(got.remove("total_cost"), Some("float"), "{ours}");
    let mut want = expected(COST_SHAPE);
    want.remove("total_cost");
    assert_eq!(got, want, "cost record {ours}");
    assert_eq!(ours["status"], "UP");
    assert_eq!(ours["accelerators"], "None");
    assert_eq!(ours["num_nodes"], 1);
    let interval = &ours["usage_intervals"][0];
    assert_eq!(type_name(&interval[0]), "int");
    assert_eq!(
        interval[1],
        Value::Null,
        "open interval of a running cluster"
    );

    t.remove(&name).await;
    let (_, payload) = run_op(&t.url, "cost_report", json!({"days": 30})).await;
    let rv = return_value(&payload);
    let gone = rv
        .as_array()
        .and_then(|a| a.iter().find(|r| r["name"] == json!(name)).cloned())
        .unwrap_or_else(|| panic!("removed {name} left cost_report: {rv}"));
    assert_eq!(gone["status"], Value::Null, "removed cluster: status null");
    assert_eq!(
        type_name(&gone["usage_intervals"][0][1]),
        "int",
        "closed interval"
    );
}

async fn case_unknown_request_id(t: &Target<'_>) {
    let (code, v) = api_get(&t.url, "no-such-request").await;
    assert_eq!(code, StatusCode::NOT_FOUND);
    assert_eq!(v, json!({"detail": "Request 'no-such-request' not found"}));
}

async fn case_old_api_version(t: &Target<'_>) {
    let resp = http()
        .post(format!("{}/status", t.url))
        .header("X-SkyPilot-API-Version", "23")
        .header("X-SkyPilot-Version", "0.10.0")
        .json(&json!({}))
        .send()
        .await
        .unwrap_or_else(|e| panic!("POST /status: {e}"));
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
    assert_eq!(
        resp.headers()
            .get("x-skypilot-api-version")
            .and_then(|v| v.to_str().ok()),
        Some("62")
    );
    assert_eq!(
        resp.headers()
            .get("x-skypilot-version")
            .and_then(|v| v.to_str().ok()),
        Some("0.14.1")
    );
    let v: Value = resp.json().await.unwrap_or(Value::Null);
    assert_eq!(
        shape(&v),
        expected(&[("error", "string"), ("message", "string")])
    );
    assert_eq!(v["error"], "version_mismatch");
    assert_eq!(
        v["message"],
        "\u{1b}[33mYour SkyPilot client version is too old:0.10.0\n\u{1b}[0mThe server is \
         running on 0.14.1 and the minimum compatible version is 0.11.0.\nUpgrade your client \
         with:\n\u{1b}[33mpip install -U \"skypilot==0.14.1\"\u{1b}[0m"
    );
    // Without X-SkyPilot-Version the server skips the check (clients before 0.11).
    let resp = http()
        .post(format!("{}/status", t.url))
        .header("X-SkyPilot-API-Version", "23")
        .json(&json!({}))
        .send()
        .await
        .unwrap_or_else(|e| panic!("POST /status: {e}"));
    assert_eq!(resp.status(), StatusCode::OK);
}

async fn case_http_basics(t: &Target<'_>) {
    let resp = http()
        .post(format!("{}/no/such/path", t.url))
        .send()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(resp.status(), StatusCode::NOT_FOUND);
    assert!(resp.headers().contains_key("x-skypilot-request-id"));
    let v: Value = resp.json().await.unwrap_or(Value::Null);
    assert_eq!(v, json!({"detail": "Not Found"}));

    let resp = http()
        .get(format!("{}/status", t.url))
        .send()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(resp.status(), StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(
        resp.headers().get("allow").and_then(|v| v.to_str().ok()),
        Some("POST")
    );
    let v: Value = resp.json().await.unwrap_or(Value::Null);
    assert_eq!(v, json!({"detail": "Method Not Allowed"}));

    let resp = http()
        .get(format!("{}/api/get", t.url))
        .send()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(resp.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let v: Value = resp.json().await.unwrap_or(Value::Null);
    assert_eq!(
        v,
        json!({"detail": [{"type": "missing", "loc": ["query", "request_id"],
                           "msg": "Field required", "input": null}]})
    );
}

async fn case_bearer_token_without_service_accounts(t: &Target<'_>) {
    // Service accounts are off by default: a `Bearer sky_…` token is refused even on
    // loopback, before the version check; other requests pass without credentials.
    for path in ["/api/health", "/status"] {
        let req = if path == "/status" {
            http().post(format!("{}{path}", t.url)).json(&json!({}))
        } else {
            http().get(format!("{}{path}", t.url))
        };
        let resp = req
            .header("Authorization", "Bearer sky_not-a-real-token")
            .header("X-SkyPilot-API-Version", "23")
            .header("X-SkyPilot-Version", "0.10.0")
            .send()
            .await
            .unwrap_or_else(|e| panic!("{path}: {e}"));
        assert_eq!(resp.status(), StatusCode::UNAUTHORIZED, "{path}");
        assert_eq!(
            resp.headers()
                .get("cache-control")
                .and_then(|v| v.to_str().ok()),
            Some("no-store")
        );
        let v: Value = resp.json().await.unwrap_or(Value::Null);
        assert_eq!(
            v,
            json!({"detail": "Service account authentication disabled"})
        );
    }
}

async fn case_validation_error(t: &Target<'_>) {
    let resp = http()
        .post(format!("{}/autostop", t.url))
        .json(&json!({"cluster_name": "x"}))
        .send()
        .await
        .unwrap_or_else(|e| panic!("POST /autostop: {e}"));
    assert_eq!(resp.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let v: Value = resp.json().await.unwrap_or(Value::Null);
    assert_eq!(v["detail"][0]["type"], "missing");
    assert_eq!(v["detail"][0]["loc"], json!(["body", "idle_minutes"]));
    assert_eq!(v["detail"][0]["msg"], "Field required");
}

// Cases through the typed client.

async fn case_client_status(t: &Target<'_>) {
    let up = t.name("typed-up");
    let stopped = t.name("typed-stopped");
    t.create_many(&[(&up, "UP", 20, false), (&stopped, "STOPPED", -1, false)])
        .await;
    let client = t.client();
    let health = client.health().await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(health.api_version_number(), Some(62));
    let clusters = client
        .status(RefreshMode::None)
        .await
        .unwrap_or_else(|e| panic!("status: {e}"));
    let find = |n: &str| {
        clusters
            .iter()
            .find(|c| c.name == n)
            .cloned()
            .unwrap_or_else(|| panic!("{n} missing from {clusters:?}"))
    };
    let c = find(&up);
    assert_eq!(c.status, ClusterStatus::Up);
    assert_eq!(c.cloud.as_deref(), Some("AWS"));
    assert_eq!(c.region.as_deref(), Some("us-west-2"));
    assert_eq!(c.nodes, 1);
    assert_eq!(c.workspace, "default");
    assert!(is_uuid_like(&c.cluster_hash));
    assert_eq!(find(&stopped).status, ClusterStatus::Stopped);
    assert_eq!(c.autostop_minutes, 20);
    assert!(!c.autostop_to_down);
    t.remove_many(&[&up, &stopped]).await;
}

async fn case_client_missing_cluster(t: &Target<'_>) {
    let missing = t.name("typed-ghost");
    let client = t.client();
    let err = match client.autostop(&missing, 10, false).await {
        Ok(()) => panic!("autostop on a missing cluster succeeded"),
        Err(e) => e,
    };
    assert_eq!(err.sky_error_type(), Some("ClusterDoesNotExist"), "{err}");
    assert_eq!(err.kind(), "sky_ClusterDoesNotExist");
    assert!(err.to_string().contains(&missing), "{err}");
    let err = match client.stop(&missing).await {
        Ok(()) => panic!("stop on a missing cluster succeeded"),
        Err(e) => e,
    };
    assert_eq!(err.sky_error_type(), Some("ClusterDoesNotExist"), "{err}");
}

async fn case_client_cost_report(t: &Target<'_>) {
    let name = t.name("typed-cost");
    t.create(&name, "UP", -1, false).await;
    let rows = t
        .client()
        .cost_report(30)
        .await
        .unwrap_or_else(|e| panic!("cost_report: {e}"));
    let ours = rows
        .iter()
        .find(|r| r.name == name)
        .unwrap_or_else(|| panic!("{name} not in {rows:?}"));
    assert_eq!(ours.status.as_deref(), Some("UP"));
    assert_eq!(ours.num_nodes, Some(1));
    assert!(ours.cluster_hash.as_deref().is_some_and(is_uuid_like));
    assert!(ours.total_cost.is_some_and(|c| c >= 0.0));
    t.remove(&name).await;
}

// ---------------------------------------------------------------------------------------
// The list: each case runs against the simulator (`against_simulator::NAME`) and, with
// `--features real-server`, against the real server (`against_real_server::NAME`).

macro_rules! contract_cases {
    ($($name:ident => $case:ident),* $(,)?) => {
        mod against_simulator {
            use super::*;
            $(
                #[tokio::test]
                async fn $name() {
                    let s = start_sim().await;
                    $case(&Target::sim(&s)).await;
                }
            )*
        }

        #[cfg(feature = "real-server")]
        mod against_real_server {
            use super::*;
            $(
                #[tokio::test]
                async fn $name() {
                    let r = RealServer::require();
                    $case(&Target::real(&r)).await;
                }
            )*
        }
    };
}

contract_cases! {
    health => case_health,
    bearer_token_without_service_accounts => case_bearer_token_without_service_accounts,
    http_basics => case_http_basics,
    status_empty => case_status_empty,
    status_payload => case_status_payload,
    status_fleet => case_status_fleet,
    status_transitions => case_status_transitions,
    action_missing_cluster => case_action_missing_cluster,
    cost_report => case_cost_report,
    jobs_queue_without_controller => case_jobs_queue_without_controller,
    serve_status_without_controller => case_serve_status_without_controller,
    serve_status_validation => case_serve_status_validation,
    unknown_request_id => case_unknown_request_id,
    old_api_version => case_old_api_version,
    validation_error => case_validation_error,
    client_status => case_client_status,
    client_missing_cluster => case_client_missing_cluster,
    client_cost_report => case_client_cost_report,
}

/// The simulator and the real server, side by side: the same clusters give status and
/// cost records with the same keys and types.
#[cfg(feature = "real-server")]
#[tokio::test]
async fn simulator_and_real_server_records_have_the_same_shape() {
    let r = RealServer::require();
    let s = start_sim().await;
    let real = Target::real(&r);
    let simulated = Target::sim(&s);
    let mut shapes = Vec::new();
    for t in [&real, &simulated] {
        let name = t.name("side-by-side");
        t.create(&name, "UP", 15, true).await;
        let status = status_of(&t.url, &[&name]).await;
        let (_, payload) = run_op(&t.url, "cost_report", json!({"days": 1})).await;
        let cost = return_value(&payload)
            .as_array()
            .and_then(|a| a.iter().find(|r| r["name"] == json!(name)).cloned())
            .unwrap_or(Value::Null);
        shapes.push((shape(&status[0]), shape(&cost)));
        t.remove(&name).await;
    }
    assert_eq!(shapes[0].0, shapes[1].0, "status record: real vs simulator");
    assert_eq!(shapes[0].1, shapes[1].1, "cost record: real vs simulator");
}
