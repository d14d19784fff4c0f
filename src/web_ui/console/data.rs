//! What the console's pages read from the host database, apart from how they draw it:
//! each loader runs on a read-only connection (see [`super::ctx::Ctx::read`]).

use crate::config::Config;
use crate::fleet::{ClusterView, Freshness};
use crate::store::{
    ApiServerHealth, AuditAction, AuditEntry, AutostopPass, ClusterDetail, ClusterOrder,
    ClusterQuery, FleetSample, FleetSums, PollRun, Store,
};
use crate::time::Timestamp;

use crate::autostop::ACTOR as AUTOSTOP_ACTOR;

/// Most UP clusters without autostop the Overview lists (the card counts them all).
const NO_AUTOSTOP_LISTED: usize = 20;

/// The charts' windows: (query value, label, seconds, bucket seconds). A window has at
/// most 288 points whatever the fleet's size.
pub(crate) const WINDOWS: [(&str, &str, f64, f64); 3] = [
    ("1h", "hour", 3_600.0, 15.0),
    ("24h", "24 h", 86_400.0, 300.0),
    ("7d", "7 d", 7.0 * 86_400.0, 2_100.0),
];

/// The window named `w` (24 h when unknown).
pub(crate) fn window(w: Option<&str>) -> (&'static str, &'static str, f64, f64) {
    WINDOWS
        .into_iter()
        .find(|x| Some(x.0) == w)
        .unwrap_or(WINDOWS[1])
}

/// The Overview: the fleet in sums (one aggregate query, not its rows), the UP clusters
/// without autostop (the first few), the fleet over the window, the latest autostop
/// actions. Its cost does not grow with the fleet.
pub(crate) struct Overview {
    pub(crate) state: Freshness,
    pub(crate) polling: crate::fleet::Polling,
    pub(crate) api: Option<ApiServerHealth>,
    pub(crate) sums: FleetSums,
    pub(crate) no_autostop: Vec<ClusterView>,
    pub(crate) history: Vec<FleetSample>,
    pub(crate) window: (&'static str, &'static str, f64, f64),
    pub(crate) autostop_actions: Vec<AuditEntry>,
    /// The managed jobs' totals (no rows).
    pub(crate) jobs: crate::jobs::JobsReport,
    /// The services' totals.
    pub(crate) services: crate::services::ServicesReport,
}

pub(crate) fn overview(
    s: &Store,
    config: &Config,
    now: Timestamp,
    window_name: Option<&str>,
) -> anyhow::Result<Overview> {
    let state = crate::fleet::freshness_of(s, config, now)?;
    let window = window(window_name);
    let no_autostop = s
        .query_clusters(&ClusterQuery {
            no_autostop: true,
            order: ClusterOrder::LaunchedAt,
            limit: Some(NO_AUTOSTOP_LISTED),
            ..ClusterQuery::default()
        })?
        .into_iter()
        .map(|r| ClusterView::new(r, &state, now))
        .collect();
    let jobs = crate::jobs::report(
        s,
        &crate::store::JobQuery {
            limit: Some(0),
            ..Default::default()
        },
        now,
        config.cluster_manager.jobs_poll_interval_secs,
    )?;
    let services = crate::services::report(
        s,
        &crate::store::ServiceQuery::default(),
        now,
        config.cluster_manager.services_poll_interval_secs,
    )?;
    Ok(Overview {
        jobs,
        services,
        polling: crate::fleet::polling_of(s, config)?,
        api: s.api_server_health()?,
        sums: s.fleet_sums()?,
        no_autostop,
        history: s.fleet_history(now.minus_secs(window.2), window.3)?,
        window,
        autostop_actions: s.audit_by(AUTOSTOP_ACTOR, &[], 10)?,
        state,
    })
}

/// A cluster's page: its record, transitions and audit, and how fresh the data is.
pub(crate) fn cluster(
    s: &Store,
    config: &Config,
    now: Timestamp,
    name: &str,
) -> anyhow::Result<Option<(ClusterDetail, Freshness)>> {
    let Some(detail) = s.cluster_detail(name)? else {
        return Ok(None);
    };
    Ok(Some((detail, crate::fleet::freshness_of(s, config, now)?)))
}

/// The Autostop page's log: the enforcer's actions and every person's autostop changes;
/// the enforcer's last pass.
pub(crate) fn autostop_log(s: &Store) -> anyhow::Result<(Vec<AuditEntry>, Option<AutostopPass>)> {
    Ok((
        s.audit_by(
            AUTOSTOP_ACTOR,
            &[AuditAction::Autostop, AuditAction::CancelAutostop],
            200,
        )?,
        s.autostop_pass()?,
    ))
}

/// One page of the audit log, newest first, and how many entries there are.
pub(crate) fn audit_page(
    s: &Store,
    page: usize,
    per_page: usize,
) -> anyhow::Result<(Vec<AuditEntry>, usize)> {
    let offset = page.saturating_sub(1).saturating_mul(per_page);
    Ok((s.audit_page(offset, per_page)?, s.audit_count()?))
}

/// The Services page's recorded part (the live probes are made by the handler).
pub(crate) struct Services {
    pub(crate) fresh: Freshness,
    pub(crate) polling: crate::fleet::Polling,
    pub(crate) api: Option<ApiServerHealth>,
    pub(crate) polls: Vec<PollRun>,
    pub(crate) last_autostop: Option<AuditEntry>,
    pub(crate) autostop_pass: Option<crate::store::AutostopPass>,
}

pub(crate) fn services(s: &Store, config: &Config, now: Timestamp) -> anyhow::Result<Services> {
    Ok(Services {
        fresh: crate::fleet::freshness_of(s, config, now)?,
        polling: crate::fleet::polling_of(s, config)?,
        api: s.api_server_health()?,
        polls: s.recent_polls(10)?,
        last_autostop: s.audit_by(AUTOSTOP_ACTOR, &[], 1)?.pop(),
        autostop_pass: s.autostop_pass()?,
    })
}
