//! SkyPilot's own config schema (exported by `scripts/sky-schema.py`) and validation
//! against it, with errors that name the key path, the offending value and what is
//! allowed.
//!
//! SkyPilot validates with a JSON-Schema draft-07 validator extended by two keywords,
//! `case_insensitive_enum` and `case_sensitive_enum`; both are implemented here.

// jsonschema's custom-keyword API fixes the (large) error type of keyword factories.
#![allow(clippy::result_large_err)]

use std::path::{Path, PathBuf};

use anyhow::Context as _;
use jsonschema::error::ValidationErrorKind;
use jsonschema::paths::{LazyLocation, Location};
use jsonschema::{Keyword, ValidationError};
use serde_json::Value;

use super::compat::seed_hint;
use super::values::show_value;
use super::Problem;

/// Environment variable naming the schema file when no `--schema` flag is given.
pub(crate) const SCHEMA_ENV: &str = "SKYPILOT_CONFIG_SCHEMA";

/// A loaded schema and its compiled validator.
pub(crate) struct Schema {
    path: PathBuf,
    raw: Value,
    validator: jsonschema::Validator,
}

impl std::fmt::Debug for Schema {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Schema").field("path", &self.path).finish()
    }
}

impl Schema {
    /// The schema named by `flag`, else by `$SKYPILOT_CONFIG_SCHEMA`; an error that says
    /// how to get one when neither is set.
    pub(crate) fn locate(flag: Option<&Path>) -> anyhow::Result<Schema> {
        if let Some(p) = flag {
            return Schema::load(p);
        }
        match std::env::var_os(SCHEMA_ENV) {
            Some(p) if !p.is_empty() => Schema::load(Path::new(&p)),
            _ => anyhow::bail!(
                "no SkyPilot config schema: pass --schema FILE or set {SCHEMA_ENV} to the JSON \
                 that scripts/sky-schema.py prints when run with the Python of the SkyPilot in use"
            ),
        }
    }

    /// Reads and compiles a schema file.
    pub(crate) fn load(path: &Path) -> anyhow::Result<Schema> {
        // SkyPilot 0.14.1's schema is ~100 KiB.
        let text = crate::files::read_regular_text(path, 64 * 1024 * 1024).with_context(|| {
            format!("{}: cannot read the SkyPilot config schema", path.display())
        })?;
        let raw: Value = serde_json::from_str(&text).with_context(|| {
            format!(
                "{}: the SkyPilot config schema is not JSON (expected the output of scripts/sky-schema.py)",
                path.display()
            )
        })?;
        Schema::from_value(raw, path)
    }

    /// Compiles a schema value; `path` is only used in messages.
    pub(crate) fn from_value(raw: Value, path: &Path) -> anyhow::Result<Schema> {
        if raw.get("properties").and_then(Value::as_object).is_none() {
            anyhow::bail!(
                "{}: not a SkyPilot config schema: it has no top-level `properties` object",
                path.display()
            );
        }
        let validator = jsonschema::options()
            .with_draft(jsonschema::Draft::Draft7)
            .should_validate_formats(false)
            .with_keyword("case_insensitive_enum", |_parent, value, location| {
                EnumKeyword::factory(value, location, false)
            })
            .with_keyword("case_sensitive_enum", |_parent, value, location| {
                EnumKeyword::factory(value, location, true)
            })
            .build(&raw)
            .map_err(|e| {
                anyhow::anyhow!(
                    "{}: the SkyPilot config schema does not compile: {e}",
                    path.display()
                )
            })?;
        Ok(Schema {
            path: path.to_path_buf(),
            raw,
            validator,
        })
    }

    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// Which SkyPilot the schema came from, e.g. "SkyPilot 0.14.1", for messages.
    pub(crate) fn label(&self) -> String {
        self.raw
            .get("$comment")
            .and_then(Value::as_str)
            .and_then(|c| c.strip_prefix("SkyPilot "))
            .and_then(|rest| rest.split_whitespace().next())
            .map_or_else(
                || "SkyPilot's config schema".to_string(),
                |v| format!("SkyPilot {v}'s config schema"),
            )
    }

