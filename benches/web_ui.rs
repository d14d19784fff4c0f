//! The web UI under load, next to SkyPilot's own round trips for the same fleet.
//!
//!     cargo bench --bench web_ui                       (1,000 clusters, 32 clients, 5 s each)
//!     WEB_CLUSTERS=1000 WEB_CONCURRENCY=32 WEB_SECS=5 cargo bench --bench web_ui
//!     SKYPILOT_URL=http://127.0.0.1:46580 cargo bench --bench web_ui   (also the real server's /status and /api/health)
//!     scripts/bench-web.sh       (the real server holding the same number of clusters, patched and as released)
//!
//! The simulator serves the fleet; the real cluster manager binary records it; the web UI
//! is served in-process. The load is generated in the same process (on the same 2 cores):
//! the figures are a floor. Results: docs/performance.md.

#[path = "../tests/support/mod.rs"]
mod support;

use std::error::Error;
use std::sync::Arc;
use std::time::{Duration, Instant};

use skypilot_host::config::Config;
use skypilot_host::time::{Clock, SystemClock};
use support::clock::TestClock;
use support::host::Host;
use support::sim::Simulator;
use support::web::{http, tokens_file, users_file, Browser, WebUi};

fn env_num(name: &str, default: usize) -> Result<usize, Box<dyn Error>> {
    Ok(match std::env::var(name) {
        Ok(v) => v.parse()?,
        Err(_) => default,
    })
}

struct Load {
    median_ms: f64,
    p99_ms: f64,
    per_sec: f64,
    errors: usize,
}

/// `concurrency` clients send `make()` requests back to back for `secs`.
async fn load(
    concurrency: usize,
    secs: u64,
    make: Arc<dyn Fn() -> reqwest::RequestBuilder + Send + Sync>,
) -> Load {
    let deadline = Instant::now() + Duration::from_secs(secs);
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..concurrency {
        let make = make.clone();
        tasks.push(tokio::spawn(async move {
            let (mut lat, mut errors) = (Vec::new(), 0usize);
            while Instant::now() < deadline {
                let t = Instant::now();
                match make().send().await {
                    Ok(r) if r.status().is_success() => {
                        if r.bytes().await.is_err() {
                            errors += 1;
                        }
                    }
                    _ => errors += 1,
                }
                lat.push(t.elapsed().as_secs_f64() * 1e3);
            }
            (lat, errors)
        }));
    }
    let (mut all, mut errors) = (Vec::new(), 0);
    for t in tasks {
        if let Ok((l, e)) = t.await {
            all.extend(l);
            errors += e;
        }
    }
    let elapsed = started.elapsed().as_secs_f64();
    all.sort_by(|a, b| a.total_cmp(b));
    let pick = |q: f64| {
        all.get(((all.len() as f64 - 1.0) * q) as usize)
            .copied()
            .unwrap_or(f64::NAN)
    };
    Load {
        median_ms: pick(0.5),
        p99_ms: pick(0.99),
        per_sec: all.len() as f64 / elapsed,
        errors,
    }
}

/// `wrk` (when installed) against `url` with `concurrency` connections for `secs`, as a
/// load generator that takes less of the shared CPU than the in-process one: requests
/// per second and the median latency in ms. `None` when `wrk` is not on the PATH. Run
/// off the runtime's workers, which serve the web UI meanwhile.
async fn wrk(
    url: String,
    header: Option<String>,
    concurrency: usize,
    secs: u64,
) -> Option<(f64, String)> {
    tokio::task::spawn_blocking(move || wrk_blocking(&url, header.as_deref(), concurrency, secs))
        .await
        .ok()
        .flatten()
}

fn wrk_blocking(
    url: &str,
    header: Option<&str>,
    concurrency: usize,
    secs: u64,
) -> Option<(f64, String)> {
    let mut cmd = std::process::Command::new("wrk");
    cmd.args(["-t1", "--latency"])
        .arg(format!("-c{concurrency}"))
        .arg(format!("-d{secs}s"));
    if let Some(h) = header {
        cmd.args(["-H", h]);
    }
    let out = cmd.arg(url).output().ok()?;
    let text = String::from_utf8_lossy(&out.stdout);
    let per_sec = text
        .lines()
        .find_map(|l| l.trim().strip_prefix("Requests/sec:"))?
        .trim()
        .parse()
        .ok()?;
    let median = text
        .lines()
        .find_map(|l| l.trim().strip_prefix("50%"))
        .map(|m| m.trim().to_string())
        .unwrap_or_default();
    let errors = text
        .lines()
        .find(|l| l.contains("Non-2xx") || l.contains("Socket errors"));
    if let Some(e) = errors {
        println!("  wrk {url}: {}", e.trim());
    }
    Some((per_sec, median))
}

