//! The console's pages. Each reads the host database on a blocking thread (one read per
//! page) and draws with maud, which escapes every interpolated value.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::{Extension, Form};
use maud::{html, Markup};

use super::{error_page, layout, page, Ctx};
use crate::cluster::ClusterStatus;
use crate::fleet::{ClusterView, Freshness};
use crate::store::{ApiServerHealth, AuditEntry, ClusterQuery, PollRun};
use crate::time::{human_duration, Timestamp};
use crate::web_ui::actions::{self, ActError, Action, ActionRequest};
use crate::web_ui::api::ClusterFilter;
use crate::web_ui::auth::{csrf, SessionRef};
use crate::web_ui::identity::Identity;
use crate::web_ui::WebState;

type Sess = Option<Extension<SessionRef>>;

/// `2026-11-30 09:41:07 UTC` from Unix seconds.
pub(crate) fn utc(t: Timestamp) -> String {
    let secs = t.floor().whole_secs().unwrap_or(0);
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02} UTC",
        rem / 3600,
        (rem % 3600) / 60,
        rem % 60
    )
}

fn money(v: Option<f64>) -> String {
    v.filter(|x| x.is_finite())
        .map_or_else(|| "–".to_string(), |x| format!("${x:.2}"))
}

fn autostop_text(minutes: i64, down: bool) -> String {
    if minutes < 0 {
        "off".into()
    } else {
        format!("{minutes} min{}", if down { " (down)" } else { "" })
    }
}

fn freshness_line(f: &Freshness) -> Markup {
    html! {
        @match f.age_secs {
            Some(age) => {
                span class=[f.stale.then_some("stale")] {
                    "data from " (human_duration(age)) " ago"
                    @if f.stale { " — STALE" }
                }
            }
            None => { span.stale { "no successful poll yet — STALE" } }
        }
        @if let Some(e) = &f.last_error { " · last poll failed: " span.error { (e) } }
    }
}

fn status_cell(s: ClusterStatus) -> Markup {
    html! { span class={ "status-" (s.as_str()) } { (s.as_str()) } }
}

fn audit_table(entries: &[AuditEntry], show_cluster: bool) -> Markup {
    html! {
        @if entries.is_empty() {
            p.muted { "No entries." }
        } @else {
            table {
                thead { tr {
                    th { "When" } th { "Actor" } th { "Action" }
                    @if show_cluster { th { "Cluster" } }
                    th { "Outcome" } th { "Detail" }
                } }
                tbody {
                    @for e in entries {
                        tr {
                            td { (utc(e.at)) }
                            td { (e.actor) }
                            td { (e.action.as_str()) }
                            @if show_cluster {
                                td { @if let Some(c) = &e.cluster { a href=(cluster_href(c)) { (c) } } }
                            }
                            td class={ "outcome-" (e.outcome.as_str().replace('_', "-")) } { (e.outcome.as_str()) }
                            td { (e.detail.as_deref().unwrap_or("")) }
                        }
                    }
                }
            }
        }
    }
}

/// The console URL of a cluster (its name percent-encoded).
pub(crate) fn cluster_href(name: &str) -> String {
    format!("/console/clusters/{}", encode_segment(name))
}

fn encode_segment(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes())
        .collect::<String>()
        .replace('+', "%20")
}

fn unavailable(ctx: &Ctx, e: &anyhow::Error) -> Response {
    error_page(
        ctx,
        StatusCode::SERVICE_UNAVAILABLE,
        &format!("The host database cannot be read: {e:#}"),
    )
}

// ---------------------------------------------------------------- overview

struct Overview {
    fresh: Freshness,
    api: Option<ApiServerHealth>,
    clusters: Vec<ClusterView>,
    autostop_actions: Vec<AuditEntry>,
}

