//! The web UI's gateway to SkyPilot: what reaches SkyPilot (identity header, credentials,
//! forwarding headers), who may pass unauthenticated, the same-origin rule, per-owner
//! control, streaming, websockets and uploads.
//!
//! Most tests put the gateway behind a small test auth layer (Basic `alice:secret` is a
//! viewer, `root:admin` an admin, cookie `session=NAME` a viewer's session, `Bearer
//! sky_…` a SkyPilot service account, any other credential a 401) in front of an
//! upstream that records what it receives. The `real` module runs it in front of the
//! real SkyPilot 0.14.1 API server and its `sky` CLI.

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Router;
use skypilot_host::cluster::{Cluster, ClusterStatus};
use skypilot_host::config::Config;
use skypilot_host::skypilot::RefreshMode;
use skypilot_host::store::{ClusterChanges, ClusterRow, PollOutcome, PollRun, Store};
use skypilot_host::time::Timestamp;
use skypilot_host::web_ui::gateway::Gateway;
use skypilot_host::web_ui::identity::{AuthMethod, Identity, Role};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

// ---------------------------------------------------------------- harness

/// One request as the test upstream saw it.
#[derive(Debug, Clone)]
struct Seen {
    method: String,
    path_and_query: String,
    headers: HeaderMap,
    body_len: usize,
    body: Vec<u8>,
}

#[derive(Clone, Default)]
struct Upstream {
    seen: Arc<Mutex<Vec<Seen>>>,
}

impl Upstream {
    fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }
}

/// The test upstream: records every request; `/stream` answers three chunks 300 ms
/// apart; `/ws` upgrades and echoes; `/sink` counts the body without keeping it.
async fn upstream_handler(State(up): State<Upstream>, mut req: Request) -> Response {
    let path = req.uri().path().to_string();
    if path == "/ssh-interactive-auth" {
        let on = hyper::upgrade::on(&mut req);
        tokio::spawn(async move {
            if let Ok(u) = on.await {
                let mut io = hyper_util::rt::TokioIo::new(u);
                let mut buf = [0u8; 1024];
                loop {
                    match io.read(&mut buf).await {
                        Ok(0) | Err(_) => break,
                        Ok(n) => {
                            let mut out = b"echo:".to_vec();
                            out.extend_from_slice(&buf[..n]);
                            if io.write_all(&out).await.is_err() {
                                break;
                            }
                        }
                    }
                }
            }
        });
        record(&up, &req, 0, Vec::new());
        return Response::builder()
            .status(StatusCode::SWITCHING_PROTOCOLS)
            .header(header::CONNECTION, "upgrade")
            .header(header::UPGRADE, "websocket")
            .body(Body::empty())
            .unwrap();
    }
    if path == "/api/stream" {
        record(&up, &req, 0, Vec::new());
        let (tx, rx) = tokio::sync::mpsc::channel::<Result<axum::body::Bytes, std::io::Error>>(1);
        tokio::spawn(async move {
            for i in 0..3 {
                let _ = tx
                    .send(Ok(axum::body::Bytes::from(format!("chunk{i}\n"))))
                    .await;
                tokio::time::sleep(Duration::from_millis(300)).await;
            }
        });
        let stream = futures_util_stream(rx);
        return Response::builder()
            .header("x-accel-buffering", "no")
            .body(Body::from_stream(stream))
            .unwrap();
    }
    let (parts, body) = req.into_parts();
    let mut stream = body.into_data_stream();
    let mut n = 0usize;
    let mut kept = Vec::new();
    while let Some(chunk) = next_chunk(&mut stream).await {
        let Ok(c) = chunk else { break };
        n += c.len();
        if kept.len() < 64 * 1024 {
            kept.extend_from_slice(&c);
        }
    }
    let req = Request::from_parts(parts, Body::empty());
    record(&up, &req, n, kept);
    let mut r = axum::Json(serde_json::json!({ "received": n })).into_response();
    r.headers_mut()
        .insert("x-skypilot-api-version", HeaderValue::from_static("62"));
    if path == "/dashboard" {
        *r.status_mut() = StatusCode::TEMPORARY_REDIRECT;
        let loc = format!("http://{}/dashboard/", parts_host(&req));
        r.headers_mut()
            .insert(header::LOCATION, HeaderValue::from_str(&loc).unwrap());
    }
    r
}

fn parts_host(req: &Request) -> String {
    req.headers()
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string()
}

fn record(up: &Upstream, req: &Request, body_len: usize, body: Vec<u8>) {
    up.seen.lock().unwrap().push(Seen {
        method: req.method().to_string(),
        path_and_query: req
            .uri()
            .path_and_query()
            .map(|p| p.to_string())
            .unwrap_or_default(),
        headers: req.headers().clone(),
        body_len,
        body,
    });
}

async fn next_chunk(
    s: &mut axum::body::BodyDataStream,
) -> Option<Result<axum::body::Bytes, axum::Error>> {
    std::future::poll_fn(|cx| futures_core::Stream::poll_next(std::pin::Pin::new(&mut *s), cx))
        .await
}

