//! The `managed_jobs`, `job_transitions` and `feeds` tables: the cluster manager's
//! writes of SkyPilot's job queue and the readers' typed queries.

use std::fmt::Write as _;

use rusqlite::types::{FromSql, FromSqlError, FromSqlResult, ToSql, ToSqlOutput, ValueRef};
use rusqlite::{named_params, OptionalExtension, Row};

use super::{At, Result, Store, StoreError};
use crate::jobs::{JobChanges, JobRow, JobStatus, JobTransition, KnownJobs, ManagedJob};
use crate::time::Timestamp;

impl ToSql for JobStatus {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        Ok(ToSqlOutput::from(self.as_str()))
    }
}

impl FromSql for JobStatus {
    fn column_result(value: ValueRef<'_>) -> FromSqlResult<Self> {
        value
            .as_str()?
            .parse()
            .map_err(|e: String| FromSqlError::Other(e.into()))
    }
}

/// A feed the cluster manager polls besides `/status`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Feed {
    Jobs,
    Services,
}

impl Feed {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Feed::Jobs => "jobs",
            Feed::Services => "services",
        }
    }
}

/// `error_kind` of a read that found no controller up (SkyPilot's ClusterNotUpError):
/// nothing to read, not a failure.
pub const NO_CONTROLLER: &str = "no_controller";

/// The last attempt to read a feed.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct FeedState {
    pub attempted_at: Timestamp,
    /// The last successful read.
    pub ok_at: Option<Timestamp>,
    /// Records in the last successful read.
    pub records: Option<i64>,
    /// How long the last attempt took.
    pub seconds: Option<f64>,
    /// The interval the feed is read at now (stretched to keep within the load budget).
    pub interval_secs: Option<f64>,
    /// The last attempt's error; None when it succeeded.
    pub error_kind: Option<String>,
    pub error: Option<String>,
}

impl FeedState {
    /// The last attempt failed (a missing controller is not a failure).
    pub fn failed(&self) -> bool {
        self.error.is_some() && self.error_kind.as_deref() != Some(NO_CONTROLLER)
    }
}

/// Whether a feed's data is stale at `now`: never read, the last read failed, or the
/// last success is older than three intervals (`interval_secs` configured; the stored
/// effective one wins).
pub fn feed_is_stale(feed: Option<&FeedState>, now: Timestamp, interval_secs: u64) -> bool {
    let interval = feed
        .and_then(|f| f.interval_secs)
        .unwrap_or(interval_secs as f64)
        .max(1.0);
    feed.is_none_or(|f| {
        f.failed()
            || f.ok_at
                .is_none_or(|ok| now.age_since(ok) > crate::fleet::stale_after_secs(interval))
    })
}

/// Which jobs a reader wants.
#[derive(Debug, Clone, Default)]
pub struct JobQuery {
    /// Only these statuses (any when empty).
    pub statuses: Vec<JobStatus>,
    /// Only jobs that have not ended (neither terminal nor GONE).
    pub active: bool,
    /// Owner: the user's name or SkyPilot's user id.
    pub user: Option<String>,
    pub name_contains: Option<String>,
    pub limit: Option<usize>,
    pub offset: usize,
}

/// Jobs by status and owner (the monitor's gauges).
#[derive(Debug, Clone, PartialEq)]
pub struct JobCount {
    pub status: JobStatus,
    pub user: String,
    pub jobs: i64,
}

const COLUMNS: &str = "j.job_id, j.task_id, j.name, j.status, j.workspace, j.user_name, j.user_hash, j.pool, j.resources, j.infra, j.cloud, j.region, j.recovery_count, j.cluster, j.submitted_at, j.started_at, j.ended_at, j.failure_reason, j.first_seen, j.last_changed, j.gone_at, c.hourly_cost";

/// The job's cluster, priced, while it is UP.
const FROM: &str = "managed_jobs j LEFT JOIN clusters c ON c.name = j.cluster AND c.status = 'UP'";

const TERMINAL: &str = "('SUCCEEDED', 'CANCELLED', 'FAILED', 'FAILED_SETUP', 'FAILED_PRECHECKS', 'FAILED_NO_RESOURCE', 'FAILED_CONTROLLER', 'GONE')";

type Args = Vec<(String, Box<dyn ToSql>)>;

