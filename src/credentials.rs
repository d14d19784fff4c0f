//! Cloud credentials: for each cloud set in `[credentials]`, whether its file (or, for
//! Azure, directory) is outside the Nix store, present, readable and well-formed.
//! No network calls. No secret value is ever printed: messages carry paths, line
//! numbers, key names and profile names only.
//!
//! What "well-formed" means follows how SkyPilot 0.14.1 and the SDKs it uses read each
//! credential:
//!
//! | cloud | SkyPilot reads | checked here |
//! |---|---|---|
//! | aws | shared-credentials INI (`AWS_SHARED_CREDENTIALS_FILE`, `~/.aws/credentials`) | INI syntax as Python's strict `configparser` (botocore); a profile with `aws_access_key_id` and `aws_secret_access_key` |
//! | gcp | `GOOGLE_APPLICATION_CREDENTIALS` JSON | `type` `service_account` (`client_email`, `private_key` PEM, `token_uri`) or `authorized_user` (`client_id`, `client_secret`, `refresh_token`) |
//! | azure | `~/.azure` (Azure CLI state) | a directory with `msal_token_cache.json` (SkyPilot's own check) and `azureProfile.json` with subscriptions (`az`'s profile) |
//! | kubernetes | `KUBECONFIG` / `~/.kube/config` | YAML with non-empty `clusters` and `contexts`; references resolve |
//! | lambda | `~/.lambda_cloud/lambda_keys` | a line `api_key = …` (SkyPilot splits lines on `" = "`) |
//! | runpod | `~/.runpod/config.toml` | TOML with `[default]` `api_key` |
//!
//! The AWS INI reader is ours on purpose, not an INI crate's: it copies the rules of
//! Python's strict `configparser` (duplicate sections and keys refused, continuation
//! lines, `;`/`#` comments), which botocore uses; an INI crate reads a wider or narrower
//! language, and a file it accepts would then fail in SkyPilot.

use std::collections::{BTreeMap, BTreeSet};
use std::os::unix::fs::{MetadataExt as _, PermissionsExt as _};
use std::path::Path;

use serde_json::Value;

use crate::config::Config;

/// Credential files larger than this are refused unread (none of these formats comes
/// close).
const MAX_BYTES: u64 = 8 * 1024 * 1024;

const NIX_STORE: &str = "/nix/store/";

/// The outcome of checking one cloud's credential.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CloudReport {
    pub(crate) cloud: &'static str,
    pub(crate) path: std::path::PathBuf,
    /// `Ok(what was found)` or `Err(why it fails)`.
    pub outcome: Result<String, String>,
    /// Problems that do not fail the check (e.g. a world-readable file).
    pub(crate) warnings: Vec<String>,
}

/// `credentials check`: prints one line per configured cloud (ok lines on stdout,
/// failures and warnings on stderr) and returns whether all passed.
pub(crate) fn check(config: &Config) -> anyhow::Result<bool> {
    let paths = config.credential_paths();
    if paths.is_empty() {
        println!("no cloud credentials configured ([credentials] is empty)");
        return Ok(true);
    }
    let mut all_ok = true;
    for (cloud, path) in paths {
        let report = check_cloud(cloud, path);
        for w in &report.warnings {
            eprintln!("warning: {}: {}: {w}", report.cloud, report.path.display());
        }
        match &report.outcome {
            Ok(what) => println!("ok: {}: {}: {what}", report.cloud, report.path.display()),
            Err(why) => {
                all_ok = false;
                eprintln!("error: {}: {}: {why}", report.cloud, report.path.display());
            }
        }
    }
    Ok(all_ok)
}

/// Checks one cloud's credential. `cloud` is one of aws, gcp, azure, kubernetes,
/// lambda, runpod.
pub fn check_cloud(cloud: &'static str, path: &Path) -> CloudReport {
    let mut warnings = Vec::new();
    let outcome = check_inner(cloud, path, &mut warnings);
    CloudReport {
        cloud,
        path: path.to_path_buf(),
        outcome,
        warnings,
    }
}

