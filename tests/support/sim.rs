//! A SkyPilot simulator: an in-process test double of SkyPilot 0.14.1's REST API.
//!
//! It speaks the same protocol as the real API server (`POST /<op>` answers `null` with an
//! `x-skypilot-request-id` header, `GET /api/get?request_id=` returns the request payload
//! whose `return_value`/`error` are JSON documents encoded as strings), with the same
//! record fields, error types and messages, and the same version check. Tests control the
//! fleet, how actions behave, and switch faults on and off while it runs. Every detail
//! mimicked here was observed on a real 0.14.1 server; `docs/simulator.md` lists them and
//! the contract tests (`tests/it/contract.rs`) pin them against both.
//!
//! The server runs on the caller's tokio runtime: use it from async tests, and never
//! block that runtime's only thread while a request to the simulator is in flight.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::body::Bytes;
use axum::extract::{Query, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use serde::Serialize;
use serde_json::{json, Map, Value};
use tokio::net::TcpListener;
use tokio::task::{JoinHandle, JoinSet};

/// `api_version` of SkyPilot 0.14.1.
pub const API_VERSION: i64 = 62;
/// Clients below this API version get HTTP 400 (when they send both version headers).
pub const MIN_COMPATIBLE_API_VERSION: i64 = 24;
/// The SkyPilot release simulated.
pub const VERSION: &str = "0.14.1";
/// The commit SkyPilot 0.14.1 reports in `/api/health`.
pub const COMMIT: &str = "7e595970a806dcc9eefadf459f399edf1733e962";
/// `X-SkyPilot-Version` of the oldest compatible client, quoted in the 400 message.
pub const MIN_COMPATIBLE_VERSION: &str = "0.11.0";

/// Requests whose payload is kept for `/api/get` (oldest dropped first), so that a
/// benchmark polling 10,000 clusters for hours does not grow without bound.
const KEPT_REQUESTS: usize = 256;
/// ... and at most this many bytes of answers (a 10,000-cluster status answer is ~8 MB).
const KEPT_BYTES: usize = 128 << 20;
/// Hourly price used when a cluster does not set one (m6i.large in us-west-2).
pub const DEFAULT_HOURLY_PRICE: f64 = 0.096;

// SkyPilot base64-encodes pickled Python objects in a few fields. Their content is of no
// use outside Python; these are fixed stand-ins of the same JSON type.
/// `pickle.dumps(None)` in base64: what the real server sends as `handle` and
/// `storage_mounts_metadata` in status records.
const PICKLED_NONE: &str = "gAROLg==";
/// Stand-in for the pickled entry point, request body, error object and resources.
const PICKLED_STANDIN: &str = "gASVDQAAAAAAAACMCXNpbXVsYXRvcpQu";

const ANSI_YELLOW: &str = "\u{1b}[33m";
const ANSI_BRIGHT: &str = "\u{1b}[1m";
const ANSI_RESET: &str = "\u{1b}[0m";

// ---------------------------------------------------------------------------------------
// The fleet.

/// Cluster status as SkyPilot's database holds it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SimStatus {
    Init,
    Up,
    Stopped,
}

impl SimStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            SimStatus::Init => "INIT",
            SimStatus::Up => "UP",
            SimStatus::Stopped => "STOPPED",
        }
    }
}

/// One cluster of the simulated fleet. Build with [`SimCluster::new`] and the setters.
#[derive(Debug, Clone, PartialEq)]
pub struct SimCluster {
    pub name: String,
    pub status: SimStatus,
    /// As SkyPilot writes it: `AWS`, `GCP`, `Azure`, `Kubernetes`, …
    pub cloud: String,
    pub region: String,
    pub instance_type: String,
    pub nodes: i64,
    /// Strings, as SkyPilot sends them: `"2.0"`.
    pub cpus: String,
    pub memory: String,
    /// e.g. `A100:1`; `None` for CPU instances.
    pub accelerators: Option<String>,
    /// Idle minutes before autostop; -1 = off.
    pub autostop: i64,
    pub to_down: bool,
    pub workspace: String,
    pub user_name: String,
    pub user_hash: String,
    /// Unix seconds.
    pub launched_at: i64,
    pub status_updated_at: i64,
    pub cluster_ever_up: bool,
    pub cluster_hash: String,
    /// Price of one node per hour, for `cost_report`.
    pub hourly_price: f64,
    /// (start, end) Unix seconds; the last one is open while the cluster runs.
    pub usage_intervals: Vec<(i64, Option<i64>)>,
    pub last_use: String,
}

impl SimCluster {
    /// An UP `m6i.large` on AWS us-west-2 launched now by user `alice`, autostop off.
    pub fn new(name: &str) -> SimCluster {
        let now = unix_now();
        SimCluster {
            name: name.to_string(),
            status: SimStatus::Up,
            cloud: "AWS".into(),
            region: "us-west-2".into(),
            instance_type: "m6i.large".into(),
            nodes: 1,
            cpus: "2.0".into(),
            memory: "8.0".into(),
            accelerators: None,
            autostop: -1,
            to_down: false,
            workspace: "default".into(),
            user_name: "alice".into(),
            user_hash: "a1b2c3d4".into(),
            launched_at: now,
            status_updated_at: now,
            cluster_ever_up: true,
            cluster_hash: new_request_id(),
            hourly_price: DEFAULT_HOURLY_PRICE,
            usage_intervals: vec![(now, None)],
            last_use: format!("sky launch -c {name}"),
        }
    }

    /// A STOPPED cluster is taken to have run until now; an INIT one was never UP.
    pub fn status(mut self, s: SimStatus) -> Self {
        self.status = s;
        self.cluster_ever_up = s != SimStatus::Init;
        if s == SimStatus::Stopped {
            let now = unix_now();
            self.close_usage(now);
        }
        self
    }
    pub fn cloud(mut self, c: &str) -> Self {
        self.cloud = c.into();
        self
    }
    pub fn region(mut self, r: &str) -> Self {
        self.region = r.into();
        self
    }
    pub fn instance_type(mut self, t: &str) -> Self {
        self.instance_type = t.into();
        self
    }
    pub fn nodes(mut self, n: i64) -> Self {
        self.nodes = n;
        self
    }
    pub fn resources(mut self, cpus: &str, memory: &str, accelerators: Option<&str>) -> Self {
        self.cpus = cpus.into();
        self.memory = memory.into();
        self.accelerators = accelerators.map(str::to_string);
        self
    }
    /// `minutes` = -1 turns autostop off.
    pub fn autostop(mut self, minutes: i64, down: bool) -> Self {
        self.autostop = minutes;
        self.to_down = down;
        self
    }
    pub fn workspace(mut self, w: &str) -> Self {
        self.workspace = w.into();
        self
    }
    pub fn user(mut self, name: &str, hash: &str) -> Self {
        self.user_name = name.into();
        self.user_hash = hash.into();
        self
    }
    /// Also restarts the usage history at that time.
    pub fn launched_at(mut self, unix_secs: i64) -> Self {
        self.launched_at = unix_secs;
        self.status_updated_at = unix_secs;
        self.usage_intervals = vec![(unix_secs, None)];
        self
    }
    pub fn hourly_price(mut self, p: f64) -> Self {
        self.hourly_price = p;
        self
    }
    pub fn cluster_hash(mut self, h: &str) -> Self {
        self.cluster_hash = h.into();
        self
    }

