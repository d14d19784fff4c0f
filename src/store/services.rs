//! The `services` and `service_transitions` tables: the cluster manager's writes of
//! SkyPilot's `/serve/status` and the readers' typed queries.

use rusqlite::types::{FromSql, FromSqlError, FromSqlResult, ToSql, ToSqlOutput, ValueRef};
use rusqlite::{named_params, Row};

use super::jobs::{bad_row_in, write_feed_in};
use super::{At, Feed, FeedState, Result, Store, StoreError};
use crate::services::{
    KnownServices, Replica, Service, ServiceChanges, ServiceRow, ServiceStatus, ServiceTransition,
};

impl ToSql for ServiceStatus {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        Ok(ToSqlOutput::from(self.as_str()))
    }
}

impl FromSql for ServiceStatus {
    fn column_result(value: ValueRef<'_>) -> FromSqlResult<Self> {
        value
            .as_str()?
            .parse()
            .map_err(|e: String| FromSqlError::Other(e.into()))
    }
}

/// Which services a reader wants.
#[derive(Debug, Clone, Default)]
pub struct ServiceQuery {
    /// Only these statuses (any when empty).
    pub statuses: Vec<ServiceStatus>,
    /// Owner: the user's name or SkyPilot's user id.
    pub user: Option<String>,
    pub name_contains: Option<String>,
    /// Leave out services that are gone.
    pub live: bool,
}

impl ServiceQuery {
    /// Whether `row` is one the reader wants (services are few: filtered here).
    pub fn selects(&self, row: &ServiceRow) -> bool {
        let s = &row.service;
        (self.statuses.is_empty() || self.statuses.contains(&s.status))
            && self.user.as_deref().is_none_or(|u| s.owner() == u)
            && self
                .name_contains
                .as_deref()
                .is_none_or(|n| s.name.to_lowercase().contains(&n.to_lowercase()))
            && (!self.live || s.status != ServiceStatus::Gone)
    }
}

const COLUMNS: &str = "name, status, last_status, user_name, user_hash, endpoint, policy, resources, version, ready_since, tls, target_replicas, ready_replicas, replicas, first_seen, last_changed, gone_at";

fn read_service(r: &Row<'_>) -> rusqlite::Result<ServiceRow> {
    let name: String = r.get(0)?;
    let replicas_json: String = r.get(13)?;
    let replicas: Vec<Replica> = serde_json::from_str(&replicas_json).map_err(|e| {
        rusqlite::Error::FromSqlConversionFailure(
            13,
            rusqlite::types::Type::Text,
            format!("service {name:?}: replicas is not the JSON this binary writes: {e}").into(),
        )
    })?;
    Ok(ServiceRow {
        service: Service {
            status: r.get(1)?,
            user_name: r.get(3)?,
            user_hash: r.get(4)?,
            endpoint: r.get(5)?,
            policy: r.get(6)?,
            resources: r.get(7)?,
            version: r.get(8)?,
            ready_since: r.get(9)?,
            tls: r.get(10)?,
            target_replicas: r.get(11)?,
            replicas,
            name,
        },
        last_status: r.get(2)?,
        hourly_cost: None,
        ready_replicas: r.get(12)?,
        first_seen: r.get(14)?,
        last_changed: r.get(15)?,
        gone_at: r.get(16)?,
    })
}

fn bad_row(path: &std::path::Path, e: rusqlite::Error) -> StoreError {
    bad_row_in(path, "services", "a service", e)
}

impl Store {
    /// Every service, gone ones included, by name.
    pub fn services(&self) -> Result<Vec<ServiceRow>> {
        let sql = format!("SELECT {COLUMNS} FROM services ORDER BY name");
        let mut stmt = self.conn.prepare_cached(&sql).at(&self.path)?;
        let rows = stmt
            .query_map([], read_service)
            .at(&self.path)?
            .collect::<rusqlite::Result<Vec<_>>>()
            .map_err(|e| bad_row(&self.path, e))?;
        Ok(rows)
    }

    /// The hourly price of each UP cluster the host prices (what a service's replicas
    /// cost).
    pub fn up_cluster_prices(&self) -> Result<std::collections::HashMap<String, f64>> {
        let mut stmt = self
            .conn
            .prepare_cached(
                "SELECT name, hourly_cost FROM clusters WHERE status = 'UP' AND hourly_cost IS NOT NULL",
            )
            .at(&self.path)?;
        let rows = stmt
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
            .at(&self.path)?
            .collect::<rusqlite::Result<_>>()
            .at(&self.path)?;
        Ok(rows)
    }

