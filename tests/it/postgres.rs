//! SkyPilot's state in PostgreSQL: the real SkyPilot 0.14.1 API server (a server of the
//! test's own) with `SKYPILOT_DB_CONNECTION_URI` pointing at the throwaway PostgreSQL that
//! `scripts/test.sh` starts (`start_postgres` in scripts/lib.sh), and the real cluster
//! manager polling it.
//!
//! - clusters created through SkyPilot's own Python API land in PostgreSQL (`psql`), the
//!   cluster manager and `skypilot-host status` list them, and a restarted API server
//!   still has them;
//! - PostgreSQL stopped makes the cluster manager report stale with SkyPilot's own error
//!   (keeping the last known state, recording no transition), and once PostgreSQL is back
//!   the next poll is a success that records what changed meanwhile: no lost transition.
//!
//! The outage lasts [`OUTAGE`] (20 s, ten polls of 2 s) instead of a minute: what matters
//! is that several polls fail in a row and the backoff is capped at the poll interval.
//!
//! Each test run gets a database of its own in that PostgreSQL; the tests of this file
//! share one lock because one of them stops PostgreSQL.

use std::path::PathBuf;
use std::process::Command;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::support::host::{cluster, open_db, Host, HostProcess};
use crate::support::real::{unique, OwnServer};

/// How long PostgreSQL stays down.
const OUTAGE: Duration = Duration::from_secs(20);
/// The cluster manager's poll interval in these tests.
const POLL_SECS: u64 = 2;

pub(crate) static POSTGRES: Mutex<()> = Mutex::new(());

/// The throwaway PostgreSQL of scripts/test.sh.
pub(crate) struct Postgres {
    /// Directory of its Unix socket.
    pub(crate) host: String,
    /// DIR/ctl: pg_ctl as the user PostgreSQL runs as (`start`, `stop -m fast`).
    ctl: PathBuf,
    /// Its programs (psql, createdb).
    pub(crate) bin: PathBuf,
}

fn env(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| {
        panic!(
            "environment variable {name} is not set: these tests need the throwaway PostgreSQL \
             that scripts/test.sh starts (start_postgres in scripts/lib.sh) and exports"
        )
    })
}

impl Postgres {
    pub(crate) fn from_env() -> Postgres {
        Postgres {
            host: env("SKYPILOT_TEST_PG_HOST"),
            ctl: PathBuf::from(env("SKYPILOT_TEST_PG_CTL")),
            bin: PathBuf::from(env("SKYPILOT_TEST_PG_BIN")),
        }
    }

    /// `psql -At` of one statement in database `db`; panics with psql's error.
    pub(crate) fn psql(&self, db: &str, sql: &str) -> String {
        let out = Command::new(self.bin.join("psql"))
            .args(["-X", "-At", "-v", "ON_ERROR_STOP=1", "-h", &self.host])
            .args(["-U", "skypilot", "-d", db, "-c", sql])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "psql {sql:?} on {db}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    /// A new database; returns its name and SkyPilot's connection URI for it.
    pub(crate) fn new_database(&self) -> (String, String) {
        let name = unique("sky").replace('-', "_");
        self.psql("skypilot", &format!("CREATE DATABASE {name}"));
        let uri = format!("postgresql+psycopg2://skypilot@/{name}?host={}", self.host);
        (name, uri)
    }

    fn ctl(&self, args: &[&str]) {
        let out = Command::new(&self.ctl).args(args).output().unwrap();
        assert!(
            out.status.success(),
            "{} {args:?}: {}{}",
            self.ctl.display(),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Stops PostgreSQL; it is started again when the guard is dropped (also when the
    /// test fails), unless [`Outage::end`] did it first.
    fn stop(&self) -> Outage<'_> {
        self.ctl(&["stop", "-m", "fast"]);
        Outage {
            pg: self,
            up: false,
        }
    }
}

struct Outage<'a> {
    pg: &'a Postgres,
    up: bool,
}

impl Outage<'_> {
    fn end(mut self) {
        self.pg.ctl(&["start"]);
        self.up = true;
    }
}

impl Drop for Outage<'_> {
    fn drop(&mut self) {
        if !self.up {
            let _ = Command::new(&self.pg.ctl).arg("start").output();
        }
    }
}

/// A host config for `server` with a request timeout long enough for a fresh server's
/// first answers, and the manager on it.
fn manager_for(server: &OwnServer) -> (Host, HostProcess) {
    let host = Host::new(&server.url, POLL_SECS, 300);
    let text = std::fs::read_to_string(&host.config)
        .unwrap()
        .replace("request_timeout_secs = 5", "request_timeout_secs = 30");
    std::fs::write(&host.config, text).unwrap();
    let manager = host.spawn_manager();
    (host, manager)
}

fn fresh(s: &Value) -> bool {
    s["state"]["stale"] == false
}

fn status_of<'a>(s: &'a Value, name: &str) -> Option<&'a str> {
    cluster(s, name).and_then(|c| c["status"].as_str())
}

