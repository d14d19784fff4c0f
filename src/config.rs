//! Host configuration: one TOML file read by every `skypilot-host` role.
//!
//! Every struct denies unknown fields, and every default lives in the `Default`
//! impls of this module (and nowhere else). Errors name the file, the key path and
//! what was expected.

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// Port of SkyPilot's API server when nothing else is said.
pub(crate) const DEFAULT_API_URL: &str = "http://127.0.0.1:46580";
/// Default metrics port of `skypilot-host monitor`. Deliberately not 9090,
/// which is both Prometheus's own port and SkyPilot's metrics port.
pub(crate) const DEFAULT_METRICS_PORT: u16 = 9188;
/// Default of `skypilot.max_answer_bytes`: 256 MiB.
pub(crate) const DEFAULT_MAX_ANSWER_BYTES: u64 = 256 * 1024 * 1024;
/// Largest host config read (a real one is a few hundred bytes).
pub(crate) const MAX_CONFIG_BYTES: u64 = 1024 * 1024;

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub skypilot: SkypilotConfig,
    pub cluster_manager: ClusterManagerConfig,
    pub monitor: MonitorConfig,
    pub web_ui: WebUiConfig,
    pub autostop: AutostopConfig,
    pub policy: PolicyConfig,
    pub backup: BackupConfig,
    pub(crate) credentials: CredentialsConfig,
    pub(crate) log: LogConfig,
}

/// `skypilot-host backup` and `restore` (`[backup]`): where SkyPilot keeps its state on
/// this host, and where the backups go. The monitor reports the newest backup in
/// `directory`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BackupConfig {
    /// The directory of the backups (outside the Nix store: they hold SSH keys).
    pub directory: Option<PathBuf>,
    /// Backups kept; the oldest beyond are removed after each backup (0: keep all).
    pub keep: usize,
    /// The SkyPilot version installed here. A backup records the API server's own
    /// answer (and refuses a mismatch); a restore refuses a backup of another version.
    pub skypilot_version: Option<String>,
    /// The API server's HOME (SSH keys under `.sky/clients/*/ssh/`, `.sky/user_hash`).
    pub sky_home: Option<PathBuf>,
    /// The API server's SKY_RUNTIME_DIR (its SQLite databases under `.sky/`).
    pub sky_runtime_dir: Option<PathBuf>,
    /// SkyPilot's config.yaml, taken unless it is in the Nix store.
    pub sky_config_file: Option<PathBuf>,
    /// SkyPilot's PostgreSQL database, as SkyPilot is given it, when it holds no
    /// password (e.g. over the local socket with peer authentication).
    pub database_uri: Option<String>,
    /// A file holding the database URI, when it holds a password.
    pub database_uri_file: Option<PathBuf>,
    /// The `pg_dump` and `pg_restore` programs.
    pub pg_dump: PathBuf,
    pub pg_restore: PathBuf,
    /// Also take SkyPilot's request history (`api_server/requests.db`, which grows with
    /// every request; not needed to reach or list clusters).
    pub request_history: bool,
    /// Seconds between two scheduled backups: the monitor's alert fires when the newest
    /// good backup is older than twice this.
    pub interval_secs: u64,
}

impl Default for BackupConfig {
    fn default() -> Self {
        BackupConfig {
            directory: None,
            keep: 7,
            skypilot_version: None,
            sky_home: None,
            sky_runtime_dir: None,
            sky_config_file: None,
            database_uri: None,
            database_uri_file: None,
            pg_dump: PathBuf::from("pg_dump"),
            pg_restore: PathBuf::from("pg_restore"),
            request_history: false,
            interval_secs: 86_400,
        }
    }
}

