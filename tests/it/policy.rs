//! `skypilot-host policy`, the real binary: SkyPilot's wire format in and out, the token,
//! refusals, malformed and oversized requests, `policy sky-config`; and, with the
//! `real-server` feature, SkyPilot 0.14.1 itself calling it (its API server's
//! `/validate`, and `admin_policy_utils.apply` from its Python).

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use serde_json::{json, Value};

use crate::support::host::{bin, free_port, HostProcess};

const SAMPLES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/admin-policy");

/// SkyPilot's catalog columns, with prices the tests know.
pub const AWS_CATALOG: &str = "InstanceType,AcceleratorName,AcceleratorCount,vCPUs,MemoryGiB,GpuInfo,Price,SpotPrice,Region,AvailabilityZone\n\
    m6i.large,,,2.0,8.0,,0.096,0.0374,us-west-2,us-west-2a\n\
    m6i.xlarge,,,4.0,16.0,,0.192,0.0748,us-west-2,us-west-2a\n\
    m5.large,,,2.0,8.0,,0.096,0.035,us-west-2,us-west-2b\n\
    m6i.large,,,2.0,8.0,,0.107,0.04,us-east-1,us-east-1a\n\
    p3.2xlarge,V100,1.0,8.0,61.0,,3.06,0.918,us-west-2,us-west-2b\n";

/// The launch policy the tests apply (as `sky-config render` writes it).
pub fn launch_policy() -> Value {
    json!({
        "version": 1,
        "clouds": { "aws": { "region": "us-west-2" } },
        "use_spot": true,
        "max_hourly_price": 1.0,
        "instance_type": "m5.large",
        "autostop_idle_minutes": 60
    })
}

/// A policy set up in a temp dir: launch policy, token, catalog, host config.
pub struct PolicyHost {
    pub dir: tempfile::TempDir,
    pub port: u16,
    pub config: PathBuf,
    pub token_file: PathBuf,
}

impl PolicyHost {
    /// `catalog_dir`: SkyPilot's `.../catalogs/v8` (None: one of the test's own).
    pub fn new(catalog_dir: Option<&Path>, extra: &str) -> PolicyHost {
        let dir = tempfile::tempdir().unwrap();
        let catalog = match catalog_dir {
            Some(c) => c.to_path_buf(),
            None => {
                let c = dir.path().join("catalogs/v8");
                std::fs::create_dir_all(c.join("aws")).unwrap();
                std::fs::write(c.join("aws/vms.csv"), AWS_CATALOG).unwrap();
                c
            }
        };
        let lp = dir.path().join("launch-policy.json");
        std::fs::write(&lp, serde_json::to_string_pretty(&launch_policy()).unwrap()).unwrap();
        let port = free_port();
        let token_file = dir.path().join("token");
        let config = dir.path().join("host.toml");
        std::fs::write(
            &config,
            format!(
                "[policy]\nlisten = \"127.0.0.1:{port}\"\nlaunch_policy = {:?}\ntoken_file = {:?}\ncreate_token = true\ncatalog_dir = {:?}\n{extra}",
                lp.to_str().unwrap(),
                token_file.to_str().unwrap(),
                catalog.to_str().unwrap()
            ),
        )
        .unwrap();
        PolicyHost {
            dir,
            port,
            config,
            token_file,
        }
    }

