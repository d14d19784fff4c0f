//! `skypilot-host cluster-manager`: polls SkyPilot's API server and records cluster
//! state in the host database. It is the only writer of cluster state.
//!
//! A poll is a straight sequence: probe health; fetch `/status` (with `refresh = FORCE`
//! once per `force_refresh_interval_secs`, falling back to an unrefreshed read when the
//! forced one fails); with a forced poll, fetch the cost report; [`ingest`] the answer
//! (a pure step: skip records whose fingerprint is unchanged, [`diff`] the rest against
//! what is known); commit the changed rows, the transitions and the poll's outcome in
//! one transaction; prune old poll records. A poll that fails leaves the state as it was
//! (readers see it as stale, with its age) and the next attempt comes sooner, backing
//! off up to the poll interval, so the state is fresh again within one poll of the
//! server's return.

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::cluster::{Cluster, ClusterStatus};
use crate::config::Config;
use crate::load_budget::LoadBudget;
use crate::skypilot::wire::StatusRecord;
use crate::skypilot::{Client, ClientError, CostRecord, RefreshMode};
use crate::store::{
    sql_count, ApiServerHealth, ClusterChanges, ClusterRow, PollOutcome, PollRun, Store,
    Transition, WriterLock,
};
use crate::systemd;
use crate::terminal::clean;
use crate::time::{Clock, SystemClock, Timestamp};

/// How long poll records and transitions are kept.
const POLL_RETENTION_SECS: f64 = 30.0 * 86_400.0;
/// How often old poll records are pruned.
const PRUNE_EVERY_SECS: f64 = 3600.0;
/// Days of history asked of SkyPilot's cost report.
const COST_REPORT_DAYS: u32 = 30;

/// The outcome of diffing one status answer against the known state.
///
/// `seen` are the clusters of the answer to compare; `unchanged` names clusters of the
/// answer already known to be unchanged (their records' fingerprints matched), which only
/// count as present.
pub fn diff(
    known: &HashMap<String, ClusterRow>,
    seen: Vec<Cluster>,
    unchanged: &HashSet<&str>,
    costs: &HashMap<String, CostRecord>,
    now: Timestamp,
) -> ClusterChanges {
    let mut changes = ClusterChanges::default();
    let mut present = HashSet::with_capacity(seen.len());
    for cluster in seen {
        present.insert(cluster.name.clone());
        let cost = costs.get(&cluster.name).filter(|c| {
            c.cluster_hash
                .as_deref()
                .is_none_or(|h| h == cluster.cluster_hash)
        });
        match known.get(&cluster.name) {
            Some(prev)
                if prev.gone_at.is_none() && prev.cluster.cluster_hash == cluster.cluster_hash =>
            {
                let hourly_cost = cost.and_then(|c| c.hourly_cost()).or(prev.hourly_cost);
                let total_cost = cost.and_then(|c| c.total_cost).or(prev.total_cost);
                if prev.cluster == cluster
                    && prev.hourly_cost == hourly_cost
                    && prev.total_cost == total_cost
                {
                    continue;
                }
                if prev.cluster.status != cluster.status {
                    changes.transitions.push(Transition {
                        cluster: cluster.name.clone(),
                        from: Some(prev.cluster.status),
                        to: cluster.status,
                        at: now,
                    });
                }
                changes.upserts.push(ClusterRow {
                    cluster,
                    hourly_cost,
                    total_cost,
                    first_seen: prev.first_seen,
                    last_seen: now,
                    last_changed: now,
                    gone_at: None,
                });
            }
            prev => {
                // New, back after being gone, or relaunched under the same name (new hash).
                changes.transitions.push(Transition {
                    cluster: cluster.name.clone(),
                    from: prev.map(|p| {
                        if p.gone_at.is_some() {
                            ClusterStatus::Gone
                        } else {
                            p.cluster.status
                        }
                    }),
                    to: cluster.status,
                    at: now,
                });
                changes.upserts.push(ClusterRow {
                    cluster,
                    hourly_cost: cost.and_then(|c| c.hourly_cost()),
                    total_cost: cost.and_then(|c| c.total_cost),
                    first_seen: now,
                    last_seen: now,
                    last_changed: now,
                    gone_at: None,
                });
            }
        }
    }
    let mut vanished: Vec<&ClusterRow> = known
        .values()
        .filter(|r| {
            r.gone_at.is_none()
                && !present.contains(&r.cluster.name)
                && !unchanged.contains(r.cluster.name.as_str())
        })
        .collect();
    vanished.sort_by(|a, b| a.cluster.name.cmp(&b.cluster.name));
    for r in vanished {
        changes.gone.push((r.cluster.name.clone(), now));
        changes.transitions.push(Transition {
            cluster: r.cluster.name.clone(),
            from: Some(r.cluster.status),
            to: ClusterStatus::Gone,
            at: now,
        });
    }
    changes
}

