//! The gateway: SkyPilot's dashboard and REST API, at the origin root, behind the web
//! UI's login.
//!
//! SkyPilot's API server trusts an identity header (`X-Auth-Request-Email` by default)
//! from anyone, and takes a loopback request that carries none for an admin. So the
//! gateway, which talks to it over loopback, must never forward a request it has not
//! authenticated, and must decide itself what SkyPilot sees:
//!
//! - An authenticated person ([`Identity`] in the request's extensions, put there by the
//!   web UI's auth layer): every client-sent copy of the identity header, of SkyPilot's
//!   other proxy identity headers (`X-Auth-Request-*`) and of the forwarding headers
//!   (`Forwarded`, `X-Forwarded-*`, `X-Real-IP`, `X-Client-IP`) is removed, our own
//!   credentials (`Authorization`, `Cookie`) are dropped, and the identity header is set
//!   to the person's name. The forwarding headers go because SkyPilot reads any of them
//!   as "came through a proxy, not loopback", which with basic auth on makes it ask for
//!   a password the gateway does not have.
//! - A SkyPilot service account (`Authorization: Bearer sky_…`): the header goes through
//!   untouched and no identity header is set; SkyPilot verifies the token itself.
//! - No credentials: only `GET /api/health` is forwarded (with every identity and
//!   credential header removed and its query dropped): SkyPilot's CLI probes it before
//!   it sends credentials, and it answers version and status, nothing more. Anything
//!   else gets 401 with `WWW-Authenticate: Basic` and `X-SkyPilot-API-Version` (the CLI
//!   reads both), or a redirect to the console's login page for a browser.
//!
//! State-changing requests from a browser must come from our own origin (`Origin` or
//! `Sec-Fetch-Site`): SkyPilot's dashboard sends no CSRF token, so this is its CSRF
//! defence. A request authenticated by the session cookie must show one of the two.
//!
//! Per-owner control: a non-admin may stop, down, start, cancel jobs on or set the
//! autostop of only the clusters they own. The owner comes from the host database (the
//! cluster manager's copy of SkyPilot's `user_name`): a read of one row, without a round
//! trip through SkyPilot's request queue; a cluster launched since the last poll is not
//! known yet and is refused with a message saying so.
//!
//! Bodies stream both ways (uploads of 95 MB chunks, `/api/stream`'s chunked logs);
//! websockets (`/kubernetes-pod-ssh-proxy`, …) are upgraded on both sides and copied.

