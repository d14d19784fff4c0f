//! Logging in and out of the console: the login form with its CSRF cookie, the password
//! check (shared with Basic credentials, within the rate limits), the session cookie.

use std::net::IpAddr;
use std::sync::Arc;

use axum::extract::{Query, State};
use axum::http::header::{LOCATION, RETRY_AFTER, SET_COOKIE};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use axum::{Extension, Form};
use cookie::{Cookie, SameSite};
use serde::Deserialize;

use super::session::Origin;
use super::{csrf, session, SessionRef};
use crate::store::{AuditAction, AuditOutcome};
use crate::web_ui::console::views::login_page;
use crate::web_ui::identity::{AuthMethod, Identity, Role};
use crate::web_ui::state::WebState;

/// Why a login failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum LoginError {
    /// Wrong name or password.
    Invalid,
    /// Too many failures: retry after this many seconds.
    Limited(u64),
    /// The check itself could not run.
    Internal,
    /// Password login is turned off (`web_ui.password_login = false`).
    Off,
}

/// Checks a name and password (console login or Basic auth), within the rate limits.
pub(crate) async fn check_password(
    state: &Arc<WebState>,
    name: &str,
    password: &str,
    client: IpAddr,
) -> Result<(String, Role), LoginError> {
    if !state.config.web_ui.password_login {
        return Err(LoginError::Off);
    }
    let now = state.clock.now();
    if let Some(hit) = state.basic_cache.get(name, password, now) {
        return Ok(hit);
    }
    state
        .limiter
        .check(client, name, now)
        .map_err(LoginError::Limited)?;
    let user = state.users().get(name).cloned();
    let hash = user
        .as_ref()
        .map_or_else(|| state.dummy_hash.clone(), |u| u.hash.clone());
    let password_owned = password.to_string();
    // argon2 takes ~19 MiB and tens of milliseconds: bounded, on blocking threads.
    let Ok(_slot) = state.argon_slots.acquire().await else {
        return Err(LoginError::Internal);
    };
    let ok = tokio::task::spawn_blocking(move || {
        crate::web_ui::users::verify_password(&hash, &password_owned)
    })
    .await
    .map_err(|_| LoginError::Internal)?;
    let now = state.clock.now();
    match user {
        Some(u) if ok => {
            state.limiter.success(name);
            state.basic_cache.put(name, password, u.role, now);
            Ok((u.name, u.role))
        }
        _ => {
            state.limiter.failure(client, name, now);
            tracing::info!(user = %crate::terminal::clean(name), %client, "web UI: failed login");
            Err(LoginError::Invalid)
        }
    }
}

/// Where to go after login: a local path only (never `//host` or a scheme).
pub(crate) fn safe_next(next: Option<&str>) -> String {
    match next {
        Some(n)
            if n.starts_with('/')
                && !n.starts_with("//")
                && !n.contains('\\')
                && !n.chars().any(char::is_control) =>
        {
            n.to_string()
        }
        _ => "/console/".to_string(),
    }
}

/// A `Set-Cookie` value: HttpOnly, `Secure` when the console is reached over https,
/// `max_age` seconds (0 removes the cookie).
pub(crate) fn cookie_header(
    state: &WebState,
    name: &str,
    value: &str,
    path: &str,
    max_age: u64,
    same_site: SameSite,
) -> Option<HeaderValue> {
    let c = Cookie::build((name, value))
        .path(path)
        .max_age(cookie::time::Duration::seconds(
            i64::try_from(max_age).unwrap_or(i64::MAX),
        ))
        .http_only(true)
        .same_site(same_site)
        .secure(state.secure_cookies)
        .build();
    HeaderValue::from_str(&c.to_string()).ok()
}

/// The login form's CSRF cookie (`max_age` 0 removes it).
fn login_cookie(state: &WebState, token: &str, max_age: u64) -> Option<HeaderValue> {
    cookie_header(
        state,
        csrf::LOGIN_COOKIE,
        token,
        "/console/login",
        max_age,
        SameSite::Strict,
    )
}

