//! The launch policy itself, without HTTP: SkyPilot's request in, the mutated request
//! or a refusal out.
//!
//! Wire format (SkyPilot 0.14.1, `sky/admin_policy.py`, `RestfulAdminPolicy`): the body
//! is a JSON string whose content is a JSON object (`UserRequest.encode()`); in it,
//! `task` and `skypilot_config` are YAML strings, `request_name` says what is being
//! done (`launch`, `validate`, `jobs.launch`, `jobs.launch_controller`, …). The answer
//! is encoded the same way: a JSON string holding `{"task": …, "skypilot_config": …}`.
//! The config is echoed as it came: an empty one would replace the user's config.
//!
//! What it does to a task's `resources` (only where the user left a setting unset,
//! except the two limits):
//! - autostop: set to the policy's idle minutes when missing or off, lowered when
//!   larger (`down` and the other autostop fields are kept);
//! - region/zone: the cloud's default (`clouds.<cloud>`), else the general default
//!   when the task's cloud offers that region in SkyPilot's catalog (a task naming no
//!   cloud gets the one cloud whose catalog has the region);
//! - instance type: the default, for a task that asks for no machine (no
//!   `instance_type`, `cpus`, `memory` or `accelerators`) and whose cloud offers it;
//! - `use_spot`: the default when unset;
//! - price: `max_hourly_cost` (SkyPilot's own filter of the instances it picks) set to
//!   the limit when missing or larger, and a task whose instance type's catalog price
//!   exceeds the limit (spot price with `use_spot`) is refused, naming instance, price
//!   and limit. A price that cannot be found is a refusal too: a limit that lets
//!   unknown prices through is no limit.
//!
//! Tasks with several resource candidates (`any_of`, `ordered`) get the limits and
//! `use_spot` (each candidate is checked), not the location or instance-type defaults.

use serde_json::{Map, Value};

use crate::catalog::{cheapest, Prices};
use crate::launch_policy::LaunchPolicy;

/// Requests of SkyPilot's own controllers, left alone unless configured.
pub(crate) const CONTROLLER_REQUESTS: [&str; 2] =
    ["jobs.launch_controller", "serve.launch_controller"];

/// What the policy needs besides the catalog.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct Rules {
    pub(crate) policy: LaunchPolicy,
    /// Apply to the controllers' own launches too.
    pub(crate) controllers: bool,
}

/// A request SkyPilot sent, decoded.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Request {
    /// The task YAML as sent.
    pub(crate) task_text: String,
    /// The task, parsed.
    pub(crate) task: Map<String, Value>,
    /// SkyPilot's config YAML as sent (echoed back unchanged).
    pub(crate) config_text: String,
    pub(crate) request_name: String,
    pub(crate) at_client_side: bool,
}

/// The policy's answer.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Decision {
    /// Send this body (HTTP 200); `changes` says what was changed, for the log.
    Accept { body: String, changes: Vec<String> },
    /// Refuse the launch (HTTP 400); SkyPilot shows the text to the user.
    Refuse(String),
}

/// A request that cannot be read (HTTP 400 too, with a message saying what was wrong).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub(crate) struct Malformed(pub(crate) String);

fn malformed(s: impl Into<String>) -> Malformed {
    Malformed(s.into())
}

/// Decodes SkyPilot's body: a JSON string holding the request object.
pub(crate) fn decode(body: &[u8]) -> Result<Request, Malformed> {
    const SHAPE: &str = "SkyPilot's RestfulAdminPolicy sends a JSON string whose content is the request object (`json.loads(json.loads(body))`)";
    let outer: Value = serde_json::from_slice(body)
        .map_err(|e| malformed(format!("the body is not JSON ({e}): {SHAPE}")))?;
    let Value::String(inner) = outer else {
        return Err(malformed(format!(
            "the body is JSON {}, not a string: {SHAPE}",
            kind(&outer)
        )));
    };
    let request: Value = serde_json::from_str(&inner)
        .map_err(|e| malformed(format!("the string in the body is not JSON ({e}): {SHAPE}")))?;
    let Value::Object(mut request) = request else {
        return Err(malformed(format!(
            "the request is JSON {}, not an object with task, skypilot_config and request_name",
            kind(&request)
        )));
    };
    let mut string = |key: &str| -> Result<String, Malformed> {
        match request.remove(key) {
            Some(Value::String(s)) => Ok(s),
            Some(other) => Err(malformed(format!(
                "request field `{key}` is {}: expected a string",
                kind(&other)
            ))),
            None => Err(malformed(format!("request field `{key}` is missing"))),
        }
    };
    let task_text = string("task")?;
    let config_text = string("skypilot_config")?;
    let request_name = string("request_name")?;
    let at_client_side = match request.get("at_client_side") {
        None | Some(Value::Null) => false,
        Some(Value::Bool(b)) => *b,
        Some(other) => {
            return Err(malformed(format!(
                "request field `at_client_side` is {}: expected a boolean",
                kind(other)
            )))
        }
    };
    let task = match crate::sky_config::yaml::parse(&task_text) {
        Ok(Value::Object(m)) => m,
        Ok(Value::Null) => Map::new(),
        Ok(other) => {
            return Err(malformed(format!(
                "request field `task` is YAML {}, not a mapping (a SkyPilot task)",
                kind(&other)
            )))
        }
        Err(e) => return Err(malformed(format!("request field `task` is {e}"))),
    };
    Ok(Request {
        task_text,
        task,
        config_text,
        request_name,
        at_client_side,
    })
}