/// What the cluster manager knows between polls: the rows as committed, and the
/// fingerprints of the status records behind them.
#[derive(Debug, Default, Clone)]
pub(crate) struct Known {
    pub(crate) rows: HashMap<String, ClusterRow>,
    pub(crate) fingerprints: HashMap<String, u64>,
}

impl Known {
    /// Applies committed changes and the fingerprints of the records behind them.
    pub(crate) fn apply(&mut self, ingested: Ingested) {
        for (name, _) in &ingested.changes.gone {
            self.fingerprints.remove(name);
        }
        self.fingerprints.extend(ingested.fingerprints);
        apply(&mut self.rows, ingested.changes);
    }
}

/// The result of [`ingest`]: what to commit, and what to remember once committed.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Ingested {
    pub(crate) changes: ClusterChanges,
    /// Fingerprints of the records that were compared.
    pub(crate) fingerprints: Vec<(String, u64)>,
    /// Clusters in the answer.
    pub(crate) clusters: usize,
}

/// Turns one status answer into changes: records whose fingerprint matches a present
/// known cluster are skipped (unless `compare_all`, as after new costs), the rest are
/// converted and [`diff`]ed. Pure: no I/O, the time is a parameter. Fails, naming the
/// cluster, on a record that does not convert.
pub(crate) fn ingest(
    known: &Known,
    records: Vec<StatusRecord<'_>>,
    costs: &HashMap<String, CostRecord>,
    compare_all: bool,
    now: Timestamp,
) -> Result<Ingested, String> {
    let clusters = records.len();
    let mut names = HashSet::with_capacity(clusters);
    for r in &records {
        if !names.insert(r.name.as_ref()) {
            return Err(format!(
                "cluster {:?} appears more than once in the answer; a cluster name is unique in SkyPilot",
                crate::terminal::clean(&r.name)
            ));
        }
    }
    drop(names);
    let mut unchanged_names = Vec::new();
    let mut seen = Vec::new();
    let mut fingerprints = Vec::new();
    for record in records {
        let fp = record.fingerprint();
        let name = record.name.as_ref();
        if !compare_all
            && known.fingerprints.get(name) == Some(&fp)
            && known.rows.get(name).is_some_and(|r| r.gone_at.is_none())
        {
            unchanged_names.push(record.name);
            continue;
        }
        let cluster = record.into_cluster()?;
        fingerprints.push((cluster.name.clone(), fp));
        seen.push(cluster);
    }
    let unchanged: HashSet<&str> = unchanged_names.iter().map(|n| n.as_ref()).collect();
    Ok(Ingested {
        changes: diff(&known.rows, seen, &unchanged, costs, now),
        fingerprints,
        clusters,
    })
}

/// Applies committed changes to the in-memory view.
fn apply(known: &mut HashMap<String, ClusterRow>, changes: ClusterChanges) {
    for row in changes.upserts {
        known.insert(row.cluster.name.clone(), row);
    }
    for (name, at) in changes.gone {
        if let Some(r) = known.get_mut(&name) {
            r.cluster.status = ClusterStatus::Gone;
            r.gone_at = Some(at);
            r.last_changed = at;
        }
    }
}