    /// `1x(cpus=2, mem=8, m6i.large, ...)`, as SkyPilot abbreviates it.
    pub fn resources_str(&self) -> String {
        let acc = match &self.accelerators {
            Some(a) => format!("gpus={a}, "),
            None => String::new(),
        };
        format!(
            "{}x({acc}cpus={}, mem={}, {}, ...)",
            self.nodes,
            short_number(&self.cpus),
            short_number(&self.memory),
            self.instance_type
        )
    }

    /// `1x(cpus=2, mem=8, m6i.large, disk=256)`.
    pub fn resources_str_full(&self) -> String {
        let acc = match &self.accelerators {
            Some(a) => format!("gpus={a}, "),
            None => String::new(),
        };
        format!(
            "{}x({acc}cpus={}, mem={}, {}, disk=256)",
            self.nodes,
            short_number(&self.cpus),
            short_number(&self.memory),
            self.instance_type
        )
    }

    fn close_usage(&mut self, now: i64) {
        if let Some(last) = self.usage_intervals.last_mut() {
            if last.1.is_none() {
                last.1 = Some(now);
            }
        }
    }

    fn open_usage(&mut self, now: i64) {
        if self.usage_intervals.last().is_none_or(|l| l.1.is_some()) {
            self.usage_intervals.push((now, None));
        }
    }

    fn duration(&self, now: i64) -> i64 {
        self.usage_intervals
            .iter()
            .map(|(s, e)| e.unwrap_or(now).saturating_sub(*s).max(0))
            .sum()
    }
}

/// `"2.0"` → `2`, `"0.5"` → `0.5`, as SkyPilot prints resources.
fn short_number(s: &str) -> String {
    match s.parse::<f64>() {
        Ok(v) if v.fract() == 0.0 && v.abs() < 1e15 => format!("{}", v as i64),
        Ok(v) => format!("{v}"),
        Err(_) => s.to_string(),
    }
}

// ---------------------------------------------------------------------------------------
// Operations, outcomes, faults, the request log.

/// The operations the simulator serves with SkyPilot's request model.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Op {
    Status,
    CostReport,
    Autostop,
    Stop,
    Down,
    Start,
    Queue,
}

impl Op {
    pub const ALL: [Op; 7] = [
        Op::Status,
        Op::CostReport,
        Op::Autostop,
        Op::Stop,
        Op::Down,
        Op::Start,
        Op::Queue,
    ];

    /// The path it is posted to, e.g. `/cost_report`.
    pub fn path(self) -> &'static str {
        match self {
            Op::Status => "/status",
            Op::CostReport => "/cost_report",
            Op::Autostop => "/autostop",
            Op::Stop => "/stop",
            Op::Down => "/down",
            Op::Start => "/start",
            Op::Queue => "/queue",
        }
    }

    /// The request name in its payload, e.g. `sky.cost_report`.
    pub fn request_name(self) -> &'static str {
        match self {
            Op::Status => "sky.status",
            Op::CostReport => "sky.cost_report",
            Op::Autostop => "sky.autostop",
            Op::Stop => "sky.stop",
            Op::Down => "sky.down",
            Op::Start => "sky.start",
            Op::Queue => "sky.queue",
        }
    }

    fn from_path(p: &str) -> Option<Op> {
        Op::ALL.into_iter().find(|op| op.path() == p)
    }
}

/// How an action (autostop, stop, down, start, queue) ends on a cluster that exists.
/// Actions on a missing cluster always fail with `ClusterDoesNotExist`, and autostop and
/// queue on a cluster that is not UP with `ClusterNotUpError`, as SkyPilot does.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// Succeeds and changes the cluster as SkyPilot would (the default).
    Succeed,
    /// Fails with this SkyPilot error type (e.g. `CloudUserIdentityError`) and message;
    /// the cluster is left unchanged.
    Fail { error_type: String, message: String },
}

impl Outcome {
    pub fn fail(error_type: &str, message: &str) -> Outcome {
        Outcome::Fail {
            error_type: error_type.into(),
            message: message.into(),
        }
    }
}

/// Faults that tests switch on and off at run time (see also
/// [`Simulator::stop_listening`] for refused connections).
#[derive(Debug, Clone, PartialEq)]
pub enum Fault {
    /// Accept the request and never answer (until the fault is cleared for new requests,
    /// or [`Simulator::stop_listening`] drops the connection).
    Hang,
    /// Wait this long before handling the request.
    Delay(Duration),
    /// HTTP 500 with an HTML body, as a broken reverse proxy or crashed app would send.
    Http500Html,
    /// HTTP 200 `application/json` whose body is cut off mid-document.
    MalformedBody,
    /// The op succeeds but its `return_value` is not valid JSON (status, cost_report,
    /// queue: the ops that return data).
    MalformedReturnValue,
    /// Every status / cost_report record lacks this field (e.g. `cluster_hash`).
    MissingField(String),
}

impl Fault {
    fn is_payload_fault(&self) -> bool {
        matches!(self, Fault::MalformedReturnValue | Fault::MissingField(_))
    }
}

#[derive(Debug, Clone)]
struct FaultRule {
    fault: Fault,
    /// Only requests to this path (`/status`, `/api/get`, `/api/health`, …); all if None.
    /// Payload faults match the op's path (`/status`), applied when the op runs.
    path: Option<String>,
    /// How many more requests it applies to; forever if None.
    remaining: Option<u32>,
}

/// One request the simulator received.
#[derive(Debug, Clone, PartialEq)]
pub struct LoggedRequest {
    pub method: String,
    pub path: String,
    /// The op, for `POST /<op>`.
    pub op: Option<Op>,
    /// The request id it was given, for `POST /<op>`.
    pub request_id: Option<String>,
    /// The JSON body (`Value::Null` when there was none or it was not JSON).
    pub body: Value,
    /// `X-SkyPilot-API-Version`, if sent.
    pub api_version_header: Option<String>,
    /// `Authorization`, if sent.
    pub authorization: Option<String>,
}

#[derive(Debug, Clone)]
struct StoredRequest {
    request_id: String,
    op: Op,
    cluster_name: Option<String>,
    failed: bool,
    return_value: String,
    error: String,
    created_at: f64,
    finished_at: f64,
}

