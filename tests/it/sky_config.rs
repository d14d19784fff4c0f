//! Integration tests: sky_config (`skypilot-host sky-config render|check`).
//!
//! They validate against SkyPilot's own schema, exported by `scripts/sky-schema.py`
//! into the file named by `SKYPILOT_CONFIG_SCHEMA` (`scripts/test.sh` does this).
//! With `--features real-server`, every config rendered here is also loaded by the
//! real SkyPilot 0.14.1 config loader.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::{json, Value};

use crate::support::host::BIN;

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/sky-config")
        .join(name)
}

/// The exported schema; these tests cannot mean anything without it.
fn schema() -> PathBuf {
    match std::env::var_os("SKYPILOT_CONFIG_SCHEMA") {
        Some(p) if !p.is_empty() => PathBuf::from(p),
        _ => panic!(
            "SKYPILOT_CONFIG_SCHEMA is not set: export SkyPilot's config schema first, e.g. \
             SKYPILOT_CONFIG_SCHEMA=$(mktemp); $SKYPILOT_VENV/bin/python scripts/sky-schema.py > $SKYPILOT_CONFIG_SCHEMA \
             (scripts/test.sh does this)"
        ),
    }
}

fn run(args: &[&std::ffi::OsStr]) -> Output {
    Command::new(BIN)
        .args(args)
        .env("SKYPILOT_CONFIG_SCHEMA", schema())
        .output()
        .expect("run skypilot-host")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// Parses a rendered config (YAML whose body is JSON after `#` comment lines) both as
/// YAML and as JSON, and checks they agree.
fn read_rendered(path: &Path) -> Value {
    let s = std::fs::read_to_string(path).expect("read rendered config");
    let yaml: Value = serde_yaml_ng::from_str(&s).expect("rendered config is YAML");
    let body: String = s
        .lines()
        .filter(|l| !l.starts_with('#'))
        .collect::<Vec<_>>()
        .join("\n");
    let json: Value = serde_json::from_str(&body).expect("rendered config body is JSON");
    assert_eq!(yaml, json);
    yaml
}

struct Rendered {
    out: Output,
    config: PathBuf,
    policy: PathBuf,
    _dirs: Vec<tempfile::TempDir>,
}

fn render_file(input: &Path) -> Rendered {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("config.yaml");
    let out = run(&[
        "sky-config".as_ref(),
        "render".as_ref(),
        input.as_os_str(),
        config.as_os_str(),
    ]);
    Rendered {
        out,
        policy: dir.path().join("launch-policy.json"),
        config,
        _dirs: vec![dir],
    }
}

fn render_value(v: &Value) -> Rendered {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("config.json");
    std::fs::write(&input, serde_json::to_vec(v).unwrap()).unwrap();
    let mut r = render_file(&input);
    r._dirs.push(dir);
    r
}

fn warnings(stderr: &str) -> Vec<&str> {
    stderr
        .lines()
        .filter(|l| l.starts_with("warning: "))
        .collect()
}

#[test]
fn seed_basic_example_renders_to_an_empty_config() {
    let r = render_file(&fixture("seed-basic.json"));
    assert!(r.out.status.success(), "{}", text(&r.out.stderr));
    assert_eq!(read_rendered(&r.config), json!({}));
    let policy: Value = serde_json::from_slice(&std::fs::read(&r.policy).unwrap()).unwrap();
    assert_eq!(policy, json!({"version": 1}));
    assert!(
        warnings(&text(&r.out.stderr)).is_empty(),
        "{}",
        text(&r.out.stderr)
    );
}

#[test]
fn seed_advanced_example_yields_mapped_keys_and_warnings() {
    let r = render_file(&fixture("seed-advanced.json"));
    let stderr = text(&r.out.stderr);
    assert!(r.out.status.success(), "{stderr}");
    assert_eq!(
        read_rendered(&r.config),
        json!({"workspaces": {"default": {"gcp": {"project_id": "my-project"}}}})
    );
    let policy: Value = serde_json::from_slice(&std::fs::read(&r.policy).unwrap()).unwrap();
    assert_eq!(
        policy,
        json!({
            "version": 1,
            "clouds": {"aws": {"region": "us-west-2"}, "gcp": {"zone": "us-central1-a"}},
            "use_spot": true,
            "max_hourly_price": 1.0
        })
    );
    let w = warnings(&stderr);
    let expected = [
        (
            "cloud.aws.region",
            "services.skypilot.cluster.defaultRegion",
        ),
        (
            "cloud.gcp.project",
            "services.skypilot.config.workspaces.default.gcp.project_id",
        ),
        ("cloud.gcp.zone", "services.skypilot.cluster.defaultZone"),
        ("spot.enabled", "services.skypilot.cluster.useSpot"),
        ("spot.max_price", "services.skypilot.cluster.maxHourlyPrice"),
    ];
    assert_eq!(w.len(), expected.len(), "{stderr}");
    for (line, (key, option)) in w.iter().zip(expected) {
        assert!(
            line.starts_with(&format!(
                "warning: `services.skypilot.config.{key}` is not a SkyPilot key;"
            )),
            "{line}"
        );
        assert!(
            line.ends_with(&format!("Set `{option}` instead.")),
            "{line}"
        );
    }
}

#[test]
fn other_keys_pass_through_unchanged() {
    let input: Value =
        serde_json::from_slice(&std::fs::read(fixture("passthrough.json")).unwrap()).unwrap();
    let r = render_file(&fixture("passthrough.json"));
    assert!(r.out.status.success(), "{}", text(&r.out.stderr));
    assert_eq!(read_rendered(&r.config), input);
    assert!(warnings(&text(&r.out.stderr)).is_empty());
}

#[test]
fn render_fails_on_an_unknown_key_and_writes_nothing() {
    let r = render_value(&json!({"aws": {"region": "us-west-2"}}));
    let stderr = text(&r.out.stderr);
    assert_eq!(r.out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("  `aws.region`: not a SkyPilot key; region is a task resource: set `services.skypilot.cluster.defaultRegion`"),
        "{stderr}"
    );
    assert!(
        stderr.contains("1 problem (SkyPilot 0.14.1's config schema"),
        "{stderr}"
    );
    assert!(!r.config.exists());
    assert!(!r.policy.exists());
}

#[test]
fn render_refuses_the_db_key_naming_the_uri_file_option_and_never_the_uri() {
    let secret = "postgresql+psycopg2://skypilot:hunter2-in-config@db.example.com/skypilot";
    let r = render_value(&json!({"db": secret, "allowed_clouds": ["aws"]}));
    let stderr = text(&r.out.stderr);
    assert_eq!(r.out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("`db`"), "{stderr}");
    assert!(
        stderr.contains("services.skypilot.database.uriFile"),
        "{stderr}"
    );
    assert!(
        !stderr.contains("hunter2"),
        "the URI is never printed: {stderr}"
    );
    assert!(!text(&r.out.stdout).contains("hunter2"));
    assert!(!r.config.exists());
    assert!(!r.policy.exists());
}

#[test]
fn render_fails_on_a_wrong_type_naming_path_value_and_type() {
    let r = render_value(&json!({"api_server": {"requests_retention_hours": "24h"}}));
    let stderr = text(&r.out.stderr);
    assert_eq!(r.out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("`api_server.requests_retention_hours`: \"24h\" (a string) is not allowed: expected integer"),
        "{stderr}"
    );
    assert!(!r.config.exists());
}

#[test]
fn render_rejects_unmapped_keys_under_the_seed_sections() {
    let r = render_value(&json!({"cloud": {"aws": {"region": "us-west-2", "vpc_name": "v"}}}));
    let stderr = text(&r.out.stderr);
    assert_eq!(r.out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("`cloud.aws.vpc_name`: not mapped:")
            && stderr.contains("e.g. `aws.vpc_name`"),
        "{stderr}"
    );
    let r = render_value(&json!({"cloud": {"awz": {"region": "x"}}}));
    let stderr = text(&r.out.stderr);
    assert!(
        stderr.contains("`cloud.awz`: unknown cloud \"awz\""),
        "{stderr}"
    );
    let r = render_value(&json!({"spot": {"enabled": "yes"}}));
    let stderr = text(&r.out.stderr);
    assert!(
        stderr.contains("`spot.enabled`: \"yes\" (a string) is not allowed: expected a boolean"),
        "{stderr}"
    );
}

#[test]
fn render_reports_invalid_json_with_its_position() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("config.json");
    std::fs::write(&input, "{\n  \"aws\": {,\n}").unwrap();
    let out = run(&[
        "sky-config".as_ref(),
        "render".as_ref(),
        input.as_os_str(),
        dir.path().join("c.yaml").as_os_str(),
    ]);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr.contains("is not valid JSON at line 2, column 11"),
        "{stderr}"
    );
}

