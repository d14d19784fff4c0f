//! The host database: SQLite in WAL mode, versioned migrations.
//!
//! Tables: `clusters` (state as last seen, written only by the cluster manager),
//! `transitions`, `poll_runs`, `api_server` (the last health probe) and `audit`
//! (actions of later roles). Times are Unix seconds: INTEGER for cluster times
//! (SkyPilot's own resolution), REAL where sub-second matters.
//!
//! To keep a no-change poll free of cluster writes, a present cluster's `last_seen`
//! is only written when the row changes; readers take the newer of it and the last
//! successful poll (see [`Store::clusters`]).

use std::path::{Path, PathBuf};
use std::time::Duration;

use rusqlite::{params, Connection, OpenFlags, OptionalExtension, Row};

use crate::cluster::{Cluster, ClusterStatus};

mod migrations;
pub mod scrape;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("host database {path}: {source}")]
    Sqlite {
        path: PathBuf,
        #[source]
        source: rusqlite::Error,
    },
    #[error("host database {path}: cannot create its directory: {source}")]
    Dir {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("host database {path}: schema version {found} is newer than this skypilot-host knows ({known}); upgrade skypilot-host")]
    TooNew {
        path: PathBuf,
        found: i64,
        known: i64,
    },
    #[error("host database {path}: schema version {found} is older than this skypilot-host's ({known}); start the cluster manager once to migrate it")]
    TooOld {
        path: PathBuf,
        found: i64,
        known: i64,
    },
    #[error("host database {path}: table {table}, row {row}: {message}")]
    BadRow {
        path: PathBuf,
        table: &'static str,
        row: String,
        message: String,
    },
}

pub type Result<T> = std::result::Result<T, StoreError>;

/// A cluster row: SkyPilot's record plus what the host knows of its history.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct ClusterRow {
    #[serde(flatten)]
    pub cluster: Cluster,
    /// Price per hour of the whole cluster (all nodes), in dollars, when known.
    pub hourly_cost: Option<f64>,
    /// Accrued cost from SkyPilot's cost report, in dollars, when known.
    pub total_cost: Option<f64>,
    pub first_seen: i64,
    pub last_seen: i64,
    pub last_changed: i64,
    pub gone_at: Option<i64>,
}

#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Transition {
    pub cluster: String,
    pub from: Option<ClusterStatus>,
    pub to: ClusterStatus,
    pub at: i64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum PollOutcome {
    Ok,
    Error,
}

#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct PollRun {
    pub id: i64,
    pub started_at: f64,
    pub finished_at: f64,
    /// NONE, AUTO or FORCE.
    pub refresh: String,
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
    pub checked_at: f64,
    pub healthy: bool,
    pub version: Option<String>,
    pub api_version: Option<String>,
    pub commit: Option<String>,
    pub latency_ms: Option<f64>,
    pub error: Option<String>,
}

#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct AuditEntry {
    pub at: f64,
    /// The role or person that acted (`autostop`, `web-ui:alice`, …).
    pub actor: String,
    /// `autostop`, `stop`, `down`, `login`, …
    pub action: String,
    pub cluster: Option<String>,
    /// `ok`, `error`, `dry_run`, …
    pub outcome: String,
    pub detail: Option<String>,
}

/// A write the cluster manager makes after one successful poll.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ClusterChanges {
    /// New or changed clusters (full rows to upsert).
    pub upserts: Vec<ClusterRow>,
    /// Clusters that vanished: name -> when.
    pub gone: Vec<(String, i64)>,
    pub transitions: Vec<Transition>,
}

impl ClusterChanges {
    pub fn is_empty(&self) -> bool {
        self.upserts.is_empty() && self.gone.is_empty() && self.transitions.is_empty()
    }
}

pub struct Store {
    conn: Connection,
    path: PathBuf,
}

const CLUSTER_COLUMNS: &str = "name, cluster_hash, status, cloud, region, zone, instance_type, nodes, cpus, memory, accelerators, resources, workspace, user_name, user_hash, launched_at, status_updated_at, autostop_minutes, autostop_to_down, is_managed, last_use, hourly_cost, total_cost, first_seen, last_seen, last_changed, gone_at";