/// The answer's body: a JSON string holding `{"task": …, "skypilot_config": …}`.
pub(crate) fn encode(task_yaml: &str, config_text: &str) -> String {
    let inner = serde_json::json!({ "task": task_yaml, "skypilot_config": config_text });
    Value::String(inner.to_string()).to_string()
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "an object",
    }
}

/// Applies the policy to a decoded request.
pub(crate) fn apply(
    rules: &Rules,
    prices: &dyn Prices,
    request: Request,
) -> Result<Decision, Malformed> {
    if CONTROLLER_REQUESTS.contains(&request.request_name.as_str()) && !rules.controllers {
        return Ok(Decision::Accept {
            body: encode(&request.task_text, &request.config_text),
            changes: vec![format!(
                "none: {} is SkyPilot's own controller (policy.controllers = false)",
                request.request_name
            )],
        });
    }
    let mut task = request.task;
    let mut changes = Vec::new();
    let resources = task
        .entry("resources".to_string())
        .or_insert_with(|| Value::Object(Map::new()));
    if resources.is_null() {
        *resources = Value::Object(Map::new());
    }
    let Value::Object(resources) = resources else {
        return Err(malformed(format!(
            "task field `resources` is {}: expected a mapping",
            kind(resources)
        )));
    };
    if let Err(refusal) = apply_resources(&rules.policy, prices, resources, &mut changes)? {
        return Ok(Decision::Refuse(refusal));
    }
    if changes.is_empty() {
        // Nothing to change: the task goes back exactly as it came.
        return Ok(Decision::Accept {
            body: encode(&request.task_text, &request.config_text),
            changes,
        });
    }
    let yaml = crate::sky_config::yaml::to_yaml(&Value::Object(task), "");
    Ok(Decision::Accept {
        body: encode(&yaml, &request.config_text),
        changes,
    })
}

/// The candidates of a resources mapping: `any_of` / `ordered` entries, if any.
fn candidate_key(resources: &Map<String, Value>) -> Result<Option<&'static str>, Malformed> {
    for key in ["any_of", "ordered"] {
        match resources.get(key) {
            None | Some(Value::Null) => {}
            Some(Value::Array(items)) => {
                if let Some(bad) = items.iter().find(|i| !i.is_object()) {
                    return Err(malformed(format!(
                        "`resources.{key}` holds {}: expected mappings",
                        kind(bad)
                    )));
                }
                return Ok(Some(key));
            }
            Some(other) => {
                return Err(malformed(format!(
                    "`resources.{key}` is {}: expected a list",
                    kind(other)
                )))
            }
        }
    }
    Ok(None)
}

/// Mutates `resources` in place; `Ok(Err(text))` is a refusal.
fn apply_resources(
    policy: &LaunchPolicy,
    prices: &dyn Prices,
    resources: &mut Map<String, Value>,
    changes: &mut Vec<String>,
) -> Result<Result<(), String>, Malformed> {
    let group = candidate_key(resources)?;
    // Limits first, everywhere they may be set.
    if let Some(max) = policy.autostop_idle_minutes {
        clamp_autostop(resources, max, "resources", true, changes)?;
        if let Some(key) = group {
            for (i, c) in candidates_mut(resources, key).enumerate() {
                clamp_autostop(c, max, &format!("resources.{key}[{i}]"), false, changes)?;
            }
        }
    }
    if let Some(cap) = policy.max_hourly_price {
        clamp_cost(resources, cap, "resources", true, changes)?;
        if let Some(key) = group {
            for (i, c) in candidates_mut(resources, key).enumerate() {
                clamp_cost(c, cap, &format!("resources.{key}[{i}]"), false, changes)?;
            }
        }
    }
    if let Some(spot) = policy.use_spot {
        if !resources.contains_key("use_spot") {
            resources.insert("use_spot".to_string(), Value::Bool(spot));
            changes.push(format!("use_spot: {spot} (default)"));
        }
    }
    if group.is_none() {
        apply_location(policy, prices, resources, changes)?;
        apply_instance_type(policy, prices, resources, changes)?;
    }
    if let Some(cap) = policy.max_hourly_price {
        let views: Vec<(String, Map<String, Value>)> = match group {
            None => vec![("resources".to_string(), resources.clone())],
            Some(key) => {
                let mut base = resources.clone();
                base.remove("any_of");
                base.remove("ordered");
                candidates(resources, key)
                    .enumerate()
                    .map(|(i, c)| {
                        let mut merged = base.clone();
                        merged.extend(c.clone());
                        (format!("resources.{key}[{i}]"), merged)
                    })
                    .collect()
            }
        };
        for (label, view) in views {
            if let Some(refusal) = check_price(prices, &view, cap, &label)? {
                return Ok(Err(refusal));
            }
        }
    }
    Ok(Ok(()))
}

fn candidates<'a>(
    resources: &'a Map<String, Value>,
    key: &str,
) -> impl Iterator<Item = &'a Map<String, Value>> {
    resources
        .get(key)
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(Value::as_object)
}

fn candidates_mut<'a>(
    resources: &'a mut Map<String, Value>,
    key: &str,
) -> impl Iterator<Item = &'a mut Map<String, Value>> {
    resources
        .get_mut(key)
        .and_then(Value::as_array_mut)
        .into_iter()
        .flatten()
        .filter_map(Value::as_object_mut)
}

