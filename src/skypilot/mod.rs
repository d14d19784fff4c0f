//! REST client for SkyPilot's API server.
//!
//! SkyPilot's request model: `POST /<op>` schedules a request and answers with its id in
//! the `x-skypilot-request-id` header; `GET /api/get?request_id=` waits for it and returns
//! the request payload, whose `return_value` (success) or `error` (HTTP 500) is a JSON
//! document encoded as a string. The client reads `api_version` from `/api/health` and
//! sends a version the server accepts, retries with back-off when the connection fails,
//! and keeps SkyPilot's error type and message.

use std::fmt;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde::de::DeserializeOwned;
use serde_json::json;

use crate::cluster::Cluster;
use crate::config::SkypilotConfig;

pub mod wire;

pub(crate) use wire::{CostRecord, Health};

/// The API version this client was written against (SkyPilot 0.14.1).
pub(crate) const CLIENT_API_VERSION: u32 = 62;
/// The oldest API version whose wire format this client understands; SkyPilot itself
/// refuses clients below 24 with HTTP 400.
pub(crate) const MIN_API_VERSION: u32 = 24;
/// The SkyPilot version this client was tested with, sent as `X-SkyPilot-Version`.
pub(crate) const CLIENT_SKYPILOT_VERSION: &str = "0.14.1";

/// `refresh` of `POST /status`: `None` reads SkyPilot's database, `Auto` and `Force`
/// ask the clouds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum RefreshMode {
    None,
    Auto,
    Force,
}

impl RefreshMode {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            RefreshMode::None => "NONE",
            RefreshMode::Auto => "AUTO",
            RefreshMode::Force => "FORCE",
        }
    }
}

impl std::str::FromStr for RefreshMode {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s {
            "NONE" => Ok(RefreshMode::None),
            "AUTO" => Ok(RefreshMode::Auto),
            "FORCE" => Ok(RefreshMode::Force),
            other => Err(format!(
                "unknown refresh mode {other:?}: expected NONE, AUTO or FORCE"
            )),
        }
    }
}

impl fmt::Display for RefreshMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("SkyPilot API server {url}: cannot connect after {attempts} attempt(s): {message}")]
    Connect {
        url: String,
        attempts: u32,
        message: String,
    },
    #[error("SkyPilot API server {url}: no answer within {}s", after.as_secs_f64())]
    Timeout { url: String, after: Duration },
    #[error("SkyPilot API server {url}: HTTP {status}: {body}")]
    Http {
        url: String,
        status: u16,
        body: String,
    },
    #[error("SkyPilot API server {url}: {}", auth_message(*.token_sent, *.status, .detail))]
    Auth {
        url: String,
        status: u16,
        /// Whether a service-account token was sent (skypilot.token_file).
        token_sent: bool,
        /// SkyPilot's `detail`, bounded to one line.
        detail: String,
    },
    #[error("SkyPilot API server {url}: malformed answer: {what}")]
    Malformed { url: String, what: String },
    #[error("SkyPilot API server {url}: {op} failed with {error_type}: {message}")]
    Sky {
        url: String,
        op: String,
        error_type: String,
        message: String,
    },
    #[error("SkyPilot API server {url}: API version {found} is older than {MIN_API_VERSION}, the oldest this client speaks; upgrade SkyPilot")]
    ServerTooOld { url: String, found: u32 },
    #[error("{path}: cannot read the service-account token (skypilot.token_file): {message}")]
    Token { path: String, message: String },
    #[error("skypilot.api_url {url:?}: {message}")]
    BadUrl { url: String, message: String },
    #[error("SkyPilot API server {url}: answer larger than {limit} bytes (skypilot.max_answer_bytes); not reading the rest")]
    TooLarge { url: String, limit: u64 },
    #[error("{path}: cannot use it as skypilot.ca_file: {message}")]
    CaFile { path: String, message: String },
}

