//! The Services pages: SkyServe services as the host database holds them, and one
//! service with its replicas and status timeline. (SkyPilot 0.14.1's dashboard has no
//! services page; a replica links to its cluster's page here.)

use axum::response::Response;
use maud::{html, Markup};

use super::{encode_segment, layout, money, page, utc};
use crate::services::{
    ReplicaStatus, ServiceRow, ServiceStatus, ServiceTransition, ServicesReport,
};
use crate::time::{human_duration, Timestamp};
use crate::web_ui::api::ServiceFilter;
use crate::web_ui::console::ctx::Ctx;

/// A service status as a badge: broken red, ready green, going away grey, else amber.
fn service_status_cell(s: ServiceStatus) -> Markup {
    let kind = if s.is_failed() {
        "failed"
    } else if s == ServiceStatus::Ready {
        "active"
    } else if !s.is_live() {
        "ended"
    } else {
        "waiting"
    };
    html! { span class={ "badge job-" (kind) } { (s.as_str()) } }
}

fn replica_status_cell(s: ReplicaStatus) -> Markup {
    let kind = match s {
        ReplicaStatus::Ready => "active",
        ReplicaStatus::Failed
        | ReplicaStatus::FailedInitialDelay
        | ReplicaStatus::FailedProbing
        | ReplicaStatus::FailedProvision
        | ReplicaStatus::FailedCleanup
        | ReplicaStatus::Preempted => "failed",
        ReplicaStatus::ShuttingDown | ReplicaStatus::Unknown => "ended",
        _ => "waiting",
    };
    html! { span class={ "badge job-" (kind) } { (s.as_str()) } }
}

/// A service's endpoint: a link when it is an http(s) URL, else plain text (never a
/// `javascript:` link from what SkyPilot reports).
fn endpoint_cell(endpoint: Option<&str>) -> Markup {
    html! {
        @match endpoint {
            Some(e) if e.starts_with("http://") || e.starts_with("https://") => a href=(e) rel="noreferrer" { (e) },
            Some(e) => (e),
            None => "",
        }
    }
}

fn service_href(name: &str) -> String {
    format!("/console/serve/{}", encode_segment(name))
}

fn filter_form(f: &ServiceFilter) -> Markup {
    let v = |o: &Option<String>| o.clone().unwrap_or_default();
    let status_now = v(&f.status).to_ascii_uppercase();
    html! {
        form.filters method="get" action="/console/serve" {
            label { "Status"
                select name="status" {
                    option value="" { "not gone" }
                    @for s in ServiceStatus::ALL {
                        option value=(s.as_str()) selected[status_now == s.as_str()] { (s.as_str()) }
                    }
                }
            }
            label { "User" input type="text" name="user" value=(v(&f.user)); }
            label { "Name contains" input type="text" name="name" value=(v(&f.name)); }
            label { "Gone too" input type="checkbox" name="all" value="1" checked[f.all.is_some()]; }
            button type="submit" { "Filter" }
        }
    }
}

/// The services' totals: by status (links to the filtered list) and those that answer
/// nothing.
pub(crate) fn service_cards(r: &ServicesReport) -> Markup {
    let live: i64 = r
        .by_status
        .iter()
        .filter(|(s, _)| s.is_live())
        .map(|(_, n)| n)
        .sum();
    html! {
        div.card {
            div.k { "Services" }
            div.v { (r.by_status.get(&ServiceStatus::Ready).copied().unwrap_or(0)) " ready of " (live) }
            div.muted {
                @for (i, (status, n)) in r.by_status.iter().filter(|(_, n)| **n > 0).enumerate() {
                    @if i > 0 { " · " }
                    a href={ "/console/serve?status=" (status.as_str()) } { (n) " " (status.as_str()) }
                }
            }
        }
        div.card {
            div.k { "Services' burn rate" }
            div.v { (money(Some(r.burn))) "/h" }
            div.muted { "their replicas' clusters, where priced" }
        }
        div.card {
            div.k { "Services without a ready replica" }
            div.v.error[r.without_ready > 0] { (r.without_ready) }
            div.muted { "their endpoint answers nothing" }
        }
    }
}

fn replicas_summary(s: &ServiceRow) -> String {
    let by = s.service.replicas_by_status();
    if by.is_empty() {
        return "none".into();
    }
    by.iter()
        .map(|(st, n)| format!("{n} {}", st.as_str()))
        .collect::<Vec<_>>()
        .join(", ")
}

