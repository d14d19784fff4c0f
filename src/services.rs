//! SkyServe services (`sky serve up`) as the host services see them: the fields of
//! SkyPilot's `/serve/status` records that the roles use, and the pure step that turns
//! one answer into changes against what is known (a service that disappears is kept as
//! GONE, as clusters and managed jobs are).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::time::Timestamp;

/// A status enum with SkyPilot's names: `as_str`, `ALL`, `Display`, `FromStr` (an
/// error names the value and what was expected) and serde by name.
macro_rules! named_statuses {
    ($(#[$doc:meta])* $name:ident, $what:literal, [$($variant:ident = $text:literal),+ $(,)?]) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        pub enum $name {
            $(#[serde(rename = $text)] $variant),+
        }

        impl $name {
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            pub fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $text),+
                }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl FromStr for $name {
            type Err = String;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                $name::ALL.iter().copied().find(|v| v.as_str() == s).ok_or_else(|| {
                    let names: Vec<&str> = $name::ALL.iter().map(|v| v.as_str()).collect();
                    format!(concat!("unknown ", $what, " {:?}: expected one of {}"), s, names.join(", "))
                })
            }
        }
    };
}

named_statuses!(
    /// A service's status: SkyPilot 0.14.1's `ServiceStatus`, and `Gone` (ours: the
    /// service was known and `/serve/status` no longer lists it).
    ServiceStatus,
    "service status",
    [
        ControllerInit = "CONTROLLER_INIT",
        ReplicaInit = "REPLICA_INIT",
        ControllerFailed = "CONTROLLER_FAILED",
        Ready = "READY",
        ShuttingDown = "SHUTTING_DOWN",
        Failed = "FAILED",
        FailedCleanup = "FAILED_CLEANUP",
        NoReplica = "NO_REPLICA",
        Gone = "GONE",
    ]
);

named_statuses!(
    /// A replica's status: SkyPilot 0.14.1's `ReplicaStatus`.
    ReplicaStatus,
    "replica status",
    [
        Pending = "PENDING",
        Provisioning = "PROVISIONING",
        Starting = "STARTING",
        Ready = "READY",
        NotReady = "NOT_READY",
        ShuttingDown = "SHUTTING_DOWN",
        Failed = "FAILED",
        FailedInitialDelay = "FAILED_INITIAL_DELAY",
        FailedProbing = "FAILED_PROBING",
        FailedProvision = "FAILED_PROVISION",
        FailedCleanup = "FAILED_CLEANUP",
        Preempted = "PREEMPTED",
        Unknown = "UNKNOWN",
    ]
);

impl ServiceStatus {
    /// Broken (SkyPilot's failed statuses, and FAILED: replicas failed, none ready).
    pub fn is_failed(self) -> bool {
        matches!(
            self,
            ServiceStatus::ControllerFailed | ServiceStatus::Failed | ServiceStatus::FailedCleanup
        )
    }

    /// Meant to serve: neither shutting down nor gone. A live service with no ready
    /// replica is what the alert is about.
    pub fn is_live(self) -> bool {
        !matches!(self, ServiceStatus::ShuttingDown | ServiceStatus::Gone)
    }
}

/// One replica of a service.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Replica {
    pub replica_id: i64,
    /// The cluster SkyPilot launched for it.
    pub cluster: String,
    pub status: ReplicaStatus,
    pub version: Option<i64>,
    pub is_spot: bool,
    pub launched_at: Option<Timestamp>,
    pub infra: Option<String>,
}

/// One service, as `/serve/status` lists it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Service {
    pub name: String,
    pub status: ServiceStatus,
    pub user_name: Option<String>,
    pub user_hash: Option<String>,
    /// Where it answers (its load balancer), e.g. `http://3.4.5.6:30001`.
    pub endpoint: Option<String>,
    /// The autoscaling policy, e.g. `Fixed 2 replicas`.
    pub policy: Option<String>,
    /// What each replica asks for, e.g. `1x[CPU:2]`.
    pub resources: Option<String>,
    pub version: Option<i64>,
    /// When its first replica became ready.
    pub ready_since: Option<Timestamp>,
    pub tls: bool,
    /// How many replicas the autoscaler wants (None when its controller did not say).
    pub target_replicas: Option<i64>,
    pub replicas: Vec<Replica>,
}

