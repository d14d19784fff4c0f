//! The metric families: a [`Snapshot`] rendered through `prometheus-client` as Prometheus
//! text (0.0.4) or OpenMetrics 1.0. A fresh registry is built for every scrape.
//!
//! Gone clusters (known before, no longer listed by the API server) are not in the
//! per-cluster series; they are only counted (`skypilot_clusters_gone`) and their accrued
//! cost stays in the fleet total.

use std::collections::BTreeMap;
use std::fmt;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{
    DescriptorEncoder, EncodeGaugeValue, EncodeLabelSet, MetricEncoder, NoLabelSet,
};
use prometheus_client::metrics::exemplar::Exemplar;
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::{Registry, Unit};

use super::collect::{Snapshot, DB_ERROR_KINDS, TABLES};
use crate::cluster::ClusterStatus;

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
pub(crate) enum Format {
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
pub(crate) fn render(snapshot: Snapshot, format: Format) -> Result<String, fmt::Error> {
    let mut out = String::with_capacity(4096 + snapshot.clusters.len() * 520);
    render_into(snapshot, format, &mut out)?;
    Ok(out)
}

/// Renders a snapshot in the given format into a writer (a fresh registry each time).
pub(crate) fn render_into<W: fmt::Write>(
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

impl Collector for Snapshot {
    fn encode(&self, mut enc: DescriptorEncoder) -> fmt::Result {
        self.encode_host(&mut enc)?;
        self.encode_api_server(&mut enc)?;
        self.encode_fleet(&mut enc)?;
        self.encode_cost(&mut enc)?;
        self.encode_actions(&mut enc)
    }
}

impl Snapshot {
    fn encode_host(&self, enc: &mut DescriptorEncoder) -> fmt::Result {
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
        )?;
        gauge(
            enc,
            "skypilot_host_database_read_duration",
            "Time this scrape spent reading the host database.",
            Some(&seconds()),
            self.read_seconds,
        )?;
        if self.database_up() || self.last_ok_poll.is_some() {
            let age = match self.last_ok_poll {
                Some(t) => self.now.age_since(t),
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
        let mut errors: BTreeMap<String, u64> = BTreeMap::new();
        for (kind, n) in &self.poll_errors {
            *errors.entry(bounded_label(kind)).or_insert(0) += u64::try_from(*n).unwrap_or(0);
        }
        counters(
            enc,
            "skypilot_host_poll_errors",
            "Failed polls of the API server recorded in the host database, by error kind.",
            errors.iter().map(|(k, n)| ([("kind", k.as_str())], *n)),
        )
    }

    fn encode_api_server(&self, enc: &mut DescriptorEncoder) -> fmt::Result {
        let h = self.api_server.as_ref();
        gauge(
            enc,
            "skypilot_api_server_up",
            "1 when the cluster manager's last health check of SkyPilot's API server succeeded, else 0 (also when never checked).",
            None,
            flag(h.is_some_and(|h| h.healthy)),
        )?;
        let Some(h) = h else { return Ok(()) };
        gauge(
            enc,
            "skypilot_api_server_last_check_age",
            "Seconds since the last health check of SkyPilot's API server.",
            Some(&seconds()),
            self.now.age_since(h.checked_at),
        )?;
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

    fn encode_fleet(&self, enc: &mut DescriptorEncoder) -> fmt::Result {
        let present = || {
            self.clusters
                .iter()
                .filter(|c| c.status != ClusterStatus::Gone)
        };
        let mut groups: BTreeMap<(&str, &str, &str, &str), u64> = BTreeMap::new();
        let mut by_status: BTreeMap<&str, u64> = [
            ClusterStatus::Init,
            ClusterStatus::Up,
            ClusterStatus::Stopped,
        ]
        .iter()
        .map(|s| (s.as_str(), 0))
        .collect();
        for c in present() {
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
        for c in present() {
            m.encode_info(&[
                ("cluster", c.name.as_str()),
                ("cloud", &*c.cloud),
                ("region", &*c.region),
                ("instance_type", &*c.instance_type),
                ("workspace", &*c.workspace),
                ("status", c.status.as_str()),
            ])?;
        }
        gauges(
            enc,
            "skypilot_cluster_uptime",
            "Seconds since an UP cluster was launched (UP clusters with a known launch time only).",
            Some(&seconds()),
            present()
                .filter(|c| c.status == ClusterStatus::Up)
                .filter_map(|c| {
                    c.launched_at
                        .map(|t| ([("cluster", c.name.as_str())], self.now.age_since(t)))
                }),
        )?;
        gauges(
            enc,
            "skypilot_cluster_autostop",
            "Idle time after which autostop acts on the cluster; -1 when the cluster has no autostop.",
            Some(&seconds()),
            present().map(|c| {
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
            present().map(|c| {
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
            present()
                .filter(|c| c.status == ClusterStatus::Up && c.autostop_minutes < 0)
                .count() as u64,
        )
    }

    fn encode_cost(&self, enc: &mut DescriptorEncoder) -> fmt::Result {
        let present = || {
            self.clusters
                .iter()
                .filter(|c| c.status != ClusterStatus::Gone)
        };
        gauges(
            enc,
            "skypilot_cluster_price",
            "Price of running the whole cluster (all nodes), where known.",
            Some(&dollars_per_hour()),
            present().filter_map(|c| {
                c.hourly_cost
                    .filter(|v| v.is_finite())
                    .map(|v| ([("cluster", c.name.as_str())], v))
            }),
        )?;
        gauges(
            enc,
            "skypilot_cluster_accrued_cost",
            "Cost the cluster has accrued according to SkyPilot's cost report, where known.",
            Some(&dollars()),
            present().filter_map(|c| {
                c.total_cost
                    .filter(|v| v.is_finite())
                    .map(|v| ([("cluster", c.name.as_str())], v))
            }),
        )?;
        let up = || present().filter(|c| c.status == ClusterStatus::Up);
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
        gauge(
            enc,
            "skypilot_accrued_cost",
            "Accrued cost of every cluster in the host database, gone ones included.",
            Some(&dollars()),
            self.clusters
                .iter()
                .filter_map(|c| c.total_cost.filter(|v| v.is_finite()))
                .fold(0.0, |a, b| a + b),
        )
    }

    fn encode_actions(&self, enc: &mut DescriptorEncoder) -> fmt::Result {
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
}
