//! The metric families: a [`Snapshot`] rendered through `prometheus-client` as Prometheus
//! text (0.0.4) or OpenMetrics 1.0.
//!
//! The exposition is cut into parts by what they are computed from (see [`PARTS`]): the
//! database alone, the clusters alone, or the clock too. An [`Exposition`] keeps the
//! first two as text while the database is unchanged, and renders the time-dependent
//! series (ages, uptimes, the read duration) for every scrape.
//!
//! Gone clusters (known before, no longer listed by the API server) are not in the
//! per-cluster series; they are only counted (`skypilot_clusters_gone`) and their accrued
//! cost stays in the fleet total.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use bytes::Bytes;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{
    DescriptorEncoder, EncodeGaugeValue, EncodeLabelSet, MetricEncoder, NoLabelSet,
};
use prometheus_client::metrics::exemplar::Exemplar;
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::{Registry, Unit};

use super::collect::{Snapshot, DB_ERROR_KINDS, TABLES};
use crate::cluster::ClusterStatus;
use crate::store::scrape::FleetCluster;
use crate::time::Timestamp;

/// Version of this binary, in `skypilot_host_build_info`.
pub(crate) const BUILD_VERSION: &str = env!("CARGO_PKG_VERSION");

/// Cluster actions reported by `skypilot_cluster_actions_total`; other audit actions
/// (but `login`) are not exported.
pub(crate) const CLUSTER_ACTIONS: [&str; 4] = ["autostop", "down", "start", "stop"];
/// Action/outcome pairs always present (at 0) so `increase()` sees the first event.
const ALWAYS_ACTIONS: [&str; 3] = ["autostop", "down", "stop"];
const ALWAYS_OUTCOMES: [&str; 2] = ["error", "ok"];

/// The exposition format of a scrape.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// Prometheus text format 0.0.4.
    Text,
    /// OpenMetrics 1.0 text.
    OpenMetrics,
}

pub(crate) const OPENMETRICS_CONTENT_TYPE: &str =
    "application/openmetrics-text; version=1.0.0; charset=utf-8";
pub(crate) const TEXT_CONTENT_TYPE: &str =
    prometheus_client::encoding::prometheus_text::CONTENT_TYPE;

impl Format {
    pub(crate) fn content_type(self) -> &'static str {
        match self {
            Format::Text => TEXT_CONTENT_TYPE,
            Format::OpenMetrics => OPENMETRICS_CONTENT_TYPE,
        }
    }

    /// Picks the format from an `Accept` header: OpenMetrics when the client ranks it at
    /// least as high as plain text, else Prometheus text (also when nothing matches).
    pub(crate) fn negotiate(accept: Option<&str>) -> Format {
        let Some(accept) = accept else {
            return Format::Text;
        };
        let mut om_q = 0.0f32;
        let mut text_q = 0.0f32;
        for range in accept.split(',') {
            let mut parts = range.split(';').map(str::trim);
            let media = parts.next().unwrap_or("").to_ascii_lowercase();
            let mut q = 1.0f32;
            let mut version: Option<String> = None;
            for p in parts {
                if let Some((k, v)) = p.split_once('=') {
                    let v = v.trim().trim_matches('"');
                    match k.trim().to_ascii_lowercase().as_str() {
                        "q" => q = v.parse::<f32>().unwrap_or(0.0).clamp(0.0, 1.0),
                        "version" => version = Some(v.to_string()),
                        _ => {}
                    }
                }
            }
            match media.as_str() {
                "application/openmetrics-text"
                    if version.as_deref().is_none_or(|v| v.starts_with("1.")) =>
                {
                    om_q = om_q.max(q)
                }
                "text/plain" if version.as_deref().is_none_or(|v| v == "0.0.4") => {
                    text_q = text_q.max(q)
                }
                "text/*" | "*/*" => text_q = text_q.max(q),
                _ => {}
            }
        }
        if om_q > 0.0 && om_q >= text_q {
            Format::OpenMetrics
        } else {
            Format::Text
        }
    }
}

/// Renders a snapshot in the given format into a string.
pub fn render(snapshot: Snapshot, format: Format) -> Result<String, fmt::Error> {
    let mut out = String::with_capacity(4096 + snapshot.clusters.len() * 520);
    render_into(snapshot, format, &mut out)?;
    Ok(out)
}

/// Renders a snapshot in the given format into a writer (a fresh registry each time).
pub fn render_into<W: fmt::Write>(
    snapshot: Snapshot,
    format: Format,
    out: &mut W,
) -> Result<(), fmt::Error> {
    let mut registry = Registry::default();
    registry.register_collector(Box::new(snapshot));
    match format {
        Format::Text => prometheus_client::encoding::prometheus_text::encode(out, &registry),
        Format::OpenMetrics => prometheus_client::encoding::text::encode(out, &registry),
    }
}

/// A label value for a short, bounded vocabulary from the database (error kinds,
/// outcomes): letters, digits and `_.:-` kept, anything else `_`, at most 64 characters.
pub(crate) fn bounded_label(s: &str) -> String {
    let s: String = s
        .chars()
        .take(64)
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | ':' | '-') {
                c
            } else {
                '_'
            }
        })
        .collect();
    if s.is_empty() {
        "unknown".to_string()
    } else {
        s
    }
}

