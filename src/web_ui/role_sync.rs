//! SkyPilot agrees with us: the role of every person of the users file (and every name
//! of the tokens file) inside SkyPilot is made equal to ours, at start and then every
//! `web_ui.role_sync_interval_secs`, through SkyPilot's own user API as the host's
//! service account.
//!
//! - A name SkyPilot has not seen is made known the way the gateway would: one
//!   `GET /users/role` with the name in the identity header (SkyPilot adds the user with
//!   `rbac.default_role`), then its role is set.
//! - A role someone changed inside SkyPilot (its dashboard, `/users/update` by an admin)
//!   is drift: ours is restored and the audit says who had what.
//! - SkyPilot's `rbac.default_role` must be `viewer`, so that an identity we did not
//!   sync gets nothing. The rendered config.yaml sets it; with SkyPilot's state in
//!   PostgreSQL (where that file may hold only one key) it is written into SkyPilot's
//!   config in the database through `POST /workspaces/config`, which is where SkyPilot
//!   keeps the rest of its config then (`sky/skypilot_config.py`, `api_server_config`).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};

use super::identity::Role;
use super::ownership::user_id_of_name;
use crate::store::{AuditAction, AuditEntry, AuditOutcome};
use crate::web_ui::state::WebState;

/// The actor the audit names for the sync.
pub(crate) const ACTOR: &str = "web-ui:role-sync";

/// What one sync did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(crate) struct Report {
    /// (name, SkyPilot's role before or "" when new, ours).
    pub(crate) changed: Vec<(String, String, Role)>,
    /// Whether `rbac.default_role` was written.
    pub(crate) default_role_set: bool,
    /// Why SkyPilot's `rbac.default_role` is not `viewer` and could not be made so (the
    /// roles are synced all the same).
    pub(crate) default_role_problem: Option<String>,
}

/// The roles the web UI grants, by name: the users file's and the tokens file's, and
/// those of the people of single sign-on with a live session or CLI login (the role
/// their groups map to now; the file's wins for a name in both).
async fn desired(state: &Arc<WebState>) -> BTreeMap<String, Role> {
    let mut want: BTreeMap<String, Role> = BTreeMap::new();
    if let Some(sso) = &state.sso {
        let now = state.clock.now();
        match state.read(move |s| Ok(s.sso_people(now)?)).await {
            Ok(people) => {
                for (name, groups) in people {
                    if let Some(role) = sso.role_of(&groups) {
                        want.insert(name, role);
                    }
                }
            }
            Err(e) => {
                tracing::warn!(error = %format!("{e:#}"), "role sync: cannot read the single sign-on people")
            }
        }
    }
    want.extend(state.users().roles());
    want
}

/// One pass: see the module's documentation.
pub(crate) async fn sync_once(state: &Arc<WebState>) -> anyhow::Result<Report> {
    let mut report = Report::default();
    match ensure_default_role(state).await {
        Ok(set) => report.default_role_set = set,
        Err(e) => report.default_role_problem = Some(format!("{e:#}")),
    }
    let want = desired(state).await;
    if want.is_empty() {
        return Ok(report);
    }
    let listed = state
        .sky
        .direct_json(reqwest::Method::GET, "users", None)
        .await
        .map_err(|e| anyhow::anyhow!("cannot list SkyPilot's users: {e}"))?;
    let mut have: BTreeMap<String, String> = BTreeMap::new();
    for u in listed.as_array().into_iter().flatten() {
        if let (Some(id), Some(role)) = (
            u.get("id").and_then(Value::as_str),
            u.get("role").and_then(Value::as_str),
        ) {
            have.insert(id.to_string(), role.to_string());
        }
    }
    let header = state.config.web_ui.gateway.identity_header.clone();
    for (name, role) in want {
        let id = user_id_of_name(&name);
        let current = match have.get(&id) {
            Some(r) => r.clone(),
            None => {
                // Make the person known to SkyPilot as the gateway would.
                let seen = state
                    .sky
                    .acting_as(&header, &name)
                    .direct_json(reqwest::Method::GET, "users/role", None)
                    .await
                    .map_err(|e| anyhow::anyhow!("cannot make {name:?} known to SkyPilot: {e}"))?;
                if seen.get("id").and_then(Value::as_str) != Some(id.as_str()) {
                    anyhow::bail!(
                        "SkyPilot did not take {name:?} from the {header} header as user {id} (answer: {seen}); is web_ui.gateway.identity_header SkyPilot's auth.external_proxy.header_name?"
                    );
                }
                String::new()
            }
        };
        if current == role.as_str() {
            continue;
        }
        state
            .sky
            .direct_json(
                reqwest::Method::POST,
                "users/update",
                Some(&json!({ "user_id": id, "role": role.as_str() })),
            )
            .await
            .map_err(|e| {
                anyhow::anyhow!(
                    "cannot set the role of {name:?} in SkyPilot to {}: {e}",
                    role.as_str()
                )
            })?;
        report.changed.push((name, current, role));
    }
    Ok(report)
}