use std::fmt::Write as _;
use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::{Body, Bytes, HttpBody};
use axum::extract::{Request, State};
use axum::http::header::{self, HeaderMap, HeaderName, HeaderValue};
use axum::http::{Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::Router;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::time::{Instant, Sleep};

use super::identity::{AuthMethod, Identity};
use crate::config::Config;

/// SkyPilot's API version sent in our own 401s until the upstream has told us its own.
const DEFAULT_API_VERSION: u32 = 62;
/// Longest error text the gateway writes (the upstream's own text is passed on as is).
const MAX_ERROR_CHARS: usize = 600;
/// Where a browser without a session is sent.
const LOGIN_PATH: &str = "/console/login";

/// Endpoints that act on one existing cluster named in the JSON body's `cluster_name`:
/// a non-admin may call them only for clusters they own.
const OWNER_CONTROLLED: [&str; 5] = ["/stop", "/down", "/autostop", "/start", "/cancel"];

/// The gateway: a cheap handle (one `Arc`), cloned into every request.
#[derive(Clone)]
pub struct Gateway {
    inner: Arc<Inner>,
}

struct Inner {
    client: Client<HttpConnector, Body>,
    /// `http://host:port`, no trailing slash.
    upstream: String,
    /// The authority sent as `Host`.
    upstream_host: HeaderValue,
    identity_header: HeaderName,
    response_timeout: Duration,
    idle: Duration,
    max_control_body: usize,
    database: PathBuf,
    /// The API version the upstream last reported, for our own 401s.
    api_version: AtomicU32,
}

impl Gateway {
    /// The gateway for `config` (`[web_ui.gateway]`, `skypilot.api_url`,
    /// `cluster_manager.database`). Fails on an upstream it cannot forward to.
    pub fn new(config: &Config) -> anyhow::Result<Gateway> {
        let g = &config.web_ui.gateway;
        let raw = g.upstream_url(&config.skypilot);
        let key = if g.upstream.is_some() {
            "web_ui.gateway.upstream"
        } else {
            "skypilot.api_url"
        };
        let parsed = url::Url::parse(raw)
            .map_err(|e| anyhow::anyhow!("{key} = {raw:?} is not a URL ({e})"))?;
        if parsed.scheme() != "http" {
            anyhow::bail!(
                "{key} = {raw:?}: the gateway forwards to plain http:// only (SkyPilot's API server on loopback); set web_ui.gateway.upstream to its http:// address"
            );
        }
        let host = parsed
            .host_str()
            .ok_or_else(|| anyhow::anyhow!("{key} = {raw:?} has no host"))?;
        let host = if host.contains(':') && !host.starts_with('[') {
            format!("[{host}]")
        } else {
            host.to_string()
        };
        let authority = match parsed.port() {
            Some(p) => format!("{host}:{p}"),
            None => host,
        };
        if parsed.path() != "/" && !parsed.path().is_empty() {
            anyhow::bail!(
                "{key} = {raw:?} has a path: SkyPilot's dashboard needs its paths at the origin root, expected http://HOST:PORT"
            );
        }
        let upstream_host = HeaderValue::from_str(&authority)
            .map_err(|e| anyhow::anyhow!("{key} = {raw:?}: bad host ({e})"))?;
        let identity_header =
            HeaderName::from_bytes(g.identity_header.as_bytes()).map_err(|e| {
                anyhow::anyhow!(
                    "web_ui.gateway.identity_header = {:?} is not a header name ({e})",
                    g.identity_header
                )
            })?;
        let mut connector = HttpConnector::new();
        connector.set_connect_timeout(Some(Duration::from_secs(g.connect_timeout_secs)));
        connector.set_nodelay(true);
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(60))
            .pool_max_idle_per_host(g.max_idle_upstream_connections)
            .build(connector);
        Ok(Gateway {
            inner: Arc::new(Inner {
                client,
                upstream: format!("http://{authority}"),
                upstream_host,
                identity_header,
                response_timeout: Duration::from_secs(g.response_timeout_secs),
                idle: Duration::from_secs(g.idle_timeout_secs),
                max_control_body: g.max_control_body_bytes,
                database: config.cluster_manager.database.clone(),
                api_version: AtomicU32::new(DEFAULT_API_VERSION),
            }),
        })
    }

    /// A router that sends every request to the gateway: the web UI's router uses it as
    /// its fallback, behind its auth layer.
    pub fn router(self) -> Router {
        Router::new().fallback(handle).with_state(self)
    }

    /// How long a connection may move no byte before the server closes it: the web UI's
    /// server must allow at least this much, or it cuts streams the gateway keeps.
    pub fn idle_timeout(&self) -> Duration {
        self.inner.idle
    }

    /// The upstream's base URL, e.g. `http://127.0.0.1:46580`.
    pub fn upstream(&self) -> &str {
        &self.inner.upstream
    }

    /// The 401 for a request without valid credentials: a Basic challenge and SkyPilot's
    /// API version (SkyPilot's CLI reads both to start its login). The auth layer may use
    /// it for its own refusals of requests meant for the gateway.
    pub fn unauthorized(&self, detail: &str) -> Response {
        let version = self.inner.api_version.load(Ordering::Relaxed);
        let mut r = (
            StatusCode::UNAUTHORIZED,
            [
                (
                    header::WWW_AUTHENTICATE,
                    HeaderValue::from_static("Basic realm=\"skypilot-host\", charset=\"UTF-8\""),
                ),
                (header::CACHE_CONTROL, HeaderValue::from_static("no-store")),
            ],
            axum::Json(serde_json::json!({ "detail": bounded(detail) })),
        )
            .into_response();
        r.headers_mut().insert(
            HeaderName::from_static("x-skypilot-api-version"),
            HeaderValue::from(version),
        );
        r
    }
}

