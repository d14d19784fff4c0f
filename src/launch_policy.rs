//! The launch policy's settings: what the seed's compatibility keys and the module's
//! `cluster.*` options ask of every launch that SkyPilot's own config cannot express.
//! `sky-config render` writes them as `launch-policy.json`; the policy role reads them.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Version of the launch-policy file format.
pub(crate) const POLICY_VERSION: u32 = 1;

/// Launch-policy settings that SkyPilot's config cannot express; written as JSON for
/// the policy role.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct LaunchPolicy {
    pub(crate) version: u32,
    /// Default region / zone per cloud (lower-case cloud name).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub(crate) clouds: BTreeMap<String, CloudDefaults>,
    /// Default `use_spot` for tasks that do not say.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) use_spot: Option<bool>,
    /// Refuse instances whose hourly price in SkyPilot's catalog exceeds this (USD).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) max_hourly_price: Option<f64>,
}

impl Default for LaunchPolicy {
    fn default() -> Self {
        LaunchPolicy {
            version: POLICY_VERSION,
            clouds: BTreeMap::new(),
            use_spot: None,
            max_hourly_price: None,
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct CloudDefaults {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) region: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) zone: Option<String>,
}
