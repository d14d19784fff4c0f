//! The poll loop: SkyPilot's API server asked on the effective interval, its answer
//! diffed and committed through the store, failures recorded and backed off.

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::config::Config;
use crate::load_budget::LoadBudget;
use crate::skypilot::{Client, ClientError, CostRecord, RefreshMode};
use crate::store::{
    sql_count, ApiServerHealth, ClusterRow, PollOutcome, PollRun, Store, WriterLock,
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

use super::diff::{ingest, Ingested, Known};

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
    /// The API server's CPU could not be read the last time (logged once).
    cpu_unreadable: bool,
    /// SkyPilot's catalog (`policy.catalog_dir`): list prices of what the cost report
    /// does not price.
    catalog: crate::catalog::Catalog,
    /// The last fleet sample recorded (the charts' history).
    last_sample: Option<crate::store::FleetSample>,
    /// The managed jobs known (as last committed).
    jobs: crate::jobs::KnownJobs,
    /// The cost of the job queue's reads and the interval that keeps them within what
    /// `/status` leaves of the load budget.
    jobs_load: LoadBudget,
    /// When the job queue was last asked for.
    last_jobs: Option<Timestamp>,
    /// The SkyServe services known (as last committed).
    services: crate::services::KnownServices,
    /// The cost of `/serve/status` reads and the interval that keeps them within what
    /// `/status` leaves of the load budget.
    services_load: LoadBudget,
    /// When `/serve/status` was last asked for.
    last_services: Option<Timestamp>,
}

/// What one read of a feed (the managed-job queue, the services) did.
#[derive(Debug, Clone, PartialEq)]
pub struct FeedReport {
    /// Records read.
    pub records: usize,
    pub changes: usize,
    pub error: Option<String>,
}

/// Whether a feed read every `interval` seconds (0: never), last at `last`, is due at
/// `now`; its interval stretched by `load`.
fn feed_due(interval: u64, last: Option<Timestamp>, load: &LoadBudget, now: Timestamp) -> bool {
    interval != 0 && last.is_none_or(|t| now.secs_since(t) >= load.interval_secs())
}

/// The state of a feed read that succeeded with `n` records.
fn ok_feed(answered: Timestamp, n: usize, seconds: f64, interval: f64) -> crate::store::FeedState {
    crate::store::FeedState {
        attempted_at: answered.floor(),
        ok_at: Some(answered),
        records: Some(sql_count(n)),
        seconds: Some(seconds),
        interval_secs: Some(interval),
        error_kind: None,
        error: None,
    }
}