/// Every request that reaches the gateway.
pub async fn handle(State(gw): State<Gateway>, req: Request) -> Response {
    let identity = req.extensions().get::<Identity>().cloned();
    match identity {
        None => {
            if req.method() == Method::GET && req.uri().path() == "/api/health" {
                gw.forward(req, None).await
            } else if is_browser_navigation(&req) {
                login_redirect(req.uri())
            } else {
                gw.unauthorized("authentication required: log in to the web UI (SkyPilot's CLI: sky api login -e http://NAME:PASSWORD@HOST:PORT)")
            }
        }
        Some(who) => {
            if let Err(r) = check_same_origin(&req, &who) {
                return r;
            }
            let req = if who.is_admin() {
                req
            } else {
                match gw.check_owner(req, &who).await {
                    Ok(r) => r,
                    Err(r) => return r,
                }
            };
            gw.forward(req, Some(&who)).await
        }
    }
}

impl Gateway {
    /// Forwards `req` to the upstream with the headers SkyPilot must see, and streams the
    /// answer back.
    async fn forward(&self, mut req: Request, who: Option<&Identity>) -> Response {
        let inner = &self.inner;
        let path_and_query = match who {
            // The unauthenticated health probe: no query.
            None => req.uri().path().to_string(),
            Some(_) => req
                .uri()
                .path_and_query()
                .map(|p| p.as_str().to_string())
                .unwrap_or_else(|| "/".to_string()),
        };
        let target = format!("{}{}", inner.upstream, path_and_query);
        let uri: Uri = match target.parse() {
            Ok(u) => u,
            Err(e) => {
                return error(
                    StatusCode::BAD_REQUEST,
                    &format!(
                        "cannot forward {path_and_query:?} to {}: {e}",
                        inner.upstream
                    ),
                )
            }
        };
        let upgrade = wants_upgrade(req.headers());
        let client_upgrade = upgrade.then(|| hyper::upgrade::on(&mut req));
        let (mut parts, body) = req.into_parts();
        let upgrade_value = parts.headers.get(header::UPGRADE).cloned();
        if let Err(e) = self.rewrite_request_headers(&mut parts.headers, who) {
            return e;
        }
        if let Some(v) = upgrade_value.filter(|_| upgrade) {
            parts
                .headers
                .insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
            parts.headers.insert(header::UPGRADE, v);
        }
        parts.uri = uri;
        parts.extensions = Default::default();
        let out = axum::http::Request::from_parts(parts, body);
        let answer = tokio::time::timeout(inner.response_timeout, inner.client.request(out)).await;
        let mut resp = match answer {
            Ok(Ok(r)) => r,
            Ok(Err(e)) => {
                let mut text = format!(
                    "the gateway cannot reach SkyPilot's API server at {}: {e}",
                    inner.upstream
                );
                let mut source = std::error::Error::source(&e);
                while let Some(s) = source {
                    let _ = write!(text, ": {s}");
                    source = s.source();
                }
                return error(StatusCode::BAD_GATEWAY, &text);
            }
            Err(_) => {
                return error(
                    StatusCode::GATEWAY_TIMEOUT,
                    &format!(
                        "SkyPilot's API server at {} did not answer {path_and_query} within {} s (web_ui.gateway.response_timeout_secs)",
                        inner.upstream,
                        inner.response_timeout.as_secs()
                    ),
                )
            }
        };
        if let Some(v) = resp
            .headers()
            .get("x-skypilot-api-version")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u32>().ok())
        {
            inner.api_version.store(v, Ordering::Relaxed);
        }
        if resp.status() == StatusCode::SWITCHING_PROTOCOLS {
            let Some(client_upgrade) = client_upgrade else {
                return error(
                    StatusCode::BAD_GATEWAY,
                    &format!(
                        "SkyPilot's API server at {} switched protocols on {path_and_query}, which asked for no upgrade",
                        inner.upstream
                    ),
                );
            };
            let upstream_upgrade = hyper::upgrade::on(&mut resp);
            let idle = inner.idle;
            let path = path_and_query.clone();
            tokio::spawn(async move {
                match tokio::join!(client_upgrade, upstream_upgrade) {
                    (Ok(c), Ok(u)) => {
                        let mut c = TokioIo::new(c);
                        let mut u = crate::http::IdleTimeout::new(TokioIo::new(u), idle);
                        if let Err(e) = tokio::io::copy_bidirectional(&mut c, &mut u).await {
                            tracing::debug!(path, error = %e, "websocket ended");
                        }
                    }
                    (c, u) => {
                        tracing::debug!(path, client = ?c.err(), upstream = ?u.err(), "websocket upgrade failed");
                    }
                }
            });
            let (mut parts, _) = resp.into_parts();
            strip_hop_by_hop(&mut parts.headers, true);
            return Response::from_parts(parts, Body::empty());
        }
        let (mut parts, body) = resp.into_parts();
        strip_hop_by_hop(&mut parts.headers, false);
        self.rewrite_location(&mut parts.headers);
        Response::from_parts(parts, Body::new(IdleBody::new(body, inner.idle)))
    }

    /// The request headers SkyPilot sees: see the module's documentation.
    #[allow(clippy::result_large_err)]
    fn rewrite_request_headers(
        &self,
        h: &mut HeaderMap,
        who: Option<&Identity>,
    ) -> Result<(), Response> {
        strip_hop_by_hop(h, false);
        h.remove(&self.inner.identity_header);
        let spoofable: Vec<HeaderName> = h
            .keys()
            .filter(|k| {
                let k = k.as_str();
                k.starts_with("x-forwarded-")
                    || k.starts_with("x-auth-request-")
                    || matches!(k, "forwarded" | "x-real-ip" | "x-client-ip")
            })
            .cloned()
            .collect();
        for k in spoofable {
            h.remove(&k);
        }
        h.remove(header::COOKIE);
        let service_account = who.is_some_and(|w| w.method == AuthMethod::SkyPilotServiceAccount);
        if !service_account {
            h.remove(header::AUTHORIZATION);
            h.remove("x-skypilot-auth-mode");
        }
        h.insert(header::HOST, self.inner.upstream_host.clone());
        if let Some(w) = who.filter(|_| !service_account) {
            let v = HeaderValue::from_bytes(w.name.as_bytes()).map_err(|_| {
                error(
                    StatusCode::FORBIDDEN,
                    &format!(
                        "the user name {:?} cannot be sent in the {} header",
                        w.name, self.inner.identity_header
                    ),
                )
            })?;
            h.insert(self.inner.identity_header.clone(), v);
        }
        Ok(())
    }

    /// A redirect to the upstream's own address (Starlette's trailing-slash redirects
    /// use the `Host` we sent) becomes a path on ours.
    fn rewrite_location(&self, h: &mut HeaderMap) {
        let Some(loc) = h.get(header::LOCATION).and_then(|v| v.to_str().ok()) else {
            return;
        };
        if let Some(rest) = loc.strip_prefix(self.inner.upstream.as_str()) {
            let rest = if rest.is_empty() { "/" } else { rest };
            if rest.starts_with('/') {
                if let Ok(v) = HeaderValue::from_str(rest) {
                    h.insert(header::LOCATION, v);
                }
            }
        }
    }

    /// Per-owner control: for a non-admin on one of [`OWNER_CONTROLLED`], reads the
    /// (small) body, finds the cluster, and refuses unless `who` owns it. A person owns
    /// the clusters whose SkyPilot `user_name` is their name; a service account those
    /// whose `user_hash` is its user id (the token's `u` claim: the gateway does not
    /// verify the token, SkyPilot does, and refuses a forged one). Returns the request
    /// with its body restored.
    async fn check_owner(&self, req: Request, who: &Identity) -> Result<Request, Response> {
        let Some(endpoint) = owner_controlled(req.uri().path()) else {
            return Ok(req);
        };
        let me = if who.method == AuthMethod::SkyPilotServiceAccount {
            match service_account_id(req.headers()) {
                Some(id) => Me::Hash(id),
                None => {
                    return Err(error(
                        StatusCode::FORBIDDEN,
                        &format!("{endpoint} refused: the service-account token names no user id"),
                    ))
                }
            }
        } else {
            Me::Name(who.name.clone())
        };
        let (parts, body) = req.into_parts();
        let limit = self.inner.max_control_body;
        let bytes = axum::body::to_bytes(body, limit).await.map_err(|e| {
            error(
                StatusCode::PAYLOAD_TOO_LARGE,
                &format!(
                    "the body of {endpoint} could not be read within {limit} bytes (web_ui.gateway.max_control_body_bytes): {e}"
                ),
            )
        })?;
        let names = cluster_names(&bytes).map_err(|m| {
            error(
                StatusCode::FORBIDDEN,
                &format!("{endpoint} by {me} (not an admin) refused: {m}"),
            )
        })?;
        for name in names {
            let owner = self.owner_of(&name).await.map_err(|m| {
                error(
                    StatusCode::FORBIDDEN,
                    &format!("{endpoint} of cluster {name:?} by {me} refused: {m}"),
                )
            })?;
            let Some((owner_name, owner_hash)) = owner else {
                return Err(error(
                    StatusCode::FORBIDDEN,
                    &format!(
                        "{endpoint} of cluster {name:?} by {me} refused: the host database does not know the cluster or its owner (a cluster launched since the cluster manager's last poll appears within its poll interval)",
                    ),
                ));
            };
            let mine = match &me {
                Me::Name(n) => owner_name.as_deref() == Some(n.as_str()),
                Me::Hash(h) => owner_hash.as_deref() == Some(h.as_str()),
            };
            if !mine {
                let shown = owner_name.or(owner_hash).unwrap_or_default();
                return Err(error(
                    StatusCode::FORBIDDEN,
                    &format!(
                        "{endpoint} of cluster {name:?} refused: it belongs to {shown:?}, and {me} (not an admin) may act only on their own clusters"
                    ),
                ));
            }
        }
        Ok(Request::from_parts(parts, Body::from(bytes)))
    }

    /// The owner of `cluster` in the host database, as (SkyPilot's `user_name`,
    /// `user_hash`); `None` when the cluster is unknown or gone.
    async fn owner_of(
        &self,
        cluster: &str,
    ) -> Result<Option<(Option<String>, Option<String>)>, String> {
        let db = self.inner.database.clone();
        let name = cluster.to_string();
        let read = tokio::task::spawn_blocking(move || {
            let store = crate::store::Store::open_read_only(&db).map_err(|e| e.to_string())?;
            let row = store.cluster_detail(&name).map_err(|e| e.to_string())?;
            Ok::<_, String>(row.and_then(|d| {
                if d.row.gone_at.is_some()
                    || (d.row.cluster.user_name.is_none() && d.row.cluster.user_hash.is_none())
                {
                    None
                } else {
                    Some((d.row.cluster.user_name, d.row.cluster.user_hash))
                }
            }))
        })
        .await
        .map_err(|e| format!("the owner lookup failed: {e}"))?;
        read.map_err(|e| format!("cannot read the cluster's owner: {e}"))
    }
}

