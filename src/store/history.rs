//! The fleet over time and the autostop enforcer's last pass: the `fleet_samples` table
//! (the cluster manager's count of clusters by status and its burn rate, at most one
//! row a minute unless something changed) and the one-row `autostop_pass` table.

use rusqlite::{named_params, OptionalExtension};
use serde::Serialize;

use super::{At, Result, Store};
use crate::cluster::ClusterStatus;
use crate::time::Timestamp;

/// The fleet at one moment.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct FleetSample {
    pub at: Timestamp,
    pub init: i64,
    pub up: i64,
    pub stopped: i64,
    /// Sum of the $/h of the UP clusters with a known price.
    #[serde(serialize_with = "crate::money::price")]
    pub burn: f64,
    /// UP clusters without a known price.
    pub unpriced: i64,
}

impl FleetSample {
    /// The counts of `rows` (gone ones left out) at `at`.
    pub(crate) fn of<'a>(
        rows: impl IntoIterator<Item = &'a super::ClusterRow>,
        at: Timestamp,
    ) -> FleetSample {
        let mut s = FleetSample {
            at,
            init: 0,
            up: 0,
            stopped: 0,
            burn: 0.0,
            unpriced: 0,
        };
        for r in rows.into_iter().filter(|r| r.gone_at.is_none()) {
            match r.cluster.status {
                ClusterStatus::Init => s.init += 1,
                ClusterStatus::Stopped => s.stopped += 1,
                ClusterStatus::Gone => {}
                ClusterStatus::Up => {
                    s.up += 1;
                    match r.hourly_cost.filter(|h| h.is_finite()) {
                        Some(h) => s.burn += h,
                        None => s.unpriced += 1,
                    }
                }
            }
        }
        s
    }

    /// The same counts (the time aside).
    pub(crate) fn same_fleet(&self, other: &FleetSample) -> bool {
        (self.init, self.up, self.stopped, self.unpriced)
            == (other.init, other.up, other.stopped, other.unpriced)
            && (self.burn - other.burn).abs() < 1e-9
    }
}

/// The enforcer's last pass, and the last time it held a cluster back.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AutostopPass {
    pub at: Timestamp,
    pub clusters: i64,
    pub acted: i64,
    pub failed: i64,
    pub held: i64,
    pub not_sent: i64,
    /// When a pass last held a cluster back (kept across passes that held none).
    pub held_at: Option<Timestamp>,
    /// Why, in words.
    pub held_reason: Option<String>,
}

impl Store {
    /// Records one fleet sample (the cluster manager, after a committed poll).
    pub fn add_fleet_sample(&self, s: &FleetSample) -> Result<()> {
        self.conn
            .prepare_cached(
                "INSERT OR REPLACE INTO fleet_samples (at, init, up, stopped, burn, unpriced)
                 VALUES (:at, :init, :up, :stopped, :burn, :unpriced)",
            )
            .and_then(|mut st| {
                st.execute(named_params! {
                    ":at": s.at, ":init": s.init, ":up": s.up, ":stopped": s.stopped,
                    ":burn": s.burn, ":unpriced": s.unpriced,
                })
            })
            .at(&self.path)?;
        Ok(())
    }

    /// The latest sample (`None` before the first).
    pub(crate) fn last_fleet_sample(&self) -> Result<Option<FleetSample>> {
        self.conn
            .prepare_cached("SELECT * FROM fleet_samples ORDER BY at DESC LIMIT 1")
            .and_then(|mut st| st.query_row([], read_sample).optional())
            .at(&self.path)
    }

