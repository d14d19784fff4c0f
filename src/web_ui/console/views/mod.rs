//! The console's markup, apart from what it shows: every function here draws from data
//! it is given (maud escapes every interpolated value) and reads nothing.

mod actions;
mod charts;
mod cli;
mod fleet;
mod host;
mod jobs;
mod serve;

pub(crate) use charts::spans;

pub(crate) use actions::{action_result, confirm_action};
pub(crate) use cli::{cli_authorize, cli_authorized, cli_logins, cli_token};
pub(crate) use fleet::{cluster, clusters, overview};
pub(crate) use host::{audit, autostop, config, services};
pub(crate) use jobs::{job, job_cards, jobs};
pub(crate) use serve::{service, service_cards, services_page};

use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Response};
use maud::{html, Markup, DOCTYPE};

use super::ctx::Ctx;
use crate::cluster::ClusterStatus;
use crate::fleet::Freshness;
use crate::store::AuditEntry;
use crate::time::human_duration;
pub(crate) use crate::time::utc;
#[cfg(test)]
use crate::time::Timestamp;
use crate::web_ui::auth::csrf;
use crate::web_ui::identity::Identity;

/// The navigation, in order: (path, label).
const NAV: [(&str, &str); 9] = [
    ("/console/", "Overview"),
    ("/console/clusters", "Clusters"),
    ("/console/jobs", "Jobs"),
    ("/console/serve", "Services"),
    ("/console/autostop", "Autostop"),
    ("/console/audit", "Audit log"),
    ("/console/services", "Host roles"),
    ("/console/config", "Config"),
    ("/console/cli-logins", "CLI logins"),
];

/// A page's `<head>`: its title, our stylesheet, and with `script` the list pages'
/// auto-refresh.
fn head(title: &str, script: bool) -> Markup {
    html! {
        head {
            meta charset="utf-8";
            meta name="viewport" content="width=device-width, initial-scale=1";
            title { (title) " · skypilot-host" }
            link rel="stylesheet" href="/console/static/console.css";
            // No favicon request (it would go to the gateway).
            link rel="icon" href="data:,";
            @if script { script src="/console/static/refresh.js" defer {} }
        }
    }
}

/// A whole page: navigation, who is logged in, the logout button, the body.
pub(crate) fn layout(ctx: &Ctx, title: &str, current: &str, refresh: bool, body: Markup) -> Markup {
    let notice = ctx.state.config.web_ui.notice.as_deref();
    frame(
        &ctx.who,
        ctx.csrf.as_deref(),
        notice,
        title,
        current,
        refresh,
        body,
    )
}

/// [`layout`] for `who`, with a logout button when there is a session (`csrf`) and
/// `web_ui.notice` above the page's title.
fn frame(
    who: &Identity,
    csrf: Option<&str>,
    notice: Option<&str>,
    title: &str,
    current: &str,
    refresh: bool,
    body: Markup,
) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            (head(title, true))
            body data-refresh=[refresh.then_some("30")] {
                header {
                    nav {
                        span.brand { "skypilot-host" }
                        @for (path, label) in NAV {
                            a href=(path) class=[(path == current).then_some("current")] { (label) }
                        }
                        a href="/dashboard/" { "SkyPilot dashboard" }
                    }
                    div.who {
                        span.name { (who.name) }
                        span.badge.role title="your role" { (who.role.as_str()) }
                        @if let Some(token) = csrf {
                            form method="post" action="/console/logout" {
                                input type="hidden" name=(csrf::FIELD) value=(token);
                                button type="submit" { "Log out" }
                            }
                        }
                    }
                }
                main {
                    @if let Some(n) = notice { p.notice role="note" { (n) } }
                    h1 { (title) }
                    (body)
                }
            }
        }
    }
}

/// An HTML response.
/// How fresh a feed's data is, in words: `(source, records, setting)` name what is read,
/// what it gives and the interval's setting under `cluster_manager`.
pub(super) fn feed_freshness(
    feed: Option<&crate::store::FeedState>,
    stale: bool,
    (source, records, setting): (&str, &str, &str),
) -> Markup {
    html! {
        @match feed {
            None => span.stale { "No read of " (source) " yet (the cluster manager reads it every cluster_manager." (setting) ")." },
            Some(f) => {
                @if let Some(ok) = f.ok_at {
                    (records) " as of " (utc(ok))
                    @if let Some(i) = f.interval_secs { ", read every " (format!("{i:.0}")) " s" }
                } @else { "No successful read of " (source) " yet" }
                @if stale { " " span.stale { "stale" } }
                @if let Some(e) = &f.error {
                    @if f.failed() {
                        p.error { "The last read failed at " (utc(f.attempted_at)) ": " (e) }
                    } @else {
                        p.muted { (e) }
                    }
                }
            }
        }
    }
}

