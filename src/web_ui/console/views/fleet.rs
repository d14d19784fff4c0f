//! The fleet's pages: the Overview, the Clusters list, one cluster.

use axum::response::Response;
use maud::{html, Markup};

use super::{
    audit_table, autostop_text, charts, cluster_href, encode_segment, freshness_line, layout,
    money, page, pager, polling_text, status_cell, utc,
};
use crate::cluster::{ClusterStatus, PriceSource};
use crate::fleet::{ClusterView, Freshness, StatusReport};
use crate::store::{ApiServerHealth, ClusterDetail, FleetSums};
use crate::time::{human_duration, when, Timestamp};
use crate::web_ui::actions;
use crate::web_ui::api::ClusterFilter;
use crate::web_ui::console::ctx::Ctx;
use crate::web_ui::console::data::{Overview, WINDOWS};

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

fn fleet_cards(s: &FleetSums) -> Markup {
    html! {
        div.card {
            div.k { "Clusters" }
            div.v { (s.clusters) }
            div.muted {
                @for (i, (status, n)) in s.by_status.iter().enumerate() {
                    @if i > 0 { " · " }
                    a href={ "/console/clusters?status=" (status.as_str()) } { (n) " " (status.as_str()) }
                }
            }
        }
        div.card {
            div.k { "Burn rate" }
            div.v { (money(Some(s.burn))) "/h" }
            div.muted { (s.up) " UP"
                @if s.unpriced > 0 { ", " (s.unpriced) " without a known price" } }
        }
        div.card {
            div.k { "UP without autostop" }
            div.v.error[s.up_without_autostop > 0] { (s.up_without_autostop) }
        }
    }
}