/// Minutes of a SkyPilot time string (`30`, `30m`, `2h`, `1d`, `1w`), as
/// `parse_time_minutes` reads it; `None` when it is not one.
fn parse_minutes(s: &str) -> Option<f64> {
    let s = s.trim().to_ascii_lowercase();
    let (num, unit) = match s.char_indices().last() {
        Some((i, c)) if c.is_ascii_alphabetic() => (&s[..i], Some(c)),
        _ => (&s[..], None),
    };
    let n: f64 = num.trim().parse().ok()?;
    let factor = match unit {
        None | Some('m') => 1.0,
        Some('h') => 60.0,
        Some('d') => 24.0 * 60.0,
        Some('w') => 7.0 * 24.0 * 60.0,
        Some(_) => return None,
    };
    Some(n * factor).filter(|m| m.is_finite())
}

/// An autostop mapping's `idle_minutes` at most `max`: `Ok(true)` when it was changed.
fn clamp_idle_minutes(
    m: &mut Map<String, Value>,
    max: u32,
    label: &str,
    changes: &mut Vec<String>,
) -> Result<bool, Malformed> {
    let idle = m.get("idle_minutes").cloned();
    let ok = match &idle {
        Some(Value::Number(n)) => n.as_f64().is_some_and(|x| x >= 0.0 && x <= f64::from(max)),
        Some(Value::String(s)) => match parse_minutes(s) {
            Some(x) => x >= 0.0 && x <= f64::from(max),
            None => {
                return Err(malformed(format!(
                    "`{label}.autostop.idle_minutes` is {s:?}: expected a number of minutes"
                )))
            }
        },
        // Unset in a mapping is SkyPilot's default, 0 minutes.
        None => true,
        Some(Value::Null) => false,
        Some(other) => {
            return Err(malformed(format!(
                "`{label}.autostop.idle_minutes` is {}: expected a number of minutes",
                kind(other)
            )))
        }
    };
    if ok {
        return Ok(false);
    }
    let was = match &idle {
        None | Some(Value::Null) => "unset".to_string(),
        Some(v) => v.to_string(),
    };
    changes.push(format!("{label}.autostop.idle_minutes: {max} (was {was})"));
    m.insert("idle_minutes".to_string(), Value::from(max));
    Ok(true)
}

/// Autostop at most `max` idle minutes. `fill`: set it when missing (the base of the
/// resources; a candidate without it inherits the base's).
fn clamp_autostop(
    r: &mut Map<String, Value>,
    max: u32,
    label: &str,
    fill: bool,
    changes: &mut Vec<String>,
) -> Result<(), Malformed> {
    let want = || {
        let mut m = Map::new();
        m.insert("idle_minutes".to_string(), Value::from(max));
        m.insert("down".to_string(), Value::Bool(false));
        Value::Object(m)
    };
    let current = r.get("autostop").cloned();
    let new = match current {
        None | Some(Value::Null) if !fill => return Ok(()),
        None | Some(Value::Null) => {
            changes.push(format!("{label}.autostop: {max} idle minutes (was unset)"));
            want()
        }
        Some(Value::Bool(false)) => {
            changes.push(format!("{label}.autostop: {max} idle minutes (was off)"));
            want()
        }
        // On with SkyPilot's default idle time, 0 minutes (`AutostopConfig`): within any limit.
        Some(Value::Bool(true)) => return Ok(()),
        Some(Value::Number(n)) => {
            let minutes = n.as_f64().unwrap_or(f64::INFINITY);
            if minutes >= 0.0 && minutes <= f64::from(max) {
                return Ok(());
            }
            changes.push(format!("{label}.autostop: {max} idle minutes (was {n})"));
            want()
        }
        Some(Value::String(s)) => match parse_minutes(&s) {
            Some(m) if m >= 0.0 && m <= f64::from(max) => return Ok(()),
            Some(_) => {
                changes.push(format!("{label}.autostop: {max} idle minutes (was {s:?})"));
                want()
            }
            None => {
                return Err(malformed(format!(
                    "`{label}.autostop` is {s:?}: expected minutes such as 30, \"30m\", \"2h\""
                )))
            }
        },
        Some(Value::Object(mut m)) => {
            if !clamp_idle_minutes(&mut m, max, label, changes)? {
                return Ok(());
            }
            Value::Object(m)
        }
        Some(other) => {
            return Err(malformed(format!(
                "`{label}.autostop` is {}: expected a mapping, a number of minutes or a boolean",
                kind(&other)
            )))
        }
    };
    r.insert("autostop".to_string(), new);
    Ok(())
}

/// `max_hourly_cost` at most `cap`.
fn clamp_cost(
    r: &mut Map<String, Value>,
    cap: f64,
    label: &str,
    fill: bool,
    changes: &mut Vec<String>,
) -> Result<(), Malformed> {
    match r.get("max_hourly_cost") {
        None | Some(Value::Null) if !fill => return Ok(()),
        None | Some(Value::Null) => {
            changes.push(format!("{label}.max_hourly_cost: {cap} (was unset)"));
        }
        Some(Value::Number(n)) => {
            let v = n.as_f64().unwrap_or(f64::INFINITY);
            if v > 0.0 && v <= cap {
                return Ok(());
            }
            changes.push(format!("{label}.max_hourly_cost: {cap} (was {n})"));
        }
        Some(other) => {
            return Err(malformed(format!(
                "`{label}.max_hourly_cost` is {}: expected a number (USD per hour)",
                kind(other)
            )))
        }
    }
    r.insert("max_hourly_cost".to_string(), Value::from(cap));
    Ok(())
}

