//! `skypilot-host cluster-manager`: polls SkyPilot's API server and records cluster
//! state in the host database. It is the only writer of cluster state.
//!
//! Each poll reads `/status` (without refresh; with `refresh = FORCE` once per
//! `force_refresh_interval_secs`), diffs it against what it knows, and commits the
//! changed rows, the status transitions and the poll's outcome in one transaction. A
//! poll that fails leaves the state as it was (readers see it as stale, with its age)
//! and the next attempt comes sooner, backing off up to the poll interval, so the state
//! is fresh again within one poll of the server's return.

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::cluster::{Cluster, ClusterStatus};
use crate::config::Config;
use crate::skypilot::{Client, ClientError, CostRecord, RefreshMode};
use crate::store::{
    ApiServerHealth, ClusterChanges, ClusterRow, PollOutcome, PollRun, Store, Transition,
};
use crate::time::{Clock, SystemClock};

/// How long poll records are kept.
const POLL_RETENTION_SECS: f64 = 30.0 * 86_400.0;
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
    now: i64,
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
    pub refresh: RefreshMode,
    pub outcome: PollOutcome,
    pub clusters: usize,
    pub changes: usize,
    pub error: Option<String>,
}

/// The cluster manager's state between polls.
pub struct Manager {
    client: Client,
    store: Store,
    clock: Arc<dyn Clock>,
    config: Config,
    known: HashMap<String, ClusterRow>,
    /// Fingerprints of the status records behind `known`, to skip unchanged ones.
    fingerprints: HashMap<String, u64>,
    costs: HashMap<String, CostRecord>,
    last_force: Option<f64>,
    last_prune: f64,
    failures: u32,
}

