//! The authorization half of the gateway: the table of [`crate::web_ui::rules`] applied
//! to a logged-in person's request, the owner checks (host database first, then SkyPilot
//! for clusters it has not seen, jobs, services and pools), and the audit of writes and
//! refusals.

use axum::body::Body;
use axum::extract::Request;
use axum::http::header::{self};
use axum::http::StatusCode;
use axum::response::Response;

use crate::store::{AuditAction, AuditEntry, AuditOutcome};
use crate::web_ui::identity::{AuthMethod, Identity};
use crate::web_ui::ownership::{owns, skypilot_id};
use crate::web_ui::rules::{self, Access, Kind, Owned};

use super::{bounded, error, Gateway};

/// What the audit records of one request through the gateway.
pub(super) struct Audited {
    actor: String,
    what: String,
    names: Vec<String>,
}

impl Gateway {
    /// A logged-in person's request: the table's decision, the owner check, the
    /// forward, and the audit of writes and refusals.
    pub(super) async fn authorized(&self, req: Request, who: Identity) -> Response {
        let path = rules::routed_path(req.uri().path());
        let method = req.method().as_str().to_string();
        let (access, kind) = rules::decide(who.role, &method, &path);
        let mut audited = Audited {
            actor: actor(&who),
            what: format!("{method} {path}"),
            names: Vec::new(),
        };
        let req = match access {
            Access::Allow if kind == Kind::Write => match self.peek_names(req).await {
                Ok((req, names)) => {
                    audited.names = names;
                    req
                }
                Err(why) => {
                    self.audit(&audited, AuditOutcome::Refused, why.clone())
                        .await;
                    return error(StatusCode::BAD_REQUEST, &why);
                }
            },
            Access::Allow => req,
            Access::Deny => {
                let why = format!(
                    "{method} {path} refused: role {} of {} may not use it (the gateway's route table; docs/gateway.md)",
                    who.role.as_str(),
                    who.name
                );
                self.audit(&audited, AuditOutcome::Refused, why.clone())
                    .await;
                return error(StatusCode::FORBIDDEN, &why);
            }
            Access::Own(owned) => match self.check_owner(req, &who, owned, &path).await {
                Ok((req, names)) => {
                    audited.names = names;
                    req
                }
                Err((status, why)) => {
                    self.audit(&audited, AuditOutcome::Refused, why.clone())
                        .await;
                    return error(status, &why);
                }
            },
        };
        let resp = self.forward(req, Some(&who)).await;
        if kind == Kind::Write {
            let status = resp.status();
            let request_id = resp
                .headers()
                .get("x-skypilot-request-id")
                .and_then(|v| v.to_str().ok())
                .map(str::to_string);
            let outcome =
                if status.is_success() || status.is_redirection() || status.as_u16() == 101 {
                    AuditOutcome::Ok
                } else {
                    AuditOutcome::Error
                };
            let detail = match request_id {
                Some(id) => format!("HTTP {}, SkyPilot request {id}", status.as_u16()),
                None => format!("HTTP {}", status.as_u16()),
            };
            self.audit(&audited, outcome, detail).await;
        }
        resp
    }

    /// For the audit of an allowed write: the clusters a small JSON body names
    /// (`cluster_name`, `cluster_names`), read only when the body declares a length within
    /// `max_control_body_bytes`; the request comes back with its body whole.
    pub(super) async fn peek_names(&self, req: Request) -> Result<(Request, Vec<String>), String> {
        let small_json = req
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|t| t.starts_with("application/json"))
            && req
                .headers()
                .get(header::CONTENT_LENGTH)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse::<usize>().ok())
                .is_some_and(|n| n <= self.inner.max_control_body);
        if !small_json {
            return Ok((req, Vec::new()));
        }
        let (parts, body) = req.into_parts();
        let bytes = axum::body::to_bytes(body, self.inner.max_control_body)
            .await
            .map_err(|e| format!("the body could not be read as its Content-Length says: {e}"))?;
        let names = serde_json::from_slice::<serde_json::Value>(&bytes)
            .ok()
            .and_then(|v| cluster_names(&v).ok())
            .unwrap_or_default();
        Ok((Request::from_parts(parts, Body::from(bytes)), names))
    }

    /// Appends one gateway entry to the audit table (a failure is logged, never shown:
    /// the request itself already went its way).
    pub(super) async fn audit(&self, a: &Audited, outcome: AuditOutcome, detail: String) {
        let names = if a.names.is_empty() {
            String::new()
        } else {
            format!(" ({})", a.names.join(", "))
        };
        let entry = AuditEntry {
            at: crate::time::Clock::now(&crate::time::SystemClock),
            actor: a.actor.clone(),
            action: AuditAction::Request,
            cluster: a.names.first().cloned(),
            outcome,
            detail: Some(bounded(&format!("{}{names}: {detail}", a.what))),
        };
        tracing::info!(
            actor = %entry.actor,
            request = %crate::terminal::clean(&a.what),
            outcome = %entry.outcome,
            "gateway"
        );
        crate::web_ui::state::write_audit(self.inner.database.clone(), vec![entry]).await;
    }
}