fn seconds() -> Unit {
    Unit::Seconds
}
fn dollars() -> Unit {
    Unit::Other("dollars".to_string())
}
fn dollars_per_hour() -> Unit {
    Unit::Other("dollars_per_hour".to_string())
}

/// One gauge without labels.
fn gauge<V: EncodeGaugeValue>(
    enc: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    unit: Option<&Unit>,
    v: V,
) -> fmt::Result {
    let mut m = enc.encode_descriptor(name, help, unit, MetricType::Gauge)?;
    m.encode_gauge(&v)
}

/// A gauge family; `items` are (labels, value).
fn gauges<L, V, I>(
    enc: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    unit: Option<&Unit>,
    items: I,
) -> fmt::Result
where
    L: EncodeLabelSet,
    V: EncodeGaugeValue,
    I: IntoIterator<Item = (L, V)>,
{
    let mut m = enc.encode_descriptor(name, help, unit, MetricType::Gauge)?;
    for (labels, v) in items {
        m.encode_family(&labels)?.encode_gauge(&v)?;
    }
    Ok(())
}

fn counter(m: &mut MetricEncoder, v: u64) -> fmt::Result {
    m.encode_counter::<NoLabelSet, u64, u64>(&v, None::<&Exemplar<NoLabelSet, u64>>)
}

/// A counter family; `name` without `_total` (the encoder adds it).
fn counters<L, I>(enc: &mut DescriptorEncoder, name: &str, help: &str, items: I) -> fmt::Result
where
    L: EncodeLabelSet,
    I: IntoIterator<Item = (L, u64)>,
{
    let mut m = enc.encode_descriptor(name, help, None, MetricType::Counter)?;
    for (labels, v) in items {
        counter(&mut m.encode_family(&labels)?, v)?;
    }
    Ok(())
}

fn flag(b: bool) -> i64 {
    i64::from(b)
}

/// The newest backup in `backup.directory`, read at each scrape (a directory listing and
/// one manifest): it lives in files, not in the host database the rest is cached from.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct BackupState {
    /// `backup.interval_secs`: the schedule the alert compares the age with.
    pub(crate) interval_secs: u64,
    /// The newest complete backup: when it was taken and its size in bytes; `Err` when
    /// the directory or its manifest cannot be read.
    pub(crate) newest: Result<Option<(Timestamp, u64)>, String>,
}

impl BackupState {
    pub(crate) fn read(dir: &std::path::Path, interval_secs: u64) -> BackupState {
        let newest = crate::backup::latest(dir)
            .map(|l| l.map(|(_, m)| (Timestamp::from_secs(m.created_at), m.total_size())))
            .map_err(|e| format!("{e:#}"));
        BackupState {
            interval_secs,
            newest,
        }
    }
}

/// [`BackupState`] at the moment of a scrape.
#[derive(Debug)]
struct BackupAt(BackupState, Timestamp);

impl Collector for BackupAt {
    fn encode(&self, mut enc: DescriptorEncoder) -> fmt::Result {
        let BackupAt(b, now) = self;
        let enc = &mut enc;
        gauge(
            enc,
            "skypilot_host_backup_directory_readable",
            "1 when backup.directory and its newest manifest could be read, else 0.",
            None,
            flag(b.newest.is_ok()),
        )?;
        gauge(
            enc,
            "skypilot_host_backup_interval",
            "backup.interval_secs: the schedule of the backups.",
            Some(&seconds()),
            b.interval_secs as f64,
        )?;
        if let Ok(newest) = &b.newest {
            gauge(
                enc,
                "skypilot_host_backup_age",
                "Seconds since the newest complete backup was taken (+Inf when there is none).",
                Some(&seconds()),
                newest.map_or(f64::INFINITY, |(t, _)| now.age_since(t)),
            )?;
        }
        if let Ok(Some((t, size))) = &b.newest {
            gauge(
                enc,
                "skypilot_host_backup_last_success_timestamp",
                "When the newest complete backup was taken (Unix seconds).",
                Some(&seconds()),
                t.as_secs_f64(),
            )?;
            gauge(
                enc,
                "skypilot_host_backup_last_size_bytes",
                "Size of the newest complete backup (its parts, in bytes).",
                None,
                *size as f64,
            )?;
        }
        Ok(())
    }
}

/// The backup series of one scrape, in `format`.
pub(crate) fn render_backup(
    state: BackupState,
    now: Timestamp,
    format: Format,
) -> Result<Bytes, fmt::Error> {
    let mut registry = Registry::default();
    registry.register_collector(Box::new(BackupAt(state, now)));
    let mut out = String::new();
    match format {
        Format::Text => prometheus_client::encoding::prometheus_text::encode(&mut out, &registry)?,
        Format::OpenMetrics => {
            prometheus_client::encoding::text::encode_registry(&mut out, &registry)?
        }
    }
    Ok(Bytes::from(out))
}

/// The moment a scrape is served at: what the time-dependent series are computed from.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Moment {
    /// From the clock.
    pub(crate) now: Timestamp,
    /// Seconds this scrape spent reading the host database.
    pub(crate) read_seconds: f64,
}

impl Snapshot {
    /// The moment this snapshot was read at.
    pub(crate) fn moment(&self) -> Moment {
        Moment {
            now: self.now,
            read_seconds: self.read_seconds,
        }
    }
}

