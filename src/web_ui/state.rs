//! What the web UI's handlers share ([`WebState`]): the config, the users, the sessions,
//! the login limits, the client for SkyPilot, and the host database (read through a pool
//! of read-only connections; audit entries appended through [`write_audit`]).

use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use anyhow::Context;

use super::{auth, users};
use crate::config::Config;
use crate::store::Store;
use crate::time::Clock;

/// Password checks (argon2, ~19 MiB each) running at once.
const ARGON_SLOTS: usize = 4;
/// Read-only database connections kept for reuse.
const STORE_POOL: usize = 8;

/// Everything the web UI's handlers share: the console's, the API's and the gateway's.
pub(crate) struct WebState {
    pub(crate) config: Arc<Config>,
    /// The host database (`cluster_manager.database`).
    pub(crate) db_path: PathBuf,
    /// SkyPilot's API server, with the host's service-account token if configured.
    pub(crate) sky: crate::skypilot::Client,
    /// The users and tokens files as last read well (replaced when they change: see
    /// [`super::reload`]); read it through [`WebState::users`].
    pub(crate) users: std::sync::RwLock<Arc<users::Users>>,
    /// Why the files' latest change was not taken (the previous ones stay in force).
    pub(crate) users_problem: Mutex<Option<String>>,
    pub(crate) sessions: auth::session::Sessions,
    pub(crate) limiter: auth::rate_limit::LoginLimiter,
    pub(crate) basic_cache: auth::BasicCache,
    /// SkyPilot's verdict on service-account tokens, cached briefly.
    pub(crate) service_accounts: auth::service_account::ServiceAccounts,
    pub(crate) clock: Arc<dyn Clock>,
    /// Session cookies carry `Secure` (TLS here, or an https `public_url`).
    pub(crate) secure_cookies: bool,
    /// Verified against when the user is unknown, so that an unknown name takes as long
    /// as a wrong password.
    pub(crate) dummy_hash: String,
    pub(crate) argon_slots: tokio::sync::Semaphore,
    /// Single sign-on, when `[web_ui.oidc]` is set.
    pub(crate) sso: Option<auth::oidc::Sso>,
    /// CLI logins (`sky api login`) in memory, read through from the host database.
    pub(crate) cli_logins: auth::cli_login::CliLogins,
    stores: Mutex<Vec<Store>>,
}

impl WebState {
    /// The state for `config`: reads the users and tokens files.
    pub(crate) fn new(config: Config, clock: Arc<dyn Clock>) -> anyhow::Result<Arc<WebState>> {
        let w = &config.web_ui;
        let users = if w.users_file.is_none() && w.tokens_file.is_none() && w.oidc.is_some() {
            // Single sign-on and nobody in files: people come from the provider only.
            users::Users::load(None, None)?
        } else if w.users_file.is_none() && w.tokens_file.is_none() {
            // Nobody configured: one admin with a random password, kept in the state
            // directory (as Jenkins and Argo CD do); disabled once a users file is set.
            let path = users::initial_admin_path(&config.cluster_manager.database);
            let (password, made) = users::initial_admin_password(&path)?;
            tracing::warn!(
                file = %path.display(),
                "web UI: no users file: {} admin {:?} whose password is in that file (readable by this service's user and root); set web_ui.users_file to configure real users",
                if made { "made" } else { "using the generated" },
                users::INITIAL_ADMIN
            );
            users::Users::initial_admin(&password)?
        } else {
            let path = users::initial_admin_path(&config.cluster_manager.database);
            if path.exists() {
                tracing::info!(file = %path.display(), "web UI: a users file is configured; the generated admin is disabled");
            }
            users::Users::load(w.users_file.as_deref(), w.tokens_file.as_deref())?
        };
        let sky = crate::skypilot::Client::new(&config.skypilot)
            .context("cannot make the client for SkyPilot's API server")?;
        let secure_cookies = w.tls_cert_file.is_some()
            || w.public_url
                .as_deref()
                .is_some_and(|u| u.to_ascii_lowercase().starts_with("https://"));
        let sso = match (&w.oidc, &w.public_url) {
            (Some(o), Some(url)) => Some(auth::oidc::Sso::new(o, url)?),
            _ => None,
        };
        Ok(Arc::new(WebState {
            sso,
            cli_logins: auth::cli_login::CliLogins::new(),
            db_path: config.cluster_manager.database.clone(),
            sky,
            users: std::sync::RwLock::new(Arc::new(users)),
            users_problem: Mutex::new(None),
            sessions: auth::session::Sessions::new(
                w.session_lifetime_secs,
                auth::session::MAX_SESSIONS,
            ),
            limiter: auth::rate_limit::LoginLimiter::new(
                w.login_failures_per_client,
                w.login_failures_per_user,
                w.login_window_secs,
            ),
            basic_cache: auth::BasicCache::new()?,
            service_accounts: auth::service_account::ServiceAccounts::new(
                w.gateway.upstream_url(&config.skypilot),
                std::time::Duration::from_secs(config.skypilot.request_timeout_secs),
            )?,
            clock,
            secure_cookies,
            dummy_hash: users::hash_password(&users::random_token(16)?)?,
            argon_slots: tokio::sync::Semaphore::new(ARGON_SLOTS),
            stores: Mutex::new(Vec::new()),
            config: Arc::new(config),
        }))
    }

