//! SkyServe services: the records SkyPilot 0.14.1's `/serve/status` answers from its
//! serve controller (`serve_utils._get_service_status` with its replicas, then the
//! endpoint and the owner's name), in the order and with the fields it sends; the
//! network check it makes first; the controller it needs.

use serde_json::{json, Map, Value};

use super::Simulator;

/// One replica of a simulated service.
#[derive(Debug, Clone, PartialEq)]
pub struct SimReplica {
    pub replica_id: i64,
    pub status: String,
}

/// One service.
#[derive(Debug, Clone, PartialEq)]
pub struct SimService {
    pub name: String,
    /// SkyPilot's service status, e.g. `READY`.
    pub status: String,
    pub user_name: String,
    pub user_hash: String,
    pub load_balancer_port: i64,
    /// When its first replica became ready (Unix seconds).
    pub uptime: Option<i64>,
    pub min_replicas: i64,
    pub replicas: Vec<SimReplica>,
}

impl SimService {
    /// A service of `user` as `sky serve up` leaves it (CONTROLLER_INIT, no replica).
    pub fn new(name: &str, user: &str, replicas: i64) -> SimService {
        SimService {
            name: name.into(),
            status: "CONTROLLER_INIT".into(),
            user_name: user.into(),
            user_hash: {
                use md5::{Digest, Md5};
                hex::encode(Md5::digest(user.as_bytes()))[..8].to_string()
            },
            load_balancer_port: 30001,
            uptime: None,
            min_replicas: replicas,
            replicas: Vec::new(),
        }
    }

    /// Puts replica `id` in `status` and derives the service's status from its
    /// replicas as the controller does (`ServiceStatus.from_replica_statuses`).
    pub fn replica(&mut self, id: i64, status: &str, now: i64) {
        match self.replicas.iter_mut().find(|r| r.replica_id == id) {
            Some(r) => r.status = status.into(),
            None => self.replicas.push(SimReplica {
                replica_id: id,
                status: status.into(),
            }),
        }
        self.replicas.sort_by_key(|r| r.replica_id);
        if status == "READY" && self.uptime.is_none() {
            self.uptime = Some(now);
        }
        let failed = |s: &str| {
            matches!(
                s,
                "FAILED"
                    | "FAILED_INITIAL_DELAY"
                    | "FAILED_PROBING"
                    | "FAILED_PROVISION"
                    | "FAILED_CLEANUP"
                    | "UNKNOWN"
            )
        };
        self.status = if self.replicas.iter().any(|r| r.status == "READY") {
            "READY"
        } else if self.replicas.iter().any(|r| failed(&r.status)) {
            "FAILED"
        } else {
            "REPLICA_INIT"
        }
        .into();
    }
}

fn policy(n: i64) -> String {
    if n == 1 {
        "Fixed 1 replica".into()
    } else {
        format!("Fixed {n} replicas")
    }
}

fn record(s: &SimService) -> Value {
    let replicas: Vec<Value> = s
        .replicas
        .iter()
        .map(|r| {
            // A replica whose cluster is not in the cluster table has no handle (the
            // pickle of None) and no cloud, region or resources.
            json!({
                "replica_id": r.replica_id,
                "name": format!("{}-{}", s.name, r.replica_id),
                "status": r.status,
                "version": 1,
                "replica_info_version": 3,
                "endpoint": null,
                "is_spot": false,
                "launched_at": null,
                "handle": "gAROLg==",
            })
        })
        .collect();
    let yaml = format!(
        "name: {}\nresources:\n  cpus: 2\n  ports: 8080\nrun: python -m http.server 8080\nservice:\n  readiness_probe: /health\n  replicas: {}\n",
        s.name, s.min_replicas
    );
    let mut m = Map::new();
    for (k, v) in [
        ("name", json!(s.name)),
        ("controller_job_id", json!(0)),
        ("controller_port", Value::Null),
        ("load_balancer_port", json!(s.load_balancer_port)),
        ("status", json!(s.status)),
        ("uptime", json!(s.uptime)),
        ("policy", json!(policy(s.min_replicas))),
        ("version", json!(1)),
        ("active_versions", json!([1])),
        ("requested_resources_str", json!("1x[CPU:2]")),
        ("load_balancing_policy", json!("least_load")),
        ("tls_encrypted", json!(false)),
        ("pool", json!(false)),
        ("controller_pid", json!(4242)),
        ("controller_ip", json!("127.0.0.1")),
        ("hash", json!("00000000-0000-4000-8000-000000000000")),
        (
            "entrypoint",
            json!(format!("sky serve up -n {} service.yaml", s.name)),
        ),
        ("user_hash", json!(s.user_hash)),
        ("yaml_content", json!(yaml)),
        ("pool_yaml", json!("")),
        // The controller's /autoscaler/info does not answer here.
        ("target_num_replicas", Value::Null),
        ("replica_info", Value::Array(replicas)),
        // In consolidation mode the load balancer is on the API server's host.
        (
            "endpoint",
            json!(format!("http://localhost:{}", s.load_balancer_port)),
        ),
        ("user_name", json!(s.user_name)),
    ] {
        m.insert(k.into(), v);
    }
    Value::Object(m)
}

/// `pickle.dumps(name)` as Python 3.11 makes it (protocol 4: a frame holding the
/// string and a memo entry).
fn pickled_str(name: &str) -> Vec<u8> {
    let bytes = name.as_bytes();
    let mut body = Vec::with_capacity(bytes.len() + 7);
    match u8::try_from(bytes.len()) {
        Ok(n) => body.extend([0x8c, n]), // SHORT_BINUNICODE
        Err(_) => {
            body.push(0x58); // BINUNICODE
            body.extend((bytes.len() as u32).to_le_bytes());
        }
    }
    body.extend(bytes);
    body.push(0x94); // MEMOIZE
    let mut out = vec![0x80, 0x04, 0x95]; // PROTO 4, FRAME
    out.extend((body.len() as u64).to_le_bytes());
    out.extend(body);
    out.push(b'.'); // STOP
    out
}

/// The `return_value` of `/serve/status`: every service, in SkyPilot's order. It sorts
/// the records after pickling each value and encoding it in base64, so by the base64 of
/// the pickled name, not by the name.
pub(super) fn render_status(services: &std::collections::BTreeMap<String, SimService>) -> String {
    use base64::Engine;
    let mut all: Vec<&SimService> = services.values().collect();
    all.sort_by_cached_key(|s| {
        base64::engine::general_purpose::STANDARD.encode(pickled_str(&s.name))
    });
    Value::Array(all.into_iter().map(record).collect()).to_string()
}

impl Simulator {
    /// Adds or replaces a service; `sky serve up` brings the serve controller up.
    pub fn upsert_service(&self, s: SimService) {
        let mut st = self.shared.lock();
        st.serve_controller = true;
        st.services.insert(s.name.clone(), s);
    }

    /// Changes a service; false when there is none of that name.
    pub fn update_service(&self, name: &str, f: impl FnOnce(&mut SimService)) -> bool {
        match self.shared.lock().services.get_mut(name) {
            Some(s) => {
                f(s);
                true
            }
            None => false,
        }
    }

    /// Removes a service (as `sky serve down` does once it is torn down).
    pub fn remove_service(&self, name: &str) -> bool {
        self.shared.lock().services.remove(name).is_some()
    }

    /// Makes the addresses SkyPilot probes before `/serve/status` unreachable (`down`):
    /// it then refuses with SkyPilot's network error.
    pub fn set_network_down(&self, down: bool) {
        self.shared.lock().network_down = down;
    }
}
