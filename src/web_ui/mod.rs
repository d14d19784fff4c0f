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
pub(crate) mod reload;
pub(crate) mod role_sync;
pub(crate) mod rules;
pub(crate) mod state;
pub(crate) mod users;

pub(crate) use state::WebState;

use crate::runner::Serving;
use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use axum::routing::get;
use axum::Router;
use tokio::net::TcpListener;

use crate::config::Config;
use crate::time::{Clock, SystemClock};

/// Refuses to listen beyond loopback with nobody able to log in.
pub(crate) fn check_listen(
    listen: SocketAddr,
    users: &users::Users,
    config: &Config,
) -> anyhow::Result<()> {
    if listen.ip().is_loopback()
        || users.user_count() > 0
        || users.token_count() > 0
        || config.web_ui.oidc.is_some()
    {
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
    check_listen(listen, &state.users(), &state.config)?;
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
    let background = Background::start(&state);
    crate::http::serve_tls(
        listener,
        router(state, gateway.clone()),
        limits(&gateway),
        tls,
        shutdown,
    )
    .await;
    drop(background);
    Ok(())
}

/// The web UI's background tasks, stopped when dropped: the role sync ([`role_sync`])
/// and the users files' reload ([`reload`]).
struct Background(Vec<tokio::task::JoinHandle<()>>);

impl Background {
    fn start(state: &Arc<WebState>) -> Background {
        let every = std::time::Duration::from_secs(state.config.web_ui.role_sync_interval_secs);
        Background(vec![
            tokio::spawn(role_sync::run(state.clone(), every)),
            tokio::spawn(reload::run(state.clone(), reload::EVERY)),
        ])
    }
}

impl Drop for Background {
    fn drop(&mut self) {
        for t in &self.0 {
            t.abort();
        }
    }
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
        users = state.users().user_count(),
        tokens = state.users().token_count(),
        database = %state.db_path.display(),
        api_url = %state.config.skypilot.api_url,
        "web UI serving {scheme}://{addr}/console/"
    );
    for w in &state.users().warnings {
        tracing::warn!("{w}");
    }
    let background = Background::start(&state);
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
    drop(background);
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
