//! The fleet's pages: the Overview, the Clusters list, one cluster.

use std::collections::BTreeMap;

use axum::response::Response;
use maud::{html, Markup};

use super::{
    audit_table, autostop_text, cluster_href, encode_segment, freshness_line, layout, money, page,
    status_cell, utc,
};
use crate::cluster::ClusterStatus;
use crate::fleet::{ClusterView, Freshness, StatusReport};
use crate::store::{ApiServerHealth, ClusterDetail};
use crate::time::{human_duration, Timestamp};
use crate::web_ui::actions;
use crate::web_ui::api::ClusterFilter;
use crate::web_ui::console::ctx::Ctx;
use crate::web_ui::console::data::Overview;

/// What the Overview's cards sum up.
struct Sums<'a> {
    by_status: BTreeMap<&'a str, usize>,
    up: Vec<&'a ClusterView>,
    burn: f64,
    unpriced: usize,
    no_autostop: Vec<&'a ClusterView>,
}

impl<'a> Sums<'a> {
    fn of(clusters: &'a [ClusterView]) -> Sums<'a> {
        let mut by_status: BTreeMap<&str, usize> = BTreeMap::new();
        for c in clusters {
            *by_status.entry(c.row.cluster.status.as_str()).or_default() += 1;
        }
        let up: Vec<&ClusterView> = clusters
            .iter()
            .filter(|c| c.row.cluster.status == ClusterStatus::Up)
            .collect();
        Sums {
            by_status,
            burn: up.iter().filter_map(|c| c.row.hourly_cost).sum(),
            unpriced: up.iter().filter(|c| c.row.hourly_cost.is_none()).count(),
            no_autostop: up
                .iter()
                .copied()
                .filter(|c| c.row.cluster.autostop_minutes < 0)
                .collect(),
            up,
        }
    }
}

fn api_card(api: Option<&ApiServerHealth>, now: Timestamp) -> Markup {
    html! {
        div.card {
            div.k { "API server" }
            @match api {
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
    }
}

fn fleet_cards(clusters: usize, s: &Sums<'_>) -> Markup {
    html! {
        div.card {
            div.k { "Clusters" }
            div.v { (clusters) }
            div.muted {
                @for (i, (status, n)) in s.by_status.iter().enumerate() {
                    @if i > 0 { " · " }
                    a href={ "/console/clusters?status=" (status) } { (n) " " (status) }
                }
            }
        }
        div.card {
            div.k { "Burn rate" }
            div.v { (format!("${:.2}/h", s.burn)) }
            div.muted { (s.up.len()) " UP"
                @if s.unpriced > 0 { ", " (s.unpriced) " without a known price" } }
        }
        div.card {
            div.k { "UP without autostop" }
            div.v.error[!s.no_autostop.is_empty()] { (s.no_autostop.len()) }
        }
    }
}

pub(crate) fn overview(ctx: &Ctx, d: &Overview, now: Timestamp) -> Response {
    let report = &d.fleet;
    let sums = Sums::of(&report.clusters);
    let body = html! {
        p { (freshness_line(&report.state)) }
        div.cards {
            (api_card(report.api_server.as_ref(), now))
            (fleet_cards(report.clusters.len(), &sums))
        }
        @if !sums.no_autostop.is_empty() {
            h2 { "UP clusters without autostop" }
            table {
                thead { tr { th { "Cluster" } th { "User" } th { "Up for" } th.num { "$/h" } } }
                tbody {
                    @for c in &sums.no_autostop {
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
    page(layout(ctx, "Overview", "/console/", true, body))
}

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

fn filter_form(f: &ClusterFilter) -> Markup {
    let v = |o: &Option<String>| o.clone().unwrap_or_default();
    let status_now = v(&f.status).to_ascii_uppercase();
    html! {
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
    }
}

pub(crate) fn clusters(ctx: &Ctx, f: &ClusterFilter, report: &StatusReport) -> Response {
    let body = html! {
        p { (freshness_line(&report.state)) }
        (filter_form(f))
        p.muted { (report.clusters.len()) " cluster(s)" }
        table id="clusters" {
            thead { tr {
                @for (label, key, num) in COLUMNS {
                    th class=[num.then_some("num")] {
                        @if let Some(k) = key { a href=(sort_href(f, k)) { (label) } } @else { (label) }
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
                        td { (action_links(ctx, c)) }
                    }
                }
            }
        }
    };
    page(layout(ctx, "Clusters", "/console/clusters", true, body))
}

pub(crate) fn cluster(
    ctx: &Ctx,
    detail: &ClusterDetail,
    fresh: &Freshness,
    now: Timestamp,
) -> Response {
    let view = ClusterView::new(detail.row.clone(), fresh, now);
    let k = &detail.row.cluster;
    let dashboard = format!("/dashboard/clusters/{}", encode_segment(&k.name));
    let body = html! {
        p { (freshness_line(fresh)) " · " a href=(dashboard) { "open in SkyPilot's dashboard" } }
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
            p { (action_links(ctx, &view)) }
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
        ctx,
        &format!("Cluster {}", k.name),
        "/console/clusters",
        false,
        body,
    ))
}