/// The actor the audit names for a request through the gateway.
pub(super) fn actor(who: &Identity) -> String {
    match who.method {
        AuthMethod::SkyPilotServiceAccount => format!("gateway:{} (service account)", who.name),
        _ => format!("gateway:{}", who.name),
    }
}

impl Gateway {
    /// Per-owner control ([`Access::Own`]): finds what the request names (the query, or
    /// its JSON body read up to `max_control_body_bytes`), and refuses unless `who` owns
    /// every one of them. Returns the request with its body restored (or, for
    /// `/api/cancel`, bound to the caller) and the names, for the audit.
    pub(super) async fn check_owner(
        &self,
        req: Request,
        who: &Identity,
        owned: Owned,
        path: &str,
    ) -> Result<(Request, Vec<String>), (StatusCode, String)> {
        let me = format!("{} ({})", who.name, who.role.as_str());
        let refuse = |m: String| {
            (
                StatusCode::FORBIDDEN,
                format!("{path} by {me} refused: {m}"),
            )
        };
        if owned == Owned::ClusterQuery {
            let name = url::form_urlencoded::parse(req.uri().query().unwrap_or("").as_bytes())
                .find(|(k, _)| k == "cluster_name")
                .map(|(_, v)| v.into_owned())
                .ok_or_else(|| refuse("the query names no cluster (cluster_name)".into()))?;
            self.check_clusters(who, std::slice::from_ref(&name), false)
                .await
                .map_err(refuse)?;
            return Ok((req, vec![name]));
        }
        let (parts, body) = req.into_parts();
        let limit = self.inner.max_control_body;
        let bytes = axum::body::to_bytes(body, limit).await.map_err(|e| {
            (
                StatusCode::PAYLOAD_TOO_LARGE,
                format!(
                    "the body of {path} could not be read within {limit} bytes (web_ui.gateway.max_control_body_bytes): {e}"
                ),
            )
        })?;
        let mut body: serde_json::Value = serde_json::from_slice(&bytes).map_err(|e| {
            refuse(format!(
                "the body is not JSON ({e}), so what it names is unknown"
            ))
        })?;
        let names = self
            .body_names(who, owned, &mut body)
            .await
            .map_err(refuse)?;
        let bytes = if owned == Owned::Requests {
            serde_json::to_vec(&body).map_err(|e| refuse(format!("cannot write the body: {e}")))?
        } else {
            bytes.to_vec()
        };
        let mut parts = parts;
        parts.headers.remove(header::CONTENT_LENGTH);
        Ok((Request::from_parts(parts, Body::from(bytes)), names))
    }

    /// What a control body names, each owned by `who` (else why not); a cancel of
    /// requests is bound to `who` in `body`.
    async fn body_names(
        &self,
        who: &Identity,
        owned: Owned,
        body: &mut serde_json::Value,
    ) -> Result<Vec<String>, String> {
        Ok(match owned {
            Owned::Clusters => {
                let names = cluster_names(body)?;
                self.check_clusters(who, &names, false).await?;
                names
            }
            Owned::Launch => match body.get("cluster_name") {
                None | Some(serde_json::Value::Null) => Vec::new(),
                Some(v) => {
                    let name = v
                        .as_str()
                        .ok_or_else(|| "cluster_name is not a string".to_string())?
                        .to_string();
                    let names = vec![name];
                    self.check_clusters(who, &names, true).await?;
                    names
                }
            },
            Owned::Jobs => self.check_jobs(who, body).await?,
            Owned::Services => {
                self.check_services(
                    who,
                    body,
                    "serve/status",
                    "service_names",
                    "service_name",
                    false,
                )
                .await?
            }
            Owned::Pools { create } => {
                self.check_services(
                    who,
                    body,
                    "jobs/pool_status",
                    "pool_names",
                    "pool_name",
                    create,
                )
                .await?
            }
            Owned::Requests => {
                // SkyPilot binds a non-admin's cancel to the caller (`role_filter`); the
                // gateway binds it too, so it holds even if SkyPilot took the person for
                // an admin.
                if let Some(obj) = body.as_object_mut() {
                    obj.insert(
                        "user_id".into(),
                        serde_json::Value::String(skypilot_id(who)),
                    );
                }
                strings(body, "request_ids")?
            }
            Owned::ClusterQuery => Vec::new(),
        })
    }