/// What `/api/get` answers for a finished request, serialized once when it finishes.
#[derive(Debug, Clone)]
struct FinishedRequest {
    request_id: String,
    failed: bool,
    answer: Bytes,
}

#[derive(Debug)]
struct SimState {
    clusters: BTreeMap<String, SimCluster>,
    /// Removed clusters, still listed by `cost_report` (with status null).
    history: Vec<SimCluster>,
    outcomes: HashMap<(Op, Option<String>), Outcome>,
    faults: Vec<FaultRule>,
    requests: VecDeque<FinishedRequest>,
    requests_bytes: usize,
    log: Vec<LoggedRequest>,
    /// Fixed clock (Unix seconds) for deterministic tests; system time when None.
    now: Option<i64>,
    queue_jobs: HashMap<String, Value>,
    health_overrides: Map<String, Value>,
    /// Accepted service-account tokens; None = service accounts disabled (the default).
    service_account_tokens: Option<Vec<String>>,
}

impl SimState {
    fn now(&self) -> i64 {
        self.now.unwrap_or_else(unix_now)
    }

    fn now_f64(&self) -> f64 {
        match self.now {
            Some(n) => n as f64,
            None => SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map(|d| d.as_secs_f64())
                .unwrap_or(0.0),
        }
    }

    fn outcome(&self, op: Op, cluster: &str) -> Outcome {
        self.outcomes
            .get(&(op, Some(cluster.to_string())))
            .or_else(|| self.outcomes.get(&(op, None)))
            .cloned()
            .unwrap_or(Outcome::Succeed)
    }

    /// Take the payload faults that apply to `op` now (decrementing counted ones).
    fn take_payload_faults(&mut self, op: Op) -> Vec<Fault> {
        let mut out = Vec::new();
        for rule in self.faults.iter_mut() {
            if !rule.fault.is_payload_fault() {
                continue;
            }
            let applies_to_op = match &rule.fault {
                Fault::MalformedReturnValue => {
                    matches!(op, Op::Status | Op::CostReport | Op::Queue)
                }
                Fault::MissingField(_) => matches!(op, Op::Status | Op::CostReport),
                _ => false,
            };
            let path_ok = rule.path.as_deref().is_none_or(|p| p == op.path());
            if applies_to_op && path_ok && rule.remaining != Some(0) {
                if let Some(n) = rule.remaining.as_mut() {
                    *n -= 1;
                }
                out.push(rule.fault.clone());
            }
        }
        self.faults.retain(|r| r.remaining != Some(0));
        out
    }

    /// Take the HTTP-level faults that apply to a request to `path`.
    fn take_http_faults(&mut self, path: &str) -> Vec<Fault> {
        let mut out = Vec::new();
        for rule in self.faults.iter_mut() {
            if rule.fault.is_payload_fault() {
                continue;
            }
            let path_ok = rule.path.as_deref().is_none_or(|p| p == path);
            if path_ok && rule.remaining != Some(0) {
                if let Some(n) = rule.remaining.as_mut() {
                    *n -= 1;
                }
                out.push(rule.fault.clone());
            }
        }
        self.faults.retain(|r| r.remaining != Some(0));
        out
    }
}

struct Shared {
    state: Mutex<SimState>,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, SimState> {
        // A test that panicked while holding the lock must not hide its own failure
        // behind a poisoned-lock panic in the server.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

// ---------------------------------------------------------------------------------------
// The simulator handle.

/// A running simulator. Dropping it stops the server.
pub struct Simulator {
    shared: Arc<Shared>,
    addr: SocketAddr,
    server: Mutex<Option<JoinHandle<()>>>,
}

impl Simulator {
    /// Bind `127.0.0.1:0` and serve on the current tokio runtime. The port stays the same
    /// for the simulator's life, across [`stop_listening`](Self::stop_listening) /
    /// [`resume_listening`](Self::resume_listening).
    pub async fn start() -> std::io::Result<Simulator> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared {
            state: Mutex::new(SimState {
                clusters: BTreeMap::new(),
                history: Vec::new(),
                outcomes: HashMap::new(),
                faults: Vec::new(),
                requests: VecDeque::new(),
                requests_bytes: 0,
                log: Vec::new(),
                now: None,
                queue_jobs: HashMap::new(),
                health_overrides: Map::new(),
                service_account_tokens: None,
            }),
        });
        let handle = tokio::spawn(serve(listener, router(shared.clone())));
        Ok(Simulator {
            shared,
            addr,
            server: Mutex::new(Some(handle)),
        })
    }

    /// `http://127.0.0.1:PORT` (no trailing slash), the value for `skypilot.api_url`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    // --- the fleet -----------------------------------------------------------------

    /// Add a cluster, or replace the one of that name.
    pub fn upsert_cluster(&self, c: SimCluster) {
        let mut st = self.shared.lock();
        st.clusters.insert(c.name.clone(), c);
    }

    /// Same as [`upsert_cluster`](Self::upsert_cluster).
    pub fn add_cluster(&self, c: SimCluster) {
        self.upsert_cluster(c);
    }

    /// Change a cluster in place; false if there is none of that name.
    pub fn update_cluster(&self, name: &str, f: impl FnOnce(&mut SimCluster)) -> bool {
        let mut st = self.shared.lock();
        match st.clusters.get_mut(name) {
            Some(c) => {
                f(c);
                true
            }
            None => false,
        }
    }

    /// Set a cluster's status as SkyPilot records a transition (status_updated_at, usage
    /// intervals, cluster_ever_up); false if there is none of that name.
    pub fn set_status(&self, name: &str, status: SimStatus) -> bool {
        let mut st = self.shared.lock();
        let now = st.now();
        match st.clusters.get_mut(name) {
            Some(c) => {
                apply_status(c, status, now);
                true
            }
            None => false,
        }
    }

    /// Set autostop minutes (-1 = off) and to_down; false if there is no such cluster.
    pub fn set_autostop(&self, name: &str, minutes: i64, down: bool) -> bool {
        self.update_cluster(name, |c| {
            c.autostop = minutes;
            c.to_down = down;
        })
    }

    /// Remove a cluster as if it had been torn down (it stays in `cost_report`).
    pub fn remove_cluster(&self, name: &str) -> bool {
        let mut st = self.shared.lock();
        let now = st.now();
        match st.clusters.remove(name) {
            Some(mut c) => {
                c.close_usage(now);
                st.history.push(c);
                true
            }
            None => false,
        }
    }

    pub fn cluster(&self, name: &str) -> Option<SimCluster> {
        self.shared.lock().clusters.get(name).cloned()
    }

    /// Names of the current clusters, sorted.
    pub fn cluster_names(&self) -> Vec<String> {
        self.shared.lock().clusters.keys().cloned().collect()
    }

    pub fn cluster_count(&self) -> usize {
        self.shared.lock().clusters.len()
    }

