//! The `skypilot-host` binary under test: its path, a guard for the processes it runs
//! (killed on drop, so a failing test leaves none behind), and a host set up in a temp
//! dir whose state the tests read through `status --json`.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

/// Path of the binary Cargo built for these tests.
pub const BIN: &str = env!("CARGO_BIN_EXE_skypilot-host");

/// A `Command` for the binary.
pub fn bin() -> Command {
    Command::new(BIN)
}

/// A running `skypilot-host` process, its stderr written to `log`. Dropping it kills the
/// process (SIGKILL) and reaps it.
pub struct HostProcess {
    pub child: Child,
    pub log: PathBuf,
}

impl HostProcess {
    /// Spawns `command` with its stderr written to `log`.
    pub fn spawn(mut command: Command, log: &Path) -> HostProcess {
        let file = std::fs::File::create(log)
            .unwrap_or_else(|e| panic!("cannot create {}: {e}", log.display()));
        let child = command
            .stderr(file)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot spawn {command:?}: {e}"));
        HostProcess {
            child,
            log: log.to_path_buf(),
        }
    }

    /// Spawns `skypilot-host ROLE --config CONFIG`, stdout discarded, stderr to `log`.
    pub fn role(role: &str, config: &Path, log: &Path) -> HostProcess {
        let mut c = bin();
        c.args([role, "--config"]).arg(config).stdout(Stdio::null());
        HostProcess::spawn(c, log)
    }

    pub fn id(&self) -> u32 {
        self.child.id()
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// SIGTERM, then waits (at most 10 s) for the exit.
    pub fn terminate(mut self) -> ExitStatus {
        signal(self.child.id(), "TERM");
        wait_exit(&mut self.child, Duration::from_secs(10))
    }

    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }
}

impl Drop for HostProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `kill -SIG PID`; panics if `kill` fails.
pub fn signal(pid: u32, sig: &str) {
    let ok = Command::new("kill")
        .args([&format!("-{sig}"), &pid.to_string()])
        .status()
        .unwrap()
        .success();
    assert!(ok, "kill -{sig} {pid} failed");
}

