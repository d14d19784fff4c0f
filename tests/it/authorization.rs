//! Authorization end to end, against the real SkyPilot 0.14.1 through the real
//! `skypilot-host web-ui`: the attacks of the "Authorization end to end" issue replayed as
//! each role, the `Authorization` header fuzzed, SkyPilot's roles synced and drift set
//! back, service-account tokens verified, the audit of writes and refusals, and
//! SkyPilot's `rbac.default_role` in PostgreSQL.

use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::support::host::{bin, free_port, wait_listening, HostProcess};
use crate::support::real::{request_records, OwnServer};
use crate::support::web::{tokens_file, users_file};

const ROOT: (&str, &str) = ("root", "root-password-1");
const ALICE: (&str, &str) = ("alice", "alice-password-1");
const VERA: (&str, &str) = ("vera", "vera-password-1");

/// SkyPilot's id of a name from the identity header.
fn id_of(name: &str) -> &'static str {
    match name {
        "root" => "63a9f0ea",
        "alice" => "6384e2b2",
        "bob" => "9f9d51bc",
        "vera" => "4341dfaa",
        other => panic!("no id for {other}"),
    }
}

/// The web UI in front of `upstream`, with root (admin), alice (user) and vera (viewer),
/// an API token of alice's in `dir/alice-token`, syncing roles every second; its host
/// database made (migrated) first.
fn start_web_ui(dir: &Path, upstream: &str) -> (HostProcess, String) {
    users_file(
        dir,
        &[
            (ROOT.0, ROOT.1, "admin"),
            (ALICE.0, ALICE.1, "user"),
            (VERA.0, VERA.1, "viewer"),
        ],
    );
    drop(skypilot_host::store::Store::open(&dir.join("host.db")).unwrap());
    let (_, token) = tokens_file(dir, ALICE.0, "user");
    std::fs::write(dir.join("alice-token"), &token).unwrap();
    let port = free_port();
    let config = dir.join("config.toml");
    std::fs::write(
        &config,
        format!(
            "[skypilot]\napi_url = \"{upstream}\"\n[cluster_manager]\ndatabase = \"{}\"\npoll_interval_secs = 2\nload_budget = 1.0\n\
             [web_ui]\nlisten = \"127.0.0.1:{port}\"\nusers_file = \"{}\"\ntokens_file = \"{}\"\nrole_sync_interval_secs = 1\n",
            dir.join("host.db").display(),
            dir.join("users").display(),
            dir.join("tokens").display()
        ),
    )
    .unwrap();
    let p = HostProcess::role("web-ui", &config, &dir.join("web-ui.log"));
    wait_listening(port, &p);
    (p, format!("http://127.0.0.1:{port}"))
}

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

