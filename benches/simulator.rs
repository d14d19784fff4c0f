//! How fast the SkyPilot simulator (tests/support/sim/) serves a large fleet, so that
//! benchmarks built on it know how much of their time is the simulator's.
//!
//!     cargo bench --bench simulator            (results go to stdout; see docs/simulator.md)
//!     SIM_CLUSTERS=1000 cargo bench --bench simulator

#[path = "../tests/support/mod.rs"]
mod support;

use std::error::Error;
use std::time::Instant;

use support::sim::Simulator;

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v.get(v.len() / 2).copied().unwrap_or(f64::NAN)
}

fn main() -> Result<(), Box<dyn Error>> {
    let n: usize = match std::env::var("SIM_CLUSTERS") {
        Ok(v) => v.parse()?,
        Err(_) => 10_000,
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    rt.block_on(run(n))
}

async fn run(n: usize) -> Result<(), Box<dyn Error>> {
    let sim = Simulator::start().await?;
    let mut generate = Vec::new();
    for round in 0..5 {
        sim.clear_clusters();
        let t = Instant::now();
        sim.generate_clusters(&format!("b{round}"), n);
        generate.push(t.elapsed().as_secs_f64() * 1e3);
    }
    let http = reqwest::Client::new();
    let (mut post, mut get, mut size) = (Vec::new(), Vec::new(), 0);
    for _ in 0..21 {
        let t = Instant::now();
        let resp = http
            .post(format!("{}/status", sim.url()))
            .json(&serde_json::json!({"refresh": "NONE"}))
            .send()
            .await?;
        let id = resp
            .headers()
            .get("x-skypilot-request-id")
            .and_then(|v| v.to_str().ok())
            .ok_or("POST /status: no x-skypilot-request-id")?
            .to_string();
        resp.bytes().await?;
        post.push(t.elapsed().as_secs_f64() * 1e3);
        let t = Instant::now();
        let body = http
            .get(format!("{}/api/get", sim.url()))
            .query(&[("request_id", &id)])
            .send()
            .await?
            .bytes()
            .await?;
        get.push(t.elapsed().as_secs_f64() * 1e3);
        size = body.len();
    }
    let mut health = Vec::new();
    for _ in 0..101 {
        let t = Instant::now();
        http.get(format!("{}/api/health", sim.url()))
            .send()
            .await?
            .bytes()
            .await?;
        health.push(t.elapsed().as_secs_f64() * 1e3);
    }
    println!("clusters: {n}");
    println!(
        "generate_clusters: median {:.1} ms (5 runs)",
        median(generate)
    );
    println!("POST /status: median {:.1} ms (21 runs)", median(post));
    println!(
        "GET /api/get: median {:.1} ms, body {size} bytes (21 runs)",
        median(get)
    );
    println!(
        "GET /api/health: median {:.3} ms (101 runs)",
        median(health)
    );
    Ok(())
}
