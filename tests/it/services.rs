//! SkyServe services: the contract of `/serve/status` (the same cases against the
//! simulator and a real SkyPilot 0.14.1 whose serve controller runs on the API server's
//! host), and the cluster manager recording the services, as a process, with
//! `status --services`, the JSON API and the monitor's series read back.

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::{json, Value};

use crate::support::api::{error_value, return_value, run_op, start_sim};
use crate::support::host::Host;
#[cfg(feature = "real-server")]
use crate::support::real::OwnServer;
use crate::support::sim::{Op, Outcome, SimService, Simulator};

use skypilot_host::services::{parse_status, ReplicaStatus, ServiceStatus};

/// Where the cases run: the simulator, or a real server of their own.
enum Fleet<'a> {
    Sim(&'a Simulator),
    #[cfg(feature = "real-server")]
    Real(&'a OwnServer),
}

impl Fleet<'_> {
    fn url(&self) -> String {
        match self {
            Fleet::Sim(s) => s.url(),
            #[cfg(feature = "real-server")]
            Fleet::Real(r) => r.url.clone(),
        }
    }

    /// A service of `user` as `sky serve up` records it.
    fn add(&self, name: &str, user: &str, replicas: i64) {
        match self {
            Fleet::Sim(s) => s.upsert_service(SimService::new(name, user, replicas)),
            #[cfg(feature = "real-server")]
            Fleet::Real(r) => {
                r.skyctl(&[
                    "service",
                    name,
                    "--user",
                    user,
                    "--replicas",
                    &replicas.to_string(),
                ]);
            }
        }
    }

    /// Replica `id` of service `name` in `state`, as its replica manager records it.
    fn replica(&self, name: &str, id: i64, state: &str) {
        match self {
            Fleet::Sim(s) => {
                assert!(s.update_service(name, |v| v.replica(id, state, 1_796_540_000)));
            }
            #[cfg(feature = "real-server")]
            Fleet::Real(r) => {
                r.skyctl(&["replica", name, &id.to_string(), state]);
            }
        }
    }

    fn network_down(&self, down: bool) {
        match self {
            Fleet::Sim(s) => s.set_network_down(down),
            #[cfg(feature = "real-server")]
            Fleet::Real(r) => r.set_network_down(down),
        }
    }
}

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "bool",
        Value::Number(n) if n.is_i64() => "int",
        Value::Number(_) => "float",
        Value::String(_) => "str",
        Value::Array(_) => "list",
        Value::Object(_) => "dict",
    }
}

/// Keys and value types of a record, in the order sent (the order is part of it).
fn shape(v: &Value) -> Vec<(String, &'static str)> {
    v.as_object()
        .unwrap()
        .iter()
        .map(|(k, v)| (k.clone(), type_name(v)))
        .collect()
}

fn body() -> Value {
    json!({ "service_names": null })
}

