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
//! - A SkyPilot service account (`Authorization: Bearer sky_…`), already verified by
//!   SkyPilot in the auth layer: the token is sent in the one form SkyPilot checks
//!   (`Bearer sky_…`) with `X-Skypilot-Auth-Mode: token`, which makes SkyPilot refuse the
//!   request unless the token is valid, and the identity header carries its name.
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
//! No request other than the unauthenticated health probe reaches SkyPilot without an
//! identity: [`Gateway::forward`] checks the headers it is about to send and refuses
//! (500, logged as a bug) a request that carries none.
//!
//! Authorization: every request of a logged-in person goes through the table of
//! [`super::rules`] first (allow, owner-checked, deny by route and role). Owners come
//! from the host database (the cluster manager's copy of SkyPilot's owner) and, for a
//! cluster it has not seen yet, jobs, services and pools, from SkyPilot itself; the
//! answer is [`super::ownership::owns`]. Every state-changing request, and every
//! refusal, is written to the audit table.
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

use super::auth::service_account::AUTH_MODE_HEADER;
use super::auth::{parse_authorization, AuthHeader};
use super::identity::{AuthMethod, Identity};
use super::ownership::{owns, skypilot_id};
use super::rules::{self, Access, Kind, Owned};
use crate::config::Config;
use crate::store::{AuditAction, AuditEntry, AuditOutcome};

/// SkyPilot's API version sent in our own 401s until the upstream has told us its own.
const DEFAULT_API_VERSION: u32 = 62;
/// Longest error text the gateway writes (the upstream's own text is passed on as is).
const MAX_ERROR_CHARS: usize = 600;
/// Where a browser without a session is sent.
const LOGIN_PATH: &str = "/console/login";

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
    /// SkyPilot's API server as the host's service account: owner lookups of what the
    /// host database does not know (new clusters, jobs, services, pools).
    sky: crate::skypilot::Client,
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
                sky: crate::skypilot::Client::new(&config.skypilot)
                    .map_err(|e| anyhow::anyhow!("skypilot.api_url: {e}"))?,
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
            gw.authorized(req, who).await
        }
    }
}

/// What the audit records of one request through the gateway.
struct Audited {
    actor: String,
    what: String,
    names: Vec<String>,
}

impl Gateway {
    /// A logged-in person's request: the table's decision, the owner check, the
    /// forward, and the audit of writes and refusals.
    async fn authorized(&self, req: Request, who: Identity) -> Response {
        let path = rules::routed_path(req.uri().path());
        let method = req.method().as_str().to_string();
        let (access, kind) = rules::decide(who.role, &method, &path);
        let mut audited = Audited {
            actor: actor(&who),
            what: format!("{method} {path}"),
            names: Vec::new(),
        };
        let req = match access {
            Access::Allow if kind == Kind::Write => match self.peek_names(req).await {
                Ok((req, names)) => {
                    audited.names = names;
                    req
                }
                Err(why) => {
                    self.audit(&audited, AuditOutcome::Refused, why.clone())
                        .await;
                    return error(StatusCode::BAD_REQUEST, &why);
                }
            },
            Access::Allow => req,
            Access::Deny => {
                let why = format!(
                    "{method} {path} refused: role {} of {} may not use it (the gateway's route table; docs/gateway.md)",
                    who.role.as_str(),
                    who.name
                );
                self.audit(&audited, AuditOutcome::Refused, why.clone())
                    .await;
                return error(StatusCode::FORBIDDEN, &why);
            }
            Access::Own(owned) => match self.check_owner(req, &who, owned, &path).await {
                Ok((req, names)) => {
                    audited.names = names;
                    req
                }
                Err((status, why)) => {
                    self.audit(&audited, AuditOutcome::Refused, why.clone())
                        .await;
                    return error(status, &why);
                }
            },
        };
        let resp = self.forward(req, Some(&who)).await;
        if kind == Kind::Write {
            let status = resp.status();
            let request_id = resp
                .headers()
                .get("x-skypilot-request-id")
                .and_then(|v| v.to_str().ok())
                .map(str::to_string);
            let outcome =
                if status.is_success() || status.is_redirection() || status.as_u16() == 101 {
                    AuditOutcome::Ok
                } else {
                    AuditOutcome::Error
                };
            let detail = match request_id {
                Some(id) => format!("HTTP {}, SkyPilot request {id}", status.as_u16()),
                None => format!("HTTP {}", status.as_u16()),
            };
            self.audit(&audited, outcome, detail).await;
        }
        resp
    }

