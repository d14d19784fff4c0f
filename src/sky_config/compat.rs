//! The seed's compatibility keys (`cloud.<c>.region`/`zone`, `cloud.gcp.project`,
//! `spot.enabled`, `spot.max_price`): not SkyPilot keys, so each is mapped to where
//! it belongs, with a warning naming the canonical option.
//!
//! | seed key | goes to |
//! |---|---|
//! | `cloud.<c>.region`, `.zone` | launch policy: default region / zone for cloud `<c>` |
//! | `cloud.gcp.project` | SkyPilot: `workspaces.default.gcp.project_id` |
//! | `spot.enabled` | launch policy: default `use_spot` |
//! | `spot.max_price` | launch policy: limit on the catalog's hourly price |
//!
//! Every other key passes through unchanged; leftovers under `cloud` or `spot` are
//! errors that say where such a setting goes.

use std::fmt;

use serde_json::{Map, Value};

use super::values::show_value;
use super::Problem;
use crate::launch_policy::LaunchPolicy;

/// Canonical module options named by the warnings.
pub(crate) const OPT_REGION: &str = "services.skypilot.cluster.defaultRegion";
pub(crate) const OPT_ZONE: &str = "services.skypilot.cluster.defaultZone";
pub(crate) const OPT_SPOT: &str = "services.skypilot.cluster.useSpot";
pub(crate) const OPT_MAX_PRICE: &str = "services.skypilot.cluster.maxHourlyPrice";
pub(crate) const OPT_GCP_PROJECT: &str =
    "services.skypilot.config.workspaces.default.gcp.project_id";

/// The seed's compatibility keys (relative to `services.skypilot.config`) and the module
/// option each one stands for. The module's warnings name the same keys: the Nix suite
/// checks them against this table, printed by `skypilot-host sky-config seed-keys`.
pub(crate) const SEED_KEYS: [(&str, &str); 5] = [
    ("cloud.<cloud>.region", OPT_REGION),
    ("cloud.<cloud>.zone", OPT_ZONE),
    ("cloud.gcp.project", OPT_GCP_PROJECT),
    ("spot.enabled", OPT_SPOT),
    ("spot.max_price", OPT_MAX_PRICE),
];

/// The hint for keys users copy from the seed's example (and close relatives).
pub(crate) fn seed_hint(key: &str) -> Option<String> {
    let segs: Vec<&str> = key.split('.').collect();
    match segs.as_slice() {
        ["cloud"] | ["cloud", ..] => Some(format!(
            "not a SkyPilot key; it is the seed's compatibility layer, which `sky-config render` \
             maps: `cloud.<cloud>.region`/`zone` are task resources (set `{OPT_REGION}` / \
             `{OPT_ZONE}`), `cloud.gcp.project` is `workspaces.default.gcp.project_id` (set \
             `{OPT_GCP_PROJECT}`); per-cloud SkyPilot settings go at the top level, e.g. `aws.vpc_name`"
        )),
        ["spot"] | ["spot", ..] => Some(format!(
            "not a SkyPilot key; spot is a task resource (`use_spot`): set `{OPT_SPOT}` \
             (and `{OPT_MAX_PRICE}` for a price limit)"
        )),
        [_, "region"] => Some(format!(
            "not a SkyPilot key; region is a task resource: set `{OPT_REGION}`"
        )),
        [_, "zone"] => Some(format!(
            "not a SkyPilot key; zone is a task resource: set `{OPT_ZONE}`"
        )),
        ["gcp", "project"] | ["gcp", "project_id"] => Some(format!(
            "not a SkyPilot key; the GCP project is `workspaces.default.gcp.project_id`: set `{OPT_GCP_PROJECT}`"
        )),
        _ => None,
    }
}

/// One mapped compatibility key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Warning {
    /// The key as given, relative to `config` (e.g. `cloud.aws.region`).
    pub(crate) key: String,
    /// What it means and where it went.
    pub(crate) mapped_to: String,
    /// The module option to set instead.
    pub(crate) canonical: &'static str,
}

impl fmt::Display for Warning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "`services.skypilot.config.{}` is not a SkyPilot key; {}. Set `{}` instead.",
            self.key, self.mapped_to, self.canonical
        )
    }
}

/// The result of mapping: SkyPilot's config, the launch policy and the warnings.
#[derive(Debug, Clone, PartialEq)]
pub struct Mapped {
    pub(crate) config: Value,
    pub(crate) policy: LaunchPolicy,
    pub warnings: Vec<Warning>,
}

