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
    /// Default region of launches whatever their cloud (the module's
    /// `cluster.defaultRegion`); a cloud's own default in `clouds` comes first.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) region: Option<String>,
    /// Default zone, with `region` (the module's `cluster.defaultZone`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) zone: Option<String>,
    /// Default instance type of launches that ask for no machine (the module's
    /// `cluster.defaultInstanceType`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) instance_type: Option<String>,
    /// Longest autostop a launch may carry, in idle minutes (the module's
    /// `cluster.autoStop`): set when missing or off, lowered when larger.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) autostop_idle_minutes: Option<u32>,
}

/// The module's own launch options (`services.skypilot.cluster.*`), given to
/// `sky-config render --launch-defaults FILE` as JSON; merged with the seed's keys.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct LaunchDefaults {
    #[serde(default)]
    pub(crate) region: Option<String>,
    #[serde(default)]
    pub(crate) zone: Option<String>,
    #[serde(default)]
    pub(crate) instance_type: Option<String>,
    #[serde(default)]
    pub(crate) use_spot: Option<bool>,
    #[serde(default)]
    pub(crate) max_hourly_price: Option<f64>,
    #[serde(default)]
    pub(crate) autostop_idle_minutes: Option<u32>,
}

impl LaunchPolicy {
    /// Adds the module's options. A setting given both as a seed key and as a module
    /// option must agree: the error names both.
    pub(crate) fn merge(&mut self, d: LaunchDefaults) -> Result<(), String> {
        fn nonempty(key: &str, v: Option<String>) -> Result<Option<String>, String> {
            match v {
                Some(s) if s.trim().is_empty() => {
                    Err(format!("{key} is empty: expected a name or null"))
                }
                other => Ok(other),
            }
        }
        if let (Some(seed), Some(module)) = (self.use_spot, d.use_spot) {
            if seed != module {
                return Err(format!(
                    "useSpot = {module} conflicts with the seed key config.spot.enabled = {seed}: set only services.skypilot.cluster.useSpot"
                ));
            }
        }
        if let (Some(seed), Some(module)) = (self.max_hourly_price, d.max_hourly_price) {
            if seed != module {
                return Err(format!(
                    "maxHourlyPrice = {module} conflicts with the seed key config.spot.max_price = {seed}: set only services.skypilot.cluster.maxHourlyPrice"
                ));
            }
        }
        if let Some(p) = d.max_hourly_price {
            if !(p.is_finite() && p > 0.0) {
                return Err(format!(
                    "maxHourlyPrice = {p}: expected a positive number (USD per hour)"
                ));
            }
        }
        if d.autostop_idle_minutes == Some(0) {
            return Err("autoStop = 0: expected at least 1 (idle minutes)".to_string());
        }
        self.use_spot = self.use_spot.or(d.use_spot);
        self.max_hourly_price = self.max_hourly_price.or(d.max_hourly_price);
        self.region = nonempty("defaultRegion", d.region)?;
        self.zone = nonempty("defaultZone", d.zone)?;
        self.instance_type = nonempty("defaultInstanceType", d.instance_type)?;
        self.autostop_idle_minutes = d.autostop_idle_minutes;
        Ok(())
    }
}

impl Default for LaunchPolicy {
    fn default() -> Self {
        LaunchPolicy {
            version: POLICY_VERSION,
            clouds: BTreeMap::new(),
            use_spot: None,
            max_hourly_price: None,
            region: None,
            zone: None,
            instance_type: None,
            autostop_idle_minutes: None,
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn module_options_merge_with_seed_keys() {
        let mut p = LaunchPolicy {
            use_spot: Some(true),
            max_hourly_price: Some(1.0),
            ..LaunchPolicy::default()
        };
        p.merge(LaunchDefaults {
            region: Some("us-west-2".into()),
            instance_type: Some("m5.large".into()),
            use_spot: Some(true),
            autostop_idle_minutes: Some(60),
            ..LaunchDefaults::default()
        })
        .unwrap();
        assert_eq!(p.region.as_deref(), Some("us-west-2"));
        assert_eq!(p.instance_type.as_deref(), Some("m5.large"));
        assert_eq!((p.use_spot, p.max_hourly_price), (Some(true), Some(1.0)));
        assert_eq!(p.autostop_idle_minutes, Some(60));
    }

    #[test]
    fn disagreements_and_bad_values_name_both_settings() {
        let seed = LaunchPolicy {
            use_spot: Some(true),
            max_hourly_price: Some(1.0),
            ..LaunchPolicy::default()
        };
        let e = seed
            .clone()
            .merge(LaunchDefaults {
                use_spot: Some(false),
                ..LaunchDefaults::default()
            })
            .unwrap_err();
        assert!(
            e.contains("useSpot") && e.contains("config.spot.enabled"),
            "{e}"
        );
        let e = seed
            .clone()
            .merge(LaunchDefaults {
                max_hourly_price: Some(2.0),
                ..LaunchDefaults::default()
            })
            .unwrap_err();
        assert!(
            e.contains("maxHourlyPrice") && e.contains("config.spot.max_price"),
            "{e}"
        );
        let e = LaunchPolicy::default()
            .merge(LaunchDefaults {
                max_hourly_price: Some(-1.0),
                ..LaunchDefaults::default()
            })
            .unwrap_err();
        assert!(e.contains("positive"), "{e}");
        let e = LaunchPolicy::default()
            .merge(LaunchDefaults {
                region: Some(" ".into()),
                ..LaunchDefaults::default()
            })
            .unwrap_err();
        assert!(e.contains("defaultRegion"), "{e}");
    }
}