fn check_inner(cloud: &str, path: &Path, warnings: &mut Vec<String>) -> Result<String, String> {
    if let Some(why) = store_path(path) {
        return Err(why);
    }
    let meta = match std::fs::metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err("does not exist".to_string())
        }
        Err(e) => return Err(format!("cannot be inspected: {e}")),
    };
    if let Some(w) = loose_mode(&meta) {
        warnings.push(w);
    }
    match cloud {
        "azure" => {
            if !meta.is_dir() {
                return Err(
                    "is not a directory; expected the Azure CLI state directory (what `az login` writes to ~/.azure)"
                        .to_string(),
                );
            }
            check_azure(path, warnings)
        }
        _ => {
            if meta.is_dir() {
                return Err(format!("is a directory; expected {}", expected_file(cloud)));
            }
            let bytes = read_limited(path, &meta)?;
            let text = String::from_utf8(bytes).map_err(|e| {
                format!(
                    "is not UTF-8 text (invalid byte at offset {})",
                    e.utf8_error().valid_up_to()
                )
            })?;
            match cloud {
                "aws" => check_aws(&text),
                "gcp" => check_gcp(&text),
                "kubernetes" => check_kubeconfig(&text),
                "lambda" => check_lambda(&text),
                "runpod" => check_runpod(&text),
                other => Err(format!("unknown cloud {other:?}")),
            }
        }
    }
}

fn expected_file(cloud: &str) -> &'static str {
    match cloud {
        "aws" => "an AWS shared-credentials file",
        "gcp" => "a GCP service-account or authorized-user JSON key file",
        "kubernetes" => "a kubeconfig file",
        "lambda" => "a Lambda Cloud `lambda_keys` file",
        "runpod" => "a RunPod `config.toml` file",
        _ => "a file",
    }
}

/// Why a path in the Nix store is refused, if it is one (literally or through links).
fn store_path(path: &Path) -> Option<String> {
    let literal = path.to_string_lossy().starts_with(NIX_STORE);
    let resolved = std::fs::canonicalize(path)
        .map(|p| p.to_string_lossy().starts_with(NIX_STORE))
        .unwrap_or(false);
    (literal || resolved).then(|| {
        "is in the Nix store, which every local user can read (and binary caches copy); \
         keep credentials outside the store (e.g. /run/secrets/…) and let the module hand them \
         to the service with systemd LoadCredential"
            .to_string()
    })
}

fn loose_mode(meta: &std::fs::Metadata) -> Option<String> {
    let mode = meta.permissions().mode() & 0o777;
    (mode & 0o007 != 0).then(|| {
        format!(
            "mode {mode:04o} lets every local user read it; expected access for its owner (and group) only, e.g. 0600"
        )
    })
}

fn read_limited(path: &Path, meta: &std::fs::Metadata) -> Result<Vec<u8>, String> {
    if meta.len() > MAX_BYTES {
        return Err(format!(
            "is {} bytes, larger than any credential file ({} MiB at most); not reading it",
            meta.len(),
            MAX_BYTES / 1024 / 1024
        ));
    }
    let unreadable = |e: std::io::Error| {
        format!(
            "is not readable by this process (uid {}): {e} (file mode {:04o}, owner uid {})",
            current_uid().map_or_else(|| "?".to_string(), |u| u.to_string()),
            meta.permissions().mode() & 0o7777,
            meta.uid()
        )
    };
    match crate::files::read_regular(path, MAX_BYTES) {
        Ok(buf) => Ok(buf),
        Err(crate::files::ReadError::Io(e)) => Err(unreadable(e)),
        Err(e) => Err(e.to_string()),
    }
}

/// The real uid of this process, from /proc (no libc needed).
fn current_uid() -> Option<u32> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|u| u.parse().ok())
}

// ---------------------------------------------------------------------------- AWS