/// Where a resources mapping puts a launch: cloud, region, zone, and whether it says
/// so with `infra` or with the legacy `cloud`/`region`/`zone` keys.
#[derive(Debug, Clone, Default, PartialEq)]
struct Location {
    cloud: Option<String>,
    region: Option<String>,
    zone: Option<String>,
    legacy: bool,
}

fn opt_string(r: &Map<String, Value>, key: &str, label: &str) -> Result<Option<String>, Malformed> {
    match r.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => {
            let s = s.trim();
            Ok((!s.is_empty() && s != "*").then(|| s.to_string()))
        }
        Some(other) => Err(malformed(format!(
            "`{label}.{key}` is {}: expected a string",
            kind(other)
        ))),
    }
}

fn location(r: &Map<String, Value>, label: &str) -> Result<Location, Malformed> {
    let legacy_cloud = opt_string(r, "cloud", label)?;
    let legacy_region = opt_string(r, "region", label)?;
    let legacy_zone = opt_string(r, "zone", label)?;
    if let Some(infra) = opt_string(r, "infra", label)? {
        let parts: Vec<&str> = infra.trim_matches('/').split('/').map(str::trim).collect();
        if parts.iter().any(|p| p.is_empty()) {
            return Err(malformed(format!(
                "`{label}.infra` is {infra:?}: expected \"cloud\", \"cloud/region\" or \"cloud/region/zone\""
            )));
        }
        let star = |s: &str| (s != "*").then(|| s.to_string());
        let cloud = star(&parts[0].to_ascii_lowercase());
        let cloud = cloud.map(|c| {
            if c == "k8s" {
                "kubernetes".to_string()
            } else {
                c
            }
        });
        let (region, zone) = if matches!(cloud.as_deref(), Some("kubernetes" | "ssh")) {
            (star(&parts[1..].join("/")).filter(|s| !s.is_empty()), None)
        } else {
            if parts.len() > 3 {
                return Err(malformed(format!(
                    "`{label}.infra` is {infra:?}: expected \"cloud\", \"cloud/region\" or \"cloud/region/zone\""
                )));
            }
            (
                parts.get(1).and_then(|s| star(s)),
                parts.get(2).and_then(|s| star(s)),
            )
        };
        return Ok(Location {
            cloud,
            region,
            zone,
            legacy: false,
        });
    }
    Ok(Location {
        cloud: legacy_cloud.map(|c| c.to_ascii_lowercase()),
        region: legacy_region,
        zone: legacy_zone,
        legacy: true,
    })
}

fn write_location(r: &mut Map<String, Value>, loc: &Location) {
    let uses_legacy = loc.legacy
        && ["cloud", "region", "zone"]
            .iter()
            .any(|k| r.contains_key(*k));
    if uses_legacy {
        for (k, v) in [
            ("cloud", &loc.cloud),
            ("region", &loc.region),
            ("zone", &loc.zone),
        ] {
            if let Some(v) = v {
                r.insert(k.to_string(), Value::String(v.clone()));
            }
        }
        return;
    }
    let mut parts = vec![
        loc.cloud.clone().unwrap_or_else(|| "*".to_string()),
        loc.region.clone().unwrap_or_else(|| "*".to_string()),
    ];
    if let Some(z) = &loc.zone {
        parts.push(z.clone());
    }
    while parts.len() > 1 && parts.last().is_some_and(|p| p == "*") {
        parts.pop();
    }
    r.insert("infra".to_string(), Value::String(parts.join("/")));
}

/// Whether `cloud`'s catalog lists `region`; `None` when it has no catalog.
fn offers_region(prices: &dyn Prices, cloud: &str, region: &str) -> Option<bool> {
    match prices.cloud(cloud) {
        Ok(Some(c)) => Some(c.regions.contains(&region.to_ascii_lowercase())),
        _ => None,
    }
}

fn apply_location(
    policy: &LaunchPolicy,
    prices: &dyn Prices,
    r: &mut Map<String, Value>,
    changes: &mut Vec<String>,
) -> Result<(), Malformed> {
    let mut loc = location(r, "resources")?;
    let before = loc.clone();
    let cloud_default = loc
        .cloud
        .as_ref()
        .and_then(|c| policy.clouds.get(c))
        .filter(|d| d.region.is_some() || d.zone.is_some());
    match (&loc.region, &loc.zone) {
        (None, None) => {
            if let Some(d) = cloud_default {
                loc.region = d.region.clone();
                loc.zone = d.zone.clone();
            } else if let Some(region) = &policy.region {
                match &loc.cloud {
                    Some(c) => {
                        if offers_region(prices, c, region) == Some(true) {
                            loc.region = Some(region.clone());
                            loc.zone = policy.zone.clone();
                        }
                    }
                    None => {
                        let with: Vec<String> = prices
                            .clouds()
                            .into_iter()
                            .filter(|c| offers_region(prices, c, region) == Some(true))
                            .collect();
                        if let [only] = with.as_slice() {
                            loc.cloud = Some(only.clone());
                            loc.region = Some(region.clone());
                            loc.zone = policy.zone.clone();
                        }
                    }
                }
            }
        }
        (Some(region), None) => {
            // The zone of the default location, when the task chose that region.
            let zone = match cloud_default {
                Some(d) if d.region.as_deref() == Some(region) => d.zone.clone(),
                Some(_) => None,
                None if policy.region.as_deref() == Some(region) => policy.zone.clone(),
                None => None,
            };
            loc.zone = zone;
        }
        _ => {}
    }
    if matches!(loc.cloud.as_deref(), Some("kubernetes" | "ssh")) {
        loc.zone = None;
    }
    if loc != before {
        write_location(r, &loc);
        changes.push(format!(
            "location: {} (default; was {})",
            describe(&loc),
            describe(&before)
        ));
    }
    Ok(())
}