impl BackupConfig {
    fn validate(&self) -> Checked {
        if let Some(d) = &self.directory {
            if !d.is_absolute() || d.starts_with("/nix/store") {
                return Err((
                    "backup.directory",
                    format!(
                        "{} must be an absolute path outside the Nix store (backups hold SSH keys)",
                        d.display()
                    ),
                ));
            }
        }
        if self.database_uri.is_some() && self.database_uri_file.is_some() {
            return Err((
                "backup.database_uri",
                "set database_uri or database_uri_file, not both".to_string(),
            ));
        }
        if let Some(u) = &self.database_uri {
            match crate::backup::parse_database_uri(u) {
                Err(e) => return Err(("backup.database_uri", e)),
                Ok(true) => {
                    return Err((
                        "backup.database_uri",
                        "holds a password: put the URI in a file outside the Nix store and name                          it in backup.database_uri_file"
                            .to_string(),
                    ))
                }
                Ok(false) => {}
            }
        }
        if self.interval_secs == 0 {
            return Err((
                "backup.interval_secs",
                "must be at least 1 (seconds between scheduled backups)".to_string(),
            ));
        }
        Ok(())
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SkypilotConfig {
    /// Base URL of SkyPilot's API server.
    pub api_url: String,
    /// File holding a service-account token (`sky_…`), sent as `Authorization: Bearer`.
    pub token_file: Option<PathBuf>,
    /// PEM file with the certificate(s) of the CA that signed an `https://` API server's
    /// (or `monitor.skypilot_metrics_url`'s) certificate, trusted in addition to the
    /// system's roots: for SkyPilot behind TLS with a private CA.
    pub ca_file: Option<PathBuf>,
    /// Timeout of one HTTP request to the API server, in seconds.
    pub request_timeout_secs: u64,
    /// Attempts for one operation when the connection fails (1 = no retry).
    pub connect_attempts: u32,
    /// Largest answer read from the API server, in bytes; a larger one fails the poll
    /// (the state is kept). 100,000 clusters answer ~70 MB.
    pub max_answer_bytes: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ClusterManagerConfig {
    /// Seconds between two polls of `/status` without refresh.
    pub(crate) poll_interval_secs: u64,
    /// Seconds between two polls with `refresh = FORCE` (asks the clouds).
    pub force_refresh_interval_secs: u64,
    /// Seconds between two reads of SkyPilot's managed-job queue (`/jobs/queue/v2`),
    /// stretched like `/status` to keep within what `load_budget` leaves; 0: never.
    pub(crate) jobs_poll_interval_secs: u64,
    /// Seconds between two reads of SkyServe's services (`/serve/status`), within the
    /// same budget as the job queue; 0: never.
    pub(crate) services_poll_interval_secs: u64,
    /// Seconds one poll may take in all (its several requests together); a slower poll
    /// fails and the state is kept. Under systemd it must stay below `WatchdogSec`
    /// (the module sets that from this value).
    pub(crate) poll_deadline_secs: u64,
    /// The host database (SQLite). Shared by every role; only the cluster manager writes
    /// cluster state.
    pub database: PathBuf,
    /// The share of the API server's CPU the cluster manager's `/status` reads may take
    /// (0.02: 2%), each read counted as the server's CPU meanwhile when it runs on this
    /// host (`api_server_cgroup`, `api_server_pid_file`), else as twice its wall time
    /// (src/load_budget.rs). The poll interval is stretched beyond `poll_interval_secs`
    /// when that cost exceeds `load_budget` × the interval.
    pub(crate) load_budget: f64,
    /// The API server's cgroup v2 directory on this host (e.g.
    /// `/sys/fs/cgroup/system.slice/skypilot-api-server.service`): its `cpu.stat` is
    /// the server's CPU for the load budget.
    pub(crate) api_server_cgroup: Option<PathBuf>,
    /// A file holding the pid of the API server's main process on this host: its process
    /// tree's CPU (from `/proc`) is the server's CPU for the load budget.
    pub(crate) api_server_pid_file: Option<PathBuf>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MonitorConfig {
    /// Address and port of `/metrics` and `/healthz`.
    pub(crate) listen: SocketAddr,
    /// SkyPilot's own metrics endpoint (`SKY_API_SERVER_METRICS_ENABLED`), re-exposed
    /// under `/metrics/skypilot` when set.
    pub skypilot_metrics_url: Option<String>,
    /// Largest answer passed on from `skypilot_metrics_url`, in bytes; a larger one is
    /// cut off (SkyPilot's own scrape is well under a megabyte).
    pub(crate) skypilot_metrics_max_bytes: u64,
}

// ---------------------------------------------------------------- web UI (`web-ui`)

/// Default port of `skypilot-host web-ui`.
pub(crate) const DEFAULT_WEB_UI_PORT: u16 = 9189;

/// `skypilot-host web-ui`: the console and the authenticated gateway to SkyPilot.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WebUiConfig {
    /// Address and port of the console, the JSON API and the gateway. Beyond loopback
    /// only when a user is configured.
    pub listen: SocketAddr,
    /// The users file (`name:argon2id-PHC-hash:role` per line), outside the Nix store.
    pub users_file: Option<PathBuf>,
    /// API tokens for scripts (`name:$blake2b$HEX:role` per line), outside the Nix store.
    pub tokens_file: Option<PathBuf>,
    /// PEM certificate chain; with `tls_key_file`, the web UI serves HTTPS itself.
    pub tls_cert_file: Option<PathBuf>,
    /// PEM private key of `tls_cert_file`.
    pub tls_key_file: Option<PathBuf>,
    /// The URL people reach the web UI at (e.g. behind nginx). `https://` marks the
    /// session cookie `Secure` even when the web UI itself speaks plain HTTP.
    pub public_url: Option<String>,
    /// Host names the web UI answers to besides `public_url`'s, `localhost` and IP
    /// addresses; a request naming any other host is refused (DNS rebinding).
    pub allowed_hosts: Vec<String>,
    /// Lifetime of a console session, in seconds (then log in again).
    pub session_lifetime_secs: u64,
    /// Failed logins allowed per client address within `login_window_secs`.
    pub login_failures_per_client: u32,
    /// Failed logins allowed per user name within `login_window_secs`.
    pub login_failures_per_user: u32,
    /// The window of the login rate limits, in seconds.
    pub login_window_secs: u64,
    /// SkyPilot's config.yaml, shown (secrets redacted) on the Config page.
    pub skypilot_config_file: Option<PathBuf>,
    /// Seconds between two checks that SkyPilot's role of every user equals ours (a
    /// change made inside SkyPilot is set back and audited).
    pub role_sync_interval_secs: u64,
    /// Whether the users file's people may log in with their password (the console's
    /// form and Basic credentials). With single sign-on it can be turned off, leaving the
    /// provider as the only way in for people (API tokens still work for scripts).
    pub password_login: bool,
    /// Lifetime of a CLI login (`sky api login`), in seconds. SkyPilot's CLI keeps the
    /// credential 7 days, so a longer one is cut there.
    pub cli_login_lifetime_secs: u64,
    /// A notice shown at the top of every console page (e.g. a maintenance window, or
    /// that the clusters are a demo's records); unset: none.
    pub notice: Option<String>,
    /// Single sign-on with an OpenID Provider (`[web_ui.oidc]`); unset: no single sign-on.
    pub oidc: Option<OidcConfig>,
    /// The gateway to SkyPilot's dashboard and REST API (`[web_ui.gateway]`).
    #[serde(default)]
    pub gateway: GatewayConfig,
}

/// Single sign-on with an OpenID Provider (`[web_ui.oidc]`): the authorization code flow
/// with PKCE; a person's role comes from the provider's groups claim.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OidcConfig {
    /// The provider's issuer URL (discovery at `ISSUER/.well-known/openid-configuration`);
    /// `https://` unless the host is loopback.
    pub issuer: String,
    /// Our client id at the provider.
    pub client_id: String,
    /// The client secret, in a file outside the Nix store; unset for a public client.
    pub client_secret_file: Option<PathBuf>,
    /// Scopes asked for besides `openid`.
    pub scopes: Vec<String>,
    /// The ID token claim that is the person's name (what SkyPilot sees).
    pub username_claim: String,
    /// The ID token claim that lists the person's groups.
    pub groups_claim: String,
    /// Members of any of these groups are admins.
    pub admin_groups: Vec<String>,
    /// Members of any of these groups (and none of the admin groups) are users.
    pub user_groups: Vec<String>,
    /// Members of any of these groups (and none of the above) are viewers.
    pub viewer_groups: Vec<String>,
    /// How far the provider's clock may be from ours, in seconds: an ID token is taken
    /// until this long after its expiry, and refused if issued further in the future.
    pub clock_skew_secs: u64,
    /// The provider's name on the login button ("Sign in with NAME").
    pub display_name: String,
    /// Seconds allowed for each request to the provider (discovery, keys, token).
    pub timeout_secs: u64,
}

/// The gateway part of the web UI: SkyPilot's dashboard and REST API behind our login
/// (`[web_ui.gateway]`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct GatewayConfig {
    /// SkyPilot's API server the gateway forwards to (`http://` only: it listens on
    /// loopback); `skypilot.api_url` when unset.
    pub upstream: Option<String>,
    /// The header SkyPilot's external-proxy auth reads (`auth.external_proxy.header_name`
    /// in SkyPilot's config, plain format); the gateway sets it to the person's name and
    /// strips every copy a client sends.
    pub identity_header: String,
    /// Seconds to open a connection to the upstream.
    pub connect_timeout_secs: u64,
    /// Seconds the upstream may take to start its answer (SkyPilot's `/api/get` waits
    /// for the request it names to finish).
    pub response_timeout_secs: u64,
    /// Seconds a proxied body (a stream, an upload, a websocket) may move no byte either
    /// way before it is cut. Above SkyPilot's 30 s heartbeat of log streams; the web UI's
    /// server uses it as its connection idle limit too.
    pub idle_timeout_secs: u64,
    /// Largest body read of `/stop`, `/down` and `/autostop` (the gateway reads them to
    /// check the cluster's owner); every other body streams through unread.
    pub max_control_body_bytes: usize,
    /// Idle upstream connections kept for reuse.
    pub max_idle_upstream_connections: usize,
}

// ---------------------------------------------------------------- autostop (`autostop`)

/// `skypilot-host autostop`: the enforcer of idle stop (`docs/autostop.md`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AutostopConfig {
    /// Idle minutes: every UP cluster must carry SkyPilot's autostop at or below this (the
    /// module's `cluster.autoStop`).
    pub idle_minutes: u32,
    /// What is enforced: `autostop` (SkyPilot's autostop ≤ idle_minutes, the user's
    /// stop/down choice kept), `stop` (the same, and the enforcer stops clusters past
    /// `max_lifetime_hours`), `down` (autostop tears down; past the lifetime, down).
    pub enforce: Enforce,
    /// On clouds that cannot stop (`cannot_stop_clouds`), autostop tears down instead
    /// and a stop becomes a down. When false such clusters are left alone.
    pub down_when_cannot_stop: bool,
    /// Clouds whose clusters cannot be stopped, as SkyPilot names them (any case).
    pub cannot_stop_clouds: Vec<String>,
    /// Cluster names never acted on: globs with `*` and `?`.
    pub exempt_names: Vec<String>,
    /// Workspaces never acted on.
    pub exempt_workspaces: Vec<String>,
    /// Users (SkyPilot user name or user hash) whose clusters are never acted on.
    pub exempt_users: Vec<String>,
    /// Minutes after launch during which a cluster is left alone.
    pub grace_minutes: u32,
    /// With `enforce = "stop"` or `"down"`: clusters UP longer than this since launch are
    /// stopped (or torn down).
    pub max_lifetime_hours: Option<u32>,
    /// Seconds between two passes with `--daemon`.
    pub interval_secs: u64,
    /// After a failed action on a cluster, the next attempt waits this long, doubling with
    /// each failure in a row ...
    pub retry_base_secs: u64,
    /// ... up to this.
    pub retry_max_secs: u64,
    /// Print decisions and act on nothing, as `--dry-run` does.
    pub dry_run: bool,
}

