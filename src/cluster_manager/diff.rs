//! The pure step of a poll: a status answer against the known state, as changes to
//! commit (new, changed, gone clusters and their transitions), with no I/O.

use std::collections::{HashMap, HashSet};

use crate::cluster::{Cluster, ClusterStatus, PriceSource};
use crate::skypilot::wire::StatusRecord;
use crate::skypilot::CostRecord;
use crate::store::{ClusterChanges, ClusterRow, Transition};
use crate::time::Timestamp;

/// A cluster's list price per hour, when known (the catalog's, see
/// `catalog::cluster_price`).
pub(crate) type ListPrice<'a> = &'a dyn Fn(&Cluster) -> Option<f64>;

/// The list price of no cluster.
#[cfg(test)]
pub(crate) fn no_list_price(_: &Cluster) -> Option<f64> {
    None
}

/// The outcome of diffing one status answer against the known state.
///
/// `seen` are the clusters of the answer to compare; `unchanged` names clusters of the
/// answer already known to be unchanged (their records' fingerprints matched), which only
/// count as present. A cluster's price is SkyPilot's cost report's when it has one
/// (`costs`, or the last one known), else `list_price`'s.
pub fn diff(
    known: &HashMap<String, ClusterRow>,
    seen: Vec<Cluster>,
    unchanged: &HashSet<&str>,
    costs: &HashMap<String, CostRecord>,
    list_price: ListPrice<'_>,
    now: Timestamp,
) -> ClusterChanges {
    let mut changes = ClusterChanges::default();
    let mut present = HashSet::with_capacity(seen.len());
    for cluster in seen {
        present.insert(cluster.name.clone());
        let cost = costs.get(&cluster.name).filter(|c| {
            c.cluster_hash
                .as_deref()
                .is_none_or(|h| h == cluster.cluster_hash)
        });
        diff_one(
            &mut changes,
            known.get(&cluster.name),
            cluster,
            cost,
            list_price,
            now,
        );
    }
    let mut vanished: Vec<&ClusterRow> = known
        .values()
        .filter(|r| {
            r.gone_at.is_none()
                && !present.contains(&r.cluster.name)
                && !unchanged.contains(r.cluster.name.as_str())
        })
        .collect();
    vanished.sort_by(|a, b| a.cluster.name.cmp(&b.cluster.name));
    for r in vanished {
        changes.gone.push((r.cluster.name.clone(), now));
        changes.transitions.push(Transition {
            cluster: r.cluster.name.clone(),
            from: Some(r.cluster.status),
            to: ClusterStatus::Gone,
            at: now,
        });
    }
    changes
}

/// Adds to `changes` what one cluster of the answer changes against its known row
/// `prev` (none when new): nothing, an update, or an upsert with a transition.
fn diff_one(
    changes: &mut ClusterChanges,
    prev: Option<&ClusterRow>,
    cluster: Cluster,
    cost: Option<&CostRecord>,
    list_price: ListPrice<'_>,
    now: Timestamp,
) {
    // The cost report's price, else the last one known of this lifecycle, else the list price.
    let same_lifecycle =
        prev.filter(|p| p.gone_at.is_none() && p.cluster.cluster_hash == cluster.cluster_hash);
    let reported = cost
        .and_then(|c| c.hourly_cost())
        .map(|h| (Some(h), Some(PriceSource::CostReport)))
        .or_else(|| {
            same_lifecycle
                .filter(|p| p.price_source == Some(PriceSource::CostReport))
                .map(|p| (p.hourly_cost, p.price_source))
        });
    let (hourly_cost, price_source) = reported.unwrap_or_else(|| match list_price(&cluster) {
        Some(h) => (Some(h), Some(PriceSource::Catalog)),
        None => (None, None),
    });
    match prev {
        Some(prev)
            if prev.gone_at.is_none() && prev.cluster.cluster_hash == cluster.cluster_hash =>
        {
            let total_cost = cost.and_then(|c| c.total_cost).or(prev.total_cost);
            if prev.cluster == cluster
                && prev.hourly_cost == hourly_cost
                && prev.total_cost == total_cost
                && prev.price_source == price_source
            {
                return;
            }
            if prev.cluster.status != cluster.status {
                changes.transitions.push(Transition {
                    cluster: cluster.name.clone(),
                    from: Some(prev.cluster.status),
                    to: cluster.status,
                    at: now,
                });
            }
            changes.upserts.push(ClusterRow {
                cluster,
                hourly_cost,
                total_cost,
                price_source,
                first_seen: prev.first_seen,
                last_seen: now,
                last_changed: now,
                gone_at: None,
            });
        }
        prev => {
            // New, back after being gone, or relaunched under the same name (new hash).
            changes.transitions.push(Transition {
                cluster: cluster.name.clone(),
                from: prev.map(|p| {
                    if p.gone_at.is_some() {
                        ClusterStatus::Gone
                    } else {
                        p.cluster.status
                    }
                }),
                to: cluster.status,
                at: now,
            });
            changes.upserts.push(ClusterRow {
                hourly_cost,
                total_cost: cost.and_then(|c| c.total_cost),
                price_source,
                ..ClusterRow::new(cluster, now)
            });
        }
    }
}

