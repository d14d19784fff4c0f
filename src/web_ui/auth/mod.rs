//! Authentication of every request, one file per concern: [`session`] (the console's
//! cookie sessions), [`csrf`], [`headers`] (security headers), [`rate_limit`] (logins).
//!
//! [`identify`] runs on every route, the gateway's included. It looks at the request's
//! credentials, in this order:
//! - `Authorization: Bearer sky_…`: a SkyPilot service-account token, verified by SkyPilot
//!   before anything else happens ([`service_account`]); marked
//!   [`AuthMethod::SkyPilotServiceAccount`] with the id, name and role SkyPilot gave. The
//!   console and the JSON API do not accept it; the gateway does.
//! - `Authorization: Bearer shtok_…`: one of our API tokens (the tokens file).
//! - `Authorization: Basic …`: a user of the users file (SkyPilot's CLI sends this on
//!   every request). A successful check is remembered for [`BASIC_CACHE_SECS`] under a
//!   keyed hash of the credentials, so argon2 does not run per request.
//! - The session cookie: a live console session.
//! - The CLI login cookie ([`cli_login::COOKIE`]): a live `sky api login` of ours.
//!
//! A session or CLI login holds while its person has a role now: a users-file login
//! while the person is in the file (and password login is on), a single sign-on login
//! while its groups map to a role.
//!
//! The header is parsed strictly ([`parse_authorization`]): one header, the scheme, one
//! space, the credentials. Anything else is refused with 401, never taken for "no
//! credentials".
//!
//! Valid credentials: an [`Identity`] is inserted into the request's extensions.
//! Invalid credentials: 401 (429 once the login rate limit is reached), counted by the
//! rate limiter. None (or an unknown or expired session cookie): the request goes on
//! without an Identity, and each route decides (the console redirects to its login page,
//! the JSON API answers 401, the gateway does what it must).

pub(crate) mod cli_login;
pub(crate) mod csrf;
pub(crate) mod headers;
pub(crate) mod host;
pub(crate) mod login;
pub(crate) mod oidc;
pub(crate) mod rate_limit;
pub(crate) mod service_account;
pub(crate) mod session;
pub(crate) mod sso;

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex};

use axum::body::Body;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::header::{AUTHORIZATION, COOKIE, LOCATION, RETRY_AFTER, WWW_AUTHENTICATE};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use blake2::digest::consts::U32;
use blake2::digest::{KeyInit, Mac};
use blake2::Blake2bMac;

use super::identity::{AuthMethod, Identity, Role};
use crate::time::Timestamp;
use crate::web_ui::state::WebState;
use login::LoginError;

/// How long a verified Basic credential is trusted without running argon2 again.
pub(crate) const BASIC_CACHE_SECS: f64 = 300.0;
/// Most Basic credentials remembered.
pub(crate) const BASIC_CACHE_ENTRIES: usize = 1024;
/// Largest console form read when looking for its CSRF token.
const MAX_FORM_BYTES: usize = 64 * 1024;

/// The session a request came with (for the CSRF check and logout).
#[derive(Debug, Clone)]
pub(crate) struct SessionRef {
    pub(crate) id: String,
    pub(crate) csrf: String,
}

/// Verified Basic credentials, keyed by a keyed hash of `name:password` (so the
/// passwords themselves are not kept).
pub(crate) struct BasicCache {
    key: [u8; 32],
    entries: Mutex<HashMap<[u8; 32], (String, Role, Timestamp)>>,
}

impl BasicCache {
    pub(crate) fn new() -> anyhow::Result<BasicCache> {
        let mut key = [0u8; 32];
        getrandom::getrandom(&mut key)
            .map_err(|e| anyhow::anyhow!("cannot read random bytes from the system: {e}"))?;
        Ok(BasicCache {
            key,
            entries: Mutex::new(HashMap::new()),
        })
    }

