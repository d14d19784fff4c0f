//! Contract tests: the same cases run against the SkyPilot simulator and, with
//! `--features real-server`, against the real SkyPilot 0.14.1 API server, so that the
//! simulator stays faithful. They compare shapes (the keys of each record and the JSON type
//! of each value), error types and messages, and status codes, not hashes or timestamps.
//!
//! The expected shapes below were read from a real 0.14.1 server; the real-server run
//! checks that they still hold, the simulator run that the simulator matches them.
//!
//! After the contract cases: tests of the simulator's own controls (faults, actions, the
//! request log), which have no real-server counterpart.

use std::collections::BTreeMap;
use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::support::sim::{Fault, Op, Outcome, SimCluster, SimStatus, Simulator};
#[cfg(feature = "real-server")]
use crate::support::skyctl::RealServer;

use skypilot_host::cluster::ClusterStatus;
use skypilot_host::config::SkypilotConfig;
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
        let cfg = SkypilotConfig {
            api_url: self.url.clone(),
            token_file: None,
            request_timeout_secs: 60,
            connect_attempts: 1,
        };
        match Client::new(&cfg) {
            Ok(c) => c,
            Err(e) => panic!("client for {}: {e}", self.url),
        }
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
// The raw protocol.

fn http() -> reqwest::Client {
    match reqwest::Client::builder()
        .timeout(Duration::from_secs(60))
        .build()
    {
        Ok(c) => c,
        Err(e) => panic!("reqwest client: {e}"),
    }
}

/// True for `8-4-4-4-12` lowercase hex.
fn is_uuid_like(s: &str) -> bool {
    let parts: Vec<&str> = s.split('-').collect();
    parts.len() == 5
        && parts
            .iter()
            .zip([8, 4, 4, 4, 12])
            .all(|(p, n)| p.len() == n && p.chars().all(|c| c.is_ascii_hexdigit()))
}

/// `POST /<op>` as SkyPilot's own client sends it; checks the answer (200, body `null`,
/// a request id) and returns the id.
async fn post_op(url: &str, op: &str, body: Value) -> String {
    let resp = http()
        .post(format!("{url}/{op}"))
        .header("X-SkyPilot-API-Version", "62")
        .header("X-SkyPilot-Version", "0.14.1")
        .json(&body)
        .send()
        .await
        .unwrap_or_else(|e| panic!("POST {url}/{op}: {e}"));
    assert_eq!(resp.status(), StatusCode::OK, "POST /{op}");
    let id = resp
        .headers()
        .get("x-skypilot-request-id")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
        .unwrap_or_else(|| panic!("POST /{op}: no x-skypilot-request-id header"));
    assert!(is_uuid_like(&id), "request id {id:?} is not UUID-shaped");
    assert_eq!(
        resp.headers()
            .get("x-skypilot-api-version")
            .and_then(|v| v.to_str().ok()),
        Some("62"),
        "POST /{op} with version headers answers with the server's API version"
    );
    let text = resp.text().await.unwrap_or_default();
    assert_eq!(text, "null", "POST /{op} body");
    id
}

/// `GET /api/get?request_id=`: status code and JSON body.
async fn api_get(url: &str, id: &str) -> (StatusCode, Value) {
    let resp = http()
        .get(format!("{url}/api/get"))
        .query(&[("request_id", id)])
        .send()
        .await
        .unwrap_or_else(|e| panic!("GET {url}/api/get: {e}"));
    let status = resp.status();
    let text = resp.text().await.unwrap_or_default();
    let v: Value = serde_json::from_str(&text)
        .unwrap_or_else(|e| panic!("/api/get answered non-JSON ({e}): {text}"));
    (status, v)
}

/// Run an op to completion: (HTTP status of /api/get, the request payload).
async fn run_op(url: &str, op: &str, body: Value) -> (StatusCode, Value) {
    let id = post_op(url, op, body).await;
    let (status, v) = api_get(url, &id).await;
    let payload = if status == StatusCode::OK {
        v
    } else {
        v.get("detail").cloned().unwrap_or(Value::Null)
    };
    assert_eq!(payload["request_id"], json!(id), "payload of {op}");
    (status, payload)
}

/// `return_value` of a successful payload, decoded.
fn return_value(payload: &Value) -> Value {
    assert_eq!(payload["status"], "SUCCEEDED", "payload: {payload}");
    assert_eq!(payload["error"], "null");
    let s = payload["return_value"]
        .as_str()
        .unwrap_or_else(|| panic!("return_value is not a string: {payload}"));
    serde_json::from_str(s).unwrap_or_else(|e| panic!("return_value is not JSON ({e}): {s}"))
}

