//! The console: server-rendered HTML under `/console/`, usable without JavaScript (one
//! small script from `/console/static/` reloads list pages every 30 s). Every value is
//! escaped by the template engine (maud escapes all interpolations); nothing is
//! inlined: styles and the script come from our own static files, embedded in the binary.
//!
//! Pages: `/console/` (overview), `/console/clusters`, `/console/clusters/{name}`,
//! `/console/clusters/{name}/actions/{action}` (confirm, then POST), `/console/audit`,
//! `/console/autostop`, `/console/services`, `/console/config`; `/console/login`
//! (GET form, POST), `/console/logout` (POST).

mod pages;
mod redact;

use std::sync::Arc;

use axum::extract::{Query, State};
use axum::http::header::{CACHE_CONTROL, CONTENT_TYPE, LOCATION, SET_COOKIE};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Extension, Form, Router};
use maud::{html, Markup, DOCTYPE};
use serde::Deserialize;

use super::auth::{self, csrf, session, LoginError, SessionRef};
use super::identity::{AuthMethod, Identity};
use super::WebState;
use crate::store::{AuditAction, AuditOutcome};

const CSS: &str = include_str!("static/console.css");
const JS: &str = include_str!("static/refresh.js");

/// The context every page is drawn with.
pub(crate) struct Ctx {
    pub(crate) who: Identity,
    /// The session's CSRF token (forms are offered only with a session).
    pub(crate) csrf: Option<String>,
}

impl Ctx {
    fn from(who: Identity, session: Option<Extension<SessionRef>>) -> Ctx {
        Ctx {
            csrf: session.map(|Extension(s)| s.csrf),
            who,
        }
    }
}

/// The navigation, in order: (path, label).
const NAV: [(&str, &str); 6] = [
    ("/console/", "Overview"),
    ("/console/clusters", "Clusters"),
    ("/console/autostop", "Autostop"),
    ("/console/audit", "Audit log"),
    ("/console/services", "Services"),
    ("/console/config", "Config"),
];

/// A whole page: navigation, who is logged in, the logout button, the body.
pub(crate) fn layout(ctx: &Ctx, title: &str, current: &str, refresh: bool, body: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " · skypilot-host" }
                link rel="stylesheet" href="/console/static/console.css";
                // No favicon request (it would go to the gateway).
                link rel="icon" href="data:,";
                script src="/console/static/refresh.js" defer {}
            }
            body data-refresh=[refresh.then_some("30")] {
                header {
                    nav {
                        span.brand { "skypilot-host" }
                        @for (path, label) in NAV {
                            a href=(path) class=[(path == current).then_some("current")] { (label) }
                        }
                        a href="/dashboard/" { "SkyPilot dashboard" }
                    }
                    div.who {
                        span { (ctx.who.name) " (" (ctx.who.role.as_str()) ")" }
                        @if let Some(token) = &ctx.csrf {
                            form method="post" action="/console/logout" {
                                input type="hidden" name=(csrf::FIELD) value=(token);
                                button type="submit" { "Log out" }
                            }
                        }
                    }
                }
                main {
                    h1 { (title) }
                    (body)
                }
            }
        }
    }
}

/// An HTML response.
pub(crate) fn page(markup: Markup) -> Response {
    Html(markup.into_string()).into_response()
}

/// An error page with a status.
pub(crate) fn error_page(ctx: &Ctx, status: StatusCode, message: &str) -> Response {
    let body = html! { p.error { (message) } };
    (status, page(layout(ctx, "Error", "", false, body))).into_response()
}

async fn static_file(axum::extract::Path(file): axum::extract::Path<String>) -> Response {
    let (ctype, body) = match file.as_str() {
        "console.css" => ("text/css; charset=utf-8", CSS),
        "refresh.js" => ("text/javascript; charset=utf-8", JS),
        _ => return (StatusCode::NOT_FOUND, "no such file\n").into_response(),
    };
    (
        [
            (CONTENT_TYPE, HeaderValue::from_static(ctype)),
            (
                CACHE_CONTROL,
                HeaderValue::from_static("public, max-age=3600"),
            ),
        ],
        body,
    )
        .into_response()
}