/// Waits for `child` to exit; panics after `timeout`.
pub fn wait_exit(child: &mut Child, timeout: Duration) -> ExitStatus {
    let start = Instant::now();
    loop {
        if let Some(s) = child.try_wait().unwrap() {
            return s;
        }
        assert!(
            start.elapsed() < timeout,
            "process did not exit within {timeout:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A free loopback port (bound, read, released).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Waits (at most 20 s) until `p` accepts connections on 127.0.0.1:`port`; panics with
/// its log when it does not.
pub fn wait_listening(port: u16, p: &HostProcess) {
    let started = Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "not listening on port {port}: {}",
            p.log_text()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A temp dir with a host config pointing at `api_url`.
pub struct Host {
    pub dir: tempfile::TempDir,
    pub config: PathBuf,
    pub db: PathBuf,
}

impl Host {
    /// A host config polling every `poll_secs`. `load_budget = 1.0`: the interval never
    /// stretches beyond a `/status`'s own time, so tests of outages and freshness get the
    /// interval they ask for on a loaded machine too (tests/it/load_budget.rs sets its own).
    pub fn new(api_url: &str, poll_secs: u64, force_secs: u64) -> Host {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("host.db");
        let config = dir.path().join("host.toml");
        std::fs::write(
            &config,
            format!(
                "[skypilot]\napi_url = {api_url:?}\nrequest_timeout_secs = 5\nconnect_attempts = 1\n\
                 [cluster_manager]\npoll_interval_secs = {poll_secs}\nforce_refresh_interval_secs = {force_secs}\nload_budget = 1.0\ndatabase = {:?}\n\
                 [log]\nlevel = \"debug\"\n",
                db.to_str().unwrap()
            ),
        )
        .unwrap();
        Host { dir, config, db }
    }

    /// Gives the cluster manager SkyPilot's AWS catalog `csv` (its list prices), under
    /// `policy.catalog_dir` in this host's directory.
    #[allow(dead_code)]
    pub fn with_aws_catalog(self, csv: &str) -> Host {
        let dir = self.dir.path().join("catalogs");
        std::fs::create_dir_all(dir.join("aws")).unwrap();
        std::fs::write(dir.join("aws/vms.csv"), csv).unwrap();
        let mut text = std::fs::read_to_string(&self.config).unwrap();
        text.push_str(&format!(
            "[policy]\ncatalog_dir = {:?}\n",
            dir.to_str().unwrap()
        ));
        std::fs::write(&self.config, text).unwrap();
        self
    }

    /// Reads SkyPilot's managed-job queue every `secs` (`jobs_poll_interval_secs`).
    #[allow(dead_code)]
    pub fn with_jobs_every(self, secs: u64) -> Host {
        let text = std::fs::read_to_string(&self.config).unwrap().replace(
            "load_budget = 1.0\n",
            &format!("load_budget = 1.0\njobs_poll_interval_secs = {secs}\n"),
        );
        std::fs::write(&self.config, text).unwrap();
        self
    }

    /// Reads SkyServe's services every `secs` (`services_poll_interval_secs`).
    #[allow(dead_code)]
    pub fn with_services_every(self, secs: u64) -> Host {
        let text = std::fs::read_to_string(&self.config).unwrap().replace(
            "load_budget = 1.0\n",
            &format!("load_budget = 1.0\nservices_poll_interval_secs = {secs}\n"),
        );
        std::fs::write(&self.config, text).unwrap();
        self
    }

    /// Waits until `pred` holds for `status --jobs --json --all`.
    #[allow(dead_code)]
    pub fn wait_jobs(&self, what: &str, timeout: Duration, pred: impl Fn(&Value) -> bool) -> Value {
        self.wait_report("--jobs", what, timeout, pred)
    }

    /// Waits until `pred` holds for `status --services --json --all`.
    #[allow(dead_code)]
    pub fn wait_services(
        &self,
        what: &str,
        timeout: Duration,
        pred: impl Fn(&Value) -> bool,
    ) -> Value {
        self.wait_report("--services", what, timeout, pred)
    }

    fn wait_report(
        &self,
        which: &str,
        what: &str,
        timeout: Duration,
        pred: impl Fn(&Value) -> bool,
    ) -> Value {
        let start = Instant::now();
        let mut last = String::new();
        while start.elapsed() < timeout {
            if self.db.exists() {
                let out = bin()
                    .args(["status", which, "--json", "--all", "--config"])
                    .arg(&self.config)
                    .output()
                    .unwrap();
                if out.status.success() {
                    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
                    if pred(&v) {
                        return v;
                    }
                    last = format!("{v:#}");
                } else {
                    last = String::from_utf8_lossy(&out.stderr).into_owned();
                }
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        panic!("timed out after {timeout:?} waiting for: {what}\nlast: {last}");
    }

    /// The cluster manager on this host, its stderr in `manager.log`.
    pub fn spawn_manager(&self) -> HostProcess {
        HostProcess::role(
            "cluster-manager",
            &self.config,
            &self.dir.path().join("manager.log"),
        )
    }

    /// `status --json --all`, or its error output while the database cannot be read.
    fn try_status_json(&self) -> Result<Value, String> {
        let out = bin()
            .args([
                "status",
                "--json",
                "--all",
                "--config",
                self.config.to_str().unwrap(),
            ])
            .output()
            .unwrap();
        if out.status.success() {
            Ok(serde_json::from_slice(&out.stdout).unwrap())
        } else {
            Err(String::from_utf8_lossy(&out.stderr).into_owned())
        }
    }

    pub fn status_json(&self) -> Value {
        self.try_status_json()
            .unwrap_or_else(|e| panic!("status failed: {e}"))
    }

    pub fn status_table(&self) -> String {
        self.run_ok(&["status"])
    }

    /// `skypilot-host ARGS --config CONFIG`, which must succeed: its stdout.
    pub fn run_ok(&self, args: &[&str]) -> String {
        let out = bin()
            .args(args)
            .arg("--config")
            .arg(&self.config)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{args:?}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    /// Waits until `pred` holds for `status --json` (the database must exist first).
    pub fn wait_status(
        &self,
        what: &str,
        timeout: Duration,
        pred: impl Fn(&Value) -> bool,
    ) -> Value {
        let start = Instant::now();
        let mut last = Value::Null;
        while start.elapsed() < timeout {
            if let Some(Ok(s)) = self.db.exists().then(|| self.try_status_json()) {
                if pred(&s) {
                    return s;
                }
                last = s;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        panic!("timed out after {timeout:?} waiting for: {what}\nlast status: {last:#}");
    }
}

/// The cluster named `name` in a `status --json` document.
pub fn cluster<'a>(status: &'a Value, name: &str) -> Option<&'a Value> {
    status["clusters"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == name)
}

/// A plain connection to the host database, to check what a role wrote.
pub fn open_db(path: &Path) -> rusqlite::Connection {
    rusqlite::Connection::open(path).unwrap()
}