fn report(what: &str, l: &Load) {
    println!(
        "{what}: median {:.2} ms, p99 {:.2} ms, {:.0} req/s, {} errors",
        l.median_ms, l.p99_ms, l.per_sec, l.errors
    );
}

/// One `/status` round trip of SkyPilot's protocol (POST, then GET /api/get), and how
/// many clusters the answer lists.
async fn status_round_trip(
    http: &reqwest::Client,
    base: &str,
) -> Result<(f64, usize), Box<dyn Error>> {
    let t = Instant::now();
    let resp = http
        .post(format!("{base}/status"))
        .header("X-SkyPilot-API-Version", "62")
        .json(&serde_json::json!({"refresh": "NONE", "all_users": true}))
        .send()
        .await?
        .error_for_status()?;
    let id = resp
        .headers()
        .get("x-skypilot-request-id")
        .and_then(|v| v.to_str().ok())
        .ok_or("POST /status: no x-skypilot-request-id")?
        .to_string();
    resp.bytes().await?;
    let body: serde_json::Value = http
        .get(format!("{base}/api/get?request_id={id}"))
        .header("X-SkyPilot-API-Version", "62")
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?;
    let ms = t.elapsed().as_secs_f64() * 1e3;
    // SkyPilot encodes the return value as a JSON string.
    let value = match &body["return_value"] {
        serde_json::Value::String(s) => serde_json::from_str(s)?,
        v => v.clone(),
    };
    let listed = value
        .as_array()
        .ok_or("GET /api/get: return_value is not a list of clusters")?
        .len();
    Ok((ms, listed))
}