impl Service {
    /// Who owns it: the user's name, else SkyPilot's user id.
    pub fn owner(&self) -> &str {
        self.user_name
            .as_deref()
            .or(self.user_hash.as_deref())
            .unwrap_or("-")
    }

    /// Replicas that answer (READY).
    pub fn ready_replicas(&self) -> i64 {
        self.replicas
            .iter()
            .filter(|r| r.status == ReplicaStatus::Ready)
            .count() as i64
    }

    /// Replicas by status.
    pub fn replicas_by_status(&self) -> BTreeMap<ReplicaStatus, i64> {
        let mut by = BTreeMap::new();
        for r in &self.replicas {
            *by.entry(r.status).or_default() += 1;
        }
        by
    }
}

#[derive(Deserialize)]
struct WireService {
    name: Option<String>,
    status: Option<String>,
    user_name: Option<String>,
    user_hash: Option<String>,
    endpoint: Option<String>,
    policy: Option<String>,
    requested_resources_str: Option<String>,
    version: Option<i64>,
    uptime: Option<f64>,
    tls_encrypted: Option<bool>,
    target_num_replicas: Option<i64>,
    #[serde(default)]
    replica_info: Vec<WireReplica>,
}

#[derive(Deserialize)]
struct WireReplica {
    replica_id: Option<i64>,
    name: Option<String>,
    status: Option<String>,
    version: Option<i64>,
    is_spot: Option<bool>,
    launched_at: Option<f64>,
    infra: Option<String>,
}

fn when(v: Option<f64>) -> Option<Timestamp> {
    v.filter(|t| t.is_finite() && *t > 0.0)
        .map(Timestamp::from_secs_f64)
}

/// Parses the `return_value` of `/serve/status` (a list of service records). A record
/// without a name, or with a status SkyPilot 0.14.1 does not have, is an error naming it.
pub fn parse_status(text: &str) -> Result<Vec<Service>, String> {
    let records: Vec<WireService> = serde_json::from_str(text)
        .map_err(|e| format!("not the expected list of service records: {e}"))?;
    records
        .into_iter()
        .enumerate()
        .map(|(i, w)| {
            let name = w
                .name
                .filter(|n| !n.is_empty())
                .ok_or_else(|| format!("[{i}]: no name"))?;
            let status = w
                .status
                .as_deref()
                .ok_or_else(|| format!("[{i}] (service {name}): no status"))?
                .parse::<ServiceStatus>()
                .map_err(|e| format!("[{i}] (service {name}): {e}"))?;
            if status == ServiceStatus::Gone {
                return Err(format!("[{i}] (service {name}): GONE is not SkyPilot's"));
            }
            let mut replicas = w
                .replica_info
                .into_iter()
                .enumerate()
                .map(|(k, r)| {
                    let at = || format!("[{i}] (service {name}) replica_info[{k}]");
                    let replica_id = r
                        .replica_id
                        .ok_or_else(|| format!("{}: no replica_id", at()))?;
                    let status = r
                        .status
                        .as_deref()
                        .ok_or_else(|| format!("{}: no status", at()))?
                        .parse::<ReplicaStatus>()
                        .map_err(|e| format!("{}: {e}", at()))?;
                    Ok(Replica {
                        replica_id,
                        cluster: r.name.unwrap_or_else(|| format!("{name}-{replica_id}")),
                        status,
                        version: r.version,
                        is_spot: r.is_spot.unwrap_or(false),
                        launched_at: when(r.launched_at),
                        infra: r.infra.filter(|s| !s.is_empty() && s != "-"),
                    })
                })
                .collect::<Result<Vec<_>, String>>()?;
            replicas.sort_by_key(|r| r.replica_id);
            Ok(Service {
                name,
                status,
                user_name: w.user_name,
                user_hash: w.user_hash,
                endpoint: w.endpoint.filter(|e| !e.is_empty()),
                policy: w.policy,
                resources: w.requested_resources_str,
                version: w.version,
                ready_since: when(w.uptime),
                tls: w.tls_encrypted.unwrap_or(false),
                target_replicas: w.target_num_replicas,
                replicas,
            })
        })
        .collect()
}