    /// Remove every cluster and the cost history.
    pub fn clear_clusters(&self) {
        let mut st = self.shared.lock();
        st.clusters.clear();
        st.history.clear();
    }

    /// Add `n` clusters named `{prefix}-00000`, … with a deterministic mix: every 10th
    /// STOPPED, every 25th (offset 1) INIT, the rest UP; autostop 30 min on even ones
    /// (to_down on every 4th), off on odd ones; four regions, two clouds, three users,
    /// launched one minute apart ending now. 10,000 take well under a second.
    pub fn generate_clusters(&self, prefix: &str, n: usize) {
        let now = self.now();
        self.generate_clusters_with(n, |i| {
            let name = format!("{prefix}-{i:05}");
            let status = if i % 10 == 0 {
                SimStatus::Stopped
            } else if i % 25 == 1 {
                SimStatus::Init
            } else {
                SimStatus::Up
            };
            let (cloud, region) = match i % 4 {
                0 => ("AWS", "us-west-2"),
                1 => ("AWS", "us-east-1"),
                2 => ("GCP", "us-central1"),
                _ => ("GCP", "europe-west4"),
            };
            let users = [
                ("alice", "a1b2c3d4"),
                ("bob", "b2c3d4e5"),
                ("carol", "c3d4e5f6"),
            ];
            let (user, hash) = users[i % 3];
            let (minutes, down) = if i % 2 == 0 {
                (30, i % 4 == 0)
            } else {
                (-1, false)
            };
            let mut c = SimCluster::new(&name)
                .cloud(cloud)
                .region(region)
                .user(user, hash)
                .autostop(minutes, down)
                .launched_at(now - (n - i) as i64 * 60)
                .cluster_hash(&uuid_like(0x5eed_0000 + i as u64))
                .status(status);
            if status == SimStatus::Stopped {
                c.close_usage(now - 30);
            }
            c
        });
    }

    /// Add `n` clusters made by `make(i)`.
    pub fn generate_clusters_with(&self, n: usize, mut make: impl FnMut(usize) -> SimCluster) {
        let made: Vec<SimCluster> = (0..n).map(&mut make).collect();
        let mut st = self.shared.lock();
        for c in made {
            st.clusters.insert(c.name.clone(), c);
        }
    }

    /// Fix the simulator's clock (Unix seconds), or go back to system time with None.
    pub fn set_now(&self, now: Option<i64>) {
        self.shared.lock().now = now;
    }

    pub fn now(&self) -> i64 {
        self.shared.lock().now()
    }

    /// The job list `queue` returns for a cluster (default: `[]`).
    pub fn set_queue(&self, cluster: &str, jobs: Value) {
        self.shared
            .lock()
            .queue_jobs
            .insert(cluster.to_string(), jobs);
    }

    /// Override fields of `/api/health` (e.g. `basic_auth_enabled`, `api_version`).
    pub fn set_health_field(&self, key: &str, value: Value) {
        self.shared
            .lock()
            .health_overrides
            .insert(key.to_string(), value);
    }

    /// Turn service-account tokens on (as `SKYPILOT_ENABLE_SERVICE_ACCOUNTS=true` does)
    /// and accept these `sky_…` tokens as `Authorization: Bearer`.
    pub fn enable_service_accounts(&self, tokens: &[&str]) {
        self.shared.lock().service_account_tokens =
            Some(tokens.iter().map(|t| t.to_string()).collect());
    }

    /// Back to the default: a `Bearer sky_…` header gets HTTP 401.
    pub fn disable_service_accounts(&self) {
        self.shared.lock().service_account_tokens = None;
    }

    // --- how actions behave ---------------------------------------------------------

    /// How `op` ends on every existing cluster without a per-cluster setting.
    pub fn set_outcome(&self, op: Op, outcome: Outcome) {
        self.shared.lock().outcomes.insert((op, None), outcome);
    }

    /// How `op` ends on one cluster.
    pub fn set_outcome_for(&self, op: Op, cluster: &str, outcome: Outcome) {
        self.shared
            .lock()
            .outcomes
            .insert((op, Some(cluster.to_string())), outcome);
    }

    /// Every action succeeds again.
    pub fn reset_outcomes(&self) {
        self.shared.lock().outcomes.clear();
    }

    // --- faults -----------------------------------------------------------------------

    /// Switch a fault on for every request until cleared.
    pub fn set_fault(&self, fault: Fault) {
        self.add_fault_rule(fault, None, None);
    }

    /// Switch a fault on for requests to one path (`/status`, `/api/get`, `/api/health`).
    pub fn set_fault_on(&self, path: &str, fault: Fault) {
        self.add_fault_rule(fault, Some(path.to_string()), None);
    }

    /// Switch a fault on for the next `times` requests it applies to.
    pub fn set_fault_times(&self, fault: Fault, times: u32) {
        self.add_fault_rule(fault, None, Some(times));
    }

    /// Switch a fault on for the next `times` requests to `path`.
    pub fn set_fault_on_times(&self, path: &str, fault: Fault, times: u32) {
        self.add_fault_rule(fault, Some(path.to_string()), Some(times));
    }

    fn add_fault_rule(&self, fault: Fault, path: Option<String>, remaining: Option<u32>) {
        self.shared.lock().faults.push(FaultRule {
            fault,
            path,
            remaining,
        });
    }

    /// Switch every fault off (requests already hanging stay so; see `stop_listening`).
    pub fn clear_faults(&self) {
        self.shared.lock().faults.clear();
    }

    /// Slow answers: shorthand for `set_fault(Fault::Delay(d))`; `Duration::ZERO` removes
    /// every delay.
    pub fn set_delay(&self, d: Duration) {
        let mut st = self.shared.lock();
        st.faults.retain(|r| !matches!(r.fault, Fault::Delay(_)));
        if !d.is_zero() {
            st.faults.push(FaultRule {
                fault: Fault::Delay(d),
                path: None,
                remaining: None,
            });
        }
    }

    /// Refuse connections, as a stopped API server does: close the listening socket and
    /// every open connection (requests in flight, hanging ones included, see the
    /// connection close). The port stays reserved for [`resume_listening`].
    ///
    /// [`resume_listening`]: Self::resume_listening
    pub async fn stop_listening(&self) {
        let handle = self.server.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(h) = handle {
            h.abort();
            // Completes once the task, its listener and its connections are dropped.
            let _ = h.await;
        }
    }