#[test]
fn render_without_a_schema_says_how_to_get_one() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(BIN)
        .args(["sky-config", "render"])
        .arg(fixture("seed-basic.json"))
        .arg(dir.path().join("c.yaml"))
        .env_remove("SKYPILOT_CONFIG_SCHEMA")
        .output()
        .unwrap();
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr.contains("no SkyPilot config schema")
            && stderr.contains("SKYPILOT_CONFIG_SCHEMA")
            && stderr.contains("scripts/sky-schema.py"),
        "{stderr}"
    );
}

#[test]
fn render_with_options_writes_the_policy_where_asked() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("sky.yaml");
    let policy = dir.path().join("elsewhere.json");
    let r = skypilot_host::sky_config::render_with(
        &fixture("seed-advanced.json"),
        &out,
        &skypilot_host::sky_config::RenderOptions {
            schema: Some(schema()),
            policy_out: Some(policy.clone()),
            launch_defaults: None,
        },
    )
    .unwrap();
    assert_eq!(r.policy_path, policy);
    assert!(policy.exists());
    assert!(!dir.path().join("launch-policy.json").exists());
    assert_eq!(r.mapped.warnings.len(), 5);
}

#[test]
fn check_accepts_a_valid_yaml_config_and_the_rendered_ones() {
    let out = run(&[
        "sky-config".as_ref(),
        "check".as_ref(),
        fixture("valid.yaml").as_os_str(),
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stdout).ends_with("valid.yaml: ok\n"));
    for f in ["seed-basic.json", "seed-advanced.json", "passthrough.json"] {
        let r = render_file(&fixture(f));
        assert!(r.out.status.success(), "{f}: {}", text(&r.out.stderr));
        let out = run(&[
            "sky-config".as_ref(),
            "check".as_ref(),
            r.config.as_os_str(),
        ]);
        assert!(out.status.success(), "{f}: {}", text(&out.stderr));
    }
}

