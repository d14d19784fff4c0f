//! The handlers of CLI logins (see [`crate::web_ui::auth::cli_login`]): SkyPilot's CLI's
//! `/auth/authorize` (polling flow) and `/token` (manual flow), the poll
//! `/api/v1/auth/token`, and the console's list of CLI logins with revoke.

use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::header::{CACHE_CONTROL, LOCATION};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Form;
use serde::Deserialize;

use super::ctx::{Ctx, Page, PageError};
use super::views;
use crate::store::{AuditAction, AuditOutcome};
use crate::web_ui::auth::cli_login::{token_for, valid_challenge};
use crate::web_ui::identity::AuthMethod;
use crate::web_ui::state::WebState;

#[derive(Debug, Default, Deserialize)]
pub(crate) struct Challenge {
    #[serde(default)]
    code_challenge: Option<String>,
}

fn challenge(ctx: &Ctx, c: Option<String>) -> Result<String, PageError> {
    c.filter(|c| valid_challenge(c)).ok_or_else(|| {
        ctx.error(
            StatusCode::BAD_REQUEST,
            "Expected ?code_challenge= with 43 characters of base64url, as SkyPilot's CLI sends: run `sky api login -e URL` and open the link it prints.",
        )
    })
}

/// The session's CSRF token: only a person logged in to the console (not a script, not
/// another CLI) hands out CLI logins.
fn session_token(ctx: &Ctx) -> Result<String, PageError> {
    match (&ctx.csrf, ctx.who.method) {
        (Some(t), AuthMethod::Session) => Ok(t.clone()),
        _ => Err(ctx.error(
            StatusCode::FORBIDDEN,
            "A CLI login is handed out to a person logged in to the console: log in at /console/login first.",
        )),
    }
}

/// A new CLI login of the console's person, audited: its number and secret.
async fn make(
    ctx: &Ctx,
    session: Option<&crate::web_ui::auth::SessionRef>,
) -> Result<(i64, String), PageError> {
    let now = ctx.now();
    let origin = session
        .and_then(|s| ctx.state.sessions.get(&s.id, now))
        .map(|s| s.origin)
        .ok_or_else(|| ctx.error(StatusCode::FORBIDDEN, "Your session ended: log in again."))?;
    let lifetime = std::time::Duration::from_secs(ctx.state.config.web_ui.cli_login_lifetime_secs);
    let (id, secret) = ctx
        .state
        .cli_logins
        .create(
            ctx.state.db_path.clone(),
            &ctx.who.name,
            origin,
            lifetime.as_secs_f64(),
            now,
        )
        .await
        .map_err(|e| ctx.error(StatusCode::SERVICE_UNAVAILABLE, &format!("{e:#}")))?;
    crate::web_ui::actions::audit_login(
        &ctx.state,
        &ctx.who.name,
        AuditAction::Login,
        AuditOutcome::Ok,
        Some(format!("CLI login {id} made (sky api login)")),
    )
    .await;
    Ok((id, secret))
}

/// `GET /auth/authorize?code_challenge=C`: the page that authorizes a waiting CLI.
pub(crate) async fn authorize_page(ctx: Ctx, Query(q): Query<Challenge>) -> Page {
    let c = challenge(&ctx, q.code_challenge)?;
    let token = session_token(&ctx)?;
    Ok(views::cli_authorize(&ctx, &c, &token))
}

/// `POST /auth/authorize`: makes the CLI login and leaves its token for the CLI's poll.
pub(crate) async fn authorize(
    ctx: Ctx,
    session: Option<axum::Extension<crate::web_ui::auth::SessionRef>>,
    Form(q): Form<Challenge>,
) -> Page {
    let c = challenge(&ctx, q.code_challenge)?;
    session_token(&ctx)?;
    let (id, secret) = make(&ctx, session.as_deref()).await?;
    ctx.state
        .cli_logins
        .offer(&c, token_for(&ctx.who.name, &secret), ctx.now());
    Ok(views::cli_authorized(&ctx, id))
}

#[derive(Debug, Default, Deserialize)]
pub(crate) struct LocalPort {
    #[serde(default)]
    local_port: Option<String>,
}

/// The CLI's callback port (`local_port`, SkyPilot's localhost-callback flow): a port
/// number, or none.
fn local_port(ctx: &Ctx, q: LocalPort) -> Result<Option<u16>, PageError> {
    match q.local_port.as_deref().filter(|p| !p.is_empty()) {
        None => Ok(None),
        Some(p) => p
            .parse::<u16>()
            .ok()
            .filter(|p| *p > 0)
            .map(Some)
            .ok_or_else(|| {
                ctx.error(
                    StatusCode::BAD_REQUEST,
                    &format!(
                        "local_port={p:?}: expected the port number SkyPilot's CLI listens on"
                    ),
                )
            }),
    }
}