    /// Listen again on the same port. Retries for up to 5 s if the port is still busy.
    pub async fn resume_listening(&self) -> std::io::Result<()> {
        if self
            .server
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .is_some()
        {
            return Ok(());
        }
        let mut last_err = None;
        for _ in 0..100 {
            match TcpListener::bind(self.addr).await {
                Ok(listener) => {
                    let handle = tokio::spawn(serve(listener, router(self.shared.clone())));
                    *self.server.lock().unwrap_or_else(|e| e.into_inner()) = Some(handle);
                    return Ok(());
                }
                Err(e) => {
                    last_err = Some(e);
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        }
        Err(last_err.unwrap_or_else(|| std::io::Error::other("cannot re-bind")))
    }

    pub fn is_listening(&self) -> bool {
        self.server
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .is_some()
    }

    // --- the request log ------------------------------------------------------------

    /// Every request received, oldest first.
    pub fn requests(&self) -> Vec<LoggedRequest> {
        self.shared.lock().log.clone()
    }

    /// The `POST /<op>` requests for one op, oldest first.
    pub fn requests_for(&self, op: Op) -> Vec<LoggedRequest> {
        self.shared
            .lock()
            .log
            .iter()
            .filter(|r| r.op == Some(op))
            .cloned()
            .collect()
    }

    /// How many requests went to `path` (any method).
    pub fn count(&self, path: &str) -> usize {
        self.shared
            .lock()
            .log
            .iter()
            .filter(|r| r.path == path)
            .count()
    }

    pub fn clear_requests(&self) {
        self.shared.lock().log.clear();
    }
}

impl Drop for Simulator {
    fn drop(&mut self) {
        if let Some(h) = self.server.lock().unwrap_or_else(|e| e.into_inner()).take() {
            h.abort();
        }
    }
}

fn apply_status(c: &mut SimCluster, status: SimStatus, now: i64) {
    if c.status == status {
        return;
    }
    match status {
        SimStatus::Up => {
            c.cluster_ever_up = true;
            c.open_usage(now);
        }
        SimStatus::Stopped => c.close_usage(now),
        SimStatus::Init => c.open_usage(now),
    }
    c.status = status;
    c.status_updated_at = now;
}

// ---------------------------------------------------------------------------------------
// Serving.

/// Accept connections until aborted. Connections live in a JoinSet owned by this task,
/// so aborting it closes them all, like a killed server.
async fn serve(listener: TcpListener, app: Router) {
    let mut conns = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let Ok((stream, _)) = accepted else {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                };
                let svc = hyper_util::service::TowerToHyperService::new(app.clone());
                conns.spawn(async move {
                    let io = hyper_util::rt::TokioIo::new(stream);
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(io, svc)
                        .await;
                });
            }
            Some(_) = conns.join_next(), if !conns.is_empty() => {}
        }
    }
}

fn router(shared: Arc<Shared>) -> Router {
    let mut r = Router::new()
        .route("/api/health", get(health))
        .route("/api/get", get(api_get));
    for op in Op::ALL {
        r = r.route(
            op.path(),
            post(
                move |st: State<Arc<Shared>>, headers: HeaderMap, body: Bytes| {
                    run_op(st, op, headers, body)
                },
            ),
        );
    }
    r.fallback(not_found)
        .layer(axum::middleware::from_fn_with_state(shared.clone(), front))
        .with_state(shared)
}

fn json_response(status: StatusCode, body: &impl Serialize) -> Response {
    let bytes = serde_json::to_vec(body).unwrap_or_else(|_| b"null".to_vec());
    (
        status,
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )],
        bytes,
    )
        .into_response()
}

fn header_str(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
}

