//! The binary's command line: `check-config` and `status` on bad input.

use std::process::Output;

use crate::support::host::bin;

fn run(args: &[&str]) -> Output {
    bin().args(args).output().expect("run skypilot-host")
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn check_config_accepts_a_valid_file() {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("host.toml");
    std::fs::write(
        &f,
        "[skypilot]\napi_url = \"http://127.0.0.1:46580\"\n[cluster_manager]\npoll_interval_secs = 10\n[log]\nlevel = \"WARNING\"\n",
    )
    .unwrap();
    let o = run(&["check-config", f.to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));
}

#[test]
fn check_config_names_file_and_key_in_one_line() {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("host.toml");
    std::fs::write(&f, "[cluster_manager]\npoll_interval = 10\n").unwrap();
    let o = run(&["check-config", f.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1));
    let e = stderr(&o);
    assert_eq!(e.trim_end().lines().count(), 1, "one line expected: {e}");
    assert!(e.contains(f.to_str().unwrap()), "{e}");
    assert!(e.contains("cluster_manager.poll_interval"), "{e}");
    assert!(
        e.contains("poll_interval_secs"),
        "expected keys listed: {e}"
    );
}

#[test]
fn check_config_wrong_type_and_value() {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("host.toml");
    std::fs::write(&f, "[skypilot]\nrequest_timeout_secs = -5\n").unwrap();
    let o = run(&["check-config", f.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("skypilot.request_timeout_secs"),
        "{}",
        stderr(&o)
    );

    std::fs::write(&f, "[log]\nlevel = \"VERBOSE\"\n").unwrap();
    let o = run(&["check-config", f.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1));
    let e = stderr(&o);
    assert!(e.contains("log.level") && e.contains("VERBOSE"), "{e}");
}

#[test]
fn check_config_missing_file() {
    let o = run(&["check-config", "/nonexistent/host.toml"]);
    assert_eq!(o.status.code(), Some(1));
    let e = stderr(&o);
    assert!(
        e.contains("/nonexistent/host.toml") && e.contains("cannot read"),
        "{e}"
    );
}

#[test]
fn status_without_database_says_what_to_do() {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("host.toml");
    let db = dir.path().join("missing.db");
    std::fs::write(
        &f,
        format!("[cluster_manager]\ndatabase = {:?}\n", db.to_str().unwrap()),
    )
    .unwrap();
    let o = run(&["status", "--config", f.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1));
    let e = stderr(&o);
    assert!(
        e.contains("missing.db") && e.contains("cluster manager"),
        "{e}"
    );
    assert!(!db.exists(), "status must not create the database");
}

#[test]
fn status_refuses_a_file_that_is_not_a_database() {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("host.toml");
    let db = dir.path().join("garbage.db");
    std::fs::write(
        &db,
        "this is not sqlite, just text that is long enough to have a header",
    )
    .unwrap();
    std::fs::write(
        &f,
        format!("[cluster_manager]\ndatabase = {:?}\n", db.to_str().unwrap()),
    )
    .unwrap();
    let o = run(&["status", "--json", "--config", f.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1));
    let e = stderr(&o);
    assert!(e.contains("garbage.db"), "{e}");
    assert!(!e.contains("panicked"), "{e}");
}