pub(crate) fn overview(ctx: &Ctx, d: &Overview, now: Timestamp) -> Response {
    let from = now.minus_secs(d.window.2);
    let body = html! {
        p { (freshness_line(&d.state)) " · " (polling_text(&d.polling)) }
        div.cards {
            (api_card(d.api.as_ref(), now))
            (fleet_cards(&d.sums))
            (super::job_cards(&d.jobs))
            (super::service_cards(&d.services))
        }
        h2 { "The fleet over the last " (d.window.1) }
        p.window {
            @for (key, label, _, _) in WINDOWS {
                a href={ "/console/?window=" (key) } class=[(key == d.window.0).then_some("current")] { (label) }
            }
            a href={ "/api/v1/fleet/history?window=" (d.window.0) } { "as JSON" }
        }
        @if d.history.is_empty() {
            p.muted { "No history yet: the cluster manager records the fleet after each poll." }
        } @else {
            div.charts {
                (charts::fleet_counts(&d.history, from, now))
                (charts::burn_rate(&d.history, from, now))
            }
        }
        @if !d.no_autostop.is_empty() {
            h2 { "UP clusters without autostop" }
            @if d.sums.up_without_autostop > d.no_autostop.len() as i64 {
                p.muted { "The " (d.no_autostop.len()) " launched first of " (d.sums.up_without_autostop) "; "
                    a href="/console/clusters?status=UP&sort=autostop" { "all of them" } "." }
            }
            table {
                thead { tr { th { "Cluster" } th { "User" } th { "Up for" } th.num { "$/h" } th.num { "Cost so far" } } }
                tbody {
                    @for c in &d.no_autostop {
                        tr {
                            td.name { a href=(cluster_href(&c.row.cluster.name)) { (c.row.cluster.name) } }
                            td { (c.row.cluster.user_name.as_deref().unwrap_or("")) }
                            td { (c.age_secs.map(human_duration).unwrap_or_default()) }
                            td.num { (price_cell(&c.row)) }
                            td.num { (money(c.cost_so_far)) }
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

/// How often the cluster manager polls, and why when the interval is stretched.
/// Cloud, region and zone as far as they are known: "AWS / us-west-2", never a
/// trailing " / ".
fn place(parts: &[&Option<String>]) -> String {
    parts
        .iter()
        .filter_map(|p| p.as_deref().filter(|s| !s.is_empty()))
        .collect::<Vec<_>>()
        .join(" / ")
}

/// A price with where it comes from.
fn price_cell(row: &crate::store::ClusterRow) -> Markup {
    html! {
        (money(row.hourly_cost))
        @if let (Some(_), Some(src)) = (row.hourly_cost, row.price_source) {
            span.src title={ "from " (src.describe()) } {
                @match src { PriceSource::Catalog => "catalog", PriceSource::CostReport => "report" }
            }
        }
    }
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

/// The filters of `f` that are set, as query pairs.
fn filter_pairs(f: &ClusterFilter) -> Vec<(&'static str, String)> {
    [
        ("status", &f.status),
        ("cloud", &f.cloud),
        ("region", &f.region),
        ("user", &f.user),
        ("name", &f.name),
        ("all", &f.all),
    ]
    .into_iter()
    .filter_map(|(k, v)| {
        v.as_deref()
            .filter(|v| !v.is_empty())
            .map(|v| (k, v.to_string()))
    })
    .collect()
}

/// The filters and the order of `f`: what a pager link keeps.
fn kept_pairs(f: &ClusterFilter) -> Vec<(&'static str, String)> {
    let mut out = filter_pairs(f);
    for (k, v) in [("sort", &f.sort), ("desc", &f.desc)] {
        if let Some(v) = v.as_deref().filter(|v| !v.is_empty()) {
            out.push((k, v.to_string()));
        }
    }
    out
}

/// A column header's link: sorted by `key` (the other way round when it already is),
/// filters and page size kept, back to the first page.
fn sort_href(f: &ClusterFilter, key: &str, per_page: usize) -> String {
    let current = f.sort.as_deref().unwrap_or("name");
    let desc = current == key && !matches!(f.desc.as_deref(), Some("1" | "true" | "on"));
    let mut q = url::form_urlencoded::Serializer::new(String::new());
    for (k, v) in filter_pairs(f) {
        q.append_pair(k, &v);
    }
    q.append_pair("sort", key);
    if desc {
        q.append_pair("desc", "1");
    }
    q.append_pair("per_page", &per_page.to_string());
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
            @if let Some(n) = f.per_page.as_deref() { input type="hidden" name="per_page" value=(n); }
            label { "Gone too" input type="checkbox" name="all" value="1" checked[f.all.is_some()]; }
            button type="submit" { "Filter" }
        }
    }
}

/// The Clusters page: one page (`page`, `per_page`) of what the filters select.
pub(crate) fn clusters(
    ctx: &Ctx,
    f: &ClusterFilter,
    report: &StatusReport,
    (page_no, per_page): (usize, usize),
) -> Response {
    let pager = pager(
        "/console/clusters",
        &kept_pairs(f),
        page_no,
        per_page,
        report.total,
    );
    let body = html! {
        p { (freshness_line(&report.state)) }
        (filter_form(f))
        (pager)
        table id="clusters" {
            thead { tr {
                @for (label, key, num) in COLUMNS {
                    th class=[num.then_some("num")] {
                        @if let Some(k) = key { a href=(sort_href(f, k, per_page)) { (label) } } @else { (label) }
                    }
                }
            } }
            tbody {
                @for c in &report.clusters {
                    @let k = &c.row.cluster;
                    tr {
                        td.name { a href=(cluster_href(&k.name)) { (k.name) }
                             @if c.stale { " " span.stale title="the host's data is stale" { "stale" } } }
                        td { (status_cell(k.status)) }
                        td { (k.cloud.as_deref().unwrap_or("")) @if let Some(r) = &k.region { " / " (r) } }
                        td.res { (k.resources.as_deref().unwrap_or("")) }
                        td { (k.user_name.as_deref().unwrap_or("")) }
                        td { (k.launched_at.map(utc).unwrap_or_default()) }
                        td { (c.age_secs.map(human_duration).unwrap_or_default()) }
                        td { (autostop_text(k.autostop_minutes, k.autostop_to_down)) }
                        td.num { (price_cell(&c.row)) }
                        td.num { (money(c.cost_so_far)) }
                        td { (action_links(ctx, c)) }
                    }
                }
            }
        }
        @if report.total > per_page { (pager) }
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
                tr { th { "Cloud / region / zone" } td { (place(&[&k.cloud, &k.region, &k.zone])) } }
                tr { th { "Resources" } td { (k.resources.as_deref().unwrap_or("")) } }
                tr { th { "Nodes" } td { (k.nodes) } }
                tr { th { "Launched" } td { (k.launched_at.map(utc).unwrap_or_default()) " (" (view.age_secs.map(human_duration).unwrap_or_default()) " ago)" } }
                tr { th { "Autostop" } td { (autostop_text(k.autostop_minutes, k.autostop_to_down)) } }
                tr { th { "Price" } td { (price_cell(&detail.row)) " per hour · " (money(view.cost_so_far)) " so far"
                    @if let Some(src) = detail.row.price_source { span.muted { " (" (src.describe())
                        @if src == PriceSource::Catalog && detail.row.total_cost.is_none() { "; cost so far estimated since launch" }
                        ")" } } } }
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
        (charts::timeline(&charts::spans(&detail.transitions, now), now))
        @if !detail.transitions.is_empty() {
            details {
                summary { (detail.transitions.len()) " transition(s)" }
                table { thead { tr { th { "When" } th { "From" } th { "To" } } }
                    tbody { @for t in detail.transitions.iter().rev() { tr {
                        td { (when(t.at, now)) }
                        td { @if let Some(f) = t.from { (status_cell(f)) } @else { span.muted { "new" } } }
                        td { (status_cell(t.to)) }
                    } } } }
            }
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