/// Parses an AWS shared-credentials file the way botocore does, with Python's
/// `configparser.RawConfigParser` (strict mode): `[profile]` headers (the name is what
/// lies between the first `[` and the last `]`), `key = value` or `key: value` options
/// (keys case-insensitive), full-line `#`/`;` comments, lines indented deeper than
/// their option continuing its value (blank lines in between allowed), `[DEFAULT]`
/// inherited by every profile, and no profile or key given twice.
pub fn check_aws(text: &str) -> Result<String, String> {
    let (profiles, defaults) = parse_aws_ini(text)?;
    if profiles.is_empty() {
        return Err(
            "has no profiles: expected e.g. `[default]` with aws_access_key_id and aws_secret_access_key"
                .to_string(),
        );
    }
    let has = |keys: &BTreeMap<String, bool>, k: &str| {
        keys.get(k).or_else(|| defaults.get(k)) == Some(&true)
    };
    let complete: Vec<&str> = profiles
        .iter()
        .filter(|(_, k)| has(k, "aws_access_key_id") && has(k, "aws_secret_access_key"))
        .map(|(name, _)| name.as_str())
        .collect();
    if complete.is_empty() {
        let names: Vec<&str> = profiles.iter().map(|(n, _)| n.as_str()).collect();
        return Err(format!(
            "no profile has both aws_access_key_id and aws_secret_access_key set (profiles: {})",
            names.join(", ")
        ));
    }
    Ok(format!(
        "AWS shared-credentials file; profiles with keys: {}",
        complete.join(", ")
    ))
}

/// Each profile's keys (whether each value is non-empty), in file order, and the
/// `[DEFAULT]` section's.
type AwsIni = (
    Vec<(String, BTreeMap<String, bool>)>,
    BTreeMap<String, bool>,
);

/// The sections and keys of an AWS shared-credentials file, as [`check_aws`] says.
fn parse_aws_ini(text: &str) -> Result<AwsIni, String> {
    const DEFAULT: &str = "DEFAULT";
    // Profile name -> key -> whether the value is non-empty; in file order.
    let mut profiles: Vec<(String, BTreeMap<String, bool>)> = Vec::new();
    let mut defaults: BTreeMap<String, bool> = BTreeMap::new();
    // Which section options go to: None before any header, Some(None) = DEFAULT.
    let mut current: Option<Option<usize>> = None;
    let mut option: Option<String> = None;
    let mut indent_level = 0usize;
    for (i, line) in text.lines().enumerate() {
        let n = i + 1;
        let value = line.trim();
        if value.is_empty() || value.starts_with('#') || value.starts_with(';') {
            continue;
        }
        let indent = line.chars().take_while(|c| c.is_whitespace()).count();
        if let (Some(section), Some(opt)) = (current, &option) {
            if indent > indent_level {
                // A continuation line: the value is not empty any more.
                let keys = match section {
                    Some(idx) => &mut profiles[idx].1,
                    None => &mut defaults,
                };
                keys.insert(opt.clone(), true);
                continue;
            }
        }
        indent_level = indent;
        if let Some(end) = value.strip_prefix('[').and_then(|rest| rest.rfind(']')) {
            if end > 0 {
                let name = &value[1..=end];
                option = None;
                if name == DEFAULT {
                    current = Some(None);
                    continue;
                }
                if profiles.iter().any(|(p, _)| p == name) {
                    return Err(format!(
                        "is malformed: line {n}: profile [{name}] appears a second time"
                    ));
                }
                profiles.push((name.to_string(), BTreeMap::new()));
                current = Some(Some(profiles.len() - 1));
                continue;
            }
        }
        let Some(section) = current else {
            return Err(format!(
                "is malformed: line {n} comes before any `[profile]` header"
            ));
        };
        let Some(pos) = value.find(['=', ':']) else {
            return Err(format!(
                "is malformed: line {n} is neither a `[profile]` header nor a `key = value` line"
            ));
        };
        let key = value[..pos].trim_end().to_lowercase();
        if key.is_empty() {
            return Err(format!("is malformed: line {n}: an option without a name"));
        }
        let (name, keys) = match section {
            Some(idx) => {
                let (n, k) = &mut profiles[idx];
                (n.as_str(), k)
            }
            None => (DEFAULT, &mut defaults),
        };
        if keys
            .insert(key.clone(), !value[pos + 1..].trim().is_empty())
            .is_some()
        {
            return Err(format!(
                "is malformed: line {n}: `{key}` appears a second time in profile [{name}]"
            ));
        }
        option = Some(key);
    }
    Ok((profiles, defaults))
}

// ---------------------------------------------------------------------------- GCP

fn json_error(what: &str, e: &serde_json::Error) -> String {
    // Only the position: serde_json's messages never quote input, but be strict anyway.
    format!(
        "is not valid {what} JSON (line {}, column {})",
        e.line(),
        e.column()
    )
}