impl ClientError {
    /// The cause in one line for people, without URLs or request ids: SkyPilot's error
    /// type and the first line of its message, or what failed on the way to it. A
    /// missing cloud SDK (SkyPilot's `ImportError: Failed to import dependencies for
    /// AWS`) is said as such. The whole text is `to_string()`.
    pub fn cause(&self) -> String {
        let line = |m: &str| -> String {
            let first = m
                .lines()
                .map(str::trim)
                .find(|l| !l.is_empty())
                .unwrap_or("");
            first.chars().take(300).collect()
        };
        match self {
            ClientError::Sky {
                op,
                error_type,
                message,
                ..
            } => {
                const SDK: &str = "Failed to import dependencies for ";
                if let Some(rest) = message.split(SDK).nth(1) {
                    let cloud: String = rest
                        .chars()
                        .take_while(|c| c.is_ascii_alphanumeric() || *c == ' ')
                        .take(40)
                        .collect();
                    if !cloud.trim().is_empty() {
                        return format!(
                            "{op} failed: the {} SDK is not installed on the API server ({error_type})",
                            cloud.trim()
                        );
                    }
                }
                format!("{op} failed: {error_type}: {}", line(message))
            }
            ClientError::Connect { attempts, .. } => {
                format!("cannot connect to SkyPilot's API server ({attempts} attempt(s))")
            }
            ClientError::Timeout { after, .. } => format!(
                "SkyPilot's API server did not answer within {}s",
                after.as_secs_f64()
            ),
            ClientError::Http { status, body, .. } => {
                format!(
                    "SkyPilot's API server answered HTTP {status}: {}",
                    line(body)
                )
            }
            ClientError::Auth {
                token_sent,
                status,
                detail,
                ..
            } => auth_message(*token_sent, *status, detail),
            other => line(&other.to_string()),
        }
    }

    /// A short, bounded kind for metrics and the database.
    pub fn kind(&self) -> String {
        match self {
            ClientError::Connect { .. } => "connect".into(),
            ClientError::Timeout { .. } => "timeout".into(),
            ClientError::Http { status, .. } => format!("http_{status}"),
            ClientError::Auth { .. } => "auth".into(),
            ClientError::Malformed { .. } => "malformed".into(),
            ClientError::TooLarge { .. } => "too_large".into(),
            ClientError::Sky { error_type, .. } => {
                let t: String = error_type
                    .chars()
                    .filter(|c| c.is_ascii_alphanumeric() || *c == '_')
                    .take(64)
                    .collect();
                format!("sky_{t}")
            }
            ClientError::ServerTooOld { .. } => "server_too_old".into(),
            ClientError::Token { .. } => "token".into(),
            ClientError::BadUrl { .. } | ClientError::CaFile { .. } => "config".into(),
        }
    }

    /// SkyPilot's error type, when the server ran the request and it failed.
    pub fn sky_error_type(&self) -> Option<&str> {
        match self {
            ClientError::Sky { error_type, .. } => Some(error_type),
            _ => None,
        }
    }

    /// True when the API server could not be reached at all (as opposed to answering badly).
    pub fn is_unreachable(&self) -> bool {
        matches!(
            self,
            ClientError::Connect { .. } | ClientError::Timeout { .. }
        )
    }
}

pub type Result<T> = std::result::Result<T, ClientError>;

pub struct Client {
    http: reqwest::Client,
    base: url::Url,
    token: Option<String>,
    timeout: Duration,
    attempts: u32,
    max_body: u64,
    /// The API version to send: ours until the server's is known, then the lower.
    api_version: AtomicU32,
    /// The identity header and the person's name sent with every request, when the
    /// client acts for a person ([`Client::acting_as`]).
    acting: Option<(String, String)>,
}

impl fmt::Debug for Client {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never print the token.
        f.debug_struct("Client")
            .field("base", &self.base.as_str())
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .field("timeout", &self.timeout)
            .finish()
    }
}

/// Largest CA file read (a bundle of a few hundred certificates fits).
const CA_FILE_MAX_BYTES: u64 = 4 * 1024 * 1024;

/// An HTTP client builder for talking to SkyPilot: TLS with the system's roots plus
/// `skypilot.ca_file`'s certificates, and our user agent.
pub(crate) fn http_client_builder(cfg: &SkypilotConfig) -> Result<reqwest::ClientBuilder> {
    let mut b = reqwest::Client::builder()
        .use_rustls_tls()
        .user_agent(concat!("skypilot-host/", env!("CARGO_PKG_VERSION")));
    if let Some(path) = &cfg.ca_file {
        let err = |message: String| ClientError::CaFile {
            path: path.display().to_string(),
            message,
        };
        let pem = crate::files::read_regular(path, CA_FILE_MAX_BYTES)
            .map_err(|e| err(format!("it {e}; expected a PEM file of CA certificates")))?;
        let certs = reqwest::Certificate::from_pem_bundle(&pem)
            .map_err(|e| err(format!("not PEM certificates: {}", root_cause(&e))))?;
        if certs.is_empty() {
            return Err(err(
                "holds no certificate: expected one or more -----BEGIN CERTIFICATE----- blocks"
                    .into(),
            ));
        }
        for c in certs {
            b = b.add_root_certificate(c);
        }
    }
    Ok(b)
}