    /// One service by name.
    pub fn service(&self, name: &str) -> Result<Option<ServiceRow>> {
        let sql = format!("SELECT {COLUMNS} FROM services WHERE name = ?1");
        let mut stmt = self.conn.prepare_cached(&sql).at(&self.path)?;
        let mut rows = stmt
            .query_map([name], read_service)
            .at(&self.path)?
            .collect::<rusqlite::Result<Vec<_>>>()
            .map_err(|e| bad_row(&self.path, e))?;
        Ok(rows.pop())
    }

    /// What the cluster manager knows at start: every service with when it was first seen.
    pub(crate) fn known_services(&self) -> Result<KnownServices> {
        Ok(self
            .services()?
            .into_iter()
            .map(|r| (r.service.name.clone(), (r.service, r.first_seen)))
            .collect())
    }

    /// A service's status changes, oldest first.
    pub fn service_transitions(&self, name: &str) -> Result<Vec<ServiceTransition>> {
        let mut stmt = self
            .conn
            .prepare_cached(
                "SELECT service, from_status, to_status, at FROM service_transitions WHERE service = ?1 ORDER BY at, id",
            )
            .at(&self.path)?;
        let rows = stmt
            .query_map([name], |r| {
                Ok(ServiceTransition {
                    service: r.get(0)?,
                    from: r.get(1)?,
                    to: r.get(2)?,
                    at: r.get(3)?,
                })
            })
            .at(&self.path)?
            .collect::<rusqlite::Result<Vec<_>>>()
            .map_err(|e| bad_row(&self.path, e))?;
        Ok(rows)
    }