fn filter_sql(select: &str, q: &JobQuery) -> (String, Args) {
    let mut sql = format!("SELECT {select} FROM {FROM} WHERE 1 = 1");
    let mut args: Args = Vec::new();
    if !q.statuses.is_empty() {
        let names: Vec<String> = (0..q.statuses.len()).map(|i| format!(":s{i}")).collect();
        let _ = write!(sql, " AND j.status IN ({})", names.join(", "));
        for (n, s) in names.into_iter().zip(&q.statuses) {
            args.push((n, Box::new(*s)));
        }
    }
    if q.active {
        let _ = write!(sql, " AND j.status NOT IN {TERMINAL}");
    }
    if let Some(u) = &q.user {
        sql.push_str(" AND coalesce(j.user_name, j.user_hash) = :user");
        args.push((":user".into(), Box::new(u.clone())));
    }
    if let Some(n) = &q.name_contains {
        sql.push_str(" AND instr(lower(j.name), lower(:name_part)) > 0");
        args.push((":name_part".into(), Box::new(n.clone())));
    }
    (sql, args)
}

fn read_job(r: &Row<'_>) -> rusqlite::Result<JobRow> {
    Ok(JobRow {
        job: ManagedJob {
            job_id: r.get(0)?,
            task_id: r.get(1)?,
            name: r.get(2)?,
            status: r.get(3)?,
            workspace: r.get(4)?,
            user_name: r.get(5)?,
            user_hash: r.get(6)?,
            pool: r.get(7)?,
            resources: r.get(8)?,
            infra: r.get(9)?,
            cloud: r.get(10)?,
            region: r.get(11)?,
            recovery_count: r.get(12)?,
            cluster: r.get(13)?,
            submitted_at: r.get(14)?,
            started_at: r.get(15)?,
            ended_at: r.get(16)?,
            failure_reason: r.get(17)?,
        },
        first_seen: r.get(18)?,
        last_changed: r.get(19)?,
        gone_at: r.get(20)?,
        hourly_cost: r.get(21)?,
    })
}

fn bad_row(path: &std::path::Path, e: rusqlite::Error) -> StoreError {
    bad_row_in(path, "managed_jobs", "a job", e)
}

/// A row of `table` that does not parse (`what`: the row, in words), or another SQLite
/// error.
pub(super) fn bad_row_in(
    path: &std::path::Path,
    table: &'static str,
    what: &str,
    e: rusqlite::Error,
) -> StoreError {
    match e {
        rusqlite::Error::FromSqlConversionFailure(_, _, inner) => StoreError::BadRow {
            path: path.to_path_buf(),
            table,
            row: what.into(),
            message: inner.to_string(),
        },
        cause => StoreError::Sqlite {
            path: path.to_path_buf(),
            cause,
        },
    }
}

/// Records an attempt to read `feed` within `tx` (what a commit of its records ends with).
pub(super) fn write_feed_in(
    tx: &rusqlite::Transaction<'_>,
    path: &std::path::Path,
    feed: Feed,
    state: &FeedState,
) -> Result<()> {
    write_feed(tx, feed, state).at(path)
}

impl Store {
    /// The jobs a query selects, newest job first.
    pub fn query_jobs(&self, q: &JobQuery) -> Result<Vec<JobRow>> {
        let (mut sql, args) = filter_sql(COLUMNS, q);
        sql.push_str(" ORDER BY j.job_id DESC, j.task_id");
        if let Some(limit) = q.limit {
            let _ = write!(sql, " LIMIT {limit} OFFSET {}", q.offset);
        }
        let mut stmt = self.conn.prepare(&sql).at(&self.path)?;
        let params: Vec<(&str, &dyn ToSql)> =
            args.iter().map(|(n, v)| (n.as_str(), v.as_ref())).collect();
        let rows = stmt
            .query_map(&params[..], read_job)
            .at(&self.path)?
            .collect::<rusqlite::Result<Vec<_>>>()
            .map_err(|e| bad_row(&self.path, e))?;
        Ok(rows)
    }

    /// How many jobs a query selects (its limit and offset aside).
    pub fn count_jobs(&self, q: &JobQuery) -> Result<usize> {
        let (sql, args) = filter_sql("count(*)", q);
        let params: Vec<(&str, &dyn ToSql)> =
            args.iter().map(|(n, v)| (n.as_str(), v.as_ref())).collect();
        let n: i64 = self
            .conn
            .prepare(&sql)
            .at(&self.path)?
            .query_row(&params[..], |r| r.get(0))
            .at(&self.path)?;
        Ok(usize::try_from(n).unwrap_or(0))
    }

