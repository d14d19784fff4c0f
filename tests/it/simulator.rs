//! The simulator's own controls: faults, delays, refused connections, how actions end,
//! the request log, large fleets and service-account tokens. These are tests of the test
//! double, with no real-server counterpart; the cases it shares with the real server are
//! in `contract.rs`.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::support::api::{
    api_get, client, http, is_uuid_like, post_op, return_value, run_op, start_sim, status_of,
};
use crate::support::sim::{Fault, Op, Outcome, SimCluster, SimStatus, Simulator};

use skypilot_host::cluster::ClusterStatus;
use skypilot_host::config::SkypilotConfig;
use skypilot_host::skypilot::{Client, RefreshMode};

/// The crate's client for the simulator.
fn client_for(s: &Simulator, timeout_secs: u64, attempts: u32) -> Client {
    client(&s.url(), timeout_secs, attempts)
}

#[tokio::test]
async fn stop_changes_state_and_is_logged() {
    let s = start_sim().await;
    s.upsert_cluster(SimCluster::new("a").autostop(30, false));
    let (code, payload) = run_op(&s.url(), "stop", json!({"cluster_name": "a"})).await;
    assert_eq!(code, StatusCode::OK);
    assert_eq!(return_value(&payload), Value::Null);
    let c = s.cluster("a").unwrap_or_else(|| panic!("a vanished"));
    assert_eq!(c.status, SimStatus::Stopped);
    assert!(c.usage_intervals.iter().all(|(_, e)| e.is_some()));
    let log = s.requests_for(Op::Stop);
    assert_eq!(log.len(), 1);
    assert_eq!(log[0].body["cluster_name"], "a");
    assert_eq!(log[0].api_version_header.as_deref(), Some("62"));
}

#[tokio::test]
async fn down_removes_and_keeps_cost_history() {
    let s = start_sim().await;
    s.upsert_cluster(SimCluster::new("gone").launched_at(s.now() - 7200));
    let client = client_for(&s, 10, 1);
    client
        .down("gone")
        .await
        .unwrap_or_else(|e| panic!("down: {e}"));
    assert!(s.cluster("gone").is_none());
    let rows = client
        .cost_report(1)
        .await
        .unwrap_or_else(|e| panic!("cost_report: {e}"));
    let row = rows
        .iter()
        .find(|r| r.name == "gone")
        .unwrap_or_else(|| panic!("no cost row: {rows:?}"));
    assert_eq!(row.status, None);
    let cost = row.total_cost.unwrap_or(-1.0);
    // Two hours of one m6i.large at 0.096/h.
    assert!((cost - 0.192).abs() < 0.01, "total_cost {cost}");
}

#[tokio::test]
async fn autostop_sets_minutes_and_down_and_cancel_resets() {
    let s = start_sim().await;
    s.upsert_cluster(SimCluster::new("idle"));
    let client = client_for(&s, 10, 1);
    client
        .autostop("idle", 10, true)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let c = s.cluster("idle").unwrap_or_else(|| panic!("idle vanished"));
    assert_eq!((c.autostop, c.to_down), (10, true));
    client
        .autostop("idle", -1, false)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let c = s.cluster("idle").unwrap_or_else(|| panic!("idle vanished"));
    assert_eq!((c.autostop, c.to_down), (-1, false));
    let bodies: Vec<Value> = s
        .requests_for(Op::Autostop)
        .into_iter()
        .map(|r| r.body)
        .collect();
    assert_eq!(bodies.len(), 2);
    assert_eq!(bodies[0]["idle_minutes"], 10);
    assert_eq!(bodies[0]["down"], true);
    assert_eq!(bodies[1]["idle_minutes"], -1);
}

#[tokio::test]
async fn autostop_on_stopped_cluster_is_cluster_not_up() {
    let s = start_sim().await;
    s.upsert_cluster(SimCluster::new("zz").status(SimStatus::Stopped));
    let err = match client_for(&s, 10, 1).autostop("zz", 5, false).await {
        Ok(()) => panic!("autostop on STOPPED succeeded"),
        Err(e) => e,
    };
    assert_eq!(err.sky_error_type(), Some("ClusterNotUpError"));
    assert!(err.to_string().contains("(status: STOPPED)"), "{err}");
}

#[tokio::test]
async fn configured_failure_keeps_the_cluster() {
    let s = start_sim().await;
    s.upsert_cluster(SimCluster::new("locked"));
    s.upsert_cluster(SimCluster::new("free"));
    s.set_outcome_for(
        Op::Stop,
        "locked",
        Outcome::fail("CloudUserIdentityError", "Failed to get AWS user identity"),
    );
    let client = client_for(&s, 10, 1);
    let err = match client.stop("locked").await {
        Ok(()) => panic!("stop succeeded despite the configured failure"),
        Err(e) => e,
    };
    assert_eq!(err.sky_error_type(), Some("CloudUserIdentityError"));
    assert!(err.to_string().contains("Failed to get AWS user identity"));
    assert_eq!(s.cluster("locked").map(|c| c.status), Some(SimStatus::Up));
    client
        .stop("free")
        .await
        .unwrap_or_else(|e| panic!("stop free: {e}"));
    assert_eq!(
        s.cluster("free").map(|c| c.status),
        Some(SimStatus::Stopped)
    );
}