pub(crate) async fn overview(
    State(state): State<Arc<WebState>>,
    Extension(who): Extension<Identity>,
    sess: Sess,
) -> Response {
    let ctx = Ctx::from(who, sess);
    let now = state.clock.now();
    let config = state.config.clone();
    let data = state
        .read(move |s| {
            let report = crate::fleet::report(s, &config, now, &ClusterQuery::default())?;
            let autostop_actions = s
                .audit(500)?
                .into_iter()
                .filter(|e| e.actor.starts_with("autostop"))
                .take(10)
                .collect();
            Ok(Overview {
                fresh: report.state,
                api: report.api_server,
                clusters: report.clusters,
                autostop_actions,
            })
        })
        .await;
    let d = match data {
        Ok(d) => d,
        Err(e) => return unavailable(&ctx, &e),
    };
    let mut by_status: BTreeMap<&str, usize> = BTreeMap::new();
    for c in &d.clusters {
        *by_status.entry(c.row.cluster.status.as_str()).or_default() += 1;
    }
    let up: Vec<&ClusterView> = d
        .clusters
        .iter()
        .filter(|c| c.row.cluster.status == ClusterStatus::Up)
        .collect();
    let burn: f64 = up.iter().filter_map(|c| c.row.hourly_cost).sum();
    let unpriced = up.iter().filter(|c| c.row.hourly_cost.is_none()).count();
    let no_autostop: Vec<&&ClusterView> = up
        .iter()
        .filter(|c| c.row.cluster.autostop_minutes < 0)
        .collect();
    let body = html! {
        p { (freshness_line(&d.fresh)) }
        div.cards {
            div.card {
                div.k { "API server" }
                @match &d.api {
                    Some(h) if h.healthy => {
                        div.v.outcome-ok { "healthy" }
                        div.muted { "SkyPilot " (h.version.as_deref().unwrap_or("?")) " · API " (h.api_version.as_deref().unwrap_or("?"))
                            @if let Some(ms) = h.latency_ms { " · " (format!("{ms:.0}")) " ms" } }
                        div.muted { "checked " (human_duration(now.age_since(h.checked_at))) " ago" }
                    }
                    Some(h) => {
                        div.v.error { "unhealthy" }
                        div.error { (h.error.as_deref().unwrap_or("")) }
                    }
                    None => { div.v.muted { "unknown" } }
                }
            }
            div.card {
                div.k { "Clusters" }
                div.v { (d.clusters.len()) }
                div.muted {
                    @for (i, (s, n)) in by_status.iter().enumerate() {
                        @if i > 0 { " · " }
                        a href={ "/console/clusters?status=" (s) } { (n) " " (s) }
                    }
                }
            }
            div.card {
                div.k { "Burn rate" }
                div.v { (format!("${burn:.2}/h")) }
                div.muted { (up.len()) " UP"
                    @if unpriced > 0 { ", " (unpriced) " without a known price" } }
            }
            div.card {
                div.k { "UP without autostop" }
                div.v.error[!no_autostop.is_empty()] { (no_autostop.len()) }
            }
        }
        @if !no_autostop.is_empty() {
            h2 { "UP clusters without autostop" }
            table {
                thead { tr { th { "Cluster" } th { "User" } th { "Up for" } th.num { "$/h" } } }
                tbody {
                    @for c in &no_autostop {
                        tr {
                            td { a href=(cluster_href(&c.row.cluster.name)) { (c.row.cluster.name) } }
                            td { (c.row.cluster.user_name.as_deref().unwrap_or("")) }
                            td { (c.age_secs.map(human_duration).unwrap_or_default()) }
                            td.num { (money(c.row.hourly_cost)) }
                        }
                    }
                }
            }
        }
        h2 { "Latest autostop actions" }
        (audit_table(&d.autostop_actions, true))
    };
    page(layout(&ctx, "Overview", "/console/", true, body))
}

// ---------------------------------------------------------------- clusters