    /// Applies one successful read of `/serve/status` and records it, in one transaction.
    pub fn commit_services(&mut self, changes: &ServiceChanges, feed: &FeedState) -> Result<()> {
        let path = self.path.clone();
        let tx = self.conn.transaction().at(&path)?;
        if !changes.upserts.is_empty() {
            let mut up = tx
                .prepare_cached(
                    "INSERT INTO services (name, status, last_status, user_name, user_hash, endpoint, policy, resources, version, ready_since, tls, target_replicas, ready_replicas, replicas, first_seen, last_changed, gone_at)
                     VALUES (:name, :status, NULL, :user_name, :user_hash, :endpoint, :policy, :resources, :version, :ready_since, :tls, :target, :ready, :replicas, :first_seen, :now, NULL)
                     ON CONFLICT (name) DO UPDATE SET status = excluded.status, last_status = NULL, user_name = excluded.user_name, user_hash = excluded.user_hash, endpoint = excluded.endpoint, policy = excluded.policy, resources = excluded.resources, version = excluded.version, ready_since = excluded.ready_since, tls = excluded.tls, target_replicas = excluded.target_replicas, ready_replicas = excluded.ready_replicas, replicas = excluded.replicas, last_changed = excluded.last_changed, gone_at = NULL",
                )
                .at(&path)?;
            for (s, first_seen) in &changes.upserts {
                let replicas =
                    serde_json::to_string(&s.replicas).map_err(|e| StoreError::BadRow {
                        path: path.clone(),
                        table: "services",
                        row: s.name.clone(),
                        message: format!("cannot encode its replicas: {e}"),
                    })?;
                up.execute(named_params! {
                    ":name": s.name, ":status": s.status, ":user_name": s.user_name,
                    ":user_hash": s.user_hash, ":endpoint": s.endpoint, ":policy": s.policy,
                    ":resources": s.resources, ":version": s.version,
                    ":ready_since": s.ready_since, ":tls": s.tls,
                    ":target": s.target_replicas, ":ready": s.ready_replicas(),
                    ":replicas": replicas, ":first_seen": first_seen,
                    ":now": feed.attempted_at,
                })
                .at(&path)?;
            }
        }
        if !changes.gone.is_empty() {
            let mut gone = tx
                .prepare_cached(
                    "UPDATE services SET last_status = status, status = 'GONE', gone_at = :at, last_changed = :at WHERE name = :name AND status <> 'GONE'",
                )
                .at(&path)?;
            for name in &changes.gone {
                gone.execute(named_params! {":at": feed.attempted_at, ":name": name})
                    .at(&path)?;
            }
        }
        if !changes.transitions.is_empty() {
            let mut tr = tx
                .prepare_cached(
                    "INSERT INTO service_transitions (service, from_status, to_status, at) VALUES (?1, ?2, ?3, ?4)",
                )
                .at(&path)?;
            for t in &changes.transitions {
                tr.execute(rusqlite::params![t.service, t.from, t.to, t.at])
                    .at(&path)?;
            }
        }
        write_feed_in(&tx, &path, Feed::Services, feed)?;
        tx.commit().at(&path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::services::{apply_services, diff_services, parse_status};
    use crate::time::Timestamp;

    fn answer(services: &[(&str, &str, &[&str])]) -> Vec<Service> {
        let records: Vec<String> = services
            .iter()
            .map(|(name, status, reps)| {
                let reps: Vec<String> = reps
                    .iter()
                    .enumerate()
                    .map(|(i, st)| format!(r#"{{"replica_id": {}, "name": "{name}-{}", "status": "{st}"}}"#, i + 1, i + 1))
                    .collect();
                format!(
                    r#"{{"name": "{name}", "status": "{status}", "user_name": "alice", "replica_info": [{}]}}"#,
                    reps.join(",")
                )
            })
            .collect();
        parse_status(&format!("[{}]", records.join(","))).unwrap()
    }

    fn ok(at: i64, n: i64) -> FeedState {
        FeedState {
            attempted_at: Timestamp::from_secs(at),
            ok_at: Some(Timestamp::from_secs(at)),
            records: Some(n),
            seconds: Some(0.1),
            interval_secs: Some(60.0),
            error_kind: None,
            error: None,
        }
    }

    #[test]
    fn services_round_trip_and_gone_ones_keep_their_last_status() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = Store::open(&dir.path().join("host.db")).unwrap();
        let mut known = store.known_services().unwrap();
        let first = answer(&[
            ("web", "READY", &["READY", "PROVISIONING"]),
            ("chat", "FAILED", &["FAILED"]),
        ]);
        let c = diff_services(&known, first.clone(), Timestamp::from_secs(100));
        store.commit_services(&c, &ok(100, 2)).unwrap();
        apply_services(&mut known, c);
        assert_eq!(store.known_services().unwrap(), known);
        let web = store.service("web").unwrap().unwrap();
        assert_eq!(web.ready_replicas, 1);
        assert_eq!(web.service, first[0]);
        // chat disappears.
        let c = diff_services(
            &known,
            answer(&[("web", "READY", &["READY", "PROVISIONING"])]),
            Timestamp::from_secs(160),
        );
        store.commit_services(&c, &ok(160, 1)).unwrap();
        let chat = store.service("chat").unwrap().unwrap();
        assert_eq!(chat.service.status, ServiceStatus::Gone);
        assert_eq!(chat.last_status, Some(ServiceStatus::Failed));
        assert_eq!(chat.gone_at, Some(Timestamp::from_secs(160)));
        let t: Vec<_> = store
            .service_transitions("chat")
            .unwrap()
            .into_iter()
            .map(|t| (t.from, t.to))
            .collect();
        assert_eq!(
            t,
            [
                (None, ServiceStatus::Failed),
                (Some(ServiceStatus::Failed), ServiceStatus::Gone)
            ]
        );
        assert_eq!(
            store.feed(Feed::Services).unwrap().unwrap().records,
            Some(1)
        );
        assert!(store.service("nope").unwrap().is_none());
    }

    #[test]
    fn a_row_whose_replicas_are_not_ours_is_an_error_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = Store::open(&dir.path().join("host.db")).unwrap();
        let c = diff_services(
            &KnownServices::new(),
            answer(&[("web", "READY", &["READY"])]),
            Timestamp::from_secs(1),
        );
        store.commit_services(&c, &ok(1, 1)).unwrap();
        store
            .conn
            .execute("UPDATE services SET replicas = '{' WHERE name = 'web'", [])
            .unwrap();
        let e = store.services().unwrap_err().to_string();
        assert!(
            e.contains("services") && e.contains("\"web\"") && e.contains("host.db"),
            "{e}"
        );
    }
}