#[test]
fn check_names_unknown_keys_with_hint_and_suggestion() {
    let f = fixture("unknown-key.yaml");
    let out = run(&["sky-config".as_ref(), "check".as_ref(), f.as_os_str()]);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains(&format!("{}: 2 problems", f.display())),
        "{stderr}"
    );
    assert!(
        stderr.contains("`aws.region`: not a SkyPilot key; region is a task resource: set `services.skypilot.cluster.defaultRegion`"),
        "{stderr}"
    );
    assert!(
        stderr.contains("`aws.vpc_nam`: not a SkyPilot key; allowed under `aws`: ")
            && stderr.contains("(did you mean `vpc_name`?)"),
        "{stderr}"
    );
}

#[test]
fn check_names_wrong_types() {
    let out = run(&[
        "sky-config".as_ref(),
        "check".as_ref(),
        fixture("wrong-type.yaml").as_os_str(),
    ]);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("`allowed_clouds`: \"aws\" (a string) is not allowed: expected array"),
        "{stderr}"
    );
    assert!(
        stderr.contains("`api_server.requests_retention_hours`: \"24h\" (a string) is not allowed: expected integer"),
        "{stderr}"
    );
}

#[test]
fn check_gives_the_seed_hint_for_a_copied_seed_config() {
    let out = run(&[
        "sky-config".as_ref(),
        "check".as_ref(),
        fixture("seed-config.yaml").as_os_str(),
    ]);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("`cloud`: not a SkyPilot key; it is the seed's compatibility layer"),
        "{stderr}"
    );
    assert!(stderr.contains("`spot`: not a SkyPilot key; spot is a task resource (`use_spot`): set `services.skypilot.cluster.useSpot`"), "{stderr}");
}

#[test]
fn check_never_echoes_a_token() {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("config.yaml");
    std::fs::write(
        &f,
        "api_server:\n  service_account_token: NOT-sky-prefixed-SENTINEL-4242\ndb: 5\n",
    )
    .unwrap();
    let out = run(&["sky-config".as_ref(), "check".as_ref(), f.as_os_str()]);
    let all = text(&out.stdout) + &text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{all}");
    assert!(
        all.contains("`api_server.service_account_token`: the value (not shown"),
        "{all}"
    );
    assert!(!all.contains("SENTINEL-4242"), "{all}");
}