/// What a part of the exposition is computed from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Source {
    /// The database alone (small: host state, polls, API server, actions).
    Database,
    /// The clusters alone: the per-cluster series and their aggregates (the bulk of a
    /// large fleet's exposition).
    Clusters,
    /// The clock too (ages, uptimes, the read duration): rendered for every scrape.
    Clock,
}

type EncodePart = fn(&Snapshot, Moment, &mut DescriptorEncoder) -> fmt::Result;

/// The exposition, family by family in this order, cut where the source changes.
const PARTS: [(Source, EncodePart); 14] = [
    (Source::Database, Snapshot::encode_host_state),
    (Source::Clock, Snapshot::encode_host_ages),
    (Source::Database, Snapshot::encode_polls),
    (Source::Clock, Snapshot::encode_api_server_age),
    (Source::Database, Snapshot::encode_api_server_version),
    (Source::Clusters, Snapshot::encode_fleet),
    (Source::Clock, Snapshot::encode_uptime),
    (Source::Clusters, Snapshot::encode_autostop_and_cost),
    (Source::Clock, Snapshot::encode_accrued_cost),
    (Source::Database, Snapshot::encode_actions),
    (Source::Database, Snapshot::encode_jobs),
    (Source::Clock, Snapshot::encode_job_times),
    (Source::Database, Snapshot::encode_services),
    (Source::Clock, Snapshot::encode_services_age),
];

impl Collector for Snapshot {
    fn encode(&self, mut enc: DescriptorEncoder) -> fmt::Result {
        let moment = self.moment();
        for (_, part) in PARTS {
            part(self, moment, &mut enc)?;
        }
        Ok(())
    }
}

/// One part of [`PARTS`] as a collector of its own.
#[derive(Debug)]
struct Part {
    snapshot: Arc<Snapshot>,
    moment: Moment,
    encode: EncodePart,
}

impl Collector for Part {
    fn encode(&self, mut enc: DescriptorEncoder) -> fmt::Result {
        (self.encode)(&self.snapshot, self.moment, &mut enc)
    }
}

/// Renders one part; `capacity` is the expected size (the same part's last time).
fn render_part(
    snapshot: &Arc<Snapshot>,
    moment: Moment,
    encode: EncodePart,
    format: Format,
    capacity: usize,
) -> Result<Bytes, fmt::Error> {
    let mut registry = Registry::default();
    registry.register_collector(Box::new(Part {
        snapshot: snapshot.clone(),
        moment,
        encode,
    }));
    let mut out = String::with_capacity(capacity + capacity / 16);
    match format {
        Format::Text => prometheus_client::encoding::prometheus_text::encode(&mut out, &registry)?,
        Format::OpenMetrics => {
            prometheus_client::encoding::text::encode_registry(&mut out, &registry)?
        }
    }
    // Kept for many scrapes: without the spare capacity of the growing string.
    out.shrink_to_fit();
    Ok(Bytes::from(out))
}

/// A snapshot rendered once for many scrapes: the parts computed from the database are
/// kept as text, the time-dependent series are rendered for each scrape
/// ([`Exposition::body`]). Concatenated, the pieces of a body are exactly what
/// [`render`] gives for the same snapshot at the same moment.
#[derive(Debug, Clone)]
pub struct Exposition {
    format: Format,
    snapshot: Arc<Snapshot>,
    /// Index-aligned with [`PARTS`]; `None` for the clock's parts.
    fixed: Vec<Option<Bytes>>,
    /// The per-cluster parts were taken over from the previous exposition.
    reused_clusters: bool,
}

