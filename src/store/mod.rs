//! The host database: SQLite in WAL mode, versioned migrations. This module owns all of
//! the host's SQL; every role reads and writes through its typed queries.
//!
//! Tables: `clusters` (state as last seen, written only by the cluster manager),
//! `transitions`, `poll_runs`, `api_server` (the last health probe) and `audit`
//! (actions of the roles that act). Times are [`Timestamp`]s: whole seconds in the
//! cluster tables (SkyPilot's own resolution), fractional where sub-second matters.
//!
//! Three ways to open it:
//! - [`Store::open`]: the cluster manager's. Creates the file and migrates the schema.
//! - [`Store::open_writer`]: a second writer (roles that append audit entries). Never
//!   creates nor migrates; the schema must be the one this binary knows.
//! - [`Store::open_read_only`]: readers (monitor, status). Cannot write.
//!
//! Writers wait for each other (a busy timeout), so a second writer never sees
//! `SQLITE_BUSY` as a failure while the cluster manager commits a poll.
//!
//! To keep a no-change poll free of cluster writes, a present cluster's `last_seen`
//! is only written when the row changes; readers take the newer of it and the last
//! successful poll (see [`Store::clusters`]).

use std::path::{Path, PathBuf};
use std::time::Duration;

use rusqlite::{Connection, OpenFlags};

use crate::time::Timestamp;

mod audit;
mod clusters;
mod history;
mod jobs;
mod lock;
mod migrations;
mod polls;
mod services;
mod sessions;
pub(crate) use sessions::{CliLogin, StoredSession};
pub(crate) mod scrape;

pub use crate::cluster::PriceSource;
pub use crate::load_budget::{CpuSource, PollLoad};
pub use audit::{AuditAction, AuditEntry, AuditOutcome};
pub use clusters::{
    ClusterChanges, ClusterDetail, ClusterOrder, ClusterQuery, ClusterRow, FleetSums, Transition,
};
pub use history::{AutostopPass, FleetSample};
pub use jobs::{feed_is_stale, Feed, FeedState, JobCount, JobQuery, NO_CONTROLLER};
pub(crate) use lock::lock_with_pid;
pub use lock::{LockError, WriterLock};
pub use polls::{ApiServerHealth, PollOutcome, PollRun};
pub use services::ServiceQuery;

/// How long a connection waits for another writer before giving up.
pub(crate) const BUSY_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// SQLite's own error. Not exposed as a `source`: its text is already in the
    /// message, and an error chain would print it again.
    #[error("host database {path}: {cause}")]
    Sqlite {
        path: PathBuf,
        cause: rusqlite::Error,
    },
    #[error("host database {path}: cannot create its directory: {cause}")]
    Dir {
        path: PathBuf,
        cause: std::io::Error,
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
    #[error("host database {path}: schema version {found} was never written by skypilot-host; move the file aside and start the cluster manager to create a new one")]
    InvalidVersion { path: PathBuf, found: i64 },
    #[error("host database {path}: table {table}, row {row}: {message}")]
    BadRow {
        path: PathBuf,
        table: &'static str,
        row: String,
        message: String,
    },
}

pub(crate) type Result<T> = std::result::Result<T, StoreError>;

/// What kind of failure a [`StoreError`] is, for counting (the monitor's
/// `skypilot_host_database_error{kind}`) without looking into SQLite's codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// Another connection holds a lock.
    Locked,
    /// The file or its directory cannot be opened or read.
    Unreadable,
    /// Not a SQLite database, or a damaged one.
    Corrupt,
    /// Written by a newer skypilot-host.
    TooNew,
    /// Not migrated yet.
    TooOld,
    /// One row does not hold what its table promises; the rest is readable.
    BadRow,
    Other,
}