    /// Refuses unless `who` owns every cluster of `names`. A cluster the host database
    /// does not know (launched since the cluster manager's last poll) is asked of
    /// SkyPilot; one SkyPilot does not know either is refused, or let through when
    /// `new_ok` (a launch of a new cluster).
    pub(super) async fn check_clusters(
        &self,
        who: &Identity,
        names: &[String],
        new_ok: bool,
    ) -> Result<(), String> {
        for name in names {
            let owner = match self.owner_in_database(name).await? {
                Some(o) => Some(o),
                None => {
                    let found = self
                        .inner
                        .sky
                        .status_named(std::slice::from_ref(name))
                        .await
                        .map_err(|e| {
                            format!("cannot ask SkyPilot who owns cluster {name:?}: {e}")
                        })?;
                    found
                        .into_iter()
                        .find(|c| &c.name == name)
                        .map(|c| (c.user_name, c.user_hash))
                }
            };
            let Some((owner_name, owner_hash)) = owner else {
                if new_ok {
                    continue;
                }
                return Err(format!(
                    "cluster {name:?} is not known to the host database or to SkyPilot"
                ));
            };
            if !owns(who, owner_name.as_deref(), owner_hash.as_deref()) {
                let shown = owner_name.or(owner_hash).unwrap_or_default();
                return Err(format!(
                    "cluster {name:?} belongs to {shown:?}; a {} acts only on their own",
                    who.role.as_str()
                ));
            }
        }
        Ok(())
    }

    /// Refuses a managed-jobs request unless it names jobs (by `job_ids`, `job_id` or
    /// `name`) that all belong to `who`; `all` and `all_users` are refused.
    pub(super) async fn check_jobs(
        &self,
        who: &Identity,
        body: &serde_json::Value,
    ) -> Result<Vec<String>, String> {
        if flag(body, "all") || flag(body, "all_users") {
            return Err(
                "`all` / `all_users` act on other people's jobs: name your jobs instead".into(),
            );
        }
        let mut ids: Vec<i64> = match body.get("job_ids") {
            None | Some(serde_json::Value::Null) => Vec::new(),
            Some(v) => v
                .as_array()
                .and_then(|a| a.iter().map(|i| i.as_i64()).collect::<Option<Vec<_>>>())
                .ok_or("job_ids is not a list of numbers")?,
        };
        if let Some(id) = body.get("job_id").filter(|v| !v.is_null()) {
            ids.push(id.as_i64().ok_or("job_id is not a number")?);
        }
        let name = match body.get("name") {
            None | Some(serde_json::Value::Null) => None,
            Some(v) => Some(v.as_str().ok_or("name is not a string")?.to_string()),
        };
        if ids.is_empty() && name.is_none() {
            return Err(
                "the request names no job (job_ids, job_id or name), so its owner is unknown"
                    .into(),
            );
        }
        let mut query = serde_json::json!({ "all_users": true, "skip_finished": false });
        if !ids.is_empty() {
            query["job_ids"] = serde_json::json!(ids);
        }
        let answer = self
            .inner
            .sky
            .call_json("jobs/queue/v2", query)
            .await
            .map_err(|e| format!("cannot ask SkyPilot who owns the jobs: {e}"))?;
        let jobs = answer
            .as_array()
            .and_then(|a| a.first())
            .and_then(|j| j.as_array())
            .or_else(|| answer.get("jobs").and_then(|j| j.as_array()))
            .cloned()
            .unwrap_or_default();
        let wanted: Vec<&serde_json::Value> = jobs
            .iter()
            .filter(|j| {
                let id_ok = ids.is_empty()
                    || j.get("job_id")
                        .and_then(|v| v.as_i64())
                        .is_some_and(|i| ids.contains(&i));
                let name_ok = name
                    .as_deref()
                    .is_none_or(|n| j.get("job_name").and_then(|v| v.as_str()) == Some(n));
                id_ok && name_ok
            })
            .collect();
        if wanted.is_empty() {
            return Err("SkyPilot knows no such managed job".into());
        }
        for j in &wanted {
            let hash = j.get("user_hash").and_then(|v| v.as_str());
            let owner = j.get("user_name").and_then(|v| v.as_str());
            if !owns(who, owner, hash) {
                return Err(format!(
                    "managed job {} belongs to {:?}; a {} acts only on their own",
                    j.get("job_id").map(|v| v.to_string()).unwrap_or_default(),
                    owner.or(hash).unwrap_or(""),
                    who.role.as_str()
                ));
            }
        }
        let mut names: Vec<String> = ids.iter().map(|i| format!("job {i}")).collect();
        names.extend(name.map(|n| format!("job {n}")));
        Ok(names)
    }

