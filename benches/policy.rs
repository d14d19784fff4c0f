//! Latency benchmark of `skypilot-host policy` (not a test; prints figures).
//!
//! Runs the real binary on loopback with a generated AWS catalog the size of SkyPilot's
//! own (~40,000 rows), and times requests as SkyPilot sends them (one keep-alive
//! connection, one request at a time, the body a JSON string holding the request):
//! - `launch, no instance type`: SkyPilot's captured `launch` request (`cpus: 2+`);
//! - `launch, instance type`: a task naming an instance type (a catalog price lookup);
//! - `refused`: an instance above the price limit (HTTP 400);
//! - `controller`: the jobs controller's own launch, passed through (captured sample).
//!
//! The first request that needs the catalog (it is parsed then) is timed apart.
//!
//! `POLICY_BENCH_RUNS` sets the number of timed requests per kind (500).
//!
//! Run: `cargo bench --bench policy`

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{ensure, Context};

const SAMPLES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/admin-policy");

fn catalog() -> String {
    let mut s = String::from(
        "InstanceType,AcceleratorName,AcceleratorCount,vCPUs,MemoryGiB,GpuInfo,Price,SpotPrice,Region,AvailabilityZone\n",
    );
    let families = [
        "m5", "m6i", "m7i", "c5", "c6i", "c7i", "r5", "r6i", "g5", "p3", "p4d", "t3",
    ];
    let sizes = [
        "large", "xlarge", "2xlarge", "4xlarge", "8xlarge", "12xlarge", "16xlarge", "24xlarge",
    ];
    let regions = [
        "us-east-1",
        "us-east-2",
        "us-west-1",
        "us-west-2",
        "eu-west-1",
        "eu-west-2",
        "eu-central-1",
        "ap-south-1",
        "ap-northeast-1",
        "ap-southeast-1",
        "ca-central-1",
        "sa-east-1",
    ];
    let mut n = 0;
    for (fi, f) in families.iter().enumerate() {
        for (si, size) in sizes.iter().enumerate() {
            for (ri, r) in regions.iter().enumerate() {
                for z in [
                    "a", "b", "c", "d", "e", "f", "g", "h", "i", "j", "k", "l", "m", "n", "o", "p",
                    "q", "r", "s", "t", "u", "v", "w", "x", "y", "z",
                ] {
                    let price =
                        0.05 * (1 << si) as f64 * (1.0 + fi as f64 / 10.0) + ri as f64 / 1000.0;
                    s.push_str(&format!(
                        "{f}.{size},,,{},{},,{price:.4},{:.4},{r},{r}{z}\n",
                        2 << si,
                        8 << si,
                        price * 0.35
                    ));
                    n += 1;
                }
            }
        }
    }
    eprintln!("catalog: {n} rows, {} bytes", s.len());
    s
}

fn body(task: &str, name: &str) -> String {
    let inner = serde_json::json!({
        "task": task,
        "skypilot_config": "admin_policy: http://127.0.0.1:1/v1/policy\nactive_workspace: default\n",
        "request_name": name,
        "request_options": null,
        "at_client_side": false,
        "user": "id: abc\nname: alice\n",
    });
    serde_json::Value::String(inner.to_string()).to_string()
}

/// One HTTP/1.1 request on a kept-alive connection; the status code.
fn request(conn: &mut BufReader<TcpStream>, path: &str, body: &str) -> anyhow::Result<u16> {
    let head = format!(
        "POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    let s = conn.get_mut();
    s.write_all(head.as_bytes())?;
    s.write_all(body.as_bytes())?;
    let mut status = String::new();
    conn.read_line(&mut status)?;
    let code: u16 = status
        .split_whitespace()
        .nth(1)
        .context("no status")?
        .parse()?;
    let mut len = 0usize;
    loop {
        let mut line = String::new();
        conn.read_line(&mut line)?;
        if line == "\r\n" || line.is_empty() {
            break;
        }
        if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
            len = v.trim().parse()?;
        }
    }
    let mut buf = vec![0u8; len];
    conn.read_exact(&mut buf)?;
    Ok(code)
}