    /// The tasks of one job.
    pub fn jobs_by_id(&self, job_id: i64) -> Result<Vec<JobRow>> {
        let sql = format!("SELECT {COLUMNS} FROM {FROM} WHERE j.job_id = ?1 ORDER BY j.task_id");
        let mut stmt = self.conn.prepare_cached(&sql).at(&self.path)?;
        let rows = stmt
            .query_map([job_id], read_job)
            .at(&self.path)?
            .collect::<rusqlite::Result<Vec<_>>>()
            .map_err(|e| bad_row(&self.path, e))?;
        Ok(rows)
    }

    /// Every job, gone ones included.
    pub fn jobs(&self) -> Result<Vec<JobRow>> {
        self.query_jobs(&JobQuery::default())
    }

    /// What the cluster manager knows at start: every job with when it was first seen.
    pub(crate) fn known_jobs(&self) -> Result<KnownJobs> {
        Ok(self
            .jobs()?
            .into_iter()
            .map(|r| (r.job.key(), (r.job, r.first_seen)))
            .collect())
    }

    /// Jobs by status and owner.
    pub fn job_counts(&self) -> Result<Vec<JobCount>> {
        let mut stmt = self
            .conn
            .prepare_cached(
                "SELECT status, coalesce(user_name, user_hash, '-'), count(*) FROM managed_jobs GROUP BY 1, 2 ORDER BY 1, 2",
            )
            .at(&self.path)?;
        let rows = stmt
            .query_map([], |r| {
                Ok(JobCount {
                    status: r.get(0)?,
                    user: r.get(1)?,
                    jobs: r.get(2)?,
                })
            })
            .at(&self.path)?
            .collect::<rusqlite::Result<Vec<_>>>()
            .map_err(|e| bad_row(&self.path, e))?;
        Ok(rows)
    }

    /// Jobs that ended with a failure (FAILED*, also when since gone), by owner.
    pub fn failed_jobs_by_user(&self) -> Result<Vec<(String, i64)>> {
        let mut stmt = self
            .conn
            .prepare_cached(
                "SELECT coalesce(user_name, user_hash, '-'), count(*) FROM managed_jobs WHERE coalesce(last_status, status) LIKE 'FAILED%' GROUP BY 1 ORDER BY 1",
            )
            .at(&self.path)?;
        let rows = stmt
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
            .at(&self.path)?
            .collect::<rusqlite::Result<Vec<_>>>()
            .at(&self.path)?;
        Ok(rows)
    }

    /// A job's status changes, oldest first.
    pub fn job_transitions(&self, job_id: i64) -> Result<Vec<JobTransition>> {
        let mut stmt = self
            .conn
            .prepare_cached(
                "SELECT job_id, task_id, from_status, to_status, at FROM job_transitions WHERE job_id = ?1 ORDER BY at, id",
            )
            .at(&self.path)?;
        let rows = stmt
            .query_map([job_id], |r| {
                Ok(JobTransition {
                    job_id: r.get(0)?,
                    task_id: r.get(1)?,
                    from: r.get(2)?,
                    to: r.get(3)?,
                    at: r.get(4)?,
                })
            })
            .at(&self.path)?
            .collect::<rusqlite::Result<Vec<_>>>()
            .map_err(|e| bad_row(&self.path, e))?;
        Ok(rows)
    }