/// Makes SkyPilot's `rbac.default_role` `viewer` when it is not; true when it wrote it.
async fn ensure_default_role(state: &Arc<WebState>) -> anyhow::Result<bool> {
    let config = state
        .sky
        .call_get_json("workspaces/config")
        .await
        .map_err(|e| {
            anyhow::anyhow!("cannot read SkyPilot's config (GET /workspaces/config): {e}")
        })?;
    let current = config
        .get("rbac")
        .and_then(|r| r.get("default_role"))
        .and_then(Value::as_str)
        .map(str::to_ascii_lowercase);
    if current.as_deref() == Some("viewer") {
        return Ok(false);
    }
    let mut new = if config.is_object() {
        config
    } else {
        json!({})
    };
    new["rbac"]["default_role"] = json!("viewer");
    let sent = state
        .sky
        .call_json("workspaces/config", json!({ "config": new }))
        .await;
    match sent {
        Ok(_) => Ok(true),
        Err(e) => anyhow::bail!(
            "SkyPilot's rbac.default_role is {} (a person we did not sync would get it), and it could not be set to viewer through POST /workspaces/config: {e}; set `rbac: {{default_role: viewer}}` in SkyPilot's config.yaml",
            current.as_deref().unwrap_or("unset, so admin")
        ),
    }
}

async fn audit(state: &Arc<WebState>, report: &Report) {
    let now = state.clock.now();
    let mut entries: Vec<AuditEntry> = report
        .changed
        .iter()
        .map(|(name, before, role)| AuditEntry {
            at: now,
            actor: ACTOR.to_string(),
            action: AuditAction::Role,
            cluster: None,
            outcome: AuditOutcome::Ok,
            detail: Some(if before.is_empty() {
                format!("{name}: new in SkyPilot, role set to {}", role.as_str())
            } else {
                format!(
                    "{name}: SkyPilot had role {before:?} (drift), set back to {}",
                    role.as_str()
                )
            }),
        })
        .collect();
    if report.default_role_set {
        entries.push(AuditEntry {
            at: now,
            actor: ACTOR.to_string(),
            action: AuditAction::Role,
            cluster: None,
            outcome: AuditOutcome::Ok,
            detail: Some("SkyPilot's rbac.default_role set to viewer".to_string()),
        });
    }
    super::state::write_audit(state.db_path.clone(), entries).await;
}

/// One pass now, audited (after a single sign-on login: the person's role in SkyPilot
/// is set before their first request rather than at the next interval).
pub(crate) async fn pass_now(state: Arc<WebState>) {
    match sync_once(&state).await {
        Ok(report) => audit(&state, &report).await,
        Err(e) => {
            tracing::warn!(error = %format!("{e:#}"), "role sync after a login failed; the next interval retries")
        }
    }
}

/// The sync loop: a pass at once, then one every `interval`, for ever (the web UI ends
/// it with its runtime).
pub(crate) async fn run(state: Arc<WebState>, interval: Duration) {
    let mut failing = false;
    loop {
        match sync_once(&state).await {
            Ok(report) => {
                for (name, before, role) in &report.changed {
                    if before.is_empty() {
                        tracing::info!(user = %name, role = role.as_str(), "role sync: new in SkyPilot");
                    } else {
                        tracing::warn!(user = %name, skypilot_had = %before, role = role.as_str(), "role sync: drift restored");
                    }
                }
                audit(&state, &report).await;
                if let Some(p) = &report.default_role_problem {
                    if !failing {
                        tracing::error!(error = %p, "role sync: SkyPilot's default role");
                    }
                    failing = true;
                    tokio::time::sleep(interval).await;
                    continue;
                }
                if failing {
                    tracing::info!("role sync: SkyPilot's roles match the users file again");
                }
                failing = false;
            }
            Err(e) => {
                if !failing {
                    tracing::warn!(error = %format!("{e:#}"), "role sync failed; retrying every {} s", interval.as_secs());
                }
                failing = true;
            }
        }
        tokio::time::sleep(interval).await;
    }
}