#[tokio::test]
async fn start_brings_a_stopped_cluster_up() {
    let s = start_sim().await;
    s.upsert_cluster(SimCluster::new("sleepy").status(SimStatus::Stopped));
    client_for(&s, 10, 1)
        .start("sleepy")
        .await
        .unwrap_or_else(|e| panic!("start: {e}"));
    let c = s.cluster("sleepy").unwrap_or_else(|| panic!("vanished"));
    assert_eq!(c.status, SimStatus::Up);
    assert_eq!(c.usage_intervals.last().map(|i| i.1), Some(None));
}

#[tokio::test]
async fn refused_connections_then_same_port_again() {
    let s = start_sim().await;
    s.upsert_cluster(SimCluster::new("one"));
    let client = client_for(&s, 5, 1);
    assert_eq!(
        client.status(RefreshMode::None).await.map(|c| c.len()).ok(),
        Some(1)
    );
    s.stop_listening().await;
    assert!(!s.is_listening());
    let err = match client.status(RefreshMode::None).await {
        Ok(c) => panic!("status answered while not listening: {c:?}"),
        Err(e) => e,
    };
    assert!(err.is_unreachable(), "{err}");
    let raw = tokio::net::TcpStream::connect(s.addr()).await;
    assert!(raw.is_err(), "connect should be refused");
    let port = s.addr().port();
    s.resume_listening()
        .await
        .unwrap_or_else(|e| panic!("resume: {e}"));
    assert_eq!(s.addr().port(), port);
    assert_eq!(
        client.status(RefreshMode::None).await.map(|c| c.len()).ok(),
        Some(1)
    );
}

#[tokio::test]
async fn hang_times_out_and_clearing_recovers() {
    let s = start_sim().await;
    s.set_fault(Fault::Hang);
    let client = client_for(&s, 1, 1);
    let started = std::time::Instant::now();
    let err = match client.health().await {
        Ok(h) => panic!("hanging server answered: {h:?}"),
        Err(e) => e,
    };
    assert!(matches!(err.kind().as_str(), "timeout"), "{err}");
    assert!(started.elapsed() >= Duration::from_millis(900));
    s.clear_faults();
    client.health().await.unwrap_or_else(|e| panic!("{e}"));
}

#[tokio::test]
async fn stop_listening_drops_hanging_requests() {
    let s = start_sim().await;
    s.set_fault(Fault::Hang);
    let url = s.url();
    let pending = tokio::spawn(async move {
        http()
            .get(format!("{url}/api/health"))
            .send()
            .await
            .map(|r| r.status())
    });
    tokio::time::sleep(Duration::from_millis(200)).await;
    s.stop_listening().await;
    let outcome = tokio::time::timeout(Duration::from_secs(5), pending).await;
    match outcome {
        Ok(Ok(res)) => assert!(res.is_err(), "hanging request got an answer: {res:?}"),
        other => panic!("hanging request was not dropped: {other:?}"),
    }
}

#[tokio::test]
async fn html_500_is_an_http_error() {
    let s = start_sim().await;
    s.set_fault_on("/api/get", Fault::Http500Html);
    let resp = http()
        .get(format!("{}/api/get?request_id=x", s.url()))
        .send()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(resp.status(), StatusCode::INTERNAL_SERVER_ERROR);
    assert!(resp
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("text/html")));
    let err = match client_for(&s, 5, 1).status(RefreshMode::None).await {
        Ok(c) => panic!("status succeeded through an HTML 500: {c:?}"),
        Err(e) => e,
    };
    assert_eq!(err.kind(), "http_500", "{err}");
    // Health is not affected by a fault scoped to /api/get.
    client_for(&s, 5, 1)
        .health()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
}

#[tokio::test]
async fn malformed_return_value_and_missing_field() {
    let s = start_sim().await;
    s.upsert_cluster(SimCluster::new("m"));
    let client = client_for(&s, 5, 1);
    s.set_fault_times(Fault::MalformedReturnValue, 1);
    let err = match client.status(RefreshMode::None).await {
        Ok(c) => panic!("malformed return_value accepted: {c:?}"),
        Err(e) => e,
    };
    assert_eq!(err.kind(), "malformed", "{err}");
    // Counted faults wear off.
    assert_eq!(
        client.status(RefreshMode::None).await.map(|c| c.len()).ok(),
        Some(1)
    );
    s.set_fault(Fault::MissingField("cluster_hash".into()));
    let records = status_of(&s.url(), &["m"]).await;
    assert!(records[0].get("cluster_hash").is_none());
    let err = match client.status(RefreshMode::None).await {
        Ok(c) => panic!("record without cluster_hash accepted: {c:?}"),
        Err(e) => e,
    };
    assert!(err.to_string().contains("cluster_hash"), "{err}");
}

