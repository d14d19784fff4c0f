//! `skypilot-host web-ui`: the host's console and the authenticated front door to SkyPilot.
//!
//! Routes (every one behind [`auth::identify`]):
//! - `/healthz`: unauthenticated liveness.
//! - `/console/…`: the console (server-rendered HTML; [`console`]); `/console/login` and
//!   `/console/static/…` are open, every other page needs a login.
//! - `/api/v1/…`: the JSON API ([`api`]), same auth, 401 without it.
//! - everything else: the gateway to SkyPilot's dashboard and REST API ([`gateway`]).
//!
//! Parts: [`users`] (users and tokens files, hash-password), [`auth`] (identification,
//! sessions, CSRF, security headers, login rate limits), [`console`], [`api`],
//! [`actions`] (stop, down, autostop through SkyPilot, audited), [`gateway`].

pub(crate) mod actions;
pub(crate) mod api;
pub(crate) mod auth;
pub(crate) mod console;
pub mod gateway;
pub mod identity;
pub(crate) mod ownership;
pub(crate) mod role_sync;
pub(crate) mod rules;
pub(crate) mod users;

use crate::runner::Serving;
use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use anyhow::Context;
use axum::routing::get;
use axum::Router;
use tokio::net::TcpListener;

use crate::config::Config;
use crate::store::Store;
use crate::time::{Clock, SystemClock};

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
    pub(crate) users: users::Users,
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
    stores: Mutex<Vec<Store>>,
}

impl WebState {
    /// The state for `config`: reads the users and tokens files.
    pub(crate) fn new(config: Config, clock: Arc<dyn Clock>) -> anyhow::Result<Arc<WebState>> {
        let w = &config.web_ui;
        let users = if w.users_file.is_none() && w.tokens_file.is_none() {
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
        Ok(Arc::new(WebState {
            db_path: config.cluster_manager.database.clone(),
            sky,
            users,
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
    let written = tokio::task::spawn_blocking(move || {
        let store = Store::open_writer(&db)?;
        for e in &entries {
            store.append_audit(e)?;
        }
        Ok::<_, crate::store::StoreError>(())
    })
    .await;
    match written {
        Ok(Ok(())) => {}
        Ok(Err(e)) => tracing::error!(error = %e, "web UI: cannot write the audit entry"),
        Err(e) => tracing::error!(error = %e, "web UI: the audit write did not complete"),
    }
}

/// Refuses to listen beyond loopback with nobody able to log in.
pub(crate) fn check_listen(
    listen: SocketAddr,
    users: &users::Users,
    config: &Config,
) -> anyhow::Result<()> {
    if listen.ip().is_loopback() || users.user_count() > 0 || users.token_count() > 0 {
        return Ok(());
    }
    let file = config
        .web_ui
        .users_file
        .as_ref()
        .map_or_else(|| "(not set)".to_string(), |p| p.display().to_string());
    anyhow::bail!(
        "web_ui.listen = {listen} reaches beyond loopback, and no user is configured (web_ui.users_file = {file}): \
         refusing to serve an open door. Add a user with \
         `skypilot-host hash-password NAME --role admin >> /etc/skypilot-host/users` \
         (a file outside the Nix store), set web_ui.users_file to it, and start again; \
         or listen on 127.0.0.1"
    )
}

async fn healthz() -> &'static str {
    "ok\n"
}

/// Every route of the web UI, behind [`auth::identify`].
pub(crate) fn router(state: Arc<WebState>, gateway: gateway::Gateway) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .merge(console::router(state.clone()))
        .merge(api::router(state.clone()))
        .fallback_service(gateway.router())
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            auth::identify,
        ))
        .layer(axum::middleware::from_fn_with_state(
            Arc::new(auth::host::AllowedHosts::from_config(&state.config)),
            auth::host::check_host,
        ))
}

/// The rustls acceptor for `web_ui.tls_cert_file` and `web_ui.tls_key_file`.
fn tls_acceptor(config: &Config) -> anyhow::Result<Option<tokio_rustls::TlsAcceptor>> {
    use tokio_rustls::rustls::pki_types::pem::PemObject;
    use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let (Some(cert), Some(key)) = (&config.web_ui.tls_cert_file, &config.web_ui.tls_key_file)
    else {
        return Ok(None);
    };
    let read = |path: &PathBuf, key: &str| {
        crate::files::read_regular(path, 1024 * 1024)
            .map_err(|e| anyhow::anyhow!("{key} = {}: it {e}", path.display()))
    };
    let cert_pem = read(cert, "web_ui.tls_cert_file")?;
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&cert_pem)
        .collect::<Result<_, _>>()
        .map_err(|e| {
            anyhow::anyhow!(
                "web_ui.tls_cert_file = {}: not PEM certificates ({e})",
                cert.display()
            )
        })?;
    if certs.is_empty() {
        anyhow::bail!(
            "web_ui.tls_cert_file = {}: holds no certificate: expected -----BEGIN CERTIFICATE----- blocks",
            cert.display()
        );
    }
    let key_pem = read(key, "web_ui.tls_key_file")?;
    let private = PrivateKeyDer::from_pem_slice(&key_pem).map_err(|e| {
        anyhow::anyhow!(
            "web_ui.tls_key_file = {}: no PEM private key ({e})",
            key.display()
        )
    })?;
    let provider = Arc::new(tokio_rustls::rustls::crypto::ring::default_provider());
    let server = tokio_rustls::rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .context("TLS: no protocol version available")?
        .with_no_client_auth()
        .with_single_cert(certs, private)
        .map_err(|e| {
            anyhow::anyhow!(
                "web_ui.tls_cert_file = {} and web_ui.tls_key_file = {}: {e}",
                cert.display(),
                key.display()
            )
        })?;
    let mut server = server;
    server.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Some(tokio_rustls::TlsAcceptor::from(Arc::new(server))))
}

