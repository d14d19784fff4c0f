//! The fleet as the roles present and judge it: how fresh the recorded state is (the
//! staleness rule every role applies before it trusts or acts on the data) and the
//! status report that `status`, the web UI's JSON API and the autostop enforcer share.

use serde::Serialize;

use crate::config::Config;
use crate::load_budget::PollLoad;
use crate::store::{ApiServerHealth, ClusterQuery, ClusterRow, PollOutcome, PollRun, Store};
use crate::time::Timestamp;

/// How many poll intervals may pass without a successful poll before the state is stale.
pub(crate) const STALE_AFTER_INTERVALS: f64 = 3.0;

/// How fresh the recorded state is.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub(crate) struct Freshness {
    pub(crate) stale: bool,
    /// Seconds since the last successful poll (`None`: never polled successfully).
    pub(crate) age_secs: Option<f64>,
    pub(crate) last_ok_poll_at: Option<Timestamp>,
    /// The error of the last poll, when the last poll failed.
    pub(crate) last_error: Option<String>,
    pub(crate) last_error_at: Option<Timestamp>,
}

/// How old the last successful poll may be before the state is stale, with the
/// cluster manager polling every `interval_secs` (the effective interval): the one
/// staleness rule of every role, the autostop enforcer's included.
pub(crate) fn stale_after_secs(interval_secs: f64) -> f64 {
    STALE_AFTER_INTERVALS * interval_secs
}

/// The state is stale when the last poll failed, when there was never a successful
/// poll, or when the last success is older than [`stale_after_secs`] of the interval
/// the cluster manager actually polls at (see [`effective_interval_secs`]): it is not
/// running.
pub(crate) fn freshness_at_interval(
    last: Option<&PollRun>,
    last_ok: Option<&PollRun>,
    now: Timestamp,
    interval_secs: f64,
) -> Freshness {
    let age = last_ok.map(|p| now.age_since(p.finished_at));
    let failed = last.filter(|p| p.outcome == PollOutcome::Error);
    let too_old = age.is_none_or(|a| a > stale_after_secs(interval_secs));
    Freshness {
        stale: failed.is_some() || too_old,
        age_secs: age,
        last_ok_poll_at: last_ok.map(|p| p.finished_at),
        last_error: failed.and_then(|p| p.error.clone()),
        last_error_at: failed.map(|p| p.finished_at),
    }
}

/// The interval the cluster manager polls at: `poll_interval_secs`, stretched to what it
/// last recorded to keep within `load_budget`, never below `poll_interval_secs`.
pub(crate) fn effective_interval_secs(load: Option<&PollLoad>, poll_interval_secs: u64) -> f64 {
    let floor = std::time::Duration::from_secs(poll_interval_secs).as_secs_f64();
    load.map_or(floor, |l| {
        if l.interval_secs.is_finite() {
            l.interval_secs.max(floor)
        } else {
            floor
        }
    })
}

/// How the cluster manager polls, as it last recorded it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub(crate) struct Polling {
    /// `cluster_manager.poll_interval_secs`: the shortest interval.
    pub(crate) poll_interval_secs: u64,
    /// The interval in use: staleness is judged against it.
    pub(crate) effective_interval_secs: f64,
    /// What `/status` costs the server and the share it takes (`None` before the first
    /// measured poll).
    pub(crate) load: Option<PollLoad>,
}

/// How the cluster manager polls the API server, from what `store` holds.
pub(crate) fn polling_of(store: &Store, config: &Config) -> crate::store::Result<Polling> {
    let load = store.poll_load()?;
    let poll_interval_secs = config.cluster_manager.poll_interval_secs;
    Ok(Polling {
        poll_interval_secs,
        effective_interval_secs: effective_interval_secs(load.as_ref(), poll_interval_secs),
        load,
    })
}

/// The freshness of what `store` holds, now: stale after three effective intervals.
pub(crate) fn freshness_of(
    store: &Store,
    config: &Config,
    now: Timestamp,
) -> crate::store::Result<Freshness> {
    let last = store.last_poll()?;
    let last_ok = store.last_ok_poll()?;
    let polling = polling_of(store, config)?;
    Ok(freshness_at_interval(
        last.as_ref(),
        last_ok.as_ref(),
        now,
        polling.effective_interval_secs,
    ))
}

#[derive(Debug, Serialize)]
pub(crate) struct StatusReport {
    pub(crate) generated_at: Timestamp,
    pub(crate) database: String,
    pub(crate) state: Freshness,
    pub(crate) api_server: Option<ApiServerHealth>,
    /// How the cluster manager polls (effective interval and its load on the server).
    pub(crate) polling: Polling,
    /// How many clusters the query selects (more than `clusters` for one page).
    pub(crate) total: usize,
    pub(crate) clusters: Vec<ClusterView>,
}

#[derive(Debug, Serialize)]
pub(crate) struct ClusterView {
    #[serde(flatten)]
    pub(crate) row: ClusterRow,
    /// Seconds since launch.
    pub(crate) age_secs: Option<f64>,
    /// Dollars so far: the cost report's, or estimated from a catalog price (see
    /// `cluster::cost_so_far`).
    #[serde(serialize_with = "crate::money::opt_cents")]
    pub(crate) cost_so_far: Option<f64>,
    pub(crate) stale: bool,
}

