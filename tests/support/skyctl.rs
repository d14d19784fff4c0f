//! The real SkyPilot API server that `scripts/test.sh` starts, and `tests/real/skyctl.py`
//! to create and change clusters in it through SkyPilot's own Python API.

use std::path::PathBuf;

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

fn var(name: &str) -> Result<String, String> {
    std::env::var(name).map_err(|_| {
        format!(
            "environment variable {name} is not set: tests built with --features real-server \
             must be run by scripts/test.sh, which starts SkyPilot's API server and exports it"
        )
    })
}

impl RealServer {
    /// Read the environment; an error names the missing variable.
    pub fn from_env() -> Result<RealServer, String> {
        let url = var("SKYPILOT_TEST_API_URL")?;
        let venv = var("SKYPILOT_VENV")?;
        let mut env = Vec::new();
        for (ours, theirs) in [
            ("SKYPILOT_TEST_HOME", "HOME"),
            ("SKYPILOT_TEST_RUNTIME_DIR", "SKY_RUNTIME_DIR"),
            ("SKYPILOT_TEST_GLOBAL_CONFIG", "SKYPILOT_GLOBAL_CONFIG"),
        ] {
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

    fn script() -> PathBuf {
        PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("tests")
            .join("real")
            .join("skyctl.py")
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
        let script = Self::script();
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