/// How long to wait before retry `attempt` (1-based) after a connection failure.
pub(crate) fn backoff(attempt: u32) -> Duration {
    Duration::from_millis(250u64.saturating_mul(1u64 << attempt.min(6)) / 2)
}

impl Client {
    pub fn new(cfg: &SkypilotConfig) -> Result<Client> {
        let mut base = url::Url::parse(&cfg.api_url).map_err(|e| ClientError::BadUrl {
            url: cfg.api_url.clone(),
            message: e.to_string(),
        })?;
        if !base.path().ends_with('/') {
            let p = format!("{}/", base.path());
            base.set_path(&p);
        }
        let token = match &cfg.token_file {
            None => None,
            Some(path) => {
                let text = crate::files::read_regular_text(path, 64 * 1024).map_err(|e| {
                    ClientError::Token {
                        path: path.display().to_string(),
                        message: format!("it {e}"),
                    }
                })?;
                let t = text.trim().to_string();
                if t.is_empty() {
                    return Err(ClientError::Token {
                        path: path.display().to_string(),
                        message: "the file is empty: expected a token such as sky_…".into(),
                    });
                }
                Some(t)
            }
        };
        let timeout = Duration::from_secs(cfg.request_timeout_secs);
        let http = http_client_builder(cfg)?
            .timeout(timeout)
            .connect_timeout(timeout.min(Duration::from_secs(10)))
            .build()
            .map_err(|e| ClientError::BadUrl {
                url: cfg.api_url.clone(),
                message: format!("cannot build an HTTP client: {e}"),
            })?;
        Ok(Client {
            http,
            base,
            token,
            timeout,
            attempts: cfg.connect_attempts.max(1),
            max_body: cfg.max_answer_bytes,
            api_version: AtomicU32::new(CLIENT_API_VERSION),
            acting: None,
        })
    }

    /// This client, sending `name` in SkyPilot's identity header `header` with every
    /// request: SkyPilot then records and authorizes the request as that person. (With a
    /// service-account token configured, SkyPilot takes the token's identity instead.)
    pub(crate) fn acting_as(&self, header: &str, name: &str) -> Client {
        Client {
            http: self.http.clone(),
            base: self.base.clone(),
            token: self.token.clone(),
            timeout: self.timeout,
            attempts: self.attempts,
            max_body: self.max_body,
            api_version: AtomicU32::new(self.api_version.load(Ordering::Relaxed)),
            acting: Some((header.to_string(), name.to_string())),
        }
    }

    pub(crate) fn base_url(&self) -> &str {
        self.base.as_str()
    }

    fn url(&self, path: &str) -> String {
        match self.base.join(path) {
            Ok(u) => u.to_string(),
            Err(_) => format!("{}{}", self.base, path),
        }
    }

    fn request(&self, method: reqwest::Method, url: &str) -> reqwest::RequestBuilder {
        let mut rb = self
            .http
            .request(method, url)
            .header(
                "X-SkyPilot-API-Version",
                self.api_version.load(Ordering::Relaxed).to_string(),
            )
            .header("X-SkyPilot-Version", CLIENT_SKYPILOT_VERSION);
        if let Some(t) = &self.token {
            rb = rb.bearer_auth(t);
        }
        if let Some((header, name)) = &self.acting {
            rb = rb.header(header.as_str(), name.as_str());
        }
        rb
    }

    fn transport_error(&self, url: &str, e: reqwest::Error, attempts: u32) -> ClientError {
        if e.is_timeout() {
            ClientError::Timeout {
                url: url.to_string(),
                after: self.timeout,
            }
        } else if e.is_connect() {
            ClientError::Connect {
                url: url.to_string(),
                attempts,
                message: root_cause(&e),
            }
        } else if e.is_decode() || e.is_body() {
            ClientError::Malformed {
                url: url.to_string(),
                what: root_cause(&e),
            }
        } else {
            ClientError::Connect {
                url: url.to_string(),
                attempts,
                message: root_cause(&e),
            }
        }
    }