#[derive(Debug, Default, Deserialize)]
struct LoginQuery {
    #[serde(default)]
    next: Option<String>,
    #[serde(default)]
    error: Option<String>,
}

/// Where to go after login: a local path only (never `//host` or a scheme).
fn safe_next(next: Option<&str>) -> String {
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

fn cookie_header(
    state: &WebState,
    name: &str,
    value: &str,
    path: &str,
    max_age: u64,
    same_site: &str,
) -> Option<HeaderValue> {
    let secure = if state.secure_cookies { "; Secure" } else { "" };
    HeaderValue::from_str(&format!(
        "{name}={value}; Path={path}; Max-Age={max_age}; HttpOnly; SameSite={same_site}{secure}"
    ))
    .ok()
}

fn login_page(message: Option<&str>, next: &str, token: &str) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { "Log in · skypilot-host" }
                link rel="stylesheet" href="/console/static/console.css";
                // No favicon request (it would go to the gateway).
                link rel="icon" href="data:,";
            }
            body.login {
                main {
                    h1 { "skypilot-host" }
                    @if let Some(m) = message { p.error { (m) } }
                    form method="post" action="/console/login" {
                        input type="hidden" name=(csrf::FIELD) value=(token);
                        input type="hidden" name="next" value=(next);
                        label { "User " input type="text" name="username" autocomplete="username" required autofocus; }
                        label { "Password " input type="password" name="password" autocomplete="current-password" required; }
                        button type="submit" { "Log in" }
                    }
                }
            }
        }
    }
}

async fn login_form(State(state): State<Arc<WebState>>, Query(q): Query<LoginQuery>) -> Response {
    let Ok(token) = super::users::random_token(32) else {
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
    let mut resp = page(login_page(message, &safe_next(q.next.as_deref()), &token));
    if let Some(c) = cookie_header(
        &state,
        csrf::LOGIN_COOKIE,
        &token,
        "/console/login",
        3600,
        "Strict",
    ) {
        resp.headers_mut().append(SET_COOKIE, c);
    }
    resp
}

#[derive(Debug, Deserialize)]
struct LoginForm {
    #[serde(default)]
    username: String,
    #[serde(default)]
    password: String,
    #[serde(default)]
    next: Option<String>,
    #[serde(default)]
    csrf_token: String,
}

async fn login_submit(
    State(state): State<Arc<WebState>>,
    headers: HeaderMap,
    connect: Option<Extension<axum::extract::ConnectInfo<std::net::SocketAddr>>>,
    form: Result<Form<LoginForm>, axum::extract::rejection::FormRejection>,
) -> Response {
    let Ok(Form(form)) = form else {
        return (StatusCode::BAD_REQUEST, "expected the login form\n").into_response();
    };
    let expected = auth::cookie(&headers, csrf::LOGIN_COOKIE).unwrap_or("");
    if !csrf::matches(expected, &form.csrf_token) {
        return (
            StatusCode::FORBIDDEN,
            page(login_page(
                Some("The login form expired or came from elsewhere: try again."),
                &safe_next(form.next.as_deref()),
                expected,
            )),
        )
            .into_response();
    }
    let client = connect.map_or(std::net::IpAddr::from([127, 0, 0, 1]), |Extension(c)| {
        c.0.ip()
    });
    let next = safe_next(form.next.as_deref());
    match state
        .check_password(&form.username, &form.password, client)
        .await
    {
        Ok((name, role)) => {
            let Ok((id, _)) = state.sessions.create(&name, role, state.clock.now()) else {
                return (
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "cannot start a session\n",
                )
                    .into_response();
            };
            super::actions::audit_login(&state, &name, AuditAction::Login, AuditOutcome::Ok, None)
                .await;
            let mut resp = StatusCode::SEE_OTHER.into_response();
            if let Ok(v) = HeaderValue::from_str(&next) {
                resp.headers_mut().insert(LOCATION, v);
            }
            let lifetime = state.config.web_ui.session_lifetime_secs;
            if let Some(c) = cookie_header(&state, session::COOKIE, &id, "/", lifetime, "Lax") {
                resp.headers_mut().append(SET_COOKIE, c);
            }
            if let Some(c) = cookie_header(
                &state,
                csrf::LOGIN_COOKIE,
                "",
                "/console/login",
                0,
                "Strict",
            ) {
                resp.headers_mut().append(SET_COOKIE, c);
            }
            resp
        }
        Err(LoginError::Invalid) => {
            if super::users::valid_name(&form.username) {
                super::actions::audit_login(
                    &state,
                    &form.username,
                    AuditAction::Login,
                    AuditOutcome::Failure,
                    Some(format!("wrong user name or password from {client}")),
                )
                .await;
            }
            (
                StatusCode::UNAUTHORIZED,
                page(login_page(
                    Some("Wrong user name or password."),
                    &next,
                    expected,
                )),
            )
                .into_response()
        }
        Err(LoginError::Limited(secs)) => {
            let mut resp = (
                StatusCode::TOO_MANY_REQUESTS,
                page(login_page(
                    Some(&format!("Too many failed logins: try again in {secs} s.")),
                    &next,
                    expected,
                )),
            )
                .into_response();
            resp.headers_mut()
                .insert(axum::http::header::RETRY_AFTER, HeaderValue::from(secs));
            resp
        }
        Err(LoginError::Internal) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            "the password check did not complete\n",
        )
            .into_response(),
    }
}

