//! Single sign-on with an OpenID Provider (`[web_ui.oidc]`): the authorization code flow
//! with PKCE, through the `openidconnect` crate (discovery, the provider's keys, the ID
//! token's signature, `iss`, `aud`, `exp` and `nonce`).
//!
//! - `GET /console/oidc/start?next=…`: discovery (every login, so a provider that is
//!   down gets our page, not the browser's, and rotated keys are picked up), then a
//!   redirect to the provider with a fresh state, nonce and PKCE challenge. The state is
//!   also set in a cookie scoped to `/console/oidc`, so the callback only completes in
//!   the browser that started the login.
//! - `GET /console/oidc/callback?code=…&state=…`: the state must be the cookie's and a
//!   pending login's (at most [`PENDING_SECS`] old, used once); the code is exchanged
//!   with the PKCE verifier, the ID token verified against the keys discovery gave, with
//!   the clock bounded by `clock_skew_secs`. The person's name is `username_claim`, their
//!   role the highest their `groups_claim` maps to; no mapped group, no access.
//!
//! Time is the web UI's clock (tests control it).

use std::collections::HashMap;
use std::path::Path;
use std::sync::Mutex;

use openidconnect::core::{
    CoreAuthDisplay, CoreAuthPrompt, CoreAuthenticationFlow, CoreErrorResponseType,
    CoreGenderClaim, CoreJsonWebKey, CoreJweContentEncryptionAlgorithm, CoreJwsSigningAlgorithm,
    CoreRevocableToken, CoreRevocationErrorResponse, CoreTokenIntrospectionResponse, CoreTokenType,
};
use openidconnect::{
    AdditionalClaims, AuthorizationCode, ClientId, ClientSecret, CsrfToken, EmptyExtraTokenFields,
    EndpointMaybeSet, EndpointNotSet, EndpointSet, IdTokenClaims, IdTokenFields, IssuerUrl, Nonce,
    PkceCodeChallenge, PkceCodeVerifier, ProviderMetadataWithLogout, RedirectUrl, Scope,
    StandardErrorResponse, StandardTokenResponse,
};
use serde::{Deserialize, Serialize};

use crate::config::OidcConfig;
use crate::time::Timestamp;
use crate::web_ui::identity::Role;

/// How long a login may stay at the provider before its callback is refused.
pub(crate) const PENDING_SECS: f64 = 600.0;
/// Most logins pending at once (older ones are dropped past it).
const MAX_PENDING: usize = 10_000;
/// The cookie that binds a pending login to the browser that started it.
pub(crate) const STATE_COOKIE: &str = "skyhost_sso";
/// Where the provider sends people back to, under `public_url`.
pub(crate) const CALLBACK_PATH: &str = "/console/oidc/callback";

/// Every claim of the ID token beyond the standard ones, for the configured name and
/// groups claims.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct OtherClaims {
    #[serde(flatten)]
    all: serde_json::Map<String, serde_json::Value>,
}
impl AdditionalClaims for OtherClaims {}

type Fields = IdTokenFields<
    OtherClaims,
    EmptyExtraTokenFields,
    CoreGenderClaim,
    CoreJweContentEncryptionAlgorithm,
    CoreJwsSigningAlgorithm,
>;
type TokenResponse = StandardTokenResponse<Fields, CoreTokenType>;
type OidcClient = openidconnect::Client<
    OtherClaims,
    CoreAuthDisplay,
    CoreGenderClaim,
    CoreJweContentEncryptionAlgorithm,
    CoreJsonWebKey,
    CoreAuthPrompt,
    StandardErrorResponse<CoreErrorResponseType>,
    TokenResponse,
    CoreTokenIntrospectionResponse,
    CoreRevocableToken,
    CoreRevocationErrorResponse,
    EndpointSet,
    EndpointNotSet,
    EndpointNotSet,
    EndpointNotSet,
    EndpointMaybeSet,
    EndpointMaybeSet,
>;

/// Why a single sign-on did not complete, as the person is told.
#[derive(Debug, thiserror::Error)]
pub(crate) enum SsoError {
    /// The provider could not be reached or answered nonsense (502).
    #[error("the identity provider {issuer} cannot be used right now: {detail}")]
    Provider { issuer: String, detail: String },
    /// The login itself is refused: a bad or replayed state, a refused code, an ID token
    /// that does not verify (401).
    #[error("{0}")]
    Refused(String),
}

