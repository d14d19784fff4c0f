//! SkyPilot's answers are read up to `skypilot.max_answer_bytes`: an endless or huge
//! answer fails the poll with a clear error, keeps the state, and never fills memory.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use skypilot_host::store::{PollOutcome, Store};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

const BIN: &str = env!("CARGO_BIN_EXE_skypilot-host");

/// An API server whose `/api/get` answer is `body_mib` MiB of padding, chunked, with no
/// length given: healthy, and then far too talkative.
async fn talkative_server(body_mib: usize) -> std::net::SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut sock, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut req = Vec::new();
                let mut buf = [0u8; 4096];
                while !req.windows(4).any(|w| w == b"\r\n\r\n") {
                    match sock.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => req.extend_from_slice(&buf[..n]),
                    }
                }
                let line = String::from_utf8_lossy(&req)
                    .lines()
                    .next()
                    .unwrap_or("")
                    .to_string();
                if line.starts_with("GET /api/health") {
                    let body = r#"{"status":"healthy","api_version":"62","version":"0.14.1","commit":"x"}"#;
                    let _ = sock
                        .write_all(format!("HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}", body.len()).as_bytes())
                        .await;
                } else if line.starts_with("POST /status") {
                    let _ = sock
                        .write_all(b"HTTP/1.1 200 OK\r\nx-skypilot-request-id: r1\r\ncontent-length: 2\r\nconnection: close\r\n\r\n{}")
                        .await;
                } else {
                    if sock
                        .write_all(b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ntransfer-encoding: chunked\r\nconnection: close\r\n\r\n")
                        .await
                        .is_err()
                    {
                        return;
                    }
                    let piece = vec![b' '; 1024 * 1024];
                    let head = format!("{:x}\r\n", piece.len());
                    for _ in 0..body_mib {
                        if sock.write_all(head.as_bytes()).await.is_err()
                            || sock.write_all(&piece).await.is_err()
                            || sock.write_all(b"\r\n").await.is_err()
                        {
                            return;
                        }
                    }
                    let _ = sock.write_all(b"0\r\n\r\n").await;
                }
            });
        }
    });
    addr
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_huge_answer_fails_the_poll_without_filling_memory() {
    let addr = talkative_server(1024).await;
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("host.db");
    let config = dir.path().join("host.toml");
    std::fs::write(
        &config,
        format!(
            "[skypilot]\napi_url = \"http://{addr}\"\nmax_answer_bytes = 16777216\n[cluster_manager]\ndatabase = \"{}\"\npoll_interval_secs = 60\nforce_refresh_interval_secs = 60\n",
            db.display()
        ),
    )
    .unwrap();
    let mut child = Command::new(BIN)
        .args(["cluster-manager", "--config", config.to_str().unwrap()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let pid = child.id();
    let deadline = Instant::now() + Duration::from_secs(60);
    let failed = loop {
        let polls = Store::open_read_only(&db)
            .and_then(|s| s.recent_polls(10))
            .unwrap_or_default();
        if let Some(p) = polls.iter().find(|p| p.outcome == PollOutcome::Error) {
            break p.clone();
        }
        assert!(Instant::now() < deadline, "no failed poll recorded");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let _ = child.kill();
    let _ = child.wait();
    let error = failed.error.unwrap_or_default();
    assert!(
        error.contains("answer larger than 16777216 bytes"),
        "{error}"
    );
    assert!(error.contains("skypilot.max_answer_bytes"), "{error}");
    assert_eq!(failed.error_kind.as_deref(), Some("too_large"));
    // Peak resident memory: the cap (16 MiB) and the binary, not the 1 GiB answer.
    let peak_kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap();
    assert!(
        peak_kib < 96 * 1024,
        "peak RSS {peak_kib} KiB while refusing a 1 GiB answer"
    );
}