/// Who asks, for per-owner control.
enum Me {
    Name(String),
    /// A service account's SkyPilot user id.
    Hash(String),
}

impl std::fmt::Display for Me {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Me::Name(n) => write!(f, "{n}"),
            Me::Hash(h) => write!(f, "service account {h}"),
        }
    }
}

/// The SkyPilot user id a service-account token (`Bearer sky_<JWT>`) claims: the `u`
/// claim of its payload, read without verification (SkyPilot verifies the token).
fn service_account_id(h: &HeaderMap) -> Option<String> {
    use base64::Engine;
    let auth = h.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = auth.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("bearer") {
        return None;
    }
    let jwt = token.trim().strip_prefix("sky_")?;
    let payload = jwt.split('.').nth(1)?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload.trim_end_matches('='))
        .ok()?;
    let v: serde_json::Value = serde_json::from_slice(&bytes).ok()?;
    v.get("u")?.as_str().map(str::to_string)
}

/// The owner-controlled endpoint `path` names, as SkyPilot routes it: percent-decoded,
/// and with the dashboard's `/internal/dashboard` prefix removed once.
fn owner_controlled(path: &str) -> Option<&'static str> {
    let decoded = percent_encoding::percent_decode_str(path).decode_utf8_lossy();
    let p = match decoded.strip_prefix("/internal/dashboard/") {
        Some(rest) => format!("/{rest}"),
        None => decoded.into_owned(),
    };
    OWNER_CONTROLLED.into_iter().find(|e| *e == p)
}