    /// The users and tokens in force.
    pub(crate) fn users(&self) -> Arc<users::Users> {
        self.users.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// The role of `name` logged in through `origin`, now: the users file's (while
    /// password login is on), or what the provider's groups map to; `None`: no access.
    pub(crate) fn role_of(
        &self,
        name: &str,
        origin: &auth::session::Origin,
    ) -> Option<crate::web_ui::identity::Role> {
        match origin {
            auth::session::Origin::UsersFile => {
                if !self.config.web_ui.password_login {
                    return None;
                }
                self.users().get(name).map(|u| u.role)
            }
            auth::session::Origin::Sso(groups) => self.sso.as_ref()?.role_of(groups),
        }
    }

    /// Runs `f` on a read-only connection to the host database, on a blocking thread.
    pub(crate) async fn read<T: Send + 'static>(
        self: &Arc<Self>,
        f: impl FnOnce(&Store) -> anyhow::Result<T> + Send + 'static,
    ) -> anyhow::Result<T> {
        let state = self.clone();
        tokio::task::spawn_blocking(move || {
            let pooled = state.stores.lock().unwrap_or_else(|e| e.into_inner()).pop();
            let store = match pooled {
                Some(s) if !s.file_replaced() => s,
                _ => Store::open_read_only(&state.db_path)?,
            };
            let out = f(&store);
            if out.is_ok() {
                let mut pool = state.stores.lock().unwrap_or_else(|e| e.into_inner());
                if pool.len() < STORE_POOL {
                    pool.push(store);
                }
            }
            out
        })
        .await
        .map_err(|e| anyhow::anyhow!("the database read did not complete: {e}"))?
    }
}

/// Appends `entries` to the audit table of the host database at `db`, on a blocking
/// thread. A failure is logged, never returned: what was audited has already happened.
pub(crate) async fn write_audit(db: PathBuf, entries: Vec<crate::store::AuditEntry>) {
    if entries.is_empty() {
        return;
    }
    let written = write(db, move |store| {
        entries
            .iter()
            .try_for_each(|e| store.append_audit(e).map(drop))
    })
    .await;
    if let Err(e) = written {
        tracing::error!(error = %e, "web UI: cannot write the audit entry");
    }
}

/// Runs `f` on a writer of the host database at `db`, on a blocking thread: the web UI's
/// one way to write (audit entries, sessions, CLI logins); what `f` returns.
pub(crate) async fn write<T: Send + 'static>(
    db: PathBuf,
    f: impl FnOnce(&Store) -> crate::store::Result<T> + Send + 'static,
) -> Result<T, String> {
    match tokio::task::spawn_blocking(move || f(&Store::open_writer(&db)?)).await {
        Ok(done) => done.map_err(|e| e.to_string()),
        Err(e) => Err(format!("the write did not complete: {e}")),
    }
}