/// The shared server's limits for the web UI: the gateway's streams (SkyPilot's logs
/// heartbeat every 30 s), uploads and websockets may be quiet for
/// `web_ui.gateway.idle_timeout_secs`, longer than the monitor's connections.
fn limits(gateway: &gateway::Gateway) -> crate::http::Limits {
    crate::http::Limits {
        idle: gateway.idle_timeout(),
        ..crate::http::Limits::default()
    }
}

/// What serving needs, each part checked: the TLS acceptor (if configured), the
/// gateway, the state with its users; refused when `listen` goes beyond loopback with
/// nobody able to log in.
fn prepare(
    listen: SocketAddr,
    config: Config,
    clock: Arc<dyn Clock>,
) -> anyhow::Result<(
    Option<tokio_rustls::TlsAcceptor>,
    gateway::Gateway,
    Arc<WebState>,
)> {
    let tls = tls_acceptor(&config)?;
    let gateway = gateway::Gateway::new(&config)?;
    let state = WebState::new(config, clock)?;
    check_listen(listen, &state.users, &state.config)?;
    Ok((tls, gateway, state))
}

/// Serves the web UI on an already bound listener until `shutdown` completes.
pub async fn serve(
    listener: TcpListener,
    config: Config,
    clock: Arc<dyn Clock>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let listen = listener
        .local_addr()
        .context("cannot read the listener's address")?;
    let (tls, gateway, state) = prepare(listen, config, clock)?;
    let sync = spawn_role_sync(&state);
    crate::http::serve_tls(
        listener,
        router(state, gateway.clone()),
        limits(&gateway),
        tls,
        shutdown,
    )
    .await;
    sync.abort();
    Ok(())
}

/// Starts the role sync ([`role_sync`]) on the runtime.
fn spawn_role_sync(state: &Arc<WebState>) -> tokio::task::JoinHandle<()> {
    let every = std::time::Duration::from_secs(state.config.web_ui.role_sync_interval_secs);
    tokio::spawn(role_sync::run(state.clone(), every))
}

/// Runs the web UI until SIGTERM/SIGINT.
pub async fn run(config: Config) -> anyhow::Result<()> {
    let addr = config.web_ui.listen;
    // Everything that can fail is done before binding, so that a refused start binds
    // nothing and a started one answers at once.
    let (tls, gateway, state) = prepare(addr, config, Arc::new(SystemClock))?;
    let listener = crate::runner::bind("web_ui.listen", addr).await?;
    let scheme = if tls.is_some() { "https" } else { "http" };
    tracing::info!(
        %addr,
        users = state.users.user_count(),
        tokens = state.users.token_count(),
        database = %state.db_path.display(),
        api_url = %state.config.skypilot.api_url,
        "web UI serving {scheme}://{addr}/console/"
    );
    for w in &state.users.warnings {
        tracing::warn!("{w}");
    }
    let sync = spawn_role_sync(&state);
    let serving = Serving::ready(&format!("serving {scheme}://{addr}/console/"));
    crate::http::serve_tls(
        listener,
        router(state, gateway.clone()),
        limits(&gateway),
        tls,
        Serving::shutdown(),
    )
    .await;
    drop(serving);
    sync.abort();
    tracing::info!("web UI stopped");
    Ok(())
}

/// `skypilot-host hash-password NAME --role ROLE`.
pub fn hash_password_cli(name: &str, role: &str) -> anyhow::Result<()> {
    users::hash_password_cli(name, role)
}

/// `skypilot-host make-token NAME --role ROLE`.
pub fn make_token_cli(name: &str, role: &str) -> anyhow::Result<()> {
    users::make_token_cli(name, role)
}
