//! Wire types of SkyPilot's REST API (0.14.1, API version 62), and their conversion to
//! the host's model. Unknown fields are ignored; a missing required field is an error
//! that names the field and the record.

use std::borrow::Cow;
use std::hash::{Hash, Hasher};

use serde::Deserialize;

use crate::cluster::{instance_type_from_resources, Cluster, ClusterStatus};
use crate::time::Timestamp;

/// `GET /api/health`.
#[derive(Debug, Clone, PartialEq, Deserialize, serde::Serialize)]
pub struct Health {
    pub status: String,
    /// A string in 0.14.1 ("62"); older servers sent a number.
    #[serde(default, deserialize_with = "string_or_number")]
    pub(crate) api_version: Option<String>,
    #[serde(default)]
    pub(crate) version: Option<String>,
    #[serde(default)]
    pub(crate) commit: Option<String>,
    #[serde(default)]
    pub(crate) basic_auth_enabled: Option<bool>,
    #[serde(default)]
    pub(crate) user: Option<serde_json::Value>,
}

impl Health {
    pub fn api_version_number(&self) -> Option<u32> {
        self.api_version.as_deref()?.trim().parse().ok()
    }
}

/// The payload of `GET /api/get` (and of its HTTP 500 `detail`).
#[derive(Debug, Clone, Deserialize)]
pub struct RequestPayload {
    pub(crate) request_id: String,
    pub(crate) status: String,
    /// A JSON document encoded as a string.
    #[serde(default)]
    pub return_value: Option<String>,
    /// A JSON document encoded as a string (`"null"` when there is no error).
    #[serde(default)]
    pub(crate) error: Option<String>,
}

/// The `error` document of a failed request.
#[derive(Debug, Clone, Deserialize)]
pub struct RequestError {
    #[serde(rename = "type", default)]
    pub(crate) error_type: Option<String>,
    #[serde(default)]
    pub(crate) message: Option<String>,
}

/// One record of `POST /status` (SkyPilot's `StatusResponse`). Only the fields the host
/// uses; `name`, `status`, `cluster_hash`, `autostop` and `to_down` are required. Strings
/// borrow from the answer where they can, so reading a large fleet allocates little, and
/// the record hashes to a fingerprint that tells an unchanged cluster without converting
/// it.
#[derive(Debug, Clone, Hash, Deserialize)]
pub struct StatusRecord<'a> {
    #[serde(borrow)]
    pub name: Cow<'a, str>,
    #[serde(borrow)]
    pub(crate) status: Cow<'a, str>,
    #[serde(borrow)]
    pub(crate) cluster_hash: Cow<'a, str>,
    pub(crate) autostop: i64,
    pub(crate) to_down: bool,
    #[serde(default)]
    pub(crate) launched_at: Option<i64>,
    #[serde(default, borrow)]
    pub(crate) last_use: Option<Cow<'a, str>>,
    #[serde(default)]
    pub(crate) status_updated_at: Option<i64>,
    #[serde(default, borrow)]
    pub(crate) user_hash: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    pub(crate) user_name: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    pub(crate) workspace: Option<Cow<'a, str>>,
    #[serde(default)]
    pub(crate) is_managed: Option<bool>,
    #[serde(default, borrow)]
    pub(crate) resources_str: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    pub(crate) resources_str_full: Option<Cow<'a, str>>,
    #[serde(default)]
    pub(crate) nodes: Option<i64>,
    #[serde(default, borrow)]
    pub(crate) cloud: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    pub(crate) region: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    pub(crate) zone: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    pub(crate) cpus: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    pub(crate) memory: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    pub(crate) accelerators: Option<Cow<'a, str>>,
}

fn owned(s: Option<Cow<'_, str>>) -> Option<String> {
    s.map(Cow::into_owned)
}