impl Store {
    /// Opens (creating if needed) the database for writing and brings the schema up to date.
    pub fn open(path: &Path) -> Result<Store> {
        if let Some(dir) = path.parent() {
            if !dir.as_os_str().is_empty() && !dir.exists() {
                std::fs::create_dir_all(dir).map_err(|source| StoreError::Dir {
                    path: path.to_path_buf(),
                    source,
                })?;
            }
        }
        let conn = Connection::open(path).map_err(|e| sq(path, e))?;
        let mut store = Store {
            conn,
            path: path.to_path_buf(),
        };
        store.configure()?;
        migrations::migrate(&mut store.conn).map_err(|e| match e {
            migrations::MigrateError::Sqlite(e) => sq(path, e),
            migrations::MigrateError::TooNew { found, known } => StoreError::TooNew {
                path: path.to_path_buf(),
                found,
                known,
            },
        })?;
        Ok(store)
    }

    /// Opens an existing database for reading (monitor, status, web UI). Fails if the
    /// file does not exist or its schema is newer than this binary.
    pub fn open_read_only(path: &Path) -> Result<Store> {
        let conn = Connection::open_with_flags(
            path,
            OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(|e| sq(path, e))?;
        conn.busy_timeout(Duration::from_secs(5))
            .map_err(|e| sq(path, e))?;
        let version: i64 = conn
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .map_err(|e| sq(path, e))?;
        if version > migrations::LATEST {
            return Err(StoreError::TooNew {
                path: path.to_path_buf(),
                found: version,
                known: migrations::LATEST,
            });
        }
        if version < migrations::LATEST {
            return Err(StoreError::TooOld {
                path: path.to_path_buf(),
                found: version,
                known: migrations::LATEST,
            });
        }
        Ok(Store {
            conn,
            path: path.to_path_buf(),
        })
    }

    fn configure(&self) -> Result<()> {
        self.conn
            .busy_timeout(Duration::from_secs(5))
            .map_err(|e| sq(&self.path, e))?;
        let mode: String = self
            .conn
            .query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))
            .map_err(|e| sq(&self.path, e))?;
        if !mode.eq_ignore_ascii_case("wal") {
            tracing::warn!(path = %self.path.display(), mode, "database is not in WAL mode");
        }
        self.conn
            .execute_batch("PRAGMA synchronous = NORMAL; PRAGMA foreign_keys = ON;")
            .map_err(|e| sq(&self.path, e))?;
        Ok(())
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn schema_version(&self) -> Result<i64> {
        self.conn
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .map_err(|e| sq(&self.path, e))
    }

    /// Every cluster row, gone ones included, ordered by name. `last_seen` of a present
    /// cluster is the later of its stored value and the last successful poll.
    pub fn clusters(&self) -> Result<Vec<ClusterRow>> {
        let last_ok = self.last_ok_poll()?.map(|p| p.finished_at as i64);
        let mut stmt = self
            .conn
            .prepare_cached(&format!(
                "SELECT {CLUSTER_COLUMNS} FROM clusters ORDER BY name"
            ))
            .map_err(|e| sq(&self.path, e))?;
        let rows = stmt
            .query_map([], |r| Ok(raw_row(r)))
            .map_err(|e| sq(&self.path, e))?;
        let mut out = Vec::new();
        for raw in rows {
            let raw = raw.map_err(|e| sq(&self.path, e))?;
            let mut row = raw.map_err(|(name, message)| StoreError::BadRow {
                path: self.path.clone(),
                table: "clusters",
                row: name,
                message,
            })?;
            if row.gone_at.is_none() {
                if let Some(t) = last_ok {
                    row.last_seen = row.last_seen.max(t);
                }
            }
            out.push(row);
        }
        Ok(out)
    }

