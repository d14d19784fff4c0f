//! Managed jobs (`sky jobs launch`) as the host services see them: the fields of
//! SkyPilot's `/jobs/queue/v2` records that the roles use, and the pure step that turns
//! one answer into changes against what is known (a job that disappears is kept as
//! GONE, as clusters are).

use std::collections::HashMap;
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::time::Timestamp;

/// A managed job's status: SkyPilot 0.14.1's `ManagedJobStatus`, and `Gone` (ours: the
/// job was known and the queue no longer lists it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum JobStatus {
    Pending,
    Submitted,
    Starting,
    Running,
    WindingDown,
    Recovering,
    Cancelling,
    Succeeded,
    Cancelled,
    Failed,
    FailedSetup,
    FailedPrechecks,
    FailedNoResource,
    FailedController,
    Gone,
}

impl JobStatus {
    pub const ALL: [JobStatus; 15] = [
        JobStatus::Pending,
        JobStatus::Submitted,
        JobStatus::Starting,
        JobStatus::Running,
        JobStatus::WindingDown,
        JobStatus::Recovering,
        JobStatus::Cancelling,
        JobStatus::Succeeded,
        JobStatus::Cancelled,
        JobStatus::Failed,
        JobStatus::FailedSetup,
        JobStatus::FailedPrechecks,
        JobStatus::FailedNoResource,
        JobStatus::FailedController,
        JobStatus::Gone,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            JobStatus::Pending => "PENDING",
            JobStatus::Submitted => "SUBMITTED",
            JobStatus::Starting => "STARTING",
            JobStatus::Running => "RUNNING",
            JobStatus::WindingDown => "WINDING_DOWN",
            JobStatus::Recovering => "RECOVERING",
            JobStatus::Cancelling => "CANCELLING",
            JobStatus::Succeeded => "SUCCEEDED",
            JobStatus::Cancelled => "CANCELLED",
            JobStatus::Failed => "FAILED",
            JobStatus::FailedSetup => "FAILED_SETUP",
            JobStatus::FailedPrechecks => "FAILED_PRECHECKS",
            JobStatus::FailedNoResource => "FAILED_NO_RESOURCE",
            JobStatus::FailedController => "FAILED_CONTROLLER",
            JobStatus::Gone => "GONE",
        }
    }

    /// Ended with a failure (SkyPilot's `failure_statuses`): FAILED*, not CANCELLED.
    pub fn is_failed(self) -> bool {
        matches!(
            self,
            JobStatus::Failed
                | JobStatus::FailedSetup
                | JobStatus::FailedPrechecks
                | JobStatus::FailedNoResource
                | JobStatus::FailedController
        )
    }

    /// Will not change any more (SkyPilot's terminal statuses, and GONE).
    pub fn is_terminal(self) -> bool {
        self.is_failed()
            || matches!(
                self,
                JobStatus::Succeeded | JobStatus::Cancelled | JobStatus::Gone
            )
    }

    /// Holds (or is getting) a cluster: what a job costs while in it.
    pub fn is_active(self) -> bool {
        matches!(
            self,
            JobStatus::Starting
                | JobStatus::Running
                | JobStatus::WindingDown
                | JobStatus::Recovering
                | JobStatus::Cancelling
        )
    }
}

impl fmt::Display for JobStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for JobStatus {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        JobStatus::ALL
            .into_iter()
            .find(|j| j.as_str() == s)
            .ok_or_else(|| {
                format!(
                    "unknown managed job status {s:?}: expected one of {}",
                    JobStatus::ALL.map(JobStatus::as_str).join(", ")
                )
            })
    }
}

/// One task of a managed job (a job of one task has one), as the queue lists it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ManagedJob {
    pub job_id: i64,
    pub task_id: i64,
    pub name: String,
    pub status: JobStatus,
    pub workspace: String,
    pub user_name: Option<String>,
    pub user_hash: Option<String>,
    pub pool: Option<String>,
    pub resources: Option<String>,
    pub infra: Option<String>,
    pub cloud: Option<String>,
    pub region: Option<String>,
    pub recovery_count: i64,
    /// The cluster the job runs on now (SkyPilot's `current_cluster_name`).
    pub cluster: Option<String>,
    pub submitted_at: Option<Timestamp>,
    pub started_at: Option<Timestamp>,
    pub ended_at: Option<Timestamp>,
    pub failure_reason: Option<String>,
}