fn transitions(host: &Host, name: &str) -> Vec<(Option<String>, String)> {
    let db = open_db(&host.db);
    let mut q = db
        .prepare("SELECT from_status, to_status FROM transitions WHERE cluster = ?1 ORDER BY id")
        .unwrap();
    let rows = q
        .query_map([name], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap()
        .collect::<Result<Vec<_>, _>>()
        .unwrap();
    rows
}

/// Polls recorded after the poll with id `after`: (outcome, error).
fn polls_after(host: &Host, after: i64) -> Vec<(String, Option<String>)> {
    let db = open_db(&host.db);
    let mut q = db
        .prepare("SELECT outcome, error FROM poll_runs WHERE id > ?1 ORDER BY id")
        .unwrap();
    let rows = q
        .query_map([after], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap()
        .collect::<Result<Vec<_>, _>>()
        .unwrap();
    rows
}

fn last_poll_id(host: &Host) -> i64 {
    open_db(&host.db)
        .query_row("SELECT COALESCE(MAX(id), 0) FROM poll_runs", [], |r| {
            r.get(0)
        })
        .unwrap()
}

#[test]
fn skypilot_state_in_postgresql_survives_a_restart_and_an_outage_loses_no_transition() {
    let _serial = POSTGRES.lock().unwrap_or_else(|e| e.into_inner());
    let pg = Postgres::from_env();
    let (db, uri) = pg.new_database();
    let mut server = OwnServer::start_with(&[("SKYPILOT_DB_CONNECTION_URI", uri.as_str())]);

    // Clusters made through SkyPilot's own API land in PostgreSQL.
    let up = unique("pg-up");
    let stopped = unique("pg-stopped");
    let init = unique("pg-init");
    server.skyctl(&["create", &up]);
    server.skyctl(&["create", &stopped, "--status", "STOPPED"]);
    server.skyctl(&["create", &init, "--status", "INIT"]);
    let rows = pg.psql(
        &db,
        "SELECT name || '|' || status FROM clusters ORDER BY name",
    );
    let mut want = vec![
        format!("{up}|UP"),
        format!("{stopped}|STOPPED"),
        format!("{init}|INIT"),
    ];
    want.sort();
    assert_eq!(rows.lines().collect::<Vec<_>>(), want, "clusters in {db}");

    // The cluster manager reads them through SkyPilot; `status` lists them.
    let (host, mut manager) = manager_for(&server);
    let all_three = |s: &Value| {
        fresh(s)
            && status_of(s, &up) == Some("UP")
            && status_of(s, &stopped) == Some("STOPPED")
            && status_of(s, &init) == Some("INIT")
    };
    host.wait_status(
        "the three clusters from PostgreSQL",
        Duration::from_secs(120),
        all_three,
    );
    let table = host.status_table();
    for name in [&up, &stopped, &init] {
        assert!(table.contains(name.as_str()), "{name} in:\n{table}");
    }

    // The API server restarted (killed, as a crash would) still has them.
    server = server.kill();
    let down_since = last_poll_id(&host);
    host.wait_status(
        "stale while the API server is down",
        Duration::from_secs(60),
        |s| !fresh(s),
    );
    server = server.restart();
    host.wait_status(
        "the three clusters after the API server's restart",
        Duration::from_secs(120),
        all_three,
    );
    assert!(
        polls_after(&host, down_since)
            .iter()
            .any(|(outcome, _)| outcome == "error"),
        "the restart was noticed by a failed poll"
    );

    // PostgreSQL stopped: stale, with SkyPilot's error; the last known state is kept.
    let outage = pg.stop();
    let stale = host.wait_status(
        "stale with SkyPilot's database error",
        Duration::from_secs(60),
        |s| {
            !fresh(s)
                && s["state"]["last_error"]
                    .as_str()
                    .is_some_and(|e| e.contains("OperationalError"))
        },
    );
    let error = stale["state"]["last_error"].as_str().unwrap();
    assert!(error.contains(&server.url), "{error}");
    assert!(error.contains("psycopg2"), "SkyPilot's own error: {error}");
    assert_eq!(status_of(&stale, &up), Some("UP"), "last known state kept");
    assert_eq!(status_of(&stale, &stopped), Some("STOPPED"));
    let stale_since = last_poll_id(&host);
    std::thread::sleep(OUTAGE);
    let during = polls_after(&host, stale_since);
    let failed = during.iter().filter(|(o, _)| o == "error").count();
    assert!(
        failed >= 3 && during.iter().all(|(o, _)| o == "error"),
        "every poll during the outage failed, several of them: {during:?}"
    );
    assert!(
        manager.is_running(),
        "the manager keeps running:\n{}",
        manager.log_text()
    );

    // PostgreSQL back; a change made right away is recorded by the next good poll.
    outage.end();
    let back = last_poll_id(&host);
    server.skyctl(&["set-status", &up, "STOPPED"]);
    let started = Instant::now();
    let recovered = host.wait_status(
        "fresh again with the change made after the outage",
        Duration::from_secs(60),
        |s| fresh(s) && status_of(s, &up) == Some("STOPPED"),
    );
    let after = polls_after(&host, back);
    let first_ok = after.iter().position(|(o, _)| o == "ok").unwrap();
    assert!(
        first_ok <= 1,
        "recovered within one poll of PostgreSQL's return (at most one poll in flight \
         failed): {after:?} ({:?} after the change)",
        started.elapsed()
    );
    assert_eq!(status_of(&recovered, &init), Some("INIT"));

    // No lost transition, none invented: nothing went GONE during the outage.
    assert_eq!(
        transitions(&host, &up),
        [
            (None, "UP".to_string()),
            (Some("UP".into()), "STOPPED".into())
        ]
    );
    assert_eq!(
        transitions(&host, &stopped),
        [(None, "STOPPED".to_string())]
    );
    assert_eq!(transitions(&host, &init), [(None, "INIT".to_string())]);

    // And SkyPilot's own record is PostgreSQL's.
    assert_eq!(
        pg.psql(
            &db,
            &format!("SELECT status FROM clusters WHERE name = '{up}'")
        )
        .trim(),
        "STOPPED"
    );
    manager.terminate();
}
