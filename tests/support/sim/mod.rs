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
//!
//! Its parts: `fleet` (the clusters), `operations` (what each op does and how it ends),
//! `faults` (faults and refused connections), `protocol` (serving the REST protocol),
//! `records` (the status and cost records as sent); here: the handle, the state they
//! share, the request log, ids and time.

mod faults;
mod fleet;
mod jobs;
mod operations;
mod protocol;
mod records;
mod serve;

// The simulator's public types; a user of this module (a benchmark) may not need all.
#[allow(unused_imports)]
pub use faults::Fault;
#[allow(unused_imports)]
pub use fleet::{SimCluster, SimStatus};
#[allow(unused_imports)]
pub use jobs::SimJob;
#[allow(unused_imports)]
pub use operations::{Op, Outcome};
#[allow(unused_imports)]
pub use serve::{SimReplica, SimService};

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{SystemTime, UNIX_EPOCH};

use axum::body::Bytes;
use serde_json::{Map, Value};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

use faults::FaultRule;
use protocol::{router, serve};

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
/// SkyPilot's user id of the server's own user (the requests' `user_id`).
pub const SERVER_USER_ID: &str = "a1b2c3d4";
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
    /// Managed jobs, by id.
    jobs: BTreeMap<i64, SimJob>,
    /// A jobs controller is up (a job was launched, or consolidation mode).
    jobs_controller: bool,
    /// SkyServe services, by name.
    services: BTreeMap<String, SimService>,
    /// A serve controller is up (a service was started, or consolidation mode).
    serve_controller: bool,
    /// The addresses SkyPilot probes before `/serve/status` do not answer.
    network_down: bool,
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
                jobs: BTreeMap::new(),
                jobs_controller: false,
                services: BTreeMap::new(),
                serve_controller: false,
                network_down: false,
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

/// Python's `repr()` of a str, as SkyPilot quotes names and ids in messages.
fn py_repr(s: &str) -> String {
    if s.contains('\'') && !s.contains('"') {
        format!("\"{s}\"")
    } else {
        format!("'{}'", s.replace('\\', "\\\\").replace('\'', "\\'"))
    }
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