    /// The fleet from `since` on, one sample per `bucket_secs` (the last of each
    /// bucket), oldest first: at most (now − since) / bucket_secs rows, whatever the
    /// fleet's size; plus the last sample before `since`, which holds at its start.
    pub fn fleet_history(&self, since: Timestamp, bucket_secs: f64) -> Result<Vec<FleetSample>> {
        let bucket = bucket_secs.max(1.0);
        let mut out: Vec<FleetSample> = self
            .conn
            .prepare_cached(
                "SELECT * FROM fleet_samples WHERE at < :since ORDER BY at DESC LIMIT 1",
            )
            .and_then(|mut st| {
                st.query_row(named_params! {":since": since}, read_sample)
                    .optional()
            })
            .at(&self.path)?
            .into_iter()
            .collect();
        let mut st = self
            .conn
            .prepare_cached(
                "SELECT * FROM fleet_samples WHERE at IN (
                     SELECT MAX(at) FROM fleet_samples WHERE at >= :since
                     GROUP BY CAST((at - :since) / :bucket AS INTEGER))
                 ORDER BY at",
            )
            .at(&self.path)?;
        let rows = st
            .query_map(
                named_params! {":since": since, ":bucket": bucket},
                read_sample,
            )
            .at(&self.path)?;
        for r in rows {
            out.push(r.at(&self.path)?);
        }
        Ok(out)
    }

    /// Records the enforcer's pass; `held` says why it held clusters back, when it did.
    pub fn set_autostop_pass(&self, p: &AutostopPass) -> Result<()> {
        self.conn
            .prepare_cached(
                "INSERT INTO autostop_pass (id, at, clusters, acted, failed, held, not_sent, held_at, held_reason)
                 VALUES (1, :at, :clusters, :acted, :failed, :held, :not_sent, :held_at, :held_reason)
                 ON CONFLICT(id) DO UPDATE SET at = excluded.at, clusters = excluded.clusters,
                   acted = excluded.acted, failed = excluded.failed, held = excluded.held,
                   not_sent = excluded.not_sent,
                   held_at = COALESCE(excluded.held_at, autostop_pass.held_at),
                   held_reason = COALESCE(excluded.held_reason, autostop_pass.held_reason)",
            )
            .and_then(|mut st| {
                st.execute(named_params! {
                    ":at": p.at, ":clusters": p.clusters, ":acted": p.acted,
                    ":failed": p.failed, ":held": p.held, ":not_sent": p.not_sent,
                    ":held_at": p.held_at, ":held_reason": p.held_reason,
                })
            })
            .at(&self.path)?;
        Ok(())
    }

    /// The enforcer's last pass (`None` before its first).
    pub fn autostop_pass(&self) -> Result<Option<AutostopPass>> {
        self.conn
            .prepare_cached("SELECT * FROM autostop_pass WHERE id = 1")
            .and_then(|mut st| {
                st.query_row([], |r| {
                    Ok(AutostopPass {
                        at: r.get("at")?,
                        clusters: r.get("clusters")?,
                        acted: r.get("acted")?,
                        failed: r.get("failed")?,
                        held: r.get("held")?,
                        not_sent: r.get("not_sent")?,
                        held_at: r.get("held_at")?,
                        held_reason: r.get("held_reason")?,
                    })
                })
                .optional()
            })
            .at(&self.path)
    }
}

fn read_sample(r: &rusqlite::Row<'_>) -> rusqlite::Result<FleetSample> {
    Ok(FleetSample {
        at: r.get("at")?,
        init: r.get("init")?,
        up: r.get("up")?,
        stopped: r.get("stopped")?,
        burn: r.get("burn")?,
        unpriced: r.get("unpriced")?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(at: i64, up: i64) -> FleetSample {
        FleetSample {
            at: Timestamp::from_secs(at),
            init: 0,
            up,
            stopped: 1,
            burn: up as f64 * 0.5,
            unpriced: 0,
        }
    }

    #[test]
    fn history_is_bucketed_and_starts_with_what_held_before() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("h.db")).unwrap();
        assert_eq!(store.last_fleet_sample().unwrap(), None);
        for (at, up) in [(100, 1), (1000, 2), (1010, 3), (1070, 4), (1200, 5)] {
            store.add_fleet_sample(&sample(at, up)).unwrap();
        }
        let h = store
            .fleet_history(Timestamp::from_secs(1000), 60.0)
            .unwrap();
        let ups: Vec<i64> = h.iter().map(|s| s.up).collect();
        // Before 1000: the sample at 100; then the last of [1000, 1060), [1060, 1120),
        // [1180, 1240).
        assert_eq!(ups, vec![1, 3, 4, 5]);
        assert_eq!(store.last_fleet_sample().unwrap().unwrap().up, 5);
    }

    #[test]
    fn the_last_hold_is_kept_across_passes_that_held_none() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("h.db")).unwrap();
        assert_eq!(store.autostop_pass().unwrap(), None);
        let held = AutostopPass {
            at: Timestamp::from_secs(100),
            clusters: 2,
            acted: 0,
            failed: 0,
            held: 2,
            not_sent: 0,
            held_at: Some(Timestamp::from_secs(100)),
            held_reason: Some("state is stale".into()),
        };
        store.set_autostop_pass(&held).unwrap();
        let later = AutostopPass {
            at: Timestamp::from_secs(200),
            acted: 1,
            held: 0,
            held_at: None,
            held_reason: None,
            ..held.clone()
        };
        store.set_autostop_pass(&later).unwrap();
        let got = store.autostop_pass().unwrap().unwrap();
        assert_eq!(got.at, Timestamp::from_secs(200));
        assert_eq!(got.acted, 1);
        assert_eq!(got.held_at, Some(Timestamp::from_secs(100)));
        assert_eq!(got.held_reason.as_deref(), Some("state is stale"));
    }
}
