//! The cluster as the host services see it: the fields of SkyPilot's status record that
//! the roles use, independent of the wire format and of the database.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::time::Timestamp;

/// A cluster's status. `Gone` is ours: the cluster was known and the API server no
/// longer lists it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum ClusterStatus {
    Init,
    Up,
    Stopped,
    Gone,
}

impl ClusterStatus {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            ClusterStatus::Init => "INIT",
            ClusterStatus::Up => "UP",
            ClusterStatus::Stopped => "STOPPED",
            ClusterStatus::Gone => "GONE",
        }
    }
}

impl fmt::Display for ClusterStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for ClusterStatus {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "INIT" => Ok(ClusterStatus::Init),
            "UP" => Ok(ClusterStatus::Up),
            "STOPPED" => Ok(ClusterStatus::Stopped),
            "GONE" => Ok(ClusterStatus::Gone),
            other => Err(format!(
                "unknown cluster status {other:?}: expected INIT, UP, STOPPED or GONE"
            )),
        }
    }
}

/// Where a cluster's price comes from: SkyPilot's cost report (what SkyPilot bills it
/// at), or SkyPilot's catalog (the list price of its instance type × nodes, on-demand
/// or spot, in its region) when the report has no record of it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PriceSource {
    CostReport,
    Catalog,
}

impl PriceSource {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            PriceSource::CostReport => "cost_report",
            PriceSource::Catalog => "catalog",
        }
    }

    pub(crate) fn parse(s: &str) -> Option<PriceSource> {
        [PriceSource::CostReport, PriceSource::Catalog]
            .into_iter()
            .find(|p| p.as_str() == s)
    }

    /// For people.
    pub(crate) fn describe(self) -> &'static str {
        match self {
            PriceSource::CostReport => "SkyPilot's cost report",
            PriceSource::Catalog => "SkyPilot's catalog",
        }
    }
}

/// A cluster's cost so far, in dollars: SkyPilot's cost report's when it has one, else
/// estimated from a catalog price for an UP cluster as the price × the hours since it
/// was launched (`None` otherwise: a stopped cluster's uptime is not known).
pub(crate) fn cost_so_far(
    status: ClusterStatus,
    hourly_cost: Option<f64>,
    total_cost: Option<f64>,
    source: Option<PriceSource>,
    launched_at: Option<Timestamp>,
    now: Timestamp,
) -> Option<f64> {
    if let Some(t) = total_cost {
        return Some(t);
    }
    match (status, source, hourly_cost, launched_at) {
        (ClusterStatus::Up, Some(PriceSource::Catalog), Some(h), Some(at)) => {
            Some(h * now.age_since(at).max(0.0) / 3600.0)
        }
        _ => None,
    }
}

/// Whether SkyPilot's resources string says spot instances (`2x[spot](…)`, as
/// `sky/utils/resources_utils.py` `format_resource` writes it).
pub(crate) fn is_spot(resources: &str) -> bool {
    resources
        .split('(')
        .next()
        .is_some_and(|head| head.to_ascii_lowercase().contains("[spot]"))
}

/// What SkyPilot says of one cluster, reduced to what the host services use.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Cluster {
    pub name: String,
    pub cluster_hash: String,
    pub status: ClusterStatus,
    pub cloud: Option<String>,
    pub region: Option<String>,
    pub zone: Option<String>,
    pub instance_type: Option<String>,
    pub nodes: i64,
    pub cpus: Option<String>,
    pub memory: Option<String>,
    pub accelerators: Option<String>,
    /// SkyPilot's full resources string, e.g. `1x(cpus=2, mem=8, m6i.large, disk=256)`.
    pub resources: Option<String>,
    pub workspace: String,
    pub user_name: Option<String>,
    pub user_hash: Option<String>,
    pub launched_at: Option<Timestamp>,
    pub status_updated_at: Option<Timestamp>,
    /// Idle minutes before autostop; -1 = no autostop.
    pub autostop_minutes: i64,
    /// Autostop tears the cluster down instead of stopping it.
    pub autostop_to_down: bool,
    pub is_managed: bool,
    /// SkyPilot's `last_use`: the last command run on the cluster (not a time).
    pub last_use: Option<String>,
}

#[cfg(test)]
impl Cluster {
    /// A cluster with every optional field empty and no autostop, for unit tests to
    /// fill in with `..Cluster::bare(name, status)`.
    pub(crate) fn bare(name: &str, status: ClusterStatus) -> Cluster {
        Cluster {
            name: name.into(),
            cluster_hash: format!("hash-{name}"),
            status,
            cloud: None,
            region: None,
            zone: None,
            instance_type: None,
            nodes: 1,
            cpus: None,
            memory: None,
            accelerators: None,
            resources: None,
            workspace: "default".into(),
            user_name: None,
            user_hash: None,
            launched_at: None,
            status_updated_at: None,
            autostop_minutes: -1,
            autostop_to_down: false,
            is_managed: false,
            last_use: None,
        }
    }
}

/// Instance type out of SkyPilot's resources string, e.g. `m6i.large` out of
/// `1x(cpus=2, mem=8, m6i.large, disk=256)`: the first item without `=`.
pub(crate) fn instance_type_from_resources(resources: &str) -> Option<String> {
    let open = resources.find('(')?;
    let inner = resources[open + 1..].strip_suffix(')')?;
    inner
        .split(',')
        .map(str::trim)
        .find(|item| !item.is_empty() && !item.contains('=') && *item != "...")
        .map(|s| s.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn instance_type_parsed() {
        assert_eq!(
            instance_type_from_resources("1x(cpus=2, mem=8, m6i.large, disk=256)").as_deref(),
            Some("m6i.large")
        );
        assert_eq!(
            instance_type_from_resources("2x(gpus=A100:8, cpus=96, mem=1152, p4d.24xlarge, ...)")
                .as_deref(),
            Some("p4d.24xlarge")
        );
        assert_eq!(instance_type_from_resources("1x(cpus=2, ...)"), None);
        assert_eq!(instance_type_from_resources("garbage"), None);
    }

    #[test]
    fn status_round_trip() {
        for s in [
            ClusterStatus::Init,
            ClusterStatus::Up,
            ClusterStatus::Stopped,
            ClusterStatus::Gone,
        ] {
            assert_eq!(s.as_str().parse::<ClusterStatus>().unwrap(), s);
        }
        assert!("RUNNING".parse::<ClusterStatus>().is_err());
    }
}