/// `error` of a failed payload, decoded.
fn error_value(payload: &Value) -> Value {
    assert_eq!(payload["status"], "FAILED", "payload: {payload}");
    assert_eq!(payload["return_value"], "null");
    let s = payload["error"]
        .as_str()
        .unwrap_or_else(|| panic!("error is not a string: {payload}"));
    serde_json::from_str(s).unwrap_or_else(|e| panic!("error is not JSON ({e}): {s}"))
}

async fn status_of(url: &str, names: &[&str]) -> Vec<Value> {
    let (code, payload) = run_op(
        url,
        "status",
        json!({"cluster_names": names, "refresh": "NONE",
               "include_handle": false, "include_credentials": false}),
    )
    .await;
    assert_eq!(code, StatusCode::OK);
    assert_eq!(payload["name"], "sky.status");
    match return_value(&payload) {
        Value::Array(a) => a,
        other => panic!("status return_value is not a list: {other}"),
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
// Against the simulator.

async fn sim() -> Simulator {
    match Simulator::start().await {
        Ok(s) => s,
        Err(e) => panic!("simulator: {e}"),
    }
}

macro_rules! sim_case {
    ($($name:ident => $case:ident),* $(,)?) => {
        mod against_simulator {
            use super::*;
            $(
                #[tokio::test]
                async fn $name() {
                    let s = sim().await;
                    $case(&Target::sim(&s)).await;
                }
            )*
        }
    };
}

sim_case! {
    health => case_health,
    bearer_token_without_service_accounts => case_bearer_token_without_service_accounts,
    http_basics => case_http_basics,
    status_empty => case_status_empty,
    status_payload => case_status_payload,
    status_fleet => case_status_fleet,
    status_transitions => case_status_transitions,
    action_missing_cluster => case_action_missing_cluster,
    cost_report => case_cost_report,
    unknown_request_id => case_unknown_request_id,
    old_api_version => case_old_api_version,
    validation_error => case_validation_error,
    client_status => case_client_status,
    client_missing_cluster => case_client_missing_cluster,
    client_cost_report => case_client_cost_report,
}

// ---------------------------------------------------------------------------------------
// Against the real server.

#[cfg(feature = "real-server")]
macro_rules! real_case {
    ($($name:ident => $case:ident),* $(,)?) => {
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

#[cfg(feature = "real-server")]
real_case! {
    health => case_health,
    bearer_token_without_service_accounts => case_bearer_token_without_service_accounts,
    http_basics => case_http_basics,
    status_empty => case_status_empty,
    status_payload => case_status_payload,
    status_fleet => case_status_fleet,
    status_transitions => case_status_transitions,
    action_missing_cluster => case_action_missing_cluster,
    cost_report => case_cost_report,
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
    let s = sim().await;
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

// ---------------------------------------------------------------------------------------
// The simulator's own controls.

mod simulator_controls {
    use super::*;

    fn client_for(s: &Simulator, timeout_secs: u64, attempts: u32) -> Client {
        let cfg = SkypilotConfig {
            api_url: s.url(),
            token_file: None,
            request_timeout_secs: timeout_secs,
            connect_attempts: attempts,
        };
        match Client::new(&cfg) {
            Ok(c) => c,
            Err(e) => panic!("{e}"),
        }
    }

    #[tokio::test]
    async fn stop_changes_state_and_is_logged() {
        let s = sim().await;
        s.upsert_cluster(SimCluster::new("a").autostop(30, false));
        let (code, payload) = run_op(&s.url(), "stop", json!({"cluster_name": "a"})).await;
        assert_eq!(code, StatusCode::OK);
        assert_eq!(return_value(&payload), Value::Null);
        let c = s.cluster("a").unwrap_or_else(|| panic!("a vanished"));
        assert_eq!(c.status, SimStatus::Stopped);
        assert!(c.usage_intervals.iter().all(|(_, e)| e.is_some()));
        let log = s.requests_for(Op::Stop);
        assert_eq!(log.len(), 1);
        assert_eq!(log[0].body["cluster_name"], "a");
        assert_eq!(log[0].api_version_header.as_deref(), Some("62"));
    }

    #[tokio::test]
    async fn down_removes_and_keeps_cost_history() {
        let s = sim().await;
        s.upsert_cluster(SimCluster::new("gone").launched_at(s.now() - 7200));
        let client = client_for(&s, 10, 1);
        client
            .down("gone")
            .await
            .unwrap_or_else(|e| panic!("down: {e}"));
        assert!(s.cluster("gone").is_none());
        let rows = client
            .cost_report(1)
            .await
            .unwrap_or_else(|e| panic!("cost_report: {e}"));
        let row = rows
            .iter()
            .find(|r| r.name == "gone")
            .unwrap_or_else(|| panic!("no cost row: {rows:?}"));
        assert_eq!(row.status, None);
        let cost = row.total_cost.unwrap_or(-1.0);
        // Two hours of one m6i.large at 0.096/h.
        assert!((cost - 0.192).abs() < 0.01, "total_cost {cost}");
    }

    #[tokio::test]
    async fn autostop_sets_minutes_and_down_and_cancel_resets() {
        let s = sim().await;
        s.upsert_cluster(SimCluster::new("idle"));
        let client = client_for(&s, 10, 1);
        client
            .autostop("idle", 10, true)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let c = s.cluster("idle").unwrap_or_else(|| panic!("idle vanished"));
        assert_eq!((c.autostop, c.to_down), (10, true));
        client
            .autostop("idle", -1, false)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let c = s.cluster("idle").unwrap_or_else(|| panic!("idle vanished"));
        assert_eq!((c.autostop, c.to_down), (-1, false));
        let bodies: Vec<Value> = s
            .requests_for(Op::Autostop)
            .into_iter()
            .map(|r| r.body)
            .collect();
        assert_eq!(bodies.len(), 2);
        assert_eq!(bodies[0]["idle_minutes"], 10);
        assert_eq!(bodies[0]["down"], true);
        assert_eq!(bodies[1]["idle_minutes"], -1);
    }

    #[tokio::test]
    async fn autostop_on_stopped_cluster_is_cluster_not_up() {
        let s = sim().await;
        s.upsert_cluster(SimCluster::new("zz").status(SimStatus::Stopped));
        let err = match client_for(&s, 10, 1).autostop("zz", 5, false).await {
            Ok(()) => panic!("autostop on STOPPED succeeded"),
            Err(e) => e,
        };
        assert_eq!(err.sky_error_type(), Some("ClusterNotUpError"));
        assert!(err.to_string().contains("(status: STOPPED)"), "{err}");
    }

    #[tokio::test]
    async fn configured_failure_keeps_the_cluster() {
        let s = sim().await;
        s.upsert_cluster(SimCluster::new("locked"));
        s.upsert_cluster(SimCluster::new("free"));
        s.set_outcome_for(
            Op::Stop,
            "locked",
            Outcome::fail("CloudUserIdentityError", "Failed to get AWS user identity"),
        );
        let client = client_for(&s, 10, 1);
        let err = match client.stop("locked").await {
            Ok(()) => panic!("stop succeeded despite the configured failure"),
            Err(e) => e,
        };
        assert_eq!(err.sky_error_type(), Some("CloudUserIdentityError"));
        assert!(err.to_string().contains("Failed to get AWS user identity"));
        assert_eq!(s.cluster("locked").map(|c| c.status), Some(SimStatus::Up));
        client
            .stop("free")
            .await
            .unwrap_or_else(|e| panic!("stop free: {e}"));
        assert_eq!(
            s.cluster("free").map(|c| c.status),
            Some(SimStatus::Stopped)
        );
    }

    #[tokio::test]
    async fn start_brings_a_stopped_cluster_up() {
        let s = sim().await;
        s.upsert_cluster(SimCluster::new("sleepy").status(SimStatus::Stopped));
        client_for(&s, 10, 1)
            .start("sleepy")
            .await
            .unwrap_or_else(|e| panic!("start: {e}"));
        let c = s.cluster("sleepy").unwrap_or_else(|| panic!("vanished"));
        assert_eq!(c.status, SimStatus::Up);
        assert_eq!(c.usage_intervals.last().map(|i| i.1), Some(None));
    }

    #[tokio::test]
    async fn refused_connections_then_same_port_again() {
        let s = sim().await;
        s.upsert_cluster(SimCluster::new("one"));
        let client = client_for(&s, 5, 1);
        assert_eq!(
            client.status(RefreshMode::None).await.map(|c| c.len()).ok(),
            Some(1)
        );
        s.stop_listening().await;
        assert!(!s.is_listening());
        let err = match client.status(RefreshMode::None).await {
            Ok(c) => panic!("status answered while not listening: {c:?}"),
            Err(e) => e,
        };
        assert!(err.is_unreachable(), "{err}");
        let raw = tokio::net::TcpStream::connect(s.addr()).await;
        assert!(raw.is_err(), "connect should be refused");
        let port = s.addr().port();
        s.resume_listening()
            .await
            .unwrap_or_else(|e| panic!("resume: {e}"));
        assert_eq!(s.addr().port(), port);
        assert_eq!(
            client.status(RefreshMode::None).await.map(|c| c.len()).ok(),
            Some(1)
        );
    }

    #[tokio::test]
    async fn hang_times_out_and_clearing_recovers() {
        let s = sim().await;
        s.set_fault(Fault::Hang);
        let client = client_for(&s, 1, 1);
        let started = std::time::Instant::now();
        let err = match client.health().await {
            Ok(h) => panic!("hanging server answered: {h:?}"),
            Err(e) => e,
        };
        assert!(matches!(err.kind().as_str(), "timeout"), "{err}");
        assert!(started.elapsed() >= Duration::from_millis(900));
        s.clear_faults();
        client.health().await.unwrap_or_else(|e| panic!("{e}"));
    }

    #[tokio::test]
    async fn stop_listening_drops_hanging_requests() {
        let s = sim().await;
        s.set_fault(Fault::Hang);
        let url = s.url();
        let pending = tokio::spawn(async move {
            http()
                .get(format!("{url}/api/health"))
                .send()
                .await
                .map(|r| r.status())
        });
        tokio::time::sleep(Duration::from_millis(200)).await;
        s.stop_listening().await;
        let outcome = tokio::time::timeout(Duration::from_secs(5), pending).await;
        match outcome {
            Ok(Ok(res)) => assert!(res.is_err(), "hanging request got an answer: {res:?}"),
            other => panic!("hanging request was not dropped: {other:?}"),
        }
    }

    #[tokio::test]
    async fn html_500_is_an_http_error() {
        let s = sim().await;
        s.set_fault_on("/api/get", Fault::Http500Html);
        let resp = http()
            .get(format!("{}/api/get?request_id=x", s.url()))
            .send()
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(resp.status(), StatusCode::INTERNAL_SERVER_ERROR);
        assert!(resp
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("text/html")));
        let err = match client_for(&s, 5, 1).status(RefreshMode::None).await {
            Ok(c) => panic!("status succeeded through an HTML 500: {c:?}"),
            Err(e) => e,
        };
        assert_eq!(err.kind(), "http_500", "{err}");
        // Health is not affected by a fault scoped to /api/get.
        client_for(&s, 5, 1)
            .health()
            .await
            .unwrap_or_else(|e| panic!("{e}"));
    }

    #[tokio::test]
    async fn malformed_return_value_and_missing_field() {
        let s = sim().await;
        s.upsert_cluster(SimCluster::new("m"));
        let client = client_for(&s, 5, 1);
        s.set_fault_times(Fault::MalformedReturnValue, 1);
        let err = match client.status(RefreshMode::None).await {
            Ok(c) => panic!("malformed return_value accepted: {c:?}"),
            Err(e) => e,
        };
        assert_eq!(err.kind(), "malformed", "{err}");
        // Counted faults wear off.
        assert_eq!(
            client.status(RefreshMode::None).await.map(|c| c.len()).ok(),
            Some(1)
        );
        s.set_fault(Fault::MissingField("cluster_hash".into()));
        let records = status_of(&s.url(), &["m"]).await;
        assert!(records[0].get("cluster_hash").is_none());
        let err = match client.status(RefreshMode::None).await {
            Ok(c) => panic!("record without cluster_hash accepted: {c:?}"),
            Err(e) => e,
        };
        assert!(err.to_string().contains("cluster_hash"), "{err}");
    }

    #[tokio::test]
    async fn counted_http_faults_wear_off() {
        let s = sim().await;
        s.set_fault_on_times("/api/health", Fault::Http500Html, 2);
        let client = client_for(&s, 5, 1);
        for round in 0..2 {
            match client.health().await {
                Ok(h) => panic!("round {round}: answered through the fault: {h:?}"),
                Err(e) => assert_eq!(e.kind(), "http_500", "{e}"),
            }
        }
        client.health().await.unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(s.count("/api/health"), 3);
    }

    #[tokio::test]
    async fn malformed_body_is_rejected() {
        let s = sim().await;
        s.set_fault_on("/api/health", Fault::MalformedBody);
        let err = match client_for(&s, 5, 1).health().await {
            Ok(h) => panic!("cut-off body accepted: {h:?}"),
            Err(e) => e,
        };
        assert_eq!(err.kind(), "malformed", "{err}");
    }

    #[tokio::test]
    async fn delay_slows_answers() {
        let s = sim().await;
        s.set_delay(Duration::from_millis(300));
        let started = std::time::Instant::now();
        client_for(&s, 5, 1)
            .health()
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        assert!(started.elapsed() >= Duration::from_millis(300));
        s.set_delay(Duration::ZERO);
        assert_eq!(s.count("/api/health"), 1);
    }

    #[tokio::test]
    async fn ten_thousand_clusters() {
        let s = sim().await;
        s.generate_clusters("bulk", 10_000);
        assert_eq!(s.cluster_count(), 10_000);
        let clusters = client_for(&s, 30, 1)
            .status(RefreshMode::None)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(clusters.len(), 10_000);
        let stopped = clusters
            .iter()
            .filter(|c| c.status == ClusterStatus::Stopped)
            .count();
        let init = clusters
            .iter()
            .filter(|c| c.status == ClusterStatus::Init)
            .count();
        assert_eq!(stopped, 1_000);
        assert_eq!(
            init,
            (0..10_000).filter(|i| i % 10 != 0 && i % 25 == 1).count()
        );
        let mut hashes: Vec<&str> = clusters.iter().map(|c| c.cluster_hash.as_str()).collect();
        hashes.sort();
        hashes.dedup();
        assert_eq!(hashes.len(), 10_000, "hashes are unique");
    }

    #[tokio::test]
    async fn service_account_tokens() {
        let s = sim().await;
        s.upsert_cluster(SimCluster::new("t"));
        s.enable_service_accounts(&["sky_good"]);
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let client_with = |token: &str| {
            let path = dir.path().join(format!("{token}.token"));
            std::fs::write(&path, format!("{token}\n")).unwrap_or_else(|e| panic!("{e}"));
            let cfg = SkypilotConfig {
                api_url: s.url(),
                token_file: Some(path),
                request_timeout_secs: 5,
                connect_attempts: 1,
            };
            Client::new(&cfg).unwrap_or_else(|e| panic!("{e}"))
        };
        let health = client_with("sky_good")
            .health()
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(health.api_version_number(), Some(62));
        let clusters = client_with("sky_good")
            .status(RefreshMode::None)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(clusters.len(), 1);
        let log = s.requests_for(Op::Status);
        assert_eq!(log[0].authorization.as_deref(), Some("Bearer sky_good"));
        let err = match client_with("sky_bad").status(RefreshMode::None).await {
            Ok(c) => panic!("a wrong token was accepted: {c:?}"),
            Err(e) => e,
        };
        assert_eq!(err.kind(), "auth", "{err}");
        let resp = http()
            .get(format!("{}/api/health", s.url()))
            .header("Authorization", "Bearer sky_bad")
            .send()
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
        let v: Value = resp.json().await.unwrap_or(Value::Null);
        assert_eq!(v["detail"], "Invalid or expired service account token");
    }

    #[test]
    fn new_clusters_get_distinct_hashes() {
        let a = SimCluster::new("aa");
        let b = SimCluster::new("bb");
        assert_ne!(a.cluster_hash, b.cluster_hash);
        assert!(is_uuid_like(&a.cluster_hash), "{}", a.cluster_hash);
    }

    #[tokio::test]
    async fn empty_fleet() {
        let s = sim().await;
        let (code, payload) = run_op(&s.url(), "status", json!({"refresh": "NONE"})).await;
        assert_eq!(code, StatusCode::OK);
        assert_eq!(payload["return_value"], "[]");
        let (_, payload) = run_op(&s.url(), "cost_report", json!({"days": 30})).await;
        assert_eq!(payload["return_value"], "[]");
    }

    #[tokio::test]
    async fn api_get_resolves_a_unique_prefix() {
        let s = sim().await;
        let id = post_op(&s.url(), "status", json!({})).await;
        let (code, v) = api_get(&s.url(), &id[..13]).await;
        assert_eq!(code, StatusCode::OK);
        assert_eq!(v["request_id"], json!(id));
    }
}
