//! The Jobs pages: SkyPilot's managed jobs as the host database holds them, and one job
//! with its status timeline.

use axum::response::Response;
use maud::{html, Markup};

use super::{encode_segment, layout, money, page, pager, utc};
use crate::jobs::{JobStatus, JobTransition, JobView, JobsReport};
use crate::time::{human_duration, Timestamp};
use crate::web_ui::api::JobFilter;
use crate::web_ui::console::ctx::Ctx;

/// A job status as a badge: ended badly red, running green, ended well grey.
pub(super) fn job_status_cell(s: JobStatus) -> Markup {
    let kind = if s.is_failed() {
        "failed"
    } else if s.is_active() {
        "active"
    } else if s.is_terminal() {
        "ended"
    } else {
        "waiting"
    };
    html! { span class={ "badge job-" (kind) } { (s.as_str()) } }
}

/// The freshness of the job data, in words.
pub(super) fn jobs_freshness(r: &JobsReport) -> Markup {
    super::feed_freshness(
        r.feed.as_ref(),
        r.stale,
        ("SkyPilot's job queue", "Jobs", "jobs_poll_interval_secs"),
    )
}

fn job_href(id: i64) -> String {
    format!("/console/jobs/{id}")
}

fn filter_pairs(f: &JobFilter) -> Vec<(&'static str, String)> {
    let mut v = Vec::new();
    for (k, o) in [
        ("status", &f.status),
        ("user", &f.user),
        ("name", &f.name),
        ("all", &f.all),
    ] {
        if let Some(x) = o.as_deref().filter(|x| !x.is_empty()) {
            v.push((k, x.to_string()));
        }
    }
    v
}

fn filter_form(f: &JobFilter) -> Markup {
    let v = |o: &Option<String>| o.clone().unwrap_or_default();
    let status_now = v(&f.status).to_ascii_uppercase();
    html! {
        form.filters method="get" action="/console/jobs" {
            label { "Status"
                select name="status" {
                    option value="" { "not ended" }
                    @for s in JobStatus::ALL {
                        option value=(s.as_str()) selected[status_now == s.as_str()] { (s.as_str()) }
                    }
                }
            }
            label { "User" input type="text" name="user" value=(v(&f.user)); }
            label { "Name contains" input type="text" name="name" value=(v(&f.name)); }
            @if let Some(n) = f.per_page.as_deref() { input type="hidden" name="per_page" value=(n); }
            label { "Ended too" input type="checkbox" name="all" value="1" checked[f.all.is_some()]; }
            button type="submit" { "Filter" }
        }
    }
}

/// The totals of the job queue: by status (links to the filtered list), running jobs
/// and what their clusters cost per hour.
pub(crate) fn job_cards(r: &JobsReport) -> Markup {
    let failed: i64 = r
        .by_status
        .iter()
        .filter(|(s, _)| s.is_failed())
        .map(|(_, n)| n)
        .sum();
    html! {
        div.card {
            div.k { "Managed jobs" }
            div.v { (r.active) " running" }
            div.muted {
                @for (i, (status, n)) in r.by_status.iter().filter(|(_, n)| **n > 0).enumerate() {
                    @if i > 0 { " · " }
                    a href={ "/console/jobs?status=" (status.as_str()) } { (n) " " (status.as_str()) }
                }
            }
        }
        div.card {
            div.k { "Jobs' burn rate" }
            div.v { (money(Some(r.burn))) "/h" }
            div.muted { "clusters of running jobs, where priced" }
        }
        div.card {
            div.k { "Failed jobs" }
            div.v.error[failed > 0] { a href="/console/jobs?status=FAILED&all=1" { (failed) } }
        }
    }
}

