//! The autostop policy as a pure function: what the host database knows of the clusters,
//! how old that knowledge is, the failures of earlier attempts and the policy in; one
//! decision per cluster out, each with a reason a person can read. No I/O, no clock: the
//! time is a parameter, so the same input always gives the same decisions.
//!
//! The order of the rules is the order of the checks below; the first that applies
//! decides. Only the last two rules act, and only on a cluster that passed every earlier
//! one: not exempt, data fresh, status UP, not SkyPilot's own, past its grace period, not
//! backing off.

use std::collections::HashMap;

use serde::Serialize;

use crate::cluster::ClusterStatus;
use crate::config::{AutostopConfig, Enforce};
use crate::store::ClusterRow;
use crate::time::{human_duration, Timestamp};

/// Name prefixes of SkyPilot's controllers, whose autostop SkyPilot manages itself (its
/// `/autostop` refuses them).
const CONTROLLER_PREFIXES: [&str; 2] = ["sky-jobs-controller-", "sky-serve-controller-"];

/// What the enforcer does to a cluster.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Action {
    /// `POST /autostop` with `idle_minutes` and `down`.
    Autostop { minutes: u32, down: bool },
    /// `POST /stop`.
    Stop,
    /// `POST /down`.
    Down,
}

impl Action {
    /// The audit table's name of the action.
    pub fn audit_action(self) -> crate::store::AuditAction {
        match self {
            Action::Autostop { .. } => crate::store::AuditAction::Autostop,
            Action::Stop => crate::store::AuditAction::Stop,
            Action::Down => crate::store::AuditAction::Down,
        }
    }
}

impl std::fmt::Display for Action {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Action::Autostop {
                minutes,
                down: false,
            } => write!(f, "autostop {minutes}m (stop)"),
            Action::Autostop {
                minutes,
                down: true,
            } => write!(f, "autostop {minutes}m (down)"),
            Action::Stop => f.write_str("stop"),
            Action::Down => f.write_str("down"),
        }
    }
}

/// The verdict on one cluster.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(tag = "verdict", content = "action", rename_all = "snake_case")]
pub enum Verdict {
    /// Act now.
    Act(Action),
    /// Something may be needed, but not now: the data is stale, the cluster is in
    /// transition or in its grace period, or an earlier attempt failed and the back-off
    /// has not passed.
    Hold,
    /// Nothing to do: compliant, exempt, not running, or not the enforcer's to touch.
    Skip,
}

/// One cluster's decision.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Decision {
    pub cluster: String,
    #[serde(flatten)]
    pub verdict: Verdict,
    pub reason: String,
}

impl Decision {
    pub fn action(&self) -> Option<Action> {
        match self.verdict {
            Verdict::Act(a) => Some(a),
            _ => None,
        }
    }

    /// `act: autostop 60m (stop)`, `hold`, `skip`.
    pub fn verdict_text(&self) -> String {
        match self.verdict {
            Verdict::Act(a) => format!("act: {a}"),
            Verdict::Hold => "hold".into(),
            Verdict::Skip => "skip".into(),
        }
    }
}

/// The enforcer's earlier attempts on one cluster (from the audit table).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Failures {
    /// Failures in a row since the last success.
    pub count: u32,
    /// When the latest failure was recorded.
    pub last_at: Timestamp,
    /// When the latest success was recorded.
    pub last_ok_at: Option<Timestamp>,
}

/// How fresh the recorded state is, as the enforcer needs it.
#[derive(Debug, Clone, PartialEq)]
pub struct DataAge {
    /// When the last successful poll finished.
    pub last_ok_poll: Option<Timestamp>,
    /// The error of the last poll when it failed.
    pub last_poll_error: Option<String>,
    /// The interval the cluster manager polls at: `poll_interval_secs`, or longer when
    /// the load budget stretched it (`fleet::effective_interval_secs`).
    pub interval_secs: f64,
}