    /// Applies one successful read of the job queue and records it, in one transaction.
    pub fn commit_jobs(&mut self, changes: &JobChanges, feed: &FeedState) -> Result<()> {
        let path = self.path.clone();
        let tx = self.conn.transaction().at(&path)?;
        if !changes.upserts.is_empty() {
            let mut up = tx
                .prepare_cached(
                    "INSERT INTO managed_jobs (job_id, task_id, name, status, last_status, workspace, user_name, user_hash, pool, resources, infra, cloud, region, recovery_count, cluster, submitted_at, started_at, ended_at, failure_reason, first_seen, last_changed, gone_at)
                     VALUES (:job_id, :task_id, :name, :status, NULL, :workspace, :user_name, :user_hash, :pool, :resources, :infra, :cloud, :region, :recovery_count, :cluster, :submitted_at, :started_at, :ended_at, :failure_reason, :first_seen, :now, NULL)
                     ON CONFLICT (job_id, task_id) DO UPDATE SET name = excluded.name, status = excluded.status, last_status = NULL, workspace = excluded.workspace, user_name = excluded.user_name, user_hash = excluded.user_hash, pool = excluded.pool, resources = excluded.resources, infra = excluded.infra, cloud = excluded.cloud, region = excluded.region, recovery_count = excluded.recovery_count, cluster = excluded.cluster, submitted_at = excluded.submitted_at, started_at = excluded.started_at, ended_at = excluded.ended_at, failure_reason = excluded.failure_reason, last_changed = excluded.last_changed, gone_at = NULL",
                )
                .at(&path)?;
            for (j, first_seen) in &changes.upserts {
                up.execute(named_params! {
                    ":job_id": j.job_id, ":task_id": j.task_id, ":name": j.name,
                    ":status": j.status, ":workspace": j.workspace,
                    ":user_name": j.user_name, ":user_hash": j.user_hash, ":pool": j.pool,
                    ":resources": j.resources, ":infra": j.infra, ":cloud": j.cloud,
                    ":region": j.region, ":recovery_count": j.recovery_count,
                    ":cluster": j.cluster, ":submitted_at": j.submitted_at,
                    ":started_at": j.started_at, ":ended_at": j.ended_at,
                    ":failure_reason": j.failure_reason, ":first_seen": first_seen,
                    ":now": feed.attempted_at,
                })
                .at(&path)?;
            }
        }
        if !changes.gone.is_empty() {
            let mut gone = tx
                .prepare_cached(
                    "UPDATE managed_jobs SET last_status = status, status = 'GONE', gone_at = :at, last_changed = :at WHERE job_id = :job_id AND task_id = :task_id AND status <> 'GONE'",
                )
                .at(&path)?;
            for (job_id, task_id) in &changes.gone {
                gone.execute(named_params! {":at": feed.attempted_at, ":job_id": job_id, ":task_id": task_id})
                    .at(&path)?;
            }
        }
        if !changes.transitions.is_empty() {
            let mut tr = tx
                .prepare_cached(
                    "INSERT INTO job_transitions (job_id, task_id, from_status, to_status, at) VALUES (?1, ?2, ?3, ?4, ?5)",
                )
                .at(&path)?;
            for t in &changes.transitions {
                tr.execute(rusqlite::params![t.job_id, t.task_id, t.from, t.to, t.at])
                    .at(&path)?;
            }
        }
        write_feed(&tx, Feed::Jobs, feed).at(&path)?;
        tx.commit().at(&path)
    }

    /// Records an attempt to read `feed` (a failed one keeps the last success's time
    /// and count).
    pub fn record_feed(&self, feed: Feed, state: &FeedState) -> Result<()> {
        write_feed(&self.conn, feed, state).at(&self.path)
    }

    /// The last attempt to read `feed`, if any.
    pub fn feed(&self, feed: Feed) -> Result<Option<FeedState>> {
        self.conn
            .prepare_cached(
                "SELECT attempted_at, ok_at, records, seconds, interval_secs, error_kind, error FROM feeds WHERE name = ?1",
            )
            .at(&self.path)?
            .query_row([feed.as_str()], |r| {
                Ok(FeedState {
                    attempted_at: r.get(0)?,
                    ok_at: r.get(1)?,
                    records: r.get(2)?,
                    seconds: r.get(3)?,
                    interval_secs: r.get(4)?,
                    error_kind: r.get(5)?,
                    error: r.get(6)?,
                })
            })
            .optional()
            .at(&self.path)
    }
}