/// What one poll did.
#[derive(Debug, Clone, PartialEq)]
pub struct PollReport {
    pub(crate) refresh: RefreshMode,
    pub outcome: PollOutcome,
    pub clusters: usize,
    pub changes: usize,
    pub error: Option<String>,
}

/// The cluster manager's state between polls.
pub struct Manager {
    client: Client,
    store: Store,
    _lock: WriterLock,
    clock: Arc<dyn Clock>,
    config: Config,
    known: Known,
    costs: HashMap<String, CostRecord>,
    last_force: Option<Timestamp>,
    last_prune: Option<Timestamp>,
    failures: u32,
    /// The cost of `/status` to the server and the interval that keeps it in budget.
    load: LoadBudget,
}

fn known_rows(store: &Store) -> crate::store::Result<HashMap<String, ClusterRow>> {
    Ok(store
        .clusters()?
        .into_iter()
        .map(|r| (r.cluster.name.clone(), r))
        .collect())
}

impl Manager {
    pub fn new(config: Config, clock: Arc<dyn Clock>) -> anyhow::Result<Manager> {
        let client = Client::new(&config.skypilot)?;
        let lock = WriterLock::acquire(&config.cluster_manager.database)?;
        let store = Store::open(&config.cluster_manager.database)?;
        let rows = known_rows(&store)?;
        let load = LoadBudget::new(
            config.cluster_manager.load_budget,
            config.cluster_manager.poll_interval_secs,
        );
        Ok(Manager {
            client,
            store,
            _lock: lock,
            clock,
            config,
            known: Known {
                rows,
                fingerprints: HashMap::new(),
            },
            costs: HashMap::new(),
            last_force: None,
            last_prune: None,
            failures: 0,
            load,
        })
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    /// Number of clusters known, gone ones included.
    pub(crate) fn known_len(&self) -> usize {
        self.known.rows.len()
    }

    /// Consecutive failed polls.
    pub(crate) fn failures(&self) -> u32 {
        self.failures
    }

    fn force_due(&self, now: Timestamp) -> bool {
        let every = self.config.cluster_manager.force_refresh_interval_secs;
        let every = Duration::from_secs(every).as_secs_f64();
        self.last_force.is_none_or(|t| now.secs_since(t) >= every)
    }

    /// Probes `/api/health` and records the result.
    pub(crate) async fn check_health(&mut self) -> Result<(), ClientError> {
        let started = Instant::now();
        let result = self.client.health().await;
        let latency_ms = started.elapsed().as_secs_f64() * 1000.0;
        let h = match &result {
            Ok(h) => ApiServerHealth {
                checked_at: self.clock.now(),
                healthy: h.status == "healthy",
                version: h.version.clone(),
                api_version: h.api_version.clone(),
                commit: h.commit.clone(),
                latency_ms: Some(latency_ms),
                error: (h.status != "healthy").then(|| format!("status {:?}", h.status)),
            },
            Err(e) => ApiServerHealth {
                checked_at: self.clock.now(),
                healthy: false,
                version: None,
                api_version: None,
                commit: None,
                latency_ms: None,
                error: Some(e.to_string()),
            },
        };
        if let Err(e) = self.store.set_api_server_health(&h) {
            tracing::error!(error = %e, "cannot record the API server's health");
        }
        result.map(|_| ())
    }

    /// Reopens the database when its file was deleted or replaced (a new file is
    /// created and migrated), and starts over from what the new file holds.
    fn reopen_if_replaced(&mut self) -> Result<(), String> {
        if !self.store.file_replaced() {
            return Ok(());
        }
        let path = self.config.cluster_manager.database.clone();
        tracing::warn!(database = %path.display(), "the host database file was deleted or replaced; reopening it");
        let store = Store::open(&path).map_err(|e| e.to_string())?;
        let rows = known_rows(&store).map_err(|e| e.to_string())?;
        tracing::info!(database = %path.display(), clusters = rows.len(), "host database reopened; the next poll records every cluster it lacks");
        self.store = store;
        self.known = Known {
            rows,
            fingerprints: HashMap::new(),
        };
        Ok(())
    }

    /// One poll: health, status (forced when due), cost report with forced polls,
    /// ingest, commit, prune. Never fails: the outcome is recorded and returned.
    pub async fn poll_once(&mut self) -> PollReport {
        let started = self.clock.now();
        if let Err(e) = self.reopen_if_replaced() {
            self.failures += 1;
            tracing::error!(error = %e, "cannot reopen the host database");
            return PollReport {
                refresh: RefreshMode::None,
                outcome: PollOutcome::Error,
                clusters: 0,
                changes: 0,
                error: Some(e),
            };
        }
        if let Err(e) = self.check_health().await {
            return self.record_failure(RefreshMode::None, started, &e);
        }
        systemd::watchdog();
        let force = self.force_due(started);
        let (refresh, text) = match self.fetch_status(force, started).await {
            Ok(answer) => answer,
            Err((refresh, e)) => return self.record_failure(refresh, started, &e),
        };
        systemd::watchdog();
        if force {
            self.refresh_costs().await;
            systemd::watchdog();
        }
        let finished = self.clock.now();
        let ingested = match self.client.status_records(&text).and_then(|records| {
            ingest(&self.known, records, &self.costs, force, finished.floor()).map_err(|what| {
                ClientError::Malformed {
                    url: self.client.base_url().to_string(),
                    what: format!("status: {what}"),
                }
            })
        }) {
            Ok(i) => i,
            Err(e) => return self.record_failure(refresh, started, &e),
        };
        drop(text);
        self.commit(refresh, started, finished, ingested)
    }

    /// `/status`, forced when due. A forced read that the server answered with an error
    /// (e.g. a cloud's credentials are missing) is recorded, then SkyPilot's database is
    /// read without refresh so the state stays fresh.
    async fn fetch_status(
        &mut self,
        force: bool,
        started: Timestamp,
    ) -> Result<(RefreshMode, String), (RefreshMode, ClientError)> {
        if force {
            self.last_force = Some(started);
            match self.client.status_raw(RefreshMode::Force).await {
                Ok(text) => return Ok((RefreshMode::Force, text)),
                Err(e) if !e.is_unreachable() => {
                    tracing::warn!(error = %e, "forced refresh failed; reading without refresh");
                    self.record_failure(RefreshMode::Force, started, &e);
                }
                Err(e) => return Err((RefreshMode::Force, e)),
            }
        }
        let sent = self.clock.now();
        let text = self
            .client
            .status_raw(RefreshMode::None)
            .await
            .map_err(|e| (RefreshMode::None, e))?;
        // Only reads without refresh count: a forced one waits on the clouds, not on
        // the server, and comes every force_refresh_interval_secs whatever the interval.
        let load = self.load.record(sent, self.clock.now());
        if load.interval_secs > self.load_floor_secs() {
            tracing::debug!(
                status_secs = load.status_secs,
                interval_secs = load.interval_secs,
                budget = load.budget,
                "polling less often to keep within cluster_manager.load_budget"
            );
        }
        Ok((RefreshMode::None, text))
    }

    fn load_floor_secs(&self) -> f64 {
        Duration::from_secs(self.config.cluster_manager.poll_interval_secs).as_secs_f64()
    }

    async fn refresh_costs(&mut self) {
        match self.client.cost_report(COST_REPORT_DAYS).await {
            Ok(records) => {
                self.costs = records.into_iter().map(|r| (r.name.clone(), r)).collect();
            }
            Err(e) => {
                tracing::warn!(error = %e, "cost report failed; keeping the last known costs")
            }
        }
    }

    fn commit(
        &mut self,
        refresh: RefreshMode,
        started: Timestamp,
        finished: Timestamp,
        ingested: Ingested,
    ) -> PollReport {
        let changes = &ingested.changes;
        let n = changes.upserts.len() + changes.gone.len();
        let clusters = ingested.clusters;
        let run = PollRun {
            id: 0,
            started_at: started,
            finished_at: finished,
            refresh,
            outcome: PollOutcome::Ok,
            error_kind: None,
            error: None,
            clusters: Some(sql_count(clusters)),
            changes: Some(sql_count(n)),
        };
        if let Err(e) = self.store.commit_poll(changes, &run) {
            // The database refused the write: keep the in-memory view as it was, so the
            // next poll writes the same changes again.
            tracing::error!(error = %e, "cannot record the poll");
            self.failures += 1;
            return PollReport {
                refresh,
                outcome: PollOutcome::Error,
                clusters,
                changes: 0,
                error: Some(e.to_string()),
            };
        }
        if let Some(load) = self.load.last() {
            if let Err(e) = self.store.set_poll_load(&load) {
                tracing::warn!(error = %e, "cannot record the poll interval and load");
            }
        }
        for t in &changes.transitions {
            tracing::info!(cluster = %clean(&t.cluster), from = ?t.from, to = %t.to, "cluster status changed");
        }
        self.known.apply(ingested);
        self.failures = 0;
        self.prune(finished);
        PollReport {
            refresh,
            outcome: PollOutcome::Ok,
            clusters,
            changes: n,
            error: None,
        }
    }

    /// A poll that ran out of its deadline (its future was dropped mid-request).
    pub(crate) fn record_deadline(&mut self, started: Timestamp, deadline: Duration) -> PollReport {
        let message = format!(
            "the poll took longer than {} s (cluster_manager.poll_deadline_secs) and was abandoned; SkyPilot's API server at {} answers too slowly",
            deadline.as_secs(),
            self.client.base_url()
        );
        self.record_error(RefreshMode::None, started, "deadline".into(), message)
    }

    fn record_failure(
        &mut self,
        refresh: RefreshMode,
        started: Timestamp,
        e: &ClientError,
    ) -> PollReport {
        self.record_error(refresh, started, e.kind(), e.to_string())
    }

    fn record_error(
        &mut self,
        refresh: RefreshMode,
        started: Timestamp,
        kind: String,
        error: String,
    ) -> PollReport {
        self.failures += 1;
        // The text may quote SkyPilot's answer: never a raw control character in a log,
        // a terminal or the database.
        let error = clean(&error).into_owned();
        tracing::warn!(error = %error, failures = self.failures, "poll failed; keeping the last known state");
        let run = PollRun {
            id: 0,
            started_at: started,
            finished_at: self.clock.now(),
            refresh,
            outcome: PollOutcome::Error,
            error_kind: Some(kind),
            error: Some(error.clone()),
            clusters: None,
            changes: None,
        };
        if let Err(db) = self.store.record_poll_failure(&run) {
            tracing::error!(error = %db, "cannot record the failed poll");
        }
        PollReport {
            refresh,
            outcome: PollOutcome::Error,
            clusters: 0,
            changes: 0,
            error: Some(error),
        }
    }

    /// How long one poll may take: `poll_deadline_secs`, kept below three quarters of
    /// the watchdog period when systemd set one.
    pub(crate) fn poll_deadline(&self, watchdog: Option<Duration>) -> Duration {
        let configured = Duration::from_secs(self.config.cluster_manager.poll_deadline_secs);
        match watchdog {
            Some(w) if configured >= w * 3 / 4 => {
                let d = w * 3 / 4;
                tracing::warn!(
                    configured = configured.as_secs(),
                    watchdog = w.as_secs_f64(),
                    using = d.as_secs_f64(),
                    "cluster_manager.poll_deadline_secs is not below WatchdogSec; using three quarters of it"
                );
                d
            }
            _ => configured,
        }
    }

    fn prune(&mut self, now: Timestamp) {
        if self
            .last_prune
            .is_some_and(|t| now.secs_since(t) < PRUNE_EVERY_SECS)
        {
            return;
        }
        self.last_prune = Some(now);
        match self
            .store
            .prune_history(now.minus_secs(POLL_RETENTION_SECS))
        {
            Ok((0, 0)) => {}
            Ok((polls, transitions)) => {
                tracing::info!(
                    polls,
                    transitions,
                    "pruned old poll records and transitions"
                )
            }
            Err(e) => tracing::warn!(error = %e, "cannot prune old poll records"),
        }
    }

    /// Time to wait before the next poll: the effective interval (the poll interval,
    /// stretched to keep `/status` within `load_budget`), or after failures a back-off
    /// of 1, 2, 4, … seconds capped at the poll interval.
    pub(crate) fn next_delay(&self) -> Duration {
        let interval = self.config.cluster_manager.poll_interval_secs;
        if self.failures == 0 {
            Duration::try_from_secs_f64(self.load.interval_secs())
                .unwrap_or(Duration::from_secs(interval))
                .max(Duration::from_secs(interval))
        } else {
            let exp = 1u64 << (self.failures - 1).min(20);
            Duration::from_secs(exp.min(interval))
        }
    }
}

impl crate::runner::Periodic for Manager {
    /// One poll, bounded by the poll deadline (below the watchdog's interval).
    async fn round(&mut self) -> crate::runner::Round {
        let deadline = self.poll_deadline(systemd::watchdog_interval());
        let started = self.clock.now();
        let report = match tokio::time::timeout(deadline, self.poll_once()).await {
            Ok(report) => report,
            Err(_) => self.record_deadline(started, deadline),
        };
        crate::memory::release_freed();
        let wait = self.next_delay();
        let status = match &report.error {
            None => format!(
                "{} clusters, {} changed; next poll in {:.0} s",
                report.clusters,
                report.changes,
                wait.as_secs_f64()
            ),
            Some(e) => format!("poll failed ({} in a row): {e}", self.failures()),
        };
        crate::runner::Round { status, wait }
    }
}

/// Runs the poll loop until `shutdown` resolves.
pub(crate) async fn run_until(
    config: Config,
    clock: Arc<dyn Clock>,
    shutdown: impl Future<Output = ()>,
) -> anyhow::Result<()> {
    let mut manager = Manager::new(config, clock)?;
    tracing::info!(
        api = manager.client.base_url(),
        database = %manager.store.path().display(),
        clusters = manager.known_len(),
        "cluster manager started"
    );
    crate::runner::run_periodic("started; first poll running", &mut manager, shutdown).await;
    tracing::info!("cluster manager stopping");
    Ok(())
}

pub(crate) async fn run(config: Config) -> anyhow::Result<()> {
    run_until(config, Arc::new(SystemClock), systemd::shutdown_signal()).await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ts(secs: i64) -> Timestamp {
        Timestamp::from_secs(secs)
    }

    fn cluster(name: &str, status: ClusterStatus) -> Cluster {
        Cluster {
            cloud: Some("AWS".into()),
            region: Some("us-west-2".into()),
            instance_type: Some("m6i.large".into()),
            cpus: Some("2.0".into()),
            memory: Some("8.0".into()),
            user_name: Some("alice".into()),
            user_hash: Some("abcd".into()),
            launched_at: Some(ts(1000)),
            status_updated_at: Some(ts(1000)),
            ..Cluster::bare(name, status)
        }
    }

    /// `diff` without fingerprints or costs.
    fn plain(known: &HashMap<String, ClusterRow>, seen: Vec<Cluster>, now: i64) -> ClusterChanges {
        diff(known, seen, &HashSet::new(), &HashMap::new(), ts(now))
    }

    fn known_from(changes: ClusterChanges) -> HashMap<String, ClusterRow> {
        let mut k = HashMap::new();
        apply(&mut k, changes);
        k
    }

    #[test]
    fn new_clusters_are_inserted_with_transitions() {
        let d = plain(
            &HashMap::new(),
            vec![
                cluster("a", ClusterStatus::Up),
                cluster("b", ClusterStatus::Init),
            ],
            100,
        );
        assert_eq!(d.upserts.len(), 2);
        assert_eq!(d.transitions.len(), 2);
        assert_eq!(d.transitions[0].from, None);
        assert_eq!(d.upserts[0].first_seen, ts(100));
    }

    #[test]
    fn unchanged_poll_writes_nothing() {
        let k = known_from(plain(
            &HashMap::new(),
            vec![cluster("a", ClusterStatus::Up)],
            100,
        ));
        let d = plain(&k, vec![cluster("a", ClusterStatus::Up)], 200);
        assert!(d.is_empty(), "{d:?}");
    }

    #[test]
    fn status_change_is_a_transition_and_keeps_first_seen() {
        let k = known_from(plain(
            &HashMap::new(),
            vec![cluster("a", ClusterStatus::Up)],
            100,
        ));
        let d = plain(&k, vec![cluster("a", ClusterStatus::Stopped)], 200);
        assert_eq!(d.upserts.len(), 1);
        assert_eq!(d.upserts[0].first_seen, ts(100));
        assert_eq!(d.upserts[0].last_changed, ts(200));
        assert_eq!(
            d.transitions,
            vec![Transition {
                cluster: "a".into(),
                from: Some(ClusterStatus::Up),
                to: ClusterStatus::Stopped,
                at: ts(200)
            }]
        );
    }

    #[test]
    fn autostop_change_is_an_update_without_transition() {
        let k = known_from(plain(
            &HashMap::new(),
            vec![cluster("a", ClusterStatus::Up)],
            100,
        ));
        let mut c = cluster("a", ClusterStatus::Up);
        c.autostop_minutes = 30;
        let d = plain(&k, vec![c], 200);
        assert_eq!(d.upserts.len(), 1);
        assert!(d.transitions.is_empty());
        assert_eq!(d.upserts[0].cluster.autostop_minutes, 30);
    }

    #[test]
    fn vanished_cluster_is_gone_and_may_come_back() {
        let k = known_from(plain(
            &HashMap::new(),
            vec![
                cluster("a", ClusterStatus::Up),
                cluster("b", ClusterStatus::Up),
            ],
            100,
        ));
        let d = plain(&k, vec![cluster("a", ClusterStatus::Up)], 200);
        assert_eq!(d.gone, vec![("b".to_string(), ts(200))]);
        assert_eq!(d.transitions[0].to, ClusterStatus::Gone);
        let mut k2 = k.clone();
        apply(&mut k2, d);
        assert_eq!(k2["b"].cluster.status, ClusterStatus::Gone);
        // Gone twice is not written twice.
        let d = plain(&k2, vec![cluster("a", ClusterStatus::Up)], 300);
        assert!(d.is_empty());
        // It comes back.
        let d = plain(
            &k2,
            vec![
                cluster("a", ClusterStatus::Up),
                cluster("b", ClusterStatus::Init),
            ],
            400,
        );
        assert_eq!(d.transitions[0].from, Some(ClusterStatus::Gone));
        assert_eq!(d.transitions[0].to, ClusterStatus::Init);
        assert_eq!(d.upserts[0].first_seen, ts(400));
    }

    #[test]
    fn unchanged_by_fingerprint_counts_as_present() {
        let k = known_from(plain(
            &HashMap::new(),
            vec![
                cluster("a", ClusterStatus::Up),
                cluster("b", ClusterStatus::Up),
            ],
            100,
        ));
        let unchanged: HashSet<&str> = ["a"].into_iter().collect();
        let d = diff(
            &k,
            vec![cluster("b", ClusterStatus::Up)],
            &unchanged,
            &HashMap::new(),
            ts(200),
        );
        assert!(d.is_empty(), "{d:?}");
        let d = diff(&k, vec![], &unchanged, &HashMap::new(), ts(200));
        assert_eq!(d.gone, vec![("b".to_string(), ts(200))]);
    }

    #[test]
    fn relaunch_under_same_name_is_a_new_lifecycle() {
        let k = known_from(plain(
            &HashMap::new(),
            vec![cluster("a", ClusterStatus::Up)],
            100,
        ));
        let mut c = cluster("a", ClusterStatus::Up);
        c.cluster_hash = "other".into();
        let d = plain(&k, vec![c], 200);
        assert_eq!(d.upserts[0].first_seen, ts(200));
        assert_eq!(d.transitions.len(), 1);
    }

    #[test]
    fn costs_attach_by_name_and_hash() {
        let mut costs = HashMap::new();
        costs.insert(
            "a".to_string(),
            CostRecord {
                name: "a".into(),
                cluster_hash: Some("hash-a".into()),
                total_cost: Some(1.0),
                duration: Some(3600.0),
                num_nodes: Some(1),
                status: None,
            },
        );
        costs.insert(
            "b".to_string(),
            CostRecord {
                name: "b".into(),
                cluster_hash: Some("a-previous-life".into()),
                total_cost: Some(5.0),
                duration: Some(3600.0),
                num_nodes: Some(1),
                status: None,
            },
        );
        let d = diff(
            &HashMap::new(),
            vec![
                cluster("a", ClusterStatus::Up),
                cluster("b", ClusterStatus::Up),
            ],
            &HashSet::new(),
            &costs,
            ts(100),
        );
        assert_eq!(d.upserts[0].hourly_cost, Some(1.0));
        assert_eq!(d.upserts[0].total_cost, Some(1.0));
        assert_eq!(
            d.upserts[1].hourly_cost, None,
            "cost of another cluster's life"
        );
    }

    fn records(text: &str) -> Vec<StatusRecord<'_>> {
        crate::skypilot::wire::parse_records(text).unwrap()
    }