    /// Cloud names SkyPilot knows (lower case), from `allowed_clouds`; empty if the
    /// schema does not list them.
    pub(crate) fn clouds(&self) -> Vec<String> {
        self.raw
            .pointer("/properties/allowed_clouds/items/case_insensitive_enum")
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(Value::as_str)
                    .map(str::to_ascii_lowercase)
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Every way `config` breaks the schema, sorted by key path; empty when valid.
    pub(crate) fn validate(&self, config: &Value) -> Vec<Problem> {
        let mut problems = Vec::new();
        for err in self.validator.iter_errors(config) {
            problems.extend(describe(&err, config, &self.raw));
        }
        problems.sort_by(|a, b| a.key.cmp(&b.key).then(a.message.cmp(&b.message)));
        problems.dedup();
        problems
    }
}

/// `case_insensitive_enum` / `case_sensitive_enum`, as SkyPilot's validator defines them.
struct EnumKeyword {
    options: Vec<String>,
    case_sensitive: bool,
    schema_location: Location,
}

impl EnumKeyword {
    fn factory<'a>(
        value: &'a Value,
        location: Location,
        case_sensitive: bool,
    ) -> Result<Box<dyn Keyword>, ValidationError<'a>> {
        let options = value.as_array().and_then(|a| {
            a.iter()
                .map(|v| v.as_str().map(str::to_string))
                .collect::<Option<Vec<_>>>()
        });
        match options {
            Some(options) => Ok(Box::new(EnumKeyword {
                options,
                case_sensitive,
                schema_location: location,
            })),
            None => Err(ValidationError::custom(
                location,
                Location::new(),
                value,
                "expected an array of strings",
            )),
        }
    }

    fn matches(&self, s: &str) -> bool {
        if self.case_sensitive {
            self.options.iter().any(|o| o == s)
        } else {
            let lower = s.to_lowercase();
            self.options.iter().any(|o| o.to_lowercase() == lower)
        }
    }
}

impl Keyword for EnumKeyword {
    fn validate<'i>(
        &self,
        instance: &'i Value,
        location: &LazyLocation,
    ) -> Result<(), ValidationError<'i>> {
        if self.is_valid(instance) {
            return Ok(());
        }
        let case = if self.case_sensitive {
            ""
        } else {
            " (in any case)"
        };
        Err(ValidationError::custom(
            self.schema_location.clone(),
            location.into(),
            instance,
            format!("expected one of {}{case}", self.options.join(", ")),
        ))
    }

    fn is_valid(&self, instance: &Value) -> bool {
        match instance {
            Value::String(s) => self.matches(s),
            // SkyPilot pairs these keywords with `type: string`, which reports
            // non-strings; the case-sensitive variant compares any value.
            _ => !self.case_sensitive,
        }
    }
}

/// One JSON-pointer segment list from a `Location`.
fn pointer_segments(loc: &Location) -> Vec<String> {
    let s = loc.as_str();
    if s.is_empty() {
        return Vec::new();
    }
    s.trim_start_matches('/')
        .split('/')
        .map(|seg| seg.replace("~1", "/").replace("~0", "~"))
        .collect()
}

/// Dotted key path (`jobs.controller.resources`, array items as `[0]`) of an instance
/// location, walking `root` to tell array indexes from keys.
pub(crate) fn key_path(segments: &[String], root: &Value) -> String {
    let mut out = String::new();
    let mut node = Some(root);
    for seg in segments {
        match node {
            Some(Value::Array(a)) => {
                out.push('[');
                out.push_str(seg);
                out.push(']');
                node = seg.parse::<usize>().ok().and_then(|i| a.get(i));
            }
            other => {
                if !out.is_empty() {
                    out.push('.');
                }
                out.push_str(seg);
                node = other.and_then(|v| v.get(seg.as_str()));
            }
        }
    }
    out
}

/// Levenshtein distance, for "did you mean".
fn distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1];
        for (j, cb) in b.iter().enumerate() {
            let sub = prev[j] + usize::from(ca != *cb);
            cur.push(sub.min(prev[j + 1] + 1).min(cur[j] + 1));
        }
        prev = cur;
    }
    prev[b.len()]
}

pub(crate) fn did_you_mean<'a>(
    key: &str,
    known: impl Iterator<Item = &'a String>,
) -> Option<String> {
    known
        .map(|k| (distance(key, k), k))
        .filter(|(d, k)| *d <= 2.max(key.len() / 4) && *d < k.len())
        .min()
        .map(|(_, k)| k.clone())
}