/// The columns of the Clusters page: (label, sort key, numeric).
const COLUMNS: [(&str, Option<&str>, bool); 11] = [
    ("Name", Some("name"), false),
    ("Status", Some("status"), false),
    ("Cloud / region", Some("region"), false),
    ("Resources", None, false),
    ("User", Some("user"), false),
    ("Launched", Some("launched"), false),
    ("Age", None, false),
    ("Autostop", Some("autostop"), false),
    ("$/h", Some("hourly_cost"), true),
    ("Cost so far", Some("total_cost"), true),
    ("Actions", None, false),
];

fn sort_href(f: &ClusterFilter, key: &str) -> String {
    let current = f.sort.as_deref().unwrap_or("name");
    let desc = current == key && !matches!(f.desc.as_deref(), Some("1" | "true" | "on"));
    let mut q = url::form_urlencoded::Serializer::new(String::new());
    for (k, v) in [
        ("status", &f.status),
        ("cloud", &f.cloud),
        ("region", &f.region),
        ("user", &f.user),
        ("name", &f.name),
        ("all", &f.all),
    ] {
        if let Some(v) = v.as_deref().filter(|v| !v.is_empty()) {
            q.append_pair(k, v);
        }
    }
    q.append_pair("sort", key);
    if desc {
        q.append_pair("desc", "1");
    }
    format!("/console/clusters?{}", q.finish())
}

fn action_links(ctx: &Ctx, c: &ClusterView) -> Markup {
    let allowed =
        actions::may_act(&ctx.who, &c.row) && c.row.gone_at.is_none() && ctx.csrf.is_some();
    let base = cluster_href(&c.row.cluster.name);
    html! {
        @if allowed {
            span.actions {
                @if c.row.cluster.status == ClusterStatus::Up {
                    a href={ (base) "/actions/stop" } { "stop" }
                }
                a href={ (base) "/actions/down" } { "down" }
                // SkyPilot sets autostop only on an UP cluster.
                @if c.row.cluster.status == ClusterStatus::Up {
                    a href={ (base) "/actions/autostop" } { "autostop" }
                }
            }
        }
    }
}

pub(crate) async fn clusters(
    State(state): State<Arc<WebState>>,
    Extension(who): Extension<Identity>,
    sess: Sess,
    Query(f): Query<ClusterFilter>,
) -> Response {
    let ctx = Ctx::from(who, sess);
    let q = match f.query() {
        Ok(q) => q,
        Err(m) => return error_page(&ctx, StatusCode::BAD_REQUEST, &m),
    };
    let now = state.clock.now();
    let config = state.config.clone();
    let report = match state
        .read(move |s| crate::fleet::report(s, &config, now, &q))
        .await
    {
        Ok(r) => r,
        Err(e) => return unavailable(&ctx, &e),
    };
    let v = |o: &Option<String>| o.clone().unwrap_or_default();
    let status_now = v(&f.status).to_ascii_uppercase();
    let body = html! {
        p { (freshness_line(&report.state)) }
        form.filters method="get" action="/console/clusters" {
            label { "Status"
                select name="status" {
                    option value="" { "any" }
                    @for s in ["UP", "INIT", "STOPPED", "GONE"] {
                        option value=(s) selected[status_now == s] { (s) }
                    }
                }
            }
            label { "Cloud" input type="text" name="cloud" value=(v(&f.cloud)); }
            label { "Region" input type="text" name="region" value=(v(&f.region)); }
            label { "User" input type="text" name="user" value=(v(&f.user)); }
            label { "Name contains" input type="text" name="name" value=(v(&f.name)); }
            @if let Some(s) = f.sort.as_deref() { input type="hidden" name="sort" value=(s); }
            @if let Some(d) = f.desc.as_deref() { input type="hidden" name="desc" value=(d); }
            label { "Gone too" input type="checkbox" name="all" value="1" checked[f.all.is_some()]; }
            button type="submit" { "Filter" }
        }
        p.muted { (report.clusters.len()) " cluster(s)" }
        table id="clusters" {
            thead { tr {
                @for (label, key, num) in COLUMNS {
                    th class=[num.then_some("num")] {
                        @if let Some(k) = key { a href=(sort_href(&f, k)) { (label) } } @else { (label) }
                    }
                }
            } }
            tbody {
                @for c in &report.clusters {
                    @let k = &c.row.cluster;
                    tr {
                        td { a href=(cluster_href(&k.name)) { (k.name) }
                             @if c.stale { " " span.stale title="the host's data is stale" { "stale" } } }
                        td { (status_cell(k.status)) }
                        td { (k.cloud.as_deref().unwrap_or("")) @if let Some(r) = &k.region { " / " (r) } }
                        td { (k.resources.as_deref().unwrap_or("")) }
                        td { (k.user_name.as_deref().unwrap_or("")) }
                        td { (k.launched_at.map(utc).unwrap_or_default()) }
                        td { (c.age_secs.map(human_duration).unwrap_or_default()) }
                        td { (autostop_text(k.autostop_minutes, k.autostop_to_down)) }
                        td.num { (money(c.row.hourly_cost)) }
                        td.num { (money(c.row.total_cost)) }
                        td { (action_links(&ctx, c)) }
                    }
                }
            }
        }
    };
    page(layout(&ctx, "Clusters", "/console/clusters", true, body))
}