/// `autostop.enforce`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Enforce {
    Autostop,
    Stop,
    Down,
}

impl Default for AutostopConfig {
    fn default() -> Self {
        AutostopConfig {
            idle_minutes: 60,
            enforce: Enforce::Autostop,
            down_when_cannot_stop: true,
            // SkyPilot 0.14.1's clouds without the STOP feature (`sky/clouds/*.py`); SSH
            // node pools are Kubernetes underneath.
            cannot_stop_clouds: [
                "Kubernetes",
                "SSH",
                "Lambda",
                "RunPod",
                "Fluidstack",
                "Cudo",
                "Hyperbolic",
                "Verda",
                "Yotta",
                "PrimeIntellect",
                "Shadeform",
                "Slurm",
            ]
            .map(String::from)
            .to_vec(),
            exempt_names: Vec::new(),
            exempt_workspaces: Vec::new(),
            exempt_users: Vec::new(),
            grace_minutes: 10,
            max_lifetime_hours: None,
            interval_secs: 300,
            retry_base_secs: 60,
            retry_max_secs: 3600,
            dry_run: false,
        }
    }
}

impl AutostopConfig {
    fn validate(&self) -> Checked {
        if self.idle_minutes == 0 {
            return Err((
                "autostop.idle_minutes",
                "must be at least 1 (minutes): 0 would stop a cluster the moment it is idle".into(),
            ));
        }
        if self.interval_secs == 0 {
            return Err((
                "autostop.interval_secs",
                "must be at least 1 (seconds)".into(),
            ));
        }
        if self.retry_base_secs == 0 {
            return Err((
                "autostop.retry_base_secs",
                "must be at least 1 (seconds)".into(),
            ));
        }
        if self.retry_max_secs < self.retry_base_secs {
            return Err((
                "autostop.retry_max_secs",
                format!(
                    "{} is shorter than autostop.retry_base_secs ({}): expected at least the first back-off",
                    self.retry_max_secs, self.retry_base_secs
                ),
            ));
        }
        match self.max_lifetime_hours {
            Some(0) => {
                return Err((
                    "autostop.max_lifetime_hours",
                    "must be at least 1 (hours), or left out for no limit".into(),
                ))
            }
            Some(_) if self.enforce == Enforce::Autostop => {
                return Err((
                    "autostop.max_lifetime_hours",
                    "needs autostop.enforce = \"stop\" or \"down\": with \"autostop\" the enforcer never stops a cluster itself".into(),
                ))
            }
            _ => {}
        }
        for (key, list) in [
            ("autostop.exempt_names", &self.exempt_names),
            ("autostop.exempt_workspaces", &self.exempt_workspaces),
            ("autostop.exempt_users", &self.exempt_users),
            ("autostop.cannot_stop_clouds", &self.cannot_stop_clouds),
        ] {
            if let Some(i) = list.iter().position(|s| s.trim().is_empty()) {
                return Err((key, format!("entry {} is empty: expected a name", i + 1)));
            }
        }
        Ok(())
    }
}

// ---------------------------------------------------------------- launch policy (`policy`)

/// Default port of `skypilot-host policy` (loopback).
pub(crate) const DEFAULT_POLICY_PORT: u16 = 9190;

/// `skypilot-host policy`: SkyPilot's RESTful admin policy endpoint.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PolicyConfig {
    /// Address and port of `/v1/policy` (SkyPilot's `admin_policy` URL) and `/healthz`.
    pub listen: SocketAddr,
    /// The launch-policy settings that `sky-config render` writes (`launch-policy.json`).
    pub launch_policy: PathBuf,
    /// The shared secret SkyPilot sends as `?token=` in the policy URL.
    pub token_file: PathBuf,
    /// Create `token_file` (random, mode 0600) when it does not exist yet.
    pub create_token: bool,
    /// SkyPilot's catalog directory (`$SKY_RUNTIME_DIR/.sky/catalogs/v8`, which is
    /// `~/.sky/catalogs/v8` of the API server's HOME when SKY_RUNTIME_DIR is unset):
    /// `<cloud>/vms.csv` there holds the hourly prices.
    pub catalog_dir: PathBuf,
    /// Apply the policy to the launches of SkyPilot's own jobs and serve controllers
    /// too (`jobs.launch_controller`, `serve.launch_controller`); by default they pass
    /// unchanged.
    pub controllers: bool,
    /// Largest request body read, in bytes; a larger one is refused (HTTP 413).
    pub max_body_bytes: u64,
}