/// Services as `/serve/status` lists them: every field of each record, with its replicas,
/// of the types a real 0.14.1 sends, in its order; the status derived from the
/// replicas; the owner's name; what [`parse_status`] makes of it. Then the same with the
/// network down: SkyPilot's network error.
async fn case_status_answer(f: &Fleet<'_>) -> Vec<(String, Vec<(String, &'static str)>)> {
    f.add("ct-web", "alice", 2);
    f.replica("ct-web", 1, "READY");
    f.replica("ct-web", 2, "PROVISIONING");
    f.add("ct-chat", "bob", 1);
    f.replica("ct-chat", 1, "FAILED");
    f.add("ct-new", "carol", 1);

    let (code, payload) = run_op(&f.url(), "serve/status", body()).await;
    assert_eq!(code, reqwest::StatusCode::OK, "{payload:#}");
    assert_eq!(payload["name"], "sky.serve.status");
    assert_eq!(payload["schedule_type"], "short");
    let controller = payload["cluster_name"].as_str().unwrap_or_default();
    assert!(
        controller.starts_with("sky-serve-controller-") && controller.len() == 29,
        "{payload}"
    );
    let rv = return_value(&payload);
    let records = rv.as_array().unwrap();
    let names: Vec<&str> = records
        .iter()
        .map(|r| r["name"].as_str().unwrap())
        .collect();
    // SkyPilot sorts by the base64 of each pickled name, which puts shorter names
    // first.
    assert_eq!(
        names,
        ["ct-new", "ct-web", "ct-chat"],
        "in SkyPilot's order"
    );
    let by: BTreeMap<&str, &Value> = records
        .iter()
        .map(|r| (r["name"].as_str().unwrap(), r))
        .collect();
    assert_eq!(by["ct-web"]["status"], "READY");
    assert_eq!(by["ct-chat"]["status"], "FAILED");
    assert_eq!(by["ct-new"]["status"], "CONTROLLER_INIT");
    assert_eq!(by["ct-web"]["user_name"], "alice");
    assert_eq!(by["ct-web"]["policy"], "Fixed 2 replicas");
    assert!(by["ct-web"]["uptime"].is_i64(), "{:#}", by["ct-web"]);
    assert!(by["ct-new"]["uptime"].is_null());
    assert_eq!(
        by["ct-web"]["endpoint"],
        json!(format!(
            "http://localhost:{}",
            by["ct-web"]["load_balancer_port"]
        ))
    );
    let statuses: Vec<&Value> = by["ct-web"]["replica_info"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| &r["status"])
        .collect();
    assert_eq!(statuses, [&json!("READY"), &json!("PROVISIONING")]);

    let parsed = parse_status(&rv.to_string()).unwrap();
    let web = parsed.iter().find(|s| s.name == "ct-web").unwrap();
    assert_eq!(
        (web.status, web.ready_replicas()),
        (ServiceStatus::Ready, 1)
    );
    assert_eq!(web.owner(), "alice");
    assert_eq!(web.replicas[1].status, ReplicaStatus::Provisioning);
    assert_eq!(web.replicas[0].cluster, "ct-web-1");
    assert_eq!(web.resources.as_deref(), Some("1x[CPU:2]"));
    assert!(web.ready_since.is_some());

    let mut shapes: Vec<(String, Vec<(String, &'static str)>)> = records
        .iter()
        .map(|r| (r["name"].as_str().unwrap().to_string(), shape(r)))
        .collect();
    shapes.push(("replica".into(), shape(&by["ct-web"]["replica_info"][0])));

    // The network is down: SkyPilot refuses before it looks at any service.
    f.network_down(true);
    let (code, payload) = run_op(&f.url(), "serve/status", body()).await;
    f.network_down(false);
    assert_eq!(
        code,
        reqwest::StatusCode::INTERNAL_SERVER_ERROR,
        "{payload}"
    );
    let err = error_value(&payload);
    assert_eq!(err["type"], "RuntimeError");
    assert_eq!(
        err["message"],
        "Failed to refresh services status due to network error."
    );
    shapes
}

#[tokio::test]
async fn contract_against_simulator_status_answer() {
    let s = start_sim().await;
    case_status_answer(&Fleet::Sim(&s)).await;
}

/// SkyPilot's serve (and jobs) controller in consolidation mode: on the API server's
/// host, which answers `/serve/status` from its own database.
#[cfg(feature = "real-server")]
const SERVE_CONSOLIDATED: &str = "serve:\n  controller:\n    consolidation_mode: true\n";

/// The same case against one real server of their own, and the records of both side by
/// side: the same keys, in the same order, of the same types.
#[cfg(feature = "real-server")]
#[tokio::test(flavor = "multi_thread")]
async fn contract_against_real_server() {
    let r = tokio::task::spawn_blocking(|| OwnServer::start_with_config(SERVE_CONSOLIDATED, None))
        .await
        .unwrap();
    let real = case_status_answer(&Fleet::Real(&r)).await;
    let s = start_sim().await;
    let simulated = case_status_answer(&Fleet::Sim(&s)).await;
    assert_eq!(real, simulated, "records: real vs simulator");
    drop(r);
}

// ---------------------------------------------------------------------------------------
// The cluster manager recording the services.

fn service<'a>(report: &'a Value, name: &str) -> Option<&'a Value> {
    report["services"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == json!(name))
}