impl StatusRecord<'_> {
    /// A 64-bit fingerprint of every field the host uses.
    pub fn fingerprint(&self) -> u64 {
        let mut h = std::collections::hash_map::DefaultHasher::new();
        self.hash(&mut h);
        h.finish()
    }

    pub fn into_cluster(self) -> Result<Cluster, String> {
        let status = match self.status.as_ref() {
            "INIT" => ClusterStatus::Init,
            "UP" => ClusterStatus::Up,
            "STOPPED" => ClusterStatus::Stopped,
            other => {
                return Err(format!(
                    "cluster {:?}: unknown status {other:?}: expected INIT, UP or STOPPED",
                    self.name
                ))
            }
        };
        let resources = owned(self.resources_str_full.or(self.resources_str));
        let instance_type = resources.as_deref().and_then(instance_type_from_resources);
        Ok(Cluster {
            name: self.name.into_owned(),
            cluster_hash: self.cluster_hash.into_owned(),
            status,
            cloud: owned(self.cloud),
            region: owned(self.region),
            zone: owned(self.zone),
            instance_type,
            nodes: self.nodes.unwrap_or(1),
            cpus: owned(self.cpus),
            memory: owned(self.memory),
            accelerators: owned(self.accelerators).filter(|a| a != "None" && !a.is_empty()),
            resources,
            workspace: owned(self.workspace).unwrap_or_else(|| "default".to_string()),
            user_name: owned(self.user_name),
            user_hash: owned(self.user_hash),
            launched_at: self.launched_at.map(Timestamp::from_secs),
            status_updated_at: self.status_updated_at.map(Timestamp::from_secs),
            autostop_minutes: self.autostop,
            autostop_to_down: self.to_down,
            is_managed: self.is_managed.unwrap_or(false),
            last_use: owned(self.last_use).filter(|s| !s.is_empty()),
        })
    }
}

/// One record of `POST /cost_report`.
#[derive(Debug, Clone, PartialEq, Deserialize, serde::Serialize)]
pub struct CostRecord {
    pub name: String,
    #[serde(default)]
    pub cluster_hash: Option<String>,
    #[serde(default)]
    pub total_cost: Option<f64>,
    /// Seconds the cluster has been up, summed over its usage intervals.
    #[serde(default)]
    pub(crate) duration: Option<f64>,
    #[serde(default)]
    pub num_nodes: Option<i64>,
    #[serde(default)]
    pub status: Option<String>,
}

impl CostRecord {
    /// Dollars per hour, from the accrued cost and the time up.
    pub fn hourly_cost(&self) -> Option<f64> {
        match (self.total_cost, self.duration) {
            (Some(c), Some(d)) if d > 0.0 && c.is_finite() => Some(c * 3600.0 / d),
            _ => None,
        }
    }
}

fn string_or_number<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    Ok(match Option::<serde_json::Value>::deserialize(d)? {
        None | Some(serde_json::Value::Null) => None,
        Some(serde_json::Value::String(s)) => Some(s),
        Some(serde_json::Value::Number(n)) => Some(n.to_string()),
        Some(other) => {
            return Err(serde::de::Error::custom(format!(
                "expected a string or a number, got {other}"
            )))
        }
    })
}

