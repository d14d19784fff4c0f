//! The `clusters` and `transitions` tables: the cluster manager's writes and the
//! readers' typed queries.
//!
//! The mapping between [`ClusterRow`] and the table's columns is written once for each
//! direction, by column name: [`values`] for writes (the SQL is derived from it) and
//! [`read_row`] for reads.

use std::fmt::Write as _;

use rusqlite::types::{FromSql, FromSqlError, FromSqlResult, ToSql, ToSqlOutput, ValueRef};
use rusqlite::{params, Row};

use super::{At, AuditEntry, PollRun, Result, Store, StoreError};
use crate::cluster::{Cluster, ClusterStatus, PriceSource};
use crate::time::Timestamp;

/// A cluster row: SkyPilot's record plus what the host knows of its history.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct ClusterRow {
    #[serde(flatten)]
    pub cluster: Cluster,
    /// Price per hour of the whole cluster (all nodes), in dollars, when known.
    #[serde(serialize_with = "crate::money::opt_price")]
    pub hourly_cost: Option<f64>,
    /// Accrued cost from SkyPilot's cost report, in dollars, when known.
    #[serde(serialize_with = "crate::money::opt_cents")]
    pub total_cost: Option<f64>,
    /// Where `hourly_cost` comes from.
    pub price_source: Option<PriceSource>,
    pub first_seen: Timestamp,
    pub last_seen: Timestamp,
    pub last_changed: Timestamp,
    pub gone_at: Option<Timestamp>,
}

impl ClusterRow {
    /// `cluster` first seen at `at`, with no price known.
    pub fn new(cluster: Cluster, at: Timestamp) -> ClusterRow {
        ClusterRow {
            cluster,
            hourly_cost: None,
            total_cost: None,
            price_source: None,
            first_seen: at,
            last_seen: at,
            last_changed: at,
            gone_at: None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Transition {
    pub cluster: String,
    pub from: Option<ClusterStatus>,
    pub to: ClusterStatus,
    pub at: Timestamp,
}

/// A write the cluster manager makes after one successful poll.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ClusterChanges {
    /// New or changed clusters (full rows to upsert).
    pub upserts: Vec<ClusterRow>,
    /// Clusters that vanished: name -> when.
    pub gone: Vec<(String, Timestamp)>,
    pub transitions: Vec<Transition>,
}

#[cfg(test)]
impl ClusterChanges {
    pub(crate) fn is_empty(&self) -> bool {
        self.upserts.is_empty() && self.gone.is_empty() && self.transitions.is_empty()
    }
}

/// Which clusters a reader wants, in which order.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ClusterQuery {
    /// Also clusters SkyPilot no longer lists (status GONE).
    pub include_gone: bool,
    /// Only these statuses (empty: any).
    pub statuses: Vec<ClusterStatus>,
    /// Exact matches; `None`: any.
    pub cloud: Option<String>,
    pub region: Option<String>,
    pub workspace: Option<String>,
    pub user: Option<String>,
    /// Case-insensitive substring of the name.
    pub name_contains: Option<String>,
    /// Only UP clusters without autostop.
    pub no_autostop: bool,
    pub order: ClusterOrder,
    pub descending: bool,
    pub limit: Option<usize>,
    /// Rows skipped before the first returned (a page's start).
    pub offset: usize,
}

/// The fleet in sums, read in one aggregate query (the Overview's cards).
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct FleetSums {
    /// Present clusters (gone ones left out) by status.
    pub by_status: Vec<(ClusterStatus, i64)>,
    pub clusters: i64,
    pub up: i64,
    /// Sum of the $/h of the UP clusters with a known price.
    #[serde(serialize_with = "crate::money::price")]
    pub burn: f64,
    /// UP clusters without a known price.
    pub unpriced: i64,
    pub up_without_autostop: i64,
}

/// Sort keys of [`ClusterQuery`]; ties are broken by name.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum ClusterOrder {
    #[default]
    Name,
    Status,
    Cloud,
    Region,
    User,
    Workspace,
    LaunchedAt,
    Autostop,
    HourlyCost,
    TotalCost,
    LastChanged,
}

