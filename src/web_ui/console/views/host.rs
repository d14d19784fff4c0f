//! The host's pages: the audit log, autostop, the services' health, the config.

use axum::response::Response;
use maud::{html, Markup};

use super::{audit_table, cluster_href, freshness_line, layout, page, pager, polling_text, utc};
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
    let body = html! {
        h2 { "The enforcer" }
        (last_pass(pass, now))
        h2 { "Policy (" code { "[autostop]" } " of the host config)" }
        (policy_table(&ctx.state.config.autostop))
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
    let state_row = |name: &str, health: Health, text: Markup| {
        html! { tr { td { (name) } td { span class={ "badge badge-" (health.as_str()) } { (health.as_str()) } } td { (text) } } }
    };
    let row = |name: &str, ok: bool, text: Markup| {
        state_row(name, if ok { Health::Ok } else { Health::Problem }, text)
    };
    let interval = state.config.autostop.interval_secs as f64;
    let (autostop_health, autostop_text) = autostop_state(d, interval, now);
    let body = html! {
        table {
            thead { tr { th { "Service" } th { "State" } th { "Detail" } } }
            tbody {
                (row("SkyPilot API server (live probe)", live.is_ok(), html! { (match live { Ok(s) | Err(s) => s.as_str() }) " · " (state.sky.base_url()) }))
                (row("SkyPilot API server (cluster manager's last probe)", d.api.as_ref().is_some_and(|h| h.healthy), html! {
                    @if let Some(h) = &d.api { (human_duration(now.age_since(h.checked_at))) " ago" @if let Some(e) = &h.error { ": " (e) } } @else { "never probed" }
                }))
                (row("Cluster manager", !d.fresh.stale, html! { (freshness_line(&d.fresh)) " · " (polling_text(&d.polling)) }))
                (row("Monitor", monitor.is_ok(), html! { @match monitor { Ok(()) => { "/healthz answers on " (state.config.monitor.listen) } Err(e) => { (e) } } }))
                (state_row("Autostop enforcer", autostop_health, autostop_text))
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
                td { (poll_badge(p)) }
                td.num { (p.clusters.map(|n| n.to_string()).unwrap_or_default()) }
                td.num { (p.changes.map(|n| n.to_string()).unwrap_or_default()) }
                td { (p.error.as_deref().unwrap_or("")) }
            } } }
        }
    };
    page(layout(ctx, "Host roles", "/console/services", true, body))
}

/// The `[autostop]` section in words, one row per rule.
fn policy_table(a: &crate::config::AutostopConfig) -> Markup {
    use crate::config::Enforce;
    let list = |v: &[String]| {
        if v.is_empty() {
            "none".to_string()
        } else {
            v.join(", ")
        }
    };
    html! {
        table.policy {
            tbody {
                tr { th { "Idle limit" } td { "every UP cluster carries SkyPilot's autostop of at most " strong { (a.idle_minutes) " min" } } }
                tr { th { "Enforce" } td { @match a.enforce {
                    Enforce::Autostop => { "autostop: set it where missing or longer, keeping the owner's stop or down" }
                    Enforce::Stop => { "stop: autostop, and clusters past their lifetime are stopped" }
                    Enforce::Down => { "down: autostop tears down, and clusters past their lifetime are torn down" }
                } } }
                tr { th { "Lifetime" } td { @match a.max_lifetime_hours { Some(h) => { (h) " h after launch" } None => { "no limit" } } } }
                tr { th { "Clouds that cannot stop" } td {
                    @if a.down_when_cannot_stop { "autostop tears down on " } @else { "left alone on " }
                    (a.cannot_stop_clouds.len()) " cloud(s) "
                    details.raw { summary { "which" } (list(&a.cannot_stop_clouds)) }
                } }
                tr { th { "Exempt" } td { "names " (list(&a.exempt_names)) " · workspaces " (list(&a.exempt_workspaces)) " · users " (list(&a.exempt_users)) } }
                tr { th { "Grace after launch" } td { (a.grace_minutes) " min" } }
                tr { th { "Passes" } td { "every " (human_duration(a.interval_secs as f64)) "; a failed action is retried after " (human_duration(a.retry_base_secs as f64)) ", doubling up to " (human_duration(a.retry_max_secs as f64))
                    @if a.dry_run { " · " strong { "dry run: nothing is done" } } } }
            }
        }
    }
}

/// A poll's outcome as a badge. A forced refresh that failed is a warning, not a
/// problem: the cluster manager then reads SkyPilot's database without refresh, and the
/// state stays fresh (its statuses are SkyPilot's last known, not the clouds' now).
fn poll_badge(p: &crate::store::PollRun) -> Markup {
    use crate::skypilot::RefreshMode;
    use crate::store::PollOutcome;
    let (class, text) = match (p.outcome, p.refresh) {
        (PollOutcome::Ok, _) => ("badge-ok", "ok"),
        (PollOutcome::Error, RefreshMode::Force) => ("badge-warn", "refresh failed"),
        (PollOutcome::Error, _) => ("badge-problem", "error"),
    };
    html! { span class={ "badge " (class) } { (text) } }
}

/// A role's state on the Services page.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Health {
    Ok,
    /// Running, with nothing done yet.
    Idle,
    Problem,
}

impl Health {
    fn as_str(self) -> &'static str {
        match self {
            Health::Ok => "ok",
            Health::Idle => "idle",
            Health::Problem => "problem",
        }
    }
}

/// The autostop enforcer: ok while it passes every `interval_secs` (a pass may be late
/// by its own length: up to three intervals and a minute); idle before any pass was
/// recorded (not started yet, or `autostop` is run by a timer that has not fired); a
/// problem when its passes stopped.
fn autostop_state(d: &Services, interval_secs: f64, now: Timestamp) -> (Health, Markup) {
    let last_action = html! {
        @match &d.last_autostop {
            Some(e) => { "last action " (human_duration(now.age_since(e.at))) " ago" }
            None => { "no action taken yet" }
        }
    };
    match &d.autostop_pass {
        None => (
            Health::Idle,
            html! { "no pass recorded yet (a pass every " (human_duration(interval_secs)) ") · " (last_action) },
        ),
        Some(p) => {
            let age = now.age_since(p.at);
            let health = if age <= 3.0 * interval_secs + 60.0 {
                Health::Ok
            } else {
                Health::Problem
            };
            (
                health,
                html! {
                    "last pass " (human_duration(age)) " ago over " (p.clusters) " cluster(s): "
                    (p.acted) " acted, " (p.held) " held, " (p.failed) " failed"
                    @if health == Health::Problem { ", expected every " (human_duration(interval_secs)) }
                    " · " (last_action)
                },
            )
        }
    }
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