    /// Refuses a services (or pools) request unless the services it names (`list_key`
    /// or `one_key`) all belong to `who`; `all` is refused. With `create`, a name
    /// SkyPilot does not know is a new one and passes.
    pub(super) async fn check_services(
        &self,
        who: &Identity,
        body: &serde_json::Value,
        op: &str,
        list_key: &str,
        one_key: &str,
        create: bool,
    ) -> Result<Vec<String>, String> {
        if flag(body, "all") {
            return Err("`all` acts on other people's services: name yours instead".into());
        }
        let mut names = strings(body, list_key)?;
        names.extend(strings(body, one_key)?);
        if names.is_empty() {
            return Err(format!(
                "the request names nothing ({list_key} or {one_key}), so its owner is unknown"
            ));
        }
        let answer = self
            .inner
            .sky
            .call_json(op, serde_json::json!({ list_key: names }))
            .await
            .map_err(|e| format!("cannot ask SkyPilot who owns {names:?}: {e}"))?;
        let records = answer.as_array().cloned().unwrap_or_default();
        for n in &names {
            let rec = records.iter().find(|r| {
                r.get("name")
                    .or_else(|| r.get("service_name"))
                    .and_then(|v| v.as_str())
                    == Some(n.as_str())
            });
            let Some(rec) = rec else {
                if create {
                    continue;
                }
                return Err(format!("SkyPilot knows no {n:?}"));
            };
            let hash = rec.get("user_hash").and_then(|v| v.as_str());
            let owner = rec.get("user_name").and_then(|v| v.as_str());
            if !owns(who, owner, hash) {
                return Err(format!(
                    "{n:?} belongs to {:?}; a {} acts only on their own",
                    owner.or(hash).unwrap_or(""),
                    who.role.as_str()
                ));
            }
        }
        Ok(names)
    }

    /// The owner of `cluster` in the host database, as (SkyPilot's `user_name`,
    /// `user_hash`); `None` when the database does not know it (or it is gone).
    pub(super) async fn owner_in_database(
        &self,
        cluster: &str,
    ) -> Result<Option<(Option<String>, Option<String>)>, String> {
        let db = self.inner.database.clone();
        if !db.exists() {
            return Ok(None);
        }
        let name = cluster.to_string();
        let read = tokio::task::spawn_blocking(move || {
            let store = crate::store::Store::open_read_only(&db).map_err(|e| e.to_string())?;
            let row = store.cluster_detail(&name).map_err(|e| e.to_string())?;
            Ok::<_, String>(row.and_then(|d| {
                if d.row.gone_at.is_some()
                    || (d.row.cluster.user_name.is_none() && d.row.cluster.user_hash.is_none())
                {
                    None
                } else {
                    Some((d.row.cluster.user_name, d.row.cluster.user_hash))
                }
            }))
        })
        .await
        .map_err(|e| format!("the owner lookup failed: {e}"))?;
        read.map_err(|e| format!("cannot read the cluster's owner: {e}"))
    }
}

/// Whether the JSON body sets `key` to true.
pub(super) fn flag(body: &serde_json::Value, key: &str) -> bool {
    body.get(key).and_then(|v| v.as_bool()).unwrap_or(false)
}

/// The strings under `key`: one string, a list of strings, or nothing.
pub(super) fn strings(body: &serde_json::Value, key: &str) -> Result<Vec<String>, String> {
    match body.get(key) {
        None | Some(serde_json::Value::Null) => Ok(Vec::new()),
        Some(serde_json::Value::String(s)) => Ok(vec![s.clone()]),
        Some(serde_json::Value::Array(a)) => a
            .iter()
            .map(|v| v.as_str().map(str::to_string))
            .collect::<Option<Vec<_>>>()
            .ok_or_else(|| format!("{key} holds a non-string")),
        Some(_) => Err(format!("{key} is not a string or a list of strings")),
    }
}

/// The clusters a control body names: `cluster_name`, or `cluster_names` (a list).
pub(super) fn cluster_names(v: &serde_json::Value) -> Result<Vec<String>, String> {
    let mut out = Vec::new();
    if let Some(n) = v.get("cluster_name") {
        match n.as_str() {
            Some(s) => out.push(s.to_string()),
            None => return Err("cluster_name is not a string".to_string()),
        }
    }
    if let Some(list) = v.get("cluster_names") {
        let Some(items) = list.as_array() else {
            return Err("cluster_names is not a list".to_string());
        };
        for i in items {
            match i.as_str() {
                Some(s) => out.push(s.to_string()),
                None => return Err("cluster_names holds a non-string".to_string()),
            }
        }
    }
    if out.is_empty() {
        return Err("the body names no cluster (cluster_name)".to_string());
    }
    Ok(out)
}