impl ClusterOrder {
    pub(crate) const ALL: [ClusterOrder; 11] = [
        ClusterOrder::Name,
        ClusterOrder::Status,
        ClusterOrder::Cloud,
        ClusterOrder::Region,
        ClusterOrder::User,
        ClusterOrder::Workspace,
        ClusterOrder::LaunchedAt,
        ClusterOrder::Autostop,
        ClusterOrder::HourlyCost,
        ClusterOrder::TotalCost,
        ClusterOrder::LastChanged,
    ];

    /// The name used in URLs and on the command line.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            ClusterOrder::Name => "name",
            ClusterOrder::Status => "status",
            ClusterOrder::Cloud => "cloud",
            ClusterOrder::Region => "region",
            ClusterOrder::User => "user",
            ClusterOrder::Workspace => "workspace",
            ClusterOrder::LaunchedAt => "launched",
            ClusterOrder::Autostop => "autostop",
            ClusterOrder::HourlyCost => "hourly_cost",
            ClusterOrder::TotalCost => "total_cost",
            ClusterOrder::LastChanged => "last_changed",
        }
    }

    fn column(self) -> &'static str {
        match self {
            ClusterOrder::Name => "name",
            ClusterOrder::Status => "status",
            ClusterOrder::Cloud => "cloud",
            ClusterOrder::Region => "region",
            ClusterOrder::User => "user_name",
            ClusterOrder::Workspace => "workspace",
            ClusterOrder::LaunchedAt => "launched_at",
            ClusterOrder::Autostop => "autostop_minutes",
            ClusterOrder::HourlyCost => "hourly_cost",
            ClusterOrder::TotalCost => "total_cost",
            ClusterOrder::LastChanged => "last_changed",
        }
    }
}

impl std::str::FromStr for ClusterOrder {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        ClusterOrder::ALL
            .into_iter()
            .find(|o| o.as_str() == s)
            .ok_or_else(|| {
                let names: Vec<&str> = ClusterOrder::ALL.iter().map(|o| o.as_str()).collect();
                format!(
                    "unknown sort key {s:?}: expected one of {}",
                    names.join(", ")
                )
            })
    }
}

/// One cluster with its history.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct ClusterDetail {
    #[serde(flatten)]
    pub row: ClusterRow,
    /// Oldest first.
    pub transitions: Vec<Transition>,
    /// Actions taken on the cluster, newest first.
    pub audit: Vec<AuditEntry>,
}

impl ToSql for ClusterStatus {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        Ok(ToSqlOutput::from(self.as_str()))
    }
}

impl FromSql for ClusterStatus {
    fn column_result(value: ValueRef<'_>) -> FromSqlResult<Self> {
        value
            .as_str()?
            .parse()
            .map_err(|m: String| FromSqlError::Other(m.into()))
    }
}

impl ToSql for PriceSource {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        Ok(ToSqlOutput::from(self.as_str()))
    }
}

impl FromSql for PriceSource {
    fn column_result(value: ValueRef<'_>) -> FromSqlResult<Self> {
        let s = value.as_str()?;
        PriceSource::parse(s).ok_or_else(|| {
            FromSqlError::Other(
                format!("unknown price source {s:?}: expected cost_report or catalog").into(),
            )
        })
    }
}