fn problem(key: impl Into<String>, message: impl Into<String>) -> Problem {
    Problem {
        key: key.into(),
        message: message.into(),
    }
}

fn nonempty_string(key: &str, v: &Value, problems: &mut Vec<Problem>) -> Option<String> {
    match v {
        Value::String(s) if !s.trim().is_empty() => Some(s.clone()),
        other => {
            problems.push(problem(
                key,
                format!(
                    "{} is not allowed: expected a non-empty string",
                    show_value(key, other)
                ),
            ));
            None
        }
    }
}

/// Maps the module's `config` value. `clouds` are the cloud names SkyPilot knows
/// (lower case; empty = do not check names).
pub fn map(input: Value, clouds: &[String]) -> Result<Mapped, Vec<Problem>> {
    let mut root = match input {
        Value::Object(m) => m,
        Value::Null => Map::new(),
        other => {
            return Err(vec![problem(
                "",
                format!(
                    "{} is not allowed: the `config` value must be an attribute set (JSON object)",
                    show_value("", &other)
                ),
            )])
        }
    };
    let mut problems = Vec::new();
    let mut warnings = Vec::new();
    let mut policy = LaunchPolicy::default();

    if let Some(cloud) = root.remove("cloud") {
        map_cloud(
            cloud,
            clouds,
            &mut root,
            &mut policy,
            &mut warnings,
            &mut problems,
        );
    }
    if let Some(spot) = root.remove("spot") {
        map_spot(spot, &mut policy, &mut warnings, &mut problems);
    }

    if problems.is_empty() {
        Ok(Mapped {
            config: Value::Object(root),
            policy,
            warnings,
        })
    } else {
        Err(problems)
    }
}

fn map_cloud(
    cloud: Value,
    clouds: &[String],
    root: &mut Map<String, Value>,
    policy: &mut LaunchPolicy,
    warnings: &mut Vec<Warning>,
    problems: &mut Vec<Problem>,
) {
    let Value::Object(by_cloud) = cloud else {
        problems.push(problem(
            "cloud",
            format!(
                "{} is not allowed: expected an attribute set of clouds, e.g. {{ aws.region = \"us-west-2\"; }}",
                show_value("cloud", &cloud)
            ),
        ));
        return;
    };
    for (name, settings) in by_cloud {
        let base = format!("cloud.{name}");
        let lower = name.to_ascii_lowercase();
        if !clouds.is_empty() && !clouds.contains(&lower) {
            problems.push(problem(
                &base,
                format!(
                    "unknown cloud {name:?}; SkyPilot knows: {}",
                    clouds.join(", ")
                ),
            ));
            continue;
        }
        let Value::Object(fields) = settings else {
            problems.push(problem(
                &base,
                format!(
                    "{} is not allowed: expected an attribute set with `region`, `zone`{}",
                    show_value(&base, &settings),
                    if lower == "gcp" { " or `project`" } else { "" }
                ),
            ));
            continue;
        };
        for (field, v) in fields {
            let key = format!("{base}.{field}");
            match field.as_str() {
                "region" | "zone" => {
                    let Some(s) = nonempty_string(&key, &v, problems) else {
                        continue;
                    };
                    let entry = policy.clouds.entry(lower.clone()).or_default();
                    let (slot, canonical) = if field == "region" {
                        (&mut entry.region, OPT_REGION)
                    } else {
                        (&mut entry.zone, OPT_ZONE)
                    };
                    *slot = Some(s);
                    warnings.push(Warning {
                        key,
                        mapped_to: format!(
                            "{field} is a task resource (`infra: {lower}/…`), so it became the launch policy's default {field} for {lower}"
                        ),
                        canonical,
                    });
                }
                "project" if lower == "gcp" => {
                    let Some(s) = nonempty_string(&key, &v, problems) else {
                        continue;
                    };
                    if let Err(p) = set_gcp_project(root, &key, s) {
                        problems.push(p);
                        continue;
                    }
                    warnings.push(Warning {
                        key,
                        mapped_to: "SkyPilot calls it `workspaces.default.gcp.project_id`, where it was written".to_string(),
                        canonical: OPT_GCP_PROJECT,
                    });
                }
                _ => problems.push(problem(
                    &key,
                    format!(
                        "not mapped: under `cloud.<cloud>` only `region`, `zone` (and `project` for gcp) are understood; \
                         SkyPilot's own per-cloud settings go at the top level, e.g. `{lower}.{field}`"
                    ),
                )),
            }
        }
    }
}