    /// For the audit of an allowed write: the clusters a small JSON body names
    /// (`cluster_name`, `cluster_names`), read only when the body declares a length within
    /// `max_control_body_bytes`; the request comes back with its body whole.
    async fn peek_names(&self, req: Request) -> Result<(Request, Vec<String>), String> {
        let small_json = req
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|t| t.starts_with("application/json"))
            && req
                .headers()
                .get(header::CONTENT_LENGTH)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse::<usize>().ok())
                .is_some_and(|n| n <= self.inner.max_control_body);
        if !small_json {
            return Ok((req, Vec::new()));
        }
        let (parts, body) = req.into_parts();
        let bytes = axum::body::to_bytes(body, self.inner.max_control_body)
            .await
            .map_err(|e| format!("the body could not be read as its Content-Length says: {e}"))?;
        let names = serde_json::from_slice::<serde_json::Value>(&bytes)
            .ok()
            .and_then(|v| cluster_names(&v).ok())
            .unwrap_or_default();
        Ok((Request::from_parts(parts, Body::from(bytes)), names))
    }

    /// Appends one gateway entry to the audit table (a failure is logged, never shown:
    /// the request itself already went its way).
    async fn audit(&self, a: &Audited, outcome: AuditOutcome, detail: String) {
        let names = if a.names.is_empty() {
            String::new()
        } else {
            format!(" ({})", a.names.join(", "))
        };
        let entry = AuditEntry {
            at: crate::time::Clock::now(&crate::time::SystemClock),
            actor: a.actor.clone(),
            action: AuditAction::Request,
            cluster: a.names.first().cloned(),
            outcome,
            detail: Some(bounded(&format!("{}{names}: {detail}", a.what))),
        };
        tracing::info!(
            actor = %entry.actor,
            request = %crate::terminal::clean(&a.what),
            outcome = %entry.outcome,
            "gateway"
        );
        super::write_audit(self.inner.database.clone(), vec![entry]).await;
    }
}

