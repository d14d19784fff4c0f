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

/// `audit` prints newest first, with UTC date-times and ages; `--json` keeps Unix seconds.
#[test]
fn audit_prints_times_for_people_newest_first() {
    use skypilot_host::store::{AuditAction, AuditEntry, AuditOutcome, Store};
    use skypilot_host::time::{Clock, SystemClock};
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("host.db");
    let cfg = dir.path().join("host.toml");
    std::fs::write(
        &cfg,
        format!("[cluster_manager]\ndatabase = {:?}\n", db.to_str().unwrap()),
    )
    .unwrap();
    let store = Store::open(&db).unwrap();
    let now = SystemClock.now();
    for (ago, cluster) in [(7200.0, "older"), (180.0, "newer")] {
        store
            .append_audit(&AuditEntry {
                at: skypilot_host::time::Timestamp::from_secs_f64(
                    now.secs_since(skypilot_host::time::Timestamp::from_secs(0)) - ago,
                )
                .floor(),
                actor: "autostop".into(),
                action: AuditAction::Stop,
                cluster: Some(cluster.into()),
                outcome: AuditOutcome::Ok,
                detail: None,
            })
            .unwrap();
    }
    drop(store);
    let o = run(&["audit", "--config", cfg.to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));
    let text = String::from_utf8_lossy(&o.stdout).into_owned();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 2, "{text}");
    assert!(
        lines[0].contains("newer") && lines[1].contains("older"),
        "{text}"
    );
    assert!(lines[0].contains(" UTC, 3m ago  autostop  stop"), "{text}");
    assert!(lines[1].contains(" UTC, 2h ago"), "{text}");
    let year = &lines[0][..4];
    assert!(year.starts_with("20"), "a date first: {text}");
    let o = run(&["audit", "--json", "--config", cfg.to_str().unwrap()]);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert!(v[0]["at"].is_number(), "{v:#}");
}