/// A service as the host database keeps it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ServiceRow {
    #[serde(flatten)]
    pub service: Service,
    pub ready_replicas: i64,
    pub first_seen: Timestamp,
    pub last_changed: Timestamp,
    pub gone_at: Option<Timestamp>,
    /// Its status before it was gone.
    pub last_status: Option<ServiceStatus>,
    /// Dollars per hour of its replicas' clusters that are UP and priced (None when
    /// none is); filled in by the readers, not stored.
    #[serde(serialize_with = "crate::money::opt_price")]
    pub hourly_cost: Option<f64>,
}

impl ServiceRow {
    /// Prices it from `prices` (UP clusters by name).
    fn priced(mut self, prices: &HashMap<String, f64>) -> ServiceRow {
        let costs: Vec<f64> = self
            .service
            .replicas
            .iter()
            .filter_map(|r| prices.get(&r.cluster).copied())
            .collect();
        self.hourly_cost = (!costs.is_empty()).then(|| costs.iter().sum::<f64>() + 0.0);
        self
    }
}

/// A service's status change.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ServiceTransition {
    pub service: String,
    pub from: Option<ServiceStatus>,
    pub to: ServiceStatus,
    pub at: Timestamp,
}

/// What one `/serve/status` answer changes.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ServiceChanges {
    /// New or changed services, with when they were first seen.
    pub upserts: Vec<(Service, Timestamp)>,
    /// Known services no longer listed.
    pub gone: Vec<String>,
    pub transitions: Vec<ServiceTransition>,
}