    /// Applies the changes of one successful poll and records the poll, in one transaction.
    pub fn commit_poll(&mut self, changes: &ClusterChanges, run: &PollRun) -> Result<()> {
        let path = self.path.clone();
        let tx = self.conn.transaction().map_err(|e| sq(&path, e))?;
        {
            let mut up = tx
                .prepare_cached(&format!(
                    "INSERT INTO clusters ({CLUSTER_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18, ?19, ?20, ?21, ?22, ?23, ?24, ?25, ?26, ?27)
                     ON CONFLICT(name) DO UPDATE SET cluster_hash=excluded.cluster_hash, status=excluded.status, cloud=excluded.cloud, region=excluded.region, zone=excluded.zone, instance_type=excluded.instance_type, nodes=excluded.nodes, cpus=excluded.cpus, memory=excluded.memory, accelerators=excluded.accelerators, resources=excluded.resources, workspace=excluded.workspace, user_name=excluded.user_name, user_hash=excluded.user_hash, launched_at=excluded.launched_at, status_updated_at=excluded.status_updated_at, autostop_minutes=excluded.autostop_minutes, autostop_to_down=excluded.autostop_to_down, is_managed=excluded.is_managed, last_use=excluded.last_use, hourly_cost=excluded.hourly_cost, total_cost=excluded.total_cost, first_seen=excluded.first_seen, last_seen=excluded.last_seen, last_changed=excluded.last_changed, gone_at=excluded.gone_at"
                ))
                .map_err(|e| sq(&path, e))?;
            for r in &changes.upserts {
                let c = &r.cluster;
                up.execute(params![
                    c.name,
                    c.cluster_hash,
                    c.status.as_str(),
                    c.cloud,
                    c.region,
                    c.zone,
                    c.instance_type,
                    c.nodes,
                    c.cpus,
                    c.memory,
                    c.accelerators,
                    c.resources,
                    c.workspace,
                    c.user_name,
                    c.user_hash,
                    c.launched_at,
                    c.status_updated_at,
                    c.autostop_minutes,
                    c.autostop_to_down,
                    c.is_managed,
                    c.last_use,
                    r.hourly_cost,
                    r.total_cost,
                    r.first_seen,
                    r.last_seen,
                    r.last_changed,
                    r.gone_at,
                ])
                .map_err(|e| sq(&path, e))?;
            }
            let mut gone = tx
                .prepare_cached(
                    "UPDATE clusters SET status = 'GONE', gone_at = ?2, last_changed = ?2, last_seen = MAX(last_seen, ?3) WHERE name = ?1",
                )
                .map_err(|e| sq(&path, e))?;
            let prev_ok: Option<f64> = tx
                .query_row(
                    "SELECT finished_at FROM poll_runs WHERE outcome = 'ok' ORDER BY id DESC LIMIT 1",
                    [],
                    |r| r.get(0),
                )
                .optional()
                .map_err(|e| sq(&path, e))?;
            for (name, at) in &changes.gone {
                let seen = prev_ok.map(|t| t as i64).unwrap_or(*at);
                gone.execute(params![name, at, seen])
                    .map_err(|e| sq(&path, e))?;
            }
            let mut tr = tx
                .prepare_cached(
                    "INSERT INTO transitions (cluster, from_status, to_status, at) VALUES (?1, ?2, ?3, ?4)",
                )
                .map_err(|e| sq(&path, e))?;
            for t in &changes.transitions {
                tr.execute(params![
                    t.cluster,
                    t.from.map(|s| s.as_str()),
                    t.to.as_str(),
                    t.at
                ])
                .map_err(|e| sq(&path, e))?;
            }
        }
        insert_poll(&tx, run).map_err(|e| sq(&path, e))?;
        tx.commit().map_err(|e| sq(&path, e))?;
        Ok(())
    }

    /// Records a poll that failed; cluster state is left as it was.
    pub fn record_poll_failure(&mut self, run: &PollRun) -> Result<()> {
        insert_poll(&self.conn, run).map_err(|e| sq(&self.path, e))
    }

    pub fn set_api_server_health(&self, h: &ApiServerHealth) -> Result<()> {
        self.conn
            .execute(
                "INSERT INTO api_server (id, checked_at, healthy, version, api_version, commit_hash, latency_ms, error)
                 VALUES (1, ?1, ?2, ?3, ?4, ?5, ?6, ?7)
                 ON CONFLICT(id) DO UPDATE SET checked_at=excluded.checked_at, healthy=excluded.healthy, version=excluded.version, api_version=excluded.api_version, commit_hash=excluded.commit_hash, latency_ms=excluded.latency_ms, error=excluded.error",
                params![h.checked_at, h.healthy, h.version, h.api_version, h.commit, h.latency_ms, h.error],
            )
            .map_err(|e| sq(&self.path, e))?;
        Ok(())
    }

    pub fn api_server_health(&self) -> Result<Option<ApiServerHealth>> {
        self.conn
            .query_row(
                "SELECT checked_at, healthy, version, api_version, commit_hash, latency_ms, error FROM api_server WHERE id = 1",
                [],
                |r| {
                    Ok(ApiServerHealth {
                        checked_at: r.get(0)?,
                        healthy: r.get(1)?,
                        version: r.get(2)?,
                        api_version: r.get(3)?,
                        commit: r.get(4)?,
                        latency_ms: r.get(5)?,
                        error: r.get(6)?,
                    })
                },
            )
            .optional()
            .map_err(|e| sq(&self.path, e))
    }

