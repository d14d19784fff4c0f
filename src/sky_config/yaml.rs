//! YAML in and out.
//!
//! Output is JSON-compatible YAML (flow style, every string double-quoted) written
//! here, because SkyPilot reads its config with PyYAML, a YAML 1.1 loader: plain
//! scalars such as `on`, `no`, `1:30` or `2024-01-01` would change type there, and a
//! float without a dot (`1e300`) would become a string. Double-quoted strings, floats
//! always with a dot and a signed exponent, and escapes for every character PyYAML
//! refuses to read raw keep the value identical in SkyPilot.
//!
//! Input (for `sky-config check`) is parsed with `serde_yaml_ng`.
//!
//! The writer is ours on purpose, not a YAML crate's: what it must match is PyYAML's
//! reading, and no Rust YAML emitter promises that (they emit YAML 1.2 plain scalars).

use serde_json::Value;

/// The deepest nesting of flow collections (`{…}`, `[…]`) read: far beyond any config,
/// and the deserializer's own limit (128) is lower still.
pub(crate) const MAX_FLOW_DEPTH: usize = 256;

/// Refuses YAML whose flow collections nest deeper than `max`, before a YAML scanner
/// sees it: the scanner's time grows faster than the square of that depth, so a small
/// file of `{a: {a: …` would keep a check busy for minutes before being refused. Every
/// bracket counts, quoted or not: guessing where a quote starts, as the scanner would,
/// is how a check like this gets switched off; no config holds hundreds of unbalanced
/// brackets.
pub(crate) fn check_flow_depth(text: &str, max: usize) -> Result<(), String> {
    let mut depth = 0usize;
    let (mut line, mut col) = (1usize, 0usize);
    for c in text.chars() {
        col += 1;
        match c {
            '\n' => {
                line += 1;
                col = 0;
            }
            '{' | '[' => {
                depth += 1;
                if depth > max {
                    return Err(format!(
                        "not valid YAML at line {line}, column {col}: collections nested more than {max} levels deep"
                    ));
                }
            }
            '}' | ']' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    Ok(())
}

/// Parses YAML (or JSON) into a JSON value; the error names line and column. Merge
/// keys (`<<: *anchor`) are applied, as PyYAML does.
pub fn parse(text: &str) -> Result<Value, String> {
    check_flow_depth(text, MAX_FLOW_DEPTH)?;
    let mut v: serde_yaml_ng::Value =
        serde_yaml_ng::from_str(text).map_err(|e| match e.location() {
            Some(l) => format!(
                "not valid YAML at line {}, column {}: {e}",
                l.line(),
                l.column()
            ),
            None => format!("not valid YAML: {e}"),
        })?;
    v.apply_merge()
        .map_err(|e| format!("not valid YAML: merge key: {e}"))?;
    serde_json::to_value(&v).map_err(|e| format!("not a config SkyPilot can read: {e}"))
}

/// Renders `value` as YAML that PyYAML loads back to the same value, after `header`
/// as `#` comment lines.
pub(crate) fn to_yaml(value: &Value, header: &str) -> String {
    let mut out = String::new();
    for line in header.lines() {
        out.push_str("# ");
        out.push_str(line);
        out.push('\n');
    }
    write_value(&mut out, value, 0);
    out.push('\n');
    out
}

fn indent(out: &mut String, level: usize) {
    for _ in 0..level {
        out.push_str("  ");
    }
}

fn write_value(out: &mut String, value: &Value, level: usize) {
    match value {
        Value::Null => out.push_str("null"),
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::Number(n) => {
            if n.is_i64() || n.is_u64() {
                out.push_str(&n.to_string());
            } else {
                out.push_str(&format_float(n.as_f64().unwrap_or(0.0)));
            }
        }
        Value::String(s) => write_string(out, s),
        Value::Array(items) => {
            if items.is_empty() {
                out.push_str("[]");
                return;
            }
            out.push_str("[\n");
            for (i, item) in items.iter().enumerate() {
                indent(out, level + 1);
                write_value(out, item, level + 1);
                if i + 1 < items.len() {
                    out.push(',');
                }
                out.push('\n');
            }
            indent(out, level);
            out.push(']');
        }
        Value::Object(map) => {
            if map.is_empty() {
                out.push_str("{}");
                return;
            }
            out.push_str("{\n");
            let n = map.len();
            for (i, (k, v)) in map.iter().enumerate() {
                indent(out, level + 1);
                write_string(out, k);
                out.push_str(": ");
                write_value(out, v, level + 1);
                if i + 1 < n {
                    out.push(',');
                }
                out.push('\n');
            }
            indent(out, level);
            out.push('}');
        }
    }
}

/// A float as PyYAML's YAML 1.1 float pattern wants it: a dot in the mantissa and a
/// sign on the exponent (`1.0e+300`, `2.5e-07`, `0.1`).
pub(crate) fn format_float(f: f64) -> String {
    if !f.is_finite() {
        // serde_json never holds these; keep the output loadable anyway.
        return if f.is_nan() {
            ".nan".to_string()
        } else if f > 0.0 {
            ".inf".to_string()
        } else {
            "-.inf".to_string()
        };
    }
    let s = format!("{f:?}");
    match s.split_once('e') {
        Some((mantissa, exp)) => {
            let mantissa = if mantissa.contains('.') {
                mantissa.to_string()
            } else {
                format!("{mantissa}.0")
            };
            let exp = if exp.starts_with('-') || exp.starts_with('+') {
                exp.to_string()
            } else {
                format!("+{exp}")
            };
            format!("{mantissa}e{exp}")
        }
        None if s.contains('.') => s,
        None => format!("{s}.0"),
    }
}

/// Whether PyYAML's reader accepts `c` raw in a stream (its `NON_PRINTABLE` set).
fn pyyaml_printable(c: char) -> bool {
    matches!(c,
        '\u{9}' | '\u{A}' | '\u{D}' | '\u{20}'..='\u{7E}' | '\u{85}'
        | '\u{A0}'..='\u{D7FF}' | '\u{E000}'..='\u{FFFD}' | '\u{10000}'..='\u{10FFFF}')
}

fn write_string(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            // U+0085 is printable for PyYAML but a line break inside a scalar.
            '\u{85}' => out.push_str("\\u0085"),
            // A byte-order mark is printable but easy to mistake for a stream marker.
            '\u{feff}' => out.push_str("\\ufeff"),
            c if !pyyaml_printable(c) || (c as u32) < 0x20 => {
                out.push_str(&format!("\\u{:04x}", c as u32));
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn floats_keep_a_dot_and_a_signed_exponent() {
        assert_eq!(format_float(1.0), "1.0");
        assert_eq!(format_float(0.1), "0.1");
        assert_eq!(format_float(1e300), "1.0e+300");
        assert_eq!(format_float(2.5e-7), "2.5e-7");
        assert_eq!(format_float(-3e20), "-3.0e+20");
    }

    #[test]
    fn strings_are_quoted_and_escaped() {
        let v = json!({"a": "on", "b": "1:30", "c": "x\"y\\z\n", "d": "\u{7f}\u{85}\u{feff}é"});
        let y = to_yaml(&v, "h");
        assert!(y.starts_with("# h\n{\n"), "{y}");
        assert!(y.contains("\"a\": \"on\""), "{y}");
        assert!(y.contains("\"b\": \"1:30\""), "{y}");
        assert!(y.contains(r#""c": "x\"y\\z\n""#), "{y}");
        assert!(y.contains(r#""d": "\u007f\u0085\ufeffé""#), "{y}");
    }

    #[test]
    fn output_parses_back_to_the_same_value() {
        let v = json!({
            "s": "on", "n": 3, "f": 1.5, "big": 1e300, "neg": -7, "t": true, "z": null,
            "l": [1, "two", {"three": [3.0]}], "e": {}, "ea": [],
            "u": "tab\tand\u{1}ctrl ✓ 🚀"
        });
        let y = to_yaml(&v, "header line 1\nheader line 2");
        // YAML (serde_yaml_ng) and, since it is JSON after the comments, JSON.
        assert_eq!(parse(&y).unwrap(), v);
        let json_part: String = y
            .lines()
            .filter(|l| !l.starts_with('#'))
            .collect::<Vec<_>>()
            .join("\n");
        assert_eq!(serde_json::from_str::<Value>(&json_part).unwrap(), v);
    }

    #[test]
    fn merge_keys_are_applied() {
        let v = parse("base: &b {cpus: 4+}\njobs:\n  controller:\n    resources:\n      <<: *b\n      memory: 8+\n").unwrap();
        assert_eq!(
            v["jobs"]["controller"]["resources"],
            json!({"cpus": "4+", "memory": "8+"})
        );
    }

    #[test]
    fn parse_errors_name_the_line() {
        let e = parse("a: 1\nb: [\n").unwrap_err();
        assert!(e.contains("line"), "{e}");
    }

    #[test]
    fn deep_flow_nesting_is_refused_before_scanning() {
        let deep = "{a: ".repeat(128 * 1024);
        let started = std::time::Instant::now();
        let e = parse(&deep).unwrap_err();
        assert!(started.elapsed() < std::time::Duration::from_secs(5));
        assert!(e.contains("nested more than 256 levels"), "{e}");
        assert!(e.contains("line 1, column 1025"), "{e}");
        // Brackets count wherever they are; ordinary nesting and balanced text parse.
        let v = parse("a: \"{[x]}\"\nc: {d: [1, 2]}\n").unwrap();
        assert_eq!(v["c"]["d"][1], 2);
        assert!(parse(&format!("a: '{}'", "{".repeat(300))).is_err());
        assert!(check_flow_depth(&"[".repeat(256), 256).is_ok());
        assert!(check_flow_depth(&"[".repeat(257), 256).is_err());
    }
}