impl ManagedJob {
    /// The key of a job's task in the host database.
    pub fn key(&self) -> (i64, i64) {
        (self.job_id, self.task_id)
    }

    /// Who owns it: the user's name, else SkyPilot's user id.
    pub fn owner(&self) -> &str {
        self.user_name
            .as_deref()
            .or(self.user_hash.as_deref())
            .unwrap_or("-")
    }

    /// Seconds it has run by `now`: from its start to its end, or to `now` while it has
    /// not ended. None before it started.
    pub fn running_secs(&self, now: Timestamp) -> Option<f64> {
        let start = self.started_at?;
        let end = self.ended_at.unwrap_or(now);
        Some(end.secs_since(start).max(0.0))
    }
}

/// The fields asked of `/jobs/queue/v2` (SkyPilot's `ManagedJobRecord`): what
/// [`ManagedJob`] holds, and nothing that grows with the job (logs, YAML).
pub const QUEUE_FIELDS: [&str; 19] = [
    "job_id",
    "task_id",
    "job_name",
    "task_name",
    "status",
    "workspace",
    "user_name",
    "user_hash",
    "pool",
    "resources",
    "infra",
    "cloud",
    "region",
    "recovery_count",
    "current_cluster_name",
    "submitted_at",
    "start_at",
    "end_at",
    "failure_reason",
];

#[derive(Deserialize)]
struct WireQueue {
    jobs: Vec<WireJob>,
}

#[derive(Deserialize)]
struct WireJob {
    job_id: Option<i64>,
    task_id: Option<i64>,
    job_name: Option<String>,
    task_name: Option<String>,
    status: Option<String>,
    workspace: Option<String>,
    user_name: Option<String>,
    user_hash: Option<String>,
    pool: Option<String>,
    resources: Option<String>,
    infra: Option<String>,
    cloud: Option<String>,
    region: Option<String>,
    recovery_count: Option<i64>,
    current_cluster_name: Option<String>,
    submitted_at: Option<f64>,
    start_at: Option<f64>,
    end_at: Option<f64>,
    failure_reason: Option<String>,
}

/// SkyPilot writes `-` where a job has no cloud, region or infra yet.
fn known(v: Option<String>) -> Option<String> {
    v.filter(|s| !s.is_empty() && s != "-")
}

/// A time SkyPilot recorded: seconds since the epoch, or none (null or negative).
fn when(v: Option<f64>) -> Option<Timestamp> {
    v.filter(|t| t.is_finite() && *t > 0.0)
        .map(Timestamp::from_secs_f64)
}

/// Parses the `return_value` of `/jobs/queue/v2` (`{"jobs": [...], "total": ...}`). A
/// record without a job id, a name or a status SkyPilot 0.14.1 has is an error naming it.
pub fn parse_queue(text: &str) -> Result<Vec<ManagedJob>, String> {
    let queue: WireQueue = serde_json::from_str(text)
        .map_err(|e| format!("not the expected {{\"jobs\": [...]}} answer: {e}"))?;
    queue
        .jobs
        .into_iter()
        .enumerate()
        .map(|(i, w)| {
            let job_id = w.job_id.ok_or_else(|| format!("jobs[{i}]: no job_id"))?;
            let status = w
                .status
                .as_deref()
                .ok_or_else(|| format!("jobs[{i}] (job {job_id}): no status"))?
                .parse::<JobStatus>()
                .map_err(|e| format!("jobs[{i}] (job {job_id}): {e}"))?;
            if status == JobStatus::Gone {
                return Err(format!("jobs[{i}] (job {job_id}): GONE is not SkyPilot's"));
            }
            let name = w
                .job_name
                .or(w.task_name)
                .unwrap_or_else(|| format!("job-{job_id}"));
            Ok(ManagedJob {
                job_id,
                task_id: w.task_id.unwrap_or(0),
                name,
                status,
                workspace: w.workspace.unwrap_or_else(|| "default".into()),
                user_name: w.user_name,
                user_hash: w.user_hash,
                pool: w.pool,
                resources: known(w.resources),
                infra: known(w.infra),
                cloud: known(w.cloud),
                region: known(w.region),
                recovery_count: w.recovery_count.unwrap_or(0).max(0),
                cluster: known(w.current_cluster_name),
                submitted_at: when(w.submitted_at),
                started_at: when(w.start_at),
                ended_at: when(w.end_at),
                failure_reason: w.failure_reason,
            })
        })
        .collect()
}