/// The clusters a control body names: `cluster_name`, or `cluster_names` (a list).
fn cluster_names(body: &[u8]) -> Result<Vec<String>, String> {
    let v: serde_json::Value = serde_json::from_slice(body)
        .map_err(|e| format!("the body is not JSON ({e}), so its cluster is unknown"))?;
    let mut out = Vec::new();
    if let Some(n) = v.get("cluster_name") {
        match n.as_str() {
            Some(s) => out.push(s.to_string()),
            None => return Err("cluster_name is not a string".to_string()),
        }
    }
    if let Some(list) = v.get("cluster_names") {
        let Some(items) = list.as_array() else {
            return Err("cluster_names is not a list".to_string());
        };
        for i in items {
            match i.as_str() {
                Some(s) => out.push(s.to_string()),
                None => return Err("cluster_names holds a non-string".to_string()),
            }
        }
    }
    if out.is_empty() {
        return Err("the body names no cluster (cluster_name)".to_string());
    }
    Ok(out)
}

/// A browser's state-changing request (or websocket) must come from our origin. A
/// request authenticated by the session cookie must prove it; other credentials
/// (Basic, bearer) are sent by scripts and the CLI, which send neither header.
#[allow(clippy::result_large_err)]
fn check_same_origin(req: &Request, who: &Identity) -> Result<(), Response> {
    let safe = matches!(*req.method(), Method::GET | Method::HEAD | Method::OPTIONS)
        && !wants_upgrade(req.headers());
    if safe {
        return Ok(());
    }
    let h = req.headers();
    let host = h.get(header::HOST).and_then(|v| v.to_str().ok());
    let mut proven = false;
    if let Some(origin) = h.get(header::ORIGIN) {
        let ok = origin
            .to_str()
            .ok()
            .and_then(|o| o.split_once("://").map(|(_, rest)| rest))
            .is_some_and(|authority| Some(authority) == host);
        if !ok {
            return Err(error(
                StatusCode::FORBIDDEN,
                &format!(
                    "cross-site request refused: Origin {:?} is not this server ({:?})",
                    String::from_utf8_lossy(origin.as_bytes()),
                    host.unwrap_or("")
                ),
            ));
        }
        proven = true;
    }
    if let Some(site) = h.get("sec-fetch-site") {
        if site.as_bytes() != b"same-origin" {
            return Err(error(
                StatusCode::FORBIDDEN,
                &format!(
                    "cross-site request refused: Sec-Fetch-Site is {:?}, expected same-origin",
                    String::from_utf8_lossy(site.as_bytes())
                ),
            ));
        }
        proven = true;
    }
    if who.method == AuthMethod::Session && !proven {
        return Err(error(
            StatusCode::FORBIDDEN,
            "a request authenticated by the session cookie must show it comes from this site (Origin or Sec-Fetch-Site)",
        ));
    }
    Ok(())
}