impl StoreError {
    /// The kind of this failure.
    pub fn kind(&self) -> ErrorKind {
        use rusqlite::ErrorCode;
        match self {
            StoreError::Sqlite { cause, .. } => match cause {
                rusqlite::Error::SqliteFailure(f, _) => match f.code {
                    ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked => ErrorKind::Locked,
                    ErrorCode::CannotOpen | ErrorCode::PermissionDenied | ErrorCode::ReadOnly => {
                        ErrorKind::Unreadable
                    }
                    ErrorCode::NotADatabase | ErrorCode::DatabaseCorrupt => ErrorKind::Corrupt,
                    _ => ErrorKind::Other,
                },
                rusqlite::Error::InvalidColumnType(..)
                | rusqlite::Error::FromSqlConversionFailure(..)
                | rusqlite::Error::IntegralValueOutOfRange(..) => ErrorKind::BadRow,
                _ => ErrorKind::Other,
            },
            StoreError::Dir { .. } => ErrorKind::Unreadable,
            StoreError::TooNew { .. } => ErrorKind::TooNew,
            StoreError::TooOld { .. } => ErrorKind::TooOld,
            StoreError::InvalidVersion { .. } => ErrorKind::Other,
            StoreError::BadRow { .. } => ErrorKind::BadRow,
        }
    }
}

impl StoreError {
    /// The database is not there yet, or not yet migrated: what a role that reads it
    /// sees while the cluster manager is still starting (it creates the file, then
    /// migrates it in one transaction). SQLite's "unable to open" counts whether or not
    /// the file is there by the time this is asked: the manager may create it between
    /// the two (a file that cannot be opened for another reason is a problem all the
    /// same once the wait is over).
    pub fn is_not_ready(&self) -> bool {
        match self {
            StoreError::TooOld { .. } => true,
            StoreError::Sqlite {
                cause: rusqlite::Error::SqliteFailure(f, _),
                ..
            } => f.code == rusqlite::ErrorCode::CannotOpen,
            _ => false,
        }
    }
}

/// A count or limit as SQLite's INTEGER (saturating: no count reaches it).
pub(crate) fn sql_count(n: usize) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// Attaches the database's path to a SQLite error: `.at(&self.path)?`.
trait At<T> {
    fn at(self, path: &Path) -> Result<T>;
}

impl<T> At<T> for rusqlite::Result<T> {
    fn at(self, path: &Path) -> Result<T> {
        self.map_err(|cause| StoreError::Sqlite {
            path: path.to_path_buf(),
            cause,
        })
    }
}

pub struct Store {
    conn: Connection,
    path: PathBuf,
    /// (device, inode) of the file when opened, to notice a replaced or deleted file.
    file: Option<(u64, u64)>,
}

fn identity(path: &Path) -> Option<(u64, u64)> {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(path).ok().map(|m| (m.dev(), m.ino()))
}

impl Store {
    /// Opens (creating if needed) the database for writing and brings the schema up to
    /// date. The cluster manager's open: the only one that migrates.
    pub fn open(path: &Path) -> Result<Store> {
        if let Some(dir) = path.parent() {
            if !dir.as_os_str().is_empty() && !dir.exists() {
                std::fs::create_dir_all(dir).map_err(|cause| StoreError::Dir {
                    path: path.to_path_buf(),
                    cause,
                })?;
            }
        }
        let conn = Connection::open(path).at(path)?;
        let mut store = Store {
            conn,
            path: path.to_path_buf(),
            file: identity(path),
        };
        store.configure()?;
        migrations::migrate(&mut store.conn).map_err(|e| match e {
            migrations::MigrateError::Sqlite(cause) => StoreError::Sqlite {
                path: path.to_path_buf(),
                cause,
            },
            migrations::MigrateError::TooNew { found, known } => StoreError::TooNew {
                path: path.to_path_buf(),
                found,
                known,
            },
            migrations::MigrateError::Invalid { found } => StoreError::InvalidVersion {
                path: path.to_path_buf(),
                found,
            },
        })?;
        Ok(store)
    }