#[test]
fn check_reports_yaml_syntax_errors_with_position() {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("config.yaml");
    std::fs::write(&f, "aws:\n  vpc_name: [a\n").unwrap();
    let out = run(&["sky-config".as_ref(), "check".as_ref(), f.as_os_str()]);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr.contains("not valid YAML at line"), "{stderr}");
}

/// The real SkyPilot 0.14.1 loads what we render, reads the same values, and rejects
/// what we reject.
#[cfg(feature = "real-server")]
mod real {
    use super::*;

    /// Loads `config` with SkyPilot's own loader in server mode (strict schema, as the
    /// API server after loading its plugins) and prints the loaded config as JSON.
    const LOADER: &str = r#"
import json, os, sys
os.environ['IS_SKYPILOT_SERVER'] = '1'
try:
    from sky.server import plugins
    plugins._plugins_loaded = True
    from sky import skypilot_config
    skypilot_config.reload_config()
    loaded = dict(skypilot_config.to_dict())
except Exception as e:
    print(type(e).__name__ + ': ' + str(e), file=sys.stderr)
    sys.exit(3)
print(json.dumps(loaded))
"#;

    fn sky_load(config: &Path) -> Output {
        let home = tempfile::tempdir().unwrap();
        Command::new(crate::support::real::python())
            .args(["-c", LOADER])
            .env("HOME", home.path())
            .env("SKY_RUNTIME_DIR", home.path())
            .env("SKYPILOT_GLOBAL_CONFIG", config)
            .env("SKYPILOT_DISABLE_USAGE_COLLECTION", "1")
            .output()
            .expect("run SkyPilot's python")
    }

    #[test]
    fn skypilot_loads_every_rendered_config_with_the_same_values() {
        for f in ["seed-basic.json", "seed-advanced.json", "passthrough.json"] {
            let r = render_file(&fixture(f));
            assert!(r.out.status.success(), "{f}: {}", text(&r.out.stderr));
            let out = sky_load(&r.config);
            assert!(
                out.status.success(),
                "{f}: SkyPilot refused the rendered config: {}",
                text(&out.stderr)
            );
            let loaded: Value = serde_json::from_slice(&out.stdout)
                .unwrap_or_else(|e| panic!("{f}: {e}: {}", text(&out.stdout)));
            assert_eq!(loaded, read_rendered(&r.config), "{f}");
        }
    }

    #[test]
    fn a_bad_config_is_rejected_by_both_and_we_name_the_key_path() {
        let cases = [
            (
                "unknown-key.yaml",
                "`aws.region`",
                "unsupported field 'region'",
            ),
            // SkyPilot stops at the first problem; we report both.
            ("wrong-type.yaml", "`allowed_clouds`", "$.allowed_clouds"),
            ("seed-config.yaml", "`cloud`", "unsupported field 'cloud'"),
        ];
        for (f, ours, theirs) in cases {
            let file = fixture(f);
            let out = run(&["sky-config".as_ref(), "check".as_ref(), file.as_os_str()]);
            assert_eq!(out.status.code(), Some(1), "{f}");
            assert!(
                text(&out.stderr).contains(ours),
                "{f}: {}",
                text(&out.stderr)
            );
            let sky = sky_load(&file);
            let err = text(&sky.stderr);
            assert_eq!(
                sky.status.code(),
                Some(3),
                "{f}: SkyPilot accepted it: {err}"
            );
            assert!(err.contains("InvalidSkyPilotConfigError"), "{f}: {err}");
            assert!(err.contains(theirs), "{f}: {err}");
        }
    }

    #[test]
    fn the_schema_in_use_is_the_one_this_skypilot_exports() {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/sky-schema.py");
        let out = Command::new(crate::support::real::python())
            .arg(script)
            .env("HOME", tempfile::tempdir().unwrap().path())
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", text(&out.stderr));
        let exported: Value = serde_json::from_slice(&out.stdout).unwrap();
        let in_use: Value = serde_json::from_slice(&std::fs::read(schema()).unwrap()).unwrap();
        assert_eq!(exported, in_use);
        assert_eq!(
            exported["$comment"],
            json!("SkyPilot 0.14.1 config.yaml schema (server mode)")
        );
    }
}
