//! The monitor's typed reads of the host database: the fleet as one scrape shows it, and
//! the version counter that tells whether anything was committed since the last scrape.

use std::sync::Arc;

use rusqlite::types::ValueRef;

use super::{At, Result, Store};
use crate::cluster::ClusterStatus;
use crate::time::Timestamp;

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
    pub(crate) price_source: Option<crate::cluster::PriceSource>,
}

impl FleetCluster {
    /// Cost so far (see `cluster::cost_so_far`).
    pub(crate) fn cost_so_far(&self, now: Timestamp) -> Option<f64> {
        crate::cluster::cost_so_far(
            self.status,
            self.hourly_cost,
            self.total_cost,
            self.price_source,
            self.launched_at,
            now,
        )
    }
}

/// The clusters table as a scrape reads it: every row that parses, ordered by name, and
/// the rows that do not, counted (one malformed row never hides the fleet).
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct FleetRead {
    /// Every cluster row that parses, gone ones included, ordered by name. Shared: a
    /// read that finds the same rows as the previous one hands out the same list.
    pub(crate) clusters: Arc<Vec<FleetCluster>>,
    /// Rows skipped because they do not parse.
    pub(crate) malformed: u64,
    /// The first skipped row and why, in words (names the database and the cluster).
    pub(crate) first_malformed: Option<String>,
    /// For each row in the order SQLite returned them, its index in `clusters`.
    scan_order: Arc<Vec<u32>>,
}

/// Shares equal strings: a fleet has few distinct clouds, regions, instance types and
/// workspaces, so a short list searched in order beats hashing every value.
#[derive(Default)]
struct Interner(Vec<Arc<str>>);

impl Interner {
    fn get(&mut self, s: Option<&str>) -> Arc<str> {
        let s = s.unwrap_or("");
        if let Some(a) = self.0.iter().find(|a| a.len() == s.len() && ***a == *s) {
            return a.clone();
        }
        let a: Arc<str> = Arc::from(s);
        // Beyond a few hundred distinct values the list stops sharing rather than slow
        // every row down.
        if self.0.len() < 256 {
            self.0.push(a.clone());
        }
        a
    }
}

const FLEET_QUERY: &str = "SELECT name, status, cloud, region, instance_type, workspace, launched_at, autostop_minutes, autostop_to_down, hourly_cost, total_cost, price_source FROM clusters";

impl Store {
    /// The clusters table as the monitor shows it: the eleven columns it uses, read row
    /// by row. A row that does not parse is skipped and counted in
    /// [`FleetRead::malformed`]; only a database-wide failure is an error.
    ///
    /// With `previous` (an earlier read, of this or another database), the rows are
    /// first compared with it in place, without building anything; when every row
    /// equals the one read then, `previous` is handed back (its lists shared). Any
    /// difference, or a previous read with malformed rows, means a full read.
    pub(crate) fn fleet_for_scrape(&self, previous: Option<&FleetRead>) -> Result<FleetRead> {
        let mut stmt = self.conn.prepare_cached(FLEET_QUERY).at(&self.path)?;
        if let Some(previous) = previous.filter(|p| p.malformed == 0) {
            let mut rows = stmt.query([]).at(&self.path)?;
            let mut order = previous.scan_order.iter();
            let mut same = true;
            while let Some(r) = rows.next().at(&self.path)? {
                let known = order
                    .next()
                    .and_then(|&i| previous.clusters.get(i as usize));
                if !known.is_some_and(|c| row_is(r, c)) {
                    same = false;
                    break;
                }
            }
            if same && order.next().is_none() {
                return Ok(previous.clone());
            }
        }
        let mut rows = stmt.query([]).at(&self.path)?;
        let mut clusters = Vec::new();
        let mut malformed = 0;
        let mut first_malformed = None;
        // One list per column: cloud, region, instance type, workspace.
        let mut strings: [Interner; 4] = Default::default();
        while let Some(r) = rows.next().at(&self.path)? {
            match fleet_row(r, &mut strings) {
                Ok(c) => clusters.push(c),
                Err(message) => {
                    let name = r
                        .get::<_, String>(0)
                        .unwrap_or_else(|_| "<unreadable name>".to_string());
                    tracing::debug!(database = %self.path.display(), cluster = %name, %message, "skipping a malformed clusters row");
                    first_malformed.get_or_insert_with(|| {
                        format!(
                            "host database {}: table clusters, row {name}: {message}",
                            self.path.display()
                        )
                    });
                    malformed += 1;
                }
            }
        }
        // Sorting here is cheaper than walking the name index in SQLite; the scan order
        // is kept to compare the next read in place.
        let mut order: Vec<u32> = (0..clusters.len() as u32).collect();
        order.sort_unstable_by(|&a, &b| clusters[a as usize].name.cmp(&clusters[b as usize].name));
        let mut scan_order = vec![0u32; order.len()];
        for (sorted, &scanned) in order.iter().enumerate() {
            scan_order[scanned as usize] = sorted as u32;
        }
        let mut slots: Vec<Option<FleetCluster>> = clusters.into_iter().map(Some).collect();
        let clusters = order
            .iter()
            .filter_map(|&i| slots.get_mut(i as usize).and_then(Option::take))
            .collect();
        Ok(FleetRead {
            clusters: Arc::new(clusters),
            malformed,
            first_malformed,
            scan_order: Arc::new(scan_order),
        })
    }

