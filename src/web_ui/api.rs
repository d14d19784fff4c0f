//! The JSON API, `/api/v1/…`, under the console's auth (401 without it):
//! - `GET /api/v1/clusters` (filters and order as the Clusters page: `status`, `cloud`,
//!   `region`, `user`, `name`, `sort`, `desc`, `all`; `per_page` and `page` for one
//!   page): the fleet report `status --json` prints, with `total` (rows selected).
//! - `GET /api/v1/clusters/{name}`: one cluster with its transitions, its status
//!   timeline (spans) and actions.
//! - `GET /api/v1/actions?limit=N`: the audit log, newest first.
//! - `POST /api/v1/actions` `{"cluster", "action": stop|down|autostop|cancel_autostop,
//!   "minutes", "down"}`: acts (CSRF token needed with a session; none with an API token).
//! - `GET /api/v1/health`: the API server's last health probe and the data's freshness.
//! - `GET /api/v1/fleet/history?window=1h|24h|7d`: the fleet by status and its burn rate
//!   over time (the Overview's charts).
//! - `GET /api/v1/jobs` (`status`, `user`, `name`, `all`; `per_page` and `page`): the
//!   managed jobs report `status --jobs --json` prints; without `all` or `status`, the
//!   jobs that have not ended.
//! - `GET /api/v1/jobs/{id}`: one managed job's tasks and status changes.
//! - `GET /api/v1/services` (`status`, `user`, `name`, `all`): the SkyServe services
//!   report `status --services --json` prints; without `all` or `status`, the services
//!   not gone.
//! - `GET /api/v1/services/{name}`: one service with its replicas and status changes.

use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Extension, Json, Router};
use serde::Deserialize;
use serde_json::json;

use super::actions::{self, ActError, Action, ActionRequest};
use super::identity::Identity;
use crate::cluster::ClusterStatus;
use crate::store::{ClusterOrder, ClusterQuery};
use crate::web_ui::state::WebState;

/// Most audit entries one request returns.
const MAX_AUDIT: usize = 10_000;

/// The filters and order of the cluster list (query string of the API and the page).
#[derive(Debug, Clone, Default, Deserialize)]
pub(crate) struct ClusterFilter {
    #[serde(default)]
    pub(crate) status: Option<String>,
    #[serde(default)]
    pub(crate) cloud: Option<String>,
    #[serde(default)]
    pub(crate) region: Option<String>,
    #[serde(default)]
    pub(crate) user: Option<String>,
    #[serde(default)]
    pub(crate) name: Option<String>,
    #[serde(default)]
    pub(crate) sort: Option<String>,
    #[serde(default)]
    pub(crate) desc: Option<String>,
    #[serde(default)]
    pub(crate) all: Option<String>,
    /// 1-based page of `per_page` rows (the console's pager; the API with `per_page`).
    #[serde(default)]
    pub(crate) page: Option<String>,
    #[serde(default)]
    pub(crate) per_page: Option<String>,
}

/// Page sizes the console offers; its default.
pub(crate) const PAGE_SIZES: [usize; 5] = [25, 50, 100, 250, 1000];
pub(crate) const DEFAULT_PAGE_SIZE: usize = 100;

fn nonempty(v: &Option<String>) -> Option<String> {
    v.as_deref()
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
}

fn truthy(v: &Option<String>) -> bool {
    matches!(v.as_deref(), Some("1" | "true" | "on" | "yes"))
}

impl ClusterFilter {
    /// The page asked (1-based) and its size: `None` for every row (the API without
    /// `per_page`).
    pub(crate) fn paging(
        &self,
        default_size: Option<usize>,
    ) -> Result<Option<(usize, usize)>, String> {
        paging(&self.page, &self.per_page, default_size)
    }

    /// The store query, paged by [`ClusterFilter::paging`]; an error names the parameter
    /// and what was expected.
    pub(crate) fn paged_query(&self, default_size: Option<usize>) -> Result<ClusterQuery, String> {
        let mut q = self.query()?;
        if let Some((page, size)) = self.paging(default_size)? {
            q.limit = Some(size);
            q.offset = (page - 1).saturating_mul(size);
        }
        Ok(q)
    }

    /// The store query (every row); an error names the parameter and what was expected.
    pub(crate) fn query(&self) -> Result<ClusterQuery, String> {
        let statuses = match nonempty(&self.status) {
            None => Vec::new(),
            Some(s) => s
                .split(',')
                .map(|p| p.trim().to_ascii_uppercase().parse::<ClusterStatus>())
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| format!("status: {e}"))?,
        };
        let order = match nonempty(&self.sort) {
            None => ClusterOrder::Name,
            Some(s) => s.parse().map_err(|e| format!("sort: {e}"))?,
        };
        Ok(ClusterQuery {
            include_gone: truthy(&self.all) || statuses.contains(&ClusterStatus::Gone),
            statuses,
            cloud: nonempty(&self.cloud),
            region: nonempty(&self.region),
            workspace: None,
            user: nonempty(&self.user),
            name_contains: nonempty(&self.name),
            order,
            descending: truthy(&self.desc),
            no_autostop: false,
            limit: None,
            offset: 0,
        })
    }
}