fn describe(l: &Location) -> String {
    let parts = [&l.cloud, &l.region, &l.zone];
    if parts.iter().all(|p| p.is_none()) {
        return "unset".to_string();
    }
    parts
        .iter()
        .map(|p| p.as_deref().unwrap_or("*"))
        .collect::<Vec<_>>()
        .join("/")
}

fn apply_instance_type(
    policy: &LaunchPolicy,
    prices: &dyn Prices,
    r: &mut Map<String, Value>,
    changes: &mut Vec<String>,
) -> Result<(), Malformed> {
    let Some(default) = &policy.instance_type else {
        return Ok(());
    };
    let asks_machine = ["instance_type", "cpus", "memory", "accelerators", "gpus"]
        .iter()
        .any(|k| r.get(*k).is_some_and(|v| !v.is_null()));
    if asks_machine {
        return Ok(());
    }
    let loc = location(r, "resources")?;
    let offered = match &loc.cloud {
        // Only where the task's cloud has it.
        Some(c) => match prices.cloud(c) {
            Ok(Some(cat)) => cat.offers.contains_key(default),
            _ => false,
        },
        // No cloud named: SkyPilot finds the cloud that has the instance type.
        None => true,
    };
    if offered {
        r.insert("instance_type".to_string(), Value::String(default.clone()));
        changes.push(format!("instance_type: {default} (default)"));
    }
    Ok(())
}

fn money(p: f64) -> String {
    let s = format!("{p:.4}");
    let s = s.trim_end_matches('0');
    let s = s
        .strip_suffix('.')
        .map_or_else(|| s.to_string(), |x| format!("{x}.00"));
    let s = if s.split('.').nth(1).is_some_and(|d| d.len() < 2) {
        format!("{s}0")
    } else {
        s
    };
    format!("${s}")
}