/// A login on its way through the provider.
struct Pending {
    verifier: PkceCodeVerifier,
    nonce: Nonce,
    next: String,
    started: Timestamp,
    client: OidcClient,
}

/// The person the provider vouched for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Person {
    pub(crate) name: String,
    pub(crate) groups: Vec<String>,
}

/// The single sign-on of one web UI.
pub(crate) struct Sso {
    config: OidcConfig,
    secret: Option<ClientSecret>,
    redirect: RedirectUrl,
    /// Where the provider sends people after its logout: the console's login page.
    after_logout: String,
    http: reqwest::Client,
    pending: Mutex<HashMap<String, Pending>>,
}

impl Sso {
    /// The single sign-on of `config`: reads the client secret file (named in errors).
    pub(crate) fn new(config: &OidcConfig, public_url: &str) -> anyhow::Result<Sso> {
        let secret = match &config.client_secret_file {
            Some(p) => Some(ClientSecret::new(read_secret(p)?)),
            None => None,
        };
        let base = public_url.trim_end_matches('/');
        let redirect = RedirectUrl::new(format!("{base}{CALLBACK_PATH}")).map_err(|e| {
            anyhow::anyhow!("web_ui.public_url = {public_url:?}: not a base for the callback ({e})")
        })?;
        let http = reqwest::Client::builder()
            // The provider's answers are never followed elsewhere (no SSRF through them).
            .redirect(reqwest::redirect::Policy::none())
            .timeout(std::time::Duration::from_secs(config.timeout_secs))
            .build()
            .map_err(|e| anyhow::anyhow!("cannot make the HTTP client for web_ui.oidc: {e}"))?;
        Ok(Sso {
            config: config.clone(),
            secret,
            redirect,
            after_logout: format!("{base}/console/login"),
            http,
            pending: Mutex::new(HashMap::new()),
        })
    }

    /// The provider's name on the login page.
    pub(crate) fn display_name(&self) -> &str {
        &self.config.display_name
    }

    fn provider_error(&self, detail: impl std::fmt::Display) -> SsoError {
        SsoError::Provider {
            issuer: self.config.issuer.clone(),
            detail: detail.to_string(),
        }
    }

    /// Discovery: the provider's endpoints and keys, as of now.
    async fn discover(&self) -> Result<ProviderMetadataWithLogout, SsoError> {
        let issuer =
            IssuerUrl::new(self.config.issuer.clone()).map_err(|e| self.provider_error(e))?;
        ProviderMetadataWithLogout::discover_async(issuer, &self.http)
            .await
            .map_err(|e| self.provider_error(chain(&e)))
    }

    /// Starts a login that returns to `next`: the provider's URL to send the browser to,
    /// and the state to bind it with.
    pub(crate) async fn begin(
        &self,
        next: String,
        now: Timestamp,
    ) -> Result<(String, String), SsoError> {
        let metadata = self.discover().await?;
        let client = OidcClient::from_provider_metadata(
            metadata,
            ClientId::new(self.config.client_id.clone()),
            self.secret.clone(),
        )
        .set_redirect_uri(self.redirect.clone());
        let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
        let mut request = client
            .authorize_url(
                CoreAuthenticationFlow::AuthorizationCode,
                CsrfToken::new_random,
                Nonce::new_random,
            )
            .set_pkce_challenge(challenge);
        for s in self.config.scopes.iter().filter(|s| s.as_str() != "openid") {
            request = request.add_scope(Scope::new(s.clone()));
        }
        let (url, state, nonce) = request.url();
        let mut pending = self.pending.lock().unwrap_or_else(|e| e.into_inner());
        pending.retain(|_, p| now.secs_since(p.started) < PENDING_SECS);
        if pending.len() >= MAX_PENDING {
            pending.clear();
        }
        pending.insert(
            state.secret().clone(),
            Pending {
                verifier,
                nonce,
                next,
                started: now,
                client,
            },
        );
        Ok((url.to_string(), state.secret().clone()))
    }

