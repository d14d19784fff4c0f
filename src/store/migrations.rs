//! Versioned schema migrations, tracked in `PRAGMA user_version`. Each step runs in its
//! own transaction; a step is never edited once released, only followed by a new one.

use rusqlite::Connection;

pub const MIGRATIONS: &[&str] = &[
    // 1: clusters, transitions, poll runs, API server health, audit.
    r#"
CREATE TABLE clusters (
    name              TEXT PRIMARY KEY NOT NULL,
    cluster_hash      TEXT NOT NULL,
    status            TEXT NOT NULL CHECK (status IN ('INIT', 'UP', 'STOPPED', 'GONE')),
    cloud             TEXT,
    region            TEXT,
    zone              TEXT,
    instance_type     TEXT,
    nodes             INTEGER NOT NULL DEFAULT 1,
    cpus              TEXT,
    memory            TEXT,
    accelerators      TEXT,
    resources         TEXT,
    workspace         TEXT NOT NULL DEFAULT 'default',
    user_name         TEXT,
    user_hash         TEXT,
    launched_at       INTEGER,
    status_updated_at INTEGER,
    autostop_minutes  INTEGER NOT NULL DEFAULT -1,
    autostop_to_down  INTEGER NOT NULL DEFAULT 0,
    is_managed        INTEGER NOT NULL DEFAULT 0,
    last_use          TEXT,
    hourly_cost       REAL,
    total_cost        REAL,
    first_seen        INTEGER NOT NULL,
    last_seen         INTEGER NOT NULL,
    last_changed      INTEGER NOT NULL,
    gone_at           INTEGER
);
CREATE TABLE transitions (
    id          INTEGER PRIMARY KEY,
    cluster     TEXT NOT NULL,
    from_status TEXT,
    to_status   TEXT NOT NULL,
    at          INTEGER NOT NULL
);
CREATE INDEX transitions_by_cluster ON transitions (cluster, at);
CREATE TABLE poll_runs (
    id          INTEGER PRIMARY KEY,
    started_at  REAL NOT NULL,
    finished_at REAL NOT NULL,
    refresh     TEXT NOT NULL,
    outcome     TEXT NOT NULL CHECK (outcome IN ('ok', 'error')),
    error_kind  TEXT,
    error       TEXT,
    clusters    INTEGER,
    changes     INTEGER
);
CREATE INDEX poll_runs_by_outcome ON poll_runs (outcome, id);
CREATE TABLE api_server (
    id          INTEGER PRIMARY KEY CHECK (id = 1),
    checked_at  REAL NOT NULL,
    healthy     INTEGER NOT NULL,
    version     TEXT,
    api_version TEXT,
    commit_hash TEXT,
    latency_ms  REAL,
    error       TEXT
);
CREATE TABLE audit (
    id      INTEGER PRIMARY KEY,
    at      REAL NOT NULL,
    actor   TEXT NOT NULL,
    action  TEXT NOT NULL,
    cluster TEXT,
    outcome TEXT NOT NULL,
    detail  TEXT
);
CREATE INDEX audit_by_cluster ON audit (cluster, id);
"#,
];

pub const LATEST: i64 = MIGRATIONS.len() as i64;

#[derive(Debug)]
pub enum MigrateError {
    Sqlite(rusqlite::Error),
    TooNew { found: i64, known: i64 },
}

impl From<rusqlite::Error> for MigrateError {
    fn from(e: rusqlite::Error) -> Self {
        MigrateError::Sqlite(e)
    }
}

pub fn migrate(conn: &mut Connection) -> Result<(), MigrateError> {
    let current: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    if current > LATEST {
        return Err(MigrateError::TooNew {
            found: current,
            known: LATEST,
        });
    }
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(current as usize) {
        let tx = conn.transaction()?;
        tx.execute_batch(sql)?;
        tx.pragma_update(None, "user_version", (i + 1) as i64)?;
        tx.commit()?;
        tracing::info!(version = i + 1, "host database migrated");
    }
    Ok(())
}