pub(crate) async fn cluster(
    State(state): State<Arc<WebState>>,
    Extension(who): Extension<Identity>,
    sess: Sess,
    Path(name): Path<String>,
) -> Response {
    let ctx = Ctx::from(who, sess);
    let now = state.clock.now();
    let config = state.config.clone();
    let wanted = name.clone();
    let data = state
        .read(move |s| {
            Ok((
                s.cluster_detail(&wanted)?,
                crate::fleet::freshness_of(s, &config, now)?,
            ))
        })
        .await;
    let (detail, fresh) = match data {
        Ok((Some(d), f)) => (d, f),
        Ok((None, _)) => {
            return error_page(
                &ctx,
                StatusCode::NOT_FOUND,
                &format!("No cluster {name:?} in the host database."),
            )
        }
        Err(e) => return unavailable(&ctx, &e),
    };
    let view = ClusterView::new(detail.row.clone(), &fresh, now);
    let k = &detail.row.cluster;
    let dashboard = format!("/dashboard/clusters/{}", encode_segment(&k.name));
    let body = html! {
        p { (freshness_line(&fresh)) " · " a href=(dashboard) { "open in SkyPilot's dashboard" } }
        table {
            tbody {
                tr { th { "Status" } td { (status_cell(k.status)) } }
                tr { th { "User" } td { (k.user_name.as_deref().unwrap_or("")) } }
                tr { th { "Workspace" } td { (k.workspace) } }
                tr { th { "Cloud / region / zone" } td { (k.cloud.as_deref().unwrap_or("")) " / " (k.region.as_deref().unwrap_or("")) " / " (k.zone.as_deref().unwrap_or("")) } }
                tr { th { "Resources" } td { (k.resources.as_deref().unwrap_or("")) } }
                tr { th { "Nodes" } td { (k.nodes) } }
                tr { th { "Launched" } td { (k.launched_at.map(utc).unwrap_or_default()) " (" (view.age_secs.map(human_duration).unwrap_or_default()) " ago)" } }
                tr { th { "Autostop" } td { (autostop_text(k.autostop_minutes, k.autostop_to_down)) } }
                tr { th { "Price" } td { (money(detail.row.hourly_cost)) "/h · " (money(detail.row.total_cost)) " so far" } }
                tr { th { "Last command" } td { code { (k.last_use.as_deref().unwrap_or("")) } } }
                tr { th { "First / last seen" } td { (utc(detail.row.first_seen)) " / " (utc(detail.row.last_seen)) } }
            }
        }
        h2 { "Actions" }
        @if detail.row.gone_at.is_some() {
            p.muted { "SkyPilot no longer lists this cluster." }
        } @else if !actions::may_act(&ctx.who, &detail.row) {
            p.muted { "You may act only on your own clusters." }
        } @else {
            p { (action_links(&ctx, &view)) }
        }
        h2 { "Status timeline" }
        @if detail.transitions.is_empty() { p.muted { "No transitions recorded." } } @else {
            table { thead { tr { th { "When" } th { "From" } th { "To" } } }
                tbody { @for t in &detail.transitions { tr {
                    td { (utc(t.at)) }
                    td { @if let Some(f) = t.from { (status_cell(f)) } @else { span.muted { "new" } } }
                    td { (status_cell(t.to)) }
                } } } }
        }
        h2 { "Actions taken" }
        (audit_table(&detail.audit, false))
    };
    page(layout(
        &ctx,
        &format!("Cluster {}", k.name),
        "/console/clusters",
        false,
        body,
    ))
}

