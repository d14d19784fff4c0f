//! The proxy half of the gateway: a request on its way to SkyPilot (the headers SkyPilot
//! must see and nothing else, the check that an identity is set), and the answer on its
//! way back: bodies streamed with an idle bound, websockets upgraded on both sides and
//! copied, hop-by-hop headers dropped, SkyPilot's own redirects made relative.

use std::fmt::Write as _;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::{Body, Bytes, HttpBody};
use axum::extract::Request;
use axum::http::header::{self, HeaderMap, HeaderName, HeaderValue};
use axum::http::{StatusCode, Uri};
use axum::response::Response;
use hyper_util::rt::TokioIo;
use tokio::time::{Instant, Sleep};

use crate::web_ui::auth::service_account::AUTH_MODE_HEADER;
use crate::web_ui::auth::{parse_authorization, AuthHeader};
use crate::web_ui::identity::{AuthMethod, Identity};

use super::{error, Gateway};

impl Gateway {
    /// Forwards `req` to the upstream with the headers SkyPilot must see, and streams the
    /// answer back.
    pub(super) async fn forward(&self, mut req: Request, who: Option<&Identity>) -> Response {
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
        let resp = match answer {
            Ok(Ok(r)) => r,
            Ok(Err(e)) => return self.unreachable(&e),
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
            return self.splice(client_upgrade, resp, path_and_query);
        }
        let (mut parts, body) = resp.into_parts();
        strip_hop_by_hop(&mut parts.headers, false);
        self.rewrite_location(&mut parts.headers);
        Response::from_parts(parts, Body::new(IdleBody::new(body, inner.idle)))
    }

    /// The answer when SkyPilot cannot be reached: the error and its causes.
    fn unreachable(&self, e: &hyper_util::client::legacy::Error) -> Response {
        let mut text = format!(
            "the gateway cannot reach SkyPilot's API server at {}: {e}",
            self.inner.upstream
        );
        let mut source = std::error::Error::source(e);
        while let Some(s) = source {
            let _ = write!(text, ": {s}");
            source = s.source();
        }
        error(StatusCode::BAD_GATEWAY, &text)
    }

    /// SkyPilot switched protocols (a websocket): both upgraded connections are copied
    /// into each other until one ends or goes idle; the client gets the 101.
    fn splice(
        &self,
        client_upgrade: Option<hyper::upgrade::OnUpgrade>,
        mut resp: Response<hyper::body::Incoming>,
        path_and_query: String,
    ) -> Response {
        let inner = &self.inner;
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
        let path = path_and_query;
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
        Response::from_parts(parts, Body::empty())
    }

    /// The request headers SkyPilot sees: see the module's documentation.
    #[allow(clippy::result_large_err)]
    pub(super) fn rewrite_request_headers(
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
    pub(super) fn rewrite_location(&self, h: &mut HeaderMap) {
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
}

/// Whether headers about to go to SkyPilot carry an identity SkyPilot will verify or
/// take as given: the identity header, and for a service-account token the mode header
/// that makes SkyPilot refuse an invalid one. Only the unauthenticated health probe
/// (`person` false) goes without, and then with no credentials at all.
pub(super) fn identified(
    h: &HeaderMap,
    identity_header: &HeaderName,
    person: bool,
) -> Result<(), String> {
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

/// Whether the request asks for a protocol upgrade (a websocket).
pub(super) fn wants_upgrade(h: &HeaderMap) -> bool {
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
pub(super) fn strip_hop_by_hop(h: &mut HeaderMap, keep_upgrade: bool) {
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

/// A response body from the upstream that fails once no frame has arrived for `idle`
/// (a stream whose server went silent), passed on frame by frame, never buffered.
pub(super) struct IdleBody<B> {
    inner: B,
    idle: Duration,
    deadline: Pin<Box<Sleep>>,
}

impl<B> IdleBody<B> {
    pub(super) fn new(inner: B, idle: Duration) -> IdleBody<B> {
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