/// The filters of the managed-job list (query string of the API and the Jobs page).
#[derive(Debug, Clone, Default, Deserialize)]
pub(crate) struct JobFilter {
    #[serde(default)]
    pub(crate) status: Option<String>,
    #[serde(default)]
    pub(crate) user: Option<String>,
    #[serde(default)]
    pub(crate) name: Option<String>,
    #[serde(default)]
    pub(crate) all: Option<String>,
    #[serde(default)]
    pub(crate) page: Option<String>,
    #[serde(default)]
    pub(crate) per_page: Option<String>,
}

impl JobFilter {
    /// The store query, paged like the cluster list; an error names the parameter.
    pub(crate) fn query(
        &self,
        default_size: Option<usize>,
    ) -> Result<crate::store::JobQuery, String> {
        let statuses = statuses::<crate::jobs::JobStatus>(&self.status)?;
        let paging = paging(&self.page, &self.per_page, default_size)?;
        Ok(crate::store::JobQuery {
            active: !truthy(&self.all) && statuses.is_empty(),
            statuses,
            user: nonempty(&self.user),
            name_contains: nonempty(&self.name),
            limit: paging.map(|(_, size)| size),
            offset: paging.map_or(0, |(page, size)| (page - 1).saturating_mul(size)),
        })
    }
}

/// A `status` parameter: statuses separated by commas, any case; an error names it.
fn statuses<T: std::str::FromStr<Err = String>>(status: &Option<String>) -> Result<Vec<T>, String> {
    match nonempty(status) {
        None => Ok(Vec::new()),
        Some(s) => s
            .split(',')
            .map(|p| p.trim().to_ascii_uppercase().parse::<T>())
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| format!("status: {e}")),
    }
}

/// The filters of the services list (query string of the API and the Services page).
#[derive(Debug, Clone, Default, Deserialize)]
pub(crate) struct ServiceFilter {
    #[serde(default)]
    pub(crate) status: Option<String>,
    #[serde(default)]
    pub(crate) user: Option<String>,
    #[serde(default)]
    pub(crate) name: Option<String>,
    #[serde(default)]
    pub(crate) all: Option<String>,
}

impl ServiceFilter {
    /// The store query; an error names the parameter.
    pub(crate) fn query(&self) -> Result<crate::store::ServiceQuery, String> {
        let statuses = statuses::<crate::services::ServiceStatus>(&self.status)?;
        Ok(crate::store::ServiceQuery {
            live: !truthy(&self.all) && statuses.is_empty(),
            statuses,
            user: nonempty(&self.user),
            name_contains: nonempty(&self.name),
        })
    }
}

/// `page` (1-based) and `per_page` of a list's query string: `None` for every row (no
/// `per_page` and no default); an error names the parameter and what was expected.
fn paging(
    page: &Option<String>,
    per_page: &Option<String>,
    default_size: Option<usize>,
) -> Result<Option<(usize, usize)>, String> {
    let size = match nonempty(per_page) {
        None => default_size,
        Some(s) => Some(
            s.parse::<usize>()
                .ok()
                .filter(|n| (1..=10_000).contains(n))
                .ok_or_else(|| {
                    format!("per_page: {s:?} is not a page size: expected a number from 1 to 10000")
                })?,
        ),
    };
    let Some(size) = size else { return Ok(None) };
    let page = match nonempty(page) {
        None => 1,
        Some(p) => p
            .parse::<usize>()
            .ok()
            .filter(|n| *n >= 1)
            .ok_or_else(|| format!("page: {p:?} is not a page number: expected 1 or more"))?,
    };
    Ok(Some((page, size)))
}

/// A report serialized on the blocking thread (`Ok`: its JSON bytes) as the answer.
fn json_bytes(out: anyhow::Result<Vec<u8>>) -> Response {
    match out {
        Ok(body) => (
            [(axum::http::header::CONTENT_TYPE, "application/json")],
            body,
        )
            .into_response(),
        Err(e) => internal(e),
    }
}

pub(crate) fn error(status: StatusCode, message: impl Into<String>) -> Response {
    (status, Json(json!({ "error": message.into() }))).into_response()
}