fn main() -> Result<(), Box<dyn Error>> {
    let n = env_num("WEB_CLUSTERS", 1000)?;
    let conc = env_num("WEB_CONCURRENCY", 32)?;
    let secs = env_num("WEB_SECS", 5)? as u64;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let sim = rt.block_on(Simulator::start())?;
    sim.generate_clusters("bench", n);
    let host = Host::new(&sim.url(), 5, 3600);
    let _manager = host.spawn_manager();
    host.wait_status("the fleet is recorded", Duration::from_secs(120), |s| {
        s["clusters"].as_array().is_some_and(|c| c.len() >= n)
    });
    let users = users_file(host.dir.path(), &[("bench", "bench-password", "admin")]);
    let (tokens, token) = tokens_file(host.dir.path(), "bench-bot", "viewer");
    let mut config = Config::default();
    config.skypilot.api_url = sim.url();
    config.cluster_manager.database = host.db.clone();
    config.web_ui.users_file = Some(users);
    config.web_ui.tokens_file = Some(tokens);
    let web = rt.block_on(WebUi::start(config, TestClock::new(SystemClock.now())));
    let base = web.base.clone();
    let mut browser = Browser::new(&base, http());
    rt.block_on(browser.login("bench", "bench-password"));
    let cookie = format!(
        "skyhost_session={}",
        browser.session.clone().unwrap_or_default()
    );
    println!("{n} clusters, {conc} concurrent clients, {secs} s per run, 2-core VM, load generated in-process");

    rt.block_on(async {
        let client = reqwest::Client::builder()
            .pool_max_idle_per_host(conc)
            .build()?;
        // SkyPilot's /status round trip (simulator), one at a time.
        let mut rts = Vec::new();
        for _ in 0..11 {
            rts.push(status_round_trip(&client, &sim.url()).await?.0);
        }
        rts.sort_by(|a, b| a.total_cmp(b));
        let status_ms = rts[rts.len() / 2];
        println!("simulator /status round trip ({n} clusters): median {status_ms:.1} ms (11 runs)");

        let c = client.clone();
        let (b, t) = (base.clone(), token.clone());
        let api = load(conc, secs, Arc::new(move || c.get(format!("{b}/api/v1/clusters")).bearer_auth(&t))).await;
        report("GET /api/v1/clusters (API token)", &api);
        let size = client
            .get(format!("{base}/api/v1/clusters"))
            .bearer_auth(&token)
            .send()
            .await?
            .bytes()
            .await?
            .len();
        let c = client.clone();
        let (b, t) = (base.clone(), token.clone());
        let one = load(1, secs, Arc::new(move || c.get(format!("{b}/api/v1/clusters")).bearer_auth(&t))).await;
        report(&format!("GET /api/v1/clusters (API token), one client at a time, {size} bytes"), &one);
        println!(
            "  one at a time, as a /status round trip is measured: {:.1}x the simulator's /status round trip; {:.0}x faster than the real server's ~1,300 ms (issue 11's figure)",
            status_ms / one.median_ms,
            1300.0 / one.median_ms
        );
        let c = client.clone();
        let (b, k) = (base.clone(), cookie.clone());
        let page = load(conc, secs, Arc::new(move || c.get(format!("{b}/console/clusters")).header("cookie", k.clone()))).await;
        report("GET /console/clusters (session)", &page);
        let c = client.clone();
        let (b, t) = (base.clone(), token.clone());
        let cheap = load(conc, secs, Arc::new(move || c.get(format!("{b}/api/v1/health")).bearer_auth(&t))).await;
        report("GET /api/v1/health (API token, cheapest authenticated)", &cheap);
        let c = client.clone();
        let b = base.clone();
        let basic = load(conc, secs, Arc::new(move || c.get(format!("{b}/api/v1/health")).basic_auth("bench", Some("bench-password")))).await;
        report("GET /api/v1/health (Basic, cached verification)", &basic);
        let c = client.clone();
        let s = sim.url();
        let sim_health = load(conc, secs, Arc::new(move || c.get(format!("{s}/api/health")))).await;
        report("simulator GET /api/health", &sim_health);
        println!(
            "  cheapest authenticated vs the real server's /api/health (~270 req/s, issue 11's figure): {:.0}x",
            cheap.per_sec / 270.0
        );
        if let Ok(real) = std::env::var("SKYPILOT_URL") {
            let label = std::env::var("SKYPILOT_LABEL").unwrap_or_else(|_| "real".into());
            let (mut rts, mut listed) = (Vec::new(), 0);
            for _ in 0..5 {
                let (ms, n) = status_round_trip(&client, &real).await?;
                rts.push(ms);
                listed = n;
            }
            rts.sort_by(|a, b| a.total_cmp(b));
            let real_ms = rts[rts.len() / 2];
            println!("{label} SkyPilot /status round trip ({listed} clusters): median {real_ms:.1} ms (5 runs)");
            println!(
                "  GET /api/v1/clusters ({n} clusters) vs {label} SkyPilot's /status round trip ({listed} clusters), medians: {:.0}x faster one at a time, {:.0}x under {conc}-client load",
                real_ms / one.median_ms,
                real_ms / api.median_ms
            );
            let c = client.clone();
            let r = real.clone();
            let real_health = load(conc, secs, Arc::new(move || c.get(format!("{r}/api/health")))).await;
            report("real SkyPilot GET /api/health", &real_health);
            println!("  cheapest authenticated vs real /api/health: {:.0}x", cheap.per_sec / real_health.per_sec);
            let auth = format!("Authorization: Bearer {token}");
            match (
                wrk(format!("{base}/api/v1/health"), Some(auth.clone()), conc, secs).await,
                wrk(format!("{real}/api/health"), None, conc, secs).await,
            ) {
                (Some((ours, ours_median)), Some((theirs, theirs_median))) => {
                    println!("wrk, {conc} connections, {secs} s: GET /api/v1/health (API token) {ours:.0} req/s (median {ours_median}); {label} SkyPilot GET /api/health {theirs:.0} req/s (median {theirs_median})");
                    println!("  cheapest authenticated vs {label} /api/health, both driven by wrk: {:.0}x", ours / theirs);
                }
                _ => println!("wrk is not installed (or failed): in-process load figures only"),
            }
            if let Some((ours, ours_median)) = wrk(format!("{base}/api/v1/clusters"), Some(auth), conc, secs).await {
                println!("wrk, {conc} connections, {secs} s: GET /api/v1/clusters (API token, {n} clusters) {ours:.0} req/s (median {ours_median})");
            }
        }
        Ok::<(), Box<dyn Error>>(())
    })?;
    rt.block_on(web.stop());
    Ok(())
}
