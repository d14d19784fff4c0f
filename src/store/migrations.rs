//! Versioned schema migrations, tracked in `PRAGMA user_version`. Each step runs in its
//! own transaction; a step is never edited once released, only followed by a new one.

use rusqlite::{Connection, TransactionBehavior};

pub(crate) const MIGRATIONS: &[&str] = &[
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
    // 2: audit action/outcome and the poll's refresh mode are closed sets. SQLite adds a
    // CHECK only by rebuilding the table. Audit rows of an unknown kind (no release ever
    // wrote one) are kept in `audit_v1`, not dropped.
    r#"
ALTER TABLE audit RENAME TO audit_v1;
DROP INDEX audit_by_cluster;
CREATE TABLE audit (
    id      INTEGER PRIMARY KEY,
    at      REAL NOT NULL,
    actor   TEXT NOT NULL,
    action  TEXT NOT NULL CHECK (action IN ('autostop', 'cancel_autostop', 'stop', 'down', 'start', 'login', 'logout')),
    cluster TEXT,
    outcome TEXT NOT NULL CHECK (outcome IN ('ok', 'error', 'dry_run', 'refused', 'failure')),
    detail  TEXT
);
CREATE INDEX audit_by_cluster ON audit (cluster, id);
CREATE INDEX audit_by_time ON audit (at);
INSERT INTO audit (id, at, actor, action, cluster, outcome, detail)
    SELECT id, at, actor, action, cluster, outcome, detail FROM audit_v1
    WHERE action IN ('autostop', 'cancel_autostop', 'stop', 'down', 'start', 'login', 'logout')
      AND outcome IN ('ok', 'error', 'dry_run', 'refused', 'failure');
DELETE FROM audit_v1 WHERE id IN (SELECT id FROM audit);
ALTER TABLE poll_runs RENAME TO poll_runs_v1;
DROP INDEX poll_runs_by_outcome;
CREATE TABLE poll_runs (
    id          INTEGER PRIMARY KEY,
    started_at  REAL NOT NULL,
    finished_at REAL NOT NULL,
    refresh     TEXT NOT NULL CHECK (refresh IN ('NONE', 'AUTO', 'FORCE')),
    outcome     TEXT NOT NULL CHECK (outcome IN ('ok', 'error')),
    error_kind  TEXT,
    error       TEXT,
    clusters    INTEGER,
    changes     INTEGER
);
CREATE INDEX poll_runs_by_outcome ON poll_runs (outcome, id);
INSERT INTO poll_runs SELECT * FROM poll_runs_v1;
DROP TABLE poll_runs_v1;
"#,
    // 3: the cluster manager's load on the API server and the poll interval it chose.
    r#"
CREATE TABLE poll_load (
    id            INTEGER PRIMARY KEY CHECK (id = 1),
    measured_at   REAL NOT NULL,
    status_secs   REAL NOT NULL CHECK (status_secs >= 0),
    interval_secs REAL NOT NULL CHECK (interval_secs > 0),
    share         REAL NOT NULL CHECK (share >= 0),
    budget        REAL NOT NULL CHECK (budget > 0 AND budget <= 1)
);
"#,
    // 4: the audit also records requests through the gateway and role syncs.
    r#"
ALTER TABLE audit RENAME TO audit_v3;
DROP INDEX audit_by_cluster;
DROP INDEX audit_by_time;
CREATE TABLE audit (
    id      INTEGER PRIMARY KEY,
    at      REAL NOT NULL,
    actor   TEXT NOT NULL,
    action  TEXT NOT NULL CHECK (action IN ('autostop', 'cancel_autostop', 'stop', 'down', 'start', 'login', 'logout', 'request', 'role')),
    cluster TEXT,
    outcome TEXT NOT NULL CHECK (outcome IN ('ok', 'error', 'dry_run', 'refused', 'failure')),
    detail  TEXT
);
CREATE INDEX audit_by_cluster ON audit (cluster, id);
CREATE INDEX audit_by_time ON audit (at);
INSERT INTO audit SELECT * FROM audit_v3;
DROP TABLE audit_v3;
"#,
    // 5: the console reads the audit by actor (the enforcer's actions) and by action.
    r#"
CREATE INDEX audit_by_actor ON audit (actor, id);
CREATE INDEX audit_by_action ON audit (action, id);
"#,
    // 6: the web UI's console sessions outlive a restart; only the id's digest is kept.
    r#"
CREATE TABLE sessions (
    id_digest TEXT PRIMARY KEY,
    name      TEXT NOT NULL,
    created   REAL NOT NULL,
    expires   REAL NOT NULL
);
CREATE INDEX sessions_by_expiry ON sessions (expires);
"#,
    // 7: single sign-on sessions keep the person's groups (NULL: a users-file login);
    // CLI logins (`sky api login`), revocable one by one, by the digest of their secret.
    r#"
ALTER TABLE sessions ADD COLUMN groups TEXT;
CREATE TABLE cli_logins (
    id            INTEGER PRIMARY KEY,
    secret_digest TEXT NOT NULL UNIQUE,
    name          TEXT NOT NULL,
    groups        TEXT,
    created       REAL NOT NULL,
    expires       REAL NOT NULL,
    last_used     REAL
);
CREATE INDEX cli_logins_by_name ON cli_logins (name, id);
CREATE INDEX cli_logins_by_expiry ON cli_logins (expires);
"#,
    // 8: the API server's CPU as measured (and how); where a cluster's price comes from;
    // the fleet over time (the Overview's charts); the autostop enforcer's last pass.
    r#"
ALTER TABLE poll_load ADD COLUMN cpu_secs REAL;
ALTER TABLE poll_load ADD COLUMN cpu_source TEXT;
ALTER TABLE clusters ADD COLUMN price_source TEXT CHECK (price_source IN ('cost_report', 'catalog'));
UPDATE clusters SET price_source = 'cost_report' WHERE hourly_cost IS NOT NULL;
CREATE TABLE fleet_samples (
    at       REAL PRIMARY KEY,
    init     INTEGER NOT NULL,
    up       INTEGER NOT NULL,
    stopped  INTEGER NOT NULL,
    burn     REAL NOT NULL,
    unpriced INTEGER NOT NULL
);
CREATE TABLE autostop_pass (
    id          INTEGER PRIMARY KEY CHECK (id = 1),
    at          REAL NOT NULL,
    clusters    INTEGER NOT NULL,
    acted       INTEGER NOT NULL,
    failed      INTEGER NOT NULL,
    held        INTEGER NOT NULL,
    not_sent    INTEGER NOT NULL,
    held_at     REAL,
    held_reason TEXT
);
"#,
    // 9: managed jobs as SkyPilot's job queue lists them (a job that disappears is kept
    // as GONE, its last status in last_status), their status changes, and the state of
    // each feed polled besides /status (jobs, services): when it was last read, and the
    // error of the last attempt when it failed.
    r#"
CREATE TABLE managed_jobs (
    job_id         INTEGER NOT NULL,
    task_id        INTEGER NOT NULL,
    name           TEXT NOT NULL,
    status         TEXT NOT NULL CHECK (status IN ('PENDING', 'SUBMITTED', 'STARTING', 'RUNNING', 'WINDING_DOWN', 'RECOVERING', 'CANCELLING', 'SUCCEEDED', 'CANCELLED', 'FAILED', 'FAILED_SETUP', 'FAILED_PRECHECKS', 'FAILED_NO_RESOURCE', 'FAILED_CONTROLLER', 'GONE')),
    last_status    TEXT,
    workspace      TEXT NOT NULL,
    user_name      TEXT,
    user_hash      TEXT,
    pool           TEXT,
    resources      TEXT,
    infra          TEXT,
    cloud          TEXT,
    region         TEXT,
    recovery_count INTEGER NOT NULL,
    cluster        TEXT,
    submitted_at   REAL,
    started_at     REAL,
    ended_at       REAL,
    failure_reason TEXT,
    first_seen     REAL NOT NULL,
    last_changed   REAL NOT NULL,
    gone_at        REAL,
    PRIMARY KEY (job_id, task_id)
);
CREATE INDEX managed_jobs_by_status ON managed_jobs (status);
CREATE TABLE job_transitions (
    id          INTEGER PRIMARY KEY,
    job_id      INTEGER NOT NULL,
    task_id     INTEGER NOT NULL,
    from_status TEXT,
    to_status   TEXT NOT NULL,
    at          REAL NOT NULL
);
CREATE INDEX job_transitions_by_job ON job_transitions (job_id, at);
CREATE TABLE feeds (
    name         TEXT PRIMARY KEY NOT NULL CHECK (name IN ('jobs', 'services')),
    attempted_at REAL NOT NULL,
    ok_at        REAL,
    records      INTEGER,
    seconds      REAL,
    interval_secs REAL,
    error_kind   TEXT,
    error        TEXT
);
"#,
    // 10: SkyServe services as /serve/status lists them (a service that disappears is
    // kept as GONE, its last status in last_status), their replicas as JSON, and their
    // status changes.
    r#"
CREATE TABLE services (
    name            TEXT PRIMARY KEY NOT NULL,
    status          TEXT NOT NULL CHECK (status IN ('CONTROLLER_INIT', 'REPLICA_INIT', 'CONTROLLER_FAILED', 'READY', 'SHUTTING_DOWN', 'FAILED', 'FAILED_CLEANUP', 'NO_REPLICA', 'GONE')),
    last_status     TEXT,
    user_name       TEXT,
    user_hash       TEXT,
    endpoint        TEXT,
    policy          TEXT,
    resources       TEXT,
    version         INTEGER,
    ready_since     REAL,
    tls             INTEGER NOT NULL,
    target_replicas INTEGER,
    ready_replicas  INTEGER NOT NULL,
    replicas        TEXT NOT NULL,
    first_seen      REAL NOT NULL,
    last_changed    REAL NOT NULL,
    gone_at         REAL
);
CREATE TABLE service_transitions (
    id          INTEGER PRIMARY KEY,
    service     TEXT NOT NULL,
    from_status TEXT,
    to_status   TEXT NOT NULL,
    at          REAL NOT NULL
);
CREATE INDEX service_transitions_by_service ON service_transitions (service, at);
"#,
];

