//! The `poll_runs` and `api_server` tables: what each poll did and the last health probe.

use rusqlite::types::{FromSql, FromSqlError, FromSqlResult, ToSql, ToSqlOutput, ValueRef};
use rusqlite::{named_params, Connection, OptionalExtension, Row};

use super::{sql_count, At, Result, Store};
use crate::load_budget::{CpuSource, PollLoad};
use crate::skypilot::RefreshMode;
use crate::time::Timestamp;

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum PollOutcome {
    Ok,
    Error,
}

impl PollOutcome {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            PollOutcome::Ok => "ok",
            PollOutcome::Error => "error",
        }
    }
}

#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct PollRun {
    pub id: i64,
    pub started_at: Timestamp,
    pub finished_at: Timestamp,
    pub refresh: RefreshMode,
    pub outcome: PollOutcome,
    /// A short, bounded kind (`connect`, `timeout`, `http_500`, `malformed`, or
    /// SkyPilot's error type) for metrics; `error` has the full text.
    pub error_kind: Option<String>,
    pub error: Option<String>,
    pub clusters: Option<i64>,
    pub changes: Option<i64>,
}

#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct ApiServerHealth {
    pub checked_at: Timestamp,
    pub healthy: bool,
    pub version: Option<String>,
    pub api_version: Option<String>,
    pub commit: Option<String>,
    pub latency_ms: Option<f64>,
    pub error: Option<String>,
}

impl ToSql for RefreshMode {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        Ok(ToSqlOutput::from(self.as_str()))
    }
}

impl FromSql for RefreshMode {
    fn column_result(value: ValueRef<'_>) -> FromSqlResult<Self> {
        value
            .as_str()?
            .parse()
            .map_err(|m: String| FromSqlError::Other(m.into()))
    }
}

impl ToSql for PollOutcome {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        Ok(ToSqlOutput::from(self.as_str()))
    }
}

impl FromSql for PollOutcome {
    fn column_result(value: ValueRef<'_>) -> FromSqlResult<Self> {
        match value.as_str()? {
            "ok" => Ok(PollOutcome::Ok),
            "error" => Ok(PollOutcome::Error),
            other => Err(FromSqlError::Other(
                format!("unknown poll outcome {other:?}: expected ok or error").into(),
            )),
        }
    }
}

const POLL_COLUMNS: &str =
    "id, started_at, finished_at, refresh, outcome, error_kind, error, clusters, changes";

/// When the last successful poll finished, as a whole second (the resolution of the
/// cluster tables).
pub(super) fn last_ok_second(conn: &Connection) -> rusqlite::Result<Option<Timestamp>> {
    conn.prepare_cached(
        "SELECT finished_at FROM poll_runs WHERE outcome = 'ok' ORDER BY id DESC LIMIT 1",
    )?
    .query_row([], |r| r.get::<_, Timestamp>(0))
    .optional()
    .map(|t| t.map(Timestamp::floor))
}

pub(super) fn insert_poll(conn: &Connection, run: &PollRun) -> rusqlite::Result<()> {
    conn.prepare_cached(
        "INSERT INTO poll_runs (started_at, finished_at, refresh, outcome, error_kind, error, clusters, changes)
         VALUES (:started_at, :finished_at, :refresh, :outcome, :error_kind, :error, :clusters, :changes)",
    )?
    .execute(named_params! {
        ":started_at": run.started_at,
        ":finished_at": run.finished_at,
        ":refresh": run.refresh,
        ":outcome": run.outcome,
        ":error_kind": run.error_kind,
        ":error": run.error,
        ":clusters": run.clusters,
        ":changes": run.changes,
    })?;
    Ok(())
}

fn read_poll(r: &Row<'_>) -> rusqlite::Result<PollRun> {
    Ok(PollRun {
        id: r.get("id")?,
        started_at: r.get("started_at")?,
        finished_at: r.get("finished_at")?,
        refresh: r.get("refresh")?,
        outcome: r.get("outcome")?,
        error_kind: r.get("error_kind")?,
        error: r.get("error")?,
        clusters: r.get("clusters")?,
        changes: r.get("changes")?,
    })
}

impl Store {
    /// Records a poll that failed; cluster state is left as it was.
    pub fn record_poll_failure(&mut self, run: &PollRun) -> Result<()> {
        insert_poll(&self.conn, run).at(&self.path)
    }

    pub(crate) fn last_poll(&self) -> Result<Option<PollRun>> {
        self.one_poll(&format!(
            "SELECT {POLL_COLUMNS} FROM poll_runs ORDER BY id DESC LIMIT 1"
        ))
    }

    pub fn last_ok_poll(&self) -> Result<Option<PollRun>> {
        self.one_poll(&format!(
            "SELECT {POLL_COLUMNS} FROM poll_runs WHERE outcome = 'ok' ORDER BY id DESC LIMIT 1"
        ))
    }

    fn one_poll(&self, sql: &str) -> Result<Option<PollRun>> {
        self.conn
            .prepare_cached(sql)
            .and_then(|mut s| s.query_row([], read_poll).optional())
            .at(&self.path)
    }

    /// The most recent polls, newest first.
    pub fn recent_polls(&self, limit: usize) -> Result<Vec<PollRun>> {
        let sql = format!("SELECT {POLL_COLUMNS} FROM poll_runs ORDER BY id DESC LIMIT :limit");
        let mut stmt = self.conn.prepare_cached(&sql).at(&self.path)?;
        let limit = sql_count(limit);
        let rows = stmt
            .query_map(named_params! {":limit": limit}, read_poll)
            .at(&self.path)?;
        rows.collect::<rusqlite::Result<_>>().at(&self.path)
    }

