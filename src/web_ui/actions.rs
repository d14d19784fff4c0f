//! Actions on a cluster, for the console and the JSON API alike: stop, down, set or cancel
//! autostop. Admins act on any cluster; anyone else only on the clusters they own (the
//! cluster's owner is them, [`super::ownership`]); viewers never. Each action goes to
//! SkyPilot's API server as the acting person (their name in SkyPilot's identity header,
//! so SkyPilot's own request table names them) and lands in the audit table with the
//! acting user and SkyPilot's error.

use std::sync::Arc;

use serde::Deserialize;

use super::identity::{Identity, Role};
use crate::store::{AuditAction, AuditEntry, AuditOutcome, ClusterRow};
use crate::web_ui::state::WebState;

/// Longest autostop accepted, in minutes (a week).
pub(crate) const MAX_AUTOSTOP_MINUTES: i64 = 7 * 24 * 60;

/// What to do to a cluster.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Action {
    Stop,
    Down,
    /// Stop (or tear down) after this many idle minutes.
    Autostop {
        minutes: i64,
        down: bool,
    },
    CancelAutostop,
}

/// An action as a form or JSON body names it.
#[derive(Debug, Clone, Default, Deserialize)]
pub(crate) struct ActionRequest {
    pub(crate) action: String,
    #[serde(default)]
    pub(crate) minutes: Option<String>,
    #[serde(default)]
    pub(crate) down: Option<String>,
}

impl Action {
    /// The names used in URLs and bodies.
    pub(crate) const NAMES: [&'static str; 4] = ["stop", "down", "autostop", "cancel_autostop"];

    pub(crate) fn parse(req: &ActionRequest) -> Result<Action, String> {
        match req.action.as_str() {
            "stop" => Ok(Action::Stop),
            "down" => Ok(Action::Down),
            "cancel_autostop" => Ok(Action::CancelAutostop),
            "autostop" => {
                let raw = req.minutes.as_deref().unwrap_or("").trim();
                let minutes: i64 = raw.parse().map_err(|_| {
                    format!("minutes {raw:?}: expected a whole number of idle minutes, 1 to {MAX_AUTOSTOP_MINUTES}")
                })?;
                if !(1..=MAX_AUTOSTOP_MINUTES).contains(&minutes) {
                    return Err(format!(
                        "minutes {minutes}: expected 1 to {MAX_AUTOSTOP_MINUTES}"
                    ));
                }
                let down = matches!(req.down.as_deref(), Some("true" | "on" | "1" | "yes"));
                Ok(Action::Autostop { minutes, down })
            }
            other => Err(format!(
                "unknown action {other:?}: expected one of {}",
                Action::NAMES.join(", ")
            )),
        }
    }

    pub(crate) fn name(self) -> &'static str {
        match self {
            Action::Stop => "stop",
            Action::Down => "down",
            Action::Autostop { .. } => "autostop",
            Action::CancelAutostop => "cancel_autostop",
        }
    }

    fn audit_action(self) -> AuditAction {
        match self {
            Action::Stop => AuditAction::Stop,
            Action::Down => AuditAction::Down,
            Action::Autostop { .. } => AuditAction::Autostop,
            Action::CancelAutostop => AuditAction::CancelAutostop,
        }
    }

    /// A sentence for confirmation pages and the audit detail.
    pub(crate) fn describe(self) -> String {
        match self {
            Action::Stop => "stop".into(),
            Action::Down => "tear down (terminate; its disks are deleted)".into(),
            Action::Autostop { minutes, down } => format!(
                "{} after {minutes} idle minute(s)",
                if down { "tear down" } else { "stop" }
            ),
            Action::CancelAutostop => "cancel autostop".into(),
        }
    }
}

/// Why an action was not carried out.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum ActError {
    /// The host database does not know the cluster.
    NotFound(String),
    /// The caller may not act on it.
    Forbidden(String),
    /// SkyPilot (or the way to it) failed: the cause in one line
    /// ([`crate::skypilot::ClientError::cause`]) and SkyPilot's whole error.
    Failed { cause: String, raw: String },
    /// The host database could not be read or written.
    Internal(String),
}

impl std::fmt::Display for ActError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ActError::NotFound(m)
            | ActError::Forbidden(m)
            | ActError::Failed { cause: m, .. }
            | ActError::Internal(m) => f.write_str(m),
        }
    }
}

/// Whether `who` may act on `cluster`: an admin, or a `user` who owns it (the rule of
/// [`super::ownership`], the gateway's too); a viewer never.
pub(crate) fn may_act(who: &Identity, cluster: &ClusterRow) -> bool {
    match who.role {
        Role::Admin => true,
        Role::User => super::ownership::owns(
            who,
            cluster.cluster.user_name.as_deref(),
            cluster.cluster.user_hash.as_deref(),
        ),
        Role::Viewer => false,
    }
}

/// The actor recorded in the audit table for a person acting through the web UI.
pub(crate) fn actor(who: &Identity) -> String {
    format!("web-ui:{}", who.name)
}