// ---------------------------------------------------------------- actions

fn parse_path_action(action: &str) -> Option<&'static str> {
    Action::NAMES.into_iter().find(|a| *a == action)
}

pub(crate) async fn confirm_action(
    State(state): State<Arc<WebState>>,
    Extension(who): Extension<Identity>,
    sess: Sess,
    Path((name, action)): Path<(String, String)>,
) -> Response {
    let ctx = Ctx::from(who, sess);
    let Some(action) = parse_path_action(&action) else {
        return error_page(
            &ctx,
            StatusCode::NOT_FOUND,
            &format!(
                "No action {action:?}: expected one of {}.",
                Action::NAMES.join(", ")
            ),
        );
    };
    let Some(token) = ctx.csrf.clone() else {
        return error_page(
            &ctx,
            StatusCode::FORBIDDEN,
            "Actions need a console session: log in through the login page.",
        );
    };
    let wanted = name.clone();
    let row = match state
        .read(move |s| Ok(s.cluster_detail(&wanted)?.map(|d| d.row)))
        .await
    {
        Ok(Some(r)) => r,
        Ok(None) => {
            return error_page(
                &ctx,
                StatusCode::NOT_FOUND,
                &format!("No cluster {name:?} in the host database."),
            )
        }
        Err(e) => return unavailable(&ctx, &e),
    };
    if !actions::may_act(&ctx.who, &row) {
        return error_page(
            &ctx,
            StatusCode::FORBIDDEN,
            &format!("You may act only on your own clusters; {name:?} is not yours."),
        );
    }
    let k = &row.cluster;
    let post = format!("{}/actions/{action}", cluster_href(&k.name));
    let body = html! {
        p { "Cluster " strong { (k.name) } " (" (status_cell(k.status)) ", user " (k.user_name.as_deref().unwrap_or("unknown")) ", autostop " (autostop_text(k.autostop_minutes, k.autostop_to_down)) ")." }
        form method="post" action=(post) {
            input type="hidden" name=(csrf::FIELD) value=(token);
            input type="hidden" name="action" value=(action);
            @match action {
                "autostop" => {
                    p { "Set autostop: stop the cluster after it has been idle for" }
                    label { input type="number" name="minutes" min="1" max=(actions::MAX_AUTOSTOP_MINUTES) value="60" required; " idle minutes" }
                    label { " " input type="checkbox" name="down" value="on"; " tear down instead of stopping" }
                    p { button type="submit" { "Set autostop" } " "
                        button.danger type="submit" formaction={ (cluster_href(&k.name)) "/actions/cancel_autostop" } name="action" value="cancel_autostop" { "Cancel autostop" } }
                }
                "down" => {
                    p.error { "Tear down " strong { (k.name) } "? The cluster is terminated and its disks are deleted." }
                    button.danger type="submit" { "Tear down" }
                }
                "cancel_autostop" => {
                    p { "Cancel the autostop of " strong { (k.name) } "?" }
                    button.danger type="submit" { "Cancel autostop" }
                }
                _ => {
                    p { "Stop " strong { (k.name) } "? Its disks are kept; it can be started again." }
                    button.danger type="submit" { "Stop" }
                }
            }
            " " a href=(cluster_href(&k.name)) { "Back" }
        }
    };
    page(layout(
        &ctx,
        &format!("Confirm: {action} {}", k.name),
        "/console/clusters",
        false,
        body,
    ))
}

