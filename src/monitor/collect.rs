//! One scrape's view of the host database: everything the exporter shows, read in one go.
//!
//! Reading never fails as a whole. A database that is missing, locked, corrupt or of
//! another schema version becomes an error kind; a row that does not parse is skipped
//! and counted by table. The exporter turns both into metrics and keeps serving.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use crate::load_budget::PollLoad;
pub(crate) use crate::store::scrape::FleetCluster;
use crate::store::scrape::FleetRead;
use crate::store::{ApiServerHealth, ErrorKind, PollOutcome, Store, StoreError};
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

/// SQLite page cache of the monitor's connection. Any commit empties it, and an
/// unchanged database is not read again, so it only needs to serve one read.
const PAGE_CACHE_KIB: u32 = 256;

/// Tables whose rows are read; a row that does not parse is counted under its table.
pub(crate) const TABLES: [&str; 8] = [
    "api_server",
    "audit",
    "clusters",
    "feeds",
    "managed_jobs",
    "poll_load",
    "poll_runs",
    "services",
];

/// The data of one scrape.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    /// From the clock.
    pub(crate) now: Timestamp,
    /// Database-wide errors met while reading (kinds from [`DB_ERROR_KINDS`]).
    pub(crate) db_errors: BTreeSet<&'static str>,
    /// Rows skipped because they do not parse, by table.
    pub(crate) malformed_rows: BTreeMap<&'static str, u64>,
    /// Every cluster row read, gone ones included, ordered by name (shared with the
    /// reader, which compares the next read with it).
    pub(crate) clusters: Arc<Vec<FleetCluster>>,
    /// When the last successful poll finished (Unix seconds).
    pub(crate) last_ok_poll: Option<Timestamp>,
    /// Outcome of the most recent poll.
    pub(crate) last_poll_ok: Option<bool>,
    /// Failed polls by error kind.
    pub(crate) poll_errors: Vec<(String, i64)>,
    pub(crate) api_server: Option<ApiServerHealth>,
    /// The cluster manager's effective poll interval and its load on the API server.
    pub(crate) poll_load: Option<PollLoad>,
    /// Audit entries by (action, outcome).
    pub(crate) audit: Vec<(String, String, i64)>,
    /// Seconds spent reading the database.
    pub(crate) read_seconds: f64,
    /// Managed jobs by (status, owner).
    pub(crate) job_counts: Vec<crate::store::JobCount>,
    /// Jobs that ended with a failure, by owner.
    pub(crate) failed_jobs: Vec<(String, i64)>,
    /// Jobs that have not ended.
    pub(crate) active_jobs: Vec<crate::jobs::ManagedJob>,
    /// The last read of SkyPilot's job queue.
    pub(crate) jobs_feed: Option<crate::store::FeedState>,
    /// SkyServe services, gone ones included.
    pub(crate) services: Vec<crate::services::ServiceRow>,
    /// The last read of `/serve/status`.
    pub(crate) services_feed: Option<crate::store::FeedState>,
    /// The first problem met, in words, for the log (never exported).
    pub first_error: Option<String>,
}

impl Snapshot {
    /// The database could be opened and every query ran (malformed rows aside).
    pub fn database_up(&self) -> bool {
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

fn classify(e: &StoreError) -> Problem {
    Problem::Database(match e.kind() {
        ErrorKind::BadRow => return Problem::Row,
        ErrorKind::Locked => "locked",
        ErrorKind::Unreadable => "unreadable",
        ErrorKind::Corrupt => "corrupt",
        ErrorKind::TooNew => "too_new",
        ErrorKind::TooOld => "too_old",
        ErrorKind::Other => "other",
    })
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
pub fn collect(database: &Path, clock: &dyn Clock) -> Snapshot {
    Reader::new(database).collect(clock)
}

/// Reads the host database scrape after scrape, keeping its connection open between
/// scrapes (no transaction is held in between). It is reopened when the file is
/// replaced (another inode), when its schema version changes, and after any
/// database-wide error.
pub struct Reader {
    path: PathBuf,
    open: Option<Open>,
    /// Connections opened so far: tells a reopened connection from the one before.
    opened: u64,
    /// The clusters of the last read, which the next read is compared with.
    fleet: Option<FleetRead>,
    /// The problems of the previous scrape, to log only when they change.
    last_problems: Option<Problems>,
}

/// What went wrong in one scrape, as far as the log is concerned.
#[derive(Debug, Clone, PartialEq)]
struct Problems {
    kinds: BTreeSet<&'static str>,
    malformed: BTreeMap<&'static str, u64>,
}

/// Identity and state of the database file, from its metadata.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct FileStamp {
    dev: u64,
    ino: u64,
    len: u64,
    mtime: i64,
    mtime_nsec: i64,
}

impl FileStamp {
    fn of(meta: &std::fs::Metadata) -> FileStamp {
        use std::os::unix::fs::MetadataExt;
        FileStamp {
            dev: meta.dev(),
            ino: meta.ino(),
            len: meta.len(),
            mtime: meta.mtime(),
            mtime_nsec: meta.mtime_nsec(),
        }
    }

    fn same_file(&self, other: &FileStamp) -> bool {
        (self.dev, self.ino) == (other.dev, other.ino)
    }
}

/// What a [`Reader`] last saw of the database. Two equal versions mean nothing was
/// committed in between: same connection, same SQLite `data_version`, same file (device,
/// inode, size and modification time).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DbVersion {
    connection: u64,
    data_version: i64,
    file: FileStamp,
}

struct Open {
    store: Store,
    /// The file when opened.
    file: FileStamp,
    version: i64,
    /// Number of this connection (see [`Reader::opened`]).
    connection: u64,
}

impl Reader {
    pub fn new(database: &Path) -> Reader {
        Reader {
            path: database.to_path_buf(),
            open: None,
            opened: 0,
            fleet: None,
            last_problems: None,
        }
    }