impl DataAge {
    /// `None` when the state may be acted on, else why not: the staleness rule of
    /// `fleet::freshness_at_interval`, which `status` and the console apply too.
    pub fn stale_reason(&self, now: Timestamp) -> Option<String> {
        let limit = crate::fleet::stale_after_secs(self.interval_secs);
        match (self.last_ok_poll, &self.last_poll_error) {
            (None, _) => Some("no successful poll of SkyPilot yet: the cluster manager has not recorded any state".into()),
            (Some(_), Some(e)) => Some(format!(
                "the cluster manager's last poll failed ({}): the recorded state may be out of date",
                crate::terminal::clean(e)
            )),
            (Some(t), None) if now.secs_since(t) > limit => Some(format!(
                "the recorded state is {} old, older than {} ({} × the {} poll interval): is the cluster manager running?",
                human_duration(now.secs_since(t)),
                human_duration(limit),
                crate::fleet::STALE_AFTER_INTERVALS,
                human_duration(self.interval_secs)
            )),
            _ => None,
        }
    }
}

/// The policy as the engine applies it (built once from the config).
#[derive(Debug, Clone)]
pub struct Policy {
    pub idle_minutes: u32,
    pub enforce: Enforce,
    pub down_when_cannot_stop: bool,
    cannot_stop: Vec<String>,
    exempt_names: Vec<String>,
    exempt_workspaces: Vec<String>,
    exempt_users: Vec<String>,
    grace_secs: f64,
    max_lifetime_secs: Option<f64>,
    retry_base_secs: u64,
    retry_max_secs: u64,
}

impl Policy {
    pub fn new(c: &AutostopConfig) -> Policy {
        Policy {
            idle_minutes: c.idle_minutes,
            enforce: c.enforce,
            down_when_cannot_stop: c.down_when_cannot_stop,
            cannot_stop: c
                .cannot_stop_clouds
                .iter()
                .map(|s| s.to_ascii_lowercase())
                .collect(),
            exempt_names: c.exempt_names.clone(),
            exempt_workspaces: c.exempt_workspaces.clone(),
            exempt_users: c.exempt_users.clone(),
            grace_secs: f64::from(c.grace_minutes) * 60.0,
            max_lifetime_secs: c.max_lifetime_hours.map(|h| f64::from(h) * 3600.0),
            retry_base_secs: c.retry_base_secs,
            retry_max_secs: c.retry_max_secs,
        }
    }

    /// Seconds to wait after `count` failures in a row: base, 2×base, 4×base, … up to max.
    pub fn backoff_secs(&self, count: u32) -> u64 {
        let exp = count.saturating_sub(1).min(40);
        self.retry_base_secs
            .saturating_mul(1u64 << exp)
            .min(self.retry_max_secs)
    }

    fn cannot_stop(&self, cloud: Option<&str>) -> bool {
        cloud.is_some_and(|c| self.cannot_stop.iter().any(|x| x.eq_ignore_ascii_case(c)))
    }

    /// Why the cluster is exempt, if it is.
    fn exemption(&self, row: &ClusterRow) -> Option<String> {
        let c = &row.cluster;
        if let Some(g) = self.exempt_names.iter().find(|g| glob_match(g, &c.name)) {
            return Some(format!(
                "exempt: its name matches autostop.exempt_names {g:?}"
            ));
        }
        if self.exempt_workspaces.contains(&c.workspace) {
            return Some(format!(
                "exempt: workspace {:?} is in autostop.exempt_workspaces",
                c.workspace
            ));
        }
        let user = [c.user_name.as_deref(), c.user_hash.as_deref()]
            .into_iter()
            .flatten()
            .find(|u| self.exempt_users.iter().any(|x| x == u));
        user.map(|u| format!("exempt: user {u:?} is in autostop.exempt_users"))
    }
}

/// Decides for every cluster, in the order given.
pub fn decide(
    policy: &Policy,
    clusters: &[ClusterRow],
    age: &DataAge,
    failures: &HashMap<String, Failures>,
    now: Timestamp,
) -> Vec<Decision> {
    let stale = age.stale_reason(now);
    clusters
        .iter()
        .map(|row| {
            decide_one(
                policy,
                row,
                stale.as_deref(),
                age.last_ok_poll,
                failures.get(&row.cluster.name),
                now,
            )
        })
        .collect()
}