    /// Sends a request, retrying with back-off only when the connection could not be
    /// made (the server never saw it, so a retry cannot run an action twice).
    async fn send(
        &self,
        build: impl Fn() -> reqwest::RequestBuilder,
        url: &str,
    ) -> Result<reqwest::Response> {
        let mut attempt = 1;
        loop {
            match build().send().await {
                Ok(r) => return Ok(r),
                Err(e) if e.is_connect() && attempt < self.attempts => {
                    tracing::debug!(url, attempt, error = %root_cause(&e), "connection failed; retrying");
                    tokio::time::sleep(backoff(attempt)).await;
                    attempt += 1;
                }
                Err(e) => return Err(self.transport_error(url, e, attempt)),
            }
        }
    }

    /// The whole body, as bytes, read piece by piece up to `skypilot.max_answer_bytes`:
    /// large answers (10,000 clusters are ~7 MiB) are parsed from this buffer without
    /// another copy, and a larger one is refused before it fills the memory.
    async fn body_bytes(&self, url: &str, mut resp: reqwest::Response) -> Result<bytes::Bytes> {
        let too_large = || ClientError::TooLarge {
            url: url.to_string(),
            limit: self.max_body,
        };
        let declared = resp.content_length();
        if declared.is_some_and(|n| n > self.max_body) {
            return Err(too_large());
        }
        let first = resp
            .chunk()
            .await
            .map_err(|e| self.transport_error(url, e, 1))?;
        let Some(first) = first else {
            return Ok(bytes::Bytes::new());
        };
        // One piece that is the whole body (the usual small answer): no copy.
        let mut buf = match declared {
            Some(n) if n == first.len() as u64 => return Ok(first),
            Some(n) => bytes::BytesMut::with_capacity(usize::try_from(n).unwrap_or(0)),
            None => bytes::BytesMut::with_capacity(first.len() * 2),
        };
        buf.extend_from_slice(&first);
        while let Some(piece) = resp
            .chunk()
            .await
            .map_err(|e| self.transport_error(url, e, 1))?
        {
            if (buf.len() + piece.len()) as u64 > self.max_body {
                return Err(too_large());
            }
            buf.extend_from_slice(&piece);
        }
        Ok(buf.freeze())
    }

    /// `GET /api/health`; also learns the server's API version.
    pub async fn health(&self) -> Result<Health> {
        let url = self.url("api/health");
        let resp = self
            .send(|| self.request(reqwest::Method::GET, &url), &url)
            .await?;
        let status = resp.status();
        let text = self.body_bytes(&url, resp).await?;
        check_status(&url, status, &text, self.token.is_some())?;
        let health: Health = serde_json::from_slice(&text).map_err(|e| ClientError::Malformed {
            url: url.clone(),
            what: format!(
                "health answer is not the expected JSON ({e}): {}",
                snippet_bytes(&text)
            ),
        })?;
        if let Some(v) = health.api_version_number() {
            if v < MIN_API_VERSION {
                return Err(ClientError::ServerTooOld { url, found: v });
            }
            self.api_version
                .store(v.min(CLIENT_API_VERSION), Ordering::Relaxed);
        }
        Ok(health)
    }

    /// Runs one SkyPilot operation to completion and returns its decoded return value.
    async fn call<T: DeserializeOwned>(&self, op: &str, body: serde_json::Value) -> Result<T> {
        let text = self.call_raw(op, body).await?;
        serde_json::from_str(&text).map_err(|e| ClientError::Malformed {
            url: self.url(op),
            what: format!("{op}: return value is not the expected JSON: {e}"),
        })
    }

    /// Like [`Client::call`], returning the `return_value` JSON text.
    pub(crate) async fn call_raw(&self, op: &str, body: serde_json::Value) -> Result<String> {
        self.queued(reqwest::Method::POST, op, Some(&body)).await
    }