#[tokio::test]
async fn counted_http_faults_wear_off() {
    let s = start_sim().await;
    s.set_fault_on_times("/api/health", Fault::Http500Html, 2);
    let client = client_for(&s, 5, 1);
    for round in 0..2 {
        match client.health().await {
            Ok(h) => panic!("round {round}: answered through the fault: {h:?}"),
            Err(e) => assert_eq!(e.kind(), "http_500", "{e}"),
        }
    }
    client.health().await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(s.count("/api/health"), 3);
}

#[tokio::test]
async fn malformed_body_is_rejected() {
    let s = start_sim().await;
    s.set_fault_on("/api/health", Fault::MalformedBody);
    let err = match client_for(&s, 5, 1).health().await {
        Ok(h) => panic!("cut-off body accepted: {h:?}"),
        Err(e) => e,
    };
    assert_eq!(err.kind(), "malformed", "{err}");
}

#[tokio::test]
async fn delay_slows_answers() {
    let s = start_sim().await;
    s.set_delay(Duration::from_millis(300));
    let started = std::time::Instant::now();
    client_for(&s, 5, 1)
        .health()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(started.elapsed() >= Duration::from_millis(300));
    s.set_delay(Duration::ZERO);
    assert_eq!(s.count("/api/health"), 1);
}

#[tokio::test]
async fn ten_thousand_clusters() {
    let s = start_sim().await;
    s.generate_clusters("bulk", 10_000);
    assert_eq!(s.cluster_count(), 10_000);
    let clusters = client_for(&s, 30, 1)
        .status(RefreshMode::None)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(clusters.len(), 10_000);
    let stopped = clusters
        .iter()
        .filter(|c| c.status == ClusterStatus::Stopped)
        .count();
    let init = clusters
        .iter()
        .filter(|c| c.status == ClusterStatus::Init)
        .count();
    assert_eq!(stopped, 1_000);
    assert_eq!(
        init,
        (0..10_000).filter(|i| i % 10 != 0 && i % 25 == 1).count()
    );
    let mut hashes: Vec<&str> = clusters.iter().map(|c| c.cluster_hash.as_str()).collect();
    hashes.sort();
    hashes.dedup();
    assert_eq!(hashes.len(), 10_000, "hashes are unique");
}

#[tokio::test]
async fn service_account_tokens() {
    let s = start_sim().await;
    s.upsert_cluster(SimCluster::new("t"));
    s.enable_service_accounts(&["sky_good"]);
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let client_with = |token: &str| {
        let path = dir.path().join(format!("{token}.token"));
        std::fs::write(&path, format!("{token}\n")).unwrap_or_else(|e| panic!("{e}"));
        let cfg = SkypilotConfig {
            api_url: s.url(),
            token_file: Some(path),
            request_timeout_secs: 5,
            connect_attempts: 1,
            ..SkypilotConfig::default()
        };
        Client::new(&cfg).unwrap_or_else(|e| panic!("{e}"))
    };
    let health = client_with("sky_good")
        .health()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(health.api_version_number(), Some(62));
    let clusters = client_with("sky_good")
        .status(RefreshMode::None)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(clusters.len(), 1);
    let log = s.requests_for(Op::Status);
    assert_eq!(log[0].authorization.as_deref(), Some("Bearer sky_good"));
    let err = match client_with("sky_bad").status(RefreshMode::None).await {
        Ok(c) => panic!("a wrong token was accepted: {c:?}"),
        Err(e) => e,
    };
    assert_eq!(err.kind(), "auth", "{err}");
    let resp = http()
        .get(format!("{}/api/health", s.url()))
        .header("Authorization", "Bearer sky_bad")
        .send()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    let v: Value = resp.json().await.unwrap_or(Value::Null);
    assert_eq!(v["detail"], "Invalid or expired service account token");
}

#[test]
fn new_clusters_get_distinct_hashes() {
    let a = SimCluster::new("aa");
    let b = SimCluster::new("bb");
    assert_ne!(a.cluster_hash, b.cluster_hash);
    assert!(is_uuid_like(&a.cluster_hash), "{}", a.cluster_hash);
}

#[tokio::test]
async fn empty_fleet() {
    let s = start_sim().await;
    let (code, payload) = run_op(&s.url(), "status", json!({"refresh": "NONE"})).await;
    assert_eq!(code, StatusCode::OK);
    assert_eq!(payload["return_value"], "[]");
    let (_, payload) = run_op(&s.url(), "cost_report", json!({"days": 30})).await;
    assert_eq!(payload["return_value"], "[]");
}

#[tokio::test]
async fn api_get_resolves_a_unique_prefix() {
    let s = start_sim().await;
    let id = post_op(&s.url(), "status", json!({})).await;
    let (code, v) = api_get(&s.url(), &id[..13]).await;
    assert_eq!(code, StatusCode::OK);
    assert_eq!(v["request_id"], json!(id));
}