    /// Counts of failed polls by error kind since the database was created.
    pub(crate) fn poll_errors_by_kind(&self) -> Result<Vec<(String, i64)>> {
        let mut stmt = self
            .conn
            .prepare_cached(
                "SELECT COALESCE(error_kind, 'unknown') AS kind, COUNT(*) AS n FROM poll_runs WHERE outcome = 'error' GROUP BY 1 ORDER BY 1",
            )
            .at(&self.path)?;
        let rows = stmt
            .query_map([], |r| Ok((r.get("kind")?, r.get("n")?)))
            .at(&self.path)?;
        rows.collect::<rusqlite::Result<_>>().at(&self.path)
    }

    /// Deletes poll runs and transitions older than `before`; returns how many of each.
    pub(crate) fn prune_history(&self, before: Timestamp) -> Result<(usize, usize)> {
        let polls = self
            .conn
            .execute(
                "DELETE FROM poll_runs WHERE finished_at < :before",
                named_params! {":before": before},
            )
            .at(&self.path)?;
        let transitions = self
            .conn
            .execute(
                "DELETE FROM transitions WHERE at < :before",
                named_params! {":before": before.floor()},
            )
            .at(&self.path)?;
        self.conn
            .execute(
                "DELETE FROM fleet_samples WHERE at < :before",
                named_params! {":before": before},
            )
            .at(&self.path)?;
        Ok((polls, transitions))
    }

    pub fn set_api_server_health(&self, h: &ApiServerHealth) -> Result<()> {
        self.conn
            .prepare_cached(
                "INSERT INTO api_server (id, checked_at, healthy, version, api_version, commit_hash, latency_ms, error)
                 VALUES (1, :checked_at, :healthy, :version, :api_version, :commit_hash, :latency_ms, :error)
                 ON CONFLICT(id) DO UPDATE SET checked_at = excluded.checked_at, healthy = excluded.healthy,
                   version = excluded.version, api_version = excluded.api_version, commit_hash = excluded.commit_hash,
                   latency_ms = excluded.latency_ms, error = excluded.error",
            )
            .and_then(|mut s| {
                s.execute(named_params! {
                    ":checked_at": h.checked_at,
                    ":healthy": h.healthy,
                    ":version": h.version,
                    ":api_version": h.api_version,
                    ":commit_hash": h.commit,
                    ":latency_ms": h.latency_ms,
                    ":error": h.error,
                })
            })
            .at(&self.path)?;
        Ok(())
    }

    /// Records the cluster manager's load on the API server and the interval it chose.
    pub fn set_poll_load(&self, l: &PollLoad) -> Result<()> {
        self.conn
            .prepare_cached(
                "INSERT INTO poll_load (id, measured_at, status_secs, cpu_secs, cpu_source, interval_secs, share, budget)
                 VALUES (1, :measured_at, :status_secs, :cpu_secs, :cpu_source, :interval_secs, :share, :budget)
                 ON CONFLICT(id) DO UPDATE SET measured_at = excluded.measured_at,
                   status_secs = excluded.status_secs, cpu_secs = excluded.cpu_secs,
                   cpu_source = excluded.cpu_source, interval_secs = excluded.interval_secs,
                   share = excluded.share, budget = excluded.budget",
            )
            .and_then(|mut s| {
                s.execute(named_params! {
                    ":measured_at": l.measured_at,
                    ":status_secs": l.status_secs,
                    ":cpu_secs": l.cpu_secs,
                    ":cpu_source": l.cpu_source.as_str(),
                    ":interval_secs": l.interval_secs,
                    ":share": l.share,
                    ":budget": l.budget,
                })
            })
            .at(&self.path)?;
        Ok(())
    }

    /// The cluster manager's last recorded load (`None` before its first measured poll).
    pub(crate) fn poll_load(&self) -> Result<Option<PollLoad>> {
        self.conn
            .prepare_cached("SELECT * FROM poll_load WHERE id = 1")
            .and_then(|mut s| {
                s.query_row([], |r| {
                    let status_secs: f64 = r.get("status_secs")?;
                    // Rows from before migration 8 counted twice the wall time.
                    let source: Option<String> = r.get("cpu_source")?;
                    let cpu_source = source
                        .as_deref()
                        .and_then(CpuSource::parse)
                        .unwrap_or(CpuSource::WallTime);
                    let cpu_secs: Option<f64> = r.get("cpu_secs")?;
                    Ok(PollLoad {
                        measured_at: r.get("measured_at")?,
                        status_secs,
                        cpu_secs: cpu_secs
                            .unwrap_or(crate::load_budget::CPU_PER_WALL * status_secs),
                        cpu_source,
                        interval_secs: r.get("interval_secs")?,
                        share: r.get("share")?,
                        budget: r.get("budget")?,
                    })
                })
                .optional()
            })
            .at(&self.path)
    }

    pub(crate) fn api_server_health(&self) -> Result<Option<ApiServerHealth>> {
        self.conn
            .prepare_cached("SELECT * FROM api_server WHERE id = 1")
            .and_then(|mut s| {
                s.query_row([], |r| {
                    Ok(ApiServerHealth {
                        checked_at: r.get("checked_at")?,
                        healthy: r.get("healthy")?,
                        version: r.get("version")?,
                        api_version: r.get("api_version")?,
                        commit: r.get("commit_hash")?,
                        latency_ms: r.get("latency_ms")?,
                        error: r.get("error")?,
                    })
                })
                .optional()
            })
            .at(&self.path)
    }
}