/// `GET /token[?local_port=P]`: the page of the manual and localhost-callback flows.
pub(crate) async fn token_page(ctx: Ctx, Query(q): Query<LocalPort>) -> Page {
    let port = local_port(&ctx, q)?;
    let token = session_token(&ctx)?;
    Ok(views::cli_token(&ctx, &token, port, None))
}

/// `POST /token`: a CLI login, its token shown once; with `local_port`, the page also
/// hands it to the CLI's callback on this computer (`http://localhost:P`, which the page's
/// Content-Security-Policy then allows, and nothing else).
pub(crate) async fn make_token(
    ctx: Ctx,
    session: Option<axum::Extension<crate::web_ui::auth::SessionRef>>,
    Form(q): Form<LocalPort>,
) -> Page {
    let port = local_port(&ctx, q)?;
    let csrf = session_token(&ctx)?;
    let (id, secret) = make(&ctx, session.as_deref()).await?;
    let token = token_for(&ctx.who.name, &secret);
    let mut resp = views::cli_token(&ctx, &csrf, port, Some((id, &token)));
    if let Some(p) = port {
        resp.extensions_mut()
            .insert(crate::web_ui::auth::headers::ConnectTo(format!(
                "http://localhost:{p}"
            )));
    }
    Ok(resp)
}

#[derive(Debug, Default, Deserialize)]
pub(crate) struct Verifier {
    #[serde(default)]
    code_verifier: Option<String>,
}

/// `GET /api/v1/auth/token?code_verifier=V`: SkyPilot's CLI's poll; open (the verifier
/// is the proof), 404 until the person authorized, the token once.
pub(crate) async fn poll(
    State(state): State<Arc<WebState>>,
    Query(q): Query<Verifier>,
) -> Response {
    let Some(v) = q.code_verifier.filter(|v| !v.is_empty() && v.len() <= 128) else {
        return (
            StatusCode::BAD_REQUEST,
            axum::Json(serde_json::json!({ "detail": "code_verifier is required" })),
        )
            .into_response();
    };
    match state.cli_logins.take(&v, state.clock.now()) {
        Some(token) => (
            [(CACHE_CONTROL, "no-store")],
            axum::Json(serde_json::json!({ "token": token })),
        )
            .into_response(),
        None => (
            StatusCode::NOT_FOUND,
            axum::Json(serde_json::json!({ "detail": "Session not found" })),
        )
            .into_response(),
    }
}

/// Whose CLI logins the page shows and may revoke: the person's own; every one for an
/// admin (`None`).
fn scope(ctx: &Ctx) -> Option<String> {
    (!ctx.who.is_admin()).then(|| ctx.who.name.clone())
}

/// `GET /console/cli-logins`.
pub(crate) async fn list(ctx: Ctx) -> Page {
    let (who, now) = (scope(&ctx), ctx.now());
    let rows = ctx
        .read(move |s| Ok(s.cli_logins(who.as_deref(), now)?))
        .await?;
    Ok(views::cli_logins(&ctx, &rows, now))
}

/// `POST /console/cli-logins/{id}/revoke`: ends the CLI login at once, audited.
pub(crate) async fn revoke(ctx: Ctx, Path(id): Path<i64>) -> Page {
    let (who, db) = (scope(&ctx), ctx.state.db_path.clone());
    let gone = crate::web_ui::state::write(db, move |s| s.delete_cli_login(id, who.as_deref()))
        .await
        .map_err(|e| {
            ctx.error(
                StatusCode::SERVICE_UNAVAILABLE,
                &format!("cannot revoke in the host database: {e}"),
            )
        })?;
    let Some(key) = gone else {
        return Err(ctx.error(
            StatusCode::NOT_FOUND,
            &format!("No CLI login {id} of yours."),
        ));
    };
    ctx.state.cli_logins.forget(&key);
    crate::web_ui::actions::audit_login(
        &ctx.state,
        &ctx.who.name,
        AuditAction::Logout,
        AuditOutcome::Ok,
        Some(format!("CLI login {id} revoked")),
    )
    .await;
    Ok((StatusCode::SEE_OTHER, [(LOCATION, "/console/cli-logins")]).into_response())
}