/// Whether the request asks for a protocol upgrade (a websocket).
fn wants_upgrade(h: &HeaderMap) -> bool {
    h.contains_key(header::UPGRADE)
        && h.get_all(header::CONNECTION).iter().any(|v| {
            v.to_str().is_ok_and(|s| {
                s.split(',')
                    .any(|t| t.trim().eq_ignore_ascii_case("upgrade"))
            })
        })
}

/// Removes the hop-by-hop headers (and those the `Connection` header names); keeps
/// `Connection`/`Upgrade` of a switch of protocols when `keep_upgrade`.
fn strip_hop_by_hop(h: &mut HeaderMap, keep_upgrade: bool) {
    let named: Vec<HeaderName> = h
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|s| s.split(','))
        .filter_map(|t| HeaderName::from_bytes(t.trim().as_bytes()).ok())
        .filter(|n| !(keep_upgrade && n == header::UPGRADE))
        .collect();
    for n in named {
        h.remove(&n);
    }
    for n in [
        "keep-alive",
        "proxy-connection",
        "proxy-authenticate",
        "proxy-authorization",
        "te",
        "trailer",
        "transfer-encoding",
    ] {
        h.remove(n);
    }
    if !keep_upgrade {
        h.remove(header::CONNECTION);
        h.remove(header::UPGRADE);
    }
}

/// A top-level page load by a browser (it asks for HTML).
fn is_browser_navigation(req: &Request) -> bool {
    matches!(*req.method(), Method::GET | Method::HEAD)
        && req
            .headers()
            .get(header::ACCEPT)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|a| a.contains("text/html"))
}

/// `303` to the console's login, which comes back to `uri` after.
fn login_redirect(uri: &Uri) -> Response {
    let back = uri.path_and_query().map(|p| p.as_str()).unwrap_or("/");
    let next: String =
        percent_encoding::utf8_percent_encode(back, percent_encoding::NON_ALPHANUMERIC).collect();
    let location = format!("{LOGIN_PATH}?next={next}");
    match HeaderValue::from_str(&location) {
        Ok(v) => (
            StatusCode::SEE_OTHER,
            [
                (header::LOCATION, v),
                (header::CACHE_CONTROL, HeaderValue::from_static("no-store")),
            ],
        )
            .into_response(),
        Err(_) => (
            StatusCode::SEE_OTHER,
            [(header::LOCATION, HeaderValue::from_static(LOGIN_PATH))],
        )
            .into_response(),
    }
}