/// A job as the host database keeps it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct JobRow {
    #[serde(flatten)]
    pub job: ManagedJob,
    pub first_seen: Timestamp,
    pub last_changed: Timestamp,
    pub gone_at: Option<Timestamp>,
    /// The hourly price of the cluster it runs on, when the host database prices it.
    #[serde(serialize_with = "crate::money::opt_price")]
    pub hourly_cost: Option<f64>,
}

impl JobRow {
    /// What it has cost so far: the hourly price of its cluster × the time it has run.
    /// None when its cluster is not priced.
    pub fn cost_so_far(&self, now: Timestamp) -> Option<f64> {
        Some(self.hourly_cost? * self.job.running_secs(now)? / 3600.0)
    }
}

/// A job's status change.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct JobTransition {
    pub job_id: i64,
    pub task_id: i64,
    pub from: Option<JobStatus>,
    pub to: JobStatus,
    pub at: Timestamp,
}

/// What one queue answer changes.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct JobChanges {
    /// New or changed jobs, with when they were first seen.
    pub upserts: Vec<(ManagedJob, Timestamp)>,
    /// Known jobs the queue no longer lists.
    pub gone: Vec<(i64, i64)>,
    pub transitions: Vec<JobTransition>,
}

impl JobChanges {
    pub fn len(&self) -> usize {
        self.upserts.len() + self.gone.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The jobs known (job id, task id → as last recorded).
pub type KnownJobs = HashMap<(i64, i64), (ManagedJob, Timestamp)>;

/// Compares a queue answer with what is known: new and changed jobs, status
/// transitions, and known jobs no longer listed (GONE, once).
pub fn diff_jobs(known: &KnownJobs, fresh: Vec<ManagedJob>, now: Timestamp) -> JobChanges {
    let mut changes = JobChanges::default();
    let mut seen = std::collections::HashSet::with_capacity(fresh.len());
    for job in fresh {
        let key = job.key();
        seen.insert(key);
        match known.get(&key) {
            Some((old, _)) if *old == job => {}
            Some((old, first_seen)) => {
                if old.status != job.status {
                    changes.transitions.push(JobTransition {
                        job_id: key.0,
                        task_id: key.1,
                        from: Some(old.status),
                        to: job.status,
                        at: now,
                    });
                }
                changes.upserts.push((job, *first_seen));
            }
            None => {
                changes.transitions.push(JobTransition {
                    job_id: key.0,
                    task_id: key.1,
                    from: None,
                    to: job.status,
                    at: now,
                });
                changes.upserts.push((job, now));
            }
        }
    }
    let mut gone: Vec<(i64, i64)> = known
        .iter()
        .filter(|(k, (j, _))| j.status != JobStatus::Gone && !seen.contains(k))
        .map(|(k, _)| *k)
        .collect();
    gone.sort_unstable();
    for key in &gone {
        if let Some((old, _)) = known.get(key) {
            changes.transitions.push(JobTransition {
                job_id: key.0,
                task_id: key.1,
                from: Some(old.status),
                to: JobStatus::Gone,
                at: now,
            });
        }
    }
    changes.gone = gone;
    changes
}

/// Applies committed changes to what is known.
pub fn apply_jobs(known: &mut KnownJobs, changes: JobChanges) {
    for key in &changes.gone {
        if let Some((job, _)) = known.get_mut(key) {
            job.status = JobStatus::Gone;
        }
    }
    for (job, first_seen) in changes.upserts {
        known.insert(job.key(), (job, first_seen));
    }
}

/// A job in a report: its row, what it has run and cost so far.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct JobView {
    #[serde(flatten)]
    pub row: JobRow,
    pub running_secs: Option<f64>,
    #[serde(serialize_with = "crate::money::opt_cents")]
    pub cost_so_far: Option<f64>,
}

/// The managed jobs the host database holds, how fresh they are, and their totals:
/// what `status --jobs`, the JSON API and the console show.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct JobsReport {
    pub generated_at: Timestamp,
    /// The last read of SkyPilot's job queue (None: never tried).
    pub feed: Option<crate::store::FeedState>,
    /// The last read failed, none succeeded yet, or the last success is older than
    /// three intervals.
    pub stale: bool,
    /// Jobs by status (every status, zero included).
    pub by_status: std::collections::BTreeMap<JobStatus, i64>,
    /// Jobs that hold a cluster now (STARTING, RUNNING, RECOVERING, ...).
    pub active: i64,
    /// Dollars per hour of the clusters active jobs run on, where priced.
    #[serde(serialize_with = "crate::money::price")]
    pub burn: f64,
    /// Jobs the query selects (all pages).
    pub total: usize,
    pub jobs: Vec<JobView>,
}

