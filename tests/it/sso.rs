//! Single sign-on and `sky api login`, end to end: the real `skypilot-host web-ui` with a
//! real OpenID Provider (panva/oidc-provider, `tests/oidc/provider.mjs`, run by Node)
//! in front of the real SkyPilot 0.14.1, driven by Chromium (`tests/browser/sso_flow.py`)
//! and SkyPilot's own CLI; a restart of the web UI in the middle.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::support::host::{free_port, wait_listening, HostProcess};
use crate::support::real::{request_records, OwnServer};
use crate::support::web::users_file;

const ROOT: (&str, &str) = ("root", "root-password-1");
const CLIENT: (&str, &str) = ("skypilot-host", "a-test-client-secret");

/// The provider, stopped on drop.
struct Provider {
    child: Child,
    url: String,
}

impl Drop for Provider {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_provider(web_port: u16, log: &Path) -> Provider {
    let root = env!("CARGO_MANIFEST_DIR");
    let port = free_port();
    let base = format!("http://127.0.0.1:{web_port}");
    let child = Command::new(std::env::var("NODE").unwrap_or_else(|_| "node".into()))
        .current_dir(format!("{root}/tests/oidc"))
        .args([
            "provider.mjs",
            &port.to_string(),
            CLIENT.0,
            CLIENT.1,
            &format!("{base}/console/oidc/callback"),
            &format!("{base}/console/login"),
        ])
        .stdout(std::fs::File::create(log).unwrap())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run node for tests/oidc/provider.mjs: {e}"));
    let url = format!("http://127.0.0.1:{port}");
    let started = Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "the provider did not listen: {}",
            std::fs::read_to_string(log).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    Provider { child, url }
}

fn write_config(dir: &Path, upstream: &str, port: u16, issuer: &str) -> std::path::PathBuf {
    users_file(dir, &[(ROOT.0, ROOT.1, "admin")]);
    std::fs::write(dir.join("client-secret"), format!("{}\n", CLIENT.1)).unwrap();
    drop(skypilot_host::store::Store::open(&dir.join("host.db")).unwrap());
    let config = dir.join("config.toml");
    std::fs::write(
        &config,
        format!(
            "[skypilot]\napi_url = \"{upstream}\"\n[cluster_manager]\ndatabase = \"{db}\"\n\
             [web_ui]\nlisten = \"127.0.0.1:{port}\"\nusers_file = \"{users}\"\npublic_url = \"http://127.0.0.1:{port}\"\nrole_sync_interval_secs = 2\n\
             [web_ui.oidc]\nissuer = \"{issuer}\"\nclient_id = \"{id}\"\nclient_secret_file = \"{secret}\"\n\
             admin_groups = [\"sky-admins\"]\nuser_groups = [\"sky-users\"]\nviewer_groups = [\"sky-viewers\"]\ndisplay_name = \"the test provider\"\n",
            db = dir.join("host.db").display(),
            users = dir.join("users").display(),
            id = CLIENT.0,
            secret = dir.join("client-secret").display(),
        ),
    )
    .unwrap();
    config
}

fn browser(phase: &[&str], web: &HostProcess) {
    let root = env!("CARGO_MANIFEST_DIR");
    let python = std::env::var("BROWSER_PYTHON")
        .unwrap_or_else(|_| format!("{root}/.venv/browser/bin/python"));
    let out = Command::new(&python)
        .arg(format!("{root}/tests/browser/sso_flow.py"))
        .args(phase)
        .output()
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

/// OIDC in Chromium, SkyPilot's CLI logging in through the web UI, both surviving a
/// restart, the revoke, and the provider going down (see `tests/browser/sso_flow.py`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn browser_single_sign_on_and_the_cli_login() {
    let server = OwnServer::start_with_config_env("rbac:\n  default_role: viewer\n", &[]);
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let provider = start_provider(port, &dir.path().join("provider.log"));
    let config = write_config(dir.path(), &server.url, port, &provider.url);
    let web = HostProcess::role("web-ui", &config, &dir.path().join("web-ui.log"));
    wait_listening(port, &web);
    let base = format!("http://127.0.0.1:{port}");
    let root = env!("CARGO_MANIFEST_DIR");
    let sky_bin = format!("{}/bin/sky", std::env::var("SKYPILOT_VENV").unwrap());
    let home = dir.path().join("cli-home");
    std::fs::create_dir_all(&home).unwrap();
    let state = dir.path().join("bob-browser.json");
    let shots = format!("{root}/target/screenshots");
    let common = [
        base.clone(),
        provider.url.clone(),
        sky_bin,
        home.display().to_string(),
        state.display().to_string(),
        shots,
    ];
    let args = |phase: &str, extra: &[String]| -> Vec<String> {
        let mut v = vec![phase.to_string()];
        v.extend(common.iter().cloned());
        v.extend(extra.iter().cloned());
        v
    };
    let one = args("1", &[]);
    browser(&one.iter().map(String::as_str).collect::<Vec<_>>(), &web);

    // SkyPilot recorded bob, as the gateway named him, for the CLI's requests.
    let records = request_records(&server.url, "all_status=true").await;
    assert!(
        records
            .iter()
            .any(|r| r["user_name"] == "bob" && r["name"] == "sky.status"),
        "no status request of bob's in SkyPilot: {records:?}"
    );

    // A restart: the session and the CLI login are in the host database.
    let status = web.terminate();
    assert!(
        status.success(),
        "the web UI did not stop cleanly: {status}"
    );
    let web = HostProcess::role("web-ui", &config, &dir.path().join("web-ui-2.log"));
    wait_listening(port, &web);
    let two = args(
        "2",
        &[
            provider.child.id().to_string(),
            ROOT.0.to_string(),
            ROOT.1.to_string(),
        ],
    );
    browser(&two.iter().map(String::as_str).collect::<Vec<_>>(), &web);
    drop(provider);
}
