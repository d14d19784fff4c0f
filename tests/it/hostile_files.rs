//! Files that are not what a setting expects: a FIFO never blocks a command, a device
//! or an endless file is never read whole. Each error names the file.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

fn run(args: &[&str]) -> (Output, Duration) {
    let started = Instant::now();
    let o = Command::new(env!("CARGO_BIN_EXE_skypilot-host"))
        .args(args)
        .env_remove("SKYPILOT_CONFIG_SCHEMA")
        .output()
        .unwrap();
    (o, started.elapsed())
}

fn fifo(dir: &Path, name: &str) -> PathBuf {
    let p = dir.join(name);
    let made = std::process::Command::new("mkfifo")
        .arg(&p)
        .status()
        .unwrap();
    assert!(made.success(), "mkfifo {}", p.display());
    p
}

fn refused(args: &[&str], file: &str, what: &str) {
    let (o, took) = run(args);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{args:?}: {err}");
    assert!(took < Duration::from_secs(5), "{args:?} took {took:?}");
    assert!(err.contains(file), "{args:?}: {err}");
    assert!(err.contains(what), "{args:?}: expected {what:?} in {err}");
}

#[test]
fn check_config_refuses_a_fifo_a_device_and_a_huge_file() {
    let dir = tempfile::tempdir().unwrap();
    let f = fifo(dir.path(), "host.toml");
    refused(
        &["check-config", f.to_str().unwrap()],
        f.to_str().unwrap(),
        "FIFO",
    );
    refused(
        &["check-config", "/dev/zero"],
        "/dev/zero",
        "character device",
    );
    let big = dir.path().join("big.toml");
    std::fs::write(&big, "#".repeat(2 * 1024 * 1024)).unwrap();
    refused(
        &["check-config", big.to_str().unwrap()],
        big.to_str().unwrap(),
        "larger than",
    );
}

#[test]
fn sky_config_check_refuses_a_fifo() {
    let dir = tempfile::tempdir().unwrap();
    let f = fifo(dir.path(), "config.yaml");
    refused(
        &["sky-config", "check", f.to_str().unwrap()],
        f.to_str().unwrap(),
        "FIFO",
    );
    refused(
        &["sky-config", "check", "/dev/zero"],
        "/dev/zero",
        "character device",
    );
}

#[test]
fn credentials_and_token_files_that_are_fifos_do_not_block() {
    let dir = tempfile::tempdir().unwrap();
    let aws = fifo(dir.path(), "aws");
    let token = fifo(dir.path(), "token");
    let config = dir.path().join("host.toml");
    std::fs::write(
        &config,
        format!(
            "[skypilot]\napi_url = \"http://127.0.0.1:9\"\ntoken_file = \"{}\"\n[cluster_manager]\ndatabase = \"{}\"\n[credentials]\naws = \"{}\"\n",
            token.display(),
            dir.path().join("host.db").display(),
            aws.display()
        ),
    )
    .unwrap();
    let c = config.to_str().unwrap();
    refused(
        &["credentials", "check", "--config", c],
        aws.to_str().unwrap(),
        "FIFO",
    );
    refused(
        &["cluster-manager", "--config", c],
        token.to_str().unwrap(),
        "FIFO",
    );
}
