//! How configuration values are shown in messages: short, and never a secret.

use serde_json::Value;

/// Keys whose values must never be echoed (tokens, passwords, database URLs).
fn is_sensitive(key: &str) -> bool {
    key.split(['.', '[']).any(|seg| {
        let seg = seg.to_ascii_lowercase();
        seg == "db"
            || seg.contains("token")
            || seg.contains("password")
            || seg.contains("secret")
            || seg.contains("credential")
    })
}

/// A short rendering of an offending value for messages.
pub(crate) fn show_value(key: &str, v: &Value) -> String {
    if is_sensitive(key) {
        return "the value (not shown: it may be a secret)".to_string();
    }
    let s = serde_json::to_string(v).unwrap_or_else(|_| "?".to_string());
    let kind = match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(n) if n.is_f64() => "a number",
        Value::Number(_) => "an integer",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "an attribute set",
    };
    let s = if s.chars().count() > 60 {
        let cut: String = s.chars().take(57).collect();
        format!("{cut}…")
    } else {
        s
    };
    format!("{s} ({kind})")
}