    /// Finishes the login of `state` with the provider's `code`: the person and where to
    /// go next.
    pub(crate) async fn finish(
        &self,
        state: &str,
        code: String,
        now: Timestamp,
    ) -> Result<(Person, String), SsoError> {
        let pending = self
            .pending
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(state)
            .filter(|p| now.secs_since(p.started) < PENDING_SECS)
            .ok_or_else(|| {
                SsoError::Refused(
                    "this sign-in is unknown, was used already, or took longer than 10 minutes: sign in again".into(),
                )
            })?;
        let request = pending
            .client
            .exchange_code(AuthorizationCode::new(code))
            .map_err(|e| self.provider_error(format!("it announces no token endpoint ({e})")))?
            .set_pkce_verifier(pending.verifier);
        let response = request
            .request_async(&self.http)
            .await
            .map_err(|e| match &e {
                openidconnect::RequestTokenError::ServerResponse(r) => {
                    SsoError::Refused(format!("the identity provider refused the login code: {r}"))
                }
                _ => self.provider_error(format!("the token request failed: {}", chain(&e))),
            })?;
        let id_token = response.extra_fields().id_token().ok_or_else(|| {
            SsoError::Refused(
                "the identity provider sent no ID token (is `openid` among the client's scopes?)"
                    .into(),
            )
        })?;
        let skew = std::time::Duration::from_secs(self.config.clock_skew_secs).as_secs_f64();
        let verifier = pending
            .client
            .id_token_verifier()
            // `exp` is checked against our clock held back by the skew allowed.
            .set_time_fn(move || chrono_of(now.minus_secs(skew)))
            .set_issue_time_verifier_fn(move |iat| {
                let ahead = Timestamp::from_secs(iat.timestamp()).secs_since(now);
                if ahead > skew {
                    Err(format!("it was issued {ahead:.0} s in the future (the clocks differ by more than web_ui.oidc.clock_skew_secs)"))
                } else {
                    Ok(())
                }
            });
        let claims = id_token.claims(&verifier, &pending.nonce).map_err(|e| {
            SsoError::Refused(format!(
                "the identity provider's ID token is not valid: {}",
                chain(&e)
            ))
        })?;
        let person = self.person(claims)?;
        Ok((person, pending.next))
    }

    /// The name and groups of the verified `claims`.
    fn person(
        &self,
        claims: &IdTokenClaims<OtherClaims, CoreGenderClaim>,
    ) -> Result<Person, SsoError> {
        let want = self.config.username_claim.as_str();
        let name = claim_text(claims, want).ok_or_else(|| {
            SsoError::Refused(format!(
                "the ID token has no {want:?} claim (web_ui.oidc.username_claim): ask the provider's admins to include it, or pick another claim"
            ))
        })?;
        if !crate::web_ui::users::valid_name(&name) {
            return Err(SsoError::Refused(format!(
                "the {want:?} claim {:?} is not a usable name (letters, digits and . _ @ + -, starting with a letter or digit)",
                crate::terminal::clean(&name)
            )));
        }
        let groups = match claims
            .additional_claims()
            .all
            .get(&self.config.groups_claim)
        {
            Some(serde_json::Value::Array(a)) => a
                .iter()
                .filter_map(|v| v.as_str().map(str::to_string))
                .collect(),
            Some(serde_json::Value::String(s)) => vec![s.clone()],
            _ => Vec::new(),
        };
        Ok(Person { name, groups })
    }

    /// The role `groups` map to now: the highest of any group listed; `None` when no
    /// group is.
    pub(crate) fn role_of(&self, groups: &[String]) -> Option<Role> {
        role_of(&self.config, groups)
    }

    /// Which groups give which role, for the page of a person who has none.
    pub(crate) fn mapping(&self) -> [(Role, &[String]); 3] {
        [
            (Role::Admin, &self.config.admin_groups),
            (Role::User, &self.config.user_groups),
            (Role::Viewer, &self.config.viewer_groups),
        ]
    }

    /// The provider's logout URL (RP-initiated logout), when it announces one and can be
    /// reached; the browser comes back to the console's login page.
    pub(crate) async fn logout_url(&self) -> Option<String> {
        let metadata = self.discover().await.ok()?;
        let end = metadata
            .additional_metadata()
            .end_session_endpoint
            .clone()?;
        let back = openidconnect::PostLogoutRedirectUrl::new(self.after_logout.clone()).ok()?;
        Some(
            openidconnect::LogoutRequest::from(end)
                .set_client_id(ClientId::new(self.config.client_id.clone()))
                .set_post_logout_redirect_uri(back)
                .http_get_url()
                .to_string(),
        )
    }
}