impl Exposition {
    /// Renders the parts of `snapshot` that do not move with the clock. The per-cluster
    /// parts are taken over from `previous` when it has the same format and the very
    /// same clusters (a poll that changed no cluster); otherwise `previous` is dropped
    /// before rendering, so two large expositions are never held at once.
    pub(crate) fn new(
        snapshot: Arc<Snapshot>,
        format: Format,
        previous: Option<Exposition>,
    ) -> Result<Exposition, fmt::Error> {
        // The sizes of the previous parts, to render without growing the strings.
        let sizes: Vec<usize> = match &previous {
            Some(p) => p
                .fixed
                .iter()
                .map(|f| f.as_ref().map_or(0, Bytes::len))
                .collect(),
            None => vec![0; PARTS.len()],
        };
        let previous = previous.filter(|p| {
            p.format == format
                && (Arc::ptr_eq(&p.snapshot.clusters, &snapshot.clusters)
                    || p.snapshot.clusters == snapshot.clusters)
        });
        let reused_clusters = previous.is_some();
        let mut previous_fixed = previous.map(|p| p.fixed).unwrap_or_default();
        let moment = snapshot.moment();
        let fixed = PARTS
            .iter()
            .zip(sizes)
            .enumerate()
            .map(|(i, ((source, encode), size))| match source {
                Source::Clock => Ok(None),
                Source::Clusters if reused_clusters => {
                    match previous_fixed.get_mut(i).and_then(Option::take) {
                        Some(text) => Ok(Some(text)),
                        None => render_part(&snapshot, moment, *encode, format, size).map(Some),
                    }
                }
                _ => render_part(&snapshot, moment, *encode, format, size).map(Some),
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Exposition {
            format,
            snapshot,
            fixed,
            reused_clusters,
        })
    }

    pub(crate) fn format(&self) -> Format {
        self.format
    }

    /// The snapshot this exposition was rendered from.
    pub(crate) fn snapshot(&self) -> &Arc<Snapshot> {
        &self.snapshot
    }

    /// Whether the per-cluster parts were taken over from the previous exposition
    /// instead of rendered.
    pub(crate) fn reused_clusters(&self) -> bool {
        self.reused_clusters
    }

    /// The body of one scrape at `moment`, in pieces to send in order.
    pub(crate) fn body(&self, moment: Moment) -> Result<Vec<Bytes>, fmt::Error> {
        let mut pieces = Vec::with_capacity(PARTS.len() + 1);
        for ((_, encode), fixed) in PARTS.iter().zip(&self.fixed) {
            match fixed {
                Some(text) => pieces.push(text.clone()),
                None => pieces.push(render_part(
                    &self.snapshot,
                    moment,
                    *encode,
                    self.format,
                    0,
                )?),
            }
        }
        if self.format == Format::OpenMetrics {
            pieces.push(Bytes::from_static(b"# EOF\n"));
        }
        pieces.retain(|p| !p.is_empty());
        Ok(pieces)
    }
}

impl Snapshot {
    /// Build, database state, rows skipped.
    fn encode_host_state(&self, _: Moment, enc: &mut DescriptorEncoder) -> fmt::Result {
        let mut m = enc.encode_descriptor(
            "skypilot_host_build",
            "Version of skypilot-host serving these metrics; value always 1.",
            None,
            MetricType::Info,
        )?;
        m.encode_info(&[("version", BUILD_VERSION)])?;
        gauge(
            enc,
            "skypilot_host_database_up",
            "1 when the host database could be opened and read, else 0 (see skypilot_host_database_error).",
            None,
            flag(self.database_up()),
        )?;
        gauges(
            enc,
            "skypilot_host_database_error",
            "1 for the kind of error met reading the host database in this scrape, 0 for the others.",
            None,
            DB_ERROR_KINDS
                .iter()
                .map(|k| ([("kind", *k)], flag(self.db_errors.contains(k)))),
        )?;
        gauges(
            enc,
            "skypilot_host_database_malformed_rows",
            "Rows of the host database skipped in this scrape because they do not parse, by table.",
            None,
            TABLES.iter().map(|t| {
                (
                    [("table", *t)],
                    self.malformed_rows.get(t).copied().unwrap_or(0),
                )
            }),
        )
    }

    /// The read duration and the age of the state.
    fn encode_host_ages(&self, at: Moment, enc: &mut DescriptorEncoder) -> fmt::Result {
        gauge(
            enc,
            "skypilot_host_database_read_duration",
            "Time this scrape spent reading the host database.",
            Some(&seconds()),
            at.read_seconds,
        )?;
        if self.database_up() || self.last_ok_poll.is_some() {
            let age = match self.last_ok_poll {
                Some(t) => at.now.age_since(t),
                None => f64::INFINITY,
            };
            gauge(
                enc,
                "skypilot_host_state_age",
                "Seconds since the cluster manager's last successful poll of the API server (+Inf when it never succeeded).",
                Some(&seconds()),
                age,
            )?;
        }
        Ok(())
    }

    /// The polls, and whether the API server was up at the last check.
    fn encode_polls(&self, _: Moment, enc: &mut DescriptorEncoder) -> fmt::Result {
        if let Some(t) = self.last_ok_poll {
            gauge(
                enc,
                "skypilot_host_last_successful_poll_timestamp",
                "Unix time at which the last successful poll finished.",
                Some(&seconds()),
                t.as_secs_f64(),
            )?;
        }
        if let Some(ok) = self.last_poll_ok {
            gauge(
                enc,
                "skypilot_host_last_poll_ok",
                "1 when the cluster manager's most recent poll succeeded, else 0.",
                None,
                flag(ok),
            )?;
        }
        if let Some(l) = &self.poll_load {
            gauge(
                enc,
                "skypilot_host_poll_interval_effective",
                "Interval between the cluster manager's polls: poll_interval_secs, stretched to keep its /status reads (counted as the API server's CPU meanwhile when it runs on this host, else as twice their wall time) within load_budget of the API server's CPU.",
                Some(&seconds()),
                l.interval_secs,
            )?;
            gauge(
                enc,
                "skypilot_host_status_request_duration",
                "Median wall time of the cluster manager's last /status reads (without refresh), from request to answer.",
                Some(&seconds()),
                l.status_secs,
            )?;
            gauge(
                enc,
                "skypilot_host_status_request_cpu",
                "CPU of the API server counted per /status read of the cluster manager (the median of the last nine): measured from its cgroup or process tree on this host, else twice the wall time.",
                Some(&seconds()),
                l.cpu_secs,
            )?;
            gauge(
                enc,
                "skypilot_host_poll_load_share",
                "Share of the API server's CPU the cluster manager's /status reads take at the effective interval (counted CPU / interval).",
                None,
                l.share,
            )?;
            gauge(
                enc,
                "skypilot_host_poll_load_budget",
                "cluster_manager.load_budget: the largest share of the API server's time the cluster manager's reads may take.",
                None,
                l.budget,
            )?;
        }
        let mut errors: BTreeMap<String, u64> = BTreeMap::new();
        for (kind, n) in &self.poll_errors {
            *errors.entry(bounded_label(kind)).or_insert(0) += u64::try_from(*n).unwrap_or(0);
        }
        counters(
            enc,
            "skypilot_host_poll_errors",
            "Failed polls of the API server recorded in the host database, by error kind.",
            errors.iter().map(|(k, n)| ([("kind", k.as_str())], *n)),
        )?;
        gauge(
            enc,
            "skypilot_api_server_up",
            "1 when the cluster manager's last health check of SkyPilot's API server succeeded, else 0 (also when never checked).",
            None,
            flag(self.api_server.as_ref().is_some_and(|h| h.healthy)),
        )
    }