impl Default for PolicyConfig {
    fn default() -> Self {
        PolicyConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], DEFAULT_POLICY_PORT)),
            launch_policy: PathBuf::from("/etc/skypilot-host/launch-policy.json"),
            token_file: PathBuf::from("/var/lib/skypilot/policy/token"),
            create_token: false,
            catalog_dir: PathBuf::from("/var/lib/skypilot/runtime/.sky/catalogs/v8"),
            controllers: false,
            max_body_bytes: 8 * 1024 * 1024,
        }
    }
}

// ----------------------------------------------------------------

/// Cloud credential files, by cloud. Each is a path outside the Nix store; the module
/// hands them over with systemd `LoadCredential`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct CredentialsConfig {
    pub(crate) aws: Option<PathBuf>,
    pub(crate) gcp: Option<PathBuf>,
    /// Azure CLI state: a directory (`~/.azure`).
    pub(crate) azure: Option<PathBuf>,
    pub(crate) kubernetes: Option<PathBuf>,
    pub(crate) lambda: Option<PathBuf>,
    pub(crate) runpod: Option<PathBuf>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct LogConfig {
    pub(crate) level: LogLevel,
}

/// Log level; accepts the seed's `DEBUG`/`INFO`/`WARNING`/`ERROR` and lower case.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum LogLevel {
    Trace,
    Debug,
    Info,
    Warn,
    Error,
}

impl LogLevel {
    pub(crate) const ACCEPTED: &'static str =
        "one of trace, debug, info, warning (or warn), error, in any case";

    pub(crate) fn parse(s: &str) -> Option<LogLevel> {
        match s.to_ascii_lowercase().as_str() {
            "trace" => Some(LogLevel::Trace),
            "debug" => Some(LogLevel::Debug),
            "info" => Some(LogLevel::Info),
            "warn" | "warning" => Some(LogLevel::Warn),
            "error" => Some(LogLevel::Error),
            _ => None,
        }
    }

    pub(crate) fn as_filter(self) -> &'static str {
        match self {
            LogLevel::Trace => "trace",
            LogLevel::Debug => "debug",
            LogLevel::Info => "info",
            LogLevel::Warn => "warn",
            LogLevel::Error => "error",
        }
    }
}

impl<'de> Deserialize<'de> for LogLevel {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        LogLevel::parse(&s).ok_or_else(|| {
            serde::de::Error::custom(format!(
                "invalid log level {s:?}: expected {}",
                Self::ACCEPTED
            ))
        })
    }
}

impl Default for SkypilotConfig {
    fn default() -> Self {
        SkypilotConfig {
            api_url: DEFAULT_API_URL.to_string(),
            token_file: None,
            ca_file: None,
            request_timeout_secs: 30,
            connect_attempts: 3,
            max_answer_bytes: DEFAULT_MAX_ANSWER_BYTES,
        }
    }
}

impl Default for ClusterManagerConfig {
    fn default() -> Self {
        ClusterManagerConfig {
            poll_interval_secs: 30,
            force_refresh_interval_secs: 300,
            jobs_poll_interval_secs: 60,
            services_poll_interval_secs: 60,
            poll_deadline_secs: 120,
            database: PathBuf::from("/var/lib/skypilot/host.db"),
            load_budget: 0.02,
            api_server_cgroup: None,
            api_server_pid_file: None,
        }
    }
}

impl Default for MonitorConfig {
    fn default() -> Self {
        MonitorConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], DEFAULT_METRICS_PORT)),
            skypilot_metrics_url: None,
            skypilot_metrics_max_bytes: 64 * 1024 * 1024,
        }
    }
}

impl Default for WebUiConfig {
    fn default() -> Self {
        WebUiConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], DEFAULT_WEB_UI_PORT)),
            users_file: None,
            tokens_file: None,
            tls_cert_file: None,
            tls_key_file: None,
            public_url: None,
            allowed_hosts: Vec::new(),
            session_lifetime_secs: 8 * 3600,
            login_failures_per_client: 20,
            login_failures_per_user: 10,
            login_window_secs: 300,
            skypilot_config_file: None,
            role_sync_interval_secs: 30,
            password_login: true,
            cli_login_lifetime_secs: 7 * 24 * 3600,
            notice: None,
            oidc: None,
            gateway: GatewayConfig::default(),
        }
    }
}

impl Default for OidcConfig {
    fn default() -> Self {
        OidcConfig {
            issuer: String::new(),
            client_id: String::new(),
            client_secret_file: None,
            scopes: vec!["profile".into(), "email".into(), "groups".into()],
            username_claim: "preferred_username".into(),
            groups_claim: "groups".into(),
            admin_groups: Vec::new(),
            user_groups: Vec::new(),
            viewer_groups: Vec::new(),
            clock_skew_secs: 60,
            display_name: "single sign-on".into(),
            timeout_secs: 10,
        }
    }
}

impl Default for GatewayConfig {
    fn default() -> Self {
        GatewayConfig {
            upstream: None,
            identity_header: "X-Auth-Request-Email".to_string(),
            connect_timeout_secs: 5,
            response_timeout_secs: 3600,
            idle_timeout_secs: 600,
            max_control_body_bytes: 64 * 1024,
            max_idle_upstream_connections: 64,
        }
    }
}

