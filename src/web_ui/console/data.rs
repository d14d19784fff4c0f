//! What the console's pages read from the host database, apart from how they draw it:
//! each loader runs on a read-only connection (see [`super::ctx::Ctx::read`]).

use crate::config::Config;
use crate::fleet::{Freshness, StatusReport};
use crate::store::{
    ApiServerHealth, AuditAction, AuditEntry, ClusterDetail, ClusterQuery, PollRun, Store,
};
use crate::time::Timestamp;

use crate::autostop::ACTOR as AUTOSTOP_ACTOR;

/// The Overview: the whole fleet and the latest autostop actions.
pub(crate) struct Overview {
    pub(crate) fleet: StatusReport,
    pub(crate) autostop_actions: Vec<AuditEntry>,
}

pub(crate) fn overview(s: &Store, config: &Config, now: Timestamp) -> anyhow::Result<Overview> {
    Ok(Overview {
        fleet: crate::fleet::report(s, config, now, &ClusterQuery::default())?,
        autostop_actions: s.audit_by(AUTOSTOP_ACTOR, &[], 10)?,
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

/// The Autostop page's log: the enforcer's actions and every person's autostop changes.
pub(crate) fn autostop_log(s: &Store) -> anyhow::Result<Vec<AuditEntry>> {
    Ok(s.audit_by(
        AUTOSTOP_ACTOR,
        &[AuditAction::Autostop, AuditAction::CancelAutostop],
        200,
    )?)
}

/// The Services page's recorded part (the live probes are made by the handler).
pub(crate) struct Services {
    pub(crate) fresh: Freshness,
    pub(crate) api: Option<ApiServerHealth>,
    pub(crate) polls: Vec<PollRun>,
    pub(crate) last_autostop: Option<AuditEntry>,
}

pub(crate) fn services(s: &Store, config: &Config, now: Timestamp) -> anyhow::Result<Services> {
    Ok(Services {
        fresh: crate::fleet::freshness_of(s, config, now)?,
        api: s.api_server_health()?,
        polls: s.recent_polls(10)?,
        last_autostop: s.audit_by(AUTOSTOP_ACTOR, &[], 1)?.pop(),
    })
}