/// The role `groups` map to under `config`: the highest of any group listed.
pub(crate) fn role_of(config: &OidcConfig, groups: &[String]) -> Option<Role> {
    let any = |list: &[String]| groups.iter().any(|g| list.contains(g));
    if any(&config.admin_groups) {
        Some(Role::Admin)
    } else if any(&config.user_groups) {
        Some(Role::User)
    } else if any(&config.viewer_groups) {
        Some(Role::Viewer)
    } else {
        None
    }
}

/// A string claim by name: the standard ones the crate parses, then any other.
fn claim_text(claims: &IdTokenClaims<OtherClaims, CoreGenderClaim>, name: &str) -> Option<String> {
    let standard = match name {
        "sub" => Some(claims.subject().to_string()),
        "preferred_username" => claims.preferred_username().map(|u| u.to_string()),
        "email" => claims.email().map(|e| e.to_string()),
        "name" => claims
            .name()
            .and_then(|n| n.get(None))
            .map(|n| n.to_string()),
        _ => None,
    };
    standard.or_else(|| {
        claims
            .additional_claims()
            .all
            .get(name)
            .and_then(|v| v.as_str())
            .map(str::to_string)
    })
}

/// An error with its sources, on one line.
fn chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

fn chrono_of(t: Timestamp) -> chrono::DateTime<chrono::Utc> {
    // Rounded down to a whole second: `whole_secs` is exact for any time that can occur.
    chrono::DateTime::from_timestamp(t.floor().whole_secs().unwrap_or(0), 0).unwrap_or_default()
}

/// The client secret from `path` (one line; named in errors).
fn read_secret(path: &Path) -> anyhow::Result<String> {
    let bytes = crate::files::read_regular(path, 64 * 1024).map_err(|e| {
        anyhow::anyhow!(
            "web_ui.oidc.client_secret_file = {}: it {e}",
            path.display()
        )
    })?;
    let text = String::from_utf8(bytes).map_err(|_| {
        anyhow::anyhow!(
            "web_ui.oidc.client_secret_file = {}: not UTF-8 text",
            path.display()
        )
    })?;
    let secret = text.trim();
    if secret.is_empty() {
        anyhow::bail!(
            "web_ui.oidc.client_secret_file = {}: is empty: expected the client secret the provider gave",
            path.display()
        );
    }
    Ok(secret.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn groups_map_to_the_highest_role_and_none_to_no_access() {
        let c = OidcConfig {
            admin_groups: vec!["ops".into()],
            user_groups: vec!["ml".into(), "research".into()],
            viewer_groups: vec!["finance".into()],
            ..OidcConfig::default()
        };
        let g = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(role_of(&c, &g(&["finance", "ml"])), Some(Role::User));
        assert_eq!(role_of(&c, &g(&["ml", "ops"])), Some(Role::Admin));
        assert_eq!(role_of(&c, &g(&["finance"])), Some(Role::Viewer));
        assert_eq!(role_of(&c, &g(&["Ops", "sales"])), None, "exact names only");
        assert_eq!(role_of(&c, &[]), None);
    }

    #[test]
    fn our_clock_reaches_the_verifier_as_is() {
        let t = Timestamp::from_secs_f64(1_796_480_000.75);
        assert_eq!(chrono_of(t).timestamp(), 1_796_480_000);
        assert_eq!(chrono_of(Timestamp::from_secs(5)).timestamp(), 5);
    }

    #[test]
    fn the_secret_file_is_read_and_checked() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("secret");
        std::fs::write(&p, "s3cr3t\n").unwrap();
        assert_eq!(read_secret(&p).unwrap(), "s3cr3t");
        std::fs::write(&p, "\n").unwrap();
        let e = read_secret(&p).unwrap_err().to_string();
        assert!(
            e.contains("client_secret_file") && e.contains("empty"),
            "{e}"
        );
        let e = read_secret(&dir.path().join("none"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("none"), "{e}");
    }
}
