//! The console's page handlers: each takes its [`Ctx`], reads what it shows through a
//! loader of [`super::data`] (one read of the host database per page) and draws it with
//! [`super::views`].

use axum::extract::{Path, Query};
use axum::http::StatusCode;
use axum::Form;

use super::ctx::{Ctx, Page};
use super::{data, views};
use crate::store::ClusterQuery;
use crate::web_ui::actions::{self, ActError, Action, ActionRequest};
use crate::web_ui::api::{ClusterFilter, DEFAULT_PAGE_SIZE};

/// The Overview's query: the charts' window (`24h`, `7d`).
#[derive(Debug, Default, serde::Deserialize)]
pub(crate) struct OverviewQuery {
    #[serde(default)]
    window: Option<String>,
}

pub(crate) async fn overview(ctx: Ctx, Query(o): Query<OverviewQuery>) -> Page {
    let (config, now) = (ctx.state.config.clone(), ctx.now());
    let d = ctx
        .read(move |s| data::overview(s, &config, now, o.window.as_deref()))
        .await?;
    Ok(views::overview(&ctx, &d, now))
}

pub(crate) async fn clusters(ctx: Ctx, Query(f): Query<ClusterFilter>) -> Page {
    let bad = |m: String| ctx.error(StatusCode::BAD_REQUEST, &m);
    let paging = f.paging(Some(DEFAULT_PAGE_SIZE)).map_err(bad)?;
    let (page_no, per_page) = paging.unwrap_or((1, DEFAULT_PAGE_SIZE));
    let mut q: ClusterQuery = f.paged_query(Some(DEFAULT_PAGE_SIZE)).map_err(bad)?;
    let (config, now) = (ctx.state.config.clone(), ctx.now());
    let report = ctx
        .read(move |s| {
            let mut report = crate::fleet::report(s, &config, now, &q)?;
            // A page past the end (the fleet shrank): the last page instead.
            if report.clusters.is_empty() && report.total > 0 && q.offset > 0 {
                q.offset = (report.total - 1) / per_page * per_page;
                report = crate::fleet::report(s, &config, now, &q)?;
            }
            Ok(report)
        })
        .await?;
    let page_no = if report.total > 0 {
        page_no.min(report.total.div_ceil(per_page))
    } else {
        1
    };
    Ok(views::clusters(&ctx, &f, &report, (page_no, per_page)))
}

pub(crate) async fn jobs(ctx: Ctx, Query(f): Query<crate::web_ui::api::JobFilter>) -> Page {
    let bad = |m: String| ctx.error(StatusCode::BAD_REQUEST, &m);
    let mut q = f.query(Some(DEFAULT_PAGE_SIZE)).map_err(bad)?;
    let per_page = q.limit.unwrap_or(DEFAULT_PAGE_SIZE);
    let (interval, now) = (
        ctx.state.config.cluster_manager.jobs_poll_interval_secs,
        ctx.now(),
    );
    let report = ctx
        .read(move |s| {
            let mut r = crate::jobs::report(s, &q, now, interval)?;
            // A page past the end: the last page instead.
            if r.jobs.is_empty() && r.total > 0 && q.offset > 0 {
                q.offset = (r.total - 1) / per_page * per_page;
                r = crate::jobs::report(s, &q, now, interval)?;
            }
            Ok((r, q.offset))
        })
        .await?;
    let (report, offset) = report;
    Ok(views::jobs(
        &ctx,
        &f,
        &report,
        (offset / per_page + 1, per_page),
    ))
}

pub(crate) async fn job(ctx: Ctx, Path(id): Path<String>) -> Page {
    let job_id: i64 = id.parse().map_err(|_| {
        ctx.error(
            StatusCode::NOT_FOUND,
            &format!("No managed job {id:?}: job ids are numbers."),
        )
    })?;
    let now = ctx.now();
    let (tasks, transitions) = ctx
        .read(move |s| Ok(crate::jobs::job_detail(s, job_id, now)?))
        .await?;
    if tasks.is_empty() {
        return Err(ctx.error(
            StatusCode::NOT_FOUND,
            &format!("No managed job {job_id} in the host database."),
        ));
    }
    Ok(views::job(&ctx, job_id, &tasks, &transitions, now))
}

pub(crate) async fn services_page(
    ctx: Ctx,
    Query(f): Query<crate::web_ui::api::ServiceFilter>,
) -> Page {
    let q = f
        .query()
        .map_err(|m| ctx.error(StatusCode::BAD_REQUEST, &m))?;
    let (interval, now) = (
        ctx.state.config.cluster_manager.services_poll_interval_secs,
        ctx.now(),
    );
    let report = ctx
        .read(move |s| Ok(crate::services::report(s, &q, now, interval)?))
        .await?;
    Ok(views::services_page(&ctx, &f, &report))
}

pub(crate) async fn service(ctx: Ctx, Path(name): Path<String>) -> Page {
    let now = ctx.now();
    let wanted = name.clone();
    let (row, transitions) = ctx
        .read(move |s| Ok(crate::services::service_detail(s, &wanted)?))
        .await?
        .ok_or_else(|| {
            ctx.error(
                StatusCode::NOT_FOUND,
                &format!("No service {name:?} in the host database."),
            )
        })?;
    Ok(views::service(&ctx, &row, &transitions, now))
}

fn no_such_cluster(ctx: &Ctx, name: &str) -> super::ctx::PageError {
    ctx.error(
        StatusCode::NOT_FOUND,
        &format!("No cluster {name:?} in the host database."),
    )
}