    /// Caps SQLite's page cache of this connection at `kib` KiB (`PRAGMA cache_size`).
    /// A reader that rereads only after another connection committed gains nothing from a
    /// large cache: SQLite drops it on such a commit anyway.
    pub(crate) fn limit_page_cache(&self, kib: u32) -> Result<()> {
        self.conn
            .execute_batch(&format!("PRAGMA cache_size = -{kib}"))
            .at(&self.path)
    }

    /// SQLite's `PRAGMA data_version` of this connection: it changes when another
    /// connection commits to the database, and only then. Values of different
    /// connections (or of a reopened store) are not comparable.
    pub(crate) fn data_version(&self) -> Result<i64> {
        self.conn
            .prepare_cached("PRAGMA data_version")
            .and_then(|mut s| s.query_row([], |r| r.get(0)))
            .at(&self.path)
    }
}

/// Whether a row of [`FLEET_QUERY`] would read as `c`: the same values as
/// [`fleet_row`] would give, compared without building anything. A value that does not
/// parse is a difference.
fn row_is(r: &rusqlite::Row<'_>, c: &FleetCluster) -> bool {
    let text = |i: usize| -> Option<&str> {
        match r.get_ref(i).ok()? {
            ValueRef::Null => Some(""),
            v => v.as_str().ok(),
        }
    };
    let name = match r.get_ref(0) {
        Ok(ValueRef::Text(t)) => std::str::from_utf8(t).ok(),
        _ => None,
    };
    name == Some(c.name.as_str())
        && text(1) == Some(c.status.as_str())
        && text(2) == Some(&*c.cloud)
        && text(3) == Some(&*c.region)
        && text(4) == Some(&*c.instance_type)
        && text(5) == Some(&*c.workspace)
        && r.get::<_, Option<Timestamp>>(6).ok() == Some(c.launched_at)
        && r.get::<_, i64>(7).ok() == Some(c.autostop_minutes)
        && r.get::<_, bool>(8).ok() == Some(c.autostop_to_down)
        && r.get::<_, Option<f64>>(9).ok() == Some(c.hourly_cost)
        && r.get::<_, Option<f64>>(10).ok() == Some(c.total_cost)
        && r.get::<_, Option<crate::cluster::PriceSource>>(11).ok() == Some(c.price_source)
}