/// What the login page offers: single sign-on (its name), the password form.
pub(crate) struct LoginOffer<'a> {
    pub(crate) sso: Option<&'a str>,
    pub(crate) password: bool,
}

fn offer(state: &WebState) -> LoginOffer<'_> {
    LoginOffer {
        sso: state.sso.as_ref().map(|s| s.display_name()),
        password: state.config.web_ui.password_login,
    }
}

/// The login page with `status`.
fn login_response(
    state: &WebState,
    status: StatusCode,
    message: Option<&str>,
    next: &str,
    token: &str,
) -> Response {
    let page = login_page(message, next, token, &offer(state));
    (status, Html(page.into_string())).into_response()
}

/// The login page with `status` and `message` and a fresh form token (for the pages of
/// a single sign-on that did not complete).
pub(crate) fn fresh_login_page(
    state: &WebState,
    status: StatusCode,
    message: &str,
    next: &str,
) -> Response {
    let Ok(token) = crate::web_ui::users::random_token(32) else {
        return (status, format!("{message}\n")).into_response();
    };
    let mut resp = login_response(state, status, Some(message), next, &token);
    if let Some(c) = login_cookie(state, &token, 3600) {
        resp.headers_mut().append(SET_COOKIE, c);
    }
    resp
}

#[derive(Debug, Default, Deserialize)]
pub(crate) struct LoginQuery {
    #[serde(default)]
    next: Option<String>,
    #[serde(default)]
    error: Option<String>,
}

pub(crate) async fn login_form(
    State(state): State<Arc<WebState>>,
    Query(q): Query<LoginQuery>,
) -> Response {
    let Ok(token) = crate::web_ui::users::random_token(32) else {
        return (
            StatusCode::INTERNAL_SERVER_ERROR,
            "cannot read random bytes\n",
        )
            .into_response();
    };
    let message = match q.error.as_deref() {
        Some("expired") => Some("Your session ended: log in again."),
        _ => None,
    };
    let next = safe_next(q.next.as_deref());
    let mut resp = login_response(&state, StatusCode::OK, message, &next, &token);
    if let Some(c) = login_cookie(&state, &token, 3600) {
        resp.headers_mut().append(SET_COOKIE, c);
    }
    resp
}

#[derive(Debug, Deserialize)]
pub(crate) struct LoginForm {
    #[serde(default)]
    username: String,
    #[serde(default)]
    password: String,
    #[serde(default)]
    next: Option<String>,
    #[serde(default)]
    csrf_token: String,
}

pub(crate) async fn login_submit(
    State(state): State<Arc<WebState>>,
    headers: HeaderMap,
    connect: Option<Extension<axum::extract::ConnectInfo<std::net::SocketAddr>>>,
    form: Result<Form<LoginForm>, axum::extract::rejection::FormRejection>,
) -> Response {
    let Ok(Form(form)) = form else {
        return (StatusCode::BAD_REQUEST, "expected the login form\n").into_response();
    };
    let expected = super::cookie(&headers, csrf::LOGIN_COOKIE).unwrap_or("");
    let next = safe_next(form.next.as_deref());
    if !csrf::matches(expected, &form.csrf_token) {
        let m = "The login form expired or came from elsewhere: try again.";
        return login_response(&state, StatusCode::FORBIDDEN, Some(m), &next, expected);
    }
    let client = connect.map_or(std::net::IpAddr::from([127, 0, 0, 1]), |Extension(c)| {
        c.0.ip()
    });
    match check_password(&state, &form.username, &form.password, client).await {
        Ok((name, _)) => logged_in(&state, &name, Origin::UsersFile, &next).await,
        Err(LoginError::Invalid) => {
            if crate::web_ui::users::valid_name(&form.username) {
                let detail = format!("wrong user name or password from {client}");
                audit(
                    &state,
                    &form.username,
                    AuditAction::Login,
                    AuditOutcome::Failure,
                    Some(detail),
                )
                .await;
            }
            let m = "Wrong user name or password.";
            login_response(&state, StatusCode::UNAUTHORIZED, Some(m), &next, expected)
        }
        Err(LoginError::Limited(secs)) => {
            let m = format!("Too many failed logins: try again in {secs} s.");
            let mut resp = login_response(
                &state,
                StatusCode::TOO_MANY_REQUESTS,
                Some(&m),
                &next,
                expected,
            );
            resp.headers_mut()
                .insert(RETRY_AFTER, HeaderValue::from(secs));
            resp
        }
        Err(LoginError::Internal) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            "the password check did not complete\n",
        )
            .into_response(),
        Err(LoginError::Off) => {
            let m = "Password login is turned off here: use single sign-on.";
            login_response(&state, StatusCode::FORBIDDEN, Some(m), &next, expected)
        }
    }
}