    fn digest(&self, name: &str, password: &str) -> [u8; 32] {
        // A 32-byte key is always accepted by BLAKE2b; the fallback never runs.
        let Ok(mut mac) = <Blake2bMac<U32> as KeyInit>::new_from_slice(&self.key) else {
            return [0u8; 32];
        };
        mac.update(name.as_bytes());
        mac.update(&[0]);
        mac.update(password.as_bytes());
        mac.finalize().into_bytes().into()
    }

    fn get(&self, name: &str, password: &str, now: Timestamp) -> Option<(String, Role)> {
        let d = self.digest(name, password);
        let map = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        map.get(&d)
            .filter(|(_, _, until)| *until > now)
            .map(|(n, r, _)| (n.clone(), *r))
    }

    /// Forgets every cached check (the users file changed: a password may have).
    pub(crate) fn clear(&self) {
        self.entries
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clear();
    }

    fn put(&self, name: &str, password: &str, role: Role, now: Timestamp) {
        let d = self.digest(name, password);
        let mut map = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        if map.len() >= BASIC_CACHE_ENTRIES {
            map.retain(|_, (_, _, until)| *until > now);
            if map.len() >= BASIC_CACHE_ENTRIES {
                map.clear();
            }
        }
        map.insert(d, (name.to_string(), role, now.plus_secs(BASIC_CACHE_SECS)));
    }

    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.entries.lock().unwrap_or_else(|e| e.into_inner()).len()
    }
}

/// The client's address, as the connection says (loopback when unknown, in tests that
/// call the router directly).
pub(crate) fn client_ip(req: &Request) -> IpAddr {
    req.extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map_or(IpAddr::V4(Ipv4Addr::LOCALHOST), |c| c.0.ip())
}

/// The value of one cookie (the first of that name), as the client sent it.
pub(crate) fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(cookie::Cookie::split_parse)
        .filter_map(Result::ok)
        .find(|c| c.name() == name)
        .and_then(|c| c.value_raw())
}

/// What the request's credentials say.
enum Credentials {
    None,
    Valid(Identity, Option<SessionRef>),
    Invalid(Response),
    /// Basic credentials whose password is wrong (or password login is off): `Invalid`
    /// for a browser or a script; for SkyPilot's CLI see [`WrongPassword`].
    WrongPassword(WrongPassword),
}

/// Basic credentials of SkyPilot's CLI that do not log in (an endpoint such as
/// `http://admin:WRONG@host`). SkyPilot 0.14.1's CLI reads a 401 on `/api/health` as
/// "log in" and prints the endpoint, password and all, in its advice to run
/// `sky api login -e URL`; a 403 with a `detail` on the request it then sends is shown as
/// that one line (`PermissionDeniedError`). So for the CLI the health probe goes on as
/// an anonymous one, answered "healthy" (this marker in its extensions tells the
/// gateway), and every other request gets 403 with `detail` naming the cause.
#[derive(Debug, Clone)]
pub(crate) struct WrongPassword {
    /// The cause, for people: never the password.
    pub(crate) detail: String,
    /// The 401 a browser or a script gets.
    fallback_message: &'static str,
}

fn unauthorized(message: &str, scheme: &'static str) -> Response {
    let mut resp = (
        StatusCode::UNAUTHORIZED,
        axum::Json(serde_json::json!({ "error": message })),
    )
        .into_response();
    resp.headers_mut()
        .insert(WWW_AUTHENTICATE, HeaderValue::from_static(scheme));
    resp
}

fn too_many(retry_after: u64) -> Response {
    let mut resp = (
        StatusCode::TOO_MANY_REQUESTS,
        axum::Json(serde_json::json!({
            "error": format!("too many failed logins from this address or for this user; retry in {retry_after} s")
        })),
    )
        .into_response();
    resp.headers_mut()
        .insert(RETRY_AFTER, HeaderValue::from(retry_after));
    resp
}

const BASIC_REALM: &str = "Basic realm=\"skypilot-host\", charset=\"UTF-8\"";
const BEARER_REALM: &str = "Bearer realm=\"skypilot-host\"";