impl Manager {
    pub fn new(config: Config, clock: Arc<dyn Clock>) -> anyhow::Result<Manager> {
        let client = Client::new(&config.skypilot)?;
        let store = Store::open(&config.cluster_manager.database)?;
        let known = store
            .clusters()?
            .into_iter()
            .map(|r| (r.cluster.name.clone(), r))
            .collect();
        Ok(Manager {
            client,
            store,
            clock,
            config,
            known,
            fingerprints: HashMap::new(),
            costs: HashMap::new(),
            last_force: None,
            last_prune: 0.0,
            failures: 0,
        })
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    /// Number of clusters known, gone ones included.
    pub fn known_len(&self) -> usize {
        self.known.len()
    }

    /// Consecutive failed polls.
    pub fn failures(&self) -> u32 {
        self.failures
    }

    fn force_due(&self, now: f64) -> bool {
        match self.last_force {
            None => true,
            Some(t) => now - t >= self.config.cluster_manager.force_refresh_interval_secs as f64,
        }
    }

    /// Probes `/api/health` and records the result.
    pub async fn check_health(&mut self) -> Result<(), ClientError> {
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

    /// One poll: health, status (forced when due), cost report with forced polls, diff,
    /// commit. Never fails: the outcome is recorded and returned.
    pub async fn poll_once(&mut self) -> PollReport {
        let now = self.clock.now();
        let force = self.force_due(now);
        if let Err(e) = self.check_health().await {
            return self.record_failure(RefreshMode::None, now, &e);
        }
        if force {
            self.last_force = Some(now);
            match self.poll(RefreshMode::Force, now).await {
                Ok(report) => return report,
                // The server answered but the forced refresh failed (e.g. a cloud's
                // credentials are missing): record it, then read SkyPilot's database so
                // the state stays fresh.
                Err(e) if !e.is_unreachable() => {
                    tracing::warn!(error = %e, "forced refresh failed; reading without refresh");
                    self.record_failure(RefreshMode::Force, now, &e);
                }
                Err(e) => return self.record_failure(RefreshMode::Force, now, &e),
            }
            self.refresh_costs().await;
        }
        let now = self.clock.now();
        match self.poll(RefreshMode::None, now).await {
            Ok(report) => report,
            Err(e) => self.record_failure(RefreshMode::None, now, &e),
        }
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

    async fn poll(
        &mut self,
        refresh: RefreshMode,
        started: f64,
    ) -> Result<PollReport, ClientError> {
        let text = self.client.status_raw(refresh).await?;
        let records = self.client.status_records(&text)?;
        // A forced poll also brings new costs: compare every cluster then.
        let use_fingerprints = refresh != RefreshMode::Force;
        if !use_fingerprints {
            self.refresh_costs().await;
        }
        let count = records.len();
        let mut unchanged_names = Vec::new();
        let mut seen = Vec::new();
        let mut fingerprints = Vec::new();
        for record in records {
            let fp = record.fingerprint();
            if use_fingerprints
                && self.fingerprints.get(record.name.as_ref()) == Some(&fp)
                && self
                    .known
                    .get(record.name.as_ref())
                    .is_some_and(|r| r.gone_at.is_none())
            {
                unchanged_names.push(record.name);
                continue;
            }
            let cluster = record
                .into_cluster()
                .map_err(|what| ClientError::Malformed {
                    url: self.client.base_url().to_string(),
                    what: format!("status: {what}"),
                })?;
            fingerprints.push((cluster.name.clone(), fp));
            seen.push(cluster);
        }
        let unchanged: HashSet<&str> = unchanged_names.iter().map(|n| n.as_ref()).collect();
        let finished = self.clock.now();
        let changes = diff(&self.known, seen, &unchanged, &self.costs, finished as i64);
        let n = changes.upserts.len() + changes.gone.len();
        let run = PollRun {
            id: 0,
            started_at: started,
            finished_at: finished,
            refresh: refresh.as_str().to_string(),
            outcome: PollOutcome::Ok,
            error_kind: None,
            error: None,
            clusters: Some(count as i64),
            changes: Some(n as i64),
        };
        if let Err(e) = self.store.commit_poll(&changes, &run) {
            // The database refused the write: keep the in-memory view as it was, so the
            // next poll writes the same changes again.
            tracing::error!(error = %e, "cannot record the poll");
            self.failures += 1;
            return Ok(PollReport {
                refresh,
                outcome: PollOutcome::Error,
                clusters: count,
                changes: 0,
                error: Some(e.to_string()),
            });
        }
        for t in &changes.transitions {
            tracing::info!(cluster = %t.cluster, from = ?t.from, to = %t.to, "cluster status changed");
        }
        for (name, _) in &changes.gone {
            self.fingerprints.remove(name);
        }
        self.fingerprints.extend(fingerprints);
        apply(&mut self.known, changes);
        self.failures = 0;
        self.prune(finished);
        Ok(PollReport {
            refresh,
            outcome: PollOutcome::Ok,
            clusters: count,
            changes: n,
            error: None,
        })
    }

    fn record_failure(
        &mut self,
        refresh: RefreshMode,
        started: f64,
        e: &ClientError,
    ) -> PollReport {
        self.failures += 1;
        tracing::warn!(error = %e, failures = self.failures, "poll failed; keeping the last known state");
        let run = PollRun {
            id: 0,
            started_at: started,
            finished_at: self.clock.now(),
            refresh: refresh.as_str().to_string(),
            outcome: PollOutcome::Error,
            error_kind: Some(e.kind()),
            error: Some(e.to_string()),
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
            error: Some(e.to_string()),
        }
    }

    fn prune(&mut self, now: f64) {
        if now - self.last_prune < 3600.0 {
            return;
        }
        self.last_prune = now;
        match self.store.prune_polls(now - POLL_RETENTION_SECS) {
            Ok(0) => {}
            Ok(n) => tracing::info!(deleted = n, "pruned old poll records"),
            Err(e) => tracing::warn!(error = %e, "cannot prune old poll records"),
        }
    }

    /// Time to wait before the next poll: the poll interval, or after failures a
    /// back-off of 1, 2, 4, … seconds capped at the poll interval.
    pub fn next_delay(&self) -> Duration {
        let interval = self.config.cluster_manager.poll_interval_secs;
        if self.failures == 0 {
            Duration::from_secs(interval)
        } else {
            let exp = 1u64 << (self.failures - 1).min(20);
            Duration::from_secs(exp.min(interval))
        }
    }
}

/// Hands freed heap pages back to the OS. A poll of a large fleet allocates several
/// times the answer's size for a moment; without this glibc keeps that peak resident.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn release_freed_memory() {
    // SAFETY: malloc_trim takes no pointers and only returns free pages of the heap.
    unsafe {
        libc::malloc_trim(0);
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn release_freed_memory() {}

/// systemd notification; a no-op outside systemd.
fn notify(state: &[sd_notify::NotifyState<'_>]) {
    if let Err(e) = sd_notify::notify(false, state) {
        tracing::debug!(error = %e, "sd_notify failed");
    }
}

/// The watchdog interval systemd asked for, if any.
fn watchdog_interval() -> Option<Duration> {
    let mut usec = 0u64;
    if sd_notify::watchdog_enabled(false, &mut usec) && usec > 0 {
        Some(Duration::from_micros(usec))
    } else {
        None
    }
}

/// Runs the poll loop until `shutdown` resolves.
pub async fn run_until(
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
    notify(&[sd_notify::NotifyState::Ready]);
    let watchdog = watchdog_interval();
    tokio::pin!(shutdown);
    'polling: loop {
        let report = tokio::select! {
            r = manager.poll_once() => r,
            () = &mut shutdown => break 'polling,
        };
        release_freed_memory();
        let status = match &report.error {
            None => format!("{} clusters, {} changed", report.clusters, report.changes),
            Some(e) => format!("poll failed ({} in a row): {e}", manager.failures()),
        };
        notify(&[
            sd_notify::NotifyState::Watchdog,
            sd_notify::NotifyState::Status(&status),
        ]);
        let mut remaining = manager.next_delay();
        // Sleep in slices short enough to keep the watchdog fed.
        while !remaining.is_zero() {
            let slice = match watchdog {
                Some(w) => remaining.min(w / 2),
                None => remaining,
            };
            tokio::select! {
                () = tokio::time::sleep(slice) => {}
                () = &mut shutdown => break 'polling,
            }
            remaining = remaining.saturating_sub(slice);
            if watchdog.is_some() {
                notify(&[sd_notify::NotifyState::Watchdog]);
            }
        }
    }
    notify(&[sd_notify::NotifyState::Stopping]);
    tracing::info!("cluster manager stopping");
    Ok(())
}

/// Resolves on SIGTERM or SIGINT.
pub async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    match (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) {
        (Ok(mut term), Ok(mut int)) => {
            tokio::select! {
                _ = term.recv() => {}
                _ = int.recv() => {}
            }
        }
        _ => {
            tracing::warn!("cannot install signal handlers; stopping only on Ctrl-C");
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

pub async fn run(config: Config) -> anyhow::Result<()> {
    run_until(config, Arc::new(SystemClock), shutdown_signal()).await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cluster(name: &str, status: ClusterStatus) -> Cluster {
        Cluster {
            name: name.into(),
            cluster_hash: format!("hash-{name}"),
            status,
            cloud: Some("AWS".into()),
            region: Some("us-west-2".into()),
            zone: None,
            instance_type: Some("m6i.large".into()),
            nodes: 1,
            cpus: Some("2.0".into()),
            memory: Some("8.0".into()),
            accelerators: None,
            resources: None,
            workspace: "default".into(),
            user_name: Some("alice".into()),
            user_hash: Some("abcd".into()),
            launched_at: Some(1000),
            status_updated_at: Some(1000),
            autostop_minutes: -1,
            autostop_to_down: false,
            is_managed: false,
            last_use: None,
        }
    }

    /// `diff` without fingerprints or costs.
    fn plain(known: &HashMap<String, ClusterRow>, seen: Vec<Cluster>, now: i64) -> ClusterChanges {
        diff(known, seen, &HashSet::new(), &HashMap::new(), now)
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
        assert_eq!(d.upserts[0].first_seen, 100);
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
        assert_eq!(d.upserts[0].first_seen, 100);
        assert_eq!(d.upserts[0].last_changed, 200);
        assert_eq!(
            d.transitions,
            vec![Transition {
                cluster: "a".into(),
                from: Some(ClusterStatus::Up),
                to: ClusterStatus::Stopped,
                at: 200
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
        assert_eq!(d.gone, vec![("b".to_string(), 200)]);
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
        assert_eq!(d.upserts[0].first_seen, 400);
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
            200,
        );
        assert!(d.is_empty(), "{d:?}");
        let d = diff(&k, vec![], &unchanged, &HashMap::new(), 200);
        assert_eq!(d.gone, vec![("b".to_string(), 200)]);
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
        assert_eq!(d.upserts[0].first_seen, 200);
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
            100,
        );
        assert_eq!(d.upserts[0].hourly_cost, Some(1.0));
        assert_eq!(d.upserts[0].total_cost, Some(1.0));
        assert_eq!(
            d.upserts[1].hourly_cost, None,
            "cost of another cluster's life"
        );
    }
}