/// The columns of `clusters` and a row's values, by name: the one mapping of a write.
fn values(r: &ClusterRow) -> [(&'static str, &dyn ToSql); 28] {
    let c = &r.cluster;
    [
        (":name", &c.name),
        (":cluster_hash", &c.cluster_hash),
        (":status", &c.status),
        (":cloud", &c.cloud),
        (":region", &c.region),
        (":zone", &c.zone),
        (":instance_type", &c.instance_type),
        (":nodes", &c.nodes),
        (":cpus", &c.cpus),
        (":memory", &c.memory),
        (":accelerators", &c.accelerators),
        (":resources", &c.resources),
        (":workspace", &c.workspace),
        (":user_name", &c.user_name),
        (":user_hash", &c.user_hash),
        (":launched_at", &c.launched_at),
        (":status_updated_at", &c.status_updated_at),
        (":autostop_minutes", &c.autostop_minutes),
        (":autostop_to_down", &c.autostop_to_down),
        (":is_managed", &c.is_managed),
        (":last_use", &c.last_use),
        (":hourly_cost", &r.hourly_cost),
        (":total_cost", &r.total_cost),
        (":first_seen", &r.first_seen),
        (":last_seen", &r.last_seen),
        (":last_changed", &r.last_changed),
        (":gone_at", &r.gone_at),
        (":price_source", &r.price_source),
    ]
}

/// `INSERT … ON CONFLICT(name) DO UPDATE` over the columns [`values`] names.
fn upsert_sql(values: &[(&'static str, &dyn ToSql)]) -> String {
    let cols: Vec<&str> = values.iter().map(|(p, _)| &p[1..]).collect();
    let mut sql = format!(
        "INSERT INTO clusters ({}) VALUES ({}) ON CONFLICT(name) DO UPDATE SET ",
        cols.join(", "),
        values
            .iter()
            .map(|(p, _)| *p)
            .collect::<Vec<_>>()
            .join(", ")
    );
    for (i, c) in cols.iter().filter(|c| **c != "name").enumerate() {
        if i > 0 {
            sql.push_str(", ");
        }
        let _ = write!(sql, "{c} = excluded.{c}");
    }
    sql
}

/// The columns [`read_row`] reads, in the order of [`col`]: read by position, since a
/// lookup by name searches the statement's column names for every field of every row.
const COLUMNS: &str = "name, cluster_hash, status, cloud, region, zone, instance_type, nodes, cpus, memory, accelerators, resources, workspace, user_name, user_hash, launched_at, status_updated_at, autostop_minutes, autostop_to_down, is_managed, last_use, hourly_cost, total_cost, first_seen, last_seen, last_changed, gone_at, price_source";

/// The position of each column of [`COLUMNS`].
mod col {
    pub(super) const NAME: usize = 0;
    pub(super) const CLUSTER_HASH: usize = 1;
    pub(super) const STATUS: usize = 2;
    pub(super) const CLOUD: usize = 3;
    pub(super) const REGION: usize = 4;
    pub(super) const ZONE: usize = 5;
    pub(super) const INSTANCE_TYPE: usize = 6;
    pub(super) const NODES: usize = 7;
    pub(super) const CPUS: usize = 8;
    pub(super) const MEMORY: usize = 9;
    pub(super) const ACCELERATORS: usize = 10;
    pub(super) const RESOURCES: usize = 11;
    pub(super) const WORKSPACE: usize = 12;
    pub(super) const USER_NAME: usize = 13;
    pub(super) const USER_HASH: usize = 14;
    pub(super) const LAUNCHED_AT: usize = 15;
    pub(super) const STATUS_UPDATED_AT: usize = 16;
    pub(super) const AUTOSTOP_MINUTES: usize = 17;
    pub(super) const AUTOSTOP_TO_DOWN: usize = 18;
    pub(super) const IS_MANAGED: usize = 19;
    pub(super) const LAST_USE: usize = 20;
    pub(super) const HOURLY_COST: usize = 21;
    pub(super) const TOTAL_COST: usize = 22;
    pub(super) const FIRST_SEEN: usize = 23;
    pub(super) const LAST_SEEN: usize = 24;
    pub(super) const LAST_CHANGED: usize = 25;
    pub(super) const GONE_AT: usize = 26;
    pub(super) const PRICE_SOURCE: usize = 27;
}

/// `select` with the `WHERE` clause of `q`'s filters, and their named values.
/// Named values of a statement.
type Args = Vec<(String, Box<dyn ToSql>)>;

fn filter_sql(select: &str, q: &ClusterQuery) -> (String, Args) {
    let mut sql = format!("{select} WHERE 1 = 1");
    let mut args: Args = Vec::new();
    if !q.include_gone {
        sql.push_str(" AND gone_at IS NULL");
    }
    if !q.statuses.is_empty() {
        let names: Vec<String> = (0..q.statuses.len()).map(|i| format!(":s{i}")).collect();
        let _ = write!(sql, " AND status IN ({})", names.join(", "));
        for (n, s) in names.into_iter().zip(&q.statuses) {
            args.push((n, Box::new(*s)));
        }
    }
    for (col, value) in [
        ("cloud", &q.cloud),
        ("region", &q.region),
        ("workspace", &q.workspace),
        ("user_name", &q.user),
    ] {
        if let Some(v) = value {
            let _ = write!(sql, " AND {col} = :{col}");
            args.push((format!(":{col}"), Box::new(v.clone())));
        }
    }
    if let Some(n) = &q.name_contains {
        sql.push_str(" AND instr(lower(name), lower(:name_part)) > 0");
        args.push((":name_part".into(), Box::new(n.clone())));
    }
    if q.no_autostop {
        sql.push_str(" AND status = 'UP' AND autostop_minutes < 0");
    }
    (sql, args)
}

/// Reads one cluster row of a `SELECT {COLUMNS}`; an error names the cluster when its
/// name could be read.
fn read_row(r: &Row<'_>) -> std::result::Result<ClusterRow, (String, String)> {
    let name: String = r
        .get(col::NAME)
        .map_err(|e| (String::from("<unreadable name>"), e.to_string()))?;
    let read = || -> rusqlite::Result<ClusterRow> {
        Ok(ClusterRow {
            cluster: Cluster {
                name: name.clone(),
                cluster_hash: r.get(col::CLUSTER_HASH)?,
                status: r.get(col::STATUS)?,
                cloud: r.get(col::CLOUD)?,
                region: r.get(col::REGION)?,
                zone: r.get(col::ZONE)?,
                instance_type: r.get(col::INSTANCE_TYPE)?,
                nodes: r.get(col::NODES)?,
                cpus: r.get(col::CPUS)?,
                memory: r.get(col::MEMORY)?,
                accelerators: r.get(col::ACCELERATORS)?,
                resources: r.get(col::RESOURCES)?,
                workspace: r.get(col::WORKSPACE)?,
                user_name: r.get(col::USER_NAME)?,
                user_hash: r.get(col::USER_HASH)?,
                launched_at: r.get(col::LAUNCHED_AT)?,
                status_updated_at: r.get(col::STATUS_UPDATED_AT)?,
                autostop_minutes: r.get(col::AUTOSTOP_MINUTES)?,
                autostop_to_down: r.get(col::AUTOSTOP_TO_DOWN)?,
                is_managed: r.get(col::IS_MANAGED)?,
                last_use: r.get(col::LAST_USE)?,
            },
            hourly_cost: r.get(col::HOURLY_COST)?,
            total_cost: r.get(col::TOTAL_COST)?,
            first_seen: r.get(col::FIRST_SEEN)?,
            last_seen: r.get(col::LAST_SEEN)?,
            last_changed: r.get(col::LAST_CHANGED)?,
            gone_at: r.get(col::GONE_AT)?,
            price_source: r.get(col::PRICE_SOURCE)?,
        })
    };
    read().map_err(|e| {
        let message = match e {
            rusqlite::Error::FromSqlConversionFailure(_, _, inner) => inner.to_string(),
            e => e.to_string(),
        };
        (name.clone(), message)
    })
}

fn read_transition(r: &Row<'_>) -> rusqlite::Result<Transition> {
    Ok(Transition {
        cluster: r.get("cluster")?,
        from: r.get("from_status")?,
        to: r.get("to_status")?,
        at: r.get("at")?,
    })
}

impl Store {
    /// Every cluster row, gone ones included, ordered by name. `last_seen` of a present
    /// cluster is the later of its stored value and the last successful poll.
    pub fn clusters(&self) -> Result<Vec<ClusterRow>> {
        self.query_clusters(&ClusterQuery {
            include_gone: true,
            ..ClusterQuery::default()
        })
    }

    /// The clusters a query selects, in its order (ties by name).
    pub fn query_clusters(&self, q: &ClusterQuery) -> Result<Vec<ClusterRow>> {
        let (mut sql, args) = filter_sql(&format!("SELECT {COLUMNS} FROM clusters"), q);
        let dir = if q.descending { "DESC" } else { "ASC" };
        let _ = write!(sql, " ORDER BY {} {dir}", q.order.column());
        if q.order != ClusterOrder::Name {
            sql.push_str(", name ASC");
        }
        match (q.limit, q.offset) {
            (Some(limit), offset) => {
                let _ = write!(sql, " LIMIT {limit} OFFSET {offset}");
            }
            (None, 0) => {}
            (None, offset) => {
                let _ = write!(sql, " LIMIT -1 OFFSET {offset}");
            }
        }
        let named: Vec<(&str, &dyn ToSql)> =
            args.iter().map(|(n, v)| (n.as_str(), v.as_ref())).collect();
        self.read_clusters(&sql, &named)
    }

    /// How many clusters `q` selects (its order, limit and offset aside).
    pub fn count_clusters(&self, q: &ClusterQuery) -> Result<usize> {
        let (sql, args) = filter_sql("SELECT COUNT(*) FROM clusters", q);
        let named: Vec<(&str, &dyn ToSql)> =
            args.iter().map(|(n, v)| (n.as_str(), v.as_ref())).collect();
        let n: i64 = self
            .conn
            .prepare_cached(&sql)
            .and_then(|mut st| st.query_row(named.as_slice(), |r| r.get(0)))
            .at(&self.path)?;
        Ok(usize::try_from(n).unwrap_or(0))
    }

    /// The present fleet in sums, in one aggregate query.
    pub fn fleet_sums(&self) -> Result<FleetSums> {
        let mut st = self
            .conn
            .prepare_cached(
                "SELECT status, COUNT(*),
                        TOTAL(CASE WHEN status = 'UP' THEN hourly_cost END),
                        SUM(status = 'UP' AND hourly_cost IS NULL),
                        SUM(status = 'UP' AND autostop_minutes < 0)
                 FROM clusters WHERE gone_at IS NULL GROUP BY status ORDER BY status",
            )
            .at(&self.path)?;
        let mut rows = st.query([]).at(&self.path)?;
        let mut sums = FleetSums::default();
        while let Some(r) = rows.next().at(&self.path)? {
            let status: ClusterStatus = r.get(0).at(&self.path)?;
            let n: i64 = r.get(1).at(&self.path)?;
            sums.clusters += n;
            if status == ClusterStatus::Up {
                sums.up = n;
                sums.burn = r.get(2).at(&self.path)?;
                sums.unpriced = r.get::<_, Option<i64>>(3).at(&self.path)?.unwrap_or(0);
                sums.up_without_autostop = r.get::<_, Option<i64>>(4).at(&self.path)?.unwrap_or(0);
            }
            sums.by_status.push((status, n));
        }
        Ok(sums)
    }

    /// One cluster, with its transitions and the audit entries that name it.
    pub fn cluster_detail(&self, name: &str) -> Result<Option<ClusterDetail>> {
        let rows = self.read_clusters(
            &format!("SELECT {COLUMNS} FROM clusters WHERE name = :name"),
            &[(":name", &name)],
        )?;
        let Some(row) = rows.into_iter().next() else {
            return Ok(None);
        };
        Ok(Some(ClusterDetail {
            transitions: self.transitions(Some(name))?,
            audit: self.audit_for_cluster(name, 1000)?,
            row,
        }))
    }

    fn read_clusters(&self, sql: &str, args: &[(&str, &dyn ToSql)]) -> Result<Vec<ClusterRow>> {
        let last_ok = self.last_ok_second()?;
        let mut stmt = self.conn.prepare_cached(sql).at(&self.path)?;
        let mut rows = stmt.query(args).at(&self.path)?;
        let mut out = Vec::new();
        while let Some(r) = rows.next().at(&self.path)? {
            let mut row = read_row(r).map_err(|(name, message)| StoreError::BadRow {
                path: self.path.clone(),
                table: "clusters",
                row: name,
                message,
            })?;
            if row.gone_at.is_none() {
                if let Some(t) = last_ok {
                    if t > row.last_seen {
                        row.last_seen = t;
                    }
                }
            }
            out.push(row);
        }
        Ok(out)
    }

    /// Transitions of one cluster (or all when `None`), oldest first.
    pub fn transitions(&self, cluster: Option<&str>) -> Result<Vec<Transition>> {
        let mut stmt = self
            .conn
            .prepare_cached(
                "SELECT cluster, from_status, to_status, at FROM transitions WHERE :c IS NULL OR cluster = :c ORDER BY id",
            )
            .at(&self.path)?;
        let mut rows = stmt.query(&[(":c", &cluster)]).at(&self.path)?;
        let mut out = Vec::new();
        while let Some(r) = rows.next().at(&self.path)? {
            let t = read_transition(r).map_err(|e| StoreError::BadRow {
                path: self.path.clone(),
                table: "transitions",
                row: r
                    .get("cluster")
                    .unwrap_or_else(|_| "<unreadable name>".into()),
                message: match e {
                    rusqlite::Error::FromSqlConversionFailure(_, _, inner) => inner.to_string(),
                    e => e.to_string(),
                },
            })?;
            out.push(t);
        }
        Ok(out)
    }

    /// Applies the changes of one successful poll and records the poll, in one transaction.
    pub fn commit_poll(&mut self, changes: &ClusterChanges, run: &PollRun) -> Result<()> {
        let path = self.path.clone();
        let tx = self.conn.transaction().at(&path)?;
        if let Some(first) = changes.upserts.first() {
            let mut up = tx.prepare_cached(&upsert_sql(&values(first))).at(&path)?;
            for r in &changes.upserts {
                up.execute(&values(r)[..]).at(&path)?;
            }
        }
        if !changes.gone.is_empty() {
            let prev_ok = super::polls::last_ok_second(&tx).at(&path)?;
            let mut gone = tx
                .prepare_cached(
                    "UPDATE clusters SET status = 'GONE', gone_at = :at, last_changed = :at, last_seen = MAX(last_seen, :seen) WHERE name = :name",
                )
                .at(&path)?;
            for (name, at) in &changes.gone {
                let seen = prev_ok.unwrap_or(*at);
                gone.execute(rusqlite::named_params! {":name": name, ":at": at, ":seen": seen})
                    .at(&path)?;
            }
        }
        {
            let mut tr = tx
                .prepare_cached(
                    "INSERT INTO transitions (cluster, from_status, to_status, at) VALUES (?1, ?2, ?3, ?4)",
                )
                .at(&path)?;
            for t in &changes.transitions {
                tr.execute(params![t.cluster, t.from, t.to, t.at])
                    .at(&path)?;
            }
        }
        super::polls::insert_poll(&tx, run).at(&path)?;
        tx.commit().at(&path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upsert_names_every_column_once() {
        let row = ClusterRow::new(
            Cluster::bare("a", ClusterStatus::Up),
            Timestamp::from_secs(1),
        );
        let sql = upsert_sql(&values(&row));
        assert!(sql.starts_with("INSERT INTO clusters (name, cluster_hash, status,"));
        assert!(sql.contains("VALUES (:name, :cluster_hash, :status,"));
        assert!(
            sql.ends_with("price_source = excluded.price_source"),
            "{sql}"
        );
        assert!(!sql.contains("name = excluded.name,"), "{sql}");
    }

    #[test]
    fn columns_are_read_by_their_own_positions_and_cover_the_table() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("host.db")).unwrap();
        let stmt = store
            .conn
            .prepare(&format!("SELECT {COLUMNS} FROM clusters"))
            .unwrap();
        for (pos, name) in [
            (col::NAME, "name"),
            (col::CLUSTER_HASH, "cluster_hash"),
            (col::STATUS, "status"),
            (col::CLOUD, "cloud"),
            (col::REGION, "region"),
            (col::ZONE, "zone"),
            (col::INSTANCE_TYPE, "instance_type"),
            (col::NODES, "nodes"),
            (col::CPUS, "cpus"),
            (col::MEMORY, "memory"),
            (col::ACCELERATORS, "accelerators"),
            (col::RESOURCES, "resources"),
            (col::WORKSPACE, "workspace"),
            (col::USER_NAME, "user_name"),
            (col::USER_HASH, "user_hash"),
            (col::LAUNCHED_AT, "launched_at"),
            (col::STATUS_UPDATED_AT, "status_updated_at"),
            (col::AUTOSTOP_MINUTES, "autostop_minutes"),
            (col::AUTOSTOP_TO_DOWN, "autostop_to_down"),
            (col::IS_MANAGED, "is_managed"),
            (col::LAST_USE, "last_use"),
            (col::HOURLY_COST, "hourly_cost"),
            (col::TOTAL_COST, "total_cost"),
            (col::FIRST_SEEN, "first_seen"),
            (col::LAST_SEEN, "last_seen"),
            (col::LAST_CHANGED, "last_changed"),
            (col::GONE_AT, "gone_at"),
        ] {
            assert_eq!(stmt.column_name(pos).unwrap(), name);
        }
        // Every column of the table is read: none added by a migration is forgotten.
        let all = store.conn.prepare("SELECT * FROM clusters").unwrap();
        assert_eq!(all.column_count(), stmt.column_count());
    }

    #[test]
    fn order_keys_round_trip() {
        for o in ClusterOrder::ALL {
            assert_eq!(o.as_str().parse::<ClusterOrder>(), Ok(o));
        }
        let e = "cost".parse::<ClusterOrder>().unwrap_err();
        assert!(e.contains("hourly_cost"), "{e}");
    }
}