/// What every request passes first: the request log, faults, the version check, and the
/// headers the real server adds to every answer.
async fn front(State(shared): State<Arc<Shared>>, req: Request, next: Next) -> Response {
    let path = req.uri().path().to_string();
    let is_op_post = req.method() == Method::POST && Op::from_path(&path).is_some();
    let (faults, service_accounts) = {
        let mut st = shared.lock();
        if !is_op_post {
            // Ops are logged by their handler, with their body and request id.
            st.log.push(LoggedRequest {
                method: req.method().to_string(),
                path: path.clone(),
                op: None,
                request_id: None,
                body: Value::Null,
                api_version_header: header_str(req.headers(), "x-skypilot-api-version"),
                authorization: header_str(req.headers(), "authorization"),
            });
        }
        (
            st.take_http_faults(&path),
            st.service_account_tokens.clone(),
        )
    };
    for fault in &faults {
        if let Fault::Delay(d) = fault {
            tokio::time::sleep(*d).await;
        }
    }
    for fault in &faults {
        match fault {
            Fault::Hang => std::future::pending::<()>().await,
            Fault::Http500Html => {
                return (
                    StatusCode::INTERNAL_SERVER_ERROR,
                    [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
                    "<html>\r\n<head><title>500 Internal Server Error</title></head>\r\n\
                     <body>\r\n<center><h1>500 Internal Server Error</h1></center>\r\n\
                     </body>\r\n</html>\r\n",
                )
                    .into_response();
            }
            Fault::MalformedBody => {
                return (
                    StatusCode::OK,
                    [(header::CONTENT_TYPE, "application/json")],
                    "{\"request_id\":\"3f1c0a52-",
                )
                    .into_response();
            }
            _ => {}
        }
    }

    if let Some(detail) = bearer_rejection(req.headers(), service_accounts.as_deref()) {
        let mut resp = json_response(StatusCode::UNAUTHORIZED, &json!({"detail": detail}));
        resp.headers_mut()
            .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        add_request_id(resp.headers_mut());
        return resp;
    }

    // The version check of SkyPilot's APIVersionMiddleware: only when the client sends
    // both headers; a non-integer API version is an unhandled ValueError (HTTP 500,
    // plain-text traceback, no request id).
    let api = header_str(req.headers(), "x-skypilot-api-version");
    let client_version = header_str(req.headers(), "x-skypilot-version");
    let mut versioned = false;
    if let (Some(api), Some(client_version)) = (api, client_version) {
        match api.trim().parse::<i64>() {
            Err(_) => {
                return (
                    StatusCode::INTERNAL_SERVER_ERROR,
                    [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
                    format!(
                        "Traceback (most recent call last):\n  ...\nValueError: Header \
                         X-SkyPilot-API-Version: {api} is not a valid API version.\n"
                    ),
                )
                    .into_response();
            }
            Ok(n) if n < MIN_COMPATIBLE_API_VERSION => {
                let message = format!(
                    "{ANSI_YELLOW}Your SkyPilot client version is too old:{client_version}\n\
                     {ANSI_RESET}The server is running on {VERSION} and the minimum \
                     compatible version is {MIN_COMPATIBLE_VERSION}.\nUpgrade your client \
                     with:\n{ANSI_YELLOW}pip install -U \"skypilot=={VERSION}\"{ANSI_RESET}"
                );
                let mut resp = json_response(
                    StatusCode::BAD_REQUEST,
                    &json!({"error": "version_mismatch", "message": message}),
                );
                add_version_headers(resp.headers_mut());
                add_request_id(resp.headers_mut());
                return resp;
            }
            Ok(_) => versioned = true,
        }
    }
    let mut resp = next.run(req).await;
    if resp.status() == StatusCode::METHOD_NOT_ALLOWED {
        // FastAPI's 405 has a JSON body (axum's is empty); keep the Allow header.
        let allow = resp.headers().get(header::ALLOW).cloned();
        resp = json_response(
            StatusCode::METHOD_NOT_ALLOWED,
            &json!({"detail": "Method Not Allowed"}),
        );
        if let Some(a) = allow {
            resp.headers_mut().insert(header::ALLOW, a);
        }
    }
    if versioned {
        add_version_headers(resp.headers_mut());
    }
    add_request_id(resp.headers_mut());
    resp
}

/// SkyPilot's BearerTokenMiddleware (it runs before the version check): only requests
/// that carry `X-Skypilot-Auth-Mode: token` or a `Bearer sky_…` token are checked.
fn bearer_rejection(headers: &HeaderMap, tokens: Option<&[String]>) -> Option<&'static str> {
    let token_mode = header_str(headers, "x-skypilot-auth-mode").as_deref() == Some("token");
    let auth = header_str(headers, "authorization");
    let sky_bearer = auth.as_deref().is_some_and(|a| {
        a.to_ascii_lowercase().starts_with("bearer ")
            && a.split_once(' ')
                .is_some_and(|(_, t)| t.starts_with("sky_"))
    });
    if !token_mode && !sky_bearer {
        return None;
    }
    let Some(auth) = auth else {
        return Some("Authentication required");
    };
    let (scheme, token) = auth.split_once(' ').unwrap_or((auth.as_str(), ""));
    if !scheme.eq_ignore_ascii_case("bearer") {
        return Some("Invalid authentication method");
    }
    match tokens {
        None => Some("Service account authentication disabled"),
        Some(ok) if ok.iter().any(|t| t == token) => None,
        Some(_) => Some("Invalid or expired service account token"),
    }
}

fn add_version_headers(h: &mut HeaderMap) {
    h.insert("x-skypilot-api-version", HeaderValue::from(API_VERSION));
    h.insert("x-skypilot-version", HeaderValue::from_static(VERSION));
}

/// The real server puts a fresh request id on every answer, even `/api/health`.
fn add_request_id(h: &mut HeaderMap) {
    if !h.contains_key("x-skypilot-request-id") {
        if let Ok(v) = HeaderValue::from_str(&new_request_id()) {
            h.insert("x-skypilot-request-id", v);
        }
    }
}

/// FastAPI's answer for an unknown path.
async fn not_found() -> Response {
    json_response(StatusCode::NOT_FOUND, &json!({"detail": "Not Found"}))
}

async fn health(State(shared): State<Arc<Shared>>) -> Response {
    let mut body = json!({
        "status": "healthy",
        "api_version": API_VERSION.to_string(),
        "version": VERSION,
        "version_on_disk": VERSION,
        "commit": COMMIT,
        "basic_auth_enabled": false,
        "user": null,
        "service_account_token_enabled": false,
        "ingress_basic_auth_enabled": false,
        "latest_version": null,
        "external_proxy_auth_enabled": true,
        "telemetry_enabled": false,
        "restrict_config_to_admins": true,
    });
    let (overrides, service_accounts) = {
        let st = shared.lock();
        (
            st.health_overrides.clone(),
            st.service_account_tokens.is_some(),
        )
    };
    if let Value::Object(m) = &mut body {
        m.insert(
            "service_account_token_enabled".into(),
            Value::Bool(service_accounts),
        );
        for (k, v) in overrides {
            m.insert(k, v);
        }
    }
    json_response(StatusCode::OK, &body)
}

/// Python's `repr()` of a str, as SkyPilot quotes names and ids in messages.
fn py_repr(s: &str) -> String {
    if s.contains('\'') && !s.contains('"') {
        format!("\"{s}\"")
    } else {
        format!("'{}'", s.replace('\\', "\\\\").replace('\'', "\\'"))
    }
}

#[derive(Serialize)]
struct PayloadOut<'a> {
    request_id: &'a str,
    name: &'a str,
    entrypoint: &'a str,
    request_body: &'a str,
    status: &'a str,
    created_at: f64,
    user_id: &'a str,
    return_value: &'a str,
    error: &'a str,
    pid: i64,
    schedule_type: &'a str,
    user_name: Option<&'a str>,
    cluster_name: Option<&'a str>,
    status_msg: Option<&'a str>,
    should_retry: bool,
    finished_at: f64,
    file_mounts_blob_id: Option<&'a str>,
}

impl StoredRequest {
    fn payload(&self) -> PayloadOut<'_> {
        PayloadOut {
            request_id: &self.request_id,
            name: self.op.request_name(),
            entrypoint: PICKLED_STANDIN,
            request_body: PICKLED_STANDIN,
            status: if self.failed { "FAILED" } else { "SUCCEEDED" },
            created_at: self.created_at,
            user_id: "a1b2c3d4",
            return_value: &self.return_value,
            error: &self.error,
            pid: 4242,
            schedule_type: if self.op == Op::Start {
                "long"
            } else {
                "short"
            },
            user_name: None,
            cluster_name: self.cluster_name.as_deref(),
            status_msg: None,
            should_retry: false,
            finished_at: self.finished_at,
            file_mounts_blob_id: None,
        }
    }
}

#[derive(serde::Deserialize)]
struct GetQuery {
    request_id: Option<String>,
}

async fn api_get(State(shared): State<Arc<Shared>>, Query(q): Query<GetQuery>) -> Response {
    let Some(id) = q.request_id else {
        return json_response(
            StatusCode::UNPROCESSABLE_ENTITY,
            &json!({"detail": [{"type": "missing", "loc": ["query", "request_id"],
                                "msg": "Field required", "input": null}]}),
        );
    };
    let st = shared.lock();
    // The real server resolves a unique prefix of the id.
    let exact = st.requests.iter().find(|r| r.request_id == id);
    let found = match exact {
        Some(r) => Some(r),
        None => {
            let matches: Vec<&FinishedRequest> = st
                .requests
                .iter()
                .filter(|r| r.request_id.starts_with(&id))
                .collect();
            if matches.len() > 1 {
                return json_response(
                    StatusCode::BAD_REQUEST,
                    &json!({"detail": format!("Multiple requests found for request ID prefix: {id}")}),
                );
            }
            matches.into_iter().next()
        }
    };
    match found {
        None => json_response(
            StatusCode::NOT_FOUND,
            &json!({"detail": format!("Request {} not found", py_repr(&id))}),
        ),
        Some(r) => {
            let code = if r.failed {
                StatusCode::INTERNAL_SERVER_ERROR
            } else {
                StatusCode::OK
            };
            (
                code,
                [(
                    header::CONTENT_TYPE,
                    HeaderValue::from_static("application/json"),
                )],
                r.answer.clone(),
            )
                .into_response()
        }
    }
}

