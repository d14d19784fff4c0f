//! The gateway's added latency: the same request straight to an upstream and through the
//! gateway, one at a time over kept-alive connections, alternating; medians compared.
//!
//! The upstream is SkyPilot's API server when `SKYPILOT_BENCH_API_URL` is set (its
//! `/api/health`), else a minimal in-process server answering the same path with a small
//! JSON body, which isolates the gateway's own cost. The gateway runs in-process behind a
//! layer that inserts an identity (the web UI's auth layer is not part of this figure).
//!
//! A third series sends the identity header the gateway sets straight to the upstream:
//! SkyPilot does more for a named user than for an anonymous one, and that is its cost,
//! not the gateway's.
//!
//! `cargo bench --bench gateway` (optionally `SKYPILOT_BENCH_API_URL=http://127.0.0.1:46580`;
//! `scripts/bench-web.sh` runs it against a real server).

use std::time::{Duration, Instant};

use axum::extract::Request;
use axum::middleware::Next;
use axum::response::Response;
use axum::serve::ListenerExt;
use axum::Router;
use skypilot_host::config::Config;
use skypilot_host::web_ui::gateway::Gateway;
use skypilot_host::web_ui::identity::{AuthMethod, Identity, Role};
use tokio::net::TcpListener;

const ROUNDS: usize = 2000;

async fn as_alice(mut req: Request, next: Next) -> Response {
    req.extensions_mut()
        .insert(Identity::named("alice", Role::Admin, AuthMethod::Basic));
    next.run(req).await
}

async fn serve(app: Router) -> String {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", l.local_addr().unwrap());
    // TCP_NODELAY as the service's own server sets it (src/http.rs): without it a
    // response whose headers and body leave in two writes waits ~40 ms for a delayed ACK.
    tokio::spawn(async move {
        let l = l.tap_io(|tcp| {
            let _ = tcp.set_nodelay(true);
        });
        let _ = axum::serve(l, app).await;
    });
    url
}

fn median(v: &mut [Duration]) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn p99(v: &[Duration]) -> Duration {
    v[v.len() * 99 / 100]
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let (upstream, what) = match std::env::var("SKYPILOT_BENCH_API_URL") {
        Ok(u) => (u, "SkyPilot's API server"),
        Err(_) => {
            let app = Router::new().fallback(|| async {
                axum::Json(serde_json::json!({"status": "healthy", "api_version": "62"}))
            });
            (serve(app).await, "a minimal in-process upstream")
        }
    };
    let mut config = Config::default();
    config.skypilot.api_url = upstream.clone();
    // The audit of writes goes to a host database of the bench's own.
    let dir = tempfile::tempdir().unwrap();
    config.cluster_manager.database = dir.path().join("host.db");
    drop(skypilot_host::store::Store::open(&config.cluster_manager.database).unwrap());
    let gw = Gateway::new(&config).unwrap();
    let front = serve(gw.router().layer(axum::middleware::from_fn(as_alice))).await;
    let client = reqwest::Client::new();
    let identity = config.web_ui.gateway.identity_header.clone();
    // `as_user`: the identity header the gateway sets, sent straight to the upstream, so
    // SkyPilot's own work for a named user is told apart from the gateway's.
    let get = |base: String, as_user: bool| {
        let client = client.clone();
        let identity = identity.clone();
        async move {
            let t = Instant::now();
            let mut req = client
                .get(format!("{base}/api/health"))
                .header("X-SkyPilot-API-Version", "62");
            if as_user {
                req = req.header(identity.as_str(), "alice");
            }
            let r = req.send().await.unwrap();
            assert!(r.status().is_success(), "{base}: {}", r.status());
            r.bytes().await.unwrap();
            t.elapsed()
        }
    };
    for _ in 0..100 {
        get(upstream.clone(), false).await;
        get(upstream.clone(), true).await;
        get(front.clone(), false).await;
    }
    let mut direct = Vec::with_capacity(ROUNDS);
    let mut direct_user = Vec::with_capacity(ROUNDS);
    let mut through = Vec::with_capacity(ROUNDS);
    for _ in 0..ROUNDS {
        direct.push(get(upstream.clone(), false).await);
        direct_user.push(get(upstream.clone(), true).await);
        through.push(get(front.clone(), false).await);
    }
    let (d, u, g) = (
        median(&mut direct),
        median(&mut direct_user),
        median(&mut through),
    );
    println!(
        "upstream: {what} ({upstream}), {ROUNDS} sequential GET /api/health each way, interleaved"
    );
    println!(
        "direct:                     median {:>8.3} ms   p99 {:>8.3} ms",
        d.as_secs_f64() * 1e3,
        p99(&direct).as_secs_f64() * 1e3
    );
    println!(
        "direct, with {identity}: median {:>8.3} ms   p99 {:>8.3} ms",
        u.as_secs_f64() * 1e3,
        p99(&direct_user).as_secs_f64() * 1e3
    );
    println!(
        "through gateway:            median {:>8.3} ms   p99 {:>8.3} ms",
        g.as_secs_f64() * 1e3,
        p99(&through).as_secs_f64() * 1e3
    );
    println!(
        "added by the gateway itself (median, vs direct with the same identity): {:.3} ms",
        (g.as_secs_f64() - u.as_secs_f64()) * 1e3
    );
    println!(
        "added in all as a client sees it (median, vs direct without identity): {:.3} ms",
        (g.as_secs_f64() - d.as_secs_f64()) * 1e3
    );

    // A write (`POST /stop`, as an admin): the route table's decision, the body read for
    // the cluster's name, and one audit row appended to the host database. Against the
    // in-process upstream only (SkyPilot would queue 2,000 stops).
    if std::env::var("SKYPILOT_BENCH_API_URL").is_ok() {
        return;
    }
    let post = |base: String| {
        let client = client.clone();
        async move {
            let t = Instant::now();
            let r = client
                .post(format!("{base}/stop"))
                .header("X-SkyPilot-API-Version", "62")
                .json(&serde_json::json!({"cluster_name": "bench-cluster"}))
                .send()
                .await
                .unwrap();
            assert!(r.status().is_success(), "{base}: {}", r.status());
            r.bytes().await.unwrap();
            t.elapsed()
        }
    };
    for _ in 0..100 {
        post(upstream.clone()).await;
        post(front.clone()).await;
    }
    let mut direct = Vec::with_capacity(ROUNDS);
    let mut through = Vec::with_capacity(ROUNDS);
    for _ in 0..ROUNDS {
        direct.push(post(upstream.clone()).await);
        through.push(post(front.clone()).await);
    }
    let (d, g) = (median(&mut direct), median(&mut through));
    println!(
        "POST /stop direct:          median {:>8.3} ms   p99 {:>8.3} ms",
        d.as_secs_f64() * 1e3,
        p99(&direct).as_secs_f64() * 1e3
    );
    println!(
        "POST /stop through gateway: median {:>8.3} ms   p99 {:>8.3} ms (audited)",
        g.as_secs_f64() * 1e3,
        p99(&through).as_secs_f64() * 1e3
    );
    println!(
        "added by the gateway to an audited write (median): {:.3} ms",
        (g.as_secs_f64() - d.as_secs_f64()) * 1e3
    );
}