/// What an `Authorization` header holds, in the one form each scheme is accepted in:
/// `SCHEME`, one space, the credentials (no other whitespace).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum AuthHeader<'a> {
    Basic(&'a str),
    /// One of our API tokens (or anything else after `Bearer `).
    Bearer(&'a str),
    /// A SkyPilot service-account token (`sky_…`).
    SkyToken(&'a str),
}

/// The request's one `Authorization` header, parsed strictly: more than one, a value
/// that is not visible ASCII, whitespace other than the one space after the scheme, or
/// an empty credential is an error (never "no credentials", which would let the
/// request on as anonymous).
pub(crate) fn parse_authorization(headers: &HeaderMap) -> Result<Option<AuthHeader<'_>>, String> {
    let mut all = headers.get_all(AUTHORIZATION).iter();
    let Some(value) = all.next() else {
        return Ok(None);
    };
    if all.next().is_some() {
        return Err("more than one Authorization header".to_string());
    }
    let text = value
        .to_str()
        .ok()
        .filter(|t| t.bytes().all(|b| b.is_ascii_graphic() || b == b' '))
        .ok_or("the Authorization header is not visible ASCII text")?;
    let form = "expected `Basic CREDENTIALS` or `Bearer TOKEN`: the scheme, one space, and no other whitespace";
    let (scheme, rest) = text
        .split_once(' ')
        .ok_or_else(|| format!("the Authorization header has no credentials: {form}"))?;
    if rest.is_empty() || rest.contains(' ') {
        return Err(format!("malformed Authorization header: {form}"));
    }
    if scheme.eq_ignore_ascii_case("basic") {
        Ok(Some(AuthHeader::Basic(rest)))
    } else if scheme.eq_ignore_ascii_case("bearer") {
        if rest.starts_with("sky_") {
            Ok(Some(AuthHeader::SkyToken(rest)))
        } else {
            Ok(Some(AuthHeader::Bearer(rest)))
        }
    } else {
        Err(format!("unsupported Authorization scheme: {form}"))
    }
}

/// Whether `path` is one of the web UI's own (the console, its JSON API, the health
/// check) rather than the gateway's.
fn own_route(path: &str) -> bool {
    path == "/healthz"
        || path.starts_with("/console/")
        || path == "/console"
        || path.starts_with("/api/v1/")
        || path == "/auth/authorize"
        || path == "/token"
}

async fn credentials(
    state: &Arc<WebState>,
    headers: &HeaderMap,
    client: IpAddr,
    path: &str,
) -> Credentials {
    let auth = match parse_authorization(headers) {
        Ok(a) => a,
        Err(m) => return Credentials::Invalid(unauthorized(&m, BASIC_REALM)),
    };
    if let Some(auth) = auth {
        let now = state.clock.now();
        match auth {
            AuthHeader::SkyToken(_) if own_route(path) => {
                return Credentials::Invalid(unauthorized(
                    "a SkyPilot service-account token is for SkyPilot's API (the gateway), not the console or /api/v1: use a console session, Basic credentials or an API token",
                    BEARER_REALM,
                ));
            }
            AuthHeader::SkyToken(token) => {
                if let Err(wait) = state.limiter.check(client, "", now) {
                    return Credentials::Invalid(too_many(wait));
                }
                return match state.service_accounts.verify(token, now).await {
                    Ok(v) => Credentials::Valid(
                        Identity {
                            name: v.name,
                            role: v.role,
                            method: AuthMethod::SkyPilotServiceAccount,
                            user_id: Some(v.id),
                        },
                        None,
                    ),
                    Err(service_account::Refusal::Invalid(m)) => {
                        state.limiter.failure(client, "", now);
                        Credentials::Invalid(unauthorized(&m, BEARER_REALM))
                    }
                    Err(service_account::Refusal::Unavailable(m)) => {
                        tracing::warn!(error = %m, "web UI: cannot verify a service-account token");
                        Credentials::Invalid(
                            (
                                StatusCode::SERVICE_UNAVAILABLE,
                                axum::Json(serde_json::json!({ "detail": m })),
                            )
                                .into_response(),
                        )
                    }
                };
            }
            AuthHeader::Bearer(token) => {
                if let Err(wait) = state.limiter.check(client, "", now) {
                    return Credentials::Invalid(too_many(wait));
                }
                return match state.users().token(token) {
                    Some((name, role)) => {
                        Credentials::Valid(Identity::named(name, role, AuthMethod::Bearer), None)
                    }
                    None => {
                        state.limiter.failure(client, "", now);
                        Credentials::Invalid(unauthorized("unknown API token", BEARER_REALM))
                    }
                };
            }
            AuthHeader::Basic(encoded) => {
                use base64::Engine;
                let decoded = base64::engine::general_purpose::STANDARD
                    .decode(encoded)
                    .ok()
                    .and_then(|b| String::from_utf8(b).ok());
                let Some((name, password)) = decoded.as_deref().and_then(|d| d.split_once(':'))
                else {
                    return Credentials::Invalid(unauthorized(
                        "Basic credentials are not base64 of NAME:PASSWORD",
                        BASIC_REALM,
                    ));
                };
                return match login::check_password(state, name, password, client).await {
                    Ok((name, role)) => {
                        Credentials::Valid(Identity::named(name, role, AuthMethod::Basic), None)
                    }
                    Err(LoginError::Limited(wait)) => Credentials::Invalid(too_many(wait)),
                    Err(LoginError::Invalid) => Credentials::WrongPassword(WrongPassword {
                        detail: format!(
                            "wrong user name or password for {:?}: the endpoint's user name and password are those of the web console (the password is not shown here)",
                            name.chars().take(64).collect::<String>()
                        ),
                        fallback_message: "wrong user name or password",
                    }),
                    Err(LoginError::Off) => Credentials::WrongPassword(WrongPassword {
                        detail: "password login is turned off here: log in with `sky api login -e URL` (single sign-on), without a user name and password in the URL".into(),
                        fallback_message: "password login is turned off here: log in with `sky api login -e URL` (single sign-on)",
                    }),
                    Err(LoginError::Internal) => Credentials::Invalid(
                        (
                            StatusCode::INTERNAL_SERVER_ERROR,
                            "the password check did not complete\n",
                        )
                            .into_response(),
                    ),
                };
            }
        }
    }
    if let Some(id) = cookie(headers, session::COOKIE) {
        if let Some((s, role)) = known_session(state, id).await {
            return Credentials::Valid(
                Identity::named(s.name, role, AuthMethod::Session),
                Some(SessionRef {
                    id: id.to_string(),
                    csrf: s.csrf,
                }),
            );
        }
    }
    if let Some(secret) = cookie(headers, cli_login::COOKIE) {
        if let Some(held) = cli_login::find(state, secret).await {
            if let Some(role) = state.role_of(&held.name, &held.origin) {
                return Credentials::Valid(
                    Identity::named(held.name, role, AuthMethod::CliLogin),
                    None,
                );
            }
        }
    }
    Credentials::None
}

/// The live session of the cookie `id` and its person's role: held in memory, or else
/// recorded in the host database by an earlier run; only while its person has a role
/// now ([`WebState::role_of`]: it may have changed since the login).
async fn known_session(state: &Arc<WebState>, id: &str) -> Option<(session::Session, Role)> {
    let now = state.clock.now();
    if let Some(s) = state.sessions.get(id, now) {
        let role = state.role_of(&s.name, &s.origin)?;
        return Some((s, role));
    }
    let key = session::digest(id);
    let stored = match state.read(move |s| Ok(s.session(&key, now)?)).await {
        Ok(stored) => stored?,
        Err(e) => {
            tracing::debug!(error = %format!("{e:#}"), "web UI: cannot look up a session in the host database");
            return None;
        }
    };
    let s = session::from_stored(id, stored);
    let role = state.role_of(&s.name, &s.origin)?;
    state.sessions.adopt(id, s.clone(), now);
    Some((s, role))
}

/// The middleware every route runs behind: inserts the request's [`Identity`] (see the
/// module's documentation), answers 401/429 itself for invalid credentials.
pub(crate) async fn identify(
    State(state): State<Arc<WebState>>,
    mut req: Request,
    next: Next,
) -> Response {
    // Nobody may hand us an identity of their own making.
    req.extensions_mut().remove::<Identity>();
    req.extensions_mut().remove::<SessionRef>();
    let client = client_ip(&req);
    let path = req.uri().path().to_string();
    match credentials(&state, req.headers(), client, &path).await {
        Credentials::None => {}
        Credentials::Valid(identity, session) => {
            req.extensions_mut().insert(identity);
            if let Some(s) = session {
                req.extensions_mut().insert(s);
            }
        }
        Credentials::Invalid(resp) => return resp,
        Credentials::WrongPassword(wrong) => {
            let cli = req.headers().contains_key("x-skypilot-api-version");
            if !cli || own_route(&path) {
                return unauthorized(wrong.fallback_message, BASIC_REALM);
            }
            if req.method() != axum::http::Method::GET || path != "/api/health" {
                let mut resp = (
                    StatusCode::FORBIDDEN,
                    axum::Json(serde_json::json!({ "detail": wrong.detail })),
                )
                    .into_response();
                resp.headers_mut().insert(
                    axum::http::header::CACHE_CONTROL,
                    HeaderValue::from_static("no-store"),
                );
                return resp;
            }
            req.headers_mut().remove(AUTHORIZATION);
            req.extensions_mut().insert(wrong);
        }
    }
    next.run(req).await
}

/// The identity of a request, when it is one the console and the JSON API accept (a
/// SkyPilot service-account token is not a login here).
pub(crate) fn console_identity(req: &Request) -> Option<&Identity> {
    req.extensions()
        .get::<Identity>()
        .filter(|i| i.method != AuthMethod::SkyPilotServiceAccount && !i.name.is_empty())
}

/// Guards the JSON API: 401 without an accepted identity.
pub(crate) async fn require_api(req: Request, next: Next) -> Response {
    if console_identity(&req).is_none() {
        return unauthorized(
            "authentication required: a console session, Basic credentials or an API token",
            BEARER_REALM,
        );
    }
    next.run(req).await
}

/// Guards the console's pages: a redirect to the login page without an accepted identity.
pub(crate) async fn require_page(req: Request, next: Next) -> Response {
    if console_identity(&req).is_none() {
        let target = req
            .uri()
            .path_and_query()
            .map_or("/console/", |p| p.as_str());
        let next_q: String = url::form_urlencoded::byte_serialize(target.as_bytes()).collect();
        let mut resp = StatusCode::SEE_OTHER.into_response();
        if let Ok(v) = HeaderValue::from_str(&format!("/console/login?next={next_q}")) {
            resp.headers_mut().insert(LOCATION, v);
        }
        return resp;
    }
    next.run(req).await
}

fn forbidden(message: &str) -> Response {
    (
        StatusCode::FORBIDDEN,
        axum::Json(serde_json::json!({ "error": message })),
    )
        .into_response()
}

/// CSRF check of every state-changing console and API request: with a session, the
/// session's token in the `X-CSRF-Token` header or the form field `csrf_token`; with an
/// API token, none (a browser never sends one on its own); with Basic credentials,
/// refused (a browser may resend cached Basic credentials on a forged request).
pub(crate) async fn require_csrf(req: Request, next: Next) -> Response {
    if matches!(
        *req.method(),
        Method::GET | Method::HEAD | Method::OPTIONS | Method::TRACE
    ) {
        return next.run(req).await;
    }
    let method = req.extensions().get::<Identity>().map(|i| i.method);
    match method {
        Some(AuthMethod::Bearer) => return next.run(req).await,
        Some(AuthMethod::Session) => {}
        _ => return forbidden(
            "state-changing requests need a console session and its CSRF token, or an API token",
        ),
    }
    let Some(expected) = req.extensions().get::<SessionRef>().map(|s| s.csrf.clone()) else {
        return forbidden("no session: log in again");
    };
    if csrf::from_header(req.headers()).is_some_and(|t| csrf::matches(&expected, t)) {
        return next.run(req).await;
    }
    // Look in the form body; put it back for the handler.
    let (parts, body) = req.into_parts();
    let Ok(bytes) = axum::body::to_bytes(body, MAX_FORM_BYTES).await else {
        return forbidden("the form is too large");
    };
    let found = url::form_urlencoded::parse(&bytes)
        .any(|(k, v)| k == csrf::FIELD && csrf::matches(&expected, &v));
    if !found {
        return forbidden("missing or wrong CSRF token: reload the page and try again");
    }
    next.run(Request::from_parts(parts, Body::from(bytes)))
        .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn basic_cache_is_keyed_and_expires() {
        let c = BasicCache::new().unwrap();
        let t = Timestamp::from_secs(1000);
        c.put("alice", "pw", Role::Admin, t);
        assert_eq!(c.get("alice", "pw", t), Some(("alice".into(), Role::Admin)));
        assert_eq!(c.get("alice", "pw2", t), None);
        assert_eq!(c.get("alicep", "w", t), None);
        assert_eq!(c.get("alice", "pw", t.plus_secs(BASIC_CACHE_SECS)), None);
        for i in 0..BASIC_CACHE_ENTRIES + 5 {
            c.put(&format!("u{i}"), "pw", Role::Viewer, t);
        }
        assert!(c.len() <= BASIC_CACHE_ENTRIES);
    }

    fn parsed(values: &[&[u8]]) -> Result<Option<AuthHeader<'static>>, String> {
        let mut h = HeaderMap::new();
        for v in values {
            h.append(AUTHORIZATION, HeaderValue::from_bytes(v).unwrap());
        }
        // Leak for the 'static lifetime of the answer (a test helper).
        let h: &'static HeaderMap = Box::leak(Box::new(h));
        parse_authorization(h)
    }

    #[test]
    fn authorization_is_accepted_in_one_form_only() {
        assert_eq!(parsed(&[]), Ok(None));
        assert_eq!(
            parsed(&[b"Bearer sky_a.b.c"]),
            Ok(Some(AuthHeader::SkyToken("sky_a.b.c")))
        );
        assert_eq!(
            parsed(&[b"bearer sky_x"]),
            Ok(Some(AuthHeader::SkyToken("sky_x")))
        );
        assert_eq!(
            parsed(&[b"Bearer shtok_x"]),
            Ok(Some(AuthHeader::Bearer("shtok_x")))
        );
        assert_eq!(
            parsed(&[b"Basic YTpi"]),
            Ok(Some(AuthHeader::Basic("YTpi")))
        );
        for bad in [
            &b"Bearer  sky_x"[..],
            b"Bearer sky_x ",
            b"Bearer\tsky_x",
            b"Bearer sky_x\t",
            b"Bearer",
            b"Bearer ",
            b"Bearer sky_\xc3\xa9",
            b"Token sky_x",
            b"Basic  YTpi",
            b" Bearer sky_x",
        ] {
            assert!(
                parsed(&[bad]).is_err(),
                "{:?} accepted",
                String::from_utf8_lossy(bad)
            );
        }
        assert!(parsed(&[b"Bearer sky_x", b"Bearer sky_y"]).is_err());
    }

    #[test]
    fn cookies_are_found_by_name() {
        let mut h = HeaderMap::new();
        h.insert(
            COOKIE,
            HeaderValue::from_static("a=1; skyhost_session=xyz; b=2"),
        );
        assert_eq!(cookie(&h, "skyhost_session"), Some("xyz"));
        assert_eq!(cookie(&h, "c"), None);
    }
}
