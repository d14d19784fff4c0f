//! The real SkyPilot API server that `scripts/test.sh` starts, SkyPilot's own Python
//! from the same venv, and `tests/real/skyctl.py` to create and change clusters in the
//! server's state through SkyPilot's own Python API.
//!
//! One server serves every test of the run, in parallel: tests name their clusters
//! uniquely (see [`unique`]) and never assume the fleet is empty.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

/// The variables `scripts/test.sh` exports for the server's state, and the names SkyPilot
/// reads them under.
const SERVER_ENV: [(&str, &str); 3] = [
    ("SKYPILOT_TEST_HOME", "HOME"),
    ("SKYPILOT_TEST_RUNTIME_DIR", "SKY_RUNTIME_DIR"),
    ("SKYPILOT_TEST_GLOBAL_CONFIG", "SKYPILOT_GLOBAL_CONFIG"),
];

fn var(name: &str) -> Result<String, String> {
    std::env::var(name).map_err(|_| {
        format!(
            "environment variable {name} is not set: tests built with --features real-server \
             must be run by scripts/test.sh, which starts SkyPilot's API server and exports it"
        )
    })
}

fn require(name: &str) -> String {
    var(name).unwrap_or_else(|e| panic!("{e}"))
}

/// The environment `scripts/test.sh` exports for tests that need the real server.
#[derive(Debug, Clone)]
pub struct RealServer {
    /// `SKYPILOT_TEST_API_URL`, e.g. `http://127.0.0.1:46581`.
    pub url: String,
    /// `$SKYPILOT_VENV/bin/python`.
    pub python: PathBuf,
    /// The environment the server runs with, for skyctl.py.
    pub env: Vec<(String, String)>,
}

impl RealServer {
    /// Read the environment; an error names the missing variable.
    pub fn from_env() -> Result<RealServer, String> {
        let url = var("SKYPILOT_TEST_API_URL")?;
        let venv = var("SKYPILOT_VENV")?;
        let mut env = Vec::new();
        for (ours, theirs) in SERVER_ENV {
            env.push((theirs.to_string(), var(ours)?));
        }
        env.push((
            "SKYPILOT_DISABLE_USAGE_COLLECTION".to_string(),
            "1".to_string(),
        ));
        Ok(RealServer {
            url: url.trim_end_matches('/').to_string(),
            python: PathBuf::from(venv).join("bin").join("python"),
            env,
        })
    }

    /// Like [`from_env`](Self::from_env), panicking with the reason (for tests).
    pub fn require() -> RealServer {
        match RealServer::from_env() {
            Ok(r) => r,
            Err(e) => panic!("{e}"),
        }
    }

    /// Run `skyctl.py ARGS` in the server's environment; an error carries its stderr.
    pub async fn skyctl(&self, args: &[&str]) -> Result<(), String> {
        let command: Vec<String> = args.iter().map(|a| a.to_string()).collect();
        self.skyctl_batch(&[command]).await
    }

    /// Run several skyctl.py commands in one Python process, in order: SkyPilot is
    /// imported once instead of once per command, which is most of a command's time.
    pub async fn skyctl_batch(&self, commands: &[Vec<String>]) -> Result<(), String> {
        const RUNNER: &str = r#"
import json, runpy, sys
script, commands = sys.argv[1], json.loads(sys.argv[2])
for command in commands:
    sys.argv = [script] + command
    try:
        runpy.run_path(script, run_name='__main__')
    except SystemExit as e:
        if e.code not in (0, None):
            sys.exit('skyctl.py %s failed: %s' % (' '.join(command), e.code))
"#;
        let script = skyctl_script();
        let list = serde_json::to_string(commands).map_err(|e| e.to_string())?;
        let out = tokio::process::Command::new(&self.python)
            .arg("-c")
            .arg(RUNNER)
            .arg(&script)
            .arg(&list)
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .output()
            .await
            .map_err(|e| format!("cannot run {}: {e}", self.python.display()))?;
        if out.status.success() {
            Ok(())
        } else {
            Err(format!(
                "skyctl.py {} failed ({}): {}",
                script.display(),
                out.status,
                String::from_utf8_lossy(&out.stderr)
            ))
        }
    }
}

