//! The gateway: every path the console and the JSON API do not take goes to SkyPilot's
//! own dashboard and REST API, with the caller's identity in SkyPilot's identity header.
//!
//! Placeholder until the gateway is built: [`router`] is the hook the web UI mounts as
//! its fallback; it answers 404 for now. The request reaching it has been through
//! [`super::auth::identify`], so an `Extension<Identity>` is present when (and only when)
//! the caller proved who they are.

use std::sync::Arc;

use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::Router;

use super::WebState;

/// The gateway's routes (mounted with `fallback_service`).
pub(crate) fn router(state: Arc<WebState>) -> Router {
    Router::new()
        .fallback(|| async {
            (
                StatusCode::NOT_FOUND,
                "not found: the console is at /console/, the JSON API at /api/v1/\n",
            )
                .into_response()
        })
        .with_state(state)
}