impl JobView {
    /// `row` as shown at `now`.
    pub fn at(row: JobRow, now: Timestamp) -> JobView {
        JobView {
            running_secs: row.job.running_secs(now),
            cost_so_far: row.cost_so_far(now),
            row,
        }
    }
}

/// One job's tasks as shown at `now`, and its status changes.
pub fn job_detail(
    store: &crate::store::Store,
    job_id: i64,
    now: Timestamp,
) -> crate::store::Result<(Vec<JobView>, Vec<JobTransition>)> {
    let tasks = store
        .jobs_by_id(job_id)?
        .into_iter()
        .map(|row| JobView::at(row, now))
        .collect();
    Ok((tasks, store.job_transitions(job_id)?))
}

/// The jobs `q` selects, with the totals of every job, at `now`. `interval_secs` is
/// the configured interval of the job queue (the stored effective one wins).
pub fn report(
    store: &crate::store::Store,
    q: &crate::store::JobQuery,
    now: Timestamp,
    interval_secs: u64,
) -> crate::store::Result<JobsReport> {
    let feed = store.feed(crate::store::Feed::Jobs)?;
    let stale = crate::store::feed_is_stale(feed.as_ref(), now, interval_secs);
    let mut by_status: std::collections::BTreeMap<JobStatus, i64> =
        JobStatus::ALL.iter().map(|s| (*s, 0)).collect();
    for c in store.job_counts()? {
        *by_status.entry(c.status).or_default() += c.jobs;
    }
    let active_rows = store.query_jobs(&crate::store::JobQuery {
        active: true,
        ..Default::default()
    })?;
    let running: Vec<&JobRow> = active_rows
        .iter()
        .filter(|r| r.job.status.is_active())
        .collect();
    let burn = running.iter().filter_map(|r| r.hourly_cost).sum();
    let total = store.count_jobs(q)?;
    let jobs = store
        .query_jobs(q)?
        .into_iter()
        .map(|row| JobView::at(row, now))
        .collect();
    Ok(JobsReport {
        generated_at: now,
        feed,
        stale,
        by_status,
        active: running.len() as i64,
        burn,
        total,
        jobs,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job(id: i64, status: &str) -> String {
        format!(
            r#"{{"job_id": {id}, "task_id": 0, "job_name": "train-{id}", "status": "{status}",
                "workspace": "default", "user_name": "alice", "user_hash": "6384e2b2",
                "pool": null, "resources": "1x[CPU:2]", "infra": "-", "cloud": "-",
                "region": "-", "recovery_count": 0, "current_cluster_name": null,
                "submitted_at": 1796540028.7, "start_at": null, "end_at": null,
                "failure_reason": null}}"#
        )
    }

    #[test]
    fn every_status_round_trips_and_only_failures_are_failed() {
        for s in JobStatus::ALL {
            assert_eq!(s.as_str().parse::<JobStatus>(), Ok(s));
        }
        assert!(JobStatus::FailedSetup.is_failed());
        assert!(!JobStatus::Cancelled.is_failed());
        assert!(JobStatus::Cancelled.is_terminal());
        assert!(!JobStatus::Recovering.is_terminal());
        let e = "LOST".parse::<JobStatus>().unwrap_err();
        assert!(
            e.contains("\"LOST\"") && e.contains("FAILED_CONTROLLER"),
            "{e}"
        );
    }

    #[test]
    fn a_queue_answer_parses_and_dashes_are_none() {
        let text = format!(r#"{{"jobs": [{}], "total": 1}}"#, job(7, "PENDING"));
        let jobs = parse_queue(&text).unwrap();
        assert_eq!(jobs.len(), 1);
        let j = &jobs[0];
        assert_eq!(
            (j.job_id, j.name.as_str(), j.status),
            (7, "train-7", JobStatus::Pending)
        );
        assert_eq!((j.cloud.clone(), j.infra.clone()), (None, None));
        assert_eq!(j.started_at, None);
        assert_eq!(j.owner(), "alice");
    }

    #[test]
    fn bad_answers_name_the_record() {
        let e = parse_queue("[]").unwrap_err();
        assert!(e.contains("{\"jobs\""), "{e}");
        let e = parse_queue(&format!(r#"{{"jobs": [{}]}}"#, job(3, "LOST"))).unwrap_err();
        assert!(
            e.starts_with("jobs[0] (job 3): unknown managed job status"),
            "{e}"
        );
        let e = parse_queue(r#"{"jobs": [{"status": "RUNNING"}]}"#).unwrap_err();
        assert_eq!(e, "jobs[0]: no job_id");
    }

    #[test]
    fn diff_records_new_changed_and_gone_jobs_once() {
        let t0 = Timestamp::from_secs(1000);
        let t1 = Timestamp::from_secs(1060);
        let parse = |s: &str| parse_queue(&format!(r#"{{"jobs": [{s}]}}"#)).unwrap();
        let first = parse(&format!("{},{}", job(1, "PENDING"), job(2, "RUNNING")));
        let mut known = KnownJobs::new();
        let c = diff_jobs(&known, first.clone(), t0);
        assert_eq!(c.upserts.len(), 2);
        assert_eq!(c.transitions.len(), 2);
        apply_jobs(&mut known, c);
        // The same answer changes nothing.
        assert!(diff_jobs(&known, first, t1).is_empty());
        // Job 1 moves on, job 2 disappears.
        let c = diff_jobs(&known, parse(&job(1, "RUNNING")), t1);
        assert_eq!(c.gone, vec![(2, 0)]);
        assert_eq!(c.upserts[0].1, t0, "first seen is kept");
        let tos: Vec<_> = c
            .transitions
            .iter()
            .map(|t| (t.job_id, t.from, t.to))
            .collect();
        assert_eq!(
            tos,
            vec![
                (1, Some(JobStatus::Pending), JobStatus::Running),
                (2, Some(JobStatus::Running), JobStatus::Gone)
            ]
        );
        apply_jobs(&mut known, c);
        // A GONE job is not gone again.
        assert!(diff_jobs(&known, parse(&job(1, "RUNNING")), t1).is_empty());
    }

    #[test]
    fn cost_so_far_is_the_clusters_price_times_the_time_run() {
        let mut j = parse_queue(&format!(r#"{{"jobs": [{}]}}"#, job(1, "RUNNING")))
            .unwrap()
            .remove(0);
        j.started_at = Some(Timestamp::from_secs(0));
        let row = JobRow {
            job: j,
            first_seen: Timestamp::from_secs(0),
            last_changed: Timestamp::from_secs(0),
            gone_at: None,
            hourly_cost: Some(2.0),
        };
        assert_eq!(row.cost_so_far(Timestamp::from_secs(1800)), Some(1.0));
        let unpriced = JobRow {
            hourly_cost: None,
            ..row
        };
        assert_eq!(unpriced.cost_so_far(Timestamp::from_secs(1800)), None);
    }
}