pub(crate) async fn cluster(ctx: Ctx, Path(name): Path<String>) -> Page {
    let (config, now) = (ctx.state.config.clone(), ctx.now());
    let wanted = name.clone();
    let (detail, fresh) = ctx
        .read(move |s| data::cluster(s, &config, now, &wanted))
        .await?
        .ok_or_else(|| no_such_cluster(&ctx, &name))?;
    Ok(views::cluster(&ctx, &detail, &fresh, now))
}

pub(crate) async fn confirm_action(ctx: Ctx, Path((name, action)): Path<(String, String)>) -> Page {
    let Some(action) = Action::NAMES.into_iter().find(|a| *a == action) else {
        return Err(ctx.error(
            StatusCode::NOT_FOUND,
            &format!(
                "No action {action:?}: expected one of {}.",
                Action::NAMES.join(", ")
            ),
        ));
    };
    let Some(token) = ctx.csrf.clone() else {
        return Err(ctx.error(
            StatusCode::FORBIDDEN,
            "Actions need a console session: log in through the login page.",
        ));
    };
    let wanted = name.clone();
    let row = ctx
        .read(move |s| Ok(s.cluster_detail(&wanted)?.map(|d| d.row)))
        .await?
        .ok_or_else(|| no_such_cluster(&ctx, &name))?;
    if !actions::may_act(&ctx.who, &row) {
        return Err(ctx.error(
            StatusCode::FORBIDDEN,
            &format!("You may act only on your own clusters; {name:?} is not yours."),
        ));
    }
    Ok(views::confirm_action(&ctx, &row, action, &token))
}

pub(crate) async fn do_action(
    ctx: Ctx,
    Path((name, action)): Path<(String, String)>,
    form: Result<Form<ActionRequest>, axum::extract::rejection::FormRejection>,
) -> Page {
    let mut req = form.map(|Form(f)| f).unwrap_or_default();
    // The path names the action; a form's own field may only agree with it.
    if !req.action.is_empty() && req.action != action {
        return Err(ctx.error(
            StatusCode::BAD_REQUEST,
            "The form's action does not match the address.",
        ));
    }
    req.action = action;
    let action = Action::parse(&req).map_err(|m| ctx.error(StatusCode::BAD_REQUEST, &m))?;
    let mut raw = None;
    let (status, text, class) = match actions::act(&ctx.state, &ctx.who, &name, action).await {
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
        Err(ActError::Failed { cause, raw: r }) => {
            raw = Some(r);
            (
                StatusCode::BAD_GATEWAY,
                format!("SkyPilot failed on {name}: {cause}"),
                "error",
            )
        }
        Err(ActError::Internal(m)) => (StatusCode::SERVICE_UNAVAILABLE, m, "error"),
    };
    Ok(views::action_result(
        &ctx,
        &name,
        status,
        &text,
        raw.as_deref(),
        class,
    ))
}

pub(crate) async fn audit(ctx: Ctx, Query(f): Query<ClusterFilter>) -> Page {
    let bad = |m: String| ctx.error(StatusCode::BAD_REQUEST, &m);
    let (page_no, per_page) = f
        .paging(Some(DEFAULT_PAGE_SIZE))
        .map_err(bad)?
        .unwrap_or((1, DEFAULT_PAGE_SIZE));
    let (entries, total) = ctx
        .read(move |s| data::audit_page(s, page_no, per_page))
        .await?;
    Ok(views::audit(&ctx, &entries, total, (page_no, per_page)))
}

pub(crate) async fn autostop(ctx: Ctx) -> Page {
    let (entries, last_pass) = ctx.read(data::autostop_log).await?;
    // The enforcer's own engine on the same database and config: what a pass would do now.
    let (config, now) = (ctx.state.config.clone(), ctx.now());
    let preview = ctx
        .state
        .read(move |s| crate::autostop::preview(s, &config, now))
        .await;
    Ok(views::autostop(
        &ctx,
        &entries,
        last_pass.as_ref(),
        &preview,
        now,
    ))
}

/// The monitor's `/healthz`, asked with a short timeout.
async fn monitor_health(ctx: &Ctx) -> Result<(), String> {
    let mut addr = ctx.state.config.monitor.listen;
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

/// SkyPilot's API server, asked live with a 3 s timeout.
async fn skypilot_health(ctx: &Ctx) -> Result<String, String> {
    match tokio::time::timeout(std::time::Duration::from_secs(3), ctx.state.sky.health()).await {
        Ok(Ok(h)) => Ok(format!(
            "healthy: SkyPilot {} (API {})",
            h.version.as_deref().unwrap_or("?"),
            h.api_version.as_deref().unwrap_or("?")
        )),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err("no answer within 3 s".into()),
    }
}

pub(crate) async fn services(ctx: Ctx) -> Page {
    let (config, now) = (ctx.state.config.clone(), ctx.now());
    let d = ctx.read(move |s| data::services(s, &config, now)).await?;
    let (monitor, live) = tokio::join!(monitor_health(&ctx), skypilot_health(&ctx));
    Ok(views::services(&ctx, &d, &monitor, &live, now))
}

pub(crate) async fn config(ctx: Ctx) -> Page {
    let host = super::redact::host_config(&ctx.state.config);
    let sky_path = ctx
        .state
        .config
        .web_ui
        .skypilot_config_file
        .clone()
        .or_else(|| std::env::var_os("SKYPILOT_GLOBAL_CONFIG").map(Into::into));
    let sky = sky_path.map(|p| (p.display().to_string(), super::redact::sky_config_file(&p)));
    Ok(views::config(&ctx, &host, sky))
}
