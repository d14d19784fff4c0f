//! Configs shown on the Config page, with secrets replaced by `<redacted>`: values of
//! keys that name a secret (password, secret, token, private key, API key, credential)
//! and the user and password inside URLs (`postgresql://user:pw@host/db`).

use std::path::Path;

use crate::config::Config;

pub(crate) const REDACTED: &str = "<redacted>";

/// Whether a key names a secret value.
fn secret_key(key: &str) -> bool {
    let k = key.to_ascii_lowercase();
    [
        "password",
        "passwd",
        "secret",
        "token",
        "private_key",
        "api_key",
        "apikey",
        "credential",
    ]
    .iter()
    .any(|s| k.contains(s))
        && !k.ends_with("_file")
        && !k.ends_with("_path")
}

/// A string with the credentials of any URL in it removed.
fn redact_url(s: &str) -> String {
    match url::Url::parse(s) {
        Ok(mut u) if !u.username().is_empty() || u.password().is_some() => {
            let _ = u.set_username("");
            let _ = u.set_password(None);
            let text = u.to_string();
            // Show that something was there.
            match text.split_once("://") {
                Some((scheme, rest)) => format!("{scheme}://{REDACTED}@{rest}"),
                None => REDACTED.to_string(),
            }
        }
        _ => s.to_string(),
    }
}

fn toml_value(key: &str, v: &mut toml::Value) {
    match v {
        toml::Value::String(s) if secret_key(key) => *s = REDACTED.into(),
        toml::Value::String(s) => *s = redact_url(s),
        toml::Value::Table(t) => {
            for (k, v) in t.iter_mut() {
                toml_value(k, v);
            }
        }
        toml::Value::Array(a) => a.iter_mut().for_each(|v| toml_value(key, v)),
        // One bit is no secret: `create_token = true` is shown.
        toml::Value::Boolean(_) => {}
        _ if secret_key(key) => *v = toml::Value::String(REDACTED.into()),
        _ => {}
    }
}

/// The host config as TOML, redacted.
pub(crate) fn host_config(config: &Config) -> String {
    let mut v = match toml::Value::try_from(config) {
        Ok(v) => v,
        Err(e) => return format!("# cannot show the config: {e}\n"),
    };
    toml_value("", &mut v);
    toml::to_string_pretty(&v).unwrap_or_else(|e| format!("# cannot show the config: {e}\n"))
}

fn yaml_value(key: &str, v: &mut serde_yaml_ng::Value) {
    use serde_yaml_ng::Value;
    match v {
        Value::String(s) if secret_key(key) => *s = REDACTED.into(),
        Value::String(s) => *s = redact_url(s),
        Value::Mapping(m) => {
            for (k, v) in m.iter_mut() {
                let name = k.as_str().unwrap_or("").to_string();
                yaml_value(&name, v);
            }
        }
        Value::Sequence(a) => a.iter_mut().for_each(|v| yaml_value(key, v)),
        Value::Tagged(t) => yaml_value(key, &mut t.value),
        Value::Null => {}
        Value::Bool(_) => {}
        _ if secret_key(key) => *v = Value::String(REDACTED.into()),
        _ => {}
    }
}

/// Redacts SkyPilot config text (YAML).
pub(crate) fn sky_config_text(text: &str) -> Result<String, String> {
    let mut v: serde_yaml_ng::Value =
        serde_yaml_ng::from_str(text).map_err(|e| format!("not YAML: {e}"))?;
    yaml_value("", &mut v);
    serde_yaml_ng::to_string(&v).map_err(|e| e.to_string())
}

/// SkyPilot's config file, read (at most 1 MiB) and redacted.
pub(crate) fn sky_config_file(path: &Path) -> Result<String, String> {
    let text = crate::files::read_regular_text(path, 1024 * 1024).map_err(|e| format!("it {e}"))?;
    sky_config_text(&text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_redacted() {
        let text = "db: postgresql://sky:hunter2@db.local:5432/sky\n\
                    api_server:\n  endpoint: https://alice:pw@sky.example.org\n\
                    kubernetes:\n  token: abc123\n  api_key: 42\n  use_token: true\n\
                    aws:\n  region: us-west-2\n";
        let out = sky_config_text(text).unwrap();
        for secret in ["hunter2", "abc123", "alice:pw", "42"] {
            assert!(!out.contains(secret), "{secret} in {out}");
        }
        assert!(out.contains("us-west-2"), "{out}");
        assert!(out.contains("db.local:5432/sky"), "{out}");
        assert!(out.contains("use_token: true"), "{out}");
    }

    #[test]
    fn host_config_urls_lose_their_credentials() {
        let mut c = Config::default();
        c.skypilot.api_url = "http://svc:secretpw@127.0.0.1:46580".into();
        c.skypilot.token_file = Some("/run/credentials/x/token".into());
        c.policy.create_token = true;
        let out = host_config(&c);
        assert!(!out.contains("secretpw"), "{out}");
        assert!(
            out.contains("create_token = true"),
            "a boolean is shown: {out}"
        );
        assert!(
            out.contains("/run/credentials/x/token"),
            "a path is not a secret: {out}"
        );
    }
}