/// The result of a section's checks: the first key found wrong, and what was expected.
type Checked = Result<(), (&'static str, String)>;

impl SkypilotConfig {
    fn validate(&self) -> Checked {
        let url = &self.api_url;
        let expected = format!("expected an http(s) URL such as {DEFAULT_API_URL}");
        match url::Url::parse(url) {
            Ok(u) if u.scheme() != "http" && u.scheme() != "https" => {
                let scheme = u.scheme();
                return Err((
                    "skypilot.api_url",
                    format!("scheme {scheme:?} is not supported: {expected}"),
                ));
            }
            Ok(u) if u.host_str().is_none() => {
                return Err((
                    "skypilot.api_url",
                    format!("{url:?} has no host: {expected}"),
                ));
            }
            Ok(_) => {}
            Err(e) => {
                return Err((
                    "skypilot.api_url",
                    format!("{url:?} is not a URL ({e}): {expected}"),
                ))
            }
        }
        if self.request_timeout_secs == 0 {
            return Err((
                "skypilot.request_timeout_secs",
                "must be at least 1 (seconds)".to_string(),
            ));
        }
        if self.max_answer_bytes < 64 * 1024 {
            return Err((
                "skypilot.max_answer_bytes",
                format!(
                    "{} is too small to hold even a health answer: expected at least 65536 (default {DEFAULT_MAX_ANSWER_BYTES})",
                    self.max_answer_bytes
                ),
            ));
        }
        if self.connect_attempts == 0 {
            return Err((
                "skypilot.connect_attempts",
                "must be at least 1".to_string(),
            ));
        }
        Ok(())
    }
}

impl ClusterManagerConfig {
    /// Where the API server's CPU is read, when it runs on this host.
    pub(crate) fn server_cpu(&self) -> Option<crate::server_cpu::ServerCpu> {
        use crate::server_cpu::ServerCpu;
        self.api_server_cgroup
            .clone()
            .map(ServerCpu::Cgroup)
            .or_else(|| self.api_server_pid_file.clone().map(ServerCpu::ProcessTree))
    }

    /// `skypilot` for the one cross-section rule: a poll's deadline holds a request's timeout.
    fn validate(&self, skypilot: &SkypilotConfig) -> Checked {
        for (key, v) in [
            (
                "cluster_manager.poll_interval_secs",
                self.poll_interval_secs,
            ),
            (
                "cluster_manager.force_refresh_interval_secs",
                self.force_refresh_interval_secs,
            ),
        ] {
            if v == 0 {
                return Err((key, "must be at least 1 (seconds)".to_string()));
            }
        }
        let budget = self.load_budget;
        if !(budget > 0.0 && budget <= 1.0) {
            return Err((
                "cluster_manager.load_budget",
                format!("{budget} is not a share of the server's CPU: expected a number above 0 and at most 1 (default 0.02)"),
            ));
        }
        if self.api_server_cgroup.is_some() && self.api_server_pid_file.is_some() {
            return Err((
                "cluster_manager.api_server_pid_file",
                "set together with api_server_cgroup: expected one way to read the API server's CPU".to_string(),
            ));
        }
        if self.poll_deadline_secs < skypilot.request_timeout_secs {
            return Err((
                "cluster_manager.poll_deadline_secs",
                format!(
                    "{} is shorter than skypilot.request_timeout_secs ({}): expected at least one request's timeout",
                    self.poll_deadline_secs, skypilot.request_timeout_secs
                ),
            ));
        }
        if self.force_refresh_interval_secs < self.poll_interval_secs {
            return Err((
                "cluster_manager.force_refresh_interval_secs",
                format!(
                    "{} is shorter than cluster_manager.poll_interval_secs ({}): expected at least the poll interval",
                    self.force_refresh_interval_secs, self.poll_interval_secs
                ),
            ));
        }
        if self.database.as_os_str().is_empty() {
            return Err((
                "cluster_manager.database",
                "is empty: expected the path of the SQLite database file".to_string(),
            ));
        }
        Ok(())
    }
}

impl MonitorConfig {
    fn validate(&self) -> Checked {
        let Some(u) = &self.skypilot_metrics_url else {
            return Ok(());
        };
        let parsed = url::Url::parse(u)
            .ok()
            .filter(|p| p.scheme() == "http" || p.scheme() == "https");
        let Some(parsed) = parsed else {
            return Err((
                "monitor.skypilot_metrics_url",
                format!("{u:?}: expected an http(s) URL such as http://127.0.0.1:9091/metrics"),
            ));
        };
        if points_at(&parsed, self.listen) {
            return Err((
                "monitor.skypilot_metrics_url",
                format!(
                    "{u:?} is the monitor's own address (monitor.listen = {}): each scrape of /metrics/skypilot would fetch itself; expected SkyPilot's metrics endpoint",
                    self.listen
                ),
            ));
        }
        Ok(())
    }
}

impl PolicyConfig {
    fn validate(&self) -> Checked {
        if self.max_body_bytes < 64 * 1024 {
            return Err((
                "policy.max_body_bytes",
                format!(
                    "{} is too small for a task SkyPilot sends (a jobs controller's is ~6 KB): expected at least 65536",
                    self.max_body_bytes
                ),
            ));
        }
        for (key, path) in [
            ("policy.launch_policy", &self.launch_policy),
            ("policy.token_file", &self.token_file),
            ("policy.catalog_dir", &self.catalog_dir),
        ] {
            if path.as_os_str().is_empty() {
                return Err((key, "is empty: expected a path".to_string()));
            }
        }
        Ok(())
    }
}

impl WebUiConfig {
    /// Semantic checks of `[web_ui]`: (key, what was expected).
    fn validate(&self) -> Checked {
        if self.tls_cert_file.is_some() != self.tls_key_file.is_some() {
            let missing = if self.tls_cert_file.is_some() {
                "web_ui.tls_key_file"
            } else {
                "web_ui.tls_cert_file"
            };
            return Err((
                missing,
                "is not set: expected both web_ui.tls_cert_file and web_ui.tls_key_file, or neither".into(),
            ));
        }
        if let Some(u) = &self.public_url {
            let ok = url::Url::parse(u).ok().filter(|p| {
                (p.scheme() == "http" || p.scheme() == "https") && p.host_str().is_some()
            });
            if ok.is_none() {
                return Err((
                    "web_ui.public_url",
                    format!("{u:?}: expected an http(s) URL such as https://sky.example.org"),
                ));
            }
        }
        for h in &self.allowed_hosts {
            let ok = !h.is_empty()
                && h.len() <= 253
                && h.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-');
            if !ok {
                return Err((
                    "web_ui.allowed_hosts",
                    format!("{h:?}: expected a host name (letters, digits, '.', '-'; no scheme or port)"),
                ));
            }
        }
        for (key, v) in [
            ("web_ui.session_lifetime_secs", self.session_lifetime_secs),
            ("web_ui.login_window_secs", self.login_window_secs),
            (
                "web_ui.role_sync_interval_secs",
                self.role_sync_interval_secs,
            ),
            (
                "web_ui.login_failures_per_client",
                u64::from(self.login_failures_per_client),
            ),
            (
                "web_ui.login_failures_per_user",
                u64::from(self.login_failures_per_user),
            ),
        ] {
            if v == 0 {
                return Err((key, "must be at least 1".to_string()));
            }
        }
        if self.cli_login_lifetime_secs == 0 {
            return Err((
                "web_ui.cli_login_lifetime_secs",
                "must be at least 1".to_string(),
            ));
        }
        match &self.oidc {
            Some(o) => o.validate(self.public_url.as_deref())?,
            None if !self.password_login => {
                return Err((
                    "web_ui.password_login",
                    "is false and web_ui.oidc is not set: nobody could log in; set up [web_ui.oidc] or keep password_login = true".into(),
                ))
            }
            None => {}
        }
        Ok(())
    }
}

impl OidcConfig {
    /// Semantic checks of `[web_ui.oidc]` (`public_url`: where the provider sends people
    /// back to).
    fn validate(&self, public_url: Option<&str>) -> Checked {
        let issuer = url::Url::parse(&self.issuer).map_err(|e| {
            (
                "web_ui.oidc.issuer",
                format!(
                    "{:?} is not a URL ({e}): expected e.g. https://id.example.org/realms/team",
                    self.issuer
                ),
            )
        })?;
        let loopback = match issuer.host() {
            Some(url::Host::Domain(d)) => d == "localhost",
            Some(url::Host::Ipv4(a)) => a.is_loopback(),
            Some(url::Host::Ipv6(a)) => a.is_loopback(),
            None => false,
        };
        let secure = issuer.scheme() == "https" || (issuer.scheme() == "http" && loopback);
        if !secure || issuer.query().is_some() || issuer.fragment().is_some() {
            return Err((
                "web_ui.oidc.issuer",
                format!("{:?}: expected an https:// URL without query or fragment (http:// only on loopback)", self.issuer),
            ));
        }
        for (key, v) in [
            ("web_ui.oidc.client_id", &self.client_id),
            ("web_ui.oidc.username_claim", &self.username_claim),
            ("web_ui.oidc.groups_claim", &self.groups_claim),
        ] {
            if v.trim().is_empty() {
                return Err((key, "is empty: expected a value".into()));
            }
        }
        if self.admin_groups.is_empty()
            && self.user_groups.is_empty()
            && self.viewer_groups.is_empty()
        {
            return Err((
                "web_ui.oidc.admin_groups",
                "admin_groups, user_groups and viewer_groups are all empty: nobody could log in; list the provider's groups that map to each role".into(),
            ));
        }
        if public_url.is_none() {
            return Err((
                "web_ui.public_url",
                "is not set: single sign-on needs it, the provider sends people back to PUBLIC_URL/console/oidc/callback".into(),
            ));
        }
        if self.timeout_secs == 0 {
            return Err(("web_ui.oidc.timeout_secs", "must be at least 1".into()));
        }
        Ok(())
    }
}

impl GatewayConfig {
    /// The upstream's base URL: `upstream`, else `skypilot.api_url`.
    pub(crate) fn upstream_url<'a>(&'a self, skypilot: &'a SkypilotConfig) -> &'a str {
        self.upstream.as_deref().unwrap_or(&skypilot.api_url)
    }

    fn validate(&self) -> Checked {
        // Only a set upstream is checked here: an https `skypilot.api_url` is fine for
        // every other role, and the web UI says so itself when it starts.
        if let Some(u) = &self.upstream {
            match url::Url::parse(u) {
                Ok(p) if p.scheme() == "http" && p.host_str().is_some() => {}
                _ => {
                    return Err((
                        "web_ui.gateway.upstream",
                        format!("{u:?}: the gateway forwards to plain http:// only (SkyPilot's API server on loopback), expected e.g. {DEFAULT_API_URL}"),
                    ))
                }
            }
        }
        let h = &self.identity_header;
        if h.is_empty()
            || !h
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        {
            return Err((
                "web_ui.gateway.identity_header",
                format!("{h:?}: expected a header name (letters, digits, '-'), such as X-Auth-Request-Email"),
            ));
        }
        for (key, v) in [
            (
                "web_ui.gateway.connect_timeout_secs",
                self.connect_timeout_secs,
            ),
            (
                "web_ui.gateway.response_timeout_secs",
                self.response_timeout_secs,
            ),
        ] {
            if v == 0 {
                return Err((key, "must be at least 1 (seconds)".to_string()));
            }
        }
        if self.idle_timeout_secs <= 30 {
            return Err((
                "web_ui.gateway.idle_timeout_secs",
                format!("{} would cut SkyPilot's log streams, which send a heartbeat every 30 s: expected more than 30 (default 600)", self.idle_timeout_secs),
            ));
        }
        if self.max_control_body_bytes < 1024 {
            return Err((
                "web_ui.gateway.max_control_body_bytes",
                format!("{} is too small for a stop/down/autostop body: expected at least 1024 (default 65536)", self.max_control_body_bytes),
            ));
        }
        Ok(())
    }
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            level: LogLevel::Info,
        }
    }
}

