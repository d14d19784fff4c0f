//! One scrape's view of the host database: everything the exporter shows, read in one go.
//!
//! Reading never fails as a whole. A database that is missing, locked, corrupt or of
//! another schema version becomes an error kind; a row that does not parse is skipped
//! and counted by table. The exporter turns both into metrics and keeps serving.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use rusqlite::{ErrorCode, OpenFlags};

use crate::cluster::ClusterStatus;
use crate::store::{ApiServerHealth, PollOutcome, Store, StoreError};
use crate::time::{Clock, Timestamp};

/// Every kind of database-wide error the exporter reports (`skypilot_host_database_error`).
pub(crate) const DB_ERROR_KINDS: [&str; 7] = [
    "missing",
    "unreadable",
    "locked",
    "corrupt",
    "too_old",
    "too_new",
    "other",
];

/// Tables whose rows are read; a row that does not parse is counted under its table.
pub(crate) const TABLES: [&str; 4] = ["api_server", "audit", "clusters", "poll_runs"];

/// What the exporter uses of one cluster row.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct FleetCluster {
    pub(crate) name: String,
    pub(crate) status: ClusterStatus,
    /// Cloud, region, instance type and workspace are shared between clusters (few
    /// distinct values); empty when unknown.
    pub(crate) cloud: Arc<str>,
    pub(crate) region: Arc<str>,
    pub(crate) instance_type: Arc<str>,
    pub(crate) workspace: Arc<str>,
    pub(crate) launched_at: Option<Timestamp>,
    /// Idle minutes before autostop; negative = none.
    pub(crate) autostop_minutes: i64,
    pub(crate) autostop_to_down: bool,
    pub(crate) hourly_cost: Option<f64>,
    pub(crate) total_cost: Option<f64>,
}

/// The data of one scrape.
#[derive(Debug, Clone, Default)]
pub(crate) struct Snapshot {
    /// From the clock.
    pub(crate) now: Timestamp,
    /// Database-wide errors met while reading (kinds from [`DB_ERROR_KINDS`]).
    pub(crate) db_errors: BTreeSet<&'static str>,
    /// Rows skipped because they do not parse, by table.
    pub(crate) malformed_rows: BTreeMap<&'static str, u64>,
    /// Every cluster row read, gone ones included, ordered by name.
    pub(crate) clusters: Vec<FleetCluster>,
    /// When the last successful poll finished.
    pub(crate) last_ok_poll: Option<Timestamp>,
    /// Outcome of the most recent poll.
    pub(crate) last_poll_ok: Option<bool>,
    /// Failed polls by error kind.
    pub(crate) poll_errors: Vec<(String, i64)>,
    pub(crate) api_server: Option<ApiServerHealth>,
    /// Audit entries by (action, outcome).
    pub(crate) audit: Vec<(String, String, i64)>,
    /// Seconds spent reading the database.
    pub(crate) read_seconds: f64,
    /// The first problem met, in words, for the log (never exported).
    pub(crate) first_error: Option<String>,
}

impl Snapshot {
    /// The database could be opened and every query ran (malformed rows aside).
    pub(crate) fn database_up(&self) -> bool {
        self.db_errors.is_empty()
    }
}

/// How an error of a read is reported.
enum Problem {
    /// The database as a whole: kind from [`DB_ERROR_KINDS`].
    Database(&'static str),
    /// One row of the given table does not parse.
    Row,
}

fn classify_sqlite(e: &rusqlite::Error) -> Problem {
    match e {
        rusqlite::Error::SqliteFailure(f, _) => Problem::Database(match f.code {
            ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked => "locked",
            ErrorCode::CannotOpen | ErrorCode::PermissionDenied | ErrorCode::ReadOnly => {
                "unreadable"
            }
            ErrorCode::NotADatabase | ErrorCode::DatabaseCorrupt => "corrupt",
            _ => "other",
        }),
        rusqlite::Error::InvalidColumnType(..)
        | rusqlite::Error::FromSqlConversionFailure(..)
        | rusqlite::Error::IntegralValueOutOfRange(..) => Problem::Row,
        _ => Problem::Database("other"),
    }
}

fn classify(e: &StoreError) -> Problem {
    match e {
        StoreError::Sqlite { cause, .. } => classify_sqlite(cause),
        StoreError::Dir { .. } => Problem::Database("unreadable"),
        StoreError::TooNew { .. } => Problem::Database("too_new"),
        StoreError::TooOld { .. } => Problem::Database("too_old"),
        StoreError::InvalidVersion { .. } => Problem::Database("other"),
        StoreError::BadRow { .. } => Problem::Row,
    }
}

impl Snapshot {
    /// Records a failed read of `table`; returns nothing so callers go on.
    fn problem(&mut self, table: &'static str, e: &StoreError) {
        self.first_error.get_or_insert_with(|| e.to_string());
        match classify(e) {
            Problem::Database(kind) => {
                tracing::debug!(error = %e, kind, "monitor: host database read failed");
                self.db_errors.insert(kind);
            }
            Problem::Row => {
                tracing::debug!(error = %e, table, "monitor: malformed row in the host database");
                *self.malformed_rows.entry(table).or_insert(0) += 1;
            }
        }
    }
}

/// Reads everything one scrape shows, opening the database for this read only. Never
/// fails: problems are in the snapshot.
pub(crate) fn collect(database: &Path, clock: &dyn Clock) -> Snapshot {
    Reader::new(database).collect(clock)
}

/// Reads the host database scrape after scrape, keeping its connections open between
/// scrapes (no transaction is held in between). They are reopened when the file is
/// replaced (another inode), when its schema version changes, and after any
/// database-wide error.
pub(crate) struct Reader {
    path: PathBuf,
    open: Option<Open>,
    /// The problems of the previous scrape, to log only when they change.
    last_problems: Option<Problems>,
}

/// What went wrong in one scrape, as far as the log is concerned.
#[derive(Debug, Clone, PartialEq)]
struct Problems {
    kinds: BTreeSet<&'static str>,
    malformed: BTreeMap<&'static str, u64>,
}

struct Open {
    store: Store,
    /// The connection of the lean cluster query.
    conn: rusqlite::Connection,
    /// (device, inode) of the file when opened.
    file: (u64, u64),
    version: i64,
}

impl Reader {
    pub fn new(database: &Path) -> Reader {
        Reader {
            path: database.to_path_buf(),
            open: None,
            last_problems: None,
        }
    }