fn internal(e: anyhow::Error) -> Response {
    tracing::warn!(error = %format!("{e:#}"), "web UI: API request failed");
    error(StatusCode::SERVICE_UNAVAILABLE, format!("{e:#}"))
}

async fn clusters(State(state): State<Arc<WebState>>, Query(f): Query<ClusterFilter>) -> Response {
    let q = match f.paged_query(None) {
        Ok(q) => q,
        Err(m) => return error(StatusCode::BAD_REQUEST, m),
    };
    let now = state.clock.now();
    let config = state.config.clone();
    // Serialized on the blocking thread, next to the read.
    let out = state
        .read(move |store| {
            let report = crate::fleet::report(store, &config, now, &q)?;
            Ok(serde_json::to_vec(&report)?)
        })
        .await;
    json_bytes(out)
}

async fn cluster(State(state): State<Arc<WebState>>, Path(name): Path<String>) -> Response {
    let now = state.clock.now();
    let config = state.config.clone();
    let wanted = name.clone();
    let out = state
        .read(move |store| {
            let fresh = crate::fleet::freshness_of(store, &config, now)?;
            Ok(store.cluster_detail(&wanted)?.map(|d| (d, fresh)))
        })
        .await;
    match out {
        Ok(Some((detail, fresh))) => Json(json!({
            "timeline": crate::web_ui::console::views::spans(&detail.transitions, now),
            "cost_so_far": crate::money::cents(
                crate::fleet::ClusterView::new(detail.row.clone(), &fresh, now).cost_so_far
            ),
            "cluster": detail,
            "age_secs": detail.row.cluster.launched_at.map(|t| now.age_since(t)),
            "state": fresh,
        }))
        .into_response(),
        Ok(None) => error(
            StatusCode::NOT_FOUND,
            format!("cluster {name:?} is not in the host database"),
        ),
        Err(e) => internal(e),
    }
}

async fn jobs(State(state): State<Arc<WebState>>, Query(f): Query<JobFilter>) -> Response {
    let q = match f.query(None) {
        Ok(q) => q,
        Err(m) => return error(StatusCode::BAD_REQUEST, m),
    };
    let now = state.clock.now();
    let interval = state.config.cluster_manager.jobs_poll_interval_secs;
    let out = state
        .read(move |store| {
            let report = crate::jobs::report(store, &q, now, interval)?;
            Ok(serde_json::to_vec(&report)?)
        })
        .await;
    json_bytes(out)
}

async fn job(State(state): State<Arc<WebState>>, Path(id): Path<String>) -> Response {
    let Ok(job_id) = id.parse::<i64>() else {
        return error(
            StatusCode::BAD_REQUEST,
            format!("job id {id:?} is not a number: expected SkyPilot's managed job id"),
        );
    };
    let now = state.clock.now();
    let out = state
        .read(move |store| Ok(crate::jobs::job_detail(store, job_id, now)?))
        .await;
    match out {
        Ok((tasks, _)) if tasks.is_empty() => error(
            StatusCode::NOT_FOUND,
            format!("managed job {job_id} is not in the host database"),
        ),
        Ok((tasks, transitions)) => Json(json!({
            "job_id": job_id,
            "tasks": tasks,
            "transitions": transitions,
        }))
        .into_response(),
        Err(e) => internal(e),
    }
}

async fn services(State(state): State<Arc<WebState>>, Query(f): Query<ServiceFilter>) -> Response {
    let q = match f.query() {
        Ok(q) => q,
        Err(m) => return error(StatusCode::BAD_REQUEST, m),
    };
    let now = state.clock.now();
    let interval = state.config.cluster_manager.services_poll_interval_secs;
    let out = state
        .read(move |store| {
            let report = crate::services::report(store, &q, now, interval)?;
            Ok(serde_json::to_vec(&report)?)
        })
        .await;
    json_bytes(out)
}

async fn service(State(state): State<Arc<WebState>>, Path(name): Path<String>) -> Response {
    let wanted = name.clone();
    let out = state
        .read(move |store| Ok(crate::services::service_detail(store, &wanted)?))
        .await;
    match out {
        Ok(Some((service, transitions))) => Json(json!({
            "service": service,
            "transitions": transitions,
        }))
        .into_response(),
        Ok(None) => error(
            StatusCode::NOT_FOUND,
            format!("service {name:?} is not in the host database"),
        ),
        Err(e) => internal(e),
    }
}

#[derive(Debug, Deserialize)]
struct AuditParams {
    #[serde(default)]
    limit: Option<usize>,
}

async fn audit_log(State(state): State<Arc<WebState>>, Query(p): Query<AuditParams>) -> Response {
    let limit = p.limit.unwrap_or(100).min(MAX_AUDIT);
    match state.read(move |s| Ok(s.audit(limit)?)).await {
        Ok(entries) => Json(json!({ "entries": entries })).into_response(),
        Err(e) => internal(e),
    }
}