async fn audit(
    state: &Arc<WebState>,
    name: &str,
    action: AuditAction,
    outcome: AuditOutcome,
    detail: Option<String>,
) {
    crate::web_ui::actions::audit_login(state, name, action, outcome, detail).await;
}

/// A new session for `name` (logged in through `origin`): audited, its cookie set, the
/// login form's cookie removed, and on to `next`.
pub(crate) async fn logged_in(
    state: &Arc<WebState>,
    name: &str,
    origin: Origin,
    next: &str,
) -> Response {
    let now = state.clock.now();
    let how = match &origin {
        Origin::UsersFile => None,
        Origin::Sso(g) => Some(format!("single sign-on; groups: {}", g.join(", "))),
    };
    let Ok((id, started)) = state.sessions.create(name, origin, now) else {
        return (
            StatusCode::INTERNAL_SERVER_ERROR,
            "cannot start a session\n",
        )
            .into_response();
    };
    // Written before the answer: a restart right after keeps the login.
    session::save(state.db_path.clone(), &id, &started, now).await;
    audit(state, name, AuditAction::Login, AuditOutcome::Ok, how).await;
    let mut resp = StatusCode::SEE_OTHER.into_response();
    if let Ok(v) = HeaderValue::from_str(next) {
        resp.headers_mut().insert(LOCATION, v);
    }
    let lifetime = state.config.web_ui.session_lifetime_secs;
    let cookies = [
        cookie_header(state, session::COOKIE, &id, "/", lifetime, SameSite::Lax),
        login_cookie(state, "", 0),
    ];
    for c in cookies.into_iter().flatten() {
        resp.headers_mut().append(SET_COOKIE, c);
    }
    resp
}

pub(crate) async fn logout(
    State(state): State<Arc<WebState>>,
    who: Extension<Identity>,
    session: Option<Extension<SessionRef>>,
) -> Response {
    let mut to = "/console/login".to_string();
    if let Some(Extension(s)) = session {
        let now = state.clock.now();
        let sso = state
            .sessions
            .get(&s.id, now)
            .is_some_and(|x| matches!(x.origin, Origin::Sso(_)));
        if let (true, Some(p)) = (sso, state.sso.as_ref()) {
            if let Some(url) = p.logout_url().await {
                to = url;
            }
        }
        state.sessions.remove(&s.id);
        session::forget(state.db_path.clone(), &s.id).await;
        if who.method == AuthMethod::Session {
            audit(
                &state,
                &who.name,
                AuditAction::Logout,
                AuditOutcome::Ok,
                None,
            )
            .await;
        }
    }
    let mut resp = StatusCode::SEE_OTHER.into_response();
    if let Ok(v) = HeaderValue::from_str(&to) {
        resp.headers_mut().insert(LOCATION, v);
    }
    if let Some(c) = cookie_header(&state, session::COOKIE, "", "/", 0, SameSite::Lax) {
        resp.headers_mut().append(SET_COOKIE, c);
    }
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn next_stays_local() {
        assert_eq!(
            safe_next(Some("/console/clusters?x=1")),
            "/console/clusters?x=1"
        );
        assert_eq!(safe_next(Some("/dashboard/")), "/dashboard/");
        for bad in [
            "//evil.org/",
            "https://evil.org/",
            "/\\evil",
            "javascript:x",
            "",
        ] {
            assert_eq!(safe_next(Some(bad)), "/console/", "{bad}");
        }
        assert_eq!(safe_next(None), "/console/");
    }
}