impl ServiceChanges {
    pub fn len(&self) -> usize {
        self.upserts.len() + self.gone.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The services known (name → as last recorded, first seen).
pub type KnownServices = HashMap<String, (Service, Timestamp)>;

/// Compares an answer with what is known: new and changed services, status
/// transitions, and known services no longer listed (GONE, once).
pub fn diff_services(known: &KnownServices, fresh: Vec<Service>, now: Timestamp) -> ServiceChanges {
    let mut changes = ServiceChanges::default();
    let mut seen = HashSet::with_capacity(fresh.len());
    for s in fresh {
        seen.insert(s.name.clone());
        let (from, first_seen) = match known.get(&s.name) {
            Some((old, _)) if *old == s => continue,
            Some((old, first)) => (Some(old.status), *first),
            None => (None, now),
        };
        if from != Some(s.status) {
            changes.transitions.push(ServiceTransition {
                service: s.name.clone(),
                from,
                to: s.status,
                at: now,
            });
        }
        changes.upserts.push((s, first_seen));
    }
    let mut gone: Vec<&String> = known
        .iter()
        .filter(|(name, (s, _))| s.status != ServiceStatus::Gone && !seen.contains(*name))
        .map(|(name, _)| name)
        .collect();
    gone.sort_unstable();
    for name in gone {
        if let Some((old, _)) = known.get(name) {
            changes.transitions.push(ServiceTransition {
                service: name.clone(),
                from: Some(old.status),
                to: ServiceStatus::Gone,
                at: now,
            });
        }
        changes.gone.push(name.clone());
    }
    changes
}

/// Applies committed changes to what is known.
pub fn apply_services(known: &mut KnownServices, changes: ServiceChanges) {
    for name in &changes.gone {
        if let Some((s, _)) = known.get_mut(name) {
            s.status = ServiceStatus::Gone;
        }
    }
    for (s, first_seen) in changes.upserts {
        known.insert(s.name.clone(), (s, first_seen));
    }
}

/// The services the host database holds and how fresh they are: what
/// `status --services`, the JSON API and the console show.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ServicesReport {
    pub generated_at: Timestamp,
    /// The last read of `/serve/status` (None: never tried).
    pub feed: Option<crate::store::FeedState>,
    /// The last read failed, none succeeded yet, or the last success is older than
    /// three intervals.
    pub stale: bool,
    /// Services by status (every status, zero included).
    pub by_status: BTreeMap<ServiceStatus, i64>,
    /// Live services without a ready replica.
    pub without_ready: i64,
    /// Dollars per hour of every service's replica clusters, where priced.
    #[serde(serialize_with = "crate::money::price")]
    pub burn: f64,
    pub services: Vec<ServiceRow>,
}

/// The services `q` selects at `now`, with the totals of every service.
/// `interval_secs` is the configured interval (the stored effective one wins).
pub fn report(
    store: &crate::store::Store,
    q: &crate::store::ServiceQuery,
    now: Timestamp,
    interval_secs: u64,
) -> crate::store::Result<ServicesReport> {
    let feed = store.feed(crate::store::Feed::Services)?;
    let stale = crate::store::feed_is_stale(feed.as_ref(), now, interval_secs);
    let prices = store.up_cluster_prices()?;
    let all: Vec<ServiceRow> = store
        .services()?
        .into_iter()
        .map(|s| s.priced(&prices))
        .collect();
    let burn = all.iter().filter_map(|s| s.hourly_cost).sum::<f64>() + 0.0;
    let mut by_status: BTreeMap<ServiceStatus, i64> =
        ServiceStatus::ALL.iter().map(|s| (*s, 0)).collect();
    for s in &all {
        *by_status.entry(s.service.status).or_default() += 1;
    }
    let without_ready = all
        .iter()
        .filter(|s| s.service.status.is_live() && s.ready_replicas == 0)
        .count() as i64;
    let services = all.into_iter().filter(|s| q.selects(s)).collect();
    Ok(ServicesReport {
        generated_at: now,
        feed,
        stale,
        by_status,
        without_ready,
        burn,
        services,
    })
}

/// One service and its status changes; None when the host database does not hold it.
pub fn service_detail(
    store: &crate::store::Store,
    name: &str,
) -> crate::store::Result<Option<(ServiceRow, Vec<ServiceTransition>)>> {
    let Some(row) = store.service(name)? else {
        return Ok(None);
    };
    let row = row.priced(&store.up_cluster_prices()?);
    Ok(Some((row, store.service_transitions(name)?)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(name: &str, status: &str, replicas: &[(i64, &str)]) -> String {
        let reps: Vec<String> = replicas
            .iter()
            .map(|(id, st)| {
                format!(
                    r#"{{"replica_id": {id}, "name": "{name}-{id}", "status": "{st}", "version": 1,
                        "replica_info_version": 3, "endpoint": null, "is_spot": false,
                        "launched_at": null, "handle": "gAROLg=="}}"#
                )
            })
            .collect();
        format!(
            r#"{{"name": "{name}", "controller_job_id": 0, "controller_port": null,
                "load_balancer_port": 30001, "status": "{status}", "uptime": null,
                "policy": "Fixed 2 replicas", "version": 1, "active_versions": [1],
                "requested_resources_str": "1x[CPU:2]", "load_balancing_policy": "least_load",
                "tls_encrypted": false, "pool": false, "controller_pid": 1, "controller_ip": null,
                "hash": "x", "entrypoint": "sky serve up", "user_hash": "6384e2b2",
                "yaml_content": "", "pool_yaml": "", "target_num_replicas": null,
                "replica_info": [{}], "endpoint": "http://localhost:30001", "user_name": "alice"}}"#,
            reps.join(",")
        )
    }

    #[test]
    fn every_status_round_trips() {
        for s in ServiceStatus::ALL {
            assert_eq!(s.as_str().parse::<ServiceStatus>(), Ok(*s));
        }
        for s in ReplicaStatus::ALL {
            assert_eq!(s.as_str().parse::<ReplicaStatus>(), Ok(*s));
        }
        let e = "DOWN".parse::<ServiceStatus>().unwrap_err();
        assert!(
            e.contains("service status \"DOWN\"") && e.contains("NO_REPLICA"),
            "{e}"
        );
        assert!(ServiceStatus::ControllerFailed.is_failed());
        assert!(!ServiceStatus::NoReplica.is_failed());
        assert!(!ServiceStatus::ShuttingDown.is_live());
    }

    #[test]
    fn a_status_answer_parses_with_its_replicas() {
        let text = format!(
            "[{}]",
            record("web", "READY", &[(2, "PROVISIONING"), (1, "READY")])
        );
        let s = parse_status(&text).unwrap().remove(0);
        assert_eq!((s.name.as_str(), s.status), ("web", ServiceStatus::Ready));
        assert_eq!(s.owner(), "alice");
        assert_eq!(s.ready_replicas(), 1);
        assert_eq!(
            s.replicas.iter().map(|r| r.replica_id).collect::<Vec<_>>(),
            [1, 2]
        );
        assert_eq!(s.replicas[0].cluster, "web-1");
        assert_eq!(s.endpoint.as_deref(), Some("http://localhost:30001"));
        assert_eq!(s.policy.as_deref(), Some("Fixed 2 replicas"));
    }

    #[test]
    fn bad_answers_name_the_record() {
        let e = parse_status("{}").unwrap_err();
        assert!(e.starts_with("not the expected list"), "{e}");
        let e = parse_status(&format!("[{}]", record("web", "DOWN", &[]))).unwrap_err();
        assert!(
            e.starts_with("[0] (service web): unknown service status"),
            "{e}"
        );
        let e = parse_status(&format!("[{}]", record("web", "READY", &[(1, "LOST")]))).unwrap_err();
        assert!(
            e.starts_with("[0] (service web) replica_info[0]: unknown replica status"),
            "{e}"
        );
        assert_eq!(
            parse_status(r#"[{"status": "READY"}]"#).unwrap_err(),
            "[0]: no name"
        );
    }

    #[test]
    fn diff_records_new_changed_and_gone_services_once() {
        let t0 = Timestamp::from_secs(1000);
        let t1 = Timestamp::from_secs(1060);
        let parse = |s: &str| parse_status(&format!("[{s}]")).unwrap();
        let first = parse(&format!(
            "{},{}",
            record("a", "REPLICA_INIT", &[(1, "PROVISIONING")]),
            record("b", "READY", &[(1, "READY")])
        ));
        let mut known = KnownServices::new();
        let c = diff_services(&known, first.clone(), t0);
        assert_eq!((c.upserts.len(), c.transitions.len()), (2, 2));
        apply_services(&mut known, c);
        assert!(diff_services(&known, first, t1).is_empty());
        // A replica changing alone is a change without a transition.
        let c = diff_services(
            &known,
            parse(&format!(
                "{},{}",
                record("a", "REPLICA_INIT", &[(1, "STARTING")]),
                record("b", "READY", &[(1, "READY")])
            )),
            t1,
        );
        assert_eq!((c.upserts.len(), c.transitions.len()), (1, 0));
        apply_services(&mut known, c);
        // a gets ready, b disappears.
        let c = diff_services(&known, parse(&record("a", "READY", &[(1, "READY")])), t1);
        assert_eq!(c.gone, vec!["b".to_string()]);
        assert_eq!(c.upserts[0].1, t0, "first seen is kept");
        let tos: Vec<_> = c
            .transitions
            .iter()
            .map(|t| (t.service.as_str(), t.from, t.to))
            .collect();
        assert_eq!(
            tos,
            vec![
                ("a", Some(ServiceStatus::ReplicaInit), ServiceStatus::Ready),
                ("b", Some(ServiceStatus::Ready), ServiceStatus::Gone)
            ]
        );
        apply_services(&mut known, c);
        assert!(
            diff_services(&known, parse(&record("a", "READY", &[(1, "READY")])), t1).is_empty()
        );
    }
}