pub(crate) async fn do_action(
    State(state): State<Arc<WebState>>,
    Extension(who): Extension<Identity>,
    sess: Sess,
    Path((name, action)): Path<(String, String)>,
    form: Result<Form<ActionRequest>, axum::extract::rejection::FormRejection>,
) -> Response {
    let ctx = Ctx::from(who, sess);
    let mut req = form.map(|Form(f)| f).unwrap_or_default();
    // The path names the action; a form's own field may only agree with it.
    if !req.action.is_empty() && req.action != action {
        return error_page(
            &ctx,
            StatusCode::BAD_REQUEST,
            "The form's action does not match the address.",
        );
    }
    req.action = action;
    let action = match Action::parse(&req) {
        Ok(a) => a,
        Err(m) => return error_page(&ctx, StatusCode::BAD_REQUEST, &m),
    };
    let (status, text, class) = match actions::act(&state, &ctx.who, &name, action).await {
        Ok(()) => (
            StatusCode::OK,
            format!(
                "Done: {} on {name}. The host's data shows it after the next poll.",
                action.describe()
            ),
            "outcome-ok",
        ),
        Err(ActError::NotFound(m)) => (StatusCode::NOT_FOUND, m, "error"),
        Err(ActError::Forbidden(m)) => (StatusCode::FORBIDDEN, m, "error"),
        Err(ActError::Failed(m)) => (
            StatusCode::BAD_GATEWAY,
            format!("SkyPilot refused or failed: {m}"),
            "error",
        ),
        Err(ActError::Internal(m)) => (StatusCode::SERVICE_UNAVAILABLE, m, "error"),
    };
    let body = html! {
        p class=(class) id="action-result" { (text) }
        p { a href=(cluster_href(&name)) { "Back to " (name) } " · " a href="/console/audit" { "Audit log" } }
    };
    (
        status,
        page(layout(&ctx, "Action", "/console/clusters", false, body)),
    )
        .into_response()
}

// ---------------------------------------------------------------- audit, autostop

pub(crate) async fn audit(
    State(state): State<Arc<WebState>>,
    Extension(who): Extension<Identity>,
    sess: Sess,
) -> Response {
    let ctx = Ctx::from(who, sess);
    let entries = match state.read(|s| Ok(s.audit(500)?)).await {
        Ok(e) => e,
        Err(e) => return unavailable(&ctx, &e),
    };
    let body = html! {
        p.muted { "Every action a role or a person took, newest first (the latest 500)." }
        (audit_table(&entries, true))
    };
    page(layout(&ctx, "Audit log", "/console/audit", true, body))
}

pub(crate) async fn autostop(
    State(state): State<Arc<WebState>>,
    Extension(who): Extension<Identity>,
    sess: Sess,
) -> Response {
    let ctx = Ctx::from(who, sess);
    let entries = match state
        .read(|s| {
            Ok(s.audit(2000)?
                .into_iter()
                .filter(|e| {
                    e.actor.starts_with("autostop")
                        || matches!(
                            e.action,
                            crate::store::AuditAction::Autostop
                                | crate::store::AuditAction::CancelAutostop
                        )
                })
                .take(200)
                .collect::<Vec<_>>())
        })
        .await
    {
        Ok(e) => e,
        Err(e) => return unavailable(&ctx, &e),
    };
    // The enforcer's own engine on the same database and config: what a pass would do now.
    let config = state.config.clone();
    let now = state.clock.now();
    let preview = state
        .read(move |s| crate::autostop::preview(s, &config, now))
        .await;
    let policy = toml::to_string_pretty(&state.config.autostop)
        .unwrap_or_else(|e| format!("# cannot show the section: {e}\n"));
    let body = html! {
        h2 { "Policy (" code { "[autostop]" } " of the host config)" }
        pre { @if policy.trim().is_empty() { "# defaults" } @else { (policy) } }
        h2 { "What would be acted on now" }
        div id="autostop-preview" {
            @match &preview {
                Ok(decisions) => {
                    p.muted {
                        "A dry run of the enforcer's next pass (the same as "
                        code { "skypilot-host autostop --dry-run" } "); nothing is sent."
                    }
                    @if decisions.is_empty() {
                        p { "No cluster is known." }
                    } @else {
                        table {
                            thead { tr { th { "Cluster" } th { "Decision" } th { "Reason" } } }
                            tbody {
                                @for d in decisions {
                                    tr {
                                        td { a href=(cluster_href(&d.cluster)) { (d.cluster) } }
                                        td {
                                            @match d.verdict {
                                                crate::autostop::engine::Verdict::Act(a) => { strong { "act: " (a) } }
                                                crate::autostop::engine::Verdict::Hold => { "hold" }
                                                crate::autostop::engine::Verdict::Skip => { "skip" }
                                            }
                                        }
                                        td { (d.reason) }
                                    }
                                }
                            }
                        }
                    }
                }
                Err(e) => {
                    p.error { "The dry run could not be made: " (format!("{e:#}")) }
                }
            }
        }
        h2 { "Autostop actions" }
        (audit_table(&entries, true))
    };
    page(layout(&ctx, "Autostop", "/console/autostop", true, body))
}

