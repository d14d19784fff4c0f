//! Access to the real SkyPilot API server that `scripts/test.sh` starts.
//!
//! One server serves every test of the run, in parallel: tests name their clusters
//! uniquely (see [`unique`]) and never assume the fleet is empty.
#![cfg(feature = "real-server")]
#![allow(dead_code)]

use std::path::PathBuf;
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};

fn var(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| {
        panic!("{name} is not set: run the real-server tests through scripts/test.sh, which starts SkyPilot's API server")
    })
}

/// Base URL of the real API server.
pub fn api_url() -> String {
    var("SKYPILOT_TEST_API_URL")
}

/// The venv's Python, which has SkyPilot 0.14.1.
pub fn python() -> PathBuf {
    PathBuf::from(var("SKYPILOT_VENV")).join("bin/python")
}

/// A `Command` for SkyPilot's Python with the server's environment (HOME,
/// SKY_RUNTIME_DIR, SKYPILOT_GLOBAL_CONFIG), so it reads and writes the server's state.
pub fn sky_python() -> Command {
    let mut c = Command::new(python());
    c.env("HOME", var("SKYPILOT_TEST_HOME"))
        .env("SKY_RUNTIME_DIR", var("SKYPILOT_TEST_RUNTIME_DIR"))
        .env("SKYPILOT_GLOBAL_CONFIG", var("SKYPILOT_TEST_GLOBAL_CONFIG"))
        .env("SKYPILOT_DISABLE_USAGE_COLLECTION", "1");
    c
}

/// Runs `tests/real/skyctl.py ARGS` against the server's state; panics with its output
/// when it fails.
pub fn skyctl(args: &[&str]) {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/real/skyctl.py");
    let out = sky_python()
        .arg(script)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run skyctl.py: {e}"));
    assert!(
        out.status.success(),
        "skyctl.py {args:?} failed: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A cluster name unique to this test run and call site.
pub fn unique(prefix: &str) -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    format!(
        "{prefix}-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}