/// FastAPI's 422 for a body that does not validate.
fn validation_error(kind: &str, loc: Vec<Value>, msg: &str, input: Value) -> Response {
    json_response(
        StatusCode::UNPROCESSABLE_ENTITY,
        &json!({"detail": [{"type": kind, "loc": loc, "msg": msg, "input": input}]}),
    )
}

enum FieldKind {
    Str,
    Int,
    Bool,
}

/// Check the fields of an op's body the way pydantic does (required fields, types).
fn validate_body(op: Op, body: &Map<String, Value>) -> Result<(), Box<Response>> {
    let required: &[(&str, FieldKind)] = match op {
        Op::Autostop => &[
            ("cluster_name", FieldKind::Str),
            ("idle_minutes", FieldKind::Int),
        ],
        Op::Stop | Op::Down | Op::Start | Op::Queue => &[("cluster_name", FieldKind::Str)],
        Op::Status | Op::CostReport => &[],
    };
    let optional: &[(&str, FieldKind)] = match op {
        Op::Autostop | Op::Start => &[("down", FieldKind::Bool)],
        Op::CostReport => &[("days", FieldKind::Int)],
        Op::Status => &[
            ("all_users", FieldKind::Bool),
            ("include_credentials", FieldKind::Bool),
            ("include_handle", FieldKind::Bool),
        ],
        _ => &[],
    };
    let input = Value::Object(body.clone());
    for (name, _) in required {
        if !body.contains_key(*name) {
            return Err(Box::new(validation_error(
                "missing",
                vec![json!("body"), json!(name)],
                "Field required",
                input,
            )));
        }
    }
    for (name, kind) in required.iter().chain(optional.iter()) {
        let Some(v) = body.get(*name) else { continue };
        if v.is_null() && matches!(op, Op::CostReport) {
            continue; // days: Optional[int]
        }
        let (ok, t, msg) = match kind {
            FieldKind::Str => (
                v.is_string(),
                "string_type",
                "Input should be a valid string",
            ),
            FieldKind::Int => (
                v.is_i64() || v.as_str().is_some_and(|s| s.trim().parse::<i64>().is_ok()),
                "int_parsing",
                "Input should be a valid integer, unable to parse string as an integer",
            ),
            FieldKind::Bool => (
                v.is_boolean(),
                "bool_parsing",
                "Input should be a valid boolean",
            ),
        };
        if !ok {
            return Err(Box::new(validation_error(
                t,
                vec![json!("body"), json!(name)],
                msg,
                v.clone(),
            )));
        }
    }
    if op == Op::Status {
        if let Some(r) = body.get("refresh") {
            let ok = matches!(r.as_str(), Some("NONE" | "AUTO" | "FORCE"));
            if !ok {
                return Err(Box::new(validation_error(
                    "enum",
                    vec![json!("body"), json!("refresh")],
                    "Input should be 'NONE', 'AUTO' or 'FORCE'",
                    r.clone(),
                )));
            }
        }
    }
    Ok(())
}