pub(crate) fn page(markup: Markup) -> Response {
    Html(markup.into_string()).into_response()
}

/// An error page with a status.
pub(crate) fn error_page(ctx: &Ctx, status: StatusCode, message: &str) -> Response {
    let body = html! { p.error { (message) } };
    (status, page(layout(ctx, "Error", "", false, body))).into_response()
}

/// The login page: `message` above the form, `next` where to go after, `token` the login
/// form's CSRF token; `offer` says whether single sign-on and the password form are there.
pub(crate) fn login_page(
    message: Option<&str>,
    next: &str,
    token: &str,
    offer: &crate::web_ui::auth::login::LoginOffer<'_>,
) -> Markup {
    let start: String = url::form_urlencoded::Serializer::new(String::new())
        .append_pair("next", next)
        .finish();
    html! {
        (DOCTYPE)
        html lang="en" {
            (head("Log in", false))
            body.login {
                main {
                    h1 { "skypilot-host" }
                    @if let Some(m) = message { p.error { (m) } }
                    @if let Some(name) = offer.sso {
                        p { a.sso href={ "/console/oidc/start?" (start) } { "Sign in with " (name) } }
                    }
                    @if offer.password {
                        form method="post" action="/console/login" {
                            input type="hidden" name=(csrf::FIELD) value=(token);
                            input type="hidden" name="next" value=(next);
                            label { "User " input type="text" name="username" autocomplete="username" required autofocus[offer.sso.is_none()]; }
                            label { "Password " input type="password" name="password" autocomplete="current-password" required; }
                            button type="submit" { "Log in" }
                        }
                    }
                }
            }
        }
    }
}

/// The page of a person the provider knows and no mapped group admits: who they are,
/// their groups, and which groups give which role.
pub(crate) fn no_access_page(
    name: &str,
    groups: &[String],
    mapping: Option<&[(crate::web_ui::identity::Role, &[String]); 3]>,
) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            (head("No access", false))
            body.login {
                main {
                    h1 { "No access" }
                    p.error {
                        "You are signed in at the identity provider as " strong { (name) }
                        ", but none of your groups gives access to this SkyPilot server."
                    }
                    p { "Your groups: "
                        @if groups.is_empty() { em { "none" } }
                        @for (i, g) in groups.iter().enumerate() { @if i > 0 { ", " } code { (g) } }
                    }
                    @if let Some(m) = mapping {
                        p { "Access comes with membership of:" }
                        ul {
                            @for (role, list) in m.iter() {
                                @if !list.is_empty() {
                                    li { strong { (role.as_str()) } ": "
                                        @for (i, g) in list.iter().enumerate() { @if i > 0 { ", " } code { (g) } }
                                    }
                                }
                            }
                        }
                    }
                    p { "Ask the people who run this server to add you to one of them, then "
                        a href="/console/login" { "sign in again" } "." }
                }
            }
        }
    }
}

/// Dollars to the cent, "–" when unknown (never "$-0.00": adding 0.0 turns a negative
/// zero, the sum of nothing, into zero).
fn money(v: Option<f64>) -> String {
    v.filter(|x| x.is_finite())
        .map_or_else(|| "–".to_string(), |x| format!("${:.2}", x + 0.0))
}