    fn encode_api_server_age(&self, at: Moment, enc: &mut DescriptorEncoder) -> fmt::Result {
        let Some(h) = self.api_server.as_ref() else {
            return Ok(());
        };
        gauge(
            enc,
            "skypilot_api_server_last_check_age",
            "Seconds since the last health check of SkyPilot's API server.",
            Some(&seconds()),
            at.now.age_since(h.checked_at),
        )
    }

    fn encode_api_server_version(&self, _: Moment, enc: &mut DescriptorEncoder) -> fmt::Result {
        let Some(h) = self.api_server.as_ref() else {
            return Ok(());
        };
        if let Some(ms) = h.latency_ms {
            gauge(
                enc,
                "skypilot_api_server_health_latency",
                "Duration of the last health check of SkyPilot's API server.",
                Some(&seconds()),
                ms / 1000.0,
            )?;
        }
        if h.version.is_some() || h.api_version.is_some() || h.commit.is_some() {
            let mut m = enc.encode_descriptor(
                "skypilot_api_server",
                "Version of SkyPilot's API server as reported by its health check; value always 1.",
                None,
                MetricType::Info,
            )?;
            m.encode_info(&[
                ("version", h.version.as_deref().unwrap_or("")),
                ("api_version", h.api_version.as_deref().unwrap_or("")),
                ("commit", h.commit.as_deref().unwrap_or("")),
            ])?;
        }
        Ok(())
    }

    /// Clusters present (not gone).
    fn present(&self) -> impl Iterator<Item = &FleetCluster> + '_ {
        self.clusters
            .iter()
            .filter(|c| c.status != ClusterStatus::Gone)
    }

    /// The fleet's counts and one info series per cluster.
    fn encode_fleet(&self, _: Moment, enc: &mut DescriptorEncoder) -> fmt::Result {
        let mut groups: BTreeMap<(&str, &str, &str, &str), u64> = BTreeMap::new();
        let mut by_status: BTreeMap<&str, u64> = [
            ClusterStatus::Init,
            ClusterStatus::Up,
            ClusterStatus::Stopped,
        ]
        .iter()
        .map(|s| (s.as_str(), 0))
        .collect();
        for c in self.present() {
            *groups
                .entry((c.status.as_str(), &*c.cloud, &*c.region, &*c.workspace))
                .or_insert(0) += 1;
            *by_status.entry(c.status.as_str()).or_insert(0) += 1;
        }
        gauges(
            enc,
            "skypilot_clusters",
            "Clusters listed by SkyPilot's API server, by status, cloud, region and workspace.",
            None,
            groups.iter().map(|((s, c, r, w), n)| {
                (
                    [
                        ("status", *s),
                        ("cloud", *c),
                        ("region", *r),
                        ("workspace", *w),
                    ],
                    *n,
                )
            }),
        )?;
        gauges(
            enc,
            "skypilot_clusters_by_status",
            "Clusters listed by SkyPilot's API server, by status (every status present, 0 included).",
            None,
            by_status.iter().map(|(s, n)| ([("status", *s)], *n)),
        )?;
        gauge(
            enc,
            "skypilot_clusters_gone",
            "Clusters the host database remembers that SkyPilot's API server no longer lists.",
            None,
            self.clusters
                .iter()
                .filter(|c| c.status == ClusterStatus::Gone)
                .count() as u64,
        )?;
        let mut m = enc.encode_descriptor(
            "skypilot_cluster",
            "One series per cluster listed by SkyPilot's API server, carrying its attributes; value always 1.",
            None,
            MetricType::Info,
        )?;
        for c in self.present() {
            m.encode_info(&[
                ("cluster", c.name.as_str()),
                ("cloud", &*c.cloud),
                ("region", &*c.region),
                ("instance_type", &*c.instance_type),
                ("workspace", &*c.workspace),
                ("status", c.status.as_str()),
            ])?;
        }
        Ok(())
    }

    fn encode_uptime(&self, at: Moment, enc: &mut DescriptorEncoder) -> fmt::Result {
        gauges(
            enc,
            "skypilot_cluster_uptime",
            "Seconds since an UP cluster was launched (UP clusters with a known launch time only).",
            Some(&seconds()),
            self.present()
                .filter(|c| c.status == ClusterStatus::Up)
                .filter_map(|c| {
                    c.launched_at
                        .map(|t| ([("cluster", c.name.as_str())], at.now.age_since(t)))
                }),
        )
    }

