//! Regression tests for what fuzzing the parsers of outside input found (see
//! docs/reliability.md, "Fuzzing"). Each test replays the finding through the command
//! that reads such a file.
//!
//! Finding 1: YAML with deeply nested flow mappings (`{a: {a: {a: …`) takes time that
//! grows at least with the square of the depth: the YAML scanner re-examines every open
//! level at each token, and the whole document is scanned before the nesting limit of
//! the deserializer applies. 512 KiB of it kept `credentials check` (run as root before
//! the API server starts) busy for 148 s and `sky-config check` for 200 s with the
//! release build; the 8 MiB that the credential check reads would take hours. The file
//! is refused in the end ("recursion limit exceeded"), so a fix only has to refuse it
//! before the scan.
//!
//! These tests check that the command answers at all, not how fast: a correct answer
//! takes milliseconds, and the deadline is a thousand times that. A command still
//! running at the deadline is killed.

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_skypilot-host");

/// How long a command may take before it counts as hung.
const DEADLINE: Duration = Duration::from_secs(10);

/// 512 KiB of flow mappings nested 131,072 deep, unclosed.
fn nested_flow_mappings() -> String {
    "{a: ".repeat(128 * 1024)
}

/// Runs `cmd` to its end, or kills it at `DEADLINE` and fails the test.
fn run_with_deadline(cmd: &mut Command, what: &str) -> Output {
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let started = Instant::now();
    while child.try_wait().unwrap().is_none() {
        if started.elapsed() > DEADLINE {
            child.kill().unwrap();
            child.wait().unwrap();
            panic!("{what}: still running after {DEADLINE:?} (killed)");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    child.wait_with_output().unwrap()
}

fn write_private(path: &Path, text: &str) {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::write(path, text).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).unwrap();
}

#[test]
fn credentials_check_refuses_deeply_nested_kubeconfig_in_time() {
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = dir.path().join("kubeconfig");
    write_private(&kubeconfig, &nested_flow_mappings());
    let config = dir.path().join("host.toml");
    std::fs::write(
        &config,
        format!(
            "[credentials]\nkubernetes = {:?}\n",
            kubeconfig.to_str().unwrap()
        ),
    )
    .unwrap();
    let out = run_with_deadline(
        Command::new(BIN)
            .args(["credentials", "check", "--config"])
            .arg(&config),
        "credentials check of a kubeconfig nested 131,072 deep",
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "stderr: {stderr}");
    assert!(stderr.contains("kubernetes"), "stderr: {stderr}");
    assert!(
        stderr.contains(kubeconfig.to_str().unwrap()),
        "stderr: {stderr}"
    );
}

#[test]
fn sky_config_check_refuses_deeply_nested_yaml_in_time() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("config.yaml");
    std::fs::write(&file, nested_flow_mappings()).unwrap();
    // A schema that accepts any object: the file must fail on its YAML alone.
    let schema = dir.path().join("schema.json");
    std::fs::write(&schema, r#"{"type": "object", "properties": {}}"#).unwrap();
    let out = run_with_deadline(
        Command::new(BIN)
            .args(["sky-config", "check", "--schema"])
            .arg(&schema)
            .arg(&file),
        "sky-config check of YAML nested 131,072 deep",
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "stderr: {stderr}");
    assert!(stderr.contains(file.to_str().unwrap()), "stderr: {stderr}");
}