/// Seconds between two fleet samples of an unchanged fleet.
const SAMPLE_EVERY_SECS: f64 = 60.0;

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
        let catalog = crate::catalog::Catalog::new(&config.policy.catalog_dir);
        let last_sample = store.last_fleet_sample()?;
        let jobs = store.known_jobs()?;
        let jobs_load = LoadBudget::new(
            config.cluster_manager.load_budget,
            config.cluster_manager.jobs_poll_interval_secs.max(1),
        );
        let services = store.known_services()?;
        let services_load = LoadBudget::new(
            config.cluster_manager.load_budget,
            config.cluster_manager.services_poll_interval_secs.max(1),
        );
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
            cpu_unreadable: false,
            catalog,
            last_sample,
            jobs,
            jobs_load,
            last_jobs: None,
            services,
            services_load,
            last_services: None,
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
        self.jobs = store.known_jobs().map_err(|e| e.to_string())?;
        self.services = store.known_services().map_err(|e| e.to_string())?;
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
            let catalog = &self.catalog;
            let list_price =
                |c: &crate::cluster::Cluster| crate::catalog::cluster_price(catalog, c);
            ingest(
                &self.known,
                records,
                &self.costs,
                &list_price,
                force,
                finished.floor(),
            )
            .map_err(|what| ClientError::Malformed {
                url: self.client.base_url().to_string(),
                what: format!("status: {what}"),
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
        let cpu_before = self.server_cpu();
        let sent = self.clock.now();
        let text = self
            .client
            .status_raw(RefreshMode::None)
            .await
            .map_err(|e| (RefreshMode::None, e))?;
        let answered = self.clock.now();
        let cpu = self.server_cpu_since(cpu_before);
        // Only reads without refresh count: a forced one waits on the clouds, not on
        // the server, and comes every force_refresh_interval_secs whatever the interval.
        let load = self.load.record(sent, answered, cpu);
        if load.interval_secs > self.load_floor_secs() {
            tracing::debug!(
                status_secs = load.status_secs,
                cpu_secs = load.cpu_secs,
                interval_secs = load.interval_secs,
                budget = load.budget,
                "polling less often to keep within cluster_manager.load_budget"
            );
        }
        Ok((RefreshMode::None, text))
    }

    /// The API server's CPU seconds so far, when it runs on this host and can be read;
    /// a failed read is logged (once until one succeeds) and the read counted by its
    /// wall time.
    fn server_cpu(&mut self) -> Option<(f64, crate::load_budget::CpuSource)> {
        let cpu = self.config.cluster_manager.server_cpu()?;
        match cpu.read() {
            Ok(secs) => {
                self.cpu_unreadable = false;
                Some((secs, cpu.source()))
            }
            Err(e) => {
                if !self.cpu_unreadable {
                    tracing::warn!(error = %e, "cannot read the API server's CPU; counting /status reads by their wall time");
                    self.cpu_unreadable = true;
                }
                None
            }
        }
    }

    /// The API server's CPU seconds since `before` (a [`Manager::server_cpu`] reading),
    /// when both readings could be made.
    fn server_cpu_since(
        &mut self,
        before: Option<(f64, crate::load_budget::CpuSource)>,
    ) -> Option<(f64, crate::load_budget::CpuSource)> {
        match (before, self.server_cpu()) {
            (Some((a, source)), Some((b, _))) => Some(((b - a).max(0.0), source)),
            _ => None,
        }
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
        self.sample_fleet(finished);
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

    /// Records the fleet's counts and burn rate for the charts: when they changed, and at
    /// least once every [`SAMPLE_EVERY_SECS`] otherwise.
    fn sample_fleet(&mut self, at: Timestamp) {
        let sample = crate::store::FleetSample::of(self.known.rows.values(), at);
        let due = self.last_sample.is_none_or(|last| {
            !last.same_fleet(&sample) || at.secs_since(last.at) >= SAMPLE_EVERY_SECS
        });
        if !due {
            return;
        }
        match self.store.add_fleet_sample(&sample) {
            Ok(()) => self.last_sample = Some(sample),
            Err(e) => tracing::warn!(error = %e, "cannot record the fleet's history"),
        }
    }

    /// Whether the job queue is due: `jobs_poll_interval_secs` (0: never), stretched to
    /// keep its reads within what `/status` leaves of the load budget.
    pub(crate) fn jobs_due(&self, now: Timestamp) -> bool {
        feed_due(
            self.config.cluster_manager.jobs_poll_interval_secs,
            self.last_jobs,
            &self.jobs_load,
            now,
        )
    }

    /// Whether `/serve/status` is due: `services_poll_interval_secs` (0: never),
    /// stretched to keep its reads within what `/status` and the job queue leave.
    pub(crate) fn services_due(&self, now: Timestamp) -> bool {
        feed_due(
            self.config.cluster_manager.services_poll_interval_secs,
            self.last_services,
            &self.services_load,
            now,
        )
    }

    /// What the load budget leaves after `/status` and the shares of `others` (at
    /// least a tenth of it).
    fn budget_left(&self, others: &[&LoadBudget]) -> f64 {
        let budget = self.config.cluster_manager.load_budget;
        let used: f64 = std::iter::once(&self.load)
            .chain(others.iter().copied())
            .filter_map(|l| l.last().map(|l| l.share))
            .sum();
        (budget - used).max(budget / 10.0)
    }

    /// Records a read that found no controller up (SkyPilot's ClusterNotUpError): not
    /// a failure; the records stay as last read, and the feed says why nothing changes.
    fn record_no_controller(
        &self,
        feed: crate::store::Feed,
        (started, answered): (Timestamp, Timestamp),
        interval_secs: f64,
        message: &str,
    ) -> FeedReport {
        let (controller, records) = match feed {
            crate::store::Feed::Jobs => ("jobs", "jobs"),
            crate::store::Feed::Services => ("serve", "services"),
        };
        let state = crate::store::FeedState {
            attempted_at: started,
            ok_at: Some(answered),
            records: Some(0),
            seconds: Some(answered.secs_since(started).max(0.0)),
            interval_secs: Some(interval_secs),
            error_kind: Some(crate::store::NO_CONTROLLER.into()),
            error: Some(format!(
                "SkyPilot's {controller} controller is not up ({}): the {records} recorded are kept as last read",
                clean(message.trim_end_matches('.'))
            )),
        };
        if let Err(e) = self.store.record_feed(feed, &state) {
            tracing::error!(error = %e, feed = feed.as_str(), "cannot record the read of a feed");
        }
        FeedReport {
            records: 0,
            changes: 0,
            error: None,
        }
    }

    /// Reads SkyPilot's managed-job queue and commits what changed. A failed read keeps
    /// the jobs as they were and records the error with the feed (readers see its age).
    pub async fn poll_jobs(&mut self) -> FeedReport {
        let started = self.clock.now();
        self.last_jobs = Some(started);
        let cpu_before = self.server_cpu();
        let result = self.client.jobs_queue_raw().await.and_then(|text| {
            crate::jobs::parse_queue(&text).map_err(|what| ClientError::Malformed {
                url: format!("{}/jobs/queue/v2", self.client.base_url()),
                what: format!("jobs/queue/v2: {what}"),
            })
        });
        let answered = self.clock.now();
        let seconds = answered.secs_since(started).max(0.0);
        let jobs = match result {
            Ok(jobs) => jobs,
            // No jobs controller is up (none was ever launched, or it stopped after its
            // jobs ended): SkyPilot has no queue to give.
            Err(ClientError::Sky {
                error_type,
                message,
                ..
            }) if error_type == "ClusterNotUpError" => {
                let interval = self.jobs_load.interval_secs();
                return self.record_no_controller(
                    crate::store::Feed::Jobs,
                    (started, answered),
                    interval,
                    &message,
                );
            }
            Err(e) => {
                return self.record_feed_failure(
                    crate::store::Feed::Jobs,
                    started,
                    seconds,
                    e.kind(),
                    e.to_string(),
                )
            }
        };
        let cpu = self.server_cpu_since(cpu_before);
        // The queue shares the budget with /status: it gets what /status leaves.
        let budget = self.budget_left(&[]);
        self.jobs_load.set_budget(budget);
        self.jobs_load.record(started, answered, cpu);
        let n = jobs.len();
        let changes = crate::jobs::diff_jobs(&self.jobs, jobs, answered.floor());
        let state = ok_feed(answered, n, seconds, self.jobs_load.interval_secs());
        if let Err(e) = self.store.commit_jobs(&changes, &state) {
            return self.record_feed_failure(
                crate::store::Feed::Jobs,
                started,
                seconds,
                "database".into(),
                e.to_string(),
            );
        }
        for t in &changes.transitions {
            // The job's name: of this read, or as known for a job that is gone.
            let job = changes
                .upserts
                .iter()
                .map(|(j, _)| j)
                .chain(self.jobs.values().map(|(j, _)| j))
                .find(|j| (j.job_id, j.task_id) == (t.job_id, t.task_id))
                .map(|j| j.name.as_str());
            if t.to.is_failed() {
                tracing::warn!(job_id = t.job_id, job = job.map(clean).as_deref(), to = %t.to, "managed job failed");
            } else if t.from.is_some() {
                tracing::info!(job_id = t.job_id, from = ?t.from, to = %t.to, "managed job status changed");
            }
        }
        let count = changes.len();
        crate::jobs::apply_jobs(&mut self.jobs, changes);
        FeedReport {
            records: n,
            changes: count,
            error: None,
        }
    }

    /// Reads SkyServe's services (`/serve/status`) and commits what changed. A failed
    /// read (SkyPilot refuses it when it finds the internet unreachable) keeps the
    /// services as they were and records the error with the feed.
    pub async fn poll_services(&mut self) -> FeedReport {
        let started = self.clock.now();
        self.last_services = Some(started);
        let cpu_before = self.server_cpu();
        let result = self.client.serve_status_raw().await.and_then(|text| {
            crate::services::parse_status(&text).map_err(|what| ClientError::Malformed {
                url: format!("{}/serve/status", self.client.base_url()),
                what: format!("serve/status: {what}"),
            })
        });
        let answered = self.clock.now();
        let seconds = answered.secs_since(started).max(0.0);
        let services = match result {
            Ok(services) => services,
            // No serve controller is up (no service was ever started, or the controller
            // stopped): SkyPilot has no services to list.
            Err(ClientError::Sky {
                error_type,
                message,
                ..
            }) if error_type == "ClusterNotUpError" => {
                let interval = self.services_load.interval_secs();
                return self.record_no_controller(
                    crate::store::Feed::Services,
                    (started, answered),
                    interval,
                    &message,
                );
            }
            Err(e) => {
                return self.record_feed_failure(
                    crate::store::Feed::Services,
                    started,
                    seconds,
                    e.kind(),
                    e.to_string(),
                )
            }
        };
        let cpu = self.server_cpu_since(cpu_before);
        let budget = self.budget_left(&[&self.jobs_load]);
        self.services_load.set_budget(budget);
        self.services_load.record(started, answered, cpu);
        let n = services.len();
        let changes = crate::services::diff_services(&self.services, services, answered.floor());
        let state = ok_feed(answered, n, seconds, self.services_load.interval_secs());
        if let Err(e) = self.store.commit_services(&changes, &state) {
            return self.record_feed_failure(
                crate::store::Feed::Services,
                started,
                seconds,
                "database".into(),
                e.to_string(),
            );
        }
        for t in &changes.transitions {
            if t.to.is_failed() {
                tracing::warn!(service = %clean(&t.service), from = ?t.from, to = %t.to, "service failed");
            } else if t.from.is_some() {
                tracing::info!(service = %clean(&t.service), from = ?t.from, to = %t.to, "service status changed");
            }
        }
        let count = changes.len();
        crate::services::apply_services(&mut self.services, changes);
        FeedReport {
            records: n,
            changes: count,
            error: None,
        }
    }

    /// Records a failed read of a feed; its records stay as they were.
    fn record_feed_failure(
        &mut self,
        feed: crate::store::Feed,
        started: Timestamp,
        seconds: f64,
        kind: String,
        error: String,
    ) -> FeedReport {
        let error = clean(&error).into_owned();
        tracing::warn!(error = %error, feed = feed.as_str(), "reading a feed failed; keeping its last known records");
        let state = crate::store::FeedState {
            attempted_at: started,
            ok_at: None,
            records: None,
            seconds: Some(seconds),
            interval_secs: None,
            error_kind: Some(kind),
            error: Some(error.clone()),
        };
        if let Err(e) = self.store.record_feed(feed, &state) {
            tracing::error!(error = %e, feed = feed.as_str(), "cannot record the failed read of a feed");
        }
        FeedReport {
            records: 0,
            changes: 0,
            error: Some(error),
        }
    }

    /// Reads a feed when it is due, within `deadline`: a note for the round's status.
    async fn feed_round(&mut self, feed: crate::store::Feed, deadline: Duration) -> String {
        let (due, what) = match feed {
            crate::store::Feed::Jobs => (self.jobs_due(self.clock.now()), "managed jobs"),
            crate::store::Feed::Services => (self.services_due(self.clock.now()), "services"),
        };
        if !due {
            return String::new();
        }
        let asked = self.clock.now();
        let read = match feed {
            crate::store::Feed::Jobs => tokio::time::timeout(deadline, self.poll_jobs()).await,
            crate::store::Feed::Services => {
                tokio::time::timeout(deadline, self.poll_services()).await
            }
        };
        let report = match read {
            Ok(r) => r,
            Err(_) => {
                let message = format!(
                    "reading the {what} took longer than {} s (cluster_manager.poll_deadline_secs) and was abandoned; SkyPilot's API server at {} answers too slowly",
                    deadline.as_secs(),
                    self.client.base_url()
                );
                self.record_feed_failure(
                    feed,
                    asked,
                    deadline.as_secs_f64(),
                    "deadline".into(),
                    message,
                )
            }
        };
        match report.error {
            None => format!("; {} {what}, {} changed", report.records, report.changes),
            Some(e) => format!("; reading the {what} failed: {e}"),
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
        // The job queue and the services when due and the server answered the poll.
        let mut jobs_note = String::new();
        if report.error.is_none() {
            jobs_note = self.feed_round(crate::store::Feed::Jobs, deadline).await;
            jobs_note += &self
                .feed_round(crate::store::Feed::Services, deadline)
                .await;
        }
        crate::memory::release_freed();
        let wait = self.next_delay();
        let status = match &report.error {
            None => format!(
                "{} clusters, {} changed{jobs_note}; next poll in {:.0} s",
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