    /// Reads everything one scrape shows. Never fails: problems are in the snapshot.
    pub fn collect(&mut self, clock: &dyn Clock) -> Snapshot {
        self.collect_since(clock, Instant::now())
    }

    /// As [`Reader::collect`], with the read duration counted from `started`.
    pub(crate) fn collect_since(&mut self, clock: &dyn Clock, started: Instant) -> Snapshot {
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

    /// The database's version as this reader sees it now, (re)opening the connection
    /// when needed; `None` when it cannot be opened or asked (the next
    /// [`Reader::collect`] reports why).
    pub(crate) fn version(&mut self) -> Option<DbVersion> {
        let (open, file) = self.connections().ok()?;
        let connection = open.connection;
        match open.store.data_version() {
            Ok(data_version) => Some(DbVersion {
                connection,
                data_version,
                file,
            }),
            Err(e) => {
                tracing::debug!(error = %e, "monitor: cannot read the host database's data_version");
                self.open = None;
                None
            }
        }
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

    /// The open connection, (re)opened when needed, and the file as it is now. Errors
    /// are (kind, words).
    fn connections(&mut self) -> Result<(&mut Open, FileStamp), (&'static str, String)> {
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
        let file = FileStamp::of(&meta);
        if let Some(o) = &self.open {
            let same = o.file.same_file(&file) && o.store.schema_version().ok() == Some(o.version);
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
            store.limit_page_cache(PAGE_CACHE_KIB).map_err(failed)?;
            self.opened += 1;
            tracing::debug!(database = %self.path.display(), version, "monitor: host database opened");
            self.open = Some(Open {
                store,
                file,
                version,
                connection: self.opened,
            });
        }
        match self.open.as_mut() {
            Some(o) => Ok((o, file)),
            None => Err(("other", "host database connection lost".to_string())),
        }
    }

    fn read(&mut self, snap: &mut Snapshot) {
        let previous = self.fleet.take();
        let store = match self.connections() {
            Ok((o, _)) => &o.store,
            Err((kind, message)) => {
                snap.db_errors.insert(kind);
                snap.first_error = Some(message);
                return;
            }
        };
        // One malformed cluster row is skipped and counted instead of hiding the fleet.
        let fleet = store.fleet_for_scrape(previous.as_ref());
        drop(previous);
        match &fleet {
            Ok(fleet) => {
                snap.clusters = fleet.clusters.clone();
                if let Some(m) = &fleet.first_malformed {
                    snap.first_error.get_or_insert_with(|| m.clone());
                }
                if fleet.malformed > 0 {
                    *snap.malformed_rows.entry("clusters").or_insert(0) += fleet.malformed;
                }
            }
            Err(e) => snap.problem("clusters", e),
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
        match store.poll_load() {
            Ok(l) => snap.poll_load = l,
            Err(e) => snap.problem("poll_load", &e),
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
        match store.job_counts() {
            Ok(v) => snap.job_counts = v,
            Err(e) => snap.problem("managed_jobs", &e),
        }
        match store.failed_jobs_by_user() {
            Ok(v) => snap.failed_jobs = v,
            Err(e) => snap.problem("managed_jobs", &e),
        }
        let active = crate::store::JobQuery {
            active: true,
            ..Default::default()
        };
        match store.query_jobs(&active) {
            Ok(v) => snap.active_jobs = v.into_iter().map(|r| r.job).collect(),
            Err(e) => snap.problem("managed_jobs", &e),
        }
        match store.feed(crate::store::Feed::Jobs) {
            Ok(f) => snap.jobs_feed = f,
            Err(e) => snap.problem("feeds", &e),
        }
        match store.services() {
            Ok(v) => snap.services = v,
            Err(e) => snap.problem("services", &e),
        }
        match store.feed(crate::store::Feed::Services) {
            Ok(f) => snap.services_feed = f,
            Err(e) => snap.problem("feeds", &e),
        }
        self.fleet = fleet.ok();
    }
}