fn require_strings(obj: &serde_json::Map<String, Value>, keys: &[&str]) -> Result<(), String> {
    let missing: Vec<&str> = keys
        .iter()
        .copied()
        .filter(|k| !matches!(obj.get(*k), Some(Value::String(s)) if !s.trim().is_empty()))
        .collect();
    if missing.is_empty() {
        Ok(())
    } else {
        Err(missing.join(", "))
    }
}

pub fn check_gcp(text: &str) -> Result<String, String> {
    let v: Value = serde_json::from_str(text).map_err(|e| json_error("GCP credentials", &e))?;
    let Value::Object(obj) = v else {
        return Err(
            "is not a JSON object; expected a GCP service-account key or authorized-user file"
                .to_string(),
        );
    };
    match obj.get("type").and_then(Value::as_str) {
        Some("service_account") => {
            require_strings(&obj, &["client_email", "private_key", "token_uri"])
                .map_err(|m| format!("is a service-account key without {m}"))?;
            let pem = obj
                .get("private_key")
                .and_then(Value::as_str)
                .unwrap_or_default();
            if !(pem.contains("-----BEGIN") && pem.contains("PRIVATE KEY-----")) {
                return Err(
                    "is a service-account key whose private_key is not a PEM private key"
                        .to_string(),
                );
            }
            let project = obj
                .get("project_id")
                .and_then(Value::as_str)
                .map(|p| format!(" for project {p}"))
                .unwrap_or_default();
            Ok(format!("GCP service-account key{project}"))
        }
        Some("authorized_user") => {
            require_strings(&obj, &["client_id", "client_secret", "refresh_token"])
                .map_err(|m| format!("is an authorized-user file without {m}"))?;
            Ok("GCP authorized-user credentials".to_string())
        }
        Some(other) => Err(format!(
            "has type {other:?}; expected \"service_account\" or \"authorized_user\""
        )),
        None => Err(
            "has no string `type`; expected \"service_account\" or \"authorized_user\"".to_string(),
        ),
    }
}

// ---------------------------------------------------------------------------- Azure

fn check_azure(dir: &Path, warnings: &mut Vec<String>) -> Result<String, String> {
    let mut read_json = |name: &str| -> Result<Value, String> {
        let p = dir.join(name);
        let meta = match std::fs::metadata(&p) {
            Ok(m) => m,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(format!("has no {name} (run `az login` to create it)"))
            }
            Err(e) => return Err(format!("{name} cannot be inspected: {e}")),
        };
        if meta.is_dir() {
            return Err(format!("{name} is a directory; expected a JSON file"));
        }
        if let Some(w) = loose_mode(&meta) {
            warnings.push(format!("{name}: {w}"));
        }
        let bytes = read_limited(&p, &meta).map_err(|e| format!("{name} {e}"))?;
        // `az` writes azureProfile.json with a byte-order mark.
        let bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(&bytes);
        serde_json::from_slice(bytes).map_err(|e| format!("{name} {}", json_error("Azure CLI", &e)))
    };
    // SkyPilot's own check: `~/.azure/msal_token_cache.json` must exist.
    let cache = read_json("msal_token_cache.json")?;
    if !cache.is_object() {
        return Err("msal_token_cache.json is not a JSON object".to_string());
    }
    // SkyPilot asks the Azure CLI profile for the subscription.
    let profile = read_json("azureProfile.json")?;
    let subs = profile
        .get("subscriptions")
        .and_then(Value::as_array)
        .map_or(0, Vec::len);
    if subs == 0 {
        return Err("azureProfile.json lists no subscriptions (run `az login`)".to_string());
    }
    Ok(format!(
        "Azure CLI state with a token cache and {subs} subscription{}",
        if subs == 1 { "" } else { "s" }
    ))
}

// ---------------------------------------------------------------------------- Kubernetes