impl ClusterView {
    pub fn new(row: ClusterRow, state: &Freshness, now: Timestamp) -> ClusterView {
        let c = &row.cluster;
        ClusterView {
            age_secs: c.launched_at.map(|t| now.age_since(t)),
            cost_so_far: crate::cluster::cost_so_far(
                c.status,
                row.hourly_cost,
                row.total_cost,
                row.price_source,
                c.launched_at,
                now,
            ),
            stale: state.stale,
            row,
        }
    }
}

/// The clusters `query` selects, with the state's freshness and the API server's health.
pub(crate) fn report(
    store: &Store,
    config: &Config,
    now: Timestamp,
    query: &ClusterQuery,
) -> anyhow::Result<StatusReport> {
    let state = freshness_of(store, config, now)?;
    let clusters: Vec<ClusterView> = store
        .query_clusters(query)?
        .into_iter()
        .map(|row| ClusterView::new(row, &state, now))
        .collect();
    let total = if query.limit.is_some() || query.offset > 0 {
        store.count_clusters(query)?
    } else {
        clusters.len()
    };
    Ok(StatusReport {
        total,
        generated_at: now,
        database: store.path().display().to_string(),
        state,
        api_server: store.api_server_health()?,
        polling: polling_of(store, config)?,
        clusters,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::skypilot::RefreshMode;

    fn poll(id: i64, at: i64, ok: bool) -> PollRun {
        PollRun {
            id,
            started_at: Timestamp::from_secs(at).minus_secs(0.1),
            finished_at: Timestamp::from_secs(at),
            refresh: RefreshMode::None,
            outcome: if ok {
                PollOutcome::Ok
            } else {
                PollOutcome::Error
            },
            error_kind: (!ok).then(|| "connect".into()),
            error: (!ok).then(|| "refused".into()),
            clusters: None,
            changes: None,
        }
    }

    fn t(secs: i64) -> Timestamp {
        Timestamp::from_secs(secs)
    }

    #[test]
    fn fresh_after_recent_ok_poll() {
        let ok = poll(1, 1000, true);
        let f = freshness_at_interval(Some(&ok), Some(&ok), t(1010), 30.0);
        assert!(!f.stale);
        assert_eq!(f.age_secs, Some(10.0));
        assert_eq!(f.last_error, None);
    }

    #[test]
    fn stale_after_failed_poll() {
        let ok = poll(1, 1000, true);
        let bad = poll(2, 1030, false);
        let f = freshness_at_interval(Some(&bad), Some(&ok), t(1040), 30.0);
        assert!(f.stale);
        assert_eq!(f.age_secs, Some(40.0));
        assert_eq!(f.last_error.as_deref(), Some("refused"));
    }

    #[test]
    fn staleness_follows_the_effective_interval() {
        let ok = poll(1, 1000, true);
        let load = PollLoad {
            measured_at: t(1000),
            status_secs: 2.0,
            cpu_secs: 4.0,
            cpu_source: crate::load_budget::CpuSource::WallTime,
            interval_secs: 100.0,
            share: 0.02,
            budget: 0.02,
        };
        let interval = effective_interval_secs(Some(&load), 30);
        assert_eq!(interval, 100.0);
        // 3 × 100 s, not 3 × 30 s.
        assert!(!freshness_at_interval(Some(&ok), Some(&ok), t(1000 + 299), interval).stale);
        assert!(freshness_at_interval(Some(&ok), Some(&ok), t(1000 + 301), interval).stale);
        // Never below the configured interval, and a nonsense record is ignored.
        let short = PollLoad {
            interval_secs: 5.0,
            ..load
        };
        assert_eq!(effective_interval_secs(Some(&short), 30), 30.0);
        let nan = PollLoad {
            interval_secs: f64::NAN,
            ..load
        };
        assert_eq!(effective_interval_secs(Some(&nan), 30), 30.0);
        assert_eq!(effective_interval_secs(None, 30), 30.0);
    }

    #[test]
    fn freshness_of_reads_the_recorded_interval() {
        let dir = tempfile::tempdir().unwrap();
        let mut config = Config::default();
        config.cluster_manager.database = dir.path().join("host.db");
        let mut store = Store::open(&config.cluster_manager.database).unwrap();
        let ok = poll(0, 1000, true);
        store
            .commit_poll(&crate::store::ClusterChanges::default(), &ok)
            .unwrap();
        let at = t(1000 + 200);
        assert!(freshness_of(&store, &config, at).unwrap().stale);
        store
            .set_poll_load(&PollLoad {
                measured_at: t(1000),
                status_secs: 2.0,
                cpu_secs: 4.0,
                cpu_source: crate::load_budget::CpuSource::WallTime,
                interval_secs: 100.0,
                share: 0.02,
                budget: 0.02,
            })
            .unwrap();
        assert!(!freshness_of(&store, &config, at).unwrap().stale);
        let polling = polling_of(&store, &config).unwrap();
        assert_eq!(polling.effective_interval_secs, 100.0);
        assert_eq!(polling.poll_interval_secs, 30);
        assert_eq!(polling.load.unwrap().status_secs, 2.0);
    }

    #[test]
    fn stale_when_manager_silent() {
        let ok = poll(1, 1000, true);
        assert!(freshness_at_interval(Some(&ok), Some(&ok), t(1000 + 91), 30.0).stale);
        assert!(!freshness_at_interval(Some(&ok), Some(&ok), t(1000 + 89), 30.0).stale);
        assert!(freshness_at_interval(None, None, t(1000), 30.0).stale);
    }
}