/// An mpsc receiver as a `Stream`.
fn futures_util_stream<T>(
    mut rx: tokio::sync::mpsc::Receiver<T>,
) -> impl futures_core::Stream<Item = T> + Send + 'static
where
    T: Send + 'static,
{
    struct S<T>(tokio::sync::mpsc::Receiver<T>);
    impl<T> futures_core::Stream for S<T> {
        type Item = T;
        fn poll_next(
            mut self: std::pin::Pin<&mut Self>,
            cx: &mut std::task::Context<'_>,
        ) -> std::task::Poll<Option<T>> {
            self.0.poll_recv(cx)
        }
    }
    let _ = &mut rx;
    S(rx)
}

async fn serve(listener: TcpListener, app: Router) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    })
}

async fn start_upstream() -> (String, Upstream, tokio::task::JoinHandle<()>) {
    let up = Upstream::default();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let app = Router::new()
        .fallback(upstream_handler)
        .with_state(up.clone());
    (url, up, serve(listener, app).await)
}

fn basic(user: &str, password: &str) -> String {
    use base64::Engine as _;
    let pair = format!("{user}:{password}");
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(pair)
    )
}

/// The test auth layer (stands in for the web UI's): see the module's documentation.
async fn test_auth(State(gw): State<Gateway>, mut req: Request, next: Next) -> Response {
    let auth = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let cookie = req
        .headers()
        .get(header::COOKIE)
        .and_then(|v| v.to_str().ok())
        .and_then(|c| c.strip_prefix("session="))
        .map(str::to_string);
    let identity = match (auth.as_deref(), cookie) {
        (Some(a), _) if a == basic("alice", "secret") => {
            Some(Identity::named("alice", Role::User, AuthMethod::Basic))
        }
        (Some(a), _) if a == basic("vera", "secret") => {
            Some(Identity::named("vera", Role::Viewer, AuthMethod::Basic))
        }
        (Some(a), _) if a == basic("root", "admin") => {
            Some(Identity::named("root", Role::Admin, AuthMethod::Basic))
        }
        // A service account "verified" as SkyPilot would: `sky_<user id>`.
        (Some(a), _) if a.starts_with("Bearer sky_") && !a[7..].contains(' ') => Some(Identity {
            name: "ci_bot".into(),
            role: Role::User,
            method: AuthMethod::SkyPilotServiceAccount,
            user_id: Some(a["Bearer sky_".len()..].to_string()),
        }),
        (Some(_), _) => return gw.unauthorized("invalid credentials"),
        (None, Some(name)) => Some(Identity::named(name, Role::User, AuthMethod::Session)),
        (None, None) => None,
    };
    if let Some(i) = identity {
        req.extensions_mut().insert(i);
    }
    next.run(req).await
}

/// What passed through the front: method, path, status.
type Passed = Arc<Mutex<Vec<(String, String, u16)>>>;

struct Front {
    base: String,
    addr: std::net::SocketAddr,
    #[cfg_attr(not(feature = "real-server"), allow(dead_code))]
    passed: Passed,
    _task: tokio::task::JoinHandle<()>,
}

async fn log_passed(State(passed): State<Passed>, req: Request, next: Next) -> Response {
    let (method, path) = (req.method().to_string(), req.uri().path().to_string());
    let r = next.run(req).await;
    passed
        .lock()
        .unwrap()
        .push((method, path, r.status().as_u16()));
    r
}

async fn start_gateway(config: &Config) -> Front {
    let gw = Gateway::new(config).unwrap();
    let passed = Passed::default();
    let app = gw
        .clone()
        .router()
        .layer(axum::middleware::from_fn_with_state(gw, test_auth))
        .layer(axum::middleware::from_fn_with_state(
            passed.clone(),
            log_passed,
        ));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    Front {
        base: format!("http://{addr}"),
        addr,
        passed,
        _task: serve(listener, app).await,
    }
}

fn config(upstream: &str, db: &Path) -> Config {
    let mut c = Config::default();
    c.skypilot.api_url = upstream.to_string();
    c.cluster_manager.database = db.to_path_buf();
    c
}

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

/// A host database where `bobs-gpu` belongs to bob and `alices-cpu` to alice.
fn owners_db(dir: &Path) -> std::path::PathBuf {
    let path = dir.join("host.db");
    let mut store = Store::open(&path).unwrap();
    let now = Timestamp::from(1_800_000_000.0);
    let row = |name: &str, user: &str| ClusterRow {
        cluster: Cluster {
            name: name.to_string(),
            cluster_hash: format!("hash-{name}"),
            status: ClusterStatus::Up,
            cloud: Some("aws".into()),
            region: Some("us-east-1".into()),
            zone: None,
            instance_type: Some("m6i.large".into()),
            nodes: 1,
            cpus: None,
            memory: None,
            accelerators: None,
            resources: None,
            workspace: "default".into(),
            user_name: Some(user.to_string()),
            user_hash: Some(format!("h-{user}")),
            launched_at: None,
            status_updated_at: None,
            autostop_minutes: -1,
            autostop_to_down: false,
            is_managed: false,
            last_use: None,
        },
        hourly_cost: None,
        total_cost: None,
        first_seen: now,
        last_seen: now,
        last_changed: now,
        gone_at: None,
        price_source: None,
    };
    store
        .commit_poll(
            &ClusterChanges {
                upserts: vec![row("bobs-gpu", "bob"), row("alices-cpu", "alice")],
                gone: vec![],
                transitions: vec![],
            },
            &PollRun {
                id: 0,
                started_at: now,
                finished_at: now,
                refresh: RefreshMode::None,
                outcome: PollOutcome::Ok,
                error_kind: None,
                error: None,
                clusters: None,
                changes: None,
            },
        )
        .unwrap();
    path
}