fn decide_one(
    p: &Policy,
    row: &ClusterRow,
    stale: Option<&str>,
    last_ok_poll: Option<Timestamp>,
    failures: Option<&Failures>,
    now: Timestamp,
) -> Decision {
    let c = &row.cluster;
    let decision = |verdict: Verdict, reason: String| Decision {
        cluster: c.name.clone(),
        verdict,
        reason,
    };
    if let Some((verdict, reason)) = left_alone(p, row, stale, now) {
        return decision(verdict, reason);
    }
    let cannot_stop = p.cannot_stop(c.cloud.as_deref());
    let cloud = c.cloud.as_deref().unwrap_or("its cloud");
    if cannot_stop && !p.down_when_cannot_stop {
        return decision(
            Verdict::Skip,
            format!(
                "{cloud} cannot stop a cluster and autostop.down_when_cannot_stop is false: left alone"
            ),
        );
    }
    let Some((action, reason)) = wanted_action(p, row, now, cannot_stop, cloud) else {
        return decision(Verdict::Skip, compliant_reason(p, row));
    };
    match waiting(p, &reason, last_ok_poll, failures, now) {
        Some(why) => decision(Verdict::Hold, why),
        None => decision(Verdict::Act(action), reason),
    }
}

/// Why a cluster is not the policy's to act on now (skipped or held), if so: exempt,
/// stale data, not UP, SkyPilot's own, or within the grace period.
fn left_alone(
    p: &Policy,
    row: &ClusterRow,
    stale: Option<&str>,
    now: Timestamp,
) -> Option<(Verdict, String)> {
    let c = &row.cluster;
    let skip = |reason: &str| Some((Verdict::Skip, reason.to_string()));
    if let Some(why) = p.exemption(row) {
        return Some((Verdict::Skip, why));
    }
    if let Some(why) = stale {
        return Some((Verdict::Hold, format!("holding back: {why}")));
    }
    match c.status {
        ClusterStatus::Up => {}
        ClusterStatus::Gone => return skip("status unknown: SkyPilot no longer lists it"),
        ClusterStatus::Stopped => return skip("not running (STOPPED)"),
        ClusterStatus::Init => {
            return Some((
                Verdict::Hold,
                "in transition (INIT: launching, starting or in an unknown state); decided once it is UP"
                    .into(),
            ))
        }
    }
    if CONTROLLER_PREFIXES.iter().any(|x| c.name.starts_with(x)) {
        return skip("SkyPilot's own controller: SkyPilot manages its autostop");
    }
    if c.is_managed {
        return skip("launched by SkyPilot's jobs controller, which tears it down itself");
    }
    let launched = c.launched_at.unwrap_or(row.first_seen);
    let up_for = now.secs_since(launched);
    if up_for < p.grace_secs {
        return Some((
            Verdict::Hold,
            format!(
                "launched {} ago, within the grace period of {}",
                human_duration(up_for),
                human_duration(p.grace_secs)
            ),
        ));
    }
    None
}

/// Why an action wanted for `reason` waits, if it does: an earlier one succeeded after
/// the last poll (its effect is not in the data yet), or the last attempts failed and
/// the back-off has not passed.
fn waiting(
    p: &Policy,
    reason: &str,
    last_ok_poll: Option<Timestamp>,
    failures: Option<&Failures>,
    now: Timestamp,
) -> Option<String> {
    if let (Some(ok), Some(poll)) = (failures.and_then(|f| f.last_ok_at), last_ok_poll) {
        if ok > poll {
            return Some(format!(
                "{reason}; but an action succeeded {} ago, after the last poll: waiting for the cluster manager to record its effect",
                human_duration(now.secs_since(ok))
            ));
        }
    }
    let f = failures.filter(|f| f.count > 0)?;
    let wait = p.backoff_secs(f.count) as f64;
    let next = f.last_at.plus_secs(wait);
    (now < next).then(|| {
        format!(
            "{reason}; but the last attempt failed {} ago ({} in a row): next try in {} (back-off {})",
            human_duration(now.secs_since(f.last_at)),
            f.count,
            human_duration(next.secs_since(now)),
            human_duration(wait)
        )
    })
}