    /// One request (`method` on `path`, `body` as JSON when given), its status checked:
    /// the URL, SkyPilot's request id if it gave one, and the body.
    async fn exchange(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<&serde_json::Value>,
    ) -> Result<(String, Option<String>, bytes::Bytes)> {
        let url = self.url(path);
        let resp = self
            .send(
                || {
                    let rb = self.request(method.clone(), &url);
                    match body {
                        Some(b) => rb.json(b),
                        None => rb,
                    }
                },
                &url,
            )
            .await?;
        let status = resp.status();
        let request_id = resp
            .headers()
            .get("x-skypilot-request-id")
            .and_then(|v| v.to_str().ok())
            .map(|s| s.to_string());
        let text = self.body_bytes(&url, resp).await?;
        check_status(&url, status, &text, self.token.is_some())?;
        Ok((url, request_id, text))
    }

    /// Submits the queued operation `op` (`method`, with `body` as JSON when given), then
    /// waits for it (`/api/get`) and returns its `return_value` text.
    async fn queued(
        &self,
        method: reqwest::Method,
        op: &str,
        body: Option<&serde_json::Value>,
    ) -> Result<String> {
        let (url, request_id, _) = self.exchange(method, op, body).await?;
        let request_id = request_id.ok_or_else(|| ClientError::Malformed {
            url: url.clone(),
            what: format!("{op}: no x-skypilot-request-id header in the answer"),
        })?;
        self.wait(op, &request_id).await
    }

    /// `GET /api/get`: waits for a request and returns its `return_value` text.
    async fn wait(&self, op: &str, request_id: &str) -> Result<String> {
        let mut url = self.base.join("api/get").map_err(|e| ClientError::BadUrl {
            url: self.base.to_string(),
            message: e.to_string(),
        })?;
        url.query_pairs_mut().append_pair("request_id", request_id);
        let url = url.to_string();
        let started = Instant::now();
        let resp = self
            .send(|| self.request(reqwest::Method::GET, &url), &url)
            .await?;
        let status = resp.status();
        let text = self.body_bytes(&url, resp).await?;
        tracing::trace!(
            op,
            request_id,
            ms = started.elapsed().as_millis() as u64,
            "request finished"
        );
        match status {
            StatusCode::OK => {
                let payload: wire::RequestPayload =
                    serde_json::from_slice(&text).map_err(|e| ClientError::Malformed {
                        url: url.clone(),
                        what: format!(
                            "{op}: request payload is not the expected JSON ({e}): {}",
                            snippet_bytes(&text)
                        ),
                    })?;
                if payload.status != "SUCCEEDED" {
                    return Err(ClientError::Malformed {
                        url,
                        what: format!(
                            "{op}: request {} ended with status {:?} and no error",
                            payload.request_id, payload.status
                        ),
                    });
                }
                payload.return_value.ok_or_else(|| ClientError::Malformed {
                    url,
                    what: format!("{op}: request payload has no return_value"),
                })
            }
            StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => {
                Err(auth_error(&url, status, &text, self.token.is_some()))
            }
            StatusCode::INTERNAL_SERVER_ERROR => Err(self.request_failure(op, &url, &text)),
            other => Err(ClientError::Http {
                url,
                status: other.as_u16(),
                body: snippet_bytes(&text),
            }),
        }
    }

    /// Decodes SkyPilot's HTTP 500 answer: `{"detail": <payload>}` whose `error` is a
    /// JSON string with `type` and `message`. Anything else is an HTTP error.
    fn request_failure(&self, op: &str, url: &str, text: &[u8]) -> ClientError {
        #[derive(serde::Deserialize)]
        struct Detail {
            detail: wire::RequestPayload,
        }
        let http = || ClientError::Http {
            url: url.to_string(),
            status: 500,
            body: snippet_bytes(text),
        };
        let Ok(d) = serde_json::from_slice::<Detail>(text) else {
            return http();
        };
        let Some(err) = d.detail.error.as_deref() else {
            return http();
        };
        match serde_json::from_str::<Option<wire::RequestError>>(err) {
            // SkyPilot's text is shown to people and stored with each failed poll:
            // bounded and on one line, like any other answer's snippet.
            Ok(Some(e)) => ClientError::Sky {
                url: url.to_string(),
                op: op.to_string(),
                error_type: bounded(e.error_type.as_deref().unwrap_or("UnknownError"), 100),
                message: bounded(e.message.as_deref().unwrap_or_default(), SKY_MESSAGE_CHARS),
            },
            _ => http(),
        }
    }