/// One row of [`FLEET_QUERY`]; the error says which column does not parse and why.
fn fleet_row(
    r: &rusqlite::Row<'_>,
    strings: &mut [Interner; 4],
) -> std::result::Result<FleetCluster, String> {
    let e = |e: rusqlite::Error| e.to_string();
    let text = |i: usize| -> std::result::Result<Option<&str>, String> {
        match r.get_ref(i).map_err(e)? {
            ValueRef::Null => Ok(None),
            v => v.as_str().map(Some).map_err(|e| format!("column {i}: {e}")),
        }
    };
    let status = text(1)?.unwrap_or("");
    Ok(FleetCluster {
        name: r.get(0).map_err(e)?,
        status: status.parse::<ClusterStatus>()?,
        cloud: strings[0].get(text(2)?),
        region: strings[1].get(text(3)?),
        instance_type: strings[2].get(text(4)?),
        workspace: strings[3].get(text(5)?),
        launched_at: r.get(6).map_err(e)?,
        autostop_minutes: r.get(7).map_err(e)?,
        autostop_to_down: r.get(8).map_err(e)?,
        hourly_cost: r.get(9).map_err(e)?,
        total_cost: r.get(10).map_err(e)?,
        price_source: r.get(11).map_err(e)?,
    })
}

/// Writes of the cluster manager, for tests of readers: a second connection to a
/// migrated database.
#[cfg(test)]
pub(crate) struct TestWriter(rusqlite::Connection);

#[cfg(test)]
impl TestWriter {
    /// Creates (and migrates) the database at `path`.
    pub(crate) fn create(path: &std::path::Path) -> TestWriter {
        drop(Store::open(path).expect("create the database"));
        TestWriter(rusqlite::Connection::open(path).expect("open a writer"))
    }

    fn run(&self, sql: &str, params: impl rusqlite::Params) {
        self.0
            .execute(sql, params)
            .unwrap_or_else(|e| panic!("{sql}: {e}"));
    }

    /// An AWS `m6i.large` cluster in us-east-1, autostop 30 min, $0.5/h.
    pub(crate) fn add_cluster(&self, name: &str, status: &str, launched_at: i64) {
        self.run(
            "INSERT INTO clusters (name, cluster_hash, status, cloud, region, instance_type, workspace, launched_at, autostop_minutes, hourly_cost, first_seen, last_seen, last_changed)
             VALUES (?1, 'h', ?2, 'aws', 'us-east-1', 'm6i.large', 'default', ?3, 30, 0.5, 0, 0, 0)",
            rusqlite::params![name, status, launched_at],
        );
    }

    pub(crate) fn set_status(&self, name: &str, status: &str) {
        self.run(
            "UPDATE clusters SET status = ?2 WHERE name = ?1",
            rusqlite::params![name, status],
        );
    }

    pub(crate) fn set_price(&self, name: &str, hourly_cost: f64) {
        self.run(
            "UPDATE clusters SET hourly_cost = ?2, price_source = 'cost_report' WHERE name = ?1",
            rusqlite::params![name, hourly_cost],
        );
    }

    /// A successful poll that finished at `finished`.
    pub(crate) fn add_poll(&self, finished: f64) {
        self.run(
            "INSERT INTO poll_runs (started_at, finished_at, refresh, outcome) VALUES (?1, ?2, 'NONE', 'ok')",
            [finished - 1.0, finished],
        );
    }

    /// A healthy API server check of version 0.14.1.
    pub(crate) fn set_api_server(&self, checked_at: f64, latency_ms: f64) {
        self.run(
            "INSERT INTO api_server (id, checked_at, healthy, version, latency_ms) VALUES (1, ?1, 1, '0.14.1', ?2)
             ON CONFLICT(id) DO UPDATE SET checked_at = excluded.checked_at, latency_ms = excluded.latency_ms",
            [checked_at, latency_ms],
        );
    }