    /// Starts the binary and waits for `/healthz`.
    pub fn start(&self) -> HostProcess {
        let p = HostProcess::role("policy", &self.config, &self.dir.path().join("policy.log"));
        let url = format!("http://127.0.0.1:{}/healthz", self.port);
        for _ in 0..200 {
            let ok = std::process::Command::new("curl")
                .args(["-fsS", "-o", "/dev/null", &url])
                .stderr(Stdio::null())
                .status()
                .unwrap()
                .success();
            if ok {
                return p;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("the policy did not answer on {url}: {}", p.log_text());
    }

    pub fn token(&self) -> String {
        std::fs::read_to_string(&self.token_file)
            .unwrap()
            .trim()
            .to_string()
    }

    pub fn url(&self) -> String {
        format!(
            "http://127.0.0.1:{}/v1/policy?token={}",
            self.port,
            self.token()
        )
    }
}

/// SkyPilot's body for `task` (YAML): a JSON string holding the request.
fn request_body(task: &str, name: &str) -> String {
    let inner = json!({
        "task": task,
        "skypilot_config": "admin_policy: http://127.0.0.1:1/v1/policy\nactive_workspace: default\n",
        "request_name": name,
        "request_options": null,
        "at_client_side": false,
        "user": "id: abc\nname: alice\n",
        "client_api_version": 62,
        "client_version": "0.14.1"
    });
    Value::String(inner.to_string()).to_string()
}

async fn post(url: &str, body: impl Into<reqwest::Body>) -> (u16, String) {
    let r = reqwest::Client::new()
        .post(url)
        .header("Content-Type", "application/json")
        .body(body)
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.text().await.unwrap())
}

/// The task of an answer, parsed the way SkyPilot does (`json.loads` twice, YAML).
fn answer(body: &str) -> (Value, String) {
    let inner: Value = serde_json::from_str(body).unwrap();
    let obj: Value = serde_json::from_str(inner.as_str().expect("a JSON string")).unwrap();
    let task = skypilot_host::sky_config::yaml::parse(obj["task"].as_str().unwrap()).unwrap();
    (task, obj["skypilot_config"].as_str().unwrap().to_string())
}

#[tokio::test]
async fn the_binary_applies_the_policy_and_guards_it() {
    let host = PolicyHost::new(None, "");
    let policy = host.start();
    let url = host.url();
    assert_eq!(host.token().len(), 64, "a token was created");

    // A bare task gets every default; the config comes back as it was sent.
    let (code, body) = post(
        &url,
        request_body(
            "name: t\nresources:\n  infra: aws\nrun: echo hi\n",
            "launch",
        ),
    )
    .await;
    assert_eq!(code, 200, "{body}");
    let (task, config) = answer(&body);
    let r = &task["resources"];
    assert_eq!(r["infra"], "aws/us-west-2");
    assert_eq!(r["instance_type"], "m5.large");
    assert_eq!(r["use_spot"], true);
    assert_eq!(r["autostop"], json!({"idle_minutes": 60, "down": false}));
    assert_eq!(r["max_hourly_cost"], 1.0);
    assert_eq!(task["run"], "echo hi");
    assert!(
        config.starts_with("admin_policy: http://127.0.0.1:1/v1/policy\n"),
        "{config}"
    );

    // Over the limit: 400 with the text SkyPilot shows the user.
    let (code, body) = post(
        &url,
        request_body(
            "resources:\n  infra: aws\n  instance_type: p3.2xlarge\n  use_spot: false\n",
            "launch",
        ),
    )
    .await;
    assert_eq!(code, 400);
    assert!(
        body.contains("p3.2xlarge") && body.contains("$3.06/hour") && body.contains("$1.00/hour"),
        "{body}"
    );

    // Every captured SkyPilot request is understood.
    for name in [
        "client_launch_request.json",
        "server_validate_request.json",
        "server_jobs_launch_controller_request.json",
    ] {
        let raw = std::fs::read_to_string(format!("{SAMPLES}/{name}")).unwrap();
        let (code, body) = post(&url, raw).await;
        assert_eq!(code, 200, "{name}: {body}");
    }

    // The token.
    let base = format!("http://127.0.0.1:{}/v1/policy", host.port);
    let sample = request_body("name: t\n", "launch");
    let (code, body) = post(&base, sample.clone()).await;
    assert_eq!(code, 403);
    assert!(body.contains("token is missing"), "{body}");
    let (code, body) = post(
        &format!("{base}?token=nope{}", "x".repeat(60)),
        sample.clone(),
    )
    .await;
    assert_eq!(code, 403);
    assert!(body.contains("token is wrong"), "{body}");

    // Malformed requests: 400 saying what was wrong.
    for (b, want) in [
        ("not json".to_string(), "not JSON"),
        (json!({"task": "x"}).to_string(), "not a string"),
        (Value::String("[]".into()).to_string(), "not an object"),
        (request_body("- a\n", "launch"), "not a mapping"),
        (
            request_body("resources:\n  autostop: soon\n", "launch"),
            "autostop",
        ),
    ] {
        let (code, body) = post(&url, b.clone()).await;
        assert_eq!(code, 400, "{b}: {body}");
        assert!(body.contains(want), "{b}: {body}");
    }
    // Too large: 413, and the process keeps serving.
    let (code, _) = post(&url, vec![b'"'; 9 * 1024 * 1024]).await;
    assert_eq!(code, 413);
    let (code, _) = post(&url, sample).await;
    assert_eq!(code, 200);

    let log = policy.log_text();
    assert!(log.contains("launch refused"), "{log}");
    assert!(!log.contains(&host.token()), "the token is never logged");
    let status = policy.terminate();
    assert!(status.success(), "exit status {status}");
}

#[test]
fn the_binary_refuses_to_start_without_its_files() {
    let host = PolicyHost::new(None, "");
    // No launch policy.
    let text = std::fs::read_to_string(&host.config).unwrap();
    let missing = host.dir.path().join("nope.json");
    std::fs::write(
        &host.config,
        text.replace(
            host.dir.path().join("launch-policy.json").to_str().unwrap(),
            missing.to_str().unwrap(),
        ),
    )
    .unwrap();
    let out = bin()
        .args(["policy", "--config"])
        .arg(&host.config)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("nope.json") && err.contains("launch policy"),
        "{err}"
    );