fn set_gcp_project(
    root: &mut Map<String, Value>,
    key: &str,
    project: String,
) -> Result<(), Problem> {
    const PATH: [&str; 3] = ["workspaces", "default", "gcp"];
    let mut node = root;
    let mut walked = String::new();
    for seg in PATH {
        if !walked.is_empty() {
            walked.push('.');
        }
        walked.push_str(seg);
        let next = node
            .entry(seg.to_string())
            .or_insert_with(|| Value::Object(Map::new()));
        node = match next {
            Value::Object(m) => m,
            other => {
                return Err(problem(
                    key,
                    format!(
                        "cannot be written to `{walked}.project_id`: `{walked}` is {}, not an attribute set",
                        show_value(&walked, other)
                    ),
                ))
            }
        };
    }
    match node.get("project_id") {
        Some(Value::String(existing)) if *existing == project => Ok(()),
        Some(existing) => Err(problem(
            key,
            format!(
                "{} conflicts with `workspaces.default.gcp.project_id` = {}; set only `{OPT_GCP_PROJECT}`",
                show_value(key, &Value::String(project)),
                show_value("workspaces.default.gcp.project_id", existing)
            ),
        )),
        None => {
            node.insert("project_id".to_string(), Value::String(project));
            Ok(())
        }
    }
}

