//! CSRF protection. Every state-changing console or API request made with ambient
//! credentials (the session cookie) carries the session's CSRF token, in the form field
//! `csrf_token` or the header `X-CSRF-Token`. The login form, before any session exists,
//! uses a double-submit cookie: `GET /console/login` sets a random cookie and puts the
//! same value in the form.

/// The form field that carries the token.
pub(crate) const FIELD: &str = "csrf_token";
/// The header that carries the token (scripts, the auto-refresh JS).
pub(crate) const HEADER: &str = "x-csrf-token";
/// The login form's double-submit cookie.
pub(crate) const LOGIN_COOKIE: &str = "skyhost_login_csrf";

/// Compares two tokens in time independent of where they differ.
pub(crate) fn matches(expected: &str, given: &str) -> bool {
    crate::secret::matches(expected, given)
}

/// The token a request carries in its header, if any.
pub(crate) fn from_header(headers: &axum::http::HeaderMap) -> Option<&str> {
    headers.get(HEADER).and_then(|v| v.to_str().ok())
}