    // No token and not allowed to create one.
    let host = PolicyHost::new(None, "");
    let text = std::fs::read_to_string(&host.config).unwrap();
    std::fs::write(
        &host.config,
        text.replace("create_token = true", "create_token = false"),
    )
    .unwrap();
    let out = bin()
        .args(["policy", "--config"])
        .arg(&host.config)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("token") && err.contains("does not exist"),
        "{err}"
    );

    // A broken launch policy names its key.
    let host = PolicyHost::new(None, "");
    std::fs::write(
        host.dir.path().join("launch-policy.json"),
        r#"{"version": 1, "use_spot": "yes"}"#,
    )
    .unwrap();
    let out = bin()
        .args(["policy", "--config"])
        .arg(&host.config)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("use_spot"), "{err}");
}

#[test]
fn sky_config_gets_the_policy_url_with_its_token() {
    use std::os::unix::fs::PermissionsExt;
    let host = PolicyHost::new(None, "");
    let input = host.dir.path().join("config.yaml");
    std::fs::write(
        &input,
        "allowed_clouds: [aws]\njobs:\n  controller:\n    resources:\n      cpus: 4+\n",
    )
    .unwrap();
    let output = host.dir.path().join("run/config.yaml");
    std::fs::create_dir_all(output.parent().unwrap()).unwrap();
    let run = |out: &Path| {
        bin()
            .args(["policy", "--config"])
            .arg(&host.config)
            .arg("sky-config")
            .arg(&input)
            .arg(out)
            .output()
            .unwrap()
    };
    let out = run(&output);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        !stdout.contains(&host.token()),
        "the token is not printed: {stdout}"
    );
    let written =
        skypilot_host::sky_config::yaml::parse(&std::fs::read_to_string(&output).unwrap()).unwrap();
    assert_eq!(written["admin_policy"], host.url().as_str());
    assert_eq!(written["allowed_clouds"], json!(["aws"]));
    assert_eq!(written["jobs"]["controller"]["resources"]["cpus"], "4+");
    assert_eq!(
        std::fs::metadata(&output).unwrap().permissions().mode() & 0o777,
        0o400
    );
    // Run again (a restart): the read-only file is replaced.
    assert!(run(&output).status.success());
    // A config that already names a policy is refused.
    std::fs::write(&input, "admin_policy: mymodule.Policy\n").unwrap();
    let out = run(&host.dir.path().join("other.yaml"));
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("admin_policy"));
}

#[cfg(feature = "real-server")]
mod real {
    //! SkyPilot 0.14.1 itself calls the policy: an API server of the test's own with
    //! `admin_policy` in its config, and SkyPilot's `admin_policy_utils.apply` in its
    //! Python. Offline: no cloud is needed for either.

    use super::*;
    use crate::support::real::{python, OwnServer};

    /// `tests/real/policy_apply.py REQUEST_NAME TASK_FILE` with SkyPilot's config
    /// pointing at `policy_url`, in `server`'s state (its catalog).
    fn sky_apply(server: &OwnServer, policy_url: &str, request: &str, task: &str) -> Value {
        let dir = tempfile::tempdir().unwrap();
        let cfg = dir.path().join("config.yaml");
        std::fs::write(&cfg, format!("admin_policy: {policy_url}\n")).unwrap();
        let task_file = dir.path().join("task.yaml");
        std::fs::write(&task_file, task).unwrap();
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/real/policy_apply.py");
        let mut c = std::process::Command::new(python());
        server.env_for(&mut c);
        let out = c
            .env("SKYPILOT_GLOBAL_CONFIG", &cfg)
            .arg(script)
            .arg(request)
            .arg(&task_file)
            .arg(dir.path().join("out.json"))
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "policy_apply.py {request}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let written = std::fs::read(dir.path().join("out.json")).unwrap();
        serde_json::from_slice(&written).unwrap_or_else(|e| {
            panic!(
                "policy_apply.py wrote no JSON ({e}): {}",
                String::from_utf8_lossy(&out.stdout)
            )
        })
    }

    /// The jobs controller's own task, as SkyPilot sent it (captured sample).
    fn controller_task() -> String {
        let raw = std::fs::read_to_string(format!(
            "{SAMPLES}/server_jobs_launch_controller_request.json"
        ))
        .unwrap();
        let inner: Value = serde_json::from_str(&raw).unwrap();
        let obj: Value = serde_json::from_str(inner.as_str().unwrap()).unwrap();
        obj["task"].as_str().unwrap().to_string()
    }