    pub fn last_poll(&self) -> Result<Option<PollRun>> {
        self.poll_where("1 = 1")
    }

    pub fn last_ok_poll(&self) -> Result<Option<PollRun>> {
        self.poll_where("outcome = 'ok'")
    }

    fn poll_where(&self, cond: &str) -> Result<Option<PollRun>> {
        let sql = format!(
            "SELECT id, started_at, finished_at, refresh, outcome, error_kind, error, clusters, changes FROM poll_runs WHERE {cond} ORDER BY id DESC LIMIT 1"
        );
        self.conn
            .query_row(&sql, [], poll_from_row)
            .optional()
            .map_err(|e| sq(&self.path, e))
    }

    /// Counts of failed polls by error kind since the database was created.
    pub fn poll_errors_by_kind(&self) -> Result<Vec<(String, i64)>> {
        let mut stmt = self
            .conn
            .prepare_cached(
                "SELECT COALESCE(error_kind, 'unknown'), COUNT(*) FROM poll_runs WHERE outcome = 'error' GROUP BY 1 ORDER BY 1",
            )
            .map_err(|e| sq(&self.path, e))?;
        let rows = stmt
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
            .map_err(|e| sq(&self.path, e))?;
        rows.collect::<std::result::Result<_, _>>()
            .map_err(|e| sq(&self.path, e))
    }

    /// The most recent polls, newest first.
    pub fn recent_polls(&self, limit: usize) -> Result<Vec<PollRun>> {
        let mut stmt = self
            .conn
            .prepare_cached(
                "SELECT id, started_at, finished_at, refresh, outcome, error_kind, error, clusters, changes FROM poll_runs ORDER BY id DESC LIMIT ?1",
            )
            .map_err(|e| sq(&self.path, e))?;
        let rows = stmt
            .query_map([limit as i64], poll_from_row)
            .map_err(|e| sq(&self.path, e))?;
        rows.collect::<std::result::Result<_, _>>()
            .map_err(|e| sq(&self.path, e))
    }

    /// Transitions of one cluster (or all when `None`), oldest first.
    pub fn transitions(&self, cluster: Option<&str>) -> Result<Vec<Transition>> {
        let mut stmt = self
            .conn
            .prepare_cached(
                "SELECT cluster, from_status, to_status, at FROM transitions WHERE ?1 IS NULL OR cluster = ?1 ORDER BY id",
            )
            .map_err(|e| sq(&self.path, e))?;
        let rows = stmt
            .query_map([cluster], |r| {
                let from: Option<String> = r.get(1)?;
                let to: String = r.get(2)?;
                Ok((r.get::<_, String>(0)?, from, to, r.get::<_, i64>(3)?))
            })
            .map_err(|e| sq(&self.path, e))?;
        let mut out = Vec::new();
        for row in rows {
            let (cluster, from, to, at) = row.map_err(|e| sq(&self.path, e))?;
            let parse = |s: &str| {
                s.parse::<ClusterStatus>()
                    .map_err(|message| StoreError::BadRow {
                        path: self.path.clone(),
                        table: "transitions",
                        row: cluster.clone(),
                        message,
                    })
            };
            let from = match from {
                Some(f) => Some(parse(&f)?),
                None => None,
            };
            let to = parse(&to)?;
            out.push(Transition {
                cluster,
                from,
                to,
                at,
            });
        }
        Ok(out)
    }

    pub fn append_audit(&self, e: &AuditEntry) -> Result<i64> {
        self.conn
            .execute(
                "INSERT INTO audit (at, actor, action, cluster, outcome, detail) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                params![e.at, e.actor, e.action, e.cluster, e.outcome, e.detail],
            )
            .map_err(|e| sq(&self.path, e))?;
        Ok(self.conn.last_insert_rowid())
    }

    /// Audit entries, newest first.
    pub fn audit(&self, limit: usize) -> Result<Vec<AuditEntry>> {
        let mut stmt = self
            .conn
            .prepare_cached(
                "SELECT at, actor, action, cluster, outcome, detail FROM audit ORDER BY id DESC LIMIT ?1",
            )
            .map_err(|e| sq(&self.path, e))?;
        let rows = stmt
            .query_map([limit as i64], |r| {
                Ok(AuditEntry {
                    at: r.get(0)?,
                    actor: r.get(1)?,
                    action: r.get(2)?,
                    cluster: r.get(3)?,
                    outcome: r.get(4)?,
                    detail: r.get(5)?,
                })
            })
            .map_err(|e| sq(&self.path, e))?;
        rows.collect::<std::result::Result<_, _>>()
            .map_err(|e| sq(&self.path, e))
    }