fn map_spot(
    spot: Value,
    policy: &mut LaunchPolicy,
    warnings: &mut Vec<Warning>,
    problems: &mut Vec<Problem>,
) {
    let Value::Object(fields) = spot else {
        problems.push(problem(
            "spot",
            format!(
                "{} is not allowed: expected an attribute set with `enabled` and/or `max_price`",
                show_value("spot", &spot)
            ),
        ));
        return;
    };
    for (field, v) in fields {
        let key = format!("spot.{field}");
        match field.as_str() {
            "enabled" => match v {
                Value::Bool(b) => {
                    policy.use_spot = Some(b);
                    warnings.push(Warning {
                        key,
                        mapped_to: "spot is a task resource (`use_spot`), so it became the launch policy's default `use_spot`".to_string(),
                        canonical: OPT_SPOT,
                    });
                }
                other => problems.push(problem(
                    &key,
                    format!("{} is not allowed: expected a boolean", show_value(&key, &other)),
                )),
            },
            "max_price" => match v.as_f64() {
                Some(p) if p > 0.0 && p.is_finite() => {
                    policy.max_hourly_price = Some(p);
                    warnings.push(Warning {
                        key,
                        mapped_to: "SkyPilot has no price limit, so it became the launch policy's limit on an instance's hourly catalog price (USD)".to_string(),
                        canonical: OPT_MAX_PRICE,
                    });
                }
                _ => problems.push(problem(
                    &key,
                    format!(
                        "{} is not allowed: expected a positive number (USD per hour)",
                        show_value(&key, &v)
                    ),
                )),
            },
            _ => problems.push(problem(
                &key,
                "not mapped: under `spot` only `enabled` and `max_price` are understood; \
                 other spot settings are task resources (e.g. `use_spot`, `job_recovery`) set per task",
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn clouds() -> Vec<String> {
        ["aws", "gcp", "azure", "kubernetes"]
            .iter()
            .map(|s| s.to_string())
            .collect()
    }

    fn seed_advanced() -> Value {
        json!({
            "cloud": {
                "aws": {"region": "us-west-2"},
                "gcp": {"project": "my-project", "zone": "us-central1-a"}
            },
            "spot": {"enabled": true, "max_price": 1.0}
        })
    }

    #[test]
    fn empty_config_maps_to_empty_config() {
        let m = map(json!({}), &clouds()).unwrap();
        assert_eq!(m.config, json!({}));
        assert_eq!(m.policy, LaunchPolicy::default());
        assert!(m.warnings.is_empty());
        let m = map(Value::Null, &clouds()).unwrap();
        assert_eq!(m.config, json!({}));
    }

    #[test]
    fn seed_advanced_example_is_mapped() {
        let m = map(seed_advanced(), &clouds()).unwrap();
        assert_eq!(
            m.config,
            json!({"workspaces": {"default": {"gcp": {"project_id": "my-project"}}}})
        );
        assert_eq!(m.policy.clouds["aws"].region.as_deref(), Some("us-west-2"));
        assert_eq!(m.policy.clouds["aws"].zone, None);
        assert_eq!(
            m.policy.clouds["gcp"].zone.as_deref(),
            Some("us-central1-a")
        );
        assert_eq!(m.policy.use_spot, Some(true));
        assert_eq!(m.policy.max_hourly_price, Some(1.0));
        let got: Vec<(&str, &str)> = m
            .warnings
            .iter()
            .map(|w| (w.key.as_str(), w.canonical))
            .collect();
        assert_eq!(
            got,
            vec![
                ("cloud.aws.region", OPT_REGION),
                ("cloud.gcp.project", OPT_GCP_PROJECT),
                ("cloud.gcp.zone", OPT_ZONE),
                ("spot.enabled", OPT_SPOT),
                ("spot.max_price", OPT_MAX_PRICE),
            ]
        );
        let text = m.warnings[0].to_string();
        assert!(
            text.starts_with("`services.skypilot.config.cloud.aws.region` is not a SkyPilot key;"),
            "{text}"
        );
        assert!(
            text.ends_with("Set `services.skypilot.cluster.defaultRegion` instead."),
            "{text}"
        );
    }

    #[test]
    fn other_keys_pass_through_unchanged() {
        let input = json!({"aws": {"vpc_name": "v", "labels": {"a": "b"}}, "allowed_clouds": ["aws"],
                           "jobs": {"controller": {"resources": {"cpus": "4+"}}}});
        let m = map(input.clone(), &clouds()).unwrap();
        assert_eq!(m.config, input);
        assert!(m.warnings.is_empty());
    }

    #[test]
    fn project_merges_with_existing_workspace() {
        let input = json!({"cloud": {"gcp": {"project": "p"}},
                           "workspaces": {"default": {"aws": {"profile": "x"}}, "team": {}}});
        let m = map(input, &clouds()).unwrap();
        assert_eq!(
            m.config,
            json!({"workspaces": {"default": {"aws": {"profile": "x"}, "gcp": {"project_id": "p"}}, "team": {}}})
        );
        // The same project in both places is fine; a different one is a conflict.
        let same = json!({"cloud": {"gcp": {"project": "p"}},
                          "workspaces": {"default": {"gcp": {"project_id": "p"}}}});
        assert!(map(same, &clouds()).is_ok());
        let other = json!({"cloud": {"gcp": {"project": "p"}},
                           "workspaces": {"default": {"gcp": {"project_id": "q"}}}});
        let e = map(other, &clouds()).unwrap_err();
        assert_eq!(e[0].key, "cloud.gcp.project");
        assert!(
            e[0].message
                .contains("conflicts with `workspaces.default.gcp.project_id` = \"q\""),
            "{}",
            e[0].message
        );
    }

    #[test]
    fn errors_name_the_key_path() {
        let e = map(
            json!({"cloud": {"aws": {"region": 5, "vpc_name": "v"}, "awz": {"region": "x"}},
                   "spot": {"enabled": "yes", "max_price": -1, "bid": 3}}),
            &clouds(),
        )
        .unwrap_err();
        let keys: Vec<&str> = e.iter().map(|p| p.key.as_str()).collect();
        assert_eq!(
            keys,
            vec![
                "cloud.aws.region",
                "cloud.aws.vpc_name",
                "cloud.awz",
                "spot.bid",
                "spot.enabled",
                "spot.max_price"
            ]
        );
        assert_eq!(
            e[0].message,
            "5 (an integer) is not allowed: expected a non-empty string"
        );
        assert!(
            e[1].message.contains("top level, e.g. `aws.vpc_name`"),
            "{}",
            e[1].message
        );
        assert!(
            e[2].message
                .starts_with("unknown cloud \"awz\"; SkyPilot knows: aws, gcp"),
            "{}",
            e[2].message
        );
        assert!(
            e[4].message.contains("expected a boolean"),
            "{}",
            e[4].message
        );
        assert!(
            e[5].message.contains("expected a positive number"),
            "{}",
            e[5].message
        );
    }

    #[test]
    fn non_object_config_is_rejected() {
        let e = map(json!([1]), &clouds()).unwrap_err();
        assert_eq!(e[0].key, "");
        assert!(
            e[0].message.contains("must be an attribute set"),
            "{}",
            e[0].message
        );
    }

    #[test]
    fn policy_serialises_without_empty_fields() {
        let p = LaunchPolicy::default();
        assert_eq!(serde_json::to_value(&p).unwrap(), json!({"version": 1}));
    }
}