/// Parses a JSON array of records, naming the record (index and, when it has one, its
/// `name`) and the field on error. Records may borrow from `text`.
pub fn parse_records<'a, T: serde::Deserialize<'a>>(text: &'a str) -> Result<Vec<T>, String> {
    // The fast path; the error path parses again to name the record and the field.
    let first = match serde_json::from_str::<Vec<T>>(text) {
        Ok(v) => return Ok(v),
        Err(e) => e,
    };
    let mut de = serde_json::Deserializer::from_str(text);
    let e = match serde_path_to_error::deserialize::<_, Vec<T>>(&mut de) {
        Ok(_) => return Err(first.to_string()),
        Err(e) => e,
    };
    let path = e.path().to_string();
    let inner = e.into_inner();
    // Name the record by its `name` when the document is valid JSON.
    let index = path
        .strip_prefix('[')
        .and_then(|p| p.split(']').next())
        .and_then(|i| i.parse::<usize>().ok());
    let named = index.and_then(|i| {
        let v: serde_json::Value = serde_json::from_str(text).ok()?;
        v.get(i)?.get("name")?.as_str().map(|s| s.to_string())
    });
    let at = match (named, path.as_str()) {
        (Some(n), _) => format!("record {path} (cluster {n:?})"),
        (None, ".") => "document".to_string(),
        (None, p) => format!("record {p}"),
    };
    Err(format!("{at}: {inner}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = r#"[{"name":"fake-aws","launched_at":1795625973,"last_use":"","status":"UP","autostop":30,"to_down":true,"owner":null,"metadata":null,"cluster_hash":"d65380b4","cluster_ever_up":true,"status_updated_at":0,"user_hash":"fcd1e5cf","user_name":"root","workspace":"default","is_managed":false,"resources_str":"1x(cpus=2, mem=8, m6i.large, ...)","resources_str_full":"1x(cpus=2, mem=8, m6i.large, disk=256)","nodes":1,"cloud":"AWS","region":"us-west-2","cpus":"2.0","memory":"8.0","accelerators":null,"labels":{},"brand_new_field":{"x":1}}]"#;

    #[test]
    fn parses_sample_and_ignores_unknown_fields() {
        let recs: Vec<StatusRecord> = parse_records(SAMPLE).unwrap();
        let c = recs.into_iter().next().unwrap().into_cluster().unwrap();
        assert_eq!(c.name, "fake-aws");
        assert_eq!(c.status, ClusterStatus::Up);
        assert_eq!(c.autostop_minutes, 30);
        assert!(c.autostop_to_down);
        assert_eq!(c.instance_type.as_deref(), Some("m6i.large"));
        assert_eq!(c.cloud.as_deref(), Some("AWS"));
        assert_eq!(c.last_use, None);
        assert_eq!(c.accelerators, None);
    }

    #[test]
    fn fingerprint_follows_used_fields_only() {
        let base: Vec<StatusRecord> = parse_records(SAMPLE).unwrap();
        let same_text = SAMPLE.replace(r#""brand_new_field":{"x":1}"#, r#""brand_new_field":2"#);
        let same: Vec<StatusRecord> = parse_records(&same_text).unwrap();
        assert_eq!(base[0].fingerprint(), same[0].fingerprint());
        let other_text = SAMPLE.replace(r#""autostop":30"#, r#""autostop":31"#);
        let other: Vec<StatusRecord> = parse_records(&other_text).unwrap();
        assert_ne!(base[0].fingerprint(), other[0].fingerprint());
    }

    #[test]
    fn escaped_strings_are_decoded() {
        let text = SAMPLE.replace(r#""user_name":"root""#, r#""user_name":"r\u00f6\"ot""#);
        let recs: Vec<StatusRecord> = parse_records(&text).unwrap();
        let c = recs.into_iter().next().unwrap().into_cluster().unwrap();
        assert_eq!(c.user_name.as_deref(), Some("rö\"ot"));
    }

    #[test]
    fn missing_required_field_is_named() {
        let bad = SAMPLE.replace(r#""cluster_hash":"d65380b4","#, "");
        let e = parse_records::<StatusRecord>(&bad).unwrap_err();
        assert!(e.contains("cluster_hash"), "{e}");
        assert!(e.contains("fake-aws"), "{e}");
        assert!(e.contains("[0]"), "{e}");
    }

    #[test]
    fn wrong_type_is_named() {
        let bad = SAMPLE.replace(r#""autostop":30"#, r#""autostop":"thirty""#);
        let e = parse_records::<StatusRecord>(&bad).unwrap_err();
        assert!(e.contains("autostop"), "{e}");
    }

    #[test]
    fn malformed_json_is_an_error() {
        assert!(parse_records::<StatusRecord>("[{").is_err());
        assert!(parse_records::<StatusRecord>("{}").is_err());
    }

    #[test]
    fn unknown_status_is_an_error() {
        let bad = SAMPLE.replace(r#""status":"UP""#, r#""status":"EXPLODED""#);
        let recs: Vec<StatusRecord> = parse_records(&bad).unwrap();
        let e = recs.into_iter().next().unwrap().into_cluster().unwrap_err();
        assert!(e.contains("fake-aws") && e.contains("EXPLODED"), "{e}");
    }

    #[test]
    fn hourly_cost_from_report() {
        let r = CostRecord {
            name: "c".into(),
            cluster_hash: None,
            total_cost: Some(0.2),
            duration: Some(7200.0),
            num_nodes: Some(1),
            status: None,
        };
        assert!((r.hourly_cost().unwrap() - 0.1).abs() < 1e-9);
        let zero = CostRecord {
            duration: Some(0.0),
            ..r
        };
        assert_eq!(zero.hourly_cost(), None);
    }

    #[test]
    fn health_api_version_string_or_number() {
        let h: Health =
            serde_json::from_str(r#"{"status":"healthy","api_version":"62","version":"0.14.1"}"#)
                .unwrap();
        assert_eq!(h.api_version_number(), Some(62));
        let h: Health = serde_json::from_str(r#"{"status":"healthy","api_version":20}"#).unwrap();
        assert_eq!(h.api_version_number(), Some(20));
    }
}