    /// Reads everything one scrape shows. Never fails: problems are in the snapshot.
    pub(crate) fn collect(&mut self, clock: &dyn Clock) -> Snapshot {
        let started = Instant::now();
        let mut snap = Snapshot {
            now: clock.now(),
            ..Snapshot::default()
        };
        self.read(&mut snap);
        if !snap.db_errors.is_empty() {
            self.open = None;
        }
        snap.read_seconds = started.elapsed().as_secs_f64();
        self.log_change(&snap);
        snap
    }

    /// Logs problems when they appear, change or clear, not on every scrape.
    fn log_change(&mut self, snap: &Snapshot) {
        let now = Problems {
            kinds: snap.db_errors.clone(),
            malformed: snap.malformed_rows.clone(),
        };
        let clean = now.kinds.is_empty() && now.malformed.is_empty();
        let was_clean = self
            .last_problems
            .as_ref()
            .is_none_or(|p| p.kinds.is_empty() && p.malformed.is_empty());
        if self.last_problems.as_ref() != Some(&now) {
            if !clean {
                tracing::warn!(
                    database = %self.path.display(),
                    errors = ?now.kinds,
                    malformed_rows = ?now.malformed,
                    first = snap.first_error.as_deref().unwrap_or("-"),
                    "monitor: problems reading the host database (reported in skypilot_host_database_*)"
                );
            } else if !was_clean {
                tracing::info!(database = %self.path.display(), "monitor: host database read cleanly again");
            }
        }
        self.last_problems = Some(now);
    }

    /// The open connections, (re)opened when needed. Errors are (kind, words).
    fn connections(&mut self) -> Result<&mut Open, (&'static str, String)> {
        use std::os::unix::fs::MetadataExt;
        let meta = match std::fs::metadata(&self.path) {
            Ok(m) => m,
            Err(e) => {
                self.open = None;
                let kind = if e.kind() == std::io::ErrorKind::NotFound {
                    "missing"
                } else {
                    "unreadable"
                };
                return Err((kind, format!("host database {}: {e}", self.path.display())));
            }
        };
        let file = (meta.dev(), meta.ino());
        if let Some(o) = &self.open {
            let same = o.file == file && o.store.schema_version().ok() == Some(o.version);
            if !same {
                self.open = None;
            }
        }
        if self.open.is_none() {
            let failed = |e: StoreError| {
                let kind = match classify(&e) {
                    Problem::Database(kind) => kind,
                    Problem::Row => "other",
                };
                (kind, e.to_string())
            };
            let store = Store::open_read_only(&self.path).map_err(failed)?;
            let version = store.schema_version().map_err(failed)?;
            let conn = open_lean(&self.path).map_err(failed)?;
            tracing::debug!(database = %self.path.display(), version, "monitor: host database opened");
            self.open = Some(Open {
                store,
                conn,
                file,
                version,
            });
        }
        self.open
            .as_mut()
            .ok_or(("other", "host database connection lost".to_string()))
    }