// ---------------------------------------------------------------- services

struct Services {
    fresh: Freshness,
    api: Option<ApiServerHealth>,
    polls: Vec<PollRun>,
    last_autostop: Option<AuditEntry>,
}

/// The monitor's `/healthz`, asked with a short timeout.
async fn monitor_health(state: &WebState) -> Result<(), String> {
    let mut addr = state.config.monitor.listen;
    if addr.ip().is_unspecified() {
        addr.set_ip(if addr.is_ipv4() {
            std::net::Ipv4Addr::LOCALHOST.into()
        } else {
            std::net::Ipv6Addr::LOCALHOST.into()
        });
    }
    let url = format!("http://{addr}/healthz");
    // One client (and its connection pool) for every view of the page, not one per view.
    static CLIENT: std::sync::OnceLock<reqwest::Client> = std::sync::OnceLock::new();
    let client = match CLIENT.get() {
        Some(c) => c,
        None => {
            let c = reqwest::Client::builder()
                .timeout(std::time::Duration::from_secs(2))
                .build()
                .map_err(|e| e.to_string())?;
            CLIENT.get_or_init(|| c)
        }
    };
    match client.get(&url).send().await {
        Ok(r) if r.status().is_success() => Ok(()),
        Ok(r) => Err(format!("{url} answered HTTP {}", r.status().as_u16())),
        Err(e) => Err(format!("{url}: {e}")),
    }
}

