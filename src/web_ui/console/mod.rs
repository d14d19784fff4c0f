//! The console: server-rendered HTML under `/console/`, usable without JavaScript (one
//! small script from `/console/static/` reloads list pages every 30 s). Every value is
//! escaped by the template engine (maud escapes all interpolations); nothing is
//! inlined: styles and the script come from our own static files, embedded in the binary.
//!
//! Pages: `/console/` (overview), `/console/clusters`, `/console/clusters/{name}`,
//! `/console/jobs`, `/console/jobs/{id}` (managed jobs), `/console/serve`,
//! `/console/serve/{name}` (SkyServe services),
//! `/console/clusters/{name}/actions/{action}` (confirm, then POST), `/console/audit`,
//! `/console/autostop`, `/console/services`, `/console/config`; `/console/login`
//! (GET form, POST), `/console/logout` (POST), served by [`auth::login`].
//!
//! Layers: [`ctx`] (what a page starts from, how it fails), [`data`] (what it reads),
//! [`views`] (how it draws), [`pages`] (the handlers joining them).

mod cli;
pub(crate) mod ctx;
pub(crate) mod data;
mod pages;
mod redact;
pub(crate) mod views;

use std::sync::Arc;

use axum::http::header::{CACHE_CONTROL, CONTENT_TYPE, LOCATION};
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;

use super::auth::{self, login};
use crate::web_ui::state::WebState;

const CSS: &str = include_str!("static/console.css");
const JS: &str = include_str!("static/refresh.js");

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
        .route("/console/jobs", get(pages::jobs))
        .route("/console/jobs/{id}", get(pages::job))
        .route("/console/serve", get(pages::services_page))
        .route("/console/serve/{name}", get(pages::service))
        .route("/console/audit", get(pages::audit))
        .route("/console/autostop", get(pages::autostop))
        .route("/console/services", get(pages::services))
        .route("/console/config", get(pages::config))
        .route("/console/logout", post(login::logout))
        .route("/console/cli-logins", get(cli::list))
        .route("/console/cli-logins/{id}/revoke", post(cli::revoke))
        .route(
            "/auth/authorize",
            get(cli::authorize_page).post(cli::authorize),
        )
        .route("/token", get(cli::token_page).post(cli::make_token))
        .layer(axum::middleware::from_fn(auth::require_csrf))
        .layer(axum::middleware::from_fn(auth::require_page));
    let open = Router::new()
        .route("/console", get(to_console))
        .route(
            "/console/login",
            get(login::login_form).post(login::login_submit),
        )
        .route("/console/static/{file}", get(static_file))
        .route("/console/oidc/start", get(auth::sso::start))
        .route("/console/oidc/callback", get(auth::sso::callback))
        .route("/api/v1/auth/token", get(cli::poll));
    guarded
        .merge(open)
        .layer(axum::middleware::from_fn(auth::headers::security_headers))
        .with_state(state)
}
