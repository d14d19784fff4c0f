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
    pub(crate) credentials: CredentialsConfig,
    pub(crate) log: LogConfig,
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
    /// Seconds one poll may take in all (its several requests together); a slower poll
    /// fails and the state is kept. Under systemd it must stay below `WatchdogSec`
    /// (the module sets that from this value).
    pub(crate) poll_deadline_secs: u64,
    /// The host database (SQLite). Shared by every role; only the cluster manager writes
    /// cluster state.
    pub database: PathBuf,
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
    /// The gateway to SkyPilot's dashboard and REST API (`[web_ui.gateway]`).
    #[serde(default)]
    pub gateway: GatewayConfig,
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

/// `skypilot-host autostop`: the enforcer of idle stop.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AutostopConfig {}

// ---------------------------------------------------------------- launch policy (`policy`)

/// `skypilot-host policy`: SkyPilot's RESTful admin policy endpoint.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PolicyConfig {}

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
            poll_deadline_secs: 120,
            database: PathBuf::from("/var/lib/skypilot/host.db"),
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
            session_lifetime_secs: 8 * 3600,
            login_failures_per_client: 20,
            login_failures_per_user: 10,
            login_window_secs: 300,
            skypilot_config_file: None,
            gateway: GatewayConfig::default(),
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

impl WebUiConfig {
    /// Semantic checks of `[web_ui]`: (key, what was expected).
    fn validate(&self) -> Result<(), (&'static str, String)> {
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
        for (key, v) in [
            ("web_ui.session_lifetime_secs", self.session_lifetime_secs),
            ("web_ui.login_window_secs", self.login_window_secs),
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
        Ok(())
    }
}

impl GatewayConfig {
    /// The upstream's base URL: `upstream`, else `skypilot.api_url`.
    pub(crate) fn upstream_url<'a>(&'a self, skypilot: &'a SkypilotConfig) -> &'a str {
        self.upstream.as_deref().unwrap_or(&skypilot.api_url)
    }

    fn validate(&self) -> Result<(), (&'static str, String)> {
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

impl Config {
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

    /// Semantic checks that types alone cannot express.
    fn validate(&self) -> Result<(), (&'static str, String)> {
        match url::Url::parse(&self.skypilot.api_url) {
            Ok(u) if u.scheme() == "http" || u.scheme() == "https" => {
                if u.host_str().is_none() {
                    return Err(("skypilot.api_url", format!("{:?} has no host: expected an http(s) URL such as {DEFAULT_API_URL}", self.skypilot.api_url)));
                }
            }
            Ok(u) => {
                return Err((
                    "skypilot.api_url",
                    format!(
                        "scheme {:?} is not supported: expected an http(s) URL such as {DEFAULT_API_URL}",
                        u.scheme()
                    ),
                ))
            }
            Err(e) => {
                return Err((
                    "skypilot.api_url",
                    format!(
                        "{:?} is not a URL ({e}): expected an http(s) URL such as {DEFAULT_API_URL}",
                        self.skypilot.api_url
                    ),
                ))
            }
        }
        let positive: [(&'static str, u64); 3] = [
            (
                "skypilot.request_timeout_secs",
                self.skypilot.request_timeout_secs,
            ),
            (
                "cluster_manager.poll_interval_secs",
                self.cluster_manager.poll_interval_secs,
            ),
            (
                "cluster_manager.force_refresh_interval_secs",
                self.cluster_manager.force_refresh_interval_secs,
            ),
        ];
        for (key, v) in positive {
            if v == 0 {
                return Err((key, "must be at least 1 (seconds)".to_string()));
            }
        }
        if self.skypilot.max_answer_bytes < 64 * 1024 {
            return Err((
                "skypilot.max_answer_bytes",
                format!(
                    "{} is too small to hold even a health answer: expected at least 65536 (default {DEFAULT_MAX_ANSWER_BYTES})",
                    self.skypilot.max_answer_bytes
                ),
            ));
        }
        if self.cluster_manager.poll_deadline_secs < self.skypilot.request_timeout_secs {
            return Err((
                "cluster_manager.poll_deadline_secs",
                format!(
                    "{} is shorter than skypilot.request_timeout_secs ({}): expected at least one request's timeout",
                    self.cluster_manager.poll_deadline_secs, self.skypilot.request_timeout_secs
                ),
            ));
        }
        if self.skypilot.connect_attempts == 0 {
            return Err((
                "skypilot.connect_attempts",
                "must be at least 1".to_string(),
            ));
        }
        if self.cluster_manager.force_refresh_interval_secs
            < self.cluster_manager.poll_interval_secs
        {
            return Err((
                "cluster_manager.force_refresh_interval_secs",
                format!(
                    "{} is shorter than cluster_manager.poll_interval_secs ({}): expected at least the poll interval",
                    self.cluster_manager.force_refresh_interval_secs,
                    self.cluster_manager.poll_interval_secs
                ),
            ));
        }
        if self.cluster_manager.database.as_os_str().is_empty() {
            return Err((
                "cluster_manager.database",
                "is empty: expected the path of the SQLite database file".to_string(),
            ));
        }
        self.web_ui.validate()?;
        self.web_ui.gateway.validate()?;
        if let Some(u) = &self.monitor.skypilot_metrics_url {
            let parsed = url::Url::parse(u)
                .ok()
                .filter(|p| p.scheme() == "http" || p.scheme() == "https");
            let Some(parsed) = parsed else {
                return Err((
                    "monitor.skypilot_metrics_url",
                    format!("{u:?}: expected an http(s) URL such as http://127.0.0.1:9091/metrics"),
                ));
            };
            if points_at(&parsed, self.monitor.listen) {
                return Err((
                    "monitor.skypilot_metrics_url",
                    format!(
                        "{u:?} is the monitor's own address (monitor.listen = {}): each scrape of /metrics/skypilot would fetch itself; expected SkyPilot's metrics endpoint",
                        self.monitor.listen
                    ),
                ));
            }
        }
        Ok(())
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