    /// `POST /status` for all users, without handles or credentials.
    pub async fn status(&self, refresh: RefreshMode) -> Result<Vec<Cluster>> {
        let text = self.status_raw(refresh).await?;
        parse_status(&text).map_err(|what| ClientError::Malformed {
            url: self.url("status"),
            what: format!("status: {what}"),
        })
    }

    /// Parses a `/status` answer (from [`Client::status_raw`]) into records that borrow
    /// from it.
    pub(crate) fn status_records<'a>(&self, text: &'a str) -> Result<Vec<wire::StatusRecord<'a>>> {
        wire::parse_records(text).map_err(|what| ClientError::Malformed {
            url: self.url("status"),
            what: format!("status: {what}"),
        })
    }

    /// `POST /status`, returning the raw `return_value` text.
    pub async fn status_raw(&self, refresh: RefreshMode) -> Result<String> {
        self.call_raw(
            "status",
            json!({
                "refresh": refresh.as_str(),
                "all_users": true,
                "include_credentials": false,
                "include_handle": false,
            }),
        )
        .await
    }

    /// `POST /status` of the named clusters only (all users), without handles: what
    /// SkyPilot knows of clusters the host database has not seen yet.
    pub async fn status_named(&self, names: &[String]) -> Result<Vec<Cluster>> {
        let text = self
            .call_raw(
                "status",
                json!({
                    "cluster_names": names,
                    "refresh": RefreshMode::None.as_str(),
                    "all_users": true,
                    "include_credentials": false,
                    "include_handle": false,
                }),
            )
            .await?;
        parse_status(&text).map_err(|what| ClientError::Malformed {
            url: self.url("status"),
            what: format!("status: {what}"),
        })
    }

    /// A direct (not queued) call: `method` on `path`, its JSON answer. SkyPilot's user
    /// management (`/users`, `/users/role`, `/users/update`) answers this way.
    pub(crate) async fn direct_json(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<&serde_json::Value>,
    ) -> Result<serde_json::Value> {
        let (url, _, text) = self.exchange(method, path, body).await?;
        serde_json::from_slice(&text).map_err(|e| ClientError::Malformed {
            url,
            what: format!("not JSON ({e}): {}", snippet_bytes(&text)),
        })
    }

    /// Runs the queued `GET` operation `op` (e.g. `workspaces/config`) to completion and
    /// returns its return value as JSON.
    pub(crate) async fn call_get_json(&self, op: &str) -> Result<serde_json::Value> {
        let text = self.queued(reqwest::Method::GET, op, None).await?;
        serde_json::from_str(&text).map_err(|e| ClientError::Malformed {
            url: self.url(op),
            what: format!("{op}: return value is not JSON: {e}"),
        })
    }

    /// Runs operation `op` with `body` and returns its return value as JSON.
    pub(crate) async fn call_json(
        &self,
        op: &str,
        body: serde_json::Value,
    ) -> Result<serde_json::Value> {
        self.call(op, body).await
    }

    /// `POST /cost_report` over the last `days` days.
    pub async fn cost_report(&self, days: u32) -> Result<Vec<CostRecord>> {
        let text = self
            .call_raw("cost_report", json!({ "days": days }))
            .await?;
        wire::parse_records(&text).map_err(|what| ClientError::Malformed {
            url: self.url("cost_report"),
            what: format!("cost_report: {what}"),
        })
    }

    /// `POST /jobs/queue/v2` of every user's managed jobs, finished ones included, with
    /// the fields the host keeps ([`crate::jobs::QUEUE_FIELDS`]); the raw return value.
    /// SkyPilot answers it from its jobs controller (on the API server's host in
    /// consolidation mode).
    pub async fn jobs_queue_raw(&self) -> Result<String> {
        self.call_raw(
            "jobs/queue/v2",
            json!({
                "refresh": false,
                "skip_finished": false,
                "all_users": true,
                "fields": crate::jobs::QUEUE_FIELDS,
            }),
        )
        .await
    }

    /// `POST /serve/status` of every SkyServe service (`service_names: null`); the raw
    /// return value. SkyPilot answers it from its serve controller (on the API server's
    /// host in consolidation mode), after checking that the internet is reachable.
    pub async fn serve_status_raw(&self) -> Result<String> {
        self.call_raw("serve/status", json!({ "service_names": null }))
            .await
    }

    /// `POST /autostop`: `minutes` idle minutes (-1 cancels), `down` tears down instead of stopping.
    pub async fn autostop(&self, cluster: &str, minutes: i64, down: bool) -> Result<()> {
        self.call::<serde_json::Value>(
            "autostop",
            json!({ "cluster_name": cluster, "idle_minutes": minutes, "down": down }),
        )
        .await
        .map(|_| ())
    }

    pub async fn stop(&self, cluster: &str) -> Result<()> {
        self.call::<serde_json::Value>("stop", json!({ "cluster_name": cluster }))
            .await
            .map(|_| ())
    }

    pub async fn down(&self, cluster: &str) -> Result<()> {
        self.call::<serde_json::Value>("down", json!({ "cluster_name": cluster }))
            .await
            .map(|_| ())
    }

    pub async fn start(&self, cluster: &str) -> Result<()> {
        self.call::<serde_json::Value>("start", json!({ "cluster_name": cluster }))
            .await
            .map(|_| ())
    }
}