async fn audit(state: &Arc<WebState>, entry: AuditEntry) {
    super::state::write_audit(state.db_path.clone(), vec![entry]).await;
}

/// Carries out `action` on `cluster` for `who`, and audits it (refusals included).
pub(crate) async fn act(
    state: &Arc<WebState>,
    who: &Identity,
    cluster: &str,
    action: Action,
) -> Result<(), ActError> {
    let name = cluster.to_string();
    let row = state
        .read(move |s| Ok(s.cluster_detail(&name)?.map(|d| d.row)))
        .await
        .map_err(|e| ActError::Internal(format!("{e:#}")))?;
    let Some(row) = row.filter(|r| r.gone_at.is_none()) else {
        return Err(ActError::NotFound(format!(
            "cluster {cluster:?} is not in the host database (or SkyPilot no longer lists it)"
        )));
    };
    let now = state.clock.now();
    let mut entry = AuditEntry {
        at: now,
        actor: actor(who),
        action: action.audit_action(),
        cluster: Some(cluster.to_string()),
        outcome: AuditOutcome::Ok,
        detail: Some(action.describe()),
    };
    if !may_act(who, &row) {
        let why = format!(
            "{} ({}) may act only on their own clusters; {cluster:?} belongs to {}",
            who.name,
            who.role.as_str(),
            row.cluster.user_name.as_deref().unwrap_or("nobody known")
        );
        entry.outcome = AuditOutcome::Refused;
        entry.detail = Some(why.clone());
        audit(state, entry).await;
        return Err(ActError::Forbidden(why));
    }
    // As the person: SkyPilot's request table names them, and SkyPilot's RBAC (kept
    // equal to ours by the role sync) decides again.
    let sky = state
        .sky
        .acting_as(&state.config.web_ui.gateway.identity_header, &who.name);
    let sent = match action {
        Action::Stop => sky.stop(cluster).await,
        Action::Down => sky.down(cluster).await,
        Action::Autostop { minutes, down } => sky.autostop(cluster, minutes, down).await,
        Action::CancelAutostop => sky.autostop(cluster, -1, false).await,
    };
    entry.at = state.clock.now();
    let result = match sent {
        Ok(()) => Ok(()),
        Err(e) => {
            let (cause, raw) = (e.cause(), e.to_string());
            tracing::warn!(cluster = %crate::terminal::clean(cluster), error = %raw, "web UI action failed in SkyPilot");
            entry.outcome = AuditOutcome::Error;
            entry.detail = Some(format!("{}: {cause}", action.describe()));
            Err(ActError::Failed { cause, raw })
        }
    };
    tracing::info!(
        actor = %entry.actor,
        action = action.name(),
        cluster = %crate::terminal::clean(cluster),
        outcome = %entry.outcome,
        "web UI action"
    );
    audit(state, entry).await;
    result
}

/// Records a login or logout (or a failed login) in the audit table.
pub(crate) async fn audit_login(
    state: &Arc<WebState>,
    name: &str,
    action: AuditAction,
    outcome: AuditOutcome,
    detail: Option<String>,
) {
    let entry = AuditEntry {
        at: state.clock.now(),
        actor: format!("web-ui:{name}"),
        action,
        cluster: None,
        outcome,
        detail,
    };
    audit(state, entry).await;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::{Cluster, ClusterStatus};
    use crate::time::Timestamp;
    use crate::web_ui::identity::AuthMethod;

    fn req(action: &str, minutes: Option<&str>, down: Option<&str>) -> ActionRequest {
        ActionRequest {
            action: action.into(),
            minutes: minutes.map(str::to_string),
            down: down.map(str::to_string),
        }
    }

    #[test]
    fn actions_parse() {
        assert_eq!(Action::parse(&req("stop", None, None)), Ok(Action::Stop));
        assert_eq!(
            Action::parse(&req("autostop", Some("30"), Some("on"))),
            Ok(Action::Autostop {
                minutes: 30,
                down: true
            })
        );
        assert!(Action::parse(&req("autostop", Some("0"), None)).is_err());
        assert!(Action::parse(&req("autostop", Some("x"), None)).is_err());
        assert!(Action::parse(&req("reboot", None, None))
            .unwrap_err()
            .contains("cancel_autostop"));
    }

    #[test]
    fn owners_and_admins_may_act() {
        let mut c = Cluster::bare("c", ClusterStatus::Up);
        c.user_name = Some("bob".into());
        let row = ClusterRow::new(c, Timestamp::from_secs(1));
        let who = |name: &str, role| Identity::named(name, role, AuthMethod::Session);
        assert!(may_act(&who("bob", Role::User), &row));
        assert!(!may_act(&who("bob", Role::Viewer), &row));
        assert!(!may_act(&who("alice", Role::User), &row));
        assert!(may_act(&who("alice", Role::Admin), &row));
        assert!(!may_act(&who("", Role::User), &row));
    }
}