    fn read(&mut self, snap: &mut Snapshot) {
        let path = self.path.clone();
        let open = match self.connections() {
            Ok(o) => o,
            Err((kind, message)) => {
                snap.db_errors.insert(kind);
                snap.first_error = Some(message);
                return;
            }
        };
        let store = &open.store;
        // Clusters are read with a lean query of their own (the columns the exporter
        // uses, row by row) rather than `Store::clusters`, so one malformed row is
        // skipped and counted instead of hiding the whole fleet, and a 10,000-cluster
        // scrape stays cheap.
        match read_clusters(&open.conn, &path) {
            Ok((clusters, bad, first_bad)) => {
                snap.clusters = clusters;
                if let Some(m) = first_bad {
                    snap.first_error.get_or_insert(m);
                }
                if bad > 0 {
                    *snap.malformed_rows.entry("clusters").or_insert(0) += bad;
                }
            }
            Err(e) => snap.problem("clusters", &e),
        }
        match store.last_ok_poll() {
            Ok(p) => snap.last_ok_poll = p.map(|p| p.finished_at),
            Err(e) => snap.problem("poll_runs", &e),
        }
        match store.last_poll() {
            Ok(p) => snap.last_poll_ok = p.map(|p| p.outcome == PollOutcome::Ok),
            Err(e) => snap.problem("poll_runs", &e),
        }
        match store.poll_errors_by_kind() {
            Ok(v) => snap.poll_errors = v,
            Err(e) => snap.problem("poll_runs", &e),
        }
        match store.api_server_health() {
            Ok(h) => snap.api_server = h,
            Err(e) => snap.problem("api_server", &e),
        }
        match store.audit_counts() {
            Ok(v) => {
                snap.audit = v
                    .into_iter()
                    .map(|(a, o, n)| (a.as_str().to_string(), o.as_str().to_string(), n))
                    .collect()
            }
            Err(e) => snap.problem("audit", &e),
        }
    }
}

fn open_lean(database: &Path) -> Result<rusqlite::Connection, StoreError> {
    let sq = |cause| StoreError::Sqlite {
        path: database.to_path_buf(),
        cause,
    };
    let conn = rusqlite::Connection::open_with_flags(
        database,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(sq)?;
    conn.busy_timeout(std::time::Duration::from_secs(5))
        .map_err(sq)?;
    Ok(conn)
}

/// Shares equal strings: a fleet has few distinct clouds, regions, instance types and
/// workspaces.
#[derive(Default)]
struct Interner(HashMap<Box<str>, Arc<str>>);

impl Interner {
    fn get(&mut self, s: Option<&str>) -> Arc<str> {
        let s = s.unwrap_or("");
        if let Some(a) = self.0.get(s) {
            return a.clone();
        }
        let a: Arc<str> = Arc::from(s);
        self.0.insert(Box::from(s), a.clone());
        a
    }
}

/// Reads the clusters table row by row, skipping (and counting) rows that do not parse.
fn read_clusters(
    conn: &rusqlite::Connection,
    database: &Path,
) -> Result<(Vec<FleetCluster>, u64, Option<String>), StoreError> {
    let sq = |cause| StoreError::Sqlite {
        path: database.to_path_buf(),
        cause,
    };
    let mut stmt = conn
        .prepare_cached(
            "SELECT name, status, cloud, region, instance_type, workspace, launched_at, autostop_minutes, autostop_to_down, hourly_cost, total_cost FROM clusters",
        )
        .map_err(sq)?;
    let mut rows = stmt.query([]).map_err(sq)?;
    let mut out = Vec::new();
    let mut bad = 0u64;
    let mut first_bad = None;
    let mut strings = Interner::default();
    while let Some(r) = rows.next().map_err(sq)? {
        let mut parsed = || -> Result<FleetCluster, String> {
            let e = |e: rusqlite::Error| e.to_string();
            let text = |i: usize| -> Result<Option<&str>, String> {
                let v = r.get_ref(i).map_err(e)?;
                match v {
                    rusqlite::types::ValueRef::Null => Ok(None),
                    v => v.as_str().map(Some).map_err(|e| format!("column {i}: {e}")),
                }
            };
            let status = text(1)?.unwrap_or("");
            Ok(FleetCluster {
                name: r.get(0).map_err(e)?,
                status: status.parse::<ClusterStatus>()?,
                cloud: strings.get(text(2)?),
                region: strings.get(text(3)?),
                instance_type: strings.get(text(4)?),
                workspace: strings.get(text(5)?),
                launched_at: r.get(6).map_err(e)?,
                autostop_minutes: r.get(7).map_err(e)?,
                autostop_to_down: r.get(8).map_err(e)?,
                hourly_cost: r.get(9).map_err(e)?,
                total_cost: r.get(10).map_err(e)?,
            })
        };
        match parsed() {
            Ok(c) => out.push(c),
            Err(message) => {
                let name: String = r
                    .get::<_, String>(0)
                    .unwrap_or_else(|_| "<unreadable name>".to_string());
                tracing::debug!(database = %database.display(), cluster = %name, %message, "monitor: skipping a malformed clusters row");
                first_bad.get_or_insert_with(|| {
                    format!(
                        "host database {}: table clusters, row {name}: {message}",
                        database.display()
                    )
                });
                bad += 1;
            }
        }
    }
    // Sorting here is cheaper than walking the name index in SQLite.
    out.sort_unstable_by(|a, b| a.name.cmp(&b.name));
    Ok((out, bad, first_bad))
}