/// What a sub-schema accepts, in words (for anyOf/oneOf and nested values).
fn summarize(schema: &Value) -> String {
    let Some(obj) = schema.as_object() else {
        return "anything".to_string();
    };
    let mut parts = Vec::new();
    match obj.get("type") {
        Some(Value::String(t)) if t == "array" => {
            let items = obj
                .get("items")
                .map(summarize)
                .unwrap_or_else(|| "anything".to_string());
            parts.push(format!("a list of ({items})"));
        }
        Some(Value::String(t)) => parts.push(t.clone()),
        Some(Value::Array(ts)) => parts.push(
            ts.iter()
                .filter_map(Value::as_str)
                .collect::<Vec<_>>()
                .join(" or "),
        ),
        _ => {}
    }
    if let Some(Value::String(p)) = obj.get("pattern") {
        parts.push(format!("matching /{p}/"));
    }
    for k in ["enum", "case_insensitive_enum", "case_sensitive_enum"] {
        if let Some(Value::Array(opts)) = obj.get(k) {
            let opts: Vec<String> = opts.iter().map(|o| o.to_string()).collect();
            parts.push(format!("one of {}", opts.join(", ")));
        }
    }
    if let Some(Value::Object(props)) = obj.get("properties") {
        if !props.is_empty() && parts.iter().all(|p| p != "object") {
            parts.push("object".to_string());
        }
        if !props.is_empty() {
            let keys: Vec<&str> = props.keys().map(String::as_str).collect();
            parts.push(format!("with keys from {}", keys.join(", ")));
        }
    }
    for k in ["anyOf", "oneOf"] {
        if let Some(Value::Array(branches)) = obj.get(k) {
            let b: Vec<String> = branches.iter().map(summarize).collect();
            parts.push(format!("({})", b.join(" | ")));
        }
    }
    if parts.is_empty() {
        "anything".to_string()
    } else {
        parts.join(" ")
    }
}

fn allowed_keys(node: &Value) -> (Vec<String>, Vec<String>) {
    let keys = node
        .get("properties")
        .and_then(Value::as_object)
        .map(|m| m.keys().cloned().collect())
        .unwrap_or_default();
    let patterns = node
        .get("patternProperties")
        .and_then(Value::as_object)
        .map(|m| m.keys().cloned().collect())
        .unwrap_or_default();
    (keys, patterns)
}

fn schema_node<'s>(raw: &'s Value, segments: &[String]) -> Option<&'s Value> {
    segments.iter().try_fold(raw, |node, seg| match node {
        Value::Array(a) => seg.parse::<usize>().ok().and_then(|i| a.get(i)),
        Value::Object(m) => m.get(seg.as_str()),
        _ => None,
    })
}

/// Turns one validator error into problems (one per unknown key for
/// `additionalProperties`).
fn describe(err: &ValidationError<'_>, root: &Value, raw: &Value) -> Vec<Problem> {
    let inst = pointer_segments(&err.instance_path);
    let key = key_path(&inst, root);
    let schema_segs = pointer_segments(&err.schema_path);
    let keyword_value = schema_node(raw, &schema_segs);
    if let ValidationErrorKind::AdditionalProperties { unexpected } = &err.kind {
        let parent = schema_segs
            .split_last()
            .and_then(|(_, rest)| schema_node(raw, rest));
        return unknown_keys(&key, unexpected, parent);
    }
    let value = show_value(&key, &err.instance);
    let message = match &err.kind {
        ValidationErrorKind::Required { property } => {
            format!("missing required key {property}")
        }
        ValidationErrorKind::Type { .. } => {
            let expected = match keyword_value {
                Some(Value::String(t)) => t.clone(),
                Some(Value::Array(ts)) => ts
                    .iter()
                    .filter_map(Value::as_str)
                    .collect::<Vec<_>>()
                    .join(" or "),
                _ => "another type".to_string(),
            };
            format!("{value} is not allowed: expected {expected}")
        }
        ValidationErrorKind::AnyOf { .. }
        | ValidationErrorKind::OneOfNotValid { .. }
        | ValidationErrorKind::OneOfMultipleValid { .. } => {
            let branches = keyword_value
                .and_then(Value::as_array)
                .map(|b| b.iter().map(summarize).collect::<Vec<_>>().join(" | "))
                .unwrap_or_else(|| "the allowed forms".to_string());
            if matches!(err.kind, ValidationErrorKind::OneOfMultipleValid { .. }) {
                format!("{value} is ambiguous: it matches more than one of: {branches}")
            } else {
                format!("{value} is not allowed: expected one of: {branches}")
            }
        }
        ValidationErrorKind::Custom { message } => format!("{value} is not allowed: {message}"),
        ValidationErrorKind::Not { schema } => format!(
            "{value} is not allowed: it must not be {}",
            summarize(schema)
        ),
        ValidationErrorKind::FalseSchema => format!("{value} is not allowed here"),
        kind => match expected_bound(kind) {
            Some(expected) => format!("{value} is not allowed: expected {expected}"),
            None => {
                // Other keywords do not occur in SkyPilot's schema; describe them by the
                // keyword and its schema value, never by echoing the library's message
                // (which could quote a secret).
                let kw = schema_segs.last().map_or("?", String::as_str);
                let expected = keyword_value.map_or_else(|| "?".to_string(), |v| v.to_string());
                format!("{value} is not allowed: `{kw}` requires {expected}")
            }
        },
    };
    vec![Problem { key, message }]
}