/// A configuration error: the file, the key path (dotted, empty for the whole file) and
/// what was expected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) struct ConfigError {
    pub(crate) file: PathBuf,
    pub(crate) key: String,
    pub(crate) message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.key.is_empty() {
            write!(f, "{}: {}", self.file.display(), self.message)
        } else {
            write!(f, "{}: {}: {}", self.file.display(), self.key, self.message)
        }
    }
}

/// Paths given on the command line that take the place of the config file's (the module
/// passes systemd's credentials this way: their paths exist only inside the unit).
#[derive(Debug, Clone, Default, clap::Args)]
pub(crate) struct WebUiOverrides {
    /// Overrides web_ui.users_file (the module passes systemd's credential here).
    #[arg(long, value_name = "FILE")]
    pub(crate) users_file: Option<PathBuf>,
    /// Overrides web_ui.tokens_file.
    #[arg(long, value_name = "FILE")]
    pub(crate) tokens_file: Option<PathBuf>,
    /// Overrides web_ui.tls_cert_file.
    #[arg(long, value_name = "FILE")]
    pub(crate) tls_cert_file: Option<PathBuf>,
    /// Overrides web_ui.tls_key_file.
    #[arg(long, value_name = "FILE")]
    pub(crate) tls_key_file: Option<PathBuf>,
    /// Overrides web_ui.oidc.client_secret_file (with [web_ui.oidc] set).
    #[arg(long, value_name = "FILE")]
    pub(crate) oidc_client_secret_file: Option<PathBuf>,
}

impl Config {
    /// The config with the paths given on the command line in place of the file's.
    pub(crate) fn with_overrides(mut self, o: WebUiOverrides) -> Config {
        let w = &mut self.web_ui;
        for (set, given) in [
            (&mut w.users_file, o.users_file),
            (&mut w.tokens_file, o.tokens_file),
            (&mut w.tls_cert_file, o.tls_cert_file),
            (&mut w.tls_key_file, o.tls_key_file),
        ] {
            if given.is_some() {
                *set = given;
            }
        }
        if let (Some(oidc), Some(file)) = (w.oidc.as_mut(), o.oidc_client_secret_file) {
            oidc.client_secret_file = Some(file);
        }
        self
    }

    /// Reads and validates the config file.
    pub(crate) fn load(path: &Path) -> Result<Config, ConfigError> {
        let text =
            crate::files::read_regular_text(path, MAX_CONFIG_BYTES).map_err(|e| ConfigError {
                file: path.to_path_buf(),
                key: String::new(),
                message: format!("cannot read the config file: it {e}"),
            })?;
        Config::parse(&text, path)
    }

    /// Parses and validates config text; `path` is only used in errors.
    pub(crate) fn parse(text: &str, path: &Path) -> Result<Config, ConfigError> {
        let de = toml::Deserializer::new(text);
        let cfg: Config = serde_path_to_error::deserialize(de).map_err(|e| {
            let key = e.path().to_string();
            let mut key = if key == "." { String::new() } else { key };
            let inner = e.into_inner();
            let mut message = inner.message().trim().to_string();
            if let Some(span) = inner.span() {
                let (line, col) = line_col(text, span.start);
                message = format!("{message} (line {line}, column {col})");
                // Errors found while reading a value (an integer too large for any
                // type) come without a key path: take it from the text.
                if key.is_empty() {
                    key = key_at(text, span.start).unwrap_or_default();
                }
            }
            ConfigError {
                file: path.to_path_buf(),
                key,
                message,
            }
        })?;
        cfg.validate().map_err(|(key, message)| ConfigError {
            file: path.to_path_buf(),
            key: key.to_string(),
            message,
        })?;
        Ok(cfg)
    }

