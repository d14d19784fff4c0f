//! The single sign-on's pages: `/console/oidc/start` and `/console/oidc/callback` (the
//! flow itself is [`super::oidc`]).

use std::sync::Arc;

use axum::extract::{Query, State};
use axum::http::header::{LOCATION, SET_COOKIE};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use cookie::SameSite;
use serde::Deserialize;

use super::login::{cookie_header, fresh_login_page, logged_in, safe_next};
use super::oidc::{SsoError, STATE_COOKIE};
use super::session::Origin;
use crate::store::{AuditAction, AuditOutcome};
use crate::web_ui::state::WebState;

/// The state cookie's path: sent to the callback only.
const COOKIE_PATH: &str = "/console/oidc";

#[derive(Debug, Default, Deserialize)]
pub(crate) struct StartQuery {
    #[serde(default)]
    next: Option<String>,
}

fn not_configured() -> Response {
    (
        StatusCode::NOT_FOUND,
        "single sign-on is not configured here ([web_ui.oidc])\n",
    )
        .into_response()
}

/// The page of a sign-in that did not complete: the login page (password login and a
/// new try stay offered) with what went wrong.
fn failed(state: &WebState, e: &SsoError, next: &str) -> Response {
    let status = match e {
        SsoError::Provider { .. } => StatusCode::BAD_GATEWAY,
        SsoError::Refused(_) => StatusCode::UNAUTHORIZED,
    };
    let mut message = format!("Single sign-on did not complete: {e}.");
    if state.config.web_ui.password_login {
        message.push_str(" Logging in with a password still works.");
    }
    fresh_login_page(state, status, &message, next)
}

/// `GET /console/oidc/start`: on to the provider.
pub(crate) async fn start(
    State(state): State<Arc<WebState>>,
    Query(q): Query<StartQuery>,
) -> Response {
    let Some(sso) = &state.sso else {
        return not_configured();
    };
    let next = safe_next(q.next.as_deref());
    match sso.begin(next.clone(), state.clock.now()).await {
        Ok((url, bind)) => {
            let mut resp = StatusCode::SEE_OTHER.into_response();
            if let Ok(v) = HeaderValue::from_str(&url) {
                resp.headers_mut().insert(LOCATION, v);
            }
            let lifetime = super::oidc::PENDING_SECS as u64;
            if let Some(c) = cookie_header(
                &state,
                STATE_COOKIE,
                &bind,
                COOKIE_PATH,
                lifetime,
                SameSite::Lax,
            ) {
                resp.headers_mut().append(SET_COOKIE, c);
            }
            resp
        }
        Err(e) => {
            tracing::warn!(error = %e, "web UI: single sign-on cannot start");
            failed(&state, &e, &next)
        }
    }
}

#[derive(Debug, Default, Deserialize)]
pub(crate) struct CallbackQuery {
    #[serde(default)]
    code: Option<String>,
    #[serde(default)]
    state: Option<String>,
    #[serde(default)]
    error: Option<String>,
    #[serde(default)]
    error_description: Option<String>,
}

/// `GET /console/oidc/callback`: the provider's answer.
pub(crate) async fn callback(
    State(state): State<Arc<WebState>>,
    headers: HeaderMap,
    Query(q): Query<CallbackQuery>,
) -> Response {
    let Some(sso) = &state.sso else {
        return not_configured();
    };
    let home = "/console/";
    if let Some(err) = &q.error {
        let detail = q.error_description.as_deref().unwrap_or("no description");
        let e = SsoError::Refused(format!(
            "the identity provider answered {}: {}",
            crate::terminal::clean(err),
            crate::terminal::clean(detail)
        ));
        return failed(&state, &e, home);
    }
    let bound = super::cookie(&headers, STATE_COOKIE).unwrap_or("");
    let (Some(code), Some(given)) = (q.code, q.state) else {
        let e = SsoError::Refused("the provider's answer has no code or state".into());
        return failed(&state, &e, home);
    };
    if !crate::secret::matches(bound, &given) {
        let e = SsoError::Refused(
            "this sign-in did not start in this browser (or its cookie expired): sign in again"
                .into(),
        );
        return failed(&state, &e, home);
    }
    let (person, next) = match sso.finish(&given, code, state.clock.now()).await {
        Ok(done) => done,
        Err(e) => {
            tracing::warn!(error = %e, "web UI: single sign-on refused");
            return failed(&state, &e, home);
        }
    };
    let mut resp = match sso.role_of(&person.groups) {
        Some(_) => {
            let resp = logged_in(&state, &person.name, Origin::Sso(person.groups), &next).await;
            crate::web_ui::role_sync::pass_now(state.clone()).await;
            resp
        }
        None => no_access(&state, &person).await,
    };
    if let Some(c) = cookie_header(&state, STATE_COOKIE, "", COOKIE_PATH, 0, SameSite::Lax) {
        resp.headers_mut().append(SET_COOKIE, c);
    }
    resp
}

/// The page of a person the provider knows but no mapped group admits (403), audited.
async fn no_access(state: &Arc<WebState>, person: &super::oidc::Person) -> Response {
    let groups = if person.groups.is_empty() {
        "none".to_string()
    } else {
        person.groups.join(", ")
    };
    crate::web_ui::actions::audit_login(
        state,
        &person.name,
        AuditAction::Login,
        AuditOutcome::Refused,
        Some(format!(
            "single sign-on: no mapped group (groups: {groups})"
        )),
    )
    .await;
    let mapping = state.sso.as_ref().map(|s| s.mapping());
    let page = crate::web_ui::console::views::no_access_page(
        &person.name,
        &person.groups,
        mapping.as_ref(),
    );
    (
        StatusCode::FORBIDDEN,
        axum::response::Html(page.into_string()),
    )
        .into_response()
}