#[derive(Debug, Deserialize)]
struct ActionBody {
    cluster: String,
    action: String,
    #[serde(default)]
    minutes: Option<serde_json::Value>,
    #[serde(default)]
    down: Option<bool>,
}

async fn post_action(
    State(state): State<Arc<WebState>>,
    Extension(who): Extension<Identity>,
    body: Result<Json<ActionBody>, axum::extract::rejection::JsonRejection>,
) -> Response {
    let Json(body) = match body {
        Ok(b) => b,
        Err(e) => {
            return error(
                StatusCode::BAD_REQUEST,
                format!(
                    "expected a JSON body {{\"cluster\", \"action\", \"minutes\", \"down\"}}: {e}"
                ),
            )
        }
    };
    let req = ActionRequest {
        action: body.action,
        minutes: body.minutes.map(|m| match m {
            serde_json::Value::String(s) => s,
            other => other.to_string(),
        }),
        down: body.down.map(|d| d.to_string()),
    };
    let action = match Action::parse(&req) {
        Ok(a) => a,
        Err(m) => return error(StatusCode::BAD_REQUEST, m),
    };
    match actions::act(&state, &who, &body.cluster, action).await {
        Ok(()) => Json(json!({
            "cluster": body.cluster,
            "action": action.name(),
            "outcome": "ok",
        }))
        .into_response(),
        Err(ActError::NotFound(m)) => error(StatusCode::NOT_FOUND, m),
        Err(ActError::Forbidden(m)) => error(StatusCode::FORBIDDEN, m),
        Err(ActError::Failed { cause, raw }) => (
            StatusCode::BAD_GATEWAY,
            Json(json!({ "error": cause, "skypilot_error": raw })),
        )
            .into_response(),
        Err(ActError::Internal(m)) => error(StatusCode::SERVICE_UNAVAILABLE, m),
    }
}

async fn health(State(state): State<Arc<WebState>>) -> Response {
    let now = state.clock.now();
    let config = state.config.clone();
    match state
        .read(move |s| {
            Ok((
                s.api_server_health()?,
                crate::fleet::freshness_of(s, &config, now)?,
            ))
        })
        .await
    {
        Ok((api, fresh)) => Json(json!({
            "web_ui": { "version": env!("CARGO_PKG_VERSION") },
            "api_server": api,
            "state": fresh,
        }))
        .into_response(),
        Err(e) => internal(e),
    }
}

/// The JSON API's routes, with their guards.
#[derive(Debug, Deserialize)]
struct HistoryQuery {
    #[serde(default)]
    window: Option<String>,
}

/// The fleet over the last 24 h or 7 d: the Overview's charts as data.
async fn fleet_history(
    State(state): State<Arc<WebState>>,
    Query(h): Query<HistoryQuery>,
) -> Response {
    use crate::web_ui::console::data::{window, WINDOWS};
    if let Some(w) = h
        .window
        .as_deref()
        .filter(|w| !WINDOWS.iter().any(|x| x.0 == *w))
    {
        let known: Vec<&str> = WINDOWS.iter().map(|x| x.0).collect();
        return error(
            StatusCode::BAD_REQUEST,
            format!(
                "window: {w:?} is not a window: expected one of {}",
                known.join(", ")
            ),
        );
    }
    let (key, _, secs, bucket) = window(h.window.as_deref());
    let now = state.clock.now();
    let from = now.minus_secs(secs);
    match state
        .read(move |s| Ok(s.fleet_history(from, bucket)?))
        .await
    {
        Ok(samples) => Json(json!({
            "window": key,
            "from": from,
            "to": now,
            "bucket_secs": bucket,
            "samples": samples,
        }))
        .into_response(),
        Err(e) => internal(e),
    }
}

pub(crate) fn router(state: Arc<WebState>) -> Router {
    Router::new()
        .route("/api/v1/clusters", get(clusters))
        .route("/api/v1/clusters/{name}", get(cluster))
        .route("/api/v1/actions", get(audit_log).post(post_action))
        .route("/api/v1/health", get(health))
        .route("/api/v1/fleet/history", get(fleet_history))
        .route("/api/v1/jobs", get(jobs))
        .route("/api/v1/jobs/{id}", get(job))
        .route("/api/v1/services", get(services))
        .route("/api/v1/services/{name}", get(service))
        .layer(axum::middleware::from_fn(super::auth::require_csrf))
        .layer(axum::middleware::from_fn(super::auth::require_api))
        .layer(axum::middleware::from_fn(
            super::auth::headers::security_headers,
        ))
        .with_state(state)
}