struct Guard(Child);
impl Drop for Guard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn stats(mut v: Vec<f64>) -> (f64, f64, f64) {
    v.sort_by(f64::total_cmp);
    let q = |p: f64| v[((v.len() as f64 - 1.0) * p).round() as usize];
    (q(0.5), q(0.99), v[0])
}

fn main() -> anyhow::Result<()> {
    let runs: usize = std::env::var("POLICY_BENCH_RUNS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(500);
    let dir = tempfile::tempdir()?;
    let cat = dir.path().join("catalogs/v8/aws");
    std::fs::create_dir_all(&cat)?;
    std::fs::write(cat.join("vms.csv"), catalog())?;
    std::fs::write(
        dir.path().join("launch-policy.json"),
        r#"{"version": 1, "clouds": {"aws": {"region": "us-west-2"}}, "use_spot": true,
            "max_hourly_price": 1.0, "instance_type": "m5.large", "autostop_idle_minutes": 60}"#,
    )?;
    let token = "bench-token-0123456789abcdef";
    std::fs::write(dir.path().join("token"), token)?;
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let config = dir.path().join("host.toml");
    std::fs::write(
        &config,
        format!(
            "[policy]\nlisten = \"127.0.0.1:{port}\"\nlaunch_policy = {:?}\ntoken_file = {:?}\ncatalog_dir = {:?}\n[log]\nlevel = \"warn\"\n",
            dir.path().join("launch-policy.json"),
            dir.path().join("token"),
            dir.path().join("catalogs/v8"),
        ),
    )?;
    let _child = Guard(
        Command::new(env!("CARGO_BIN_EXE_skypilot-host"))
            .args(["policy", "--config"])
            .arg(&config)
            .stdout(Stdio::null())
            .spawn()?,
    );
    let start = Instant::now();
    let stream = loop {
        if let Ok(s) = TcpStream::connect(("127.0.0.1", port)) {
            break s;
        }
        ensure!(
            start.elapsed() < Duration::from_secs(10),
            "the policy did not listen"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    stream.set_nodelay(true)?;
    let mut conn = BufReader::new(stream);
    let path = format!("/v1/policy?token={token}");

    let launch = std::fs::read_to_string(format!("{SAMPLES}/server_launch_request.json"))?;
    let controller = std::fs::read_to_string(format!(
        "{SAMPLES}/server_jobs_launch_controller_request.json"
    ))?;
    let typed = body(
        "name: t\nresources:\n  infra: aws/us-west-2\n  instance_type: m6i.xlarge\nrun: echo hi\n",
        "launch",
    );
    let refused = body(
        "name: t\nresources:\n  infra: aws\n  instance_type: p4d.24xlarge\n  use_spot: false\nrun: echo hi\n",
        "launch",
    );

    let t = Instant::now();
    let code = request(&mut conn, &path, &typed)?;
    ensure!(code == 200, "first request: HTTP {code}");
    println!(
        "first request with a price lookup (parses the catalog): {:.1} ms",
        t.elapsed().as_secs_f64() * 1e3
    );

    println!("policy endpoint, {runs} requests each, one keep-alive connection (ms):");
    println!("{:32} {:>8} {:>8} {:>8}", "request", "median", "p99", "min");
    for (name, b, want) in [
        ("launch, no instance type", &launch, 200),
        ("launch, instance type", &typed, 200),
        ("refused (over the limit)", &refused, 400),
        ("controller (passed through)", &controller, 200),
    ] {
        for _ in 0..20 {
            request(&mut conn, &path, b)?;
        }
        let mut times = Vec::with_capacity(runs);
        for _ in 0..runs {
            let t = Instant::now();
            let code = request(&mut conn, &path, b)?;
            times.push(t.elapsed().as_secs_f64() * 1e3);
            ensure!(code == want, "{name}: HTTP {code}, expected {want}");
        }
        let (med, p99, min) = stats(times);
        println!("{name:32} {med:8.3} {p99:8.3} {min:8.3}");
    }
    Ok(())
}