/// An error answer of the gateway's own, in SkyPilot's shape (`{"detail": …}`), its
/// text bounded.
fn error(status: StatusCode, text: &str) -> Response {
    (
        status,
        [(header::CACHE_CONTROL, HeaderValue::from_static("no-store"))],
        axum::Json(serde_json::json!({ "detail": bounded(text) })),
    )
        .into_response()
}

fn bounded(text: &str) -> String {
    if text.chars().count() <= MAX_ERROR_CHARS {
        return text.to_string();
    }
    let mut s: String = text.chars().take(MAX_ERROR_CHARS).collect();
    s.push('…');
    s
}

/// A response body from the upstream that fails once no frame has arrived for `idle`
/// (a stream whose server went silent), passed on frame by frame, never buffered.
struct IdleBody<B> {
    inner: B,
    idle: Duration,
    deadline: Pin<Box<Sleep>>,
}

impl<B> IdleBody<B> {
    fn new(inner: B, idle: Duration) -> IdleBody<B> {
        IdleBody {
            inner,
            idle,
            deadline: Box::pin(tokio::time::sleep(idle)),
        }
    }
}

impl<B> HttpBody for IdleBody<B>
where
    B: HttpBody<Data = Bytes> + Unpin,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    type Data = Bytes;
    type Error = Box<dyn std::error::Error + Send + Sync>;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, Self::Error>>> {
        let this = self.get_mut();
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(f) => {
                let next = Instant::now() + this.idle;
                this.deadline.as_mut().reset(next);
                Poll::Ready(f.map(|r| r.map_err(Into::into)))
            }
            Poll::Pending => match this.deadline.as_mut().poll(cx) {
                Poll::Ready(()) => Poll::Ready(Some(Err(format!(
                    "SkyPilot's API server sent nothing for {} s (web_ui.gateway.idle_timeout_secs)",
                    this.idle.as_secs()
                )
                .into()))),
                Poll::Pending => Poll::Pending,
            },
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn owner_controlled_paths_as_skypilot_routes_them() {
        assert_eq!(owner_controlled("/stop"), Some("/stop"));
        assert_eq!(owner_controlled("/%73top"), Some("/stop"));
        assert_eq!(owner_controlled("/internal/dashboard/down"), Some("/down"));
        assert_eq!(
            owner_controlled("/internal/dashboard/%61utostop"),
            Some("/autostop")
        );
        assert_eq!(owner_controlled("/status"), None);
        assert_eq!(owner_controlled("/stop/extra"), None);
        assert_eq!(owner_controlled("/jobs/cancel"), None);
    }

    #[test]
    fn cluster_names_from_bodies() {
        assert_eq!(
            cluster_names(br#"{"cluster_name":"a","purge":false}"#),
            Ok(vec!["a".to_string()])
        );
        assert_eq!(
            cluster_names(br#"{"cluster_names":["a","b"]}"#),
            Ok(vec!["a".to_string(), "b".to_string()])
        );
        assert!(cluster_names(br#"{"purge":true}"#).is_err());
        assert!(cluster_names(br#"{"cluster_name":5}"#).is_err());
        assert!(cluster_names(b"not json").is_err());
    }

    #[test]
    fn hop_by_hop_and_named_headers_go() {
        let mut h = HeaderMap::new();
        h.insert(
            header::CONNECTION,
            HeaderValue::from_static("close, x-secret"),
        );
        h.insert("x-secret", HeaderValue::from_static("1"));
        h.insert("keep-alive", HeaderValue::from_static("timeout=5"));
        h.insert(header::ACCEPT, HeaderValue::from_static("*/*"));
        strip_hop_by_hop(&mut h, false);
        assert_eq!(h.len(), 1, "{h:?}");
        assert!(h.contains_key(header::ACCEPT));
    }

    #[test]
    fn long_errors_are_cut() {
        let long = "x".repeat(5000);
        assert_eq!(bounded(&long).chars().count(), MAX_ERROR_CHARS + 1);
        assert_eq!(bounded("short"), "short");
    }
}