/// Parses the `return_value` of `/status` into clusters.
pub fn parse_status(text: &str) -> std::result::Result<Vec<Cluster>, String> {
    let records: Vec<wire::StatusRecord> = wire::parse_records(text)?;
    records.into_iter().map(|r| r.into_cluster()).collect()
}

fn root_cause(e: &(dyn std::error::Error + 'static)) -> String {
    let mut msg = e.to_string();
    let mut src = e.source();
    while let Some(s) = src {
        let m = s.to_string();
        if !msg.contains(&m) {
            msg = format!("{msg}: {m}");
        }
        src = s.source();
    }
    if msg.contains("UnknownIssuer") {
        msg.push_str(" (TLS: the server's certificate is signed by an unknown CA, neither one of the system's roots nor skypilot.ca_file's; set skypilot.ca_file to the CA that signed it)");
    } else if msg.contains("certificate") {
        msg.push_str(" (TLS: the server's certificate is not trusted; set skypilot.ca_file to the CA that signed it)");
    }
    msg
}

/// An error for an answer that is not a success: credentials refused, or another status.
fn check_status(url: &str, status: StatusCode, body: &[u8], token_sent: bool) -> Result<()> {
    if status == StatusCode::UNAUTHORIZED || status == StatusCode::FORBIDDEN {
        return Err(auth_error(url, status, body, token_sent));
    }
    if !status.is_success() {
        return Err(ClientError::Http {
            url: url.to_string(),
            status: status.as_u16(),
            body: snippet_bytes(body),
        });
    }
    Ok(())
}

/// HTTP 401/403: with a token, SkyPilot rejected it; without one, it wants one.
fn auth_error(url: &str, status: StatusCode, body: &[u8], token_sent: bool) -> ClientError {
    // SkyPilot answers `{"detail": "Invalid or expired service account token"}`.
    let detail = serde_json::from_slice::<serde_json::Value>(body)
        .ok()
        .and_then(|v| v.get("detail").and_then(|d| d.as_str()).map(snippet))
        .unwrap_or_else(|| snippet_bytes(body));
    ClientError::Auth {
        url: url.to_string(),
        status: status.as_u16(),
        token_sent,
        detail,
    }
}

fn auth_message(token_sent: bool, status: u16, detail: &str) -> String {
    let said = if detail.is_empty() {
        String::new()
    } else {
        format!(": {detail}")
    };
    if token_sent {
        format!("token rejected (HTTP {status}{said}); check that skypilot.token_file holds a valid service-account token of this server")
    } else {
        format!("authentication required (HTTP {status}{said}); set skypilot.token_file to a service-account token (sky_…) of this server")
    }
}

fn snippet_bytes(body: &[u8]) -> String {
    snippet(&String::from_utf8_lossy(&body[..body.len().min(2048)]))
}

/// Characters kept of SkyPilot's error message.
const SKY_MESSAGE_CHARS: usize = 2000;

/// At most 300 characters of a body, on one line.
fn snippet(text: &str) -> String {
    bounded(text, 300)
}

/// At most `max` characters of `text`, on one line: control characters and bidi
/// controls become spaces.
fn bounded(text: &str, max: usize) -> String {
    let one_line: String = text
        .chars()
        .map(|c| {
            if crate::terminal::is_unsafe(c) {
                ' '
            } else {
                c
            }
        })
        .take(max)
        .collect();
    if text.chars().nth(max).is_some() {
        format!("{}…", one_line.trim())
    } else {
        one_line.trim().to_string()
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_cause_is_one_line_without_the_url() {
        let e = ClientError::Sky {
            url: "http://127.0.0.1:46580/api/get?request_id=abc".into(),
            op: "autostop".into(),
            error_type: "ImportError".into(),
            message: "Failed to import dependencies for AWS. Try pip install \"skypilot[aws]\"\nTraceback ...".into(),
        };
        assert_eq!(
            e.cause(),
            "autostop failed: the AWS SDK is not installed on the API server (ImportError)"
        );
        assert!(e.to_string().contains("request_id=abc"));
        let e = ClientError::Sky {
            url: "http://x/api/get?request_id=abc".into(),
            op: "stop".into(),
            error_type: "ClusterNotUpError".into(),
            message: "\nCluster 'c' is not up.\nMore.".into(),
        };
        assert_eq!(
            e.cause(),
            "stop failed: ClusterNotUpError: Cluster 'c' is not up."
        );
        let e = ClientError::Http {
            url: "http://x/stop".into(),
            status: 500,
            body: "Internal Server Error".into(),
        };
        assert_eq!(
            e.cause(),
            "SkyPilot's API server answered HTTP 500: Internal Server Error"
        );
    }

    use super::*;

    #[test]
    fn backoff_grows_and_is_bounded() {
        assert!(backoff(1) < backoff(2));
        assert!(backoff(2) < backoff(3));
        assert_eq!(backoff(30), backoff(6));
    }

    #[test]
    fn kinds_are_bounded() {
        let e = ClientError::Sky {
            url: "u".into(),
            op: "stop".into(),
            error_type: "Cluster Does{Not}Exist\n".into(),
            message: "m".into(),
        };
        assert_eq!(e.kind(), "sky_ClusterDoesNotExist");
        let e = ClientError::Http {
            url: "u".into(),
            status: 500,
            body: "x".into(),
        };
        assert_eq!(e.kind(), "http_500");
    }

    #[test]
    fn snippet_is_one_bounded_line() {
        let s = snippet(&"a\n".repeat(400));
        assert!(!s.contains('\n'));
        assert!(s.chars().count() <= 301);
    }

    #[test]
    fn a_refused_token_is_named_as_such_with_the_url_and_skypilots_detail() {
        let body = br#"{"detail": "Invalid or expired service account token"}"#;
        let url = "https://skypilot.example.com/api/health";
        let e = auth_error(url, StatusCode::UNAUTHORIZED, body, true).to_string();
        assert!(e.contains(url), "{e}");
        assert!(e.contains("token rejected (HTTP 401"), "{e}");
        assert!(
            e.contains("Invalid or expired service account token"),
            "{e}"
        );
        assert!(e.contains("skypilot.token_file"), "{e}");
        let e = auth_error(url, StatusCode::UNAUTHORIZED, b"", false).to_string();
        assert!(e.contains("authentication required (HTTP 401)"), "{e}");
        assert!(!e.contains("token rejected"), "{e}");
        assert!(e.contains("set skypilot.token_file"), "{e}");
    }

    #[test]
    fn token_file_errors_name_the_file() {
        let cfg = SkypilotConfig {
            token_file: Some("/nonexistent/token".into()),
            ..SkypilotConfig::default()
        };
        let e = Client::new(&cfg).unwrap_err();
        assert!(e.to_string().contains("/nonexistent/token"), "{e}");
    }

    #[test]
    fn debug_redacts_token() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("t");
        std::fs::write(&p, "sky_secret123\n").unwrap();
        let cfg = SkypilotConfig {
            token_file: Some(p),
            ..SkypilotConfig::default()
        };
        let c = Client::new(&cfg).unwrap();
        assert!(!format!("{c:?}").contains("sky_secret123"));
    }

    #[test]
    fn skypilot_error_text_is_bounded_and_on_one_line() {
        let s = bounded(&format!("a\x1b[2Jb\nc\u{202e}{}", "x".repeat(5000)), 2000);
        assert!(
            !s.chars().any(|c| c.is_control() || c == '\u{202e}'),
            "{s:?}"
        );
        assert!(s.starts_with("a [2Jb c x"), "{s:?}");
        assert_eq!(s.chars().count(), 2001, "2000 characters and an ellipsis");
        assert_eq!(bounded("short", 10), "short");
    }
}
