//! The host's pages: the audit log, autostop, the services' health, the config.

use axum::response::Response;
use maud::{html, Markup};

use super::{audit_table, cluster_href, freshness_line, layout, page, pager, utc};
use crate::autostop::engine::{Decision, Verdict};
use crate::store::{AuditEntry, AutostopPass};
use crate::time::{human_duration, when, Timestamp};
use crate::web_ui::console::ctx::Ctx;
use crate::web_ui::console::data::Services;

/// The audit log, one page of it, newest first.
pub(crate) fn audit(
    ctx: &Ctx,
    entries: &[AuditEntry],
    total: usize,
    (page_no, per_page): (usize, usize),
) -> Response {
    let pager = pager("/console/audit", &[], page_no, per_page, total);
    let body = html! {
        p.muted { "Every action a role or a person took, newest first." }
        (pager)
        (audit_table(entries, true))
        @if total > per_page { (pager) }
    };
    page(layout(ctx, "Audit log", "/console/audit", true, body))
}

/// Most decisions of the dry run listed (those that act or hold come first).
const PREVIEW_LISTED: usize = 100;

/// The enforcer's last pass, and when and why it last held clusters back.
fn last_pass(p: Option<&AutostopPass>, now: Timestamp) -> Markup {
    html! {
        div id="autostop-last-pass" {
            @match p {
                None => { p.muted { "The enforcer has not made a pass yet." } }
                Some(p) => {
                    p { "Last pass " (when(p.at, now)) ": " (p.clusters) " cluster(s), acted on " (p.acted)
                        @if p.failed > 0 { ", " span.error { (p.failed) " failed" } }
                        ", held back " (p.held)
                        @if p.not_sent > 0 { ", " span.error { (p.not_sent) " not sent (API server unreachable)" } }
                        "." }
                    @match (p.held_at, p.held_reason.as_deref()) {
                        (Some(at), Some(why)) => {
                            p class=[(at == p.at).then_some("stale")] { "Last held back " (when(at, now)) ": " (why) }
                        }
                        _ => { p.muted { "It has never held a cluster back." } }
                    }
                }
            }
        }
    }
}

/// The Autostop page: the enforcer's last pass, the `[autostop]` section, its dry run
/// now (`preview`), the autostop actions recorded.
pub(crate) fn autostop(
    ctx: &Ctx,
    entries: &[AuditEntry],
    pass: Option<&AutostopPass>,
    preview: &anyhow::Result<Vec<Decision>>,
    now: Timestamp,
) -> Response {
    let policy = toml::to_string_pretty(&ctx.state.config.autostop)
        .unwrap_or_else(|e| format!("# cannot show the section: {e}\n"));
    let body = html! {
        h2 { "The enforcer" }
        (last_pass(pass, now))
        h2 { "Policy (" code { "[autostop]" } " of the host config)" }
        pre { @if policy.trim().is_empty() { "# defaults" } @else { (policy) } }
        h2 { "What would be acted on now" }
        div id="autostop-preview" {
            @match preview {
                Ok(decisions) => {
                    p.muted {
                        "A dry run of the enforcer's next pass (the same as "
                        code { "skypilot-host autostop --dry-run" } "); nothing is sent."
                    }
                    @let acting: Vec<&Decision> = decisions.iter().filter(|d| d.verdict != Verdict::Skip)
                        .chain(decisions.iter().filter(|d| d.verdict == Verdict::Skip)).take(PREVIEW_LISTED).collect();
                    @let count = |v: fn(&Verdict) -> bool| decisions.iter().filter(|d| v(&d.verdict)).count();
                    @if decisions.is_empty() {
                        p { "No cluster is known." }
                    } @else {
                        p { (count(|v| matches!(v, Verdict::Act(_)))) " to act on, "
                            (count(|v| *v == Verdict::Hold)) " held back, "
                            (count(|v| *v == Verdict::Skip)) " left alone"
                            @if decisions.len() > PREVIEW_LISTED { "; the first " (PREVIEW_LISTED) " below, those acted on or held back first" }
                            "." }
                        table {
                            thead { tr { th { "Cluster" } th { "Decision" } th { "Reason" } } }
                            tbody {
                                @for d in acting {
                                    tr {
                                        td { a href=(cluster_href(&d.cluster)) { (d.cluster) } }
                                        td {
                                            @match d.verdict {
                                                Verdict::Act(a) => { strong { "act: " (a) } }
                                                Verdict::Hold => { "hold" }
                                                Verdict::Skip => { "skip" }
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
        (audit_table(entries, true))
    };
    page(layout(ctx, "Autostop", "/console/autostop", true, body))
}

/// The Services page: the recorded state `d`, the live probes of the monitor and of
/// SkyPilot's API server.
pub(crate) fn services(
    ctx: &Ctx,
    d: &Services,
    monitor: &Result<(), String>,
    live: &Result<String, String>,
    now: Timestamp,
) -> Response {
    let state = &ctx.state;
    let users = state.users();
    let problem = state
        .users_problem
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .clone();
    let row = |name: &str, ok: bool, text: Markup| {
        html! { tr { td { (name) } td class=(if ok { "outcome-ok" } else { "error" }) { (if ok { "ok" } else { "problem" }) } td { (text) } } }
    };
    let body = html! {
        table {
            thead { tr { th { "Service" } th { "State" } th { "Detail" } } }
            tbody {
                (row("SkyPilot API server (live probe)", live.is_ok(), html! { (match live { Ok(s) | Err(s) => s.as_str() }) " · " (state.sky.base_url()) }))
                (row("SkyPilot API server (cluster manager's last probe)", d.api.as_ref().is_some_and(|h| h.healthy), html! {
                    @if let Some(h) = &d.api { (human_duration(now.age_since(h.checked_at))) " ago" @if let Some(e) = &h.error { ": " (e) } } @else { "never probed" }
                }))
                (row("Cluster manager", !d.fresh.stale, freshness_line(&d.fresh)))
                (row("Monitor", monitor.is_ok(), html! { @match monitor { Ok(()) => { "/healthz answers on " (state.config.monitor.listen) } Err(e) => { (e) } } }))
                (row("Autostop", d.last_autostop.is_some(), html! {
                    @if let Some(e) = &d.last_autostop { "last action " (human_duration(now.age_since(e.at))) " ago" } @else { "no action recorded" }
                }))
                (row("Users and tokens files", problem.is_none(), html! {
                    @match &problem {
                        Some(p) => { (p) }
                        None => { (users.user_count()) " user(s), " (users.token_count()) " token(s) in force; read again when they change" }
                    }
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
    page(layout(ctx, "Services", "/console/services", true, body))
}

/// The Config page: the host config and SkyPilot's (`sky`: its path and redacted text),
/// both redacted already.
pub(crate) fn config(
    ctx: &Ctx,
    host: &str,
    sky: Option<(String, Result<String, String>)>,
) -> Response {
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
    page(layout(ctx, "Config", "/console/config", false, body))
}
