//! The host roles in front of a remote SkyPilot (`apiServer.enable = false` in the
//! module): the real SkyPilot 0.14.1 API server with service accounts enabled
//! (`ENABLE_SERVICE_ACCOUNTS=true`), a token made through its own API
//! (`POST /users/service-account-tokens`), and the real cluster manager with
//! `skypilot.token_file`, over plain HTTP and through a TLS endpoint with a private CA
//! (`skypilot.ca_file`). A wrong token and an unknown CA are refused with errors that say
//! so and name the URL.

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use serde_json::{json, Value};

use crate::support::host::{cluster, Host, HostProcess};
use crate::support::real::{unique, OwnServer};
use crate::support::tls::tls_front;

/// A service-account token made through the server's own API. The request comes from
/// loopback with an identity header, which SkyPilot trusts (an admin, by default).
async fn make_token(url: &str, name: &str) -> String {
    let resp = reqwest::Client::new()
        .post(format!("{url}/users/service-account-tokens"))
        .header("X-Auth-Request-Email", "admin@example.com")
        .json(&json!({"token_name": name, "expires_in_days": 0}))
        .send()
        .await
        .unwrap();
    let status = resp.status();
    let body: Value = resp.json().await.unwrap();
    assert!(status.is_success(), "token creation: {status} {body}");
    let token = body["token"].as_str().unwrap().to_string();
    assert!(token.starts_with("sky_"), "{body}");
    token
}

/// The cluster manager for `url` with `token_file` (and `ca_file`), polling every second.
fn manager(url: &str, token: &Path, ca: Option<&Path>) -> (Host, HostProcess) {
    let host = Host::new(url, 1, 300);
    let mut extra = format!("token_file = {:?}\n", token.to_str().unwrap());
    if let Some(ca) = ca {
        extra.push_str(&format!("ca_file = {:?}\n", ca.to_str().unwrap()));
    }
    let text = std::fs::read_to_string(&host.config)
        .unwrap()
        .replace("[skypilot]\n", &format!("[skypilot]\n{extra}"))
        .replace("request_timeout_secs = 5", "request_timeout_secs = 30");
    std::fs::write(&host.config, text).unwrap();
    let process = host.spawn_manager();
    (host, process)
}

fn lists(s: &Value, name: &str) -> bool {
    s["state"]["stale"] == false && cluster(s, name).is_some_and(|c| c["status"] == "UP")
}

fn failed_with(s: &Value) -> Option<&str> {
    if s["state"]["stale"] == true {
        s["state"]["last_error"].as_str()
    } else {
        None
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cluster_manager_reads_a_remote_skypilot_with_a_service_account_token() {
    let server = OwnServer::start_with(&[("ENABLE_SERVICE_ACCOUNTS", "true")]);
    let name = unique("remote");
    server.skyctl(&["create", &name]);
    let token = make_token(&server.url, "hostroles").await;

    // The token is the service account's identity on that server.
    let health: Value = reqwest::Client::new()
        .get(format!("{}/api/health", server.url))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(health["user"]["name"], "hostroles", "{health}");
    assert_eq!(health["service_account_token_enabled"], true, "{health}");

    let dir = tempfile::tempdir().unwrap();
    let good = dir.path().join("token");
    std::fs::write(&good, format!("{token}\n")).unwrap();
    let wrong = dir.path().join("wrong-token");
    std::fs::write(&wrong, "sky_not.a.token\n").unwrap();

    // Over HTTP with the token: the clusters, fresh.
    let (host, m) = manager(&server.url, &good, None);
    host.wait_status(
        "the cluster through the token",
        Duration::from_secs(90),
        |s| lists(s, &name),
    );
    m.terminate();

    // A wrong token: stale, with an error that names the URL and says the token was
    // rejected.
    let (host, mut m) = manager(&server.url, &wrong, None);
    let s = host.wait_status("the wrong token refused", Duration::from_secs(60), |s| {
        failed_with(s).is_some_and(|e| e.contains("token rejected"))
    });
    let error = failed_with(&s).unwrap();
    assert!(error.contains(&server.url), "{error}");
    assert!(error.contains("skypilot.token_file"), "{error}");
    assert!(
        !error.contains("not.a.token"),
        "the token is never shown: {error}"
    );
    assert!(cluster(&s, &name).is_none());
    assert!(m.is_running(), "{}", m.log_text());
    m.terminate();

    // Through TLS with a private CA: with ca_file it works, without it the unknown CA is
    // refused.
    let upstream: SocketAddr = server.url.trim_start_matches("http://").parse().unwrap();
    let front = tls_front(upstream).await;
    let ca = dir.path().join("ca.pem");
    std::fs::write(&ca, &front.ca_pem).unwrap();
    let (host, m) = manager(&front.url(), &good, Some(&ca));
    host.wait_status(
        "the cluster through TLS and the token",
        Duration::from_secs(90),
        |s| lists(s, &name),
    );
    m.terminate();

    let (host, m) = manager(&front.url(), &good, None);
    let s = host.wait_status("the unknown CA refused", Duration::from_secs(60), |s| {
        failed_with(s).is_some_and(|e| e.contains("unknown CA"))
    });
    let error = failed_with(&s).unwrap();
    assert!(error.contains(&front.url()), "{error}");
    assert!(error.contains("skypilot.ca_file"), "{error}");
    m.terminate();
}
