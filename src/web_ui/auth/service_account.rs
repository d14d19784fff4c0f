//! SkyPilot service-account tokens (`Authorization: Bearer sky_…`), verified by SkyPilot
//! before the gateway lets a request through.
//!
//! SkyPilot checks such a token only when the header has exactly the form it splits on
//! (`Bearer`, one space, `sky_…`); any other form it takes for no token at all, and a
//! loopback request with no identity is its anonymous admin. So the web UI never passes
//! on a header it has not verified: it asks SkyPilot who the token is (`GET /users/role`
//! with `X-Skypilot-Auth-Mode: token`, which makes SkyPilot refuse anything but a valid
//! token), and keeps the answer — the service account's user id, name and role — for
//! [`CACHE_SECS`]. The gateway then forwards the token in the same canonical form with
//! the same mode header, so SkyPilot verifies it again on every request (a revoked token
//! fails at once, whatever this cache holds).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use crate::time::Timestamp;
use crate::web_ui::identity::Role;

/// How long a verified token's identity is reused.
pub(crate) const CACHE_SECS: f64 = 30.0;
/// Most tokens remembered.
const CACHE_ENTRIES: usize = 1024;
/// The header that makes SkyPilot verify the bearer token or refuse the request.
pub(crate) const AUTH_MODE_HEADER: &str = "x-skypilot-auth-mode";

/// A service account as SkyPilot verified it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Verified {
    /// SkyPilot's user id (`sa-…`).
    pub(crate) id: String,
    pub(crate) name: String,
    pub(crate) role: Role,
}

/// Why a token was not accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Refusal {
    /// SkyPilot refused it: its own words.
    Invalid(String),
    /// SkyPilot could not be asked (down, slow, an answer we do not understand).
    Unavailable(String),
}

pub(crate) struct ServiceAccounts {
    http: reqwest::Client,
    /// SkyPilot's `/users/role`.
    url: String,
    cache: Mutex<HashMap<[u8; 32], (Verified, Timestamp)>>,
}

/// SkyPilot's role name as ours; a principal with no role, or one we do not know, gets
/// the least (SkyPilot itself denies such a principal everything).
fn role_of(name: &str) -> Role {
    Role::parse(name).unwrap_or(Role::Viewer)
}

impl ServiceAccounts {
    /// Verifies tokens against the SkyPilot API server at `upstream` (`http://host:port`).
    pub(crate) fn new(upstream: &str, timeout: Duration) -> anyhow::Result<ServiceAccounts> {
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| anyhow::anyhow!("cannot build the HTTP client for {upstream}: {e}"))?;
        Ok(ServiceAccounts {
            http,
            url: format!("{}/users/role", upstream.trim_end_matches('/')),
            cache: Mutex::new(HashMap::new()),
        })
    }

    /// Who `token` (without `Bearer `) is, as SkyPilot says; from the cache when it was
    /// verified within [`CACHE_SECS`].
    pub(crate) async fn verify(&self, token: &str, now: Timestamp) -> Result<Verified, Refusal> {
        let key = crate::web_ui::users::token_digest(token);
        if let Some((v, until)) = self
            .cache
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&key)
        {
            if *until > now {
                return Ok(v.clone());
            }
        }
        let v = self.ask(token).await?;
        let mut cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
        if cache.len() >= CACHE_ENTRIES {
            cache.retain(|_, (_, until)| *until > now);
            if cache.len() >= CACHE_ENTRIES {
                cache.clear();
            }
        }
        cache.insert(key, (v.clone(), now.plus_secs(CACHE_SECS)));
        Ok(v)
    }

    async fn ask(&self, token: &str) -> Result<Verified, Refusal> {
        let answer = self
            .http
            .get(&self.url)
            .header(reqwest::header::AUTHORIZATION, format!("Bearer {token}"))
            .header(AUTH_MODE_HEADER, "token")
            .send()
            .await
            .map_err(|e| {
                Refusal::Unavailable(format!(
                    "cannot ask SkyPilot's API server ({}) to verify the service-account token: {e}",
                    self.url
                ))
            })?;
        let status = answer.status();
        let body = answer.bytes().await.map_err(|e| {
            Refusal::Unavailable(format!("{}: the answer broke off: {e}", self.url))
        })?;
        let json: Option<serde_json::Value> = serde_json::from_slice(&body).ok();
        if status == reqwest::StatusCode::UNAUTHORIZED || status == reqwest::StatusCode::FORBIDDEN {
            let detail = json
                .as_ref()
                .and_then(|j| j.get("detail"))
                .and_then(|d| d.as_str())
                .unwrap_or("refused")
                .chars()
                .take(200)
                .collect::<String>();
            return Err(Refusal::Invalid(format!(
                "SkyPilot refused the service-account token: {detail}"
            )));
        }
        if !status.is_success() {
            return Err(Refusal::Unavailable(format!(
                "{} answered HTTP {} to a token check",
                self.url,
                status.as_u16()
            )));
        }
        let field = |k: &str| {
            json.as_ref()
                .and_then(|j| j.get(k))
                .and_then(|v| v.as_str())
                .map(str::to_string)
        };
        let (Some(id), Some(name), Some(role)) = (field("id"), field("name"), field("role")) else {
            return Err(Refusal::Unavailable(format!(
                "{} answered a token check without id, name and role",
                self.url
            )));
        };
        // An empty id is SkyPilot's anonymous admin: never an identity we pass on.
        if id.is_empty() {
            return Err(Refusal::Invalid(
                "SkyPilot did not verify the service-account token (no user id)".to_string(),
            ));
        }
        Ok(Verified {
            id,
            name,
            role: role_of(&role),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_roles_are_the_least() {
        assert_eq!(role_of("admin"), Role::Admin);
        assert_eq!(role_of("user"), Role::User);
        assert_eq!(role_of(""), Role::Viewer);
        assert_eq!(role_of("Admin"), Role::Viewer);
    }
}