pub(crate) async fn services(
    State(state): State<Arc<WebState>>,
    Extension(who): Extension<Identity>,
    sess: Sess,
) -> Response {
    let ctx = Ctx::from(who, sess);
    let now = state.clock.now();
    let config = state.config.clone();
    let data = state
        .read(move |s| {
            Ok(Services {
                fresh: crate::fleet::freshness_of(s, &config, now)?,
                api: s.api_server_health()?,
                polls: s.recent_polls(10)?,
                last_autostop: s
                    .audit(500)?
                    .into_iter()
                    .find(|e| e.actor.starts_with("autostop")),
            })
        })
        .await;
    let d = match data {
        Ok(d) => d,
        Err(e) => return unavailable(&ctx, &e),
    };
    let (monitor, live) = tokio::join!(
        monitor_health(&state),
        tokio::time::timeout(std::time::Duration::from_secs(3), state.sky.health())
    );
    let live: Result<String, String> = match live {
        Ok(Ok(h)) => Ok(format!(
            "healthy: SkyPilot {} (API {})",
            h.version.as_deref().unwrap_or("?"),
            h.api_version.as_deref().unwrap_or("?")
        )),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err("no answer within 3 s".into()),
    };
    let row = |name: &str, ok: bool, text: Markup| {
        html! { tr { td { (name) } td class=(if ok { "outcome-ok" } else { "error" }) { (if ok { "ok" } else { "problem" }) } td { (text) } } }
    };
    let body = html! {
        table {
            thead { tr { th { "Service" } th { "State" } th { "Detail" } } }
            tbody {
                (row("SkyPilot API server (live probe)", live.is_ok(), html! { (match &live { Ok(s) | Err(s) => s.as_str() }) " · " (state.sky.base_url()) }))
                (row("SkyPilot API server (cluster manager's last probe)", d.api.as_ref().is_some_and(|h| h.healthy), html! {
                    @if let Some(h) = &d.api { (human_duration(now.age_since(h.checked_at))) " ago" @if let Some(e) = &h.error { ": " (e) } } @else { "never probed" }
                }))
                (row("Cluster manager", !d.fresh.stale, freshness_line(&d.fresh)))
                (row("Monitor", monitor.is_ok(), html! { @match &monitor { Ok(()) => { "/healthz answers on " (state.config.monitor.listen) } Err(e) => { (e) } } }))
                (row("Autostop", d.last_autostop.is_some(), html! {
                    @if let Some(e) = &d.last_autostop { "last action " (human_duration(now.age_since(e.at))) " ago" } @else { "no action recorded" }
                }))
                (row("Web UI", true, html! { "version " (env!("CARGO_PKG_VERSION")) " · " (state.sessions.len()) " session(s)" }))
            }
        }
        h2 { "Latest polls" }
        table {
            thead { tr { th { "Finished" } th { "Refresh" } th { "Outcome" } th.num { "Clusters" } th.num { "Changes" } th { "Error" } } }
            tbody { @for p in &d.polls { tr {
                td { (utc(p.finished_at)) }
                td { (p.refresh.as_str()) }
                td class={ "outcome-" (p.outcome.as_str()) } { (p.outcome.as_str()) }
                td.num { (p.clusters.map(|n| n.to_string()).unwrap_or_default()) }
                td.num { (p.changes.map(|n| n.to_string()).unwrap_or_default()) }
                td { (p.error.as_deref().unwrap_or("")) }
            } } }
        }
    };
    page(layout(&ctx, "Services", "/console/services", true, body))
}

// ---------------------------------------------------------------- config

pub(crate) async fn config(
    State(state): State<Arc<WebState>>,
    Extension(who): Extension<Identity>,
    sess: Sess,
) -> Response {
    let ctx = Ctx::from(who, sess);
    let host = super::redact::host_config(&state.config);
    let sky_path = state
        .config
        .web_ui
        .skypilot_config_file
        .clone()
        .or_else(|| std::env::var_os("SKYPILOT_GLOBAL_CONFIG").map(Into::into));
    let sky = sky_path
        .as_ref()
        .map(|p| (p.display().to_string(), super::redact::sky_config_file(p)));
    let body = html! {
        p.muted { "Secrets are redacted: passwords, tokens, keys and the credentials in URLs." }
        h2 { "Host config" }
        pre { (host) }
        h2 { "SkyPilot config" }
        @match &sky {
            Some((path, Ok(text))) => { p.muted { (path) } pre { (text) } }
            Some((path, Err(e))) => { p.error { (path) ": " (e) } }
            None => { p.muted { "Not known: set web_ui.skypilot_config_file (the module sets it)." } }
        }
    };
    page(layout(&ctx, "Config", "/console/config", false, body)).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates() {
        assert_eq!(utc(Timestamp::from_secs(0)), "1970-01-01 00:00:00 UTC");
        assert_eq!(
            utc(Timestamp::from_secs(1_800_000_000)),
            "2027-01-15 08:00:00 UTC"
        );
        assert_eq!(
            utc(Timestamp::from_secs(951_782_400)),
            "2000-02-29 00:00:00 UTC"
        );
    }

    #[test]
    fn names_in_urls_are_encoded() {
        assert_eq!(cluster_href("a b/<c>"), "/console/clusters/a%20b%2F%3Cc%3E");
    }
}