/// `tests/real/skyctl.py`.
pub fn skyctl_script() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests")
        .join("real")
        .join("skyctl.py")
}

/// Base URL of the real API server (`SKYPILOT_TEST_API_URL`).
pub fn api_url() -> String {
    require("SKYPILOT_TEST_API_URL")
}

/// The venv's Python, which has SkyPilot 0.14.1 (`$SKYPILOT_VENV/bin/python`). Needs only
/// `SKYPILOT_VENV`, not the server.
pub fn python() -> PathBuf {
    PathBuf::from(require("SKYPILOT_VENV")).join("bin/python")
}

/// A `Command` for SkyPilot's Python with the server's environment (HOME,
/// SKY_RUNTIME_DIR, SKYPILOT_GLOBAL_CONFIG), so it reads and writes the server's state.
pub fn sky_python() -> Command {
    let mut c = Command::new(python());
    for (ours, theirs) in SERVER_ENV {
        c.env(theirs, require(ours));
    }
    c.env("SKYPILOT_DISABLE_USAGE_COLLECTION", "1");
    c
}

/// Runs `tests/real/skyctl.py ARGS` against the server's state; panics with its output
/// when it fails.
pub fn skyctl(args: &[&str]) {
    let out = sky_python()
        .arg(skyctl_script())
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run skyctl.py: {e}"));
    assert!(
        out.status.success(),
        "skyctl.py {args:?} failed: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A cluster name unique to this test run and call site.
pub fn unique(prefix: &str) -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    format!(
        "{prefix}-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// A SkyPilot API server of a test's own, with its own state dir and port, for tests
/// that kill and restart it. Killed (its whole process group) on drop.
pub struct OwnServer {
    dir: tempfile::TempDir,
    port: u16,
    pub url: String,
    /// The server's main process, leader of its own process group.
    child: Option<Child>,
    /// More environment for the server and skyctl.py (e.g. SKYPILOT_DB_CONNECTION_URI).
    extra_env: Vec<(String, String)>,
    /// tests/real/reachability.py: the two addresses SkyPilot probes before
    /// `/serve/status`, reached through it (stops when its stdin closes, on Drop).
    reachability: Option<Child>,
}

impl OwnServer {
    pub fn start() -> OwnServer {
        OwnServer::start_full("{}\n", None, &[])
    }

    /// A server with more environment: `SKYPILOT_DB_CONNECTION_URI` puts its state in
    /// PostgreSQL (skyctl.py then writes there too), `ENABLE_SERVICE_ACCOUNTS=true`
    /// turns on service-account tokens.
    #[allow(dead_code)]
    pub fn start_with(extra_env: &[(&str, &str)]) -> OwnServer {
        OwnServer::start_full("{}\n", None, extra_env)
    }

    /// A server whose config.yaml is `config`, and whose AWS catalog is `aws_catalog`
    /// (CSV) instead of skyctl.py's.
    #[allow(dead_code)]
    pub fn start_with_config(config: &str, aws_catalog: Option<&str>) -> OwnServer {
        OwnServer::start_full(config, aws_catalog, &[])
    }

    /// A server whose config.yaml is `config`, with more environment.
    #[allow(dead_code)]
    pub fn start_with_config_env(config: &str, extra_env: &[(&str, &str)]) -> OwnServer {
        OwnServer::start_full(config, None, extra_env)
    }

    fn start_full(
        config: &str,
        aws_catalog: Option<&str>,
        extra_env: &[(&str, &str)],
    ) -> OwnServer {
        let dir = tempfile::tempdir().unwrap();
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        let mut s = OwnServer {
            url: format!("http://127.0.0.1:{port}"),
            dir,
            port,
            child: None,
            extra_env: extra_env
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            reachability: None,
        };
        s.start_reachability();
        for d in ["home", "runtime"] {
            std::fs::create_dir_all(s.dir.path().join(d)).unwrap();
        }
        std::fs::write(s.dir.path().join("config.yaml"), config).unwrap();
        s.skyctl(&["catalog"]);
        if let Some(csv) = aws_catalog {
            std::fs::write(s.catalog_dir().join("aws/vms.csv"), csv).unwrap();
        }
        // SkyPilot derives its internal queue manager's port from the server's port; when
        // another process (a parallel test) holds that one, the server exits saying so:
        // start again on another port.
        for attempt in 1.. {
            match s.try_spawn() {
                Ok(()) => break,
                Err(log) if attempt < 4 => {
                    eprintln!("own SkyPilot server: port clash, trying another port: {log}");
                    s.stop();
                    s.port = {
                        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
                        l.local_addr().unwrap().port()
                    };
                    s.url = format!("http://127.0.0.1:{}", s.port);
                }
                Err(log) => panic!("own SkyPilot server not healthy: {log}"),
            }
        }
        s
    }

    /// Starts tests/real/reachability.py for this server and puts it in the server's
    /// environment as its HTTPS proxy.
    fn start_reachability(&mut self) {
        use std::io::BufRead;
        let script = skyctl_script().with_file_name("reachability.py");
        let mut child = Command::new(python())
            .arg(script)
            .arg(self.dir.path())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let mut line = String::new();
        std::io::BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let port: u16 = line
            .trim()
            .parse()
            .unwrap_or_else(|_| panic!("reachability.py printed {line:?}, not its port"));
        let bundle = self.dir.path().join("ca-bundle.pem");
        self.extra_env.extend([
            ("HTTPS_PROXY".into(), format!("http://127.0.0.1:{port}")),
            ("NO_PROXY".into(), "127.0.0.1,localhost,::1".into()),
            ("REQUESTS_CA_BUNDLE".into(), bundle.display().to_string()),
        ]);
        self.reachability = Some(child);
    }

    /// Makes the addresses SkyPilot probes unreachable (`down`) or reachable again: its
    /// `/serve/status` then fails as on a host whose network is down.
    #[allow(dead_code)]
    pub fn set_network_down(&self, down: bool) {
        let flag = self.dir.path().join("reachability.down");
        if down {
            std::fs::write(flag, b"").unwrap();
        } else {
            let _ = std::fs::remove_file(flag);
        }
    }

    /// SkyPilot's catalog directory of this server (`$SKY_RUNTIME_DIR/.sky/catalogs/v8`).
    #[allow(dead_code)]
    pub fn catalog_dir(&self) -> std::path::PathBuf {
        self.dir.path().join("runtime/.sky/catalogs/v8")
    }

    /// The server's environment (HOME, SKY_RUNTIME_DIR, SKYPILOT_GLOBAL_CONFIG) on `c`.
    #[allow(dead_code)]
    pub fn env_for(&self, c: &mut Command) {
        self.env(c);
    }

    fn env(&self, c: &mut Command) {
        let d = self.dir.path();
        c.env("HOME", d.join("home"))
            .env("SKY_RUNTIME_DIR", d.join("runtime"))
            .env("SKYPILOT_GLOBAL_CONFIG", d.join("config.yaml"))
            .env("SKYPILOT_DISABLE_USAGE_COLLECTION", "1")
            .envs(self.extra_env.iter().map(|(k, v)| (k, v)));
    }

    pub fn skyctl(&self, args: &[&str]) {
        self.skyctl_output(args);
    }

    /// Runs `skyctl.py ARGS` in the server's environment, which must succeed: its stdout.
    pub fn skyctl_output(&self, args: &[&str]) -> String {
        let mut c = Command::new(python());
        self.env(&mut c);
        if self
            .extra_env
            .iter()
            .any(|(k, _)| k == "SKYPILOT_DB_CONNECTION_URI")
        {
            // SkyPilot reads the database URI only in a server process
            // (sky/utils/db/db_utils.py); skyctl.py writes the server's state.
            c.env("IS_SKYPILOT_SERVER", "true");
        }
        let out = c.arg(skyctl_script()).args(args).output().unwrap();
        assert!(
            out.status.success(),
            "skyctl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn spawn(&mut self) {
        if let Err(log) = self.try_spawn() {
            panic!("own SkyPilot server not healthy: {log}");
        }
    }

    /// Starts the server and waits until it is healthy; `Err` with its log's new text when
    /// it exited because a port it needs is taken (a timeout panics).
    fn try_spawn(&mut self) -> Result<(), String> {
        use std::os::unix::process::CommandExt;
        let log_path = self.dir.path().join("server.log");
        let seen = std::fs::metadata(&log_path).map_or(0, |m| m.len() as usize);
        let sky = python().with_file_name("sky");
        let mut c = Command::new(sky);
        self.env(&mut c);
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join("server.log"))
            .unwrap();
        let child = c
            .args([
                "api",
                "start",
                "--foreground",
                "--host",
                "127.0.0.1",
                "--port",
            ])
            .arg(self.port.to_string())
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .process_group(0)
            .spawn()
            .unwrap();
        self.child = Some(child);
        let start = Instant::now();
        let health = format!("{}/api/health", self.url);
        loop {
            let ok = Command::new("curl")
                .args(["-fsS", "-o", "/dev/null", &health])
                .stderr(Stdio::null())
                .status()
                .unwrap()
                .success();
            if ok {
                return Ok(());
            }
            let exited = self
                .child
                .as_mut()
                .is_some_and(|c| c.try_wait().ok().flatten().is_some());
            if exited {
                let text = std::fs::read_to_string(&log_path).unwrap_or_default();
                let new = text.get(seen..).unwrap_or("").to_string();
                if new.contains("is already in use by another process") {
                    return Err(new);
                }
            }
            assert!(
                start.elapsed() < Duration::from_secs(240),
                "own SkyPilot server not healthy: {}",
                std::fs::read_to_string(self.dir.path().join("server.log")).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(300));
        }
    }

    /// The pid of the server's main process (`sky api start --foreground`), whose
    /// process tree is the whole server.
    #[allow(dead_code)]
    pub fn pid(&self) -> u32 {
        self.child
            .as_ref()
            .map(|c| c.id())
            .expect("the server runs")
    }

    /// The server's state directory.
    #[allow(dead_code)]
    pub fn dir(&self) -> &std::path::Path {
        self.dir.path()
    }

    pub fn kill(mut self) -> OwnServer {
        self.stop();
        self
    }

    pub fn restart(mut self) -> OwnServer {
        self.spawn();
        self
    }

    /// SIGKILL to the whole process group, then waits until the port is free.
    fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let pgid = child.id();
            let _ = Command::new("kill")
                .args(["-KILL", "--", &format!("-{pgid}")])
                .status();
            let _ = child.wait();
            let start = Instant::now();
            while std::net::TcpListener::bind(("127.0.0.1", self.port)).is_err() {
                assert!(
                    start.elapsed() < Duration::from_secs(20),
                    "port {} still busy",
                    self.port
                );
                std::thread::sleep(Duration::from_millis(100));
            }
        }
    }
}

impl Drop for OwnServer {
    fn drop(&mut self) {
        self.stop();
        if let Some(mut r) = self.reachability.take() {
            let _ = r.kill();
            let _ = r.wait();
        }
    }
}

/// SkyPilot's own records of its requests (`GET /api/status?QUERY` at `api`, asked
/// directly on loopback): `query` is e.g. `all_status=true` or `request_ids=ID`.
pub async fn request_records(api: &str, query: &str) -> Vec<serde_json::Value> {
    let v: serde_json::Value = reqwest::Client::new()
        .get(format!("{api}/api/status?{query}"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    match v {
        serde_json::Value::Array(a) => a,
        other => panic!("SkyPilot's /api/status?{query} is not a list: {other}"),
    }
}