/// The entries of a kubeconfig list (`clusters`, `contexts`): each one's `name` and its
/// mapping under the singular key (`cluster`, `context`).
fn named_entries(
    obj: &serde_json::Map<String, Value>,
    key: &str,
) -> Result<Vec<(String, Value)>, String> {
    let list = match obj.get(key) {
        Some(Value::Array(a)) if !a.is_empty() => a,
        Some(Value::Array(_)) | Some(Value::Null) | None => {
            return Err(format!(
                "has no `{key}`; expected a kubeconfig with clusters and contexts"
            ))
        }
        Some(_) => return Err(format!("`{key}` is not a list")),
    };
    let singular = key.trim_end_matches('s');
    list.iter()
        .enumerate()
        .map(|(i, item)| {
            let name = item.get("name").and_then(Value::as_str);
            match (name, item.get(singular)) {
                (Some(n), Some(b)) if b.is_object() => Ok((n.to_string(), b.clone())),
                _ => Err(format!(
                    "`{key}[{i}]` needs a `name` and a `{singular}` mapping"
                )),
            }
        })
        .collect()
}

pub fn check_kubeconfig(text: &str) -> Result<String, String> {
    // The message names the line and column only, never the content.
    crate::sky_config::yaml::check_flow_depth(text, crate::sky_config::yaml::MAX_FLOW_DEPTH)
        .map_err(|e| e.replacen("not valid YAML at", "is not valid kubeconfig YAML: at", 1))?;
    let v: Value = serde_yaml_ng::from_str(text).map_err(|e| match e.location() {
        Some(l) => format!(
            "is not valid kubeconfig YAML (line {}, column {})",
            l.line(),
            l.column()
        ),
        None => "is not valid kubeconfig YAML".to_string(),
    })?;
    let Value::Object(obj) = v else {
        return Err(
            "is not a YAML mapping; expected a kubeconfig with clusters and contexts".to_string(),
        );
    };
    let clusters = named_entries(&obj, "clusters")?;
    let contexts = named_entries(&obj, "contexts")?;
    for (name, c) in &clusters {
        if c.get("server").and_then(Value::as_str).is_none() {
            return Err(format!("cluster {name:?} has no `server`"));
        }
    }
    let cluster_names: BTreeSet<&str> = clusters.iter().map(|(n, _)| n.as_str()).collect();
    let user_names: BTreeSet<String> = obj
        .get("users")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|u| u.get("name").and_then(Value::as_str).map(str::to_string))
                .collect()
        })
        .unwrap_or_default();
    for (name, ctx) in &contexts {
        match ctx.get("cluster").and_then(Value::as_str) {
            Some(c) if cluster_names.contains(c) => {}
            Some(c) => {
                return Err(format!(
                    "context {name:?} names cluster {c:?}, which is not in `clusters`"
                ))
            }
            None => return Err(format!("context {name:?} has no `cluster`")),
        }
        if let Some(u) = ctx.get("user").and_then(Value::as_str) {
            if !user_names.contains(u) {
                return Err(format!(
                    "context {name:?} names user {u:?}, which is not in `users`"
                ));
            }
        }
    }
    let current = match obj.get("current-context") {
        Some(Value::String(c)) if !c.is_empty() => {
            if !contexts.iter().any(|(n, _)| n == c) {
                return Err(format!("current-context {c:?} is not in `contexts`"));
            }
            format!("; current context {c:?}")
        }
        _ => String::new(),
    };
    Ok(format!(
        "kubeconfig with {} cluster{} and {} context{}{current}",
        clusters.len(),
        if clusters.len() == 1 { "" } else { "s" },
        contexts.len(),
        if contexts.len() == 1 { "" } else { "s" },
    ))
}

// ---------------------------------------------------------------------------- Lambda

/// SkyPilot keeps the lines containing `" = "`, strips them and splits them at `" = "`
/// (a kept line with nothing after it makes SkyPilot fail); it needs `api_key`.
pub fn check_lambda(text: &str) -> Result<String, String> {
    let mut found = false;
    for (i, line) in text.split_inclusive('\n').enumerate() {
        if !line.contains(" = ") {
            continue;
        }
        let Some((key, value)) = line.trim().split_once(" = ") else {
            return Err(format!("line {}: a `key = ` line with no value", i + 1));
        };
        if key == "api_key" {
            if value.trim().is_empty() {
                return Err(format!("line {}: `api_key` has an empty value", i + 1));
            }
            found = true;
        }
    }
    if found {
        Ok("Lambda Cloud key file with an api_key".to_string())
    } else {
        Err("has no `api_key = …` line (SkyPilot reads `key = value` lines, with spaces around `=`)".to_string())
    }
}

// ---------------------------------------------------------------------------- RunPod