// ---------------------------------------------------------------- identity and credentials

#[tokio::test]
async fn a_spoofed_identity_header_never_reaches_skypilot() {
    let dir = tempfile::tempdir().unwrap();
    let (url, up, _t) = start_upstream().await;
    let front = start_gateway(&config(&url, &dir.path().join("none.db"))).await;
    let r = client()
        .post(format!("{}/status?all=1", front.base))
        .header("Authorization", basic("alice", "secret"))
        .header("X-Auth-Request-Email", "root")
        .header("x-auth-request-email", "admin@example.com")
        .header("X-AUTH-REQUEST-EMAIL", "eve")
        .header("X-Auth-Request-User", "root")
        .header("X-Forwarded-For", "10.0.0.1")
        .header("X-Forwarded-Host", "evil.example")
        .header("Forwarded", "for=10.0.0.1")
        .header("X-Real-IP", "10.0.0.1")
        .header("Cookie", "session=root; other=1")
        .header("X-Skypilot-Auth-Mode", "token")
        .header("Content-Type", "application/json")
        .body(r#"{"cluster_names":null}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
    let seen = up.seen();
    assert_eq!(seen.len(), 1);
    let h = &seen[0].headers;
    let ids: Vec<_> = h.get_all("x-auth-request-email").iter().collect();
    assert_eq!(ids, vec!["alice"], "identity headers upstream: {h:?}");
    for gone in [
        "authorization",
        "cookie",
        "x-auth-request-user",
        "x-forwarded-for",
        "x-forwarded-host",
        "forwarded",
        "x-real-ip",
        "x-skypilot-auth-mode",
    ] {
        assert!(!h.contains_key(gone), "{gone} reached the upstream: {h:?}");
    }
    assert_eq!(seen[0].method, "POST");
    assert_eq!(seen[0].path_and_query, "/status?all=1");
    assert_eq!(seen[0].body, br#"{"cluster_names":null}"#);
    assert_eq!(
        h.get("host").unwrap().to_str().unwrap(),
        url.trim_start_matches("http://")
    );
}

#[tokio::test]
async fn a_custom_identity_header_is_set_and_stripped() {
    let dir = tempfile::tempdir().unwrap();
    let (url, up, _t) = start_upstream().await;
    let mut c = config(&url, &dir.path().join("none.db"));
    c.web_ui.gateway.identity_header = "X-Team-User".into();
    let front = start_gateway(&c).await;
    let r = client()
        .get(format!("{}/api/status", front.base))
        .header("Authorization", basic("alice", "secret"))
        .header("x-team-user", "root")
        .header("X-Team-User", "root2")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let h = &up.seen()[0].headers;
    let ids: Vec<_> = h.get_all("x-team-user").iter().collect();
    assert_eq!(ids, vec!["alice"]);
}

#[tokio::test]
async fn a_service_account_token_goes_in_the_form_skypilot_verifies() {
    let dir = tempfile::tempdir().unwrap();
    let (url, up, _t) = start_upstream().await;
    let front = start_gateway(&config(&url, &dir.path().join("none.db"))).await;
    let r = client()
        .get(format!("{}/api/status", front.base))
        .header("Authorization", "Bearer sky_abc.def")
        .header("X-Auth-Request-Email", "root")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let h = &up.seen()[0].headers;
    assert_eq!(h.get("authorization").unwrap(), "Bearer sky_abc.def");
    // SkyPilot must verify it (or refuse the request), and the name it carries is the
    // verified one, not the client's.
    assert_eq!(h.get("x-skypilot-auth-mode").unwrap(), "token");
    let ids: Vec<_> = h.get_all("x-auth-request-email").iter().collect();
    assert_eq!(ids, vec!["ci_bot"], "{h:?}");
}

#[tokio::test]
async fn unauthenticated_requests_are_refused_except_the_health_probe() {
    let dir = tempfile::tempdir().unwrap();
    let (url, up, _t) = start_upstream().await;
    let front = start_gateway(&config(&url, &dir.path().join("none.db"))).await;
    let c = client();
    for (method, path) in [
        ("POST", "/status"),
        ("GET", "/api/get?request_id=x"),
        ("GET", "/internal/dashboard/users"),
        (
            "POST",
            "/upload?user_hash=x&upload_id=y&chunk_index=0&total_chunks=1",
        ),
        ("GET", "/dashboard/"),
        ("GET", "/api/health/../status"),
        ("GET", "/api/v1/auth/token?code_verifier=x"),
        ("POST", "/api/health"),
        ("GET", "/token"),
    ] {
        let r = c
            .request(method.parse().unwrap(), format!("{}{path}", front.base))
            .header("X-Auth-Request-Email", "root")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 401, "{method} {path}");
        assert!(r
            .headers()
            .get("www-authenticate")
            .unwrap()
            .to_str()
            .unwrap()
            .starts_with("Basic realm="));
        assert!(r.headers().contains_key("x-skypilot-api-version"));
    }
    // A browser is sent to the console's login, and comes back after.
    let r = c
        .get(format!("{}/dashboard/clusters?x=1", front.base))
        .header("Accept", "text/html,application/xhtml+xml")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 303);
    assert_eq!(
        r.headers().get("location").unwrap(),
        "/console/login?next=%2Fdashboard%2Fclusters%3Fx%3D1"
    );
    // Wrong credentials: 401 from the auth layer, nothing forwarded.
    let r = c
        .post(format!("{}/status", front.base))
        .header("Authorization", basic("alice", "wrong"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    assert!(up.seen().is_empty(), "forwarded: {:?}", up.seen());
    // The health probe passes, stripped of identity, credentials and query.
    let r = c
        .get(format!("{}/api/health?verbose=1", front.base))
        .header("X-Auth-Request-Email", "root")
        .header("Cookie", "x=1")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let seen = up.seen();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].path_and_query, "/api/health");
    assert!(!seen[0].headers.contains_key("x-auth-request-email"));
    assert!(!seen[0].headers.contains_key("cookie"));
}