/// What a bound or a listed value expects, in words: `at least 3 items`.
fn expected_bound(kind: &ValidationErrorKind) -> Option<String> {
    Some(match kind {
        ValidationErrorKind::Enum { options } => format!("one of {options}"),
        ValidationErrorKind::Pattern { pattern } => format!("a string matching /{pattern}/"),
        ValidationErrorKind::Minimum { limit } => format!("at least {limit}"),
        ValidationErrorKind::Maximum { limit } => format!("at most {limit}"),
        ValidationErrorKind::ExclusiveMinimum { limit } => format!("more than {limit}"),
        ValidationErrorKind::ExclusiveMaximum { limit } => format!("less than {limit}"),
        ValidationErrorKind::MinLength { limit } => format!("at least {limit} characters"),
        ValidationErrorKind::MinItems { limit } => format!("at least {limit} items"),
        ValidationErrorKind::MinProperties { limit } => format!("at least {limit} keys"),
        ValidationErrorKind::MaxProperties { limit } => format!("at most {limit} keys"),
        ValidationErrorKind::UniqueItems => "unique items".to_string(),
        _ => return None,
    })
}

/// One problem per key of `unexpected` under `key` that the schema `parent` does not
/// allow: the seed's hint for it, or the keys allowed there and the nearest one.
fn unknown_keys(key: &str, unexpected: &[String], parent: Option<&Value>) -> Vec<Problem> {
    let (known, patterns) = parent.map(allowed_keys).unwrap_or_default();
    let place = if key.is_empty() {
        "at the top level".to_string()
    } else {
        format!("under `{key}`")
    };
    unexpected
        .iter()
        .map(|k| {
            let full = if key.is_empty() {
                k.clone()
            } else {
                format!("{key}.{k}")
            };
            let message = seed_hint(&full).unwrap_or_else(|| {
                let mut m = format!("not a SkyPilot key; allowed {place}: ");
                if known.is_empty() && patterns.is_empty() {
                    m.push_str("no keys");
                } else {
                    let mut all = known.clone();
                    all.extend(patterns.iter().map(|p| format!("keys matching /{p}/")));
                    m.push_str(&all.join(", "));
                }
                if let Some(s) = did_you_mean(k, known.iter()) {
                    m.push_str(&format!(" (did you mean `{s}`?)"));
                }
                m
            });
            Problem { key: full, message }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn tiny() -> Schema {
        let raw = json!({
            "$comment": "SkyPilot 9.9.9 config.yaml schema (server mode)",
            "type": "object",
            "additionalProperties": false,
            "properties": {
                "allowed_clouds": {"type": "array", "items": {"type": "string",
                    "case_insensitive_enum": ["AWS", "GCP", "Kubernetes"]}},
                "aws": {"type": "object", "additionalProperties": false,
                    "properties": {"vpc_name": {"oneOf": [{"type": "string"}, {"type": "null"}]},
                                   "labels": {"type": "object"}}},
                "api_server": {"type": "object", "additionalProperties": false,
                    "properties": {"requests_retention_hours": {"type": "integer"},
                                   "service_account_token": {"type": "string", "pattern": "^sky_.+$"}}},
                "jobs": {"type": "object", "properties": {"items": {"type": "array",
                    "items": {"type": "object", "additionalProperties": false,
                              "properties": {"name": {"type": "string"}}}}}},
                "mode": {"type": "string", "case_sensitive_enum": ["READ_WRITE", "READ_ONLY"]}
            }
        });
        Schema::from_value(raw, Path::new("schema.json")).unwrap()
    }

    #[test]
    fn label_and_clouds_come_from_the_schema() {
        let s = tiny();
        assert_eq!(s.label(), "SkyPilot 9.9.9's config schema");
        assert_eq!(s.clouds(), vec!["aws", "gcp", "kubernetes"]);
    }

    #[test]
    fn unknown_key_is_named_with_its_path_and_the_allowed_keys() {
        let p = tiny().validate(&json!({"aws": {"vpc_nam": "x"}}));
        assert_eq!(p.len(), 1, "{p:?}");
        assert_eq!(p[0].key, "aws.vpc_nam");
        assert!(
            p[0].message
                .contains("allowed under `aws`: labels, vpc_name"),
            "{}",
            p[0].message
        );
        assert!(
            p[0].message.contains("did you mean `vpc_name`"),
            "{}",
            p[0].message
        );
    }

    #[test]
    fn seed_keys_get_the_hint() {
        let p =
            tiny().validate(&json!({"aws": {"region": "us-west-2"}, "spot": {"enabled": true}}));
        let keys: Vec<&str> = p.iter().map(|p| p.key.as_str()).collect();
        assert_eq!(keys, vec!["aws.region", "spot"]);
        assert_eq!(
            p[0].to_string(),
            "`aws.region`: not a SkyPilot key; region is a task resource: set `services.skypilot.cluster.defaultRegion`"
        );
        assert!(p[1].message.contains("use_spot"), "{}", p[1].message);
    }

    #[test]
    fn wrong_type_names_value_and_expected_type() {
        let p = tiny().validate(&json!({"api_server": {"requests_retention_hours": "24h"}}));
        assert_eq!(p.len(), 1, "{p:?}");
        assert_eq!(p[0].key, "api_server.requests_retention_hours");
        assert_eq!(
            p[0].message,
            "\"24h\" (a string) is not allowed: expected integer"
        );
    }

    #[test]
    fn custom_enum_keywords_are_enforced() {
        let s = tiny();
        assert!(s
            .validate(&json!({"allowed_clouds": ["aws", "Kubernetes"]}))
            .is_empty());
        let p = s.validate(&json!({"allowed_clouds": ["aws", "azur"]}));
        assert_eq!(p.len(), 1, "{p:?}");
        assert_eq!(p[0].key, "allowed_clouds[1]");
        assert!(
            p[0].message
                .contains("expected one of AWS, GCP, Kubernetes (in any case)"),
            "{}",
            p[0].message
        );
        assert!(s.validate(&json!({"mode": "READ_ONLY"})).is_empty());
        let p = s.validate(&json!({"mode": "read_only"}));
        assert_eq!(p[0].key, "mode");
    }

    #[test]
    fn one_of_lists_the_forms() {
        let p = tiny().validate(&json!({"aws": {"vpc_name": 3}}));
        assert_eq!(p.len(), 1, "{p:?}");
        assert_eq!(p[0].key, "aws.vpc_name");
        assert!(
            p[0].message
                .contains("3 (an integer) is not allowed: expected one of: string | null"),
            "{}",
            p[0].message
        );
    }

    #[test]
    fn array_items_are_named_by_index() {
        let p = tiny().validate(&json!({"jobs": {"items": [{"name": "a"}, {"nme": "b"}]}}));
        assert_eq!(p.len(), 1, "{p:?}");
        assert_eq!(p[0].key, "jobs.items[1].nme");
    }

    #[test]
    fn secrets_are_not_echoed() {
        let p =
            tiny().validate(&json!({"api_server": {"service_account_token": "hunter2-secret"}}));
        assert_eq!(p.len(), 1, "{p:?}");
        assert_eq!(p[0].key, "api_server.service_account_token");
        assert!(!p[0].message.contains("hunter2"), "{}", p[0].message);
        assert!(
            p[0].message.contains("matching /^sky_.+$/"),
            "{}",
            p[0].message
        );
    }

    #[test]
    fn missing_schema_says_how_to_get_one() {
        let e = Schema::load(Path::new("/nonexistent/schema.json")).unwrap_err();
        assert!(
            format!("{e:#}").contains("/nonexistent/schema.json"),
            "{e:#}"
        );
    }

    #[test]
    fn did_you_mean_is_conservative() {
        let known = ["vpc_name".to_string(), "labels".to_string()];
        assert_eq!(
            did_you_mean("vpc_nam", known.iter()),
            Some("vpc_name".to_string())
        );
        assert_eq!(did_you_mean("region", known.iter()), None);
    }
}