fn row(v: &JobView) -> Markup {
    let j = &v.row.job;
    html! {
        tr {
            td.num { a href=(job_href(j.job_id)) { (j.job_id) @if j.task_id > 0 { "." (j.task_id) } } }
            td.name { a href=(job_href(j.job_id)) { (j.name) } }
            td { (job_status_cell(j.status)) }
            td { (j.owner()) }
            td { (j.pool.as_deref().unwrap_or("")) }
            td.res { (j.resources.as_deref().unwrap_or("")) }
            td { (j.infra.as_deref().unwrap_or("")) }
            td { @if let Some(c) = &j.cluster { a href={ "/console/clusters/" (encode_segment(c)) } { (c) } } }
            td.num { (j.recovery_count) }
            td { (j.submitted_at.map(utc).unwrap_or_default()) }
            td { (v.running_secs.map(human_duration).unwrap_or_default()) }
            td.num { (money(v.row.hourly_cost)) }
            td.num { (money(v.cost_so_far)) }
            td.reason { (j.failure_reason.as_deref().unwrap_or("")) }
        }
    }
}

/// The Jobs page: one page of what the filters select.
pub(crate) fn jobs(
    ctx: &Ctx,
    f: &JobFilter,
    r: &JobsReport,
    (page_no, per_page): (usize, usize),
) -> Response {
    let pager = pager(
        "/console/jobs",
        &filter_pairs(f),
        page_no,
        per_page,
        r.total,
    );
    let body = html! {
        p { (jobs_freshness(r)) " · " a href="/dashboard/jobs" { "SkyPilot's own jobs page" } }
        div.cards { (job_cards(r)) }
        (filter_form(f))
        (pager)
        table id="jobs" {
            thead { tr {
                th.num { "ID" } th { "Name" } th { "Status" } th { "User" } th { "Pool" }
                th { "Resources" } th { "Infra" } th { "Cluster" } th.num { "Recoveries" }
                th { "Submitted" } th { "Ran" } th.num { "$/h" } th.num { "Cost so far" }
                th { "Failure" }
            } }
            tbody { @for v in &r.jobs { (row(v)) } }
        }
        @if r.jobs.is_empty() { p.muted { "No managed jobs match." } }
        @if r.total > per_page { (pager) }
    };
    page(layout(ctx, "Managed jobs", "/console/jobs", true, body))
}

/// One job: its tasks, its status over time, and a link to SkyPilot's own page of it.
pub(crate) fn job(
    ctx: &Ctx,
    job_id: i64,
    tasks: &[JobView],
    transitions: &[JobTransition],
    now: Timestamp,
) -> Response {
    let name = tasks.first().map(|t| t.row.job.name.as_str()).unwrap_or("");
    let body = html! {
        p { a href={ "/dashboard/jobs/" (job_id) } { "This job in SkyPilot's dashboard" }
            " (logs, events) · " a href={ "/api/v1/jobs/" (job_id) } { "as JSON" } }
        table {
            thead { tr {
                th.num { "Task" } th { "Status" } th { "User" } th { "Cluster" } th.num { "Recoveries" }
                th { "Submitted" } th { "Started" } th { "Ended" } th.num { "$/h" } th.num { "Cost so far" } th { "Failure" }
            } }
            tbody {
                @for v in tasks {
                    @let j = &v.row.job;
                    tr {
                        td.num { (j.task_id) }
                        td { (job_status_cell(j.status)) }
                        td { (j.owner()) }
                        td { @if let Some(c) = &j.cluster { a href={ "/console/clusters/" (encode_segment(c)) } { (c) } } }
                        td.num { (j.recovery_count) }
                        td { (j.submitted_at.map(utc).unwrap_or_default()) }
                        td { (j.started_at.map(utc).unwrap_or_default()) }
                        td { (j.ended_at.map(utc).unwrap_or_default()) }
                        td.num { (money(v.row.hourly_cost)) }
                        td.num { (money(v.cost_so_far)) }
                        td.reason { (j.failure_reason.as_deref().unwrap_or("")) }
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
                            td { (job_status_cell(t.to)) @if tasks.len() > 1 { " (task " (t.task_id) ")" } }
                            td { @if t.to.is_terminal() && i + 1 == transitions.len() { "–" }
                                 @else { (human_duration(until.secs_since(t.at).max(0.0))) } }
                        }
                    }
                }
            }
        }
    };
    page(layout(
        ctx,
        &format!("Managed job {job_id}: {name}"),
        "/console/jobs",
        false,
        body,
    ))
}