    /// Counts of audit entries by (action, outcome).
    pub fn audit_counts(&self) -> Result<Vec<(String, String, i64)>> {
        let mut stmt = self
            .conn
            .prepare_cached(
                "SELECT action, outcome, COUNT(*) FROM audit GROUP BY 1, 2 ORDER BY 1, 2",
            )
            .map_err(|e| sq(&self.path, e))?;
        let rows = stmt
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
            .map_err(|e| sq(&self.path, e))?;
        rows.collect::<std::result::Result<_, _>>()
            .map_err(|e| sq(&self.path, e))
    }

    /// Deletes poll runs older than `before` (Unix seconds); returns how many.
    pub fn prune_polls(&self, before: f64) -> Result<usize> {
        self.conn
            .execute("DELETE FROM poll_runs WHERE finished_at < ?1", [before])
            .map_err(|e| sq(&self.path, e))
    }

    /// Total rows changed on this connection (for tests and benchmarks).
    pub fn total_changes(&self) -> u64 {
        self.conn.total_changes()
    }
}

fn sq(path: &Path, source: rusqlite::Error) -> StoreError {
    StoreError::Sqlite {
        path: path.to_path_buf(),
        source,
    }
}

fn insert_poll(conn: &Connection, run: &PollRun) -> rusqlite::Result<()> {
    conn.prepare_cached(
        "INSERT INTO poll_runs (started_at, finished_at, refresh, outcome, error_kind, error, clusters, changes) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
    )?
    .execute(params![
        run.started_at,
        run.finished_at,
        run.refresh,
        match run.outcome {
            PollOutcome::Ok => "ok",
            PollOutcome::Error => "error",
        },
        run.error_kind,
        run.error,
        run.clusters,
        run.changes,
    ])?;
    Ok(())
}

fn poll_from_row(r: &Row<'_>) -> rusqlite::Result<PollRun> {
    let outcome: String = r.get(4)?;
    Ok(PollRun {
        id: r.get(0)?,
        started_at: r.get(1)?,
        finished_at: r.get(2)?,
        refresh: r.get(3)?,
        outcome: if outcome == "ok" {
            PollOutcome::Ok
        } else {
            PollOutcome::Error
        },
        error_kind: r.get(5)?,
        error: r.get(6)?,
        clusters: r.get(7)?,
        changes: r.get(8)?,
    })
}

/// Reads one cluster row; a row whose status does not parse is an error that names the
/// cluster, not a panic.
fn raw_row(r: &Row<'_>) -> std::result::Result<ClusterRow, (String, String)> {
    let name: String = r.get(0).map_err(|e| (String::from("?"), e.to_string()))?;
    let f = |e: rusqlite::Error| (name.clone(), e.to_string());
    let status: String = r.get(2).map_err(f)?;
    let status = status
        .parse::<ClusterStatus>()
        .map_err(|m| (name.clone(), m))?;
    Ok(ClusterRow {
        cluster: Cluster {
            name: name.clone(),
            cluster_hash: r.get(1).map_err(f)?,
            status,
            cloud: r.get(3).map_err(f)?,
            region: r.get(4).map_err(f)?,
            zone: r.get(5).map_err(f)?,
            instance_type: r.get(6).map_err(f)?,
            nodes: r.get(7).map_err(f)?,
            cpus: r.get(8).map_err(f)?,
            memory: r.get(9).map_err(f)?,
            accelerators: r.get(10).map_err(f)?,
            resources: r.get(11).map_err(f)?,
            workspace: r.get(12).map_err(f)?,
            user_name: r.get(13).map_err(f)?,
            user_hash: r.get(14).map_err(f)?,
            launched_at: r.get(15).map_err(f)?,
            status_updated_at: r.get(16).map_err(f)?,
            autostop_minutes: r.get(17).map_err(f)?,
            autostop_to_down: r.get(18).map_err(f)?,
            is_managed: r.get(19).map_err(f)?,
            last_use: r.get(20).map_err(f)?,
        },
        hourly_cost: r.get(21).map_err(f)?,
        total_cost: r.get(22).map_err(f)?,
        first_seen: r.get(23).map_err(f)?,
        last_seen: r.get(24).map_err(f)?,
        last_changed: r.get(25).map_err(f)?,
        gone_at: r.get(26).map_err(f)?,
    })
}