    fn encode_autostop_and_cost(&self, _: Moment, enc: &mut DescriptorEncoder) -> fmt::Result {
        gauges(
            enc,
            "skypilot_cluster_autostop",
            "Idle time after which autostop acts on the cluster; -1 when the cluster has no autostop.",
            Some(&seconds()),
            self.present().map(|c| {
                let v = if c.autostop_minutes < 0 {
                    -1
                } else {
                    c.autostop_minutes.saturating_mul(60)
                };
                ([("cluster", c.name.as_str())], v)
            }),
        )?;
        gauges(
            enc,
            "skypilot_cluster_autostop_down",
            "1 when the cluster's autostop tears it down instead of stopping it, else 0.",
            None,
            self.present().map(|c| {
                (
                    [("cluster", c.name.as_str())],
                    flag(c.autostop_minutes >= 0 && c.autostop_to_down),
                )
            }),
        )?;
        gauge(
            enc,
            "skypilot_clusters_up_without_autostop",
            "UP clusters that have no autostop configured.",
            None,
            self.present()
                .filter(|c| c.status == ClusterStatus::Up && c.autostop_minutes < 0)
                .count() as u64,
        )?;
        gauges(
            enc,
            "skypilot_cluster_price",
            "Price of running the whole cluster (all nodes), where known; source is cost_report (SkyPilot's cost report) or catalog (SkyPilot's catalog: the instance type's list price × nodes).",
            Some(&dollars_per_hour()),
            self.present().filter_map(|c| {
                c.hourly_cost.filter(|v| v.is_finite()).map(|v| {
                    (
                        [
                            ("cluster", c.name.as_str()),
                            ("source", c.price_source.map_or("unknown", |p| p.as_str())),
                        ],
                        v,
                    )
                })
            }),
        )?;
        let up = || self.present().filter(|c| c.status == ClusterStatus::Up);
        gauge(
            enc,
            "skypilot_burn_rate",
            "Sum of the prices of all UP clusters with a known price.",
            Some(&dollars_per_hour()),
            up().filter_map(|c| c.hourly_cost.filter(|v| v.is_finite()))
                .fold(0.0, |a, b| a + b),
        )?;
        gauge(
            enc,
            "skypilot_clusters_up_without_price",
            "UP clusters whose price is unknown (not in skypilot_burn_rate_dollars_per_hour).",
            None,
            up().filter(|c| !c.hourly_cost.is_some_and(f64::is_finite))
                .count() as u64,
        )?;
        Ok(())
    }

    /// Cost so far moves with the clock for clusters priced from the catalog.
    fn encode_accrued_cost(&self, at: Moment, enc: &mut DescriptorEncoder) -> fmt::Result {
        gauges(
            enc,
            "skypilot_cluster_accrued_cost",
            "Cost the cluster has accrued so far: SkyPilot's cost report's where it has one, else for an UP cluster priced from the catalog its price × the hours since launch.",
            Some(&dollars()),
            self.present().filter_map(|c| {
                c.cost_so_far(at.now)
                    .filter(|v| v.is_finite())
                    .map(|v| ([("cluster", c.name.as_str())], v))
            }),
        )?;
        gauge(
            enc,
            "skypilot_accrued_cost",
            "Accrued cost of every cluster in the host database, gone ones included (as skypilot_cluster_accrued_cost_dollars).",
            Some(&dollars()),
            self.clusters
                .iter()
                .filter_map(|c| c.cost_so_far(at.now).filter(|v| v.is_finite()))
                .fold(0.0, |a, b| a + b),
        )
    }

    fn encode_actions(&self, _: Moment, enc: &mut DescriptorEncoder) -> fmt::Result {
        let mut actions: BTreeMap<(String, String), u64> = BTreeMap::new();
        for a in ALWAYS_ACTIONS {
            for o in ALWAYS_OUTCOMES {
                actions.insert((a.to_string(), o.to_string()), 0);
            }
        }
        let mut logins: BTreeMap<String, u64> = BTreeMap::new();
        for (action, outcome, n) in &self.audit {
            let n = u64::try_from(*n).unwrap_or(0);
            if action == "login" {
                *logins.entry(bounded_label(outcome)).or_insert(0) += n;
            } else if CLUSTER_ACTIONS.contains(&action.as_str()) {
                *actions
                    .entry((action.clone(), bounded_label(outcome)))
                    .or_insert(0) += n;
            }
        }
        counters(
            enc,
            "skypilot_cluster_actions",
            "Actions the host services took on clusters (autostop, stop, down, start), by outcome.",
            actions
                .iter()
                .map(|((a, o), n)| ([("action", a.as_str()), ("outcome", o.as_str())], *n)),
        )?;
        counters(
            enc,
            "skypilot_web_ui_logins",
            "Login attempts at the web UI, by outcome.",
            logins.iter().map(|(o, n)| ([("outcome", o.as_str())], *n)),
        )
    }
}