async fn logout(
    State(state): State<Arc<WebState>>,
    who: Extension<Identity>,
    session: Option<Extension<SessionRef>>,
) -> Response {
    if let Some(Extension(s)) = session {
        state.sessions.remove(&s.id);
        if who.method == AuthMethod::Session {
            super::actions::audit_login(
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
    resp.headers_mut()
        .insert(LOCATION, HeaderValue::from_static("/console/login"));
    if let Some(c) = cookie_header(&state, session::COOKIE, "", "/", 0, "Lax") {
        resp.headers_mut().append(SET_COOKIE, c);
    }
    resp
}

async fn to_console() -> Response {
    (StatusCode::SEE_OTHER, [(LOCATION, "/console/")]).into_response()
}

/// The console's routes: login and static files open, the rest behind the page guard.
pub(crate) fn router(state: Arc<WebState>) -> Router {
    let guarded = Router::new()
        .route("/console/", get(pages::overview))
        .route("/console/clusters", get(pages::clusters))
        .route("/console/clusters/{name}", get(pages::cluster))
        .route(
            "/console/clusters/{name}/actions/{action}",
            get(pages::confirm_action).post(pages::do_action),
        )
        .route("/console/audit", get(pages::audit))
        .route("/console/autostop", get(pages::autostop))
        .route("/console/services", get(pages::services))
        .route("/console/config", get(pages::config))
        .route("/console/logout", post(logout))
        .layer(axum::middleware::from_fn(auth::require_csrf))
        .layer(axum::middleware::from_fn(auth::require_page));
    let open = Router::new()
        .route("/console", get(to_console))
        .route("/console/login", get(login_form).post(login_submit))
        .route("/console/static/{file}", get(static_file));
    guarded
        .merge(open)
        .layer(axum::middleware::from_fn(auth::headers::security_headers))
        .with_state(state)
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

    #[test]
    fn markup_is_escaped() {
        let ctx = Ctx {
            who: Identity::named(
                "<b>x</b>",
                crate::web_ui::identity::Role::Viewer,
                AuthMethod::Session,
            ),
            csrf: Some("\"><script>".into()),
        };
        let s = layout(&ctx, "<t>", "", false, html! { p { "<i>" } }).into_string();
        assert!(
            !s.contains("<b>x</b>") && s.contains("&lt;b&gt;x&lt;/b&gt;"),
            "{s}"
        );
        assert!(!s.contains("\"><script>"), "{s}");
        assert!(!s.contains("<t>") && !s.contains("<i>"), "{s}");
    }
}