/// A pager under a list: the rows shown of `total`, first / previous / next / last
/// links, and the page size as a plain GET form (works without JavaScript). `keep` are
/// the query's other parameters (filters, sort), kept in every link.
fn pager(
    path: &str,
    keep: &[(&str, String)],
    page: usize,
    per_page: usize,
    total: usize,
) -> Markup {
    let pages = total.div_ceil(per_page.max(1)).max(1);
    let page = page.clamp(1, pages);
    let href = |p: usize| {
        let mut q = url::form_urlencoded::Serializer::new(String::new());
        for (k, v) in keep {
            q.append_pair(k, v);
        }
        q.append_pair("per_page", &per_page.to_string());
        q.append_pair("page", &p.to_string());
        format!("{path}?{}", q.finish())
    };
    let first = (page - 1) * per_page + 1;
    let last = (page * per_page).min(total);
    html! {
        nav.pager aria-label="pages" {
            span.count {
                @if total == 0 { "no rows" } @else {
                    (first) "–" (last) " of " (total)
                }
            }
            @if page > 1 {
                a href=(href(1)) rel="first" { "« first" }
                a href=(href(page - 1)) rel="prev" { "‹ previous" }
            } @else {
                span.off { "« first" } span.off { "‹ previous" }
            }
            span { "page " (page) " of " (pages) }
            @if page < pages {
                a href=(href(page + 1)) rel="next" { "next ›" }
                a href=(href(pages)) rel="last" { "last »" }
            } @else {
                span.off { "next ›" } span.off { "last »" }
            }
            form method="get" action=(path) {
                @for (k, v) in keep { input type="hidden" name=(k) value=(v); }
                label { "rows per page "
                    select name="per_page" {
                        @for n in crate::web_ui::api::PAGE_SIZES {
                            option value=(n) selected[n == per_page] { (n) }
                        }
                    }
                }
                button type="submit" { "Show" }
            }
        }
    }
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

/// How often the cluster manager polls, and why: stretched to keep within the load
/// budget, or the configured interval and the share its reads take.
pub(crate) fn polling_text(p: &crate::fleet::Polling) -> String {
    let every = human_duration(p.effective_interval_secs);
    match &p.load {
        Some(l) if p.effective_interval_secs > p.poll_interval_secs as f64 => format!(
            "polled every {every}, stretched from {}s to keep within {:.1}% of the API server's CPU",
            p.poll_interval_secs,
            l.budget * 100.0
        ),
        // Not stretched although over the budget: fewer reads than the rule waits for
        // (src/load_budget.rs, MIN_SAMPLES).
        Some(l) if l.share > l.budget => format!(
            "polled every {every}, as configured: its first reads after a start took {:.2}% of the API server's CPU (over the {:.1}% budget), and the interval stretches only once {} reads are counted (the first are cold)",
            l.share * 100.0,
            l.budget * 100.0,
            crate::load_budget::MIN_SAMPLES
        ),
        Some(l) => format!(
            "polled every {every}, as configured: its reads take {:.2}% of the API server's CPU, within the {:.1}% budget",
            l.share * 100.0,
            l.budget * 100.0
        ),
        None => format!("polled every {every}, as configured (no read measured yet)"),
    }
}

fn status_cell(s: ClusterStatus) -> Markup {
    html! { span class={ "badge status-" (s.as_str()) } { (s.as_str()) } }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::web_ui::identity::{AuthMethod, Role};

    #[test]
    fn markup_is_escaped() {
        let who = Identity::named("<b>x</b>", Role::Viewer, AuthMethod::Session);
        let s = frame(
            &who,
            Some("\"><script>"),
            Some("<u>notice</u>"),
            "<t>",
            "",
            false,
            html! { p { "<i>" } },
        )
        .into_string();
        assert!(
            !s.contains("<b>x</b>") && s.contains("&lt;b&gt;x&lt;/b&gt;"),
            "{s}"
        );
        assert!(!s.contains("\"><script>"), "{s}");
        assert!(!s.contains("<t>") && !s.contains("<i>"), "{s}");
        assert!(s.contains("&lt;u&gt;notice&lt;/u&gt;"), "{s}");
    }

    #[test]
    fn the_polling_text_never_contradicts_itself() {
        let load = |share: f64, interval_secs: f64| crate::fleet::Polling {
            poll_interval_secs: 10,
            effective_interval_secs: interval_secs,
            load: Some(crate::store::PollLoad {
                measured_at: Timestamp::from_secs(0),
                status_secs: 0.1,
                cpu_secs: share * interval_secs,
                cpu_source: crate::store::CpuSource::ProcessTree,
                interval_secs,
                share,
                budget: 0.02,
            }),
        };
        assert_eq!(
            polling_text(&load(0.005, 10.0)),
            "polled every 10s, as configured: its reads take 0.50% of the API server's CPU, within the 2.0% budget"
        );
        let cold = polling_text(&load(0.0315, 10.0));
        assert!(
            cold.contains("first reads after a start took 3.15%"),
            "{cold}"
        );
        assert!(cold.contains("over the 2.0% budget"), "{cold}");
        assert!(!cold.contains("within"), "{cold}");
        let stretched = polling_text(&load(0.016, 45.0));
        assert!(stretched.contains("stretched from 10s"), "{stretched}");
    }

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