impl Snapshot {
    /// Managed jobs: by status and owner, failures, recoveries of each job that has not
    /// ended, and whether SkyPilot's job queue was read.
    fn encode_jobs(&self, _: Moment, enc: &mut DescriptorEncoder) -> fmt::Result {
        gauges(
            enc,
            "skypilot_managed_jobs",
            "Managed jobs in the host database, by SkyPilot status (GONE: no longer in SkyPilot's queue) and owner.",
            None,
            self.job_counts.iter().map(|c| {
                (
                    [
                        ("status", c.status.as_str().to_string()),
                        ("user", bounded_label(&c.user)),
                    ],
                    c.jobs,
                )
            }),
        )?;
        counters(
            enc,
            "skypilot_managed_jobs_failed",
            "Managed jobs that ended with a failure (FAILED, FAILED_SETUP, FAILED_PRECHECKS, FAILED_NO_RESOURCE, FAILED_CONTROLLER; not CANCELLED), by owner.",
            self.failed_jobs
                .iter()
                .map(|(u, n)| ([("user", bounded_label(u))], u64::try_from(*n).unwrap_or(0))),
        )?;
        counters(
            enc,
            "skypilot_managed_job_recoveries",
            "Times SkyPilot recovered each managed job that has not ended (its recovery_count).",
            self.active_jobs
                .iter()
                .map(|j| (job_labels(j), u64::try_from(j.recovery_count).unwrap_or(0))),
        )?;
        if let Some(f) = &self.jobs_feed {
            gauge(
                enc,
                "skypilot_host_jobs_feed_up",
                "1 when the cluster manager's last read of SkyPilot's managed-job queue succeeded (or found no jobs controller up: no job in progress), else 0.",
                None,
                flag(!f.failed()),
            )?;
        }
        Ok(())
    }

    /// How long each running job has run, and the age of the job data.
    fn encode_job_times(&self, at: Moment, enc: &mut DescriptorEncoder) -> fmt::Result {
        gauges(
            enc,
            "skypilot_managed_job_running",
            "Seconds since each managed job that holds a cluster (STARTING, RUNNING, RECOVERING, ...) started.",
            Some(&seconds()),
            self.active_jobs
                .iter()
                .filter(|j| j.status.is_active())
                .filter_map(|j| Some((job_labels(j), j.running_secs(at.now)?))),
        )?;
        if let Some(ok) = self.jobs_feed.as_ref().and_then(|f| f.ok_at) {
            gauge(
                enc,
                "skypilot_host_jobs_feed_age",
                "Seconds since the cluster manager last read SkyPilot's managed-job queue successfully.",
                Some(&seconds()),
                at.now.age_since(ok),
            )?;
        }
        Ok(())
    }
}

impl Snapshot {
    /// SkyServe services: by status and owner, replicas of each live service by status,
    /// its ready replicas, and whether `/serve/status` was read.
    fn encode_services(&self, _: Moment, enc: &mut DescriptorEncoder) -> fmt::Result {
        let mut by: std::collections::BTreeMap<(&str, String), i64> = Default::default();
        for s in &self.services {
            *by.entry((s.service.status.as_str(), bounded_label(s.service.owner())))
                .or_default() += 1;
        }
        gauges(
            enc,
            "skypilot_services",
            "SkyServe services in the host database, by SkyPilot status (GONE: no longer listed by SkyPilot) and owner.",
            None,
            by.into_iter()
                .map(|((status, user), n)| ([("status", status.to_string()), ("user", user)], n)),
        )?;
        let live = || self.services.iter().filter(|s| s.service.status.is_live());
        gauges(
            enc,
            "skypilot_service_replicas",
            "Replicas of each live SkyServe service (not shutting down, not gone), by replica status.",
            None,
            live().flat_map(|s| {
                s.service
                    .replicas_by_status()
                    .into_iter()
                    .map(move |(status, n)| {
                        (
                            [
                                ("service", bounded_label(&s.service.name)),
                                ("user", bounded_label(s.service.owner())),
                                ("status", status.as_str().to_string()),
                            ],
                            n,
                        )
                    })
            }),
        )?;
        gauges(
            enc,
            "skypilot_service_ready_replicas",
            "READY replicas of each live SkyServe service (not shutting down, not gone): 0 means it answers no request. No status label, so a series lasts through the service's status changes.",
            None,
            live().map(|s| {
                (
                    [
                        ("service", bounded_label(&s.service.name)),
                        ("user", bounded_label(s.service.owner())),
                    ],
                    s.ready_replicas,
                )
            }),
        )?;
        if let Some(f) = &self.services_feed {
            gauge(
                enc,
                "skypilot_host_services_feed_up",
                "1 when the cluster manager's last read of SkyServe's services (/serve/status) succeeded (or found no serve controller up), else 0.",
                None,
                flag(!f.failed()),
            )?;
        }
        Ok(())
    }

    /// The age of the services data.
    fn encode_services_age(&self, at: Moment, enc: &mut DescriptorEncoder) -> fmt::Result {
        if let Some(ok) = self.services_feed.as_ref().and_then(|f| f.ok_at) {
            gauge(
                enc,
                "skypilot_host_services_feed_age",
                "Seconds since the cluster manager last read SkyServe's services successfully.",
                Some(&seconds()),
                at.now.age_since(ok),
            )?;
        }
        Ok(())
    }
}

