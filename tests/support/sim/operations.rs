//! The operations (`POST /<op>`): what each does to the fleet, how it ends, and the
//! errors SkyPilot raises for them.

use serde_json::{json, Map, Value};

use super::faults::Fault;
use super::fleet::{apply_status, SimCluster, SimStatus};
use super::records::{render_cost, render_status};
use super::{py_repr, SimState, Simulator, ANSI_BRIGHT, ANSI_RESET, ANSI_YELLOW, PICKLED_STANDIN};

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
    JobsQueue,
    ServeStatus,
}

impl Op {
    pub const ALL: [Op; 9] = [
        Op::Status,
        Op::CostReport,
        Op::Autostop,
        Op::Stop,
        Op::Down,
        Op::Start,
        Op::Queue,
        Op::JobsQueue,
        Op::ServeStatus,
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
            Op::JobsQueue => "/jobs/queue/v2",
            Op::ServeStatus => "/serve/status",
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
            Op::JobsQueue => "sky.jobs.queue_v2",
            Op::ServeStatus => "sky.serve.status",
        }
    }

    pub(super) fn from_path(p: &str) -> Option<Op> {
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

fn int_field(body: &Map<String, Value>, name: &str) -> Option<i64> {
    match body.get(name)? {
        Value::Number(n) => n.as_i64(),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

/// SkyPilot's serialized exception: `{"object": <pickle>, "type": ..., "message": ...}`.
pub(super) fn error_json(error_type: &str, message: &str) -> String {
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

pub(super) fn execute(
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
        // Without a jobs controller (no managed job ever launched, and no consolidation
        // mode) SkyPilot has no queue to read.
        Op::JobsQueue if !st.jobs_controller => Err((
            "ClusterNotUpError".to_string(),
            "No in-progress managed jobs.".to_string(),
        )),
        Op::JobsQueue => match st.outcome(op, "") {
            Outcome::Fail {
                error_type,
                message,
            } => Err((error_type, message)),
            Outcome::Succeed => Ok(super::jobs::render_queue(&st.jobs, body, st.now_f64())),
        },
        // SkyPilot first checks that the internet answers (HEAD https://8.8.8.8 and
        // https://1.1.1.1), then that a serve controller is up.
        Op::ServeStatus if st.network_down => Err((
            "RuntimeError".to_string(),
            "Failed to refresh services status due to network error.".to_string(),
        )),
        Op::ServeStatus if !st.serve_controller => Err((
            "ClusterNotUpError".to_string(),
            "No live services.".to_string(),
        )),
        Op::ServeStatus => match st.outcome(op, "") {
            Outcome::Fail {
                error_type,
                message,
            } => Err((error_type, message)),
            Outcome::Succeed => Ok(super::serve::render_status(&st.services)),
        },
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
    // The queue is asked of the jobs controller, named after the server's user.
    let cluster = match op {
        Op::JobsQueue => Some(format!("sky-jobs-controller-{}", super::SERVER_USER_ID)),
        Op::ServeStatus => Some(format!("sky-serve-controller-{}", super::SERVER_USER_ID)),
        _ => cluster,
    };
    (result, cluster)
}

impl SimState {
    pub(super) fn outcome(&self, op: Op, cluster: &str) -> Outcome {
        self.outcomes
            .get(&(op, Some(cluster.to_string())))
            .or_else(|| self.outcomes.get(&(op, None)))
            .cloned()
            .unwrap_or(Outcome::Succeed)
    }
}

impl Simulator {
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
}
