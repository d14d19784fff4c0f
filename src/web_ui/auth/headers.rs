//! Security headers on every console and API response: a CSP without inline script,
//! no framing, no sniffing, a strict referrer policy, and no caching of pages.

use axum::extract::Request;
use axum::http::header::{
    CACHE_CONTROL, CONTENT_SECURITY_POLICY, REFERRER_POLICY, X_CONTENT_TYPE_OPTIONS,
    X_FRAME_OPTIONS,
};
use axum::http::HeaderValue;
use axum::middleware::Next;
use axum::response::Response;

/// Scripts and styles only from our own static files; no inline script, no framing.
pub(crate) const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'";
pub(crate) const REFERRER: &str = "same-origin";

/// A response extension: the one origin besides our own the page's script may send to
/// (the CLI's callback on `http://localhost:PORT`, SkyPilot's localhost-callback login).
#[derive(Debug, Clone)]
pub(crate) struct ConnectTo(pub(crate) String);

/// Adds the security headers (keeps a `Cache-Control` the handler set, such as the
/// static files').
pub(crate) async fn security_headers(req: Request, next: Next) -> Response {
    let mut resp = next.run(req).await;
    let csp = match resp.extensions().get::<ConnectTo>() {
        Some(ConnectTo(origin)) => HeaderValue::from_str(&CSP.replace(
            "connect-src 'self'",
            &format!("connect-src 'self' {origin}"),
        ))
        .unwrap_or(HeaderValue::from_static(CSP)),
        None => HeaderValue::from_static(CSP),
    };
    let h = resp.headers_mut();
    h.insert(CONTENT_SECURITY_POLICY, csp);
    h.insert(X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    h.insert(X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(REFERRER_POLICY, HeaderValue::from_static(REFERRER));
    if !h.contains_key(CACHE_CONTROL) {
        h.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    resp
}