    /// Opens an existing database for writing without migrating it: for roles that
    /// append audit entries next to the cluster manager. Fails when the file does not
    /// exist or its schema is not the one this binary knows.
    pub(crate) fn open_writer(path: &Path) -> Result<Store> {
        let conn = Connection::open_with_flags(
            path,
            OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .at(path)?;
        let store = Store {
            conn,
            path: path.to_path_buf(),
            file: identity(path),
        };
        store.configure()?;
        store.check_version()?;
        Ok(store)
    }

    /// Opens an existing database for reading (monitor, status, web UI). Fails if the
    /// file does not exist or its schema is not the one this binary knows.
    pub fn open_read_only(path: &Path) -> Result<Store> {
        let conn = Connection::open_with_flags(
            path,
            OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .at(path)?;
        conn.busy_timeout(BUSY_TIMEOUT).at(path)?;
        let store = Store {
            conn,
            path: path.to_path_buf(),
            file: identity(path),
        };
        store.check_version()?;
        Ok(store)
    }

    fn check_version(&self) -> Result<()> {
        let found = self.schema_version()?;
        let known = migrations::LATEST;
        let path = self.path.clone();
        if found < 0 {
            return Err(StoreError::InvalidVersion { path, found });
        }
        match found.cmp(&known) {
            std::cmp::Ordering::Greater => Err(StoreError::TooNew { path, found, known }),
            std::cmp::Ordering::Less => Err(StoreError::TooOld { path, found, known }),
            std::cmp::Ordering::Equal => Ok(()),
        }
    }

    fn configure(&self) -> Result<()> {
        self.conn.busy_timeout(BUSY_TIMEOUT).at(&self.path)?;
        let mode: String = self
            .conn
            .query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))
            .at(&self.path)?;
        if !mode.eq_ignore_ascii_case("wal") {
            tracing::warn!(path = %self.path.display(), mode, "database is not in WAL mode");
        }
        self.conn
            .execute_batch("PRAGMA synchronous = NORMAL; PRAGMA foreign_keys = ON;")
            .at(&self.path)
    }

    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// True when the file at the path is no longer the one this connection opened: it
    /// was deleted, or replaced by another file.
    pub(crate) fn file_replaced(&self) -> bool {
        identity(&self.path) != self.file
    }

    pub(crate) fn schema_version(&self) -> Result<i64> {
        self.conn
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .at(&self.path)
    }

    /// Total rows changed on this connection (for tests and benchmarks).
    pub fn total_changes(&self) -> u64 {
        self.conn.total_changes()
    }

    /// When the last successful poll finished, as a whole second (the resolution of the
    /// cluster tables).
    fn last_ok_second(&self) -> Result<Option<Timestamp>> {
        polls::last_ok_second(&self.conn).at(&self.path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_database_still_to_be_made_is_not_ready_a_broken_one_is_a_problem() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("host.db");
        let missing = Store::open_writer(&db).err().unwrap();
        assert!(missing.is_not_ready(), "{missing}");
        // The manager created the file meanwhile: the error stays "not ready".
        std::fs::write(&db, "").unwrap();
        assert!(missing.is_not_ready(), "{missing}");
        // Created, not migrated yet (schema version 0).
        let unmigrated = Store::open_writer(&db).err().unwrap();
        assert!(unmigrated.is_not_ready(), "{unmigrated}");
        std::fs::write(&db, "not sqlite at all, but long enough to have a header............................................").unwrap();
        let broken = Store::open_writer(&db).err().unwrap();
        assert!(!broken.is_not_ready(), "{broken}");
    }

    #[test]
    fn an_sqlite_error_is_told_once() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("host.db");
        std::fs::write(&db, "not sqlite at all, but long enough to have a header............................................").unwrap();
        let e = anyhow::Error::from(Store::open_read_only(&db).err().unwrap());
        let text = format!("{e:#}");
        assert_eq!(text.matches("not a database").count(), 1, "{text}");
        assert!(text.contains(&db.display().to_string()), "{text}");
    }

    #[test]
    fn a_second_writer_never_migrates() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("host.db");
        assert!(
            Store::open_writer(&db).is_err(),
            "a missing file is not created"
        );
        assert!(!db.exists());
        Store::open(&db).unwrap();
        let w = Store::open_writer(&db).unwrap();
        w.conn.pragma_update(None, "user_version", 1).unwrap();
        drop(w);
        assert!(matches!(
            Store::open_writer(&db),
            Err(StoreError::TooOld { found: 1, .. })
        ));
        assert!(matches!(
            Store::open_read_only(&db),
            Err(StoreError::TooOld { found: 1, .. })
        ));
    }
}