/// What the cluster manager knows between polls: the rows as committed, and the
/// fingerprints of the status records behind them.
#[derive(Debug, Default, Clone)]
pub(crate) struct Known {
    pub(crate) rows: HashMap<String, ClusterRow>,
    pub(crate) fingerprints: HashMap<String, u64>,
}

impl Known {
    /// Applies committed changes and the fingerprints of the records behind them.
    pub(crate) fn apply(&mut self, ingested: Ingested) {
        for (name, _) in &ingested.changes.gone {
            self.fingerprints.remove(name);
        }
        self.fingerprints.extend(ingested.fingerprints);
        apply(&mut self.rows, ingested.changes);
    }
}

/// The result of [`ingest`]: what to commit, and what to remember once committed.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Ingested {
    pub(crate) changes: ClusterChanges,
    /// Fingerprints of the records that were compared.
    pub(crate) fingerprints: Vec<(String, u64)>,
    /// Clusters in the answer.
    pub(crate) clusters: usize,
}

/// Turns one status answer into changes: records whose fingerprint matches a present
/// known cluster are skipped (unless `compare_all`, as after new costs), the rest are
/// converted and [`diff`]ed. Pure: no I/O, the time is a parameter. Fails, naming the
/// cluster, on a record that does not convert.
pub(crate) fn ingest(
    known: &Known,
    records: Vec<StatusRecord<'_>>,
    costs: &HashMap<String, CostRecord>,
    list_price: ListPrice<'_>,
    compare_all: bool,
    now: Timestamp,
) -> Result<Ingested, String> {
    let clusters = records.len();
    let mut names = HashSet::with_capacity(clusters);
    for r in &records {
        if !names.insert(r.name.as_ref()) {
            return Err(format!(
                "cluster {:?} appears more than once in the answer; a cluster name is unique in SkyPilot",
                crate::terminal::clean(&r.name)
            ));
        }
    }
    drop(names);
    let mut unchanged_names = Vec::new();
    let mut seen = Vec::new();
    let mut fingerprints = Vec::new();
    for record in records {
        let fp = record.fingerprint();
        let name = record.name.as_ref();
        if !compare_all
            && known.fingerprints.get(name) == Some(&fp)
            && known.rows.get(name).is_some_and(|r| r.gone_at.is_none())
        {
            unchanged_names.push(record.name);
            continue;
        }
        let cluster = record.into_cluster()?;
        fingerprints.push((cluster.name.clone(), fp));
        seen.push(cluster);
    }
    let unchanged: HashSet<&str> = unchanged_names.iter().map(|n| n.as_ref()).collect();
    Ok(Ingested {
        changes: diff(&known.rows, seen, &unchanged, costs, list_price, now),
        fingerprints,
        clusters,
    })
}