/// Services are recorded with their owner and replicas, status changes become
/// transitions, a service that disappears is kept as GONE, a failed read (the network
/// check) keeps them as they were and says so, and no controller is no failure. The
/// monitor, the API and the console show them.
#[tokio::test(flavor = "multi_thread")]
async fn the_cluster_manager_records_the_services() {
    let sim = start_sim().await;
    let f = Fleet::Sim(&sim);
    let host = Host::new(&sim.url(), 1, 3600).with_services_every(1);
    let _m = host.spawn_manager();
    // No serve controller yet: nothing to read, and no failure.
    let r = host.wait_services("no controller", Duration::from_secs(30), |r| {
        r["feed"]["error_kind"] == "no_controller"
    });
    assert_eq!(r["stale"], false, "{r:#}");
    assert!(
        r["feed"]["error"]
            .as_str()
            .unwrap()
            .contains("No live services"),
        "{r:#}"
    );

    f.add("web", "alice", 2);
    f.replica("web", 1, "READY");
    f.replica("web", 2, "PROVISIONING");
    f.add("chat", "bob", 1);
    f.replica("chat", 1, "PROVISIONING");
    let r = host.wait_services("both services", Duration::from_secs(30), |r| {
        service(r, "web").is_some() && service(r, "chat").is_some()
    });
    let web = service(&r, "web").unwrap();
    assert_eq!(
        (&web["status"], &web["user_name"], &web["ready_replicas"]),
        (&json!("READY"), &json!("alice"), &json!(1))
    );
    assert_eq!(web["replicas"][1]["status"], "PROVISIONING");
    assert_eq!(r["without_ready"], 1, "chat has none ready: {r:#}");
    assert_eq!(r["stale"], false);
    assert_eq!(sim.requests_for(Op::ServeStatus)[0].body, body());

    // chat fails, web disappears (sky serve down).
    f.replica("chat", 1, "FAILED");
    assert!(sim.remove_service("web"));
    let r = host.wait_services("chat failed, web gone", Duration::from_secs(30), |r| {
        service(r, "chat").is_some_and(|s| s["status"] == "FAILED")
            && service(r, "web").is_some_and(|s| s["status"] == "GONE")
    });
    assert_eq!(service(&r, "web").unwrap()["last_status"], "READY");
    let table = host.run_ok(&["status", "--services", "--all"]);
    assert!(
        table.contains("chat") && table.contains("FAILED") && table.contains("1 FAILED"),
        "{table}"
    );
    // No replica runs on a cluster the host prices.
    assert!(table.contains("replicas $0.00/h"), "{table}");
    // Without --all, gone services are left out.
    let table = host.run_ok(&["status", "--services"]);
    assert!(!table.contains("web"), "{table}");

    // The monitor's series: the live service without a ready replica has 0.
    let snap = skypilot_host::monitor::collect(&host.db, &skypilot_host::time::SystemClock);
    let text = skypilot_host::monitor::render(snap, skypilot_host::monitor::Format::Text).unwrap();
    for want in [
        r#"skypilot_service_ready_replicas{service="chat",user="bob"} 0"#,
        r#"skypilot_services{status="GONE",user="alice"} 1"#,
        r#"skypilot_service_replicas{service="chat",user="bob",status="FAILED"} 1"#,
        "skypilot_host_services_feed_up 1",
    ] {
        assert!(text.contains(want), "{want} not in:\n{text}");
    }
    assert!(
        !text.contains(r#"skypilot_service_ready_replicas{service="web""#),
        "a gone service has no ready-replicas series:\n{text}"
    );

    // The network check fails: the services stay, the report is stale with the error.
    f.network_down(true);
    let r = host.wait_services("a stale report", Duration::from_secs(30), |r| {
        r["stale"] == true
    });
    assert!(
        r["feed"]["error"]
            .as_str()
            .unwrap()
            .contains("Failed to refresh services status due to network error"),
        "{r:#}"
    );
    assert!(service(&r, "chat").is_some_and(|s| s["status"] == "FAILED"));
    let snap = skypilot_host::monitor::collect(&host.db, &skypilot_host::time::SystemClock);
    let text = skypilot_host::monitor::render(snap, skypilot_host::monitor::Format::Text).unwrap();
    assert!(text.contains("skypilot_host_services_feed_up 0"), "{text}");
    let table = host.run_ok(&["status", "--services", "--all"]);
    assert!(
        table.contains("STALE") && table.contains("network error"),
        "{table}"
    );
    f.network_down(false);
    host.wait_services("fresh again", Duration::from_secs(30), |r| {
        r["stale"] == false
    });

    // Any other failure is recorded the same way.
    sim.set_outcome(
        Op::ServeStatus,
        Outcome::fail("RuntimeError", "the serve controller's database is locked"),
    );
    host.wait_services("a failure recorded", Duration::from_secs(30), |r| {
        r["feed"]["error"]
            .as_str()
            .is_some_and(|e| e.contains("database is locked"))
    });
    sim.reset_outcomes();

    // The transitions of chat, oldest first.
    let conn = rusqlite::Connection::open(&host.db).unwrap();
    let tos: Vec<String> = conn
        .prepare("SELECT to_status FROM service_transitions WHERE service = 'chat' ORDER BY at, id")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(tos, ["REPLICA_INIT", "FAILED"]);
}

/// Against a real SkyPilot: the services made through its own serve_state are recorded
/// with the owner, status and replicas it reports; with its network check failing, the
/// services are kept and the read is reported failed.
#[cfg(feature = "real-server")]
#[test]
fn the_cluster_manager_records_the_real_servers_services() {
    let r = OwnServer::start_with_config(SERVE_CONSOLIDATED, None);
    r.skyctl(&["service", "cm-web", "--user", "alice", "--replicas", "2"]);
    r.skyctl(&["replica", "cm-web", "1", "READY"]);
    r.skyctl(&["replica", "cm-web", "2", "STARTING"]);
    r.skyctl(&["service", "cm-chat", "--user", "bob"]);
    r.skyctl(&["replica", "cm-chat", "1", "FAILED_PROBING"]);
    let host = Host::new(&r.url, 1, 3600).with_services_every(1);
    let _m = host.spawn_manager();
    let rep = host.wait_services("both services", Duration::from_secs(90), |rep| {
        service(rep, "cm-web").is_some() && service(rep, "cm-chat").is_some()
    });
    let web = service(&rep, "cm-web").unwrap();
    assert_eq!(
        (&web["status"], &web["user_name"], &web["ready_replicas"]),
        (&json!("READY"), &json!("alice"), &json!(1))
    );
    assert_eq!(web["replicas"][1]["status"], "STARTING");
    assert_eq!(web["policy"], "Fixed 2 replicas");
    let chat = service(&rep, "cm-chat").unwrap();
    assert_eq!(
        (
            &chat["status"],
            &chat["user_name"],
            &chat["replicas"][0]["status"]
        ),
        (&json!("FAILED"), &json!("bob"), &json!("FAILED_PROBING"))
    );
    // sky serve down: SkyPilot removes the records; the host keeps the service as GONE.
    r.skyctl(&["service-remove", "cm-chat"]);
    host.wait_services("cm-chat gone", Duration::from_secs(90), |rep| {
        service(rep, "cm-chat").is_some_and(|s| s["status"] == "GONE")
    });
    r.set_network_down(true);
    let rep = host.wait_services(
        "the network check failing",
        Duration::from_secs(90),
        |rep| rep["stale"] == true,
    );
    assert!(
        rep["feed"]["error"]
            .as_str()
            .unwrap()
            .contains("Failed to refresh services status due to network error"),
        "{rep:#}"
    );
    assert!(service(&rep, "cm-web").is_some_and(|s| s["status"] == "READY"));
}
