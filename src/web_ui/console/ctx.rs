//! What every console page starts from: the [`Ctx`] extractor (who is logged in, the
//! session's CSRF token, the shared state) and [`PageError`], the one way a page fails.

use std::sync::Arc;

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

use super::views;
use crate::store::Store;
use crate::time::Timestamp;
use crate::web_ui::auth::SessionRef;
use crate::web_ui::identity::Identity;
use crate::web_ui::state::WebState;

/// The context every page is drawn with.
pub(crate) struct Ctx {
    pub(crate) who: Identity,
    /// The session's CSRF token (forms are offered only with a session).
    pub(crate) csrf: Option<String>,
    pub(crate) state: Arc<WebState>,
}

/// A page that could not be drawn: an error page with its status, already rendered.
pub(crate) struct PageError(Box<Response>);

impl IntoResponse for PageError {
    fn into_response(self) -> Response {
        *self.0
    }
}

/// What a page handler returns.
pub(crate) type Page = Result<Response, PageError>;

impl FromRequestParts<Arc<WebState>> for Ctx {
    type Rejection = PageError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &Arc<WebState>,
    ) -> Result<Ctx, PageError> {
        // The page guard (`auth::require_page`) runs first: a page without an identity
        // is a routing mistake, answered as one.
        let Some(who) = parts.extensions.get::<Identity>().cloned() else {
            return Err(PageError(Box::new(
                (
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "a console page was reached without a login\n",
                )
                    .into_response(),
            )));
        };
        Ok(Ctx {
            who,
            csrf: parts.extensions.get::<SessionRef>().map(|s| s.csrf.clone()),
            state: state.clone(),
        })
    }
}

impl Ctx {
    /// The error page for `status` and `message`.
    pub(crate) fn error(&self, status: StatusCode, message: &str) -> PageError {
        PageError(Box::new(views::error_page(self, status, message)))
    }

    /// The clock's now.
    pub(crate) fn now(&self) -> Timestamp {
        self.state.clock.now()
    }

    /// Runs `f` on the host database (read-only); a 503 page when it cannot be read.
    pub(crate) async fn read<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Store) -> anyhow::Result<T> + Send + 'static,
    ) -> Result<T, PageError> {
        self.state.read(f).await.map_err(|e| {
            self.error(
                StatusCode::SERVICE_UNAVAILABLE,
                &format!("The host database cannot be read: {e:#}"),
            )
        })
    }
}