/// Applies committed changes to the in-memory view.
pub(crate) fn apply(known: &mut HashMap<String, ClusterRow>, changes: ClusterChanges) {
    for row in changes.upserts {
        known.insert(row.cluster.name.clone(), row);
    }
    for (name, at) in changes.gone {
        if let Some(r) = known.get_mut(&name) {
            r.cluster.status = ClusterStatus::Gone;
            r.gone_at = Some(at);
            r.last_changed = at;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::ClusterStatus;

    fn ts(secs: i64) -> Timestamp {
        Timestamp::from_secs(secs)
    }

    fn cluster(name: &str, status: ClusterStatus) -> Cluster {
        Cluster {
            cloud: Some("AWS".into()),
            region: Some("us-west-2".into()),
            instance_type: Some("m6i.large".into()),
            cpus: Some("2.0".into()),
            memory: Some("8.0".into()),
            user_name: Some("alice".into()),
            user_hash: Some("abcd".into()),
            launched_at: Some(ts(1000)),
            status_updated_at: Some(ts(1000)),
            ..Cluster::bare(name, status)
        }
    }

    /// `diff` without fingerprints or costs.
    fn plain(known: &HashMap<String, ClusterRow>, seen: Vec<Cluster>, now: i64) -> ClusterChanges {
        diff(
            known,
            seen,
            &HashSet::new(),
            &HashMap::new(),
            &no_list_price,
            ts(now),
        )
    }

    /// What is known after a first poll at 100 saw clusters a and b UP.
    fn a_and_b_up_at_100() -> HashMap<String, ClusterRow> {
        known_from(plain(
            &HashMap::new(),
            vec![
                cluster("a", ClusterStatus::Up),
                cluster("b", ClusterStatus::Up),
            ],
            100,
        ))
    }

    fn known_from(changes: ClusterChanges) -> HashMap<String, ClusterRow> {
        let mut k = HashMap::new();
        apply(&mut k, changes);
        k
    }

    #[test]
    fn new_clusters_are_inserted_with_transitions() {
        let d = plain(
            &HashMap::new(),
            vec![
                cluster("a", ClusterStatus::Up),
                cluster("b", ClusterStatus::Init),
            ],
            100,
        );
        assert_eq!(d.upserts.len(), 2);
        assert_eq!(d.transitions.len(), 2);
        assert_eq!(d.transitions[0].from, None);
        assert_eq!(d.upserts[0].first_seen, ts(100));
    }

    #[test]
    fn unchanged_poll_writes_nothing() {
        let k = known_from(plain(
            &HashMap::new(),
            vec![cluster("a", ClusterStatus::Up)],
            100,
        ));
        let d = plain(&k, vec![cluster("a", ClusterStatus::Up)], 200);
        assert!(d.is_empty(), "{d:?}");
    }

    #[test]
    fn status_change_is_a_transition_and_keeps_first_seen() {
        let k = known_from(plain(
            &HashMap::new(),
            vec![cluster("a", ClusterStatus::Up)],
            100,
        ));
        let d = plain(&k, vec![cluster("a", ClusterStatus::Stopped)], 200);
        assert_eq!(d.upserts.len(), 1);
        assert_eq!(d.upserts[0].first_seen, ts(100));
        assert_eq!(d.upserts[0].last_changed, ts(200));
        assert_eq!(
            d.transitions,
            vec![Transition {
                cluster: "a".into(),
                from: Some(ClusterStatus::Up),
                to: ClusterStatus::Stopped,
                at: ts(200)
            }]
        );
    }

    #[test]
    fn autostop_change_is_an_update_without_transition() {
        let k = known_from(plain(
            &HashMap::new(),
            vec![cluster("a", ClusterStatus::Up)],
            100,
        ));
        let mut c = cluster("a", ClusterStatus::Up);
        c.autostop_minutes = 30;
        let d = plain(&k, vec![c], 200);
        assert_eq!(d.upserts.len(), 1);
        assert!(d.transitions.is_empty());
        assert_eq!(d.upserts[0].cluster.autostop_minutes, 30);
    }

    #[test]
    fn vanished_cluster_is_gone_and_may_come_back() {
        let k = a_and_b_up_at_100();
        let d = plain(&k, vec![cluster("a", ClusterStatus::Up)], 200);
        assert_eq!(d.gone, vec![("b".to_string(), ts(200))]);
        assert_eq!(d.transitions[0].to, ClusterStatus::Gone);
        let mut k2 = k.clone();
        apply(&mut k2, d);
        assert_eq!(k2["b"].cluster.status, ClusterStatus::Gone);
        // Gone twice is not written twice.
        let d = plain(&k2, vec![cluster("a", ClusterStatus::Up)], 300);
        assert!(d.is_empty());
        // It comes back.
        let d = plain(
            &k2,
            vec![
                cluster("a", ClusterStatus::Up),
                cluster("b", ClusterStatus::Init),
            ],
            400,
        );
        assert_eq!(d.transitions[0].from, Some(ClusterStatus::Gone));
        assert_eq!(d.transitions[0].to, ClusterStatus::Init);
        assert_eq!(d.upserts[0].first_seen, ts(400));
    }

    #[test]
    fn unchanged_by_fingerprint_counts_as_present() {
        let k = a_and_b_up_at_100();
        let unchanged: HashSet<&str> = ["a"].into_iter().collect();
        let d = diff(
            &k,
            vec![cluster("b", ClusterStatus::Up)],
            &unchanged,
            &HashMap::new(),
            &no_list_price,
            ts(200),
        );
        assert!(d.is_empty(), "{d:?}");
        let d = diff(
            &k,
            vec![],
            &unchanged,
            &HashMap::new(),
            &no_list_price,
            ts(200),
        );
        assert_eq!(d.gone, vec![("b".to_string(), ts(200))]);
    }

    #[test]
    fn relaunch_under_same_name_is_a_new_lifecycle() {
        let k = known_from(plain(
            &HashMap::new(),
            vec![cluster("a", ClusterStatus::Up)],
            100,
        ));
        let mut c = cluster("a", ClusterStatus::Up);
        c.cluster_hash = "other".into();
        let d = plain(&k, vec![c], 200);
        assert_eq!(d.upserts[0].first_seen, ts(200));
        assert_eq!(d.transitions.len(), 1);
    }

    /// A cost report record of `name` in its life `hash`: `total` dollars in one hour.
    fn report(name: &str, hash: &str, total: f64) -> (String, CostRecord) {
        (
            name.to_string(),
            CostRecord {
                name: name.into(),
                cluster_hash: Some(hash.into()),
                total_cost: Some(total),
                duration: Some(3600.0),
                num_nodes: Some(1),
                status: None,
            },
        )
    }

    #[test]
    fn costs_attach_by_name_and_hash() {
        let costs: HashMap<String, CostRecord> = [
            report("a", "hash-a", 1.0),
            report("b", "a-previous-life", 5.0),
        ]
        .into_iter()
        .collect();
        let d = diff(
            &HashMap::new(),
            vec![
                cluster("a", ClusterStatus::Up),
                cluster("b", ClusterStatus::Up),
            ],
            &HashSet::new(),
            &costs,
            &no_list_price,
            ts(100),
        );
        assert_eq!(d.upserts[0].hourly_cost, Some(1.0));
        assert_eq!(d.upserts[0].total_cost, Some(1.0));
        assert_eq!(d.upserts[0].price_source, Some(PriceSource::CostReport));
        assert_eq!(
            d.upserts[1].hourly_cost, None,
            "cost of another cluster's life"
        );
        assert_eq!(d.upserts[1].price_source, None);
    }

    #[test]
    fn the_catalog_prices_what_the_cost_report_does_not_and_the_report_wins() {
        let list: &dyn Fn(&Cluster) -> Option<f64> =
            &|c: &Cluster| (c.name != "unlisted").then_some(0.25);
        let seen = vec![
            cluster("a", ClusterStatus::Up),
            cluster("unlisted", ClusterStatus::Up),
        ];
        let d = diff(
            &HashMap::new(),
            seen.clone(),
            &HashSet::new(),
            &HashMap::new(),
            list,
            ts(100),
        );
        assert_eq!(d.upserts[0].hourly_cost, Some(0.25));
        assert_eq!(d.upserts[0].price_source, Some(PriceSource::Catalog));
        assert_eq!(d.upserts[0].total_cost, None);
        assert_eq!(d.upserts[1].hourly_cost, None);
        assert_eq!(d.upserts[1].price_source, None);
        let known = known_from(d);
        // Nothing changed: nothing written.
        assert!(diff(
            &known,
            seen.clone(),
            &HashSet::new(),
            &HashMap::new(),
            list,
            ts(200)
        )
        .is_empty());
        // The cost report arrives: it wins, and is kept when a later report lacks it.
        let costs: HashMap<String, CostRecord> = [report("a", "hash-a", 0.5)].into_iter().collect();
        let d = diff(&known, seen.clone(), &HashSet::new(), &costs, list, ts(300));
        assert_eq!(d.upserts.len(), 1, "{d:?}");
        assert_eq!(d.upserts[0].hourly_cost, Some(0.5));
        assert_eq!(d.upserts[0].price_source, Some(PriceSource::CostReport));
        let known = known_from_more(known, d);
        assert!(diff(
            &known,
            seen,
            &HashSet::new(),
            &HashMap::new(),
            list,
            ts(400)
        )
        .is_empty());
    }

    fn known_from_more(
        mut known: HashMap<String, ClusterRow>,
        changes: ClusterChanges,
    ) -> HashMap<String, ClusterRow> {
        apply(&mut known, changes);
        known
    }

    fn records(text: &str) -> Vec<StatusRecord<'_>> {
        crate::skypilot::wire::parse_records(text).unwrap()
    }

    const TWO: &str = r#"[{"name":"a","status":"UP","cluster_hash":"ha","autostop":-1,"to_down":false,"launched_at":1000},
                          {"name":"b","status":"INIT","cluster_hash":"hb","autostop":30,"to_down":true}]"#;

    #[test]
    fn ingest_skips_unchanged_records_by_fingerprint() {
        let mut known = Known::default();
        let first = ingest(
            &known,
            records(TWO),
            &HashMap::new(),
            &no_list_price,
            false,
            ts(100),
        )
        .unwrap();
        assert_eq!(first.clusters, 2);
        assert_eq!(first.changes.upserts.len(), 2);
        assert_eq!(first.fingerprints.len(), 2);
        known.apply(first);

        let again = ingest(
            &known,
            records(TWO),
            &HashMap::new(),
            &no_list_price,
            false,
            ts(200),
        )
        .unwrap();
        assert!(again.changes.is_empty(), "{:?}", again.changes);
        assert!(
            again.fingerprints.is_empty(),
            "unchanged records are not converted"
        );
        assert_eq!(again.clusters, 2);

        let all = ingest(
            &known,
            records(TWO),
            &HashMap::new(),
            &no_list_price,
            true,
            ts(200),
        )
        .unwrap();
        assert!(all.changes.is_empty(), "{:?}", all.changes);
        assert_eq!(
            all.fingerprints.len(),
            2,
            "compare_all converts every record"
        );

        let changed = TWO.replace(r#""status":"INIT""#, r#""status":"UP""#);
        let d = ingest(
            &known,
            records(&changed),
            &HashMap::new(),
            &no_list_price,
            false,
            ts(300),
        )
        .unwrap();
        assert_eq!(d.changes.upserts.len(), 1);
        assert_eq!(d.changes.transitions[0].cluster, "b");
        assert_eq!(d.changes.transitions[0].at, ts(300));

        let one = r#"[{"name":"a","status":"UP","cluster_hash":"ha","autostop":-1,"to_down":false,"launched_at":1000}]"#;
        let gone = ingest(
            &known,
            records(one),
            &HashMap::new(),
            &no_list_price,
            false,
            ts(400),
        )
        .unwrap();
        assert_eq!(gone.changes.gone, vec![("b".to_string(), ts(400))]);
        known.apply(gone);
        assert!(!known.fingerprints.contains_key("b"));
    }

    #[test]
    fn ingest_names_a_record_it_cannot_convert() {
        let bad = r#"[{"name":"weird","status":"EXPLODED","cluster_hash":"h","autostop":-1,"to_down":false}]"#;
        let e = ingest(
            &Known::default(),
            records(bad),
            &HashMap::new(),
            &no_list_price,
            false,
            ts(1),
        )
        .unwrap_err();
        assert!(e.contains("weird") && e.contains("EXPLODED"), "{e}");
    }

    #[test]
    fn a_name_twice_in_the_answer_is_malformed() {
        let dup = r#"[{"name":"twin","status":"UP","cluster_hash":"h1","autostop":-1,"to_down":false},
                      {"name":"twin","status":"STOPPED","cluster_hash":"h2","autostop":-1,"to_down":false}]"#;
        let e = ingest(
            &Known::default(),
            records(dup),
            &HashMap::new(),
            &no_list_price,
            false,
            ts(1),
        )
        .unwrap_err();
        assert!(e.contains("\"twin\" appears more than once"), "{e}");
    }
}