    /// Semantic checks that types alone cannot express: each section checks its own keys,
    /// in the order of the file's sections.
    fn validate(&self) -> Checked {
        self.skypilot.validate()?;
        self.cluster_manager.validate(&self.skypilot)?;
        self.autostop.validate()?;
        self.policy.validate()?;
        self.web_ui.validate()?;
        self.web_ui.gateway.validate()?;
        self.monitor.validate()?;
        self.backup.validate()
    }

    /// The credential paths that are set, by cloud name.
    pub fn credential_paths(&self) -> BTreeMap<&'static str, &Path> {
        let c = &self.credentials;
        [
            ("aws", &c.aws),
            ("gcp", &c.gcp),
            ("azure", &c.azure),
            ("kubernetes", &c.kubernetes),
            ("lambda", &c.lambda),
            ("runpod", &c.runpod),
        ]
        .into_iter()
        .filter_map(|(k, v)| v.as_deref().map(|p| (k, p)))
        .collect()
    }
}

/// Whether `url` reaches the socket `listen` binds: the same port on its address, or on
/// any local address when it binds a wildcard.
fn points_at(url: &url::Url, listen: SocketAddr) -> bool {
    use std::net::IpAddr;
    if url.port_or_known_default() != Some(listen.port()) {
        return false;
    }
    let host: Option<IpAddr> = match url.host() {
        Some(url::Host::Ipv4(a)) => Some(IpAddr::V4(a)),
        Some(url::Host::Ipv6(a)) => Some(IpAddr::V6(a)),
        Some(url::Host::Domain(d)) if d.eq_ignore_ascii_case("localhost") => {
            Some(IpAddr::V4(std::net::Ipv4Addr::LOCALHOST))
        }
        _ => None,
    };
    let Some(host) = host else { return false };
    let listen_ip = listen.ip();
    host == listen_ip
        || (listen_ip.is_unspecified() && (host.is_loopback() || host.is_unspecified()))
        || (host.is_loopback() && listen_ip.is_loopback())
}

/// The dotted key whose `key = value` line holds `offset`, under the nearest `[table]`
/// header above it.
fn key_at(text: &str, offset: usize) -> Option<String> {
    let before = text.get(..offset.min(text.len()))?;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let line = text[line_start..].lines().next()?;
    let name = line.split_once('=')?.0.trim().trim_matches('"');
    if name.is_empty() || name.starts_with('[') || name.starts_with('#') {
        return None;
    }
    let table = before[..line_start].lines().rev().find_map(|l| {
        let l = l.trim();
        (l.starts_with('[') && l.ends_with(']'))
            .then(|| l.trim_matches(['[', ']']).trim().to_string())
    });
    Some(match table {
        Some(t) if !t.is_empty() => format!("{t}.{name}"),
        _ => name.to_string(),
    })
}

fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let col = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, col)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> Result<Config, ConfigError> {
        Config::parse(s, Path::new("host.toml"))
    }

    #[test]
    fn empty_file_gives_defaults() {
        let c = parse("").unwrap();
        assert_eq!(c, Config::default());
        assert_eq!(c.cluster_manager.poll_interval_secs, 30);
        assert_eq!(c.cluster_manager.force_refresh_interval_secs, 300);
        assert_ne!(c.monitor.listen.port(), 9090);
    }

    #[test]
    fn single_sign_on_is_checked() {
        let ok = "[web_ui]\npublic_url = \"https://sky.example.org\"\n[web_ui.oidc]\nissuer = \"https://id.example.org/realms/t\"\nclient_id = \"sky\"\nuser_groups = [\"ml\"]\n";
        let c = parse(ok).unwrap();
        let o = c.web_ui.oidc.unwrap();
        assert_eq!(o.username_claim, "preferred_username");
        assert_eq!(o.clock_skew_secs, 60);
        for (text, key, says) in [
            (
                ok.replace("https://sky", "")
                    .replace("public_url = \".example.org\"\n", ""),
                "web_ui.public_url",
                "callback",
            ),
            (
                ok.replace("https://id.example.org", "http://id.example.org"),
                "web_ui.oidc.issuer",
                "https://",
            ),
            (
                ok.replace("user_groups = [\"ml\"]\n", ""),
                "web_ui.oidc.admin_groups",
                "nobody",
            ),
            (
                ok.replace("client_id = \"sky\"", "client_id = \"\""),
                "web_ui.oidc.client_id",
                "empty",
            ),
            (
                ok.replace("[web_ui.oidc]", "[web_ui.oidc]\nextra = 1"),
                "web_ui.oidc.extra",
                "unknown",
            ),
            (
                "[web_ui]\npassword_login = false\n".to_string(),
                "web_ui.password_login",
                "nobody could log in",
            ),
        ] {
            let e = parse(&text).unwrap_err();
            assert_eq!(e.key, key, "{text}: {e}");
            assert!(e.to_string().contains(says), "{e}");
        }
        // http:// on loopback is fine (a provider on the same host).
        parse(&ok.replace("https://id.example.org", "http://127.0.0.1:5556")).unwrap();
    }

    #[test]
    fn unknown_key_names_path() {
        let e = parse("[cluster_manager]\npoll_intervall = 3\n").unwrap_err();
        assert_eq!(e.key, "cluster_manager.poll_intervall");
        let s = e.to_string();
        assert!(
            s.starts_with("host.toml: cluster_manager.poll_intervall: unknown field"),
            "{s}"
        );
        assert!(s.contains("poll_interval_secs"), "{s}");
    }

    #[test]
    fn wrong_type_names_path() {
        let e = parse("[cluster_manager]\npoll_interval_secs = \"often\"\n").unwrap_err();
        assert_eq!(e.key, "cluster_manager.poll_interval_secs");
        assert!(e.message.contains("invalid type"), "{}", e.message);
    }

    #[test]
    fn allowed_hosts_are_host_names() {
        let c = parse("[web_ui]\nallowed_hosts = [\"sky.example.org\", \"gpu-box\"]\n").unwrap();
        assert_eq!(c.web_ui.allowed_hosts.len(), 2);
        for bad in ["https://sky.example.org", "sky:8080", ""] {
            let e = parse(&format!("[web_ui]\nallowed_hosts = [{bad:?}]\n")).unwrap_err();
            assert_eq!(e.key, "web_ui.allowed_hosts", "{bad}");
            assert!(e.message.contains("host name"), "{}", e.message);
        }
        let e = parse("[web_ui]\nrole_sync_interval_secs = 0\n").unwrap_err();
        assert_eq!(e.key, "web_ui.role_sync_interval_secs");
    }

    #[test]
    fn zero_interval_rejected() {
        let e = parse("[cluster_manager]\npoll_interval_secs = 0\n").unwrap_err();
        assert_eq!(e.key, "cluster_manager.poll_interval_secs");
    }

    #[test]
    fn log_levels_accept_seed_spelling() {
        for (s, l) in [
            ("DEBUG", LogLevel::Debug),
            ("INFO", LogLevel::Info),
            ("WARNING", LogLevel::Warn),
            ("warn", LogLevel::Warn),
            ("ERROR", LogLevel::Error),
            ("error", LogLevel::Error),
        ] {
            let c = parse(&format!("[log]\nlevel = \"{s}\"\n")).unwrap();
            assert_eq!(c.log.level, l);
        }
        let e = parse("[log]\nlevel = \"LOUD\"\n").unwrap_err();
        assert_eq!(e.key, "log.level");
        assert!(e.message.contains("LOUD"), "{}", e.message);
    }

    #[test]
    fn bad_url_rejected() {
        let e = parse("[skypilot]\napi_url = \"ftp://x\"\n").unwrap_err();
        assert_eq!(e.key, "skypilot.api_url");
        let e = parse("[skypilot]\napi_url = \"not a url\"\n").unwrap_err();
        assert_eq!(e.key, "skypilot.api_url");
    }

    #[test]
    fn load_budget_is_a_share() {
        assert_eq!(Config::default().cluster_manager.load_budget, 0.02);
        let c = parse("[cluster_manager]\nload_budget = 0.05\n").unwrap();
        assert_eq!(c.cluster_manager.load_budget, 0.05);
        for bad in ["0", "0.0", "-0.1", "1.5", "nan"] {
            let e = parse(&format!("[cluster_manager]\nload_budget = {bad}\n")).unwrap_err();
            assert_eq!(e.key, "cluster_manager.load_budget", "{bad}: {e}");
            assert!(e.to_string().contains("above 0 and at most 1"), "{e}");
        }
    }

    #[test]
    fn force_refresh_shorter_than_poll_rejected() {
        let e =
            parse("[cluster_manager]\npoll_interval_secs = 60\nforce_refresh_interval_secs = 30\n")
                .unwrap_err();
        assert_eq!(e.key, "cluster_manager.force_refresh_interval_secs");
    }

    #[test]
    fn syntax_error_has_line() {
        let e = parse("[skypilot\n").unwrap_err();
        assert!(e.message.contains("line 1"), "{}", e.message);
    }

    #[test]
    fn round_trip_serialises() {
        let c = Config::default();
        let s = toml::to_string(&c).unwrap();
        assert_eq!(parse(&s).unwrap(), c);
    }

    #[test]
    fn a_number_too_large_names_its_key() {
        let e = parse("[skypilot]\napi_url = \"http://x:1\"\n[cluster_manager]\npoll_interval_secs = 99999999999999999999\n").unwrap_err();
        assert_eq!(e.key, "cluster_manager.poll_interval_secs", "{e}");
        assert!(e.message.contains("line 4"), "{e}");
    }

    #[test]
    fn autostop_section_defaults_and_errors_name_the_key() {
        let c = parse("[autostop]\nidle_minutes = 45\nenforce = \"down\"\nexempt_names = [\"keep-*\"]\nmax_lifetime_hours = 12\n").unwrap();
        assert_eq!(c.autostop.idle_minutes, 45);
        assert_eq!(c.autostop.enforce, Enforce::Down);
        assert_eq!(c.autostop.max_lifetime_hours, Some(12));
        assert!(c.autostop.down_when_cannot_stop);
        assert!(!c.autostop.dry_run);
        assert!(c
            .autostop
            .cannot_stop_clouds
            .contains(&"Kubernetes".to_string()));
        for (text, key, part) in [
            ("idle_minutes = 0", "autostop.idle_minutes", "at least 1"),
            ("enforce = \"halt\"", "autostop.enforce", "halt"),
            (
                "max_lifetime_hours = 5",
                "autostop.max_lifetime_hours",
                "needs autostop.enforce",
            ),
            (
                "enforce = \"stop\"\nmax_lifetime_hours = 0",
                "autostop.max_lifetime_hours",
                "at least 1",
            ),
            (
                "retry_base_secs = 600\nretry_max_secs = 60",
                "autostop.retry_max_secs",
                "shorter than",
            ),
            ("interval_secs = 0", "autostop.interval_secs", "at least 1"),
            (
                "exempt_users = [\"\"]",
                "autostop.exempt_users",
                "entry 1 is empty",
            ),
            (
                "idle_minutes = -5",
                "autostop.idle_minutes",
                "invalid value",
            ),
        ] {
            let e = parse(&format!("[autostop]\n{text}\n")).unwrap_err();
            assert_eq!(e.key, key, "{text}: {e}");
            assert!(e.to_string().contains(part), "{text}: {e}");
        }
    }

    #[test]
    fn policy_defaults_and_limits() {
        let c = parse("").unwrap();
        assert_eq!(c.policy.listen.to_string(), "127.0.0.1:9190");
        assert!(!c.policy.create_token && !c.policy.controllers);
        let c = parse(
            "[policy]\nlisten = \"127.0.0.1:9300\"\ncontrollers = true\ncreate_token = true\n",
        )
        .unwrap();
        assert_eq!(c.policy.listen.port(), 9300);
        assert!(c.policy.controllers && c.policy.create_token);
        let e = parse("[policy]\nmax_body_bytes = 10\n").unwrap_err();
        assert_eq!(e.key, "policy.max_body_bytes");
        let e = parse("[policy]\ntoken_file = \"\"\n").unwrap_err();
        assert_eq!(e.key, "policy.token_file");
        let e = parse("[policy]\ntoken = \"x\"\n").unwrap_err();
        assert_eq!(e.key, "policy.token");
    }

    #[test]
    fn the_monitor_never_scrapes_itself() {
        for (listen, url, loops) in [
            ("127.0.0.1:9188", "http://127.0.0.1:9188/metrics", true),
            ("127.0.0.1:9188", "http://localhost:9188/metrics", true),
            ("0.0.0.0:9188", "http://127.0.0.1:9188/metrics", true),
            ("[::]:9188", "http://[::1]:9188/metrics", true),
            ("127.0.0.1:9188", "http://127.0.0.1:46580/metrics", false),
            ("127.0.0.1:9188", "http://10.1.2.3:9188/metrics", false),
        ] {
            let text =
                format!("[monitor]\nlisten = \"{listen}\"\nskypilot_metrics_url = \"{url}\"\n");
            match parse(&text) {
                Err(e) if loops => {
                    assert_eq!(e.key, "monitor.skypilot_metrics_url");
                    assert!(e.message.contains("own address"), "{e}");
                }
                Ok(_) if !loops => {}
                other => panic!("{listen} / {url}: {other:?}"),
            }
        }
    }
}
