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
//! [`crate::web_ui::rules`] first (allow, owner-checked, deny by route and role). Owners come
//! from the host database (the cluster manager's copy of SkyPilot's owner) and, for a
//! cluster it has not seen yet, jobs, services and pools, from SkyPilot itself; the
//! answer is [`crate::web_ui::ownership::owns`]. Every state-changing request, and every
//! refusal, is written to the audit table.
//!
//! Bodies stream both ways (uploads of 95 MB chunks, `/api/stream`'s chunked logs);
//! websockets (`/kubernetes-pod-ssh-proxy`, …) are upgraded on both sides and copied.
//!
//! Parts: [`authorize`] (the table, owners, the audit), [`proxy`] (the request to SkyPilot
//! and its answer back).

mod authorize;
mod proxy;

use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::header::{self, HeaderName, HeaderValue};
use axum::http::{Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::Router;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

use crate::config::Config;
use crate::web_ui::identity::{AuthMethod, Identity};

use proxy::*;

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
                let cli = req.headers().contains_key(API_VERSION_HEADER);
                let wrong_password = req
                    .extensions()
                    .get::<crate::web_ui::auth::WrongPassword>()
                    .is_some();
                let answer = gw.forward(req, None).await;
                if wrong_password {
                    // The CLI goes on to its request, which is refused with the cause.
                    health_for_anonymous(answer, "healthy").await
                } else if cli {
                    health_for_anonymous(answer, "needs_auth").await
                } else {
                    answer
                }
            } else if is_browser_navigation(&req) {
                login_redirect(req.uri())
            } else {
                gw.unauthorized("authentication required: run `sky api login -e URL` with this server's URL (or log in to the web UI)")
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

/// The header SkyPilot's client sends on every request (and its server on every answer).
const API_VERSION_HEADER: &str = "x-skypilot-api-version";
/// Largest health answer rewritten for an anonymous CLI.
const MAX_HEALTH_BYTES: usize = 64 * 1024;

/// SkyPilot's health answer with `status` set and `user` null. `needs_auth` is what
/// SkyPilot's own server gives an anonymous CLI when its authentication is on: it makes
/// the CLI start its browser login (`sky api login`) and tell a person whose login ended
/// to log in again. `healthy` is for a CLI with a wrong password (see
/// [`crate::web_ui::auth::WrongPassword`]). Anything but a 200 JSON object passes
/// unchanged.
async fn health_for_anonymous(answer: Response, status: &'static str) -> Response {
    if answer.status() != StatusCode::OK {
        return answer;
    }
    let (mut parts, body) = answer.into_parts();
    let Ok(bytes) = axum::body::to_bytes(body, MAX_HEALTH_BYTES).await else {
        return error(
            StatusCode::BAD_GATEWAY,
            "SkyPilot's /api/health answer was unreadable or too large",
        );
    };
    let rewritten = match serde_json::from_slice::<serde_json::Value>(&bytes) {
        Ok(serde_json::Value::Object(mut o)) => {
            o.insert("status".into(), serde_json::json!(status));
            o.insert("user".into(), serde_json::Value::Null);
            serde_json::Value::Object(o).to_string().into_bytes()
        }
        _ => bytes.to_vec(),
    };
    parts.headers.remove(header::CONTENT_LENGTH);
    parts.headers.remove(header::TRANSFER_ENCODING);
    Response::from_parts(parts, Body::from(rewritten))
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
pub(super) fn error(status: StatusCode, text: &str) -> Response {
    (
        status,
        [(header::CACHE_CONTROL, HeaderValue::from_static("no-store"))],
        axum::Json(serde_json::json!({ "detail": bounded(text) })),
    )
        .into_response()
}

pub(super) fn bounded(text: &str) -> String {
    if text.chars().count() <= MAX_ERROR_CHARS {
        return text.to_string();
    }
    let mut s: String = text.chars().take(MAX_ERROR_CHARS).collect();
    s.push('…');
    s
}

#[cfg(test)]
mod tests {
    use super::authorize::*;
    use super::proxy::*;
    use super::*;
    use crate::web_ui::auth::service_account::AUTH_MODE_HEADER;
    use axum::http::HeaderMap;

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