fn int_field(body: &Map<String, Value>, name: &str) -> Option<i64> {
    match body.get(name)? {
        Value::Number(n) => n.as_i64(),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

async fn run_op(
    State(shared): State<Arc<Shared>>,
    op: Op,
    headers: HeaderMap,
    raw: Bytes,
) -> Response {
    let parsed: Result<Value, _> = if raw.iter().all(u8::is_ascii_whitespace) {
        Ok(Value::Object(Map::new()))
    } else {
        serde_json::from_slice(&raw)
    };
    let request_id = new_request_id();
    {
        let mut st = shared.lock();
        st.log.push(LoggedRequest {
            method: "POST".into(),
            path: op.path().into(),
            op: Some(op),
            request_id: Some(request_id.clone()),
            body: parsed.as_ref().cloned().unwrap_or(Value::Null),
            api_version_header: header_str(&headers, "x-skypilot-api-version"),
            authorization: header_str(&headers, "authorization"),
        });
    }
    let body = match parsed {
        Ok(Value::Object(m)) => m,
        Ok(other) => {
            return validation_error(
                "model_attributes_type",
                vec![json!("body")],
                "Input should be a valid dictionary or object to extract fields from",
                other,
            )
        }
        Err(e) => {
            return json_response(
                StatusCode::UNPROCESSABLE_ENTITY,
                &json!({"detail": [{"type": "json_invalid", "loc": ["body", e.column()],
                                    "msg": "JSON decode error", "input": {},
                                    "ctx": {"error": "Expecting value"}}]}),
            )
        }
    };
    if let Err(resp) = validate_body(op, &body) {
        return *resp;
    }

    {
        let mut st = shared.lock();
        let created_at = st.now_f64();
        let faults = st.take_payload_faults(op);
        let (result, cluster_name) = execute(&mut st, op, &body, &faults);
        let (failed, return_value, error) = match result {
            Ok(rv) => (false, rv, "null".to_string()),
            Err((t, m)) => (true, "null".to_string(), error_json(&t, &m)),
        };
        let finished_at = st.now_f64();
        let stored = StoredRequest {
            request_id: request_id.clone(),
            op,
            cluster_name,
            failed,
            return_value,
            error,
            created_at,
            finished_at,
        };
        let answer = if failed {
            serde_json::to_vec(&json!({"detail": stored.payload()}))
        } else {
            serde_json::to_vec(&stored.payload())
        }
        .unwrap_or_else(|_| b"null".to_vec());
        st.requests_bytes += answer.len();
        st.requests.push_back(FinishedRequest {
            request_id: request_id.clone(),
            failed,
            answer: Bytes::from(answer),
        });
        while st.requests.len() > KEPT_REQUESTS
            || (st.requests_bytes > KEPT_BYTES && st.requests.len() > 1)
        {
            if let Some(old) = st.requests.pop_front() {
                st.requests_bytes -= old.answer.len();
            }
        }
    }

    let mut resp = json_response(StatusCode::OK, &Value::Null);
    if let Ok(v) = HeaderValue::from_str(&request_id) {
        resp.headers_mut().insert("x-skypilot-request-id", v);
    }
    resp
}

/// SkyPilot's serialized exception: `{"object": <pickle>, "type": ..., "message": ...}`.
fn error_json(error_type: &str, message: &str) -> String {
    json!({"object": PICKLED_STANDIN, "type": error_type, "message": message}).to_string()
}

type OpResult = Result<String, (String, String)>;

fn does_not_exist(name: &str, colored: bool) -> (String, String) {
    let msg = format!("Cluster {} does not exist.", py_repr(name));
    let msg = if colored {
        format!("{ANSI_YELLOW}{msg}{ANSI_RESET}")
    } else {
        msg
    };
    ("ClusterDoesNotExist".into(), msg)
}

fn not_up(name: &str, operation: &str, status: SimStatus) -> (String, String) {
    let hint = if status == SimStatus::Init {
        format!(
            "{ANSI_RESET} Wait for a launch to finish, or use this command to try to \
             transition the cluster to UP: {ANSI_BRIGHT}sky start {name}{ANSI_RESET}"
        )
    } else {
        String::new()
    };
    (
        "ClusterNotUpError".into(),
        format!(
            "{ANSI_YELLOW}{operation}: skipped for cluster {} (status: {}). It is only \
             allowed for UP and AUTOSTOPPING clusters.{hint}{ANSI_RESET}",
            py_repr(name),
            status.as_str()
        ),
    )
}

fn execute(
    st: &mut SimState,
    op: Op,
    body: &Map<String, Value>,
    faults: &[Fault],
) -> (OpResult, Option<String>) {
    let now = st.now();
    let cluster = body
        .get("cluster_name")
        .and_then(Value::as_str)
        .map(str::to_string);
    let malformed = faults.contains(&Fault::MalformedReturnValue);
    let missing: Vec<&str> = faults
        .iter()
        .filter_map(|f| match f {
            Fault::MissingField(n) => Some(n.as_str()),
            _ => None,
        })
        .collect();
    let result = match op {
        Op::Status => {
            let names: Option<Vec<&str>> = body
                .get("cluster_names")
                .and_then(Value::as_array)
                .map(|a| a.iter().filter_map(Value::as_str).collect());
            let records: Vec<&SimCluster> = st
                .clusters
                .values()
                .filter(|c| names.as_ref().is_none_or(|n| n.contains(&c.name.as_str())))
                .collect();
            Ok(render_status(&records, &missing))
        }
        Op::CostReport => {
            let days = int_field(body, "days");
            let since = days.map(|d| now - d * 86_400);
            let mut rows: Vec<(&SimCluster, bool)> = st
                .clusters
                .values()
                .map(|c| (c, true))
                .chain(st.history.iter().map(|c| (c, false)))
                .filter(|(c, _)| {
                    since.is_none_or(|s| {
                        c.usage_intervals
                            .iter()
                            .any(|(_, e)| e.is_none_or(|e| e >= s))
                    })
                })
                .collect();
            rows.sort_by(|a, b| a.0.name.cmp(&b.0.name));
            Ok(render_cost(&rows, now, &missing))
        }
        Op::Autostop => {
            let name = cluster.clone().unwrap_or_default();
            let minutes = int_field(body, "idle_minutes").unwrap_or(-1);
            let down = body.get("down").and_then(Value::as_bool).unwrap_or(false);
            let operation = if minutes < 0 {
                "Cancelling auto{stop,down}".to_string()
            } else if down {
                "Scheduling autodown".to_string()
            } else {
                "Scheduling autostop".to_string()
            };
            let outcome = st.outcome(op, &name);
            match st.clusters.get_mut(&name) {
                None => Err(does_not_exist(&name, true)),
                Some(c) if c.status != SimStatus::Up => Err(not_up(&name, &operation, c.status)),
                Some(c) => match outcome {
                    Outcome::Fail {
                        error_type,
                        message,
                    } => Err((error_type, message)),
                    Outcome::Succeed => {
                        if minutes < 0 {
                            c.autostop = -1;
                            c.to_down = false;
                        } else {
                            c.autostop = minutes;
                            c.to_down = down;
                        }
                        Ok("null".to_string())
                    }
                },
            }
        }
        Op::Stop | Op::Down | Op::Start => {
            let name = cluster.clone().unwrap_or_default();
            let outcome = st.outcome(op, &name);
            if !st.clusters.contains_key(&name) {
                Err(does_not_exist(&name, false))
            } else if let Outcome::Fail {
                error_type,
                message,
            } = outcome
            {
                Err((error_type, message))
            } else {
                match op {
                    Op::Stop => {
                        if let Some(c) = st.clusters.get_mut(&name) {
                            apply_status(c, SimStatus::Stopped, now);
                        }
                        Ok("null".to_string())
                    }
                    Op::Down => {
                        if let Some(mut c) = st.clusters.remove(&name) {
                            c.close_usage(now);
                            st.history.push(c);
                        }
                        Ok("null".to_string())
                    }
                    _ => {
                        let minutes = int_field(body, "idle_minutes_to_autostop");
                        let down = body.get("down").and_then(Value::as_bool).unwrap_or(false);
                        if let Some(c) = st.clusters.get_mut(&name) {
                            apply_status(c, SimStatus::Up, now);
                            if let Some(m) = minutes {
                                c.autostop = m;
                                c.to_down = down;
                            }
                        }
                        // The real server returns the pickled resource handle.
                        Ok(Value::String(PICKLED_STANDIN.into()).to_string())
                    }
                }
            }
        }
        Op::Queue => {
            let name = cluster.clone().unwrap_or_default();
            let outcome = st.outcome(op, &name);
            match st.clusters.get(&name) {
                None => Err(does_not_exist(&name, true)),
                Some(c) if c.status != SimStatus::Up => {
                    Err(not_up(&name, "Getting the job queue", c.status))
                }
                Some(_) => match outcome {
                    Outcome::Fail {
                        error_type,
                        message,
                    } => Err((error_type, message)),
                    Outcome::Succeed => Ok(st
                        .queue_jobs
                        .get(&name)
                        .cloned()
                        .unwrap_or_else(|| json!([]))
                        .to_string()),
                },
            }
        }
    };
    let result = match result {
        Ok(rv) if malformed => {
            // Cut the document off: valid start, invalid end.
            let cut = rv.len().min(40);
            let mut s: String = rv.chars().take(cut).collect();
            s.push_str("{\"name\": ");
            Ok(s)
        }
        other => other,
    };
    (result, cluster)
}

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
        is_managed: false,
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

fn render_status(records: &[&SimCluster], missing: &[&str]) -> String {
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

fn render_cost(rows: &[(&SimCluster, bool)], now: i64, missing: &[&str]) -> String {
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

// ---------------------------------------------------------------------------------------
// Ids and time.

fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

static ID_COUNTER: AtomicU64 = AtomicU64::new(1);

/// A version-4-shaped UUID (`8-4-4-4-12` hex), unique within the process.
fn new_request_id() -> String {
    let n = ID_COUNTER.fetch_add(1, Ordering::Relaxed);
    let t = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0);
    uuid_like(n.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ t)
}

/// A UUID-shaped string derived from `seed` (deterministic for a given seed).
pub fn uuid_like(seed: u64) -> String {
    let mut x = seed ^ 0x2545_F491_4F6C_DD1D;
    let mut next = || {
        // splitmix64
        x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = x;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    };
    let a = next();
    let b = next();
    format!(
        "{:08x}-{:04x}-4{:03x}-{:04x}-{:012x}",
        (a >> 32) as u32,
        (a >> 16) as u16,
        (a & 0xfff) as u16,
        ((b >> 48) as u16 & 0x3fff) | 0x8000,
        b & 0xffff_ffff_ffff
    )
}