/// The schema version of this binary: the number of migrations (a small constant).
pub(crate) const LATEST: i64 = MIGRATIONS.len() as i64;

#[derive(Debug)]
pub(crate) enum MigrateError {
    Sqlite(rusqlite::Error),
    TooNew { found: i64, known: i64 },
    Invalid { found: i64 },
}

impl From<rusqlite::Error> for MigrateError {
    fn from(e: rusqlite::Error) -> Self {
        MigrateError::Sqlite(e)
    }
}

/// Brings the schema up to date. Each step reads the version and applies itself inside
/// one `BEGIN IMMEDIATE` transaction, so two processes migrating at once take turns and
/// the second finds the work done.
pub(crate) fn migrate(conn: &mut Connection) -> Result<(), MigrateError> {
    loop {
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let current: i64 = tx.query_row("PRAGMA user_version", [], |r| r.get(0))?;
        if current > LATEST {
            return Err(MigrateError::TooNew {
                found: current,
                known: LATEST,
            });
        }
        // A negative version is none that skypilot-host ever wrote.
        let Ok(done) = usize::try_from(current) else {
            return Err(MigrateError::Invalid { found: current });
        };
        let Some(sql) = MIGRATIONS.get(done) else {
            return Ok(());
        };
        tx.execute_batch(sql)?;
        let version = done + 1;
        tx.pragma_update(None, "user_version", version)?;
        tx.commit()?;
        tracing::info!(version, "host database migrated");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::skypilot::RefreshMode;
    use crate::store::{AuditAction, AuditOutcome};

    fn migrated() -> Connection {
        let mut c = Connection::open_in_memory().unwrap();
        migrate(&mut c).unwrap();
        c
    }

    #[test]
    fn check_constraints_match_the_enums() {
        let c = migrated();
        for a in AuditAction::ALL {
            for o in AuditOutcome::ALL {
                c.execute(
                    "INSERT INTO audit (at, actor, action, outcome) VALUES (1, 't', ?1, ?2)",
                    (a, o),
                )
                .unwrap_or_else(|e| panic!("{a}/{o}: {e}"));
            }
        }
        for r in [RefreshMode::None, RefreshMode::Auto, RefreshMode::Force] {
            c.execute(
                "INSERT INTO poll_runs (started_at, finished_at, refresh, outcome) VALUES (1, 2, ?1, 'ok')",
                [r],
            )
            .unwrap_or_else(|e| panic!("{r}: {e}"));
        }
        let bad_action = c.execute(
            "INSERT INTO audit (at, actor, action, outcome) VALUES (1, 't', 'reboot', 'ok')",
            [],
        );
        assert!(bad_action.is_err());
        let bad_outcome = c.execute(
            "INSERT INTO audit (at, actor, action, outcome) VALUES (1, 't', 'stop', 'maybe')",
            [],
        );
        assert!(bad_outcome.is_err());
        let bad_refresh = c.execute(
            "INSERT INTO poll_runs (started_at, finished_at, refresh, outcome) VALUES (1, 2, 'SOMETIMES', 'ok')",
            [],
        );
        assert!(bad_refresh.is_err());
    }

    #[test]
    fn version_one_rows_survive_and_unknown_audit_rows_are_kept_aside() {
        let mut c = Connection::open_in_memory().unwrap();
        c.execute_batch(MIGRATIONS[0]).unwrap();
        c.pragma_update(None, "user_version", 1).unwrap();
        c.execute_batch(
            "INSERT INTO audit (at, actor, action, cluster, outcome) VALUES (5, 'autostop', 'stop', 'a', 'ok');
             INSERT INTO audit (at, actor, action, cluster, outcome) VALUES (6, 'x', 'frobnicate', 'b', 'ok');
             INSERT INTO poll_runs (started_at, finished_at, refresh, outcome) VALUES (1, 2, 'FORCE', 'ok');",
        )
        .unwrap();
        migrate(&mut c).unwrap();
        let v: i64 = c
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .unwrap();
        assert_eq!(v, LATEST);
        let kept: Vec<String> = c
            .prepare("SELECT action FROM audit")
            .unwrap()
            .query_map([], |r| r.get(0))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(kept, ["stop"]);
        let aside: String = c
            .query_row("SELECT action FROM audit_v1", [], |r| r.get(0))
            .unwrap();
        assert_eq!(aside, "frobnicate");
        let polls: i64 = c
            .query_row("SELECT COUNT(*) FROM poll_runs", [], |r| r.get(0))
            .unwrap();
        assert_eq!(polls, 1);
    }

    #[test]
    fn a_negative_version_is_refused() {
        let mut c = Connection::open_in_memory().unwrap();
        c.pragma_update(None, "user_version", -1).unwrap();
        assert!(matches!(
            migrate(&mut c),
            Err(MigrateError::Invalid { found: -1 })
        ));
    }
}