/// The labels of one managed job's series (no status: a series must survive the job's
/// moves between RUNNING and RECOVERING for `increase()` to count recoveries).
fn job_labels(j: &crate::jobs::ManagedJob) -> [(&'static str, String); 3] {
    [
        ("job_id", j.job_id.to_string()),
        ("name", bounded_label(&j.name)),
        ("user", bounded_label(j.owner())),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn negotiation() {
        assert_eq!(Format::negotiate(None), Format::Text);
        assert_eq!(Format::negotiate(Some("*/*")), Format::Text);
        assert_eq!(
            Format::negotiate(Some("application/openmetrics-text")),
            Format::OpenMetrics
        );
        // What Prometheus 2.x sends.
        assert_eq!(
            Format::negotiate(Some("application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1")),
            Format::OpenMetrics
        );
        assert_eq!(
            Format::negotiate(Some(
                "text/plain;version=0.0.4;q=1, application/openmetrics-text;q=0.5"
            )),
            Format::Text
        );
        assert_eq!(
            Format::negotiate(Some("application/openmetrics-text; version=0.0.1")),
            Format::Text
        );
        assert_eq!(
            Format::negotiate(Some("application/openmetrics-text;q=0")),
            Format::Text
        );
    }

    #[test]
    fn bounded_labels() {
        assert_eq!(bounded_label("http_500"), "http_500");
        assert_eq!(bounded_label("bad kind\n\"x\""), "bad_kind__x_");
        assert_eq!(bounded_label(""), "unknown");
        assert_eq!(bounded_label(&"a".repeat(100)).len(), 64);
    }

    fn snapshot(now: f64) -> Snapshot {
        let now = Timestamp::from(now);
        let cluster = |name: &str, status: ClusterStatus, launched_at: Option<i64>| FleetCluster {
            name: name.to_string(),
            status,
            cloud: Arc::from("aws"),
            region: Arc::from("us-east-1"),
            instance_type: Arc::from("m6i.large"),
            workspace: Arc::from("default"),
            launched_at: launched_at.map(Timestamp::from_secs),
            autostop_minutes: 10,
            autostop_to_down: false,
            hourly_cost: Some(0.5),
            total_cost: Some(1.5),
            price_source: Some(crate::cluster::PriceSource::CostReport),
        };
        Snapshot {
            now,
            clusters: Arc::new(vec![
                cluster("a", ClusterStatus::Up, Some(1000)),
                cluster("b", ClusterStatus::Stopped, Some(500)),
                cluster("c", ClusterStatus::Gone, None),
            ]),
            last_ok_poll: Some(now - 20.0),
            last_poll_ok: Some(true),
            poll_errors: vec![("timeout".into(), 2)],
            api_server: Some(crate::store::ApiServerHealth {
                checked_at: now - 5.0,
                healthy: true,
                version: Some("0.14.1".into()),
                api_version: None,
                commit: None,
                latency_ms: Some(3.0),
                error: None,
            }),
            audit: vec![("stop".into(), "ok".into(), 1)],
            read_seconds: 0.25,
            ..Snapshot::default()
        }
    }

    fn joined(pieces: &[Bytes]) -> String {
        pieces
            .iter()
            .map(|p| std::str::from_utf8(p).expect("UTF-8 piece"))
            .collect()
    }

    #[test]
    fn an_exposition_is_the_rendering_piece_by_piece() {
        for format in [Format::Text, Format::OpenMetrics] {
            let snap = Arc::new(snapshot(2000.0));
            let expo = Exposition::new(snap.clone(), format, None).expect("exposition");
            assert!(!expo.reused_clusters());
            let whole = render(snapshot(2000.0), format).expect("render");
            assert_eq!(joined(&expo.body(snap.moment()).expect("body")), whole);
            // Later: only the clock's series move.
            let later = Moment {
                now: Timestamp::from(2100.0),
                read_seconds: 0.5,
            };
            let mut moved = snapshot(2000.0);
            moved.now = later.now;
            moved.read_seconds = later.read_seconds;
            let body = joined(&expo.body(later).expect("body"));
            assert_eq!(body, render(moved, format).expect("render"));
            assert!(
                body.contains("skypilot_cluster_uptime_seconds{cluster=\"a\"} 1100.0"),
                "{body}"
            );
            assert!(
                body.contains("skypilot_host_state_age_seconds 120.0"),
                "{body}"
            );
            assert!(
                body.contains("skypilot_api_server_last_check_age_seconds 105.0"),
                "{body}"
            );
            assert!(
                body.contains("skypilot_host_database_read_duration_seconds 0.5"),
                "{body}"
            );
        }
    }

    #[test]
    fn cluster_series_are_reused_only_for_the_same_clusters() {
        let first =
            Exposition::new(Arc::new(snapshot(2000.0)), Format::Text, None).expect("exposition");
        // A new poll: other times, same clusters.
        let mut polled = snapshot(2030.0);
        polled.audit.push(("down".into(), "ok".into(), 1));
        let whole = render(polled.clone(), Format::Text).expect("render");
        let second = Exposition::new(Arc::new(polled), Format::Text, Some(first.clone()))
            .expect("exposition");
        assert!(second.reused_clusters());
        assert_eq!(
            joined(&second.body(second.snapshot().moment()).expect("body")),
            whole
        );
        // Another format, or another cluster: rendered afresh.
        let om = Exposition::new(
            Arc::new(snapshot(2000.0)),
            Format::OpenMetrics,
            Some(first.clone()),
        )
        .expect("exposition");
        assert!(!om.reused_clusters());
        let mut changed = snapshot(2000.0);
        Arc::make_mut(&mut changed.clusters)[1].status = ClusterStatus::Up;
        let whole = render(changed.clone(), Format::Text).expect("render");
        let third =
            Exposition::new(Arc::new(changed), Format::Text, Some(first)).expect("exposition");
        assert!(!third.reused_clusters());
        assert_eq!(
            joined(&third.body(third.snapshot().moment()).expect("body")),
            whole
        );
    }
}