/// SkyPilot's users and roles, asked directly (as the host).
async fn skypilot_roles(server: &str) -> Vec<(String, String)> {
    let v: Value = client()
        .get(format!("{server}/users"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    v.as_array()
        .unwrap()
        .iter()
        .map(|u| {
            (
                u["id"].as_str().unwrap_or("").to_string(),
                u["role"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect()
}

async fn wait_for_role(server: &str, name: &str, role: &str, within: Duration) {
    let started = Instant::now();
    loop {
        let roles = skypilot_roles(server).await;
        if roles.iter().any(|(i, r)| i == id_of(name) && r == role) {
            return;
        }
        assert!(
            started.elapsed() < within,
            "SkyPilot's role of {name} is not {role} after {within:?}: {roles:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn audit(dir: &Path) -> Vec<Value> {
    let out = bin()
        .args(["audit", "--json", "--limit", "1000", "--config"])
        .arg(dir.join("config.toml"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("audit --json prints a JSON array")
}

/// `sky ARGS` as `who` through the gateway at `base` (the endpoint with the person's
/// credentials, as `sky api login` stores it), with `home` as HOME: (success, output).
async fn sky_as(who: (&str, &str), base: &str, home: &Path, args: &[&str]) -> (bool, String) {
    let venv = std::env::var("SKYPILOT_VENV").expect("SKYPILOT_VENV");
    std::fs::create_dir_all(home).unwrap();
    let addr = base.trim_start_matches("http://");
    let out = tokio::time::timeout(
        Duration::from_secs(240),
        tokio::process::Command::new(Path::new(&venv).join("bin/sky"))
            .env("HOME", home)
            .env(
                "SKYPILOT_API_SERVER_ENDPOINT",
                format!("http://{}:{}@{addr}", who.0, who.1),
            )
            .env("SKYPILOT_DISABLE_USAGE_COLLECTION", "1")
            .env_remove("SKY_RUNTIME_DIR")
            .env_remove("SKYPILOT_GLOBAL_CONFIG")
            .args(args)
            .kill_on_drop(true)
            .output(),
    )
    .await
    .unwrap_or_else(|_| panic!("sky {args:?} did not finish within 240 s"))
    .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

/// (who, method, path, body, expected status).
type Case = (
    (&'static str, &'static str),
    &'static str,
    &'static str,
    Option<Value>,
    u16,
);

/// One request through the gateway: (status, body).
async fn send(
    base: &str,
    method: &str,
    path: &str,
    auth: Option<(&str, &str)>,
    body: Option<Value>,
) -> (u16, String) {
    let mut r = client()
        .request(method.parse().unwrap(), format!("{base}{path}"))
        .header("X-SkyPilot-API-Version", "62");
    if let Some((u, p)) = auth {
        r = r.basic_auth(u, Some(p));
    }
    if let Some(b) = body {
        r = r.json(&b);
    }
    let resp = r.send().await.unwrap();
    let status = resp.status().as_u16();
    (status, resp.text().await.unwrap_or_default())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_attack_fails_and_each_role_gets_what_it_should() {
    let server = OwnServer::start_with_config_env(
        "rbac:\n  default_role: viewer\n",
        &[("ENABLE_SERVICE_ACCOUNTS", "true")],
    );
    server.skyctl(&["create", "alices-box", "--user", "alice"]);
    server.skyctl(&["create", "bobs-box", "--user", "bob"]);
    let dir = tempfile::tempdir().unwrap();
    let (web, base) = start_web_ui(dir.path(), &server.url);
    let base = base.as_str();
    // SkyPilot agrees with us within a sync.
    for (name, role) in [("root", "admin"), ("alice", "user"), ("vera", "viewer")] {
        wait_for_role(&server.url, name, role, Duration::from_secs(30)).await;
    }

    // 1. No login: every malformed Authorization header is refused, never SkyPilot's
    //    anonymous admin.
    let raw = |value: &'static [u8]| async move {
        let r = client()
            .get(format!("{base}/users/role"))
            .header(
                "Authorization",
                reqwest::header::HeaderValue::from_bytes(value).unwrap(),
            )
            .send()
            .await
            .unwrap();
        let s = r.status().as_u16();
        (s, r.text().await.unwrap_or_default())
    };
    for value in [
        &b"Bearer  sky_x"[..],
        b"Bearer sky_x",
        b"bearer sky_x",
        b"BEARER  sky_x",
        b"Bearer\tsky_x",
        b"Bearer sky_x\t",
        b"Bearer sky_x ",
        b"Bearer",
        b"Bearer ",
        b"Bearer sky_\xc3\xa9",
        b"Bearer sky_eyJhbGciOiJIUzI1NiJ9.eyJ1IjoiNjNhOWYwZWEifQ.sig",
        b"Basic  cm9vdDpyb290LXBhc3N3b3JkLTE=",
        b"Token sky_x",
    ] {
        let (status, body) = raw(value).await;
        assert_eq!(
            status,
            401,
            "Authorization {:?} answered {status}: {body}",
            String::from_utf8_lossy(value)
        );
        assert!(!body.contains("\"role\":\"admin\""), "{body}");
    }
    // Two Authorization headers, one of them valid.
    let r = client()
        .get(format!("{base}/users/role"))
        .header("Authorization", "Bearer  sky_x")
        .header(
            "Authorization",
            format!("Basic {}", b64(&format!("{}:{}", ROOT.0, ROOT.1))),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    // No credentials at all: refused too (but the health probe).
    assert_eq!(send(base, "GET", "/users", None, None).await.0, 401);
    assert_eq!(send(base, "GET", "/api/health", None, None).await.0, 200);
    // SkyPilot's CLI without a login (it sends its API version) is told to log in, as
    // SkyPilot's own server tells it when its auth is on; versions stay for the CLI.
    let h: Value = client()
        .get(format!("{base}/api/health"))
        .header("X-SkyPilot-API-Version", "62")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(h["status"], "needs_auth", "{h}");
    assert!(
        h["user"].is_null() && h["api_version"].is_string() && h["commit"].is_string(),
        "{h}"
    );

    // 2. Each role, each attack of the issue: (who, method, path, body, expected status).
    let alices = json!({"cluster_name": "alices-box"});
    let bobs = json!({"cluster_name": "bobs-box"});
    let cases: Vec<Case> = vec![
        (
            VERA,
            "POST",
            "/users/update",
            Some(json!({"user_id": id_of("alice"), "role": "viewer"})),
            403,
        ),
        (
            VERA,
            "POST",
            "/users/service-account-tokens",
            Some(json!({"token_name": "x", "expires_in_days": 1})),
            403,
        ),
        (VERA, "POST", "/exec", Some(alices.clone()), 403),
        (VERA, "POST", "/stop", Some(alices.clone()), 403),
        (
            VERA,
            "POST",
            "/launch",
            Some(json!({"cluster_name": "vera-new", "task": "{}"})),
            403,
        ),
        (VERA, "GET", "/workspaces/config", None, 403),
        (
            VERA,
            "POST",
            "/workspaces/config",
            Some(json!({"config": {}})),
            403,
        ),
        (
            VERA,
            "POST",
            "/workspaces/create",
            Some(json!({"workspace_name": "w", "config": {}})),
            403,
        ),
        (VERA, "POST", "/api/cancel", Some(json!({})), 403),
        (VERA, "POST", "/status", Some(json!({})), 200),
        (
            ALICE,
            "POST",
            "/users/update",
            Some(json!({"user_id": id_of("root"), "role": "viewer"})),
            403,
        ),
        (
            ALICE,
            "POST",
            "/users/create",
            Some(json!({"username": "mallory", "password": "x"})),
            403,
        ),
        (
            ALICE,
            "POST",
            "/users/service-account-tokens",
            Some(json!({"token_name": "x", "expires_in_days": 1})),
            403,
        ),
        (ALICE, "GET", "/workspaces/config", None, 403),
        (
            ALICE,
            "POST",
            "/workspaces/config",
            Some(json!({"config": {}})),
            403,
        ),
        (ALICE, "POST", "/exec", Some(bobs.clone()), 403),
        (ALICE, "POST", "/stop", Some(bobs.clone()), 403),
        (
            ALICE,
            "POST",
            "/down",
            Some(json!({"cluster_name": "internal/../bobs-box"})),
            403,
        ),
        (
            ALICE,
            "POST",
            "/internal/dashboard/stop",
            Some(bobs.clone()),
            403,
        ),
        (ALICE, "POST", "/%73top", Some(bobs.clone()), 403),
        (
            ALICE,
            "POST",
            "/launch",
            Some(json!({"cluster_name": "bobs-box", "task": "{}"})),
            403,
        ),
        (
            ALICE,
            "POST",
            "/queue",
            Some(json!({"cluster_name": "bobs-box"})),
            403,
        ),
        (
            ALICE,
            "POST",
            "/jobs/cancel",
            Some(json!({"all_users": true})),
            403,
        ),
        (
            ALICE,
            "POST",
            "/serve/down",
            Some(json!({"service_names": null, "all": true})),
            403,
        ),
        (
            ALICE,
            "GET",
            "/kubernetes-pod-ssh-proxy?cluster_name=bobs-box",
            None,
            403,
        ),
        (ALICE, "POST", "/stop", Some(alices.clone()), 200),
        (ALICE, "POST", "/status", Some(json!({})), 200),
        (ROOT, "POST", "/stop", Some(bobs.clone()), 200),
    ];
    for (who, method, path, body, want) in cases {
        let (status, text) = send(base, method, path, Some(who), body).await;
        assert_eq!(
            status,
            want,
            "{} {method} {path}: {text}\n{}",
            who.0,
            web.log_text()
        );
        if want == 403 {
            let role = if who.0 == "vera" { "viewer" } else { "user" };
            assert!(
                text.contains("refused") && text.contains(role) && text.contains(who.0),
                "{} {method} {path}: the refusal names neither the person nor the role: {text}",
                who.0
            );
        }
    }
    // SkyPilot's own view of each person through the gateway agrees.
    for (who, role) in [(VERA, "viewer"), (ALICE, "user"), (ROOT, "admin")] {
        let (status, text) = send(base, "GET", "/users/role", Some(who), None).await;
        assert_eq!(status, 200, "{text}");
        let v: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(v["role"], role, "{text}");
        assert_eq!(v["name"], who.0, "{text}");
    }
    // Alice's roles were never changed by the attempts above.
    wait_for_role(&server.url, "root", "admin", Duration::from_secs(1)).await;

    // 3. A service account (made by root inside SkyPilot): verified by SkyPilot, held to
    //    the role SkyPilot gives it, a forged one refused.
    let made: Value = client()
        .post(format!("{}/users/service-account-tokens", server.url))
        .header("X-Auth-Request-Email", "root")
        .json(&json!({"token_name": "ci_bot", "expires_in_days": 1}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let token = made["token"]
        .as_str()
        .unwrap_or_else(|| panic!("{made}"))
        .to_string();
    let bearer = |path: &'static str, auth: String, body: Value| {
        let base = base.to_string();
        async move {
            let r = client()
                .post(format!("{base}{path}"))
                .header("Authorization", auth)
                .header("X-Auth-Request-Email", "root")
                .json(&body)
                .send()
                .await
                .unwrap();
            let s = r.status().as_u16();
            let id = r
                .headers()
                .get("x-skypilot-request-id")
                .map(|v| v.to_str().unwrap().to_string());
            (s, id, r.text().await.unwrap_or_default())
        }
    };
    let (s, id, text) = bearer("/status", format!("Bearer {token}"), json!({})).await;
    assert_eq!(s, 200, "{text}");
    let id = id.unwrap();
    let rec = request_records(&server.url, &format!("request_ids={id}")).await;
    assert_eq!(rec[0]["user_name"], "ci_bot", "{rec:?}");
    // With SkyPilot's role for it (the default, viewer), it may not stop alice's cluster.
    let (s, _, text) = bearer("/stop", format!("Bearer {token}"), alices.clone()).await;
    assert_eq!(s, 403, "{text}");
    let (s, _, text) = bearer(
        "/status",
        "Bearer sky_eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJzYS14In0.forged".into(),
        json!({}),
    )
    .await;
    assert_eq!(s, 401, "{text}");

    // 4. The audit: refusals and allowed writes, with the person, the cluster and
    //    SkyPilot's request id.
    let rows = audit(dir.path());
    let find = |actor: &str, outcome: &str, needle: &str| {
        rows.iter().any(|e| {
            e["actor"] == actor
                && e["action"] == "request"
                && e["outcome"] == outcome
                && e["detail"].as_str().is_some_and(|d| d.contains(needle))
        })
    };
    assert!(
        find("gateway:alice", "refused", "belongs to \"bob\""),
        "{rows:#?}"
    );
    assert!(
        find("gateway:vera", "refused", "/users/update"),
        "{rows:#?}"
    );
    assert!(find("gateway:alice", "ok", "SkyPilot request"), "{rows:#?}");
    assert!(
        find(
            "gateway:root",
            "ok",
            "POST /stop (bobs-box): HTTP 200, SkyPilot request"
        ),
        "{rows:#?}"
    );
    assert!(
        !rows.iter().any(|e| e["action"] == "request"
            && e["detail"]
                .as_str()
                .is_some_and(|d| d.starts_with("POST /status"))),
        "reads are not audited: {rows:#?}"
    );

    // 5. Drift: someone makes root a viewer inside SkyPilot; the sync sets it back and
    //    audits it within a sync interval (1 s here; 10 s allowed).
    let r = client()
        .post(format!("{}/users/update", server.url))
        .json(&json!({"user_id": id_of("root"), "role": "viewer"}))
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success(), "{}", r.text().await.unwrap());
    wait_for_role(&server.url, "root", "admin", Duration::from_secs(10)).await;
    let started = Instant::now();
    loop {
        let rows = audit(dir.path());
        if rows.iter().any(|e| {
            e["action"] == "role"
                && e["detail"]
                    .as_str()
                    .is_some_and(|d| d.contains("root") && d.contains("drift"))
        }) {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "no drift in the audit: {rows:#?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    drop(web);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_viewers_sky_launch_is_refused_with_a_clear_message() {
    let server = OwnServer::start_with_config_env("rbac:\n  default_role: viewer\n", &[]);
    let dir = tempfile::tempdir().unwrap();
    let (web, base) = start_web_ui(dir.path(), &server.url);
    wait_for_role(&server.url, "vera", "viewer", Duration::from_secs(30)).await;
    let (ok, text) = sky_as(
        VERA,
        &base,
        &dir.path().join("home"),
        &["launch", "-y", "-c", "vera-box", "echo hi"],
    )
    .await;
    assert!(!ok, "a viewer launched: {text}");
    assert!(
        text.contains("viewer") && text.contains("refused"),
        "the refusal does not say why: {text}\n{}",
        web.log_text()
    );
    // Nothing was launched.
    let (status, body) = send(&base, "POST", "/status", Some(ROOT), Some(json!({}))).await;
    assert_eq!(status, 200, "{body}");
    // A wrong password: SkyPilot's CLI says so in one line, and never shows it (it
    // would print the endpoint, password and all, for a 401 on its health probe).
    let (ok, text) = sky_as(
        (VERA.0, "not-her-pw-7"),
        &base,
        &dir.path().join("home-wrong"),
        &["status"],
    )
    .await;
    assert!(!ok, "a wrong password listed clusters: {text}");
    assert!(
        text.contains(r#"wrong user name or password for "vera""#),
        "{text}"
    );
    assert!(!text.contains("not-her-pw-7"), "{text}");
    assert!(!text.contains("sky api login -e http://vera:"), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_state_in_postgresql_the_default_role_goes_into_skypilots_database() {
    // The throwaway PostgreSQL scripts/test.sh starts (start_postgres in scripts/lib.sh).
    let host = std::env::var("SKYPILOT_TEST_PG_HOST").expect("SKYPILOT_TEST_PG_HOST");
    let bin_dir = std::env::var("SKYPILOT_TEST_PG_BIN").expect("SKYPILOT_TEST_PG_BIN");
    let name = crate::support::real::unique("skyrbac").replace('-', "_");
    let created = std::process::Command::new(Path::new(&bin_dir).join("psql"))
        .args(["-X", "-h", &host, "-U", "skypilot", "-d", "skypilot", "-c"])
        .arg(format!("CREATE DATABASE {name}"))
        .output()
        .unwrap();
    assert!(
        created.status.success(),
        "{}",
        String::from_utf8_lossy(&created.stderr)
    );
    let uri = format!("postgresql+psycopg2://skypilot@/{name}?host={host}");
    // SkyPilot's config file holds nothing (with its state in PostgreSQL, at most one key).
    let server =
        OwnServer::start_with_config_env("{}\n", &[("SKYPILOT_DB_CONNECTION_URI", uri.as_str())]);
    let dir = tempfile::tempdir().unwrap();
    let (web, _base) = start_web_ui(dir.path(), &server.url);
    wait_for_role(&server.url, "alice", "user", Duration::from_secs(60)).await;
    // The default role is in SkyPilot's config now (its database), and a name nobody
    // synced gets viewer.
    let r = client()
        .get(format!("{}/users/role", server.url))
        .header("X-Auth-Request-Email", "stranger")
        .send()
        .await
        .unwrap();
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["role"], "viewer", "{v}\n{}", web.log_text());
    // The sync audits once its pass is over: wait for the entry.
    let started = Instant::now();
    loop {
        let rows = audit(dir.path());
        if rows.iter().any(|e| {
            e["action"] == "role"
                && e["detail"]
                    .as_str()
                    .is_some_and(|d| d.contains("default_role set to viewer"))
        }) {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "no audit entry for the default role: {rows:#?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Base64 (standard, padded).
fn b64(s: &str) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(s.as_bytes())
}

/// The `sky` CLI as a `user` through the gateway: stopping another person's cluster is
/// refused with the gateway's reason; stopping their own goes to SkyPilot (which then
/// fails for want of a cloud: these clusters are records).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_users_sky_stop_reaches_skypilot_for_their_own_cluster_only() {
    let server = OwnServer::start_with_config_env("rbac:\n  default_role: viewer\n", &[]);
    server.skyctl(&["create", "alices-own", "--user", "alice"]);
    server.skyctl(&["create", "bobs-own", "--user", "bob"]);
    let dir = tempfile::tempdir().unwrap();
    let (web, base) = start_web_ui(dir.path(), &server.url);
    wait_for_role(&server.url, "alice", "user", Duration::from_secs(30)).await;
    let home = dir.path().join("home");
    let sky_stop = |cluster: &'static str| {
        let (base, home) = (base.clone(), home.clone());
        async move {
            sky_as(ALICE, &base, &home, &["stop", "-y", cluster])
                .await
                .1
        }
    };
    let other = sky_stop("bobs-own").await;
    assert!(
        other.contains("refused") && other.contains("belongs to"),
        "stopping bob's cluster: {other}\n{}",
        web.log_text()
    );
    let own = sky_stop("alices-own").await;
    assert!(
        !own.contains("refused") && !own.contains("belongs to"),
        "stopping her own cluster was refused by the gateway: {own}"
    );
    // SkyPilot got her stop, as hers.
    let all = request_records(&server.url, "all_status=true").await;
    let stops: Vec<&Value> = all.iter().filter(|r| r["name"] == "sky.stop").collect();
    assert_eq!(stops.len(), 1, "{stops:?}");
    assert_eq!(stops[0]["cluster_name"], "alices-own");
    assert_eq!(stops[0]["user_name"], "alice");

    // A console action (the JSON API, alice's API token) goes to SkyPilot as alice, not
    // as the host: SkyPilot's request table names her. The console acts on what the host
    // database holds, so a cluster manager records the fleet first.
    let manager = HostProcess::role(
        "cluster-manager",
        &dir.path().join("config.toml"),
        &dir.path().join("manager.log"),
    );
    let token = std::fs::read_to_string(dir.path().join("alice-token")).unwrap();
    let started = Instant::now();
    let answer = loop {
        let r = client()
            .post(format!("{base}/api/v1/actions"))
            .bearer_auth(&token)
            .json(&json!({"cluster": "alices-own", "action": "autostop", "minutes": "30"}))
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        let text = r.text().await.unwrap_or_default();
        // 404 until the cluster manager has recorded the cluster.
        if status != 404 {
            break (status, text);
        }
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "alices-own never recorded: {text}\n{}",
            manager.log_text()
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    // SkyPilot accepts it and then fails for want of a cloud (502 with its error) or
    // carries it out; either way the request is SkyPilot's, not a refusal of ours.
    assert_ne!(answer.0, 403, "{}", answer.1);
    let all = request_records(&server.url, "all_status=true").await;
    let autostop = all
        .iter()
        .find(|r| r["name"] == "sky.autostop" && r["cluster_name"] == "alices-own")
        .unwrap_or_else(|| panic!("no autostop request of the console's in SkyPilot: {all:?}"));
    assert_eq!(autostop["user_name"], "alice", "{autostop}");
    assert_eq!(autostop["user_id"], id_of("alice"), "{autostop}");
}

/// A viewer in Chromium: no action in the console, and SkyPilot's dashboard (behind the
/// gateway, against the real SkyPilot) refuses what its stop, down and autostop buttons
/// send (tests/browser/viewer_flow.py).
#[cfg(feature = "browser")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn browser_a_viewer_gets_no_action_in_the_console_or_the_dashboard() {
    let server = OwnServer::start_with_config_env("rbac:\n  default_role: viewer\n", &[]);
    server.skyctl(&["create", "alices-view", "--user", "alice"]);
    let dir = tempfile::tempdir().unwrap();
    // The console lists what the host database holds: a cluster manager records it.
    let (web, base) = start_web_ui(dir.path(), &server.url);
    let manager = HostProcess::role(
        "cluster-manager",
        &dir.path().join("config.toml"),
        &dir.path().join("manager.log"),
    );
    wait_for_role(&server.url, "vera", "viewer", Duration::from_secs(30)).await;
    let started = Instant::now();
    loop {
        let (status, body) = send(&base, "GET", "/api/v1/clusters", Some(ROOT), None).await;
        if status == 200 && body.contains("alices-view") {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "the cluster manager did not record alices-view: {status} {body}\n{}",
            manager.log_text()
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let root = env!("CARGO_MANIFEST_DIR");
    let python = std::env::var("BROWSER_PYTHON")
        .unwrap_or_else(|_| format!("{root}/.venv/browser/bin/python"));
    let shots = format!("{root}/target/screenshots");
    let out = tokio::process::Command::new(&python)
        .arg(format!("{root}/tests/browser/viewer_flow.py"))
        .args([base.as_str(), VERA.0, VERA.1, "alices-view", shots.as_str()])
        .output()
        .await
        .unwrap_or_else(|e| panic!("cannot run {python}: {e}"));
    let stdout = String::from_utf8_lossy(&out.stdout);
    println!("{stdout}");
    assert!(
        out.status.success() && stdout.contains(" 0 failed"),
        "{stdout}\n{}\n{}",
        String::from_utf8_lossy(&out.stderr),
        web.log_text()
    );
}