    pub(crate) fn add_audit(&self, at: f64, action: &str, outcome: &str) {
        self.run(
            "INSERT INTO audit (at, actor, action, outcome) VALUES (?1, 'test', ?2, ?3)",
            rusqlite::params![at, action, outcome],
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A migrated database at `dir/host.db` and a writer connection to it.
    fn database(dir: &tempfile::TempDir) -> (std::path::PathBuf, rusqlite::Connection) {
        let path = dir.path().join("host.db");
        drop(Store::open(&path).expect("create the database"));
        let writer = rusqlite::Connection::open(&path).expect("open a writer");
        (path, writer)
    }

    fn insert(writer: &rusqlite::Connection, name: &str, status: &str, cloud: Option<&str>) {
        writer
            .execute(
                "INSERT INTO clusters (name, cluster_hash, status, cloud, region, instance_type, workspace, launched_at, autostop_minutes, autostop_to_down, hourly_cost, total_cost, first_seen, last_seen, last_changed)
                 VALUES (?1, 'h', ?2, ?3, 'r1', 't1', 'default', 1000, 30, 1, 0.5, 2.0, 0, 0, 0)",
                rusqlite::params![name, status, cloud],
            )
            .expect("insert a cluster");
    }

    #[test]
    fn fleet_is_read_by_name_with_shared_strings() {
        let dir = tempfile::tempdir().expect("temp dir");
        let (path, writer) = database(&dir);
        insert(&writer, "b", "UP", Some("aws"));
        insert(&writer, "a", "STOPPED", Some("aws"));
        insert(&writer, "c", "GONE", None);
        let store = Store::open_read_only(&path).expect("open read only");
        let fleet = store.fleet_for_scrape(None).expect("read the fleet");
        assert_eq!(fleet.malformed, 0);
        assert_eq!(fleet.first_malformed, None);
        let names: Vec<&str> = fleet.clusters.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(names, ["a", "b", "c"]);
        let a = &fleet.clusters[0];
        assert_eq!(a.status, ClusterStatus::Stopped);
        assert_eq!(&*a.cloud, "aws");
        assert_eq!(&*a.region, "r1");
        assert_eq!(&*a.instance_type, "t1");
        assert_eq!(&*a.workspace, "default");
        assert_eq!(a.launched_at, Some(Timestamp::from_secs(1000)));
        assert_eq!(a.autostop_minutes, 30);
        assert!(a.autostop_to_down);
        assert_eq!(a.hourly_cost, Some(0.5));
        assert_eq!(a.total_cost, Some(2.0));
        assert!(Arc::ptr_eq(&a.cloud, &fleet.clusters[1].cloud));
        assert_eq!(&*fleet.clusters[2].cloud, "", "unknown cloud is empty");
    }

    #[test]
    fn malformed_rows_are_skipped_and_counted() {
        let dir = tempfile::tempdir().expect("temp dir");
        let (path, writer) = database(&dir);
        insert(&writer, "good", "UP", Some("aws"));
        writer
            .execute_batch(
                "PRAGMA ignore_check_constraints = ON;
                 INSERT INTO clusters (name, cluster_hash, status, workspace, first_seen, last_seen, last_changed)
                     VALUES ('bad-status', 'h', 'RUNNING', 'default', 0, 0, 0);
                 INSERT INTO clusters (name, cluster_hash, status, workspace, autostop_minutes, first_seen, last_seen, last_changed)
                     VALUES ('bad-autostop', 'h', 'UP', 'default', 'soon', 0, 0, 0);",
            )
            .expect("insert malformed rows");
        let store = Store::open_read_only(&path).expect("open read only");
        let fleet = store.fleet_for_scrape(None).expect("read the fleet");
        assert_eq!(fleet.malformed, 2);
        let names: Vec<&str> = fleet.clusters.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(names, ["good"]);
        let first = fleet.first_malformed.expect("first malformed row");
        assert!(first.contains("table clusters"), "{first}");
        assert!(first.contains(&path.display().to_string()), "{first}");
        assert!(
            first.contains("bad-status") || first.contains("bad-autostop"),
            "{first}"
        );
    }

    #[test]
    fn data_version_moves_only_with_commits_of_others() {
        let dir = tempfile::tempdir().expect("temp dir");
        let (path, writer) = database(&dir);
        let store = Store::open_read_only(&path).expect("open read only");
        let v0 = store.data_version().expect("data_version");
        store.fleet_for_scrape(None).expect("read the fleet");
        assert_eq!(store.data_version().expect("data_version"), v0);
        insert(&writer, "new", "UP", Some("aws"));
        let v1 = store.data_version().expect("data_version");
        assert_ne!(v1, v0, "a commit of another connection");
        assert_eq!(store.data_version().expect("data_version"), v1);
        writer
            .execute("UPDATE clusters SET status = 'STOPPED'", [])
            .expect("update");
        assert_ne!(store.data_version().expect("data_version"), v1);
    }

    #[test]
    fn page_cache_is_capped() {
        let dir = tempfile::tempdir().expect("temp dir");
        let (path, _writer) = database(&dir);
        let store = Store::open_read_only(&path).expect("open read only");
        store.limit_page_cache(256).expect("cap the page cache");
        let size: i64 = store
            .conn
            .query_row("PRAGMA cache_size", [], |r| r.get(0))
            .expect("read cache_size");
        assert_eq!(size, -256);
    }

    #[test]
    fn a_read_equal_to_the_previous_one_hands_it_back() {
        let dir = tempfile::tempdir().expect("temp dir");
        let (path, writer) = database(&dir);
        for (name, status) in [("c", "UP"), ("a", "STOPPED"), ("b", "INIT")] {
            insert(&writer, name, status, Some("aws"));
        }
        let store = Store::open_read_only(&path).expect("open read only");
        let first = store.fleet_for_scrape(None).expect("read the fleet");
        let again = store.fleet_for_scrape(Some(&first)).expect("read again");
        assert!(Arc::ptr_eq(&first.clusters, &again.clusters));

        // Every kind of change is a full read with the new values, by name.
        type Holds = dyn Fn(&FleetRead) -> bool;
        let changes: [(&str, &Holds); 6] = [
            ("UPDATE clusters SET hourly_cost = 9.5 WHERE name = 'b'", &|f| {
                f.clusters[1].hourly_cost == Some(9.5)
            }),
            ("UPDATE clusters SET status = 'UP' WHERE name = 'a'", &|f| {
                f.clusters[0].status == ClusterStatus::Up
            }),
            ("UPDATE clusters SET region = NULL WHERE name = 'c'", &|f| {
                f.clusters[2].region.is_empty()
            }),
            ("UPDATE clusters SET autostop_to_down = 0 WHERE name = 'a'", &|f| {
                !f.clusters[0].autostop_to_down
            }),
            ("DELETE FROM clusters WHERE name = 'b'", &|f| {
                f.clusters.iter().map(|c| c.name.as_str()).eq(["a", "c"])
            }),
            (
                "INSERT INTO clusters (name, cluster_hash, status, workspace, first_seen, last_seen, last_changed) VALUES ('0-new', 'h', 'UP', 'w', 0, 0, 0)",
                &|f| f.clusters[0].name == "0-new" && f.clusters.len() == 3,
            ),
        ];
        let mut previous = again;
        for (sql, holds) in changes {
            writer.execute(sql, []).expect(sql);
            let read = store.fleet_for_scrape(Some(&previous)).expect("read");
            assert!(!Arc::ptr_eq(&read.clusters, &previous.clusters), "{sql}");
            assert!(holds(&read), "{sql}: {:?}", read.clusters);
            assert_eq!(read, store.fleet_for_scrape(None).expect("read"), "{sql}");
            previous = read;
        }

        // A previous read with malformed rows is never handed back.
        writer
            .execute_batch(
                "PRAGMA ignore_check_constraints = ON;
                 INSERT INTO clusters (name, cluster_hash, status, workspace, first_seen, last_seen, last_changed)
                     VALUES ('bad', 'h', 'RUNNING', 'default', 0, 0, 0);",
            )
            .expect("insert a malformed row");
        let with_bad = store.fleet_for_scrape(Some(&previous)).expect("read");
        assert_eq!(with_bad.malformed, 1);
        let again = store.fleet_for_scrape(Some(&with_bad)).expect("read");
        assert!(!Arc::ptr_eq(&again.clusters, &with_bad.clusters));
        assert_eq!(again, with_bad);
    }
}