/// The action an UP cluster past its grace period needs, with its reason; `None` when it
/// complies.
fn wanted_action(
    p: &Policy,
    row: &ClusterRow,
    now: Timestamp,
    cannot_stop: bool,
    cloud: &str,
) -> Option<(Action, String)> {
    let c = &row.cluster;
    if let (Some(max), Some(launched)) = (p.max_lifetime_secs, c.launched_at) {
        let up_for = now.secs_since(launched);
        if up_for > max {
            let down = p.enforce == Enforce::Down || cannot_stop;
            let action = if down { Action::Down } else { Action::Stop };
            let how = if down && p.enforce != Enforce::Down {
                format!("tearing it down ({cloud} cannot stop)")
            } else if down {
                "tearing it down".to_string()
            } else {
                "stopping it".to_string()
            };
            return Some((
                action,
                format!(
                    "UP for {} since launch, past autostop.max_lifetime_hours ({}): {how}",
                    human_duration(up_for),
                    human_duration(max)
                ),
            ));
        }
    }
    let limit = p.idle_minutes;
    let minutes = c.autostop_minutes;
    // Down is required when the policy says so or the cloud cannot stop; otherwise the
    // user's own choice of down is kept (never weakened to a stop).
    let must_down = p.enforce == Enforce::Down || cannot_stop;
    let down = must_down || c.autostop_to_down;
    let within = minutes >= 0 && minutes <= i64::from(limit);
    if within && (c.autostop_to_down || !must_down) {
        return None;
    }
    let what = if down { "autodown" } else { "autostop" };
    if minutes < 0 {
        return Some((
            Action::Autostop {
                minutes: limit,
                down,
            },
            format!(
                "autostop is off (a user cancelled it, it was never set, or a refresh wiped it): setting {what} after {limit}m idle"
            ),
        ));
    }
    if !within {
        return Some((
            Action::Autostop {
                minutes: limit,
                down,
            },
            format!(
                "autostop is {minutes}m, above the policy's {limit}m: lowering it to {what} after {limit}m idle"
            ),
        ));
    }
    // Within the limit but it would stop where the policy wants down. `within` makes
    // `minutes` fit in u32.
    let kept = u32::try_from(minutes).unwrap_or(limit);
    let why = if p.enforce == Enforce::Down {
        "autostop.enforce is \"down\"".to_string()
    } else {
        format!("{cloud} cannot stop a cluster")
    };
    Some((
        Action::Autostop {
            minutes: kept,
            down: true,
        },
        format!("autostop {kept}m would stop the cluster, but {why}: setting autodown after {kept}m idle"),
    ))
}

fn compliant_reason(p: &Policy, row: &ClusterRow) -> String {
    let c = &row.cluster;
    let how = if c.autostop_to_down { "down" } else { "stop" };
    format!(
        "compliant: autostop {}m ({how}) is within the policy's {}m",
        c.autostop_minutes, p.idle_minutes
    )
}

/// Glob match with `*` (any run, also empty) and `?` (one character).
pub fn glob_match(pattern: &str, name: &str) -> bool {
    wildmatch::WildMatch::new(pattern).matches(name)
}

/// The earlier attempts per cluster from audit entries (oldest first): an `error` of
/// `actor` counts a failure, an `ok` of `actor` starts the count over and is remembered;
/// other entries do not matter.
pub fn failures_from_audit(
    entries: &[crate::store::AuditEntry],
    actor: &str,
) -> HashMap<String, Failures> {
    use crate::store::AuditOutcome;
    let mut out: HashMap<String, Failures> = HashMap::new();
    for e in entries.iter().filter(|e| e.actor == actor) {
        let Some(cluster) = &e.cluster else { continue };
        match e.outcome {
            AuditOutcome::Error => {
                let f = out.entry(cluster.clone()).or_insert(Failures {
                    count: 0,
                    last_at: e.at,
                    last_ok_at: None,
                });
                f.count = f.count.saturating_add(1);
                f.last_at = e.at;
            }
            AuditOutcome::Ok => {
                out.insert(
                    cluster.clone(),
                    Failures {
                        count: 0,
                        last_at: e.at,
                        last_ok_at: Some(e.at),
                    },
                );
            }
            _ => {}
        }
    }
    out
}

#[cfg(test)]
mod tests;