/// Upserts a feed's row; a failed attempt (no `ok_at`) keeps the last success.
fn write_feed(conn: &rusqlite::Connection, feed: Feed, s: &FeedState) -> rusqlite::Result<()> {
    conn.prepare_cached(
        "INSERT INTO feeds (name, attempted_at, ok_at, records, seconds, interval_secs, error_kind, error)
         VALUES (:name, :attempted_at, :ok_at, :records, :seconds, :interval_secs, :error_kind, :error)
         ON CONFLICT (name) DO UPDATE SET attempted_at = excluded.attempted_at,
           ok_at = coalesce(excluded.ok_at, feeds.ok_at),
           records = coalesce(excluded.records, feeds.records),
           seconds = excluded.seconds,
           interval_secs = coalesce(excluded.interval_secs, feeds.interval_secs), error_kind = excluded.error_kind, error = excluded.error",
    )?
    .execute(named_params! {
        ":name": feed.as_str(), ":attempted_at": s.attempted_at, ":ok_at": s.ok_at,
        ":records": s.records, ":seconds": s.seconds, ":interval_secs": s.interval_secs,
        ":error_kind": s.error_kind,
        ":error": s.error,
    })
    .map(|_| ())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::jobs::{apply_jobs, diff_jobs, parse_queue};

    fn store() -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(&dir.path().join("host.db")).unwrap();
        (dir, s)
    }

    fn queue(jobs: &[(i64, &str, &str)]) -> Vec<ManagedJob> {
        let items: Vec<String> = jobs
            .iter()
            .map(|(id, status, user)| {
                format!(
                    r#"{{"job_id": {id}, "task_id": 0, "job_name": "j{id}", "status": "{status}", "user_name": "{user}", "start_at": 100.0, "current_cluster_name": "c{id}"}}"#
                )
            })
            .collect();
        parse_queue(&format!(r#"{{"jobs": [{}]}}"#, items.join(","))).unwrap()
    }

    fn ok(at: i64, n: i64) -> FeedState {
        FeedState {
            attempted_at: Timestamp::from_secs(at),
            ok_at: Some(Timestamp::from_secs(at)),
            records: Some(n),
            seconds: Some(0.1),
            interval_secs: Some(60.0),
            error_kind: None,
            error: None,
        }
    }

    #[test]
    fn jobs_round_trip_and_gone_jobs_keep_their_last_status() {
        let (_d, mut s) = store();
        let mut known = KnownJobs::new();
        let first = queue(&[(1, "RUNNING", "alice"), (2, "FAILED", "bob")]);
        let c = diff_jobs(&known, first.clone(), Timestamp::from_secs(10));
        s.commit_jobs(&c, &ok(10, 2)).unwrap();
        apply_jobs(&mut known, c);
        assert_eq!(s.known_jobs().unwrap(), known);
        let rows = s.jobs().unwrap();
        assert_eq!(
            rows.iter().map(|r| r.job.job_id).collect::<Vec<_>>(),
            vec![2, 1]
        );
        assert_eq!(rows[1].job, first[0]);

        // Job 2 disappears: GONE, still counted as failed.
        let c = diff_jobs(
            &known,
            queue(&[(1, "RUNNING", "alice")]),
            Timestamp::from_secs(20),
        );
        s.commit_jobs(&c, &ok(20, 1)).unwrap();
        let gone = s
            .query_jobs(&JobQuery {
                statuses: vec![JobStatus::Gone],
                ..JobQuery::default()
            })
            .unwrap();
        assert_eq!(gone.len(), 1);
        assert_eq!(gone[0].gone_at, Some(Timestamp::from_secs(20)));
        assert_eq!(
            s.failed_jobs_by_user().unwrap(),
            vec![("bob".to_string(), 1)]
        );
        let t = s.job_transitions(2).unwrap();
        assert_eq!(
            t.iter().map(|t| (t.from, t.to)).collect::<Vec<_>>(),
            vec![
                (None, JobStatus::Failed),
                (Some(JobStatus::Failed), JobStatus::Gone)
            ]
        );
        let active = s
            .query_jobs(&JobQuery {
                active: true,
                ..JobQuery::default()
            })
            .unwrap();
        assert_eq!(active.len(), 1);
        assert_eq!(active[0].job.job_id, 1);
    }

    #[test]
    fn a_failed_read_keeps_the_last_success() {
        let (_d, mut s) = store();
        s.commit_jobs(&JobChanges::default(), &ok(10, 5)).unwrap();
        let failed = FeedState {
            attempted_at: Timestamp::from_secs(20),
            ok_at: None,
            records: None,
            seconds: Some(1.0),
            interval_secs: None,
            error_kind: Some("http".into()),
            error: Some("HTTP 500".into()),
        };
        s.record_feed(Feed::Jobs, &failed).unwrap();
        let f = s.feed(Feed::Jobs).unwrap().unwrap();
        assert_eq!(f.ok_at, Some(Timestamp::from_secs(10)));
        assert_eq!(f.records, Some(5));
        assert_eq!(f.error.as_deref(), Some("HTTP 500"));
        assert_eq!(s.feed(Feed::Services).unwrap(), None);
    }
}