    const TWO: &str = r#"[{"name":"a","status":"UP","cluster_hash":"ha","autostop":-1,"to_down":false,"launched_at":1000},
                          {"name":"b","status":"INIT","cluster_hash":"hb","autostop":30,"to_down":true}]"#;

    #[test]
    fn ingest_skips_unchanged_records_by_fingerprint() {
        let mut known = Known::default();
        let first = ingest(&known, records(TWO), &HashMap::new(), false, ts(100)).unwrap();
        assert_eq!(first.clusters, 2);
        assert_eq!(first.changes.upserts.len(), 2);
        assert_eq!(first.fingerprints.len(), 2);
        known.apply(first);

        let again = ingest(&known, records(TWO), &HashMap::new(), false, ts(200)).unwrap();
        assert!(again.changes.is_empty(), "{:?}", again.changes);
        assert!(
            again.fingerprints.is_empty(),
            "unchanged records are not converted"
        );
        assert_eq!(again.clusters, 2);

        let all = ingest(&known, records(TWO), &HashMap::new(), true, ts(200)).unwrap();
        assert!(all.changes.is_empty(), "{:?}", all.changes);
        assert_eq!(
            all.fingerprints.len(),
            2,
            "compare_all converts every record"
        );

        let changed = TWO.replace(r#""status":"INIT""#, r#""status":"UP""#);
        let d = ingest(&known, records(&changed), &HashMap::new(), false, ts(300)).unwrap();
        assert_eq!(d.changes.upserts.len(), 1);
        assert_eq!(d.changes.transitions[0].cluster, "b");
        assert_eq!(d.changes.transitions[0].at, ts(300));

        let one = r#"[{"name":"a","status":"UP","cluster_hash":"ha","autostop":-1,"to_down":false,"launched_at":1000}]"#;
        let gone = ingest(&known, records(one), &HashMap::new(), false, ts(400)).unwrap();
        assert_eq!(gone.changes.gone, vec![("b".to_string(), ts(400))]);
        known.apply(gone);
        assert!(!known.fingerprints.contains_key("b"));
    }

    #[test]
    fn ingest_names_a_record_it_cannot_convert() {
        let bad = r#"[{"name":"weird","status":"EXPLODED","cluster_hash":"h","autostop":-1,"to_down":false}]"#;
        let e = ingest(
            &Known::default(),
            records(bad),
            &HashMap::new(),
            false,
            ts(1),
        )
        .unwrap_err();
        assert!(e.contains("weird") && e.contains("EXPLODED"), "{e}");
    }

    #[test]
    fn a_name_twice_in_the_answer_is_malformed() {
        let dup = r#"[{"name":"twin","status":"UP","cluster_hash":"h1","autostop":-1,"to_down":false},
                      {"name":"twin","status":"STOPPED","cluster_hash":"h2","autostop":-1,"to_down":false}]"#;
        let e = ingest(
            &Known::default(),
            records(dup),
            &HashMap::new(),
            false,
            ts(1),
        )
        .unwrap_err();
        assert!(e.contains("\"twin\" appears more than once"), "{e}");
    }
}