#[tokio::test]
async fn cookie_sessions_must_show_the_same_origin_for_changes() {
    let dir = tempfile::tempdir().unwrap();
    let (url, up, _t) = start_upstream().await;
    let front = start_gateway(&config(&url, &dir.path().join("none.db"))).await;
    let c = client();
    let host = front.addr.to_string();
    let post = |origin: Option<&str>, site: Option<&str>| {
        let mut b = c
            .post(format!("{}/status", front.base))
            .header("Cookie", "session=alice")
            .body("{}");
        if let Some(o) = origin {
            b = b.header("Origin", o);
        }
        if let Some(s) = site {
            b = b.header("Sec-Fetch-Site", s);
        }
        b.send()
    };
    assert_eq!(post(None, None).await.unwrap().status(), 403);
    assert_eq!(
        post(Some("http://evil.example"), None)
            .await
            .unwrap()
            .status(),
        403
    );
    assert_eq!(post(Some("null"), None).await.unwrap().status(), 403);
    assert_eq!(post(None, Some("cross-site")).await.unwrap().status(), 403);
    assert_eq!(
        post(Some(&format!("http://{host}")), Some("same-site"))
            .await
            .unwrap()
            .status(),
        403
    );
    assert!(up.seen().is_empty());
    assert_eq!(
        post(Some(&format!("http://{host}")), None)
            .await
            .unwrap()
            .status(),
        200
    );
    assert_eq!(post(None, Some("same-origin")).await.unwrap().status(), 200);
    // Reads need no proof; the CLI's Basic credentials need none either.
    let r = c
        .get(format!("{}/api/status", front.base))
        .header("Cookie", "session=alice")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let r = c
        .post(format!("{}/status", front.base))
        .header("Authorization", basic("alice", "secret"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    // But a browser sending Basic credentials cross-site is refused too.
    let r = c
        .post(format!("{}/status", front.base))
        .header("Authorization", basic("alice", "secret"))
        .header("Origin", "http://evil.example")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    assert_eq!(up.seen().len(), 4);
}

// ---------------------------------------------------------------- per-owner control

#[tokio::test]
async fn a_user_acts_only_on_their_own_clusters_and_a_viewer_on_none() {
    let dir = tempfile::tempdir().unwrap();
    let db = owners_db(dir.path());
    let (url, up, _t) = start_upstream().await;
    let front = start_gateway(&config(&url, &db)).await;
    let c = client();
    let send = |path: &str, body: String, who: (&str, &str)| {
        c.post(format!("{}{path}", front.base))
            .header("Authorization", basic(who.0, who.1))
            .header("Content-Type", "application/json")
            .body(body)
            .send()
    };
    let alice = ("alice", "secret");
    for path in [
        "/stop",
        "/down",
        "/internal/dashboard/stop",
        "/%73top",
        "/start",
        "/cancel",
    ] {
        let r = send(path, r#"{"cluster_name":"bobs-gpu"}"#.into(), alice)
            .await
            .unwrap();
        assert_eq!(r.status(), 403, "{path}");
        let text = r.text().await.unwrap();
        assert!(
            text.contains("bobs-gpu") && text.contains("bob") && text.contains("alice"),
            "{path}: {text}"
        );
    }
    let r = send(
        "/autostop",
        r#"{"cluster_name":"bobs-gpu","idle_minutes":5}"#.into(),
        alice,
    )
    .await
    .unwrap();
    assert_eq!(r.status(), 403);
    for body in [
        r#"{"cluster_name":"nobody-knows"}"#,
        r#"{"purge":true}"#,
        "not json",
        r#"{"cluster_names":["alices-cpu","bobs-gpu"]}"#,
    ] {
        let r = send("/down", body.into(), alice).await.unwrap();
        assert_eq!(r.status(), 403, "{body}");
    }
    let r = send(
        "/down",
        format!(r#"{{"cluster_name":"{}"}}"#, "x".repeat(70_000)),
        alice,
    )
    .await
    .unwrap();
    assert_eq!(r.status(), 413);
    // A viewer acts on nothing, not even a cluster of their own name's.
    for path in [
        "/stop",
        "/exec",
        "/launch",
        "/users/update",
        "/workspaces/config",
    ] {
        let r = send(
            path,
            r#"{"cluster_name":"alices-cpu"}"#.into(),
            ("vera", "secret"),
        )
        .await
        .unwrap();
        assert_eq!(r.status(), 403, "viewer {path}");
        let text = r.text().await.unwrap();
        assert!(text.contains("viewer"), "{path}: {text}");
    }
    // Nothing went upstream on their behalf (an unknown cluster was asked of SkyPilot
    // as the host, without an identity).
    let seen = up.seen();
    assert!(
        seen.iter()
            .all(|s| !s.headers.contains_key("x-auth-request-email")),
        "forwarded: {seen:?}"
    );
    let lookups = seen.len();

    // Her own cluster: forwarded with the body intact.
    let body = r#"{"cluster_name":"alices-cpu","purge":false}"#;
    let r = send("/stop", body.into(), alice).await.unwrap();
    assert_eq!(r.status(), 200);
    // An admin acts on anyone's.
    let r = send(
        "/down",
        r#"{"cluster_name":"bobs-gpu"}"#.into(),
        ("root", "admin"),
    )
    .await
    .unwrap();
    assert_eq!(r.status(), 200);
    let seen: Vec<_> = up.seen().into_iter().skip(lookups).collect();
    assert_eq!(seen.len(), 2);
    assert_eq!(seen[0].body, body.as_bytes());
    assert_eq!(
        seen[0].headers.get("x-auth-request-email").unwrap(),
        "alice"
    );
    assert_eq!(
        seen[0].headers.get("content-length").unwrap(),
        &body.len().to_string()
    );
    assert_eq!(seen[1].path_and_query, "/down");
    // A service account is held to the clusters of the user id SkyPilot verified.
    let sa = |auth: &str, cluster: &str| {
        c.post(format!("{}/stop", front.base))
            .header("Authorization", auth)
            .body(format!(r#"{{"cluster_name":"{cluster}"}}"#))
            .send()
    };
    let r = sa("Bearer sky_h-alice", "bobs-gpu").await.unwrap();
    assert_eq!(r.status(), 403);
    assert!(r.text().await.unwrap().contains("bob"));
    let before = up.seen().len();
    let r = sa("Bearer sky_h-alice", "alices-cpu").await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(up.seen().len(), before + 1);
}

// ---------------------------------------------------------------- streams, websockets, uploads

#[tokio::test]
async fn streams_pass_through_as_they_come() {
    let dir = tempfile::tempdir().unwrap();
    let (url, _up, _t) = start_upstream().await;
    let front = start_gateway(&config(&url, &dir.path().join("none.db"))).await;
    let mut r = client()
        .get(format!("{}/api/stream", front.base))
        .header("Authorization", basic("alice", "secret"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers().get("x-accel-buffering").unwrap(), "no");
    let start = std::time::Instant::now();
    let first = r.chunk().await.unwrap().unwrap();
    let first_at = start.elapsed();
    assert_eq!(&first[..], b"chunk0\n");
    let mut rest = Vec::new();
    while let Some(c) = r.chunk().await.unwrap() {
        rest.extend_from_slice(&c);
    }
    let all_at = start.elapsed();
    assert_eq!(rest, b"chunk1\nchunk2\n");
    // The first chunk came before the upstream had sent the others (600 ms later).
    assert!(
        all_at >= first_at + Duration::from_millis(450),
        "first chunk at {first_at:?}, all at {all_at:?}: the body was buffered"
    );
}

#[tokio::test]
async fn websockets_are_upgraded_on_both_sides() {
    let dir = tempfile::tempdir().unwrap();
    let (url, up, _t) = start_upstream().await;
    let front = start_gateway(&config(&url, &dir.path().join("none.db"))).await;
    let mut s = TcpStream::connect(front.addr).await.unwrap();
    let req = format!(
        "GET /ssh-interactive-auth?session_id=s1 HTTP/1.1\r\nHost: {}\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
         Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
         Authorization: {}\r\nX-Auth-Request-Email: root\r\n\r\n",
        front.addr,
        basic("alice", "secret")
    );
    s.write_all(req.as_bytes()).await.unwrap();
    let mut head = Vec::new();
    let mut b = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        assert_eq!(
            s.read(&mut b).await.unwrap(),
            1,
            "closed in the head: {head:?}"
        );
        head.push(b[0]);
    }
    let head = String::from_utf8_lossy(&head).to_lowercase();
    assert!(head.starts_with("http/1.1 101"), "{head}");
    assert!(head.contains("upgrade: websocket"), "{head}");
    s.write_all(b"hello").await.unwrap();
    let mut buf = [0u8; 64];
    let n = tokio::time::timeout(Duration::from_secs(5), s.read(&mut buf))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(&buf[..n], b"echo:hello");
    let seen = up.seen();
    assert_eq!(
        seen[0].headers.get("x-auth-request-email").unwrap(),
        "alice"
    );
    assert_eq!(seen[0].headers.get("upgrade").unwrap(), "websocket");
    // Unauthenticated, the upgrade is refused before it reaches SkyPilot.
    let mut s = TcpStream::connect(front.addr).await.unwrap();
    let req = format!(
        "GET /kubernetes-pod-ssh-proxy HTTP/1.1\r\nHost: {}\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n",
        front.addr
    );
    s.write_all(req.as_bytes()).await.unwrap();
    let mut head = [0u8; 12];
    s.read_exact(&mut head).await.unwrap();
    assert_eq!(&head, b"HTTP/1.1 401");
    // A cross-site websocket of a cookie session is refused (websocket hijacking).
    let mut s = TcpStream::connect(front.addr).await.unwrap();
    let req = format!(
        "GET /ssh-interactive-auth?session_id=s1 HTTP/1.1\r\nHost: {}\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nCookie: session=alice\r\nOrigin: http://evil.example\r\n\r\n",
        front.addr
    );
    s.write_all(req.as_bytes()).await.unwrap();
    s.read_exact(&mut head).await.unwrap();
    assert_eq!(&head, b"HTTP/1.1 403");
    assert_eq!(up.seen().len(), 1);
}

#[tokio::test]
async fn uploads_stream_through_and_redirects_point_at_the_gateway() {
    let dir = tempfile::tempdir().unwrap();
    let (url, up, _t) = start_upstream().await;
    let front = start_gateway(&config(&url, &dir.path().join("none.db"))).await;
    let size: usize = 20 * 1024 * 1024;
    let r = client()
        .post(format!(
            "{}/upload?user_hash=u&upload_id=x&chunk_index=0&total_chunks=1",
            front.base
        ))
        .header("Authorization", basic("alice", "secret"))
        .body(vec![7u8; size])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let seen = up.seen();
    assert_eq!(seen[0].body_len, size);
    assert_eq!(
        seen[0].headers.get("content-length").unwrap(),
        &size.to_string()
    );
    let r = client()
        .get(format!("{}/dashboard", front.base))
        .header("Authorization", basic("alice", "secret"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 307);
    assert_eq!(r.headers().get("location").unwrap(), "/dashboard/");
}

#[tokio::test]
async fn an_unreachable_upstream_is_named_in_the_error() {
    let dir = tempfile::tempdir().unwrap();
    let port = crate::support::host::free_port();
    let url = format!("http://127.0.0.1:{port}");
    let front = start_gateway(&config(&url, &dir.path().join("none.db"))).await;
    let r = client()
        .get(format!("{}/api/status", front.base))
        .header("Authorization", basic("alice", "secret"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 502);
    let text = r.text().await.unwrap();
    assert!(text.contains(&url), "{text}");
    assert!(text.len() < 1000, "{text}");
}

#[test]
fn an_https_upstream_is_refused_at_start_with_the_key() {
    let mut c = Config::default();
    c.skypilot.api_url = "https://sky.example:46580".into();
    let e = Gateway::new(&c).err().unwrap().to_string();
    assert!(
        e.contains("skypilot.api_url") && e.contains("http://"),
        "{e}"
    );
}

// ---------------------------------------------------------------- the real binary

/// `VmRSS` of a process, in KiB.
fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or_else(|| panic!("no VmRSS in /proc/{pid}/status"))
}

/// `skypilot-host web-ui` with one user (alice) in front of `upstream`, serving.
fn start_web_ui(dir: &Path, upstream: &str) -> (crate::support::host::HostProcess, String) {
    crate::support::web::users_file(dir, &[("alice", "alice-password-1", "user")]);
    let port = crate::support::host::free_port();
    let config = dir.join("config.toml");
    std::fs::write(
        &config,
        format!(
            "[skypilot]\napi_url = \"{upstream}\"\n[cluster_manager]\ndatabase = \"{}\"\n\
             [web_ui]\nlisten = \"127.0.0.1:{port}\"\nusers_file = \"{}\"\n",
            dir.join("host.db").display(),
            dir.join("users").display()
        ),
    )
    .unwrap();
    let p = crate::support::host::HostProcess::role("web-ui", &config, &dir.join("web-ui.log"));
    crate::support::host::wait_listening(port, &p);
    let base = format!("http://127.0.0.1:{port}");
    (p, base)
}

/// Sends a `size`-byte body to `path` through `addr` in 1 MiB writes, calling `every`
/// after each 16 MiB; returns the status line.
async fn upload(addr: &str, path: &str, auth: &str, size: u64, mut every: impl FnMut()) -> String {
    let mut s = TcpStream::connect(addr).await.unwrap();
    let head = format!(
        "POST {path} HTTP/1.1\r\nHost: {addr}\r\nAuthorization: {auth}\r\n\
         Content-Type: application/octet-stream\r\nContent-Length: {size}\r\nConnection: close\r\n\r\n"
    );
    s.write_all(head.as_bytes()).await.unwrap();
    let chunk = vec![0x5au8; 1024 * 1024];
    let mut sent = 0u64;
    while sent < size {
        let n = chunk.len().min((size - sent) as usize);
        s.write_all(&chunk[..n]).await.unwrap();
        sent += n as u64;
        if sent % (16 * 1024 * 1024) == 0 {
            every();
        }
    }
    let mut answer = Vec::new();
    s.read_to_end(&mut answer).await.unwrap();
    String::from_utf8_lossy(&answer)
        .lines()
        .next()
        .unwrap_or("")
        .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_500_mb_upload_through_the_web_ui_keeps_its_memory() {
    let dir = tempfile::tempdir().unwrap();
    let (url, up, _t) = start_upstream().await;
    let (web, base) = start_web_ui(dir.path(), &url);
    let addr = base.trim_start_matches("http://").to_string();
    let auth = basic("alice", "alice-password-1");
    let path = "/upload?user_hash=u&upload_id=x&chunk_index=0&total_chunks=1";
    // Warm up: the password check (argon2) and the connection pool.
    let status = upload(&addr, path, &auth, 8 * 1024 * 1024, || {}).await;
    assert!(status.contains(" 200 "), "{status}: {}", web.log_text());
    let pid = web.id();
    let before = rss_kib(pid);
    let mut peak = before;
    let size: u64 = 500 * 1024 * 1024;
    let status = upload(&addr, path, &auth, size, || peak = peak.max(rss_kib(pid))).await;
    assert!(status.contains(" 200 "), "{status}");
    peak = peak.max(rss_kib(pid));
    let seen = up.seen();
    assert_eq!(seen.last().unwrap().body_len as u64, size);
    let grew = peak.saturating_sub(before);
    eprintln!("web-ui VmRSS: {before} KiB before, {peak} KiB at most during 500 MiB (+{grew} KiB)");
    assert!(
        grew < 8 * 1024,
        "the web UI's RSS grew by {grew} KiB during a 500 MiB upload (from {before} KiB): the body is being buffered"
    );
}

// ---------------------------------------------------------------- the real SkyPilot

#[cfg(feature = "real-server")]
mod real {
    use super::*;
    use crate::support::real::{request_records, unique, OwnServer, RealServer};

    /// SkyPilot's user id for a name from the identity header: md5(name), 8 hex digits.
    const ALICE_ID: &str = "6384e2b2";

    /// The request record SkyPilot keeps for `id` (asked directly, as the host does).
    async fn request_record(server: &str, id: &str) -> serde_json::Value {
        request_records(server, &format!("request_ids={id}"))
            .await
            .into_iter()
            .next()
            .unwrap_or_else(|| panic!("no record of request {id}"))
    }

    /// `POST /status` through the web UI at `base` as `authorization`, with a spoofed
    /// identity header that must not count: SkyPilot's record of it (who it ran as).
    async fn status_recorded(server: &str, base: &str, authorization: &str) -> serde_json::Value {
        let r = client()
            .post(format!("{base}/status"))
            .header("Authorization", authorization)
            .header("X-Auth-Request-Email", "root")
            .header("X-Forwarded-For", "10.1.2.3")
            .header("X-SkyPilot-API-Version", "62")
            .json(&serde_json::json!({}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        let id = r
            .headers()
            .get("x-skypilot-request-id")
            .expect("SkyPilot's request id passed back")
            .to_str()
            .unwrap()
            .to_string();
        request_record(server, &id).await
    }

    #[tokio::test]
    async fn skypilot_records_the_logged_in_user_not_the_spoofed_one() {
        let server = RealServer::require();
        let dir = tempfile::tempdir().unwrap();
        let front = start_gateway(&config(&server.url, &dir.path().join("none.db"))).await;
        let rec = status_recorded(&server.url, &front.base, &basic("alice", "secret")).await;
        assert_eq!(rec["user_name"], "alice", "{rec}");
        assert_eq!(rec["user_id"], ALICE_ID, "{rec}");
        // SkyPilot's own view of who asks.
        let h: serde_json::Value = client()
            .get(format!("{}/api/health", front.base))
            .header("Authorization", basic("alice", "secret"))
            .header("X-Auth-Request-Email", "root")
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(h["user"]["name"], "alice", "{h}");
        // The unauthenticated probe reaches it as nobody, whatever header it carries.
        let h: serde_json::Value = client()
            .get(format!("{}/api/health", front.base))
            .header("X-Auth-Request-Email", "root")
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(h["status"], "healthy");
        assert!(h["user"].is_null(), "{h}");
    }

    fn sky(
        front: impl std::fmt::Display,
        credentials: &str,
        home: &Path,
    ) -> tokio::process::Command {
        let venv = std::env::var("SKYPILOT_VENV").expect("SKYPILOT_VENV");
        let mut c = tokio::process::Command::new(Path::new(&venv).join("bin/sky"));
        c.env("HOME", home)
            .env(
                "SKYPILOT_API_SERVER_ENDPOINT",
                format!("http://{credentials}@{front}"),
            )
            .env("SKYPILOT_DISABLE_USAGE_COLLECTION", "1")
            .env_remove("SKY_RUNTIME_DIR")
            .env_remove("SKYPILOT_GLOBAL_CONFIG")
            .kill_on_drop(true);
        c
    }

    async fn run(c: &mut tokio::process::Command, what: &str) -> std::process::Output {
        tokio::time::timeout(Duration::from_secs(240), c.output())
            .await
            .unwrap_or_else(|_| panic!("{what} did not finish within 240 s"))
            .unwrap_or_else(|e| panic!("cannot run {what}: {e}"))
    }

    #[tokio::test]
    async fn the_sky_cli_works_through_the_gateway_and_uploads_through_it() {
        let server = RealServer::require();
        let dir = tempfile::tempdir().unwrap();
        let front = start_gateway(&config(&server.url, &dir.path().join("none.db"))).await;
        let home = dir.path().join("home");
        std::fs::create_dir_all(&home).unwrap();

        let out = run(
            sky(front.addr, "alice:secret", &home).arg("status"),
            "sky status",
        )
        .await;
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            out.status.success(),
            "sky status through the gateway: {text}"
        );
        assert!(text.contains("Clusters"), "{text}");
        assert!(
            front
                .passed
                .lock()
                .unwrap()
                .iter()
                .any(|(m, p, s)| m == "POST" && p == "/status" && *s == 200),
            "no /status through the gateway: {:?}",
            front.passed.lock().unwrap()
        );

        front.passed.lock().unwrap().clear();
        let out = run(
            sky(front.addr, "alice:wrong", &home).arg("status"),
            "sky status",
        )
        .await;
        assert!(
            !out.status.success(),
            "sky status with a wrong password succeeded: {}",
            String::from_utf8_lossy(&out.stdout)
        );
        let passed = front.passed.lock().unwrap().clone();
        assert!(
            passed
                .iter()
                .all(|(_, p, s)| *s == 401 || p == "/api/health"),
            "with a wrong password something other than the health probe passed: {passed:?}"
        );

        // A launch with a workdir: the CLI sees a remote server, so it uploads the workdir
        // (through the gateway; SkyPilot 0.14.1's CLI uses `/upload_v2`) before SkyPilot
        // finds it has no cloud.
        front.passed.lock().unwrap().clear();
        let work = dir.path().join("work");
        std::fs::create_dir_all(&work).unwrap();
        std::fs::write(work.join("train.py"), "print('hello')\n".repeat(1000)).unwrap();
        let name = unique("gw-launch");
        let out = run(
            sky(front.addr, "alice:secret", &home)
                .args(["launch", "-y", "-c", &name, "--workdir"])
                .arg(&work)
                .arg("echo hi"),
            "sky launch",
        )
        .await;
        let passed = front.passed.lock().unwrap().clone();
        assert!(
            passed
                .iter()
                .any(|(m, p, s)| m == "POST" && (p == "/upload" || p == "/upload_v2") && *s == 200),
            "no upload through the gateway (launch: {} {}): {passed:?}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        // SkyPilot recorded the launch as alice's: the cluster it makes is hers.
        let all = request_records(&server.url, "all_status=true").await;
        let launch = all
            .iter()
            .find(|r| r["name"] == "sky.launch" && r["cluster_name"] == name.as_str())
            .unwrap_or_else(|| panic!("no launch request for {name}"));
        assert_eq!(launch["user_name"], "alice", "{launch}");
        assert_eq!(launch["user_id"], ALICE_ID, "{launch}");
        let body: serde_json::Value =
            serde_json::from_str(launch["request_body"].as_str().unwrap()).unwrap();
        assert_eq!(body["env_vars"]["SKYPILOT_USER_ID"], ALICE_ID, "{body}");
    }

    #[tokio::test]
    async fn the_real_web_ui_fronts_the_real_server_for_the_sky_cli() {
        let server = RealServer::require();
        let dir = tempfile::tempdir().unwrap();
        let (web, base) = start_web_ui(dir.path(), &server.url);
        let addr = base.trim_start_matches("http://").to_string();
        let home = dir.path().join("home");
        std::fs::create_dir_all(&home).unwrap();
        let out = run(
            sky(&addr, "alice:alice-password-1", &home).arg("status"),
            "sky status",
        )
        .await;
        assert!(
            out.status.success(),
            "sky status through skypilot-host web-ui: {} {}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
            web.log_text()
        );
        let out = run(
            sky(&addr, "alice:not-her-password", &home).arg("status"),
            "sky status",
        )
        .await;
        assert!(!out.status.success(), "a wrong password worked");
        // What SkyPilot records is alice, whatever header the client adds.
        let rec = status_recorded(&server.url, &base, &basic("alice", "alice-password-1")).await;
        assert_eq!(rec["user_name"], "alice", "{rec}");
        // Unauthenticated: refused with what the CLI needs to start a login.
        let r = client()
            .post(format!("{base}/status"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 401);
        assert!(r.headers().contains_key("x-skypilot-api-version"));
    }

    #[tokio::test]
    async fn a_service_account_token_is_verified_by_skypilot_through_the_gateway() {
        let own = OwnServer::start_with(&[("ENABLE_SERVICE_ACCOUNTS", "true")]);
        let made: serde_json::Value = client()
            .post(format!("{}/users/service-account-tokens", own.url))
            .header("X-Auth-Request-Email", "root")
            .json(&serde_json::json!({"token_name": "ci_bot", "expires_in_days": 1}))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let token = made["token"].as_str().unwrap_or_else(|| panic!("{made}"));
        assert!(token.starts_with("sky_"));
        let dir = tempfile::tempdir().unwrap();
        let front = start_gateway(&config(&own.url, &dir.path().join("none.db"))).await;
        let rec = status_recorded(&own.url, &front.base, &format!("Bearer {token}")).await;
        assert_eq!(rec["user_name"], "ci_bot", "{rec}");
        // A forged token: SkyPilot itself refuses it.
        let r = client()
            .post(format!("{}/status", front.base))
            .header("Authorization", "Bearer sky_forged.token.x")
            .json(&serde_json::json!({}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 401);
    }
}