/// `Ok(Some(text))`: refused.
fn check_price(
    prices: &dyn Prices,
    r: &Map<String, Value>,
    cap: f64,
    label: &str,
) -> Result<Option<String>, Malformed> {
    let Some(instance) = opt_string(r, "instance_type", label)? else {
        return Ok(None);
    };
    let loc = location(r, label)?;
    let spot = match r.get("use_spot") {
        None | Some(Value::Null) => false,
        Some(Value::Bool(b)) => *b,
        Some(other) => {
            return Err(malformed(format!(
                "`{label}.use_spot` is {}: expected a boolean",
                kind(other)
            )))
        }
    };
    let kind_of_price = if spot { "spot" } else { "on-demand" };
    let clouds = match &loc.cloud {
        Some(c) => vec![c.clone()],
        None => prices.clouds(),
    };
    let mut best: Option<(f64, String, String)> = None;
    let mut looked = Vec::new();
    for cloud in &clouds {
        match prices.cloud(cloud) {
            Ok(Some(cat)) => {
                looked.push(prices.describe(cloud));
                if let Some((p, offer)) = cheapest(
                    &cat,
                    &instance,
                    loc.region.as_deref(),
                    loc.zone.as_deref(),
                    spot,
                ) {
                    if best.as_ref().is_none_or(|b| p < b.0) {
                        best = Some((p, cloud.clone(), offer.region.clone()));
                    }
                }
            }
            Ok(None) => {}
            Err(e) => {
                return Ok(Some(format!(
                    "the {kind_of_price} price of instance type {instance} cannot be checked against this server's limit of {}/hour: {e}",
                    money(cap)
                )))
            }
        }
    }
    let where_ = match (&loc.region, &loc.zone) {
        (_, Some(z)) => format!(" in zone {z}"),
        (Some(r), None) => format!(" in region {r}"),
        _ => String::new(),
    };
    match best {
        Some((price, cloud, region)) if price > cap => Ok(Some(format!(
            "instance type {instance} costs {}/hour ({kind_of_price}, {cloud} {region}, SkyPilot's catalog), above this server's limit of {}/hour. Choose a cheaper instance type{}.",
            money(price),
            money(cap),
            if spot { "" } else { ", or use_spot: true if its spot price is lower" }
        ))),
        Some(_) => Ok(None),
        None => {
            let catalogs = if looked.is_empty() {
                match &loc.cloud {
                    Some(c) => format!("there is no catalog for {c} ({})", prices.describe(c)),
                    None => "there is no catalog of any cloud yet".to_string(),
                }
            } else {
                format!("it is not in {}", looked.join(", "))
            };
            Ok(Some(format!(
                "the {kind_of_price} price of instance type {instance}{where_} is unknown, so it cannot be checked against this server's limit of {}/hour: {catalogs}",
                money(cap)
            )))
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::sync::Arc;

    use super::*;
    use crate::catalog::{parse_csv, CloudCatalog};
    use crate::launch_policy::CloudDefaults;

    const SAMPLES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/admin-policy");

    struct Table(HashMap<String, Arc<CloudCatalog>>);

    impl Prices for Table {
        fn cloud(&self, cloud: &str) -> Result<Option<Arc<CloudCatalog>>, String> {
            Ok(self.0.get(cloud).cloned())
        }
        fn clouds(&self) -> Vec<String> {
            let mut v: Vec<String> = self.0.keys().cloned().collect();
            v.sort();
            v
        }
        fn describe(&self, cloud: &str) -> String {
            format!("catalogs/{cloud}/vms.csv")
        }
    }

    fn table() -> Table {
        let aws = parse_csv(
            "InstanceType,Price,SpotPrice,Region,AvailabilityZone\n\
             m6i.large,0.096,0.0374,us-west-2,us-west-2a\n\
             m6i.large,0.107,0.04,us-east-1,us-east-1a\n\
             m5.large,0.096,0.035,us-west-2,us-west-2b\n\
             p3.2xlarge,3.06,0.9,us-west-2,us-west-2b\n",
        )
        .unwrap();
        let gcp = parse_csv(
            "InstanceType,Price,SpotPrice,Region,AvailabilityZone\n\
             n2-standard-2,0.097,0.02,us-central1,us-central1-a\n",
        )
        .unwrap();
        Table(HashMap::from([
            ("aws".to_string(), Arc::new(aws)),
            ("gcp".to_string(), Arc::new(gcp)),
        ]))
    }

    fn rules() -> Rules {
        let mut policy = LaunchPolicy {
            use_spot: Some(true),
            max_hourly_price: Some(1.0),
            region: Some("us-west-2".to_string()),
            instance_type: Some("m5.large".to_string()),
            autostop_idle_minutes: Some(60),
            ..LaunchPolicy::default()
        };
        policy.clouds.insert(
            "gcp".to_string(),
            CloudDefaults {
                region: None,
                zone: Some("us-central1-a".to_string()),
            },
        );
        Rules {
            policy,
            controllers: false,
        }
    }

    fn body(task: &str, name: &str) -> Vec<u8> {
        let inner = serde_json::json!({
            "task": task,
            "skypilot_config": "active_workspace: default\n",
            "request_name": name,
            "request_options": null,
            "at_client_side": false,
            "user": "",
        });
        Value::String(inner.to_string()).to_string().into_bytes()
    }

    /// The answer's task, parsed, as SkyPilot would read it.
    fn answer_task(body: &str) -> (Map<String, Value>, String) {
        let inner: Value = serde_json::from_str(body).unwrap();
        let obj: Value = serde_json::from_str(inner.as_str().unwrap()).unwrap();
        let task = crate::sky_config::yaml::parse(obj["task"].as_str().unwrap()).unwrap();
        (
            task.as_object().unwrap().clone(),
            obj["skypilot_config"].as_str().unwrap().to_string(),
        )
    }

    fn run(rules: &Rules, task: &str, name: &str) -> Decision {
        apply(rules, &table(), decode(&body(task, name)).unwrap()).unwrap()
    }

    fn accepted(rules: &Rules, task: &str) -> (Map<String, Value>, Vec<String>) {
        match run(rules, task, "launch") {
            Decision::Accept { body, changes } => {
                let (task, config) = answer_task(&body);
                assert_eq!(
                    config, "active_workspace: default\n",
                    "config echoed as it came"
                );
                (task, changes)
            }
            Decision::Refuse(r) => panic!("refused: {r}"),
        }
    }

    fn refused(rules: &Rules, task: &str) -> String {
        match run(rules, task, "launch") {
            Decision::Refuse(r) => r,
            other => panic!("not refused: {other:?}"),
        }
    }

    #[test]
    fn a_bare_task_gets_every_default() {
        let (t, changes) = accepted(&rules(), "name: t\nrun: echo hi\nenvs:\n  A: 'on'\n");
        let r = &t["resources"];
        assert_eq!(
            r["autostop"],
            serde_json::json!({"idle_minutes": 60, "down": false})
        );
        assert_eq!(r["use_spot"], true);
        assert_eq!(
            r["infra"], "aws/us-west-2",
            "the one cloud whose catalog has the region"
        );
        assert_eq!(r["instance_type"], "m5.large");
        assert_eq!(r["max_hourly_cost"], 1.0);
        assert_eq!(t["envs"]["A"], "on", "unknown keys and their types kept");
        assert_eq!(t["run"], "echo hi");
        assert!(changes.len() >= 5, "{changes:?}");
    }

    #[test]
    fn what_the_user_set_is_kept_and_limits_are_lowered() {
        let task = "resources:\n  infra: aws/us-east-1\n  cpus: 2+\n  use_spot: false\n  max_hourly_cost: 0.5\n  autostop:\n    idle_minutes: 600\n    down: true\n";
        let (t, _) = accepted(&rules(), task);
        let r = &t["resources"];
        assert_eq!(r["infra"], "aws/us-east-1");
        assert_eq!(r["use_spot"], false);
        assert_eq!(
            r["max_hourly_cost"], 0.5,
            "a lower limit of the user's is kept"
        );
        assert_eq!(
            r["autostop"],
            serde_json::json!({"idle_minutes": 60, "down": true})
        );
        assert!(
            r.get("instance_type").is_none(),
            "cpus asked: no default instance type"
        );
        let (t, _) = accepted(
            &rules(),
            "resources:\n  autostop: 30\n  max_hourly_cost: 50\n",
        );
        assert_eq!(t["resources"]["autostop"], 30, "shorter autostop kept");
        assert_eq!(t["resources"]["max_hourly_cost"], 1.0);
        for given in ["false", "'2h'", "1e300", "-5"] {
            let (t, _) = accepted(&rules(), &format!("resources:\n  autostop: {given}\n"));
            assert_eq!(
                t["resources"]["autostop"]["idle_minutes"], 60,
                "autostop {given} becomes the limit"
            );
        }
        let (t, _) = accepted(&rules(), "resources:\n  autostop: '45m'\n");
        assert_eq!(t["resources"]["autostop"], "45m");
        // `true` and a mapping without idle_minutes mean SkyPilot's default, 0 minutes.
        let (t, _) = accepted(&rules(), "resources:\n  autostop: true\n");
        assert_eq!(t["resources"]["autostop"], true);
        let (t, _) = accepted(&rules(), "resources:\n  autostop:\n    down: true\n");
        assert_eq!(
            t["resources"]["autostop"],
            serde_json::json!({"down": true})
        );
    }

    #[test]
    fn cloud_defaults_come_first_and_zones_follow_their_region() {
        let (t, _) = accepted(&rules(), "resources:\n  infra: gcp\n");
        assert_eq!(t["resources"]["infra"], "gcp/*/us-central1-a");
        // gcp's catalog has no m5.large: no default instance type there.
        assert!(t["resources"].get("instance_type").is_none());
        // A cloud whose catalog lacks the general default region gets none.
        let mut r = rules();
        r.policy.clouds.clear();
        let (t, _) = accepted(&r, "resources:\n  infra: gcp\n");
        assert_eq!(t["resources"]["infra"], "gcp");
        // Legacy keys stay legacy (infra and region together are refused by SkyPilot).
        let (t, _) = accepted(&rules(), "resources:\n  cloud: aws\n");
        assert_eq!(t["resources"]["region"], "us-west-2");
        assert!(t["resources"].get("infra").is_none());
        // Kubernetes contexts are not regions of a catalog.
        let (t, _) = accepted(&rules(), "resources:\n  infra: k8s/my-ctx/with/slash\n");
        assert_eq!(t["resources"]["infra"], "k8s/my-ctx/with/slash");
    }

    #[test]
    fn over_the_limit_is_refused_naming_instance_price_and_limit() {
        let mut r = rules();
        r.policy.use_spot = None;
        let msg = refused(
            &r,
            "resources:\n  infra: aws\n  instance_type: p3.2xlarge\n",
        );
        assert!(msg.contains("p3.2xlarge"), "{msg}");
        assert!(msg.contains("$3.06/hour"), "{msg}");
        assert!(msg.contains("$1.00/hour"), "{msg}");
        assert!(msg.contains("on-demand"), "{msg}");
        // With use_spot the spot price counts, and p3's is under the limit.
        let (t, _) = accepted(
            &r,
            "resources:\n  infra: aws\n  instance_type: p3.2xlarge\n  use_spot: true\n",
        );
        assert_eq!(t["resources"]["instance_type"], "p3.2xlarge");
        // The default use_spot: true makes it pass too.
        accepted(&rules(), "resources:\n  instance_type: p3.2xlarge\n");
        // Each candidate is checked.
        let msg = refused(
            &r,
            "resources:\n  any_of:\n  - infra: aws\n    instance_type: m6i.large\n  - infra: aws\n    instance_type: p3.2xlarge\n",
        );
        assert!(msg.contains("p3.2xlarge"), "{msg}");
        // Unknown prices are refused too.
        let msg = refused(&r, "resources:\n  infra: aws\n  instance_type: x9.huge\n");
        assert!(msg.contains("unknown") && msg.contains("x9.huge"), "{msg}");
        let msg = refused(
            &r,
            "resources:\n  infra: azure\n  instance_type: Standard_D2s_v5\n",
        );
        assert!(msg.contains("no catalog for azure"), "{msg}");
    }

    #[test]
    fn candidates_get_limits_not_location_defaults() {
        let (t, _) = accepted(
            &rules(),
            "resources:\n  ordered:\n  - infra: aws\n    autostop: 900\n  - infra: gcp\n",
        );
        let r = &t["resources"];
        assert_eq!(r["ordered"][0]["autostop"]["idle_minutes"], 60);
        assert_eq!(r["ordered"][0]["infra"], "aws");
        assert_eq!(r["autostop"]["idle_minutes"], 60);
        assert!(r.get("infra").is_none() && r.get("instance_type").is_none());
    }

    #[test]
    fn controllers_pass_untouched_unless_configured() {
        let text = std::fs::read(format!(
            "{SAMPLES}/server_jobs_launch_controller_request.json"
        ))
        .unwrap();
        let req = decode(&text).unwrap();
        let original = req.task_text.clone();
        let Decision::Accept { body, .. } = apply(&rules(), &table(), req.clone()).unwrap() else {
            panic!("refused")
        };
        let inner: Value = serde_json::from_str(&body).unwrap();
        let obj: Value = serde_json::from_str(inner.as_str().unwrap()).unwrap();
        assert_eq!(obj["task"], original, "byte for byte");
        let mut r = rules();
        r.controllers = true;
        let Decision::Accept { body, .. } = apply(&r, &table(), req).unwrap() else {
            panic!("refused")
        };
        let (t, _) = answer_task(&body);
        assert_eq!(
            t["resources"]["autostop"]["idle_minutes"], 10,
            "10 < 60 kept"
        );
        assert_eq!(t["resources"]["use_spot"], true);
        assert_eq!(t["envs"]["SKYPILOT_DEV"], "0", "strings stay strings");
    }

    #[test]
    fn the_captured_samples_decode_and_apply() {
        for name in [
            "client_launch_request.json",
            "client_jobs_launch_request.json",
            "server_launch_request.json",
            "server_validate_request.json",
        ] {
            let text = std::fs::read(format!("{SAMPLES}/{name}")).unwrap();
            let req = decode(&text).unwrap_or_else(|e| panic!("{name}: {e}"));
            assert!(req.config_text.contains("admin_policy"), "{name}");
            let Decision::Accept { body, .. } = apply(&rules(), &table(), req).unwrap() else {
                panic!("{name}: refused")
            };
            let (t, _) = answer_task(&body);
            assert!(
                t["resources"]["autostop"]["idle_minutes"].as_u64().unwrap() <= 60,
                "{name}"
            );
        }
    }

    #[test]
    fn no_policy_changes_nothing() {
        let r = Rules::default();
        let req = decode(&body("name: x\nresources:\n  cpus: 2\n", "launch")).unwrap();
        let Decision::Accept { body, changes } = apply(&r, &table(), req).unwrap() else {
            panic!("refused")
        };
        assert!(changes.is_empty());
        assert_eq!(
            body,
            encode(
                "name: x\nresources:\n  cpus: 2\n",
                "active_workspace: default\n"
            )
        );
    }

    #[test]
    fn malformed_requests_are_errors_that_say_what() {
        let cases: Vec<(Vec<u8>, &str)> = vec![
            (b"not json".to_vec(), "not JSON"),
            (b"".to_vec(), "not JSON"),
            (b"{\"task\": \"x\"}".to_vec(), "not a string"),
            (b"42".to_vec(), "not a string"),
            (b"\"not json inside\"".to_vec(), "string in the body is not JSON"),
            (b"\"[1,2]\"".to_vec(), "not an object"),
            (Value::String("{\"task\": 1}".into()).to_string().into_bytes(), "`task` is a number"),
            (
                Value::String(r#"{"task": "a: 1", "skypilot_config": ""}"#.into()).to_string().into_bytes(),
                "`request_name` is missing",
            ),
            (body("- a\n- b\n", "launch"), "not a mapping"),
            (body("a: [unclosed\n", "launch"), "not valid YAML"),
            (body(&"[".repeat(100_000), "launch"), "nested"),
            (
                Value::String(r#"{"task": "a: 1", "skypilot_config": "", "request_name": "launch", "at_client_side": "yes"}"#.into())
                    .to_string()
                    .into_bytes(),
                "at_client_side",
            ),
        ];
        for (b, want) in cases {
            let e = decode(&b).unwrap_err();
            assert!(
                e.0.contains(want),
                "{:?}: {e}",
                String::from_utf8_lossy(&b[..b.len().min(60)])
            );
        }
        let bad_tasks = [
            ("resources: 3\n", "`resources` is a number"),
            ("resources:\n  autostop: [1]\n", "autostop` is a list"),
            ("resources:\n  autostop: soon\n", "\"soon\""),
            (
                "resources:\n  autostop:\n    idle_minutes: [1]\n",
                "idle_minutes",
            ),
            ("resources:\n  max_hourly_cost: cheap\n", "max_hourly_cost"),
            ("resources:\n  infra: 7\n", "infra"),
            ("resources:\n  infra: aws//x\n", "infra"),
            ("resources:\n  any_of: 3\n", "any_of"),
            ("resources:\n  any_of: [1]\n", "any_of"),
            (
                "resources:\n  instance_type: p3.2xlarge\n  use_spot: maybe\n",
                "use_spot",
            ),
        ];
        for (task, want) in bad_tasks {
            let req = decode(&body(task, "launch")).unwrap();
            let e = apply(&rules(), &table(), req).unwrap_err();
            assert!(e.0.contains(want), "{task:?}: {e}");
        }
    }

    #[test]
    fn huge_and_odd_numbers_do_not_break_it() {
        // An integer beyond 64 bits is not a value this YAML reader holds: a 400 that
        // names it, not a panic.
        let e = decode(&body(
            "resources:\n  autostop: 99999999999999999999999\n",
            "launch",
        ))
        .unwrap_err();
        assert!(e.0.contains("99999999999999999999999"), "{e}");
        for v in [
            "1e308",
            "-1e308",
            "0",
            "1.5",
            "18446744073709551615",
            ".nan",
            ".inf",
        ] {
            let (t, _) = accepted(
                &rules(),
                &format!(
                    "resources:\n  max_hourly_cost: {v}\n  autostop:\n    idle_minutes: {v}\n"
                ),
            );
            let cost = t["resources"]["max_hourly_cost"].as_f64().unwrap();
            assert!(cost > 0.0 && cost <= 1.0, "{v}: {cost}");
            let idle = t["resources"]["autostop"]["idle_minutes"].as_f64().unwrap();
            assert!((0.0..=60.0).contains(&idle), "{v}: {idle}");
        }
    }

    #[test]
    fn money_reads_well() {
        assert_eq!(money(1.0), "$1.00");
        assert_eq!(money(3.06), "$3.06");
        assert_eq!(money(0.0374), "$0.0374");
        assert_eq!(money(0.5), "$0.50");
        assert_eq!(money(12.0), "$12.00");
    }

    #[test]
    fn minutes_parse_like_skypilot() {
        assert_eq!(parse_minutes("30"), Some(30.0));
        assert_eq!(parse_minutes("2h"), Some(120.0));
        assert_eq!(parse_minutes("1d"), Some(1440.0));
        assert_eq!(parse_minutes("1W"), Some(10080.0));
        assert_eq!(parse_minutes("5x"), None);
        assert_eq!(parse_minutes(""), None);
    }
}