fn row(s: &ServiceRow) -> Markup {
    let v = &s.service;
    html! {
        tr {
            td.name { a href=(service_href(&v.name)) { (v.name) } }
            td { (service_status_cell(v.status)) }
            td { (v.owner()) }
            td.num { (s.ready_replicas) }
            td { (replicas_summary(s)) }
            td { (v.policy.as_deref().unwrap_or("")) }
            td.res { (v.resources.as_deref().unwrap_or("")) }
            td { (endpoint_cell(v.endpoint.as_deref())) }
            td { (v.ready_since.map(utc).unwrap_or_default()) }
            td.num { (money(s.hourly_cost)) }
        }
    }
}

/// The Services page: what the filters select.
pub(crate) fn services_page(ctx: &Ctx, f: &ServiceFilter, r: &ServicesReport) -> Response {
    let body = html! {
        p { (super::feed_freshness(r.feed.as_ref(), r.stale, ("SkyServe's services (/serve/status)", "Services", "services_poll_interval_secs")))
            " · " a href="/api/v1/services" { "as JSON" } }
        div.cards { (service_cards(r)) }
        (filter_form(f))
        table id="services" {
            thead { tr {
                th { "Name" } th { "Status" } th { "User" } th.num { "Ready" } th { "Replicas" }
                th { "Policy" } th { "Resources" } th { "Endpoint" } th { "Ready since" } th.num { "$/h" }
            } }
            tbody { @for s in &r.services { (row(s)) } }
        }
        @if r.services.is_empty() { p.muted { "No services match." } }
    };
    page(layout(ctx, "Services", "/console/serve", true, body))
}

/// One service: its replicas (each linking to its cluster), its status over time.
pub(crate) fn service(
    ctx: &Ctx,
    s: &ServiceRow,
    transitions: &[ServiceTransition],
    now: Timestamp,
) -> Response {
    let v = &s.service;
    let body = html! {
        p { (service_status_cell(v.status)) " · owner " (v.owner())
            " · endpoint " (endpoint_cell(v.endpoint.as_deref()))
            " · " a href={ "/api/v1/services/" (encode_segment(&v.name)) } { "as JSON" } }
        @if let Some(last) = s.last_status { p.muted { "Gone from SkyPilot since " (s.gone_at.map(utc).unwrap_or_default()) "; its last status was " (last.as_str()) "." } }
        table {
            tbody {
                tr { th { "Policy" } td { (v.policy.as_deref().unwrap_or("")) } }
                tr { th { "Resources per replica" } td { (v.resources.as_deref().unwrap_or("")) } }
                tr { th { "Version" } td { (v.version.map(|n| n.to_string()).unwrap_or_default()) } }
                tr { th { "Target replicas" } td { (v.target_replicas.map(|n| n.to_string()).unwrap_or_else(|| "not reported".into())) } }
                tr { th { "Ready since" } td { (v.ready_since.map(utc).unwrap_or_default()) } }
                tr { th { "TLS" } td { (if v.tls { "yes" } else { "no" }) } }
                tr { th { "Replicas' clusters" } td { (money(s.hourly_cost)) "/h, where UP and priced" } }
                tr { th { "First seen" } td { (utc(s.first_seen)) } }
            }
        }
        h2 { "Replicas" }
        @if v.replicas.is_empty() {
            p.muted { "No replicas." }
        } @else {
            table id="replicas" {
                thead { tr { th.num { "ID" } th { "Status" } th { "Cluster" } th.num { "Version" } th { "Spot" } th { "Infra" } th { "Launched" } } }
                tbody {
                    @for r in &v.replicas {
                        tr {
                            td.num { (r.replica_id) }
                            td { (replica_status_cell(r.status)) }
                            td { a href={ "/console/clusters/" (encode_segment(&r.cluster)) } { (r.cluster) } }
                            td.num { (r.version.map(|n| n.to_string()).unwrap_or_default()) }
                            td { (if r.is_spot { "spot" } else { "" }) }
                            td { (r.infra.as_deref().unwrap_or("")) }
                            td { (r.launched_at.map(utc).unwrap_or_default()) }
                        }
                    }
                }
            }
        }
        h2 { "Status timeline" }
        @if transitions.is_empty() {
            p.muted { "No status changes recorded." }
        } @else {
            table id="timeline" {
                thead { tr { th { "From" } th { "Status" } th { "For" } } }
                tbody {
                    @for (i, t) in transitions.iter().enumerate() {
                        @let until = transitions.get(i + 1).map_or(now, |n| n.at);
                        tr {
                            td { (utc(t.at)) }
                            td { (service_status_cell(t.to)) }
                            td { @if t.to == ServiceStatus::Gone { "–" }
                                 @else { (human_duration(until.secs_since(t.at).max(0.0))) } }
                        }
                    }
                }
            }
        }
    };
    page(layout(
        ctx,
        &format!("Service {}", v.name),
        "/console/serve",
        false,
        body,
    ))
}
