//! SkyPilot's API server behind TLS with a private CA: `skypilot.ca_file` makes the
//! client trust it; without it the certificate is refused with a message that says how
//! to fix it.

use std::sync::Arc;

use skypilot_host::cluster_manager::Manager;
use skypilot_host::config::{Config, SkypilotConfig};
use skypilot_host::skypilot::{Client, RefreshMode};
use skypilot_host::store::PollOutcome;
use skypilot_host::time::SystemClock;

use crate::support::sim::{SimCluster, Simulator};
use crate::support::tls::tls_front;

fn skypilot(url: String, ca_file: Option<std::path::PathBuf>) -> SkypilotConfig {
    SkypilotConfig {
        api_url: url,
        ca_file,
        connect_attempts: 1,
        request_timeout_secs: 5,
        ..SkypilotConfig::default()
    }
}

#[tokio::test]
async fn https_with_the_ca_file_reads_status_and_polls() {
    let sim = Simulator::start().await.unwrap();
    sim.add_cluster(SimCluster::new("behind-tls"));
    let front = tls_front(sim.addr()).await;
    let dir = tempfile::tempdir().unwrap();
    let ca = dir.path().join("ca.pem");
    std::fs::write(&ca, &front.ca_pem).unwrap();

    let client = Client::new(&skypilot(front.url(), Some(ca.clone()))).unwrap();
    let health = client.health().await.unwrap();
    assert_eq!(health.status, "healthy");
    let clusters = client.status(RefreshMode::None).await.unwrap();
    let names: Vec<&str> = clusters.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(names, ["behind-tls"]);

    let mut config = Config::default();
    config.skypilot = skypilot(front.url(), Some(ca));
    config.cluster_manager.database = dir.path().join("host.db");
    let mut manager = Manager::new(config, Arc::new(SystemClock)).unwrap();
    let report = manager.poll_once().await;
    assert_eq!(report.outcome, PollOutcome::Ok, "{:?}", report.error);
    assert_eq!(report.clusters, 1);
}

#[tokio::test]
async fn https_without_the_ca_file_is_refused_with_a_hint() {
    let sim = Simulator::start().await.unwrap();
    let front = tls_front(sim.addr()).await;
    let client = Client::new(&skypilot(front.url(), None)).unwrap();
    let err = client.health().await.unwrap_err().to_string();
    assert!(err.contains(&front.url()), "{err}");
    assert!(err.contains("certificate"), "{err}");
    assert!(err.contains("skypilot.ca_file"), "{err}");
    assert!(err.contains("unknown CA"), "{err}");
}

#[tokio::test]
async fn a_ca_file_of_another_ca_is_refused_as_an_unknown_ca() {
    let sim = Simulator::start().await.unwrap();
    let front = tls_front(sim.addr()).await;
    // A CA of another name, as a CA file for the wrong server would be.
    let key = rcgen::KeyPair::generate().unwrap();
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "some other CA");
    let other = params.self_signed(&key).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let ca = dir.path().join("other-ca.pem");
    std::fs::write(&ca, other.pem()).unwrap();
    let client = Client::new(&skypilot(front.url(), Some(ca))).unwrap();
    let err = client.health().await.unwrap_err().to_string();
    assert!(err.contains(&front.url()), "{err}");
    assert!(err.contains("unknown CA"), "{err}");
    assert!(err.contains("skypilot.ca_file"), "{err}");
}

#[tokio::test]
async fn a_ca_file_that_is_not_pem_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let ca = dir.path().join("ca.pem");
    std::fs::write(&ca, "not a certificate\n").unwrap();
    let err = Client::new(&skypilot("https://127.0.0.1:1".into(), Some(ca.clone())))
        .unwrap_err()
        .to_string();
    assert!(err.contains(&ca.display().to_string()), "{err}");
    assert!(err.contains("skypilot.ca_file"), "{err}");
    assert!(
        err.contains("no certificate") || err.contains("not PEM"),
        "{err}"
    );

    let err = Client::new(&skypilot(
        "https://127.0.0.1:1".into(),
        Some(dir.path().into()),
    ))
    .unwrap_err()
    .to_string();
    assert!(err.contains("not a regular file"), "{err}");
}