pub fn check_runpod(text: &str) -> Result<String, String> {
    let table: toml::Table = text.parse().map_err(|e: toml::de::Error| {
        // Only the position: TOML messages can quote the offending input.
        match e.span() {
            Some(span) => {
                let line = text[..span.start.min(text.len())].matches('\n').count() + 1;
                format!("is not valid TOML (line {line})")
            }
            None => "is not valid TOML".to_string(),
        }
    })?;
    let Some(default) = table.get("default") else {
        return Err(
            "has no [default] profile; SkyPilot needs `[default]` with `api_key = \"…\"`"
                .to_string(),
        );
    };
    match default.get("api_key") {
        Some(toml::Value::String(s)) if !s.trim().is_empty() => {
            Ok("RunPod config with a [default] api_key".to_string())
        }
        Some(toml::Value::String(_)) => Err("[default] api_key is empty".to_string()),
        Some(_) => Err("[default] api_key is not a string".to_string()),
        None => Err("[default] has no api_key; SkyPilot needs `api_key = \"…\"`".to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &str = "wJalrXUtnFEMI-K7MDENG-bPxRfiCYSECRET";

    #[test]
    fn aws_good_file() {
        let t = format!(
            "# comment\n[default]\naws_access_key_id = AKIAEXAMPLE\naws_secret_access_key = {SECRET}\n\n[other]\nregion = us-west-2\n"
        );
        assert_eq!(
            check_aws(&t).unwrap(),
            "AWS shared-credentials file; profiles with keys: default"
        );
    }

    #[test]
    fn aws_colon_and_continuation_are_accepted() {
        let t = format!("[p]\naws_access_key_id: A\naws_secret_access_key={SECRET}\ns3 =\n  max_concurrent_requests = 10\n");
        assert!(check_aws(&t).is_ok(), "{:?}", check_aws(&t));
    }

    #[test]
    fn aws_follows_configparser_rules() {
        // [DEFAULT] is inherited; text after the last `]` of a header is ignored.
        let t = "[DEFAULT]\naws_secret_access_key = s\n[p] trailing\naws_access_key_id = a\n";
        assert_eq!(
            check_aws(t).unwrap(),
            "AWS shared-credentials file; profiles with keys: p"
        );
        // An indented line after a blank line still continues the value.
        let t = "[p]\nAWS_ACCESS_KEY_ID = a\naws_secret_access_key =\n\n  s\n";
        assert!(check_aws(t).is_ok(), "{:?}", check_aws(t));
        // A deeper-indented line continues even if it looks like a header.
        let t = "[p]\naws_access_key_id = a\n  [p]\naws_secret_access_key = s\n";
        assert!(check_aws(t).is_ok(), "{:?}", check_aws(t));
    }

    #[test]
    fn aws_malformed_files_name_the_line_without_content() {
        let cases = [
            (format!("aws_secret_access_key = {SECRET}\n"), "line 1 comes before any `[profile]` header"),
            (format!("[default]\n{SECRET}\n"), "line 2 is neither a `[profile]` header nor a `key = value` line"),
            (format!("[default\naws_secret_access_key = {SECRET}\n"), "line 1 comes before any `[profile]` header"),
            ("[a]\n[a]\n".to_string(), "line 2: profile [a] appears a second time"),
            (format!("[a]\naws_access_key_id = x\naws_access_key_id = {SECRET}\n"), "line 3: `aws_access_key_id` appears a second time in profile [a]"),
            ("".to_string(), "has no profiles"),
            (format!("[a]\naws_access_key_id = x\n[b]\naws_secret_access_key = {SECRET}\n"), "no profile has both aws_access_key_id and aws_secret_access_key set (profiles: a, b)"),
            ("[a]\naws_access_key_id = x\naws_secret_access_key =\n".to_string(), "no profile has both"),
        ];
        for (text, want) in cases {
            let e = check_aws(&text).unwrap_err();
            assert!(e.contains(want), "{e:?} should contain {want:?}");
            assert!(!e.contains(SECRET), "{e}");
        }
    }

    #[test]
    fn gcp_forms() {
        let sa = format!(
            r#"{{"type":"service_account","project_id":"p1","client_email":"a@b","token_uri":"https://oauth2.googleapis.com/token","private_key":"-----BEGIN PRIVATE KEY-----\n{SECRET}\n-----END PRIVATE KEY-----\n"}}"#
        );
        assert_eq!(
            check_gcp(&sa).unwrap(),
            "GCP service-account key for project p1"
        );
        let au = format!(
            r#"{{"type":"authorized_user","client_id":"i","client_secret":"{SECRET}","refresh_token":"r"}}"#
        );
        assert_eq!(check_gcp(&au).unwrap(), "GCP authorized-user credentials");
        let bad = [
            (
                r#"{"type":"service_account","client_email":"a"}"#.to_string(),
                "without private_key, token_uri",
            ),
            (
                format!(
                    r#"{{"type":"service_account","client_email":"a","token_uri":"t","private_key":"{SECRET}"}}"#
                ),
                "not a PEM private key",
            ),
            (
                r#"{"type":"external"}"#.to_string(),
                "has type \"external\"",
            ),
            (
                format!("{{\"private_key\": \"{SECRET}\" "),
                "is not valid GCP credentials JSON (line 1",
            ),
            ("[1]".to_string(), "is not a JSON object"),
        ];
        for (text, want) in bad {
            let e = check_gcp(&text).unwrap_err();
            assert!(e.contains(want), "{e:?} should contain {want:?}");
            assert!(!e.contains(SECRET), "{e}");
        }
    }

    #[test]
    fn kubeconfig_forms() {
        let good = format!(
            "apiVersion: v1\nclusters:\n- name: c\n  cluster: {{server: https://k:6443}}\ncontexts:\n- name: x\n  context: {{cluster: c, user: u}}\ncurrent-context: x\nusers:\n- name: u\n  user: {{token: {SECRET}}}\n"
        );
        assert_eq!(
            check_kubeconfig(&good).unwrap(),
            "kubeconfig with 1 cluster and 1 context; current context \"x\""
        );
        let bad = [
            ("apiVersion: v1\n".to_string(), "has no `clusters`"),
            (
                good.replace("current-context: x", "current-context: y"),
                "current-context \"y\" is not in `contexts`",
            ),
            (
                good.replace("{cluster: c, user: u}", "{cluster: d, user: u}"),
                "names cluster \"d\"",
            ),
            (
                format!("clusters: [\nusers: {SECRET}\n"),
                "is not valid kubeconfig YAML (line",
            ),
        ];
        for (text, want) in bad {
            let e = check_kubeconfig(&text).unwrap_err();
            assert!(e.contains(want), "{e:?} should contain {want:?}");
            assert!(!e.contains(SECRET), "{e}");
        }
    }

    #[test]
    fn lambda_follows_skypilots_parser() {
        assert!(check_lambda(&format!("api_key = {SECRET}\n")).is_ok());
        let e = check_lambda(&format!("api_key={SECRET}\n")).unwrap_err();
        assert!(e.contains("spaces around"), "{e}");
        assert!(!e.contains(SECRET), "{e}");
        assert!(check_lambda("api_key = \n")
            .unwrap_err()
            .contains("line 1: a `key = ` line with no value"));
        assert!(check_lambda("x = 1\napi_key =  \t x\n").is_ok());
    }

    #[test]
    fn runpod_needs_default_api_key() {
        assert!(check_runpod(&format!("[default]\napi_key = \"{SECRET}\"\n")).is_ok());
        let bad = [
            (
                format!("api_key = \"{SECRET}\"\n"),
                "has no [default] profile",
            ),
            (
                "[default]\nkey = 1\n".to_string(),
                "[default] has no api_key",
            ),
            (
                format!("[default]\napi_key = \"{SECRET}\n"),
                "is not valid TOML (line 2)",
            ),
            (
                format!("[default]\napi_key = {SECRET}\n"),
                "is not valid TOML (line 2)",
            ),
        ];
        for (text, want) in bad {
            let e = check_runpod(&text).unwrap_err();
            assert!(e.contains(want), "{e:?} should contain {want:?}");
            assert!(!e.contains(SECRET), "{e}");
        }
    }

    #[test]
    fn store_paths_are_refused_before_anything_else() {
        let r = check_cloud("aws", Path::new("/nix/store/abc-aws-credentials"));
        let e = r.outcome.unwrap_err();
        assert!(e.starts_with("is in the Nix store"), "{e}");
        assert!(e.contains("LoadCredential"), "{e}");
    }
}