    #[tokio::test]
    async fn skypilot_itself_applies_the_policy() {
        // The policy's port and token first: SkyPilot's config names them.
        let host = PolicyHost::new(None, "");
        std::fs::write(&host.token_file, "policy-test-token-0123456789abcdef\n").unwrap();
        let server = OwnServer::start_with_config(
            &format!("admin_policy: {}\n", host.url()),
            Some(AWS_CATALOG),
        );
        // The policy reads SkyPilot's own catalog files.
        let text = std::fs::read_to_string(&host.config).unwrap();
        let own_catalog = host.dir.path().join("catalogs/v8");
        std::fs::write(
            &host.config,
            text.replace(
                own_catalog.to_str().unwrap(),
                server.catalog_dir().to_str().unwrap(),
            ),
        )
        .unwrap();
        let policy = host.start();

        // SkyPilot's Python, as its API server applies it for a launch.
        let bare = "name: t\nresources:\n  infra: aws\nrun: echo hi\n";
        let got = sky_apply(&server, &host.url(), "launch", bare);
        let r = &got["tasks"][0]["resources"];
        assert_eq!(r["infra"], "aws/us-west-2", "{got}");
        assert_eq!(r["instance_type"], "m5.large", "{got}");
        assert_eq!(r["use_spot"], true, "{got}");
        assert_eq!(r["autostop"]["idle_minutes"], 60, "{got}");
        assert_eq!(
            got["config"]["admin_policy"],
            host.url().as_str(),
            "config kept"
        );

        let over = "resources:\n  infra: aws\n  instance_type: p3.2xlarge\n  use_spot: false\nrun: echo hi\n";
        let got = sky_apply(&server, &host.url(), "launch", over);
        let msg = got["rejected"]
            .as_str()
            .unwrap_or_else(|| panic!("not rejected: {got}"));
        assert!(
            msg.contains("p3.2xlarge") && msg.contains("$3.06/hour") && msg.contains("$1.00/hour"),
            "{msg}"
        );

        // A managed job (`sky jobs launch`): its resources get the same defaults and the
        // same price cap, at the API server (jobs.launch) and at the jobs controller
        // when it launches the job's cluster (jobs.launch_cluster).
        let job = "name: j\nresources:\n  infra: aws\n  job_recovery: FAILOVER\nrun: echo hi\n";
        for request in ["jobs.launch", "jobs.launch_cluster"] {
            let got = sky_apply(&server, &host.url(), request, job);
            let r = &got["tasks"][0]["resources"];
            assert_eq!(r["infra"], "aws/us-west-2", "{request}: {got}");
            assert_eq!(r["instance_type"], "m5.large", "{request}: {got}");
            assert_eq!(r["use_spot"], true, "{request}: {got}");
            assert_eq!(
                r["job_recovery"]["strategy"], "FAILOVER",
                "{request}: the job's own recovery is kept: {got}"
            );
            let got = sky_apply(&server, &host.url(), request, over);
            let msg = got["rejected"]
                .as_str()
                .unwrap_or_else(|| panic!("{request}: not rejected: {got}"));
            assert!(
                msg.contains("p3.2xlarge") && msg.contains("$1.00/hour"),
                "{msg}"
            );
        }

        // The jobs controller's own launch passes untouched.
        let ctl = controller_task();
        let got = sky_apply(&server, &host.url(), "jobs.launch_controller", &ctl);
        let r = &got["tasks"][0]["resources"];
        assert_eq!(r["autostop"]["idle_minutes"], 10, "{got}");
        assert!(
            r.get("use_spot").is_none() && r.get("infra").is_none(),
            "{got}"
        );

        // The API server's /validate (server side, offline).
        let http = reqwest::Client::new();
        let validate = |dag: &str| {
            http.post(format!("{}/validate", server.url))
                .header("X-SkyPilot-API-Version", "62")
                .json(&json!({"dag": dag, "request_options": null}))
                .send()
        };
        let r = validate(bare).await.unwrap();
        let code = r.status().as_u16();
        let body = r.text().await.unwrap();
        assert_eq!(code, 200, "validate of the mutated task: {body}");
        let r = validate(over).await.unwrap();
        let code = r.status().as_u16();
        let body = r.text().await.unwrap();
        assert_eq!(code, 400, "{body}");
        assert!(body.contains("UserRequestRejectedByPolicy"), "{body}");
        assert!(
            body.contains("p3.2xlarge") && body.contains("$1.00/hour"),
            "{body}"
        );
        let log = policy.log_text();
        assert!(
            log.contains("request=validate"),
            "the server's validate reached the policy: {log}"
        );
        drop(policy);

        // With policy.controllers = true the controller's launch gets the policy too.
        let both = PolicyHost::new(Some(&server.catalog_dir()), "controllers = true\n");
        let _p2 = both.start();
        let got = sky_apply(&server, &both.url(), "jobs.launch_controller", &ctl);
        let r = &got["tasks"][0]["resources"];
        assert_eq!(r["use_spot"], true, "{got}");
        assert_eq!(r["autostop"]["idle_minutes"], 10, "{got}");
    }
}