/// The actor the audit names for a request through the gateway.
fn actor(who: &Identity) -> String {
    match who.method {
        AuthMethod::SkyPilotServiceAccount => format!("gateway:{} (service account)", who.name),
        _ => format!("gateway:{}", who.name),
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
        if let Err(why) = identified(&parts.headers, &self.inner.identity_header, who.is_some()) {
            tracing::error!(path = %path_and_query, "gateway bug: {why}; refused");
            return error(
                StatusCode::INTERNAL_SERVER_ERROR,
                &format!("the gateway refused to forward {path_and_query}: {why}"),
            );
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
        // A service account's token, in the one form SkyPilot verifies (checked by the
        // auth layer; read before the header goes).
        let sky_token = match (who.map(|w| w.method), parse_authorization(h)) {
            (Some(AuthMethod::SkyPilotServiceAccount), Ok(Some(AuthHeader::SkyToken(t)))) => {
                Some(format!("Bearer {t}"))
            }
            (Some(AuthMethod::SkyPilotServiceAccount), _) => {
                return Err(error(
                    StatusCode::UNAUTHORIZED,
                    "the service-account token is not in the form `Bearer sky_…`",
                ))
            }
            _ => None,
        };
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
        h.remove(header::AUTHORIZATION);
        h.remove(AUTH_MODE_HEADER);
        h.insert(header::HOST, self.inner.upstream_host.clone());
        if let Some(token) = sky_token {
            let v = HeaderValue::from_str(&token).map_err(|_| {
                error(
                    StatusCode::UNAUTHORIZED,
                    "the service-account token is not header text",
                )
            })?;
            h.insert(header::AUTHORIZATION, v);
            h.insert(AUTH_MODE_HEADER, HeaderValue::from_static("token"));
        }
        if let Some(w) = who {
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

    /// Per-owner control ([`Access::Own`]): finds what the request names (the query, or
    /// its JSON body read up to `max_control_body_bytes`), and refuses unless `who` owns
    /// every one of them. Returns the request with its body restored (or, for
    /// `/api/cancel`, bound to the caller) and the names, for the audit.
    async fn check_owner(
        &self,
        req: Request,
        who: &Identity,
        owned: Owned,
        path: &str,
    ) -> Result<(Request, Vec<String>), (StatusCode, String)> {
        let me = format!("{} ({})", who.name, who.role.as_str());
        let refuse = |m: String| {
            (
                StatusCode::FORBIDDEN,
                format!("{path} by {me} refused: {m}"),
            )
        };
        if owned == Owned::ClusterQuery {
            let name = url::form_urlencoded::parse(req.uri().query().unwrap_or("").as_bytes())
                .find(|(k, _)| k == "cluster_name")
                .map(|(_, v)| v.into_owned())
                .ok_or_else(|| refuse("the query names no cluster (cluster_name)".into()))?;
            self.check_clusters(who, std::slice::from_ref(&name), false)
                .await
                .map_err(refuse)?;
            return Ok((req, vec![name]));
        }
        let (parts, body) = req.into_parts();
        let limit = self.inner.max_control_body;
        let bytes = axum::body::to_bytes(body, limit).await.map_err(|e| {
            (
                StatusCode::PAYLOAD_TOO_LARGE,
                format!(
                    "the body of {path} could not be read within {limit} bytes (web_ui.gateway.max_control_body_bytes): {e}"
                ),
            )
        })?;
        let mut body: serde_json::Value = serde_json::from_slice(&bytes).map_err(|e| {
            refuse(format!(
                "the body is not JSON ({e}), so what it names is unknown"
            ))
        })?;
        let names = match owned {
            Owned::Clusters => {
                let names = cluster_names(&body).map_err(refuse)?;
                self.check_clusters(who, &names, false)
                    .await
                    .map_err(refuse)?;
                names
            }
            Owned::Launch => match body.get("cluster_name") {
                None | Some(serde_json::Value::Null) => Vec::new(),
                Some(v) => {
                    let name = v
                        .as_str()
                        .ok_or_else(|| refuse("cluster_name is not a string".into()))?
                        .to_string();
                    let names = vec![name];
                    self.check_clusters(who, &names, true)
                        .await
                        .map_err(refuse)?;
                    names
                }
            },
            Owned::Jobs => self.check_jobs(who, &body).await.map_err(refuse)?,
            Owned::Services => self
                .check_services(
                    who,
                    &body,
                    "serve/status",
                    "service_names",
                    "service_name",
                    false,
                )
                .await
                .map_err(refuse)?,
            Owned::Pools { create } => self
                .check_services(
                    who,
                    &body,
                    "jobs/pool_status",
                    "pool_names",
                    "pool_name",
                    create,
                )
                .await
                .map_err(refuse)?,
            Owned::Requests => {
                // SkyPilot binds a non-admin's cancel to the caller (`role_filter`); the
                // gateway binds it too, so it holds even if SkyPilot took the person for
                // an admin.
                if let Some(obj) = body.as_object_mut() {
                    obj.insert(
                        "user_id".into(),
                        serde_json::Value::String(skypilot_id(who)),
                    );
                }
                strings(&body, "request_ids").map_err(refuse)?
            }
            Owned::ClusterQuery => Vec::new(),
        };
        let bytes = if owned == Owned::Requests {
            serde_json::to_vec(&body).map_err(|e| refuse(format!("cannot write the body: {e}")))?
        } else {
            bytes.to_vec()
        };
        let mut parts = parts;
        parts.headers.remove(header::CONTENT_LENGTH);
        Ok((Request::from_parts(parts, Body::from(bytes)), names))
    }

    /// Refuses unless `who` owns every cluster of `names`. A cluster the host database
    /// does not know (launched since the cluster manager's last poll) is asked of
    /// SkyPilot; one SkyPilot does not know either is refused, or let through when
    /// `new_ok` (a launch of a new cluster).
    async fn check_clusters(
        &self,
        who: &Identity,
        names: &[String],
        new_ok: bool,
    ) -> Result<(), String> {
        for name in names {
            let owner = match self.owner_in_database(name).await? {
                Some(o) => Some(o),
                None => {
                    let found = self
                        .inner
                        .sky
                        .status_named(std::slice::from_ref(name))
                        .await
                        .map_err(|e| {
                            format!("cannot ask SkyPilot who owns cluster {name:?}: {e}")
                        })?;
                    found
                        .into_iter()
                        .find(|c| &c.name == name)
                        .map(|c| (c.user_name, c.user_hash))
                }
            };
            let Some((owner_name, owner_hash)) = owner else {
                if new_ok {
                    continue;
                }
                return Err(format!(
                    "cluster {name:?} is not known to the host database or to SkyPilot"
                ));
            };
            if !owns(who, owner_name.as_deref(), owner_hash.as_deref()) {
                let shown = owner_name.or(owner_hash).unwrap_or_default();
                return Err(format!(
                    "cluster {name:?} belongs to {shown:?}; a {} acts only on their own",
                    who.role.as_str()
                ));
            }
        }
        Ok(())
    }

    /// Refuses a managed-jobs request unless it names jobs (by `job_ids`, `job_id` or
    /// `name`) that all belong to `who`; `all` and `all_users` are refused.
    async fn check_jobs(
        &self,
        who: &Identity,
        body: &serde_json::Value,
    ) -> Result<Vec<String>, String> {
        if flag(body, "all") || flag(body, "all_users") {
            return Err(
                "`all` / `all_users` act on other people's jobs: name your jobs instead".into(),
            );
        }
        let mut ids: Vec<i64> = match body.get("job_ids") {
            None | Some(serde_json::Value::Null) => Vec::new(),
            Some(v) => v
                .as_array()
                .and_then(|a| a.iter().map(|i| i.as_i64()).collect::<Option<Vec<_>>>())
                .ok_or("job_ids is not a list of numbers")?,
        };
        if let Some(id) = body.get("job_id").filter(|v| !v.is_null()) {
            ids.push(id.as_i64().ok_or("job_id is not a number")?);
        }
        let name = match body.get("name") {
            None | Some(serde_json::Value::Null) => None,
            Some(v) => Some(v.as_str().ok_or("name is not a string")?.to_string()),
        };
        if ids.is_empty() && name.is_none() {
            return Err(
                "the request names no job (job_ids, job_id or name), so its owner is unknown"
                    .into(),
            );
        }
        let mut query = serde_json::json!({ "all_users": true, "skip_finished": false });
        if !ids.is_empty() {
            query["job_ids"] = serde_json::json!(ids);
        }
        let answer = self
            .inner
            .sky
            .call_json("jobs/queue/v2", query)
            .await
            .map_err(|e| format!("cannot ask SkyPilot who owns the jobs: {e}"))?;
        let jobs = answer
            .as_array()
            .and_then(|a| a.first())
            .and_then(|j| j.as_array())
            .or_else(|| answer.get("jobs").and_then(|j| j.as_array()))
            .cloned()
            .unwrap_or_default();
        let wanted: Vec<&serde_json::Value> = jobs
            .iter()
            .filter(|j| {
                let id_ok = ids.is_empty()
                    || j.get("job_id")
                        .and_then(|v| v.as_i64())
                        .is_some_and(|i| ids.contains(&i));
                let name_ok = name
                    .as_deref()
                    .is_none_or(|n| j.get("job_name").and_then(|v| v.as_str()) == Some(n));
                id_ok && name_ok
            })
            .collect();
        if wanted.is_empty() {
            return Err("SkyPilot knows no such managed job".into());
        }
        for j in &wanted {
            let hash = j.get("user_hash").and_then(|v| v.as_str());
            let owner = j.get("user_name").and_then(|v| v.as_str());
            if !owns(who, owner, hash) {
                return Err(format!(
                    "managed job {} belongs to {:?}; a {} acts only on their own",
                    j.get("job_id").map(|v| v.to_string()).unwrap_or_default(),
                    owner.or(hash).unwrap_or(""),
                    who.role.as_str()
                ));
            }
        }
        let mut names: Vec<String> = ids.iter().map(|i| format!("job {i}")).collect();
        names.extend(name.map(|n| format!("job {n}")));
        Ok(names)
    }

    /// Refuses a services (or pools) request unless the services it names (`list_key`
    /// or `one_key`) all belong to `who`; `all` is refused. With `create`, a name
    /// SkyPilot does not know is a new one and passes.
    async fn check_services(
        &self,
        who: &Identity,
        body: &serde_json::Value,
        op: &str,
        list_key: &str,
        one_key: &str,
        create: bool,
    ) -> Result<Vec<String>, String> {
        if flag(body, "all") {
            return Err("`all` acts on other people's services: name yours instead".into());
        }
        let mut names = strings(body, list_key)?;
        names.extend(strings(body, one_key)?);
        if names.is_empty() {
            return Err(format!(
                "the request names nothing ({list_key} or {one_key}), so its owner is unknown"
            ));
        }
        let answer = self
            .inner
            .sky
            .call_json(op, serde_json::json!({ list_key: names }))
            .await
            .map_err(|e| format!("cannot ask SkyPilot who owns {names:?}: {e}"))?;
        let records = answer.as_array().cloned().unwrap_or_default();
        for n in &names {
            let rec = records.iter().find(|r| {
                r.get("name")
                    .or_else(|| r.get("service_name"))
                    .and_then(|v| v.as_str())
                    == Some(n.as_str())
            });
            let Some(rec) = rec else {
                if create {
                    continue;
                }
                return Err(format!("SkyPilot knows no {n:?}"));
            };
            let hash = rec.get("user_hash").and_then(|v| v.as_str());
            let owner = rec.get("user_name").and_then(|v| v.as_str());
            if !owns(who, owner, hash) {
                return Err(format!(
                    "{n:?} belongs to {:?}; a {} acts only on their own",
                    owner.or(hash).unwrap_or(""),
                    who.role.as_str()
                ));
            }
        }
        Ok(names)
    }

    /// The owner of `cluster` in the host database, as (SkyPilot's `user_name`,
    /// `user_hash`); `None` when the database does not know it (or it is gone).
    async fn owner_in_database(
        &self,
        cluster: &str,
    ) -> Result<Option<(Option<String>, Option<String>)>, String> {
        let db = self.inner.database.clone();
        if !db.exists() {
            return Ok(None);
        }
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

/// Whether the JSON body sets `key` to true.
fn flag(body: &serde_json::Value, key: &str) -> bool {
    body.get(key).and_then(|v| v.as_bool()).unwrap_or(false)
}

/// The strings under `key`: one string, a list of strings, or nothing.
fn strings(body: &serde_json::Value, key: &str) -> Result<Vec<String>, String> {
    match body.get(key) {
        None | Some(serde_json::Value::Null) => Ok(Vec::new()),
        Some(serde_json::Value::String(s)) => Ok(vec![s.clone()]),
        Some(serde_json::Value::Array(a)) => a
            .iter()
            .map(|v| v.as_str().map(str::to_string))
            .collect::<Option<Vec<_>>>()
            .ok_or_else(|| format!("{key} holds a non-string")),
        Some(_) => Err(format!("{key} is not a string or a list of strings")),
    }
}

/// Whether headers about to go to SkyPilot carry an identity SkyPilot will verify or
/// take as given: the identity header, and for a service-account token the mode header
/// that makes SkyPilot refuse an invalid one. Only the unauthenticated health probe
/// (`person` false) goes without, and then with no credentials at all.
fn identified(h: &HeaderMap, identity_header: &HeaderName, person: bool) -> Result<(), String> {
    if !person {
        if h.contains_key(identity_header) || h.contains_key(header::AUTHORIZATION) {
            return Err("the unauthenticated probe carries credentials".into());
        }
        return Ok(());
    }
    let named = h
        .get(identity_header)
        .is_some_and(|v| !v.as_bytes().is_empty());
    if !named {
        return Err(format!(
            "no {identity_header} header: SkyPilot would take it for its anonymous admin"
        ));
    }
    if h.contains_key(header::AUTHORIZATION)
        && h.get(AUTH_MODE_HEADER).map(|v| v.as_bytes()) != Some(b"token")
    {
        return Err(
            "a bearer token without X-Skypilot-Auth-Mode: token would not be verified".into(),
        );
    }
    Ok(())
}

/// The clusters a control body names: `cluster_name`, or `cluster_names` (a list).
fn cluster_names(v: &serde_json::Value) -> Result<Vec<String>, String> {
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
    fn only_the_probe_goes_without_an_identity() {
        let id = HeaderName::from_static("x-auth-request-email");
        let mut h = HeaderMap::new();
        assert!(identified(&h, &id, false).is_ok());
        assert!(identified(&h, &id, true).is_err());
        h.insert(id.clone(), HeaderValue::from_static("alice"));
        assert!(identified(&h, &id, true).is_ok());
        assert!(identified(&h, &id, false).is_err());
        h.insert(
            header::AUTHORIZATION,
            HeaderValue::from_static("Bearer sky_x"),
        );
        assert!(identified(&h, &id, true).is_err());
        h.insert(AUTH_MODE_HEADER, HeaderValue::from_static("token"));
        assert!(identified(&h, &id, true).is_ok());
        h.insert(id.clone(), HeaderValue::from_static(""));
        assert!(identified(&h, &id, true).is_err());
    }

    #[test]
    fn strings_of_a_body() {
        let b = serde_json::json!({"a": "x", "b": ["y", "z"], "c": [1], "d": null});
        assert_eq!(strings(&b, "a"), Ok(vec!["x".to_string()]));
        assert_eq!(strings(&b, "b").unwrap().len(), 2);
        assert!(strings(&b, "c").is_err());
        assert_eq!(strings(&b, "d"), Ok(vec![]));
        assert_eq!(strings(&b, "e"), Ok(vec![]));
    }

    #[test]
    fn cluster_names_from_bodies() {
        let names = |t: &str| cluster_names(&serde_json::from_str(t).unwrap());
        assert_eq!(
            names(r#"{"cluster_name":"a","purge":false}"#),
            Ok(vec!["a".to_string()])
        );
        assert_eq!(
            names(r#"{"cluster_names":["a","b"]}"#),
            Ok(vec!["a".to_string(), "b".to_string()])
        );
        assert!(names(r#"{"purge":true}"#).is_err());
        assert!(names(r#"{"cluster_name":5}"#).is_err());
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
