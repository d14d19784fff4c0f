//! `skypilot-host monitor`: a Prometheus exporter for the fleet and the host services.
//!
//! Every scrape of `/metrics` reads the host database afresh (read only) and renders a
//! new registry, in Prometheus text 0.0.4 or OpenMetrics 1.0 by `Accept` negotiation.
//! A missing or broken database never fails the endpoint: the problem is a metric.
//! `/metrics/skypilot` passes SkyPilot's own metrics through when
//! `monitor.skypilot_metrics_url` is set. `/healthz` answers while the process serves.

pub(crate) mod collect;
pub(crate) mod metrics;

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context as TaskContext, Poll};
use std::time::Duration;

use anyhow::Context;
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::header::{ACCEPT, CONTENT_TYPE};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use tokio::net::TcpListener;
use tokio::sync::mpsc;

use crate::config::Config;
use crate::time::{Clock, SystemClock};

pub(crate) use collect::{collect, Reader, Snapshot};
pub(crate) use metrics::{render, render_into, Format};

/// Timeout of one request to SkyPilot's own metrics endpoint.
pub(crate) const SKYPILOT_METRICS_TIMEOUT: Duration = Duration::from_secs(3);

#[derive(Clone)]
struct AppState {
    config: Arc<Config>,
    reader: Arc<std::sync::Mutex<collect::Reader>>,
    clock: Arc<dyn Clock>,
    http: reqwest::Client,
}

/// The monitor's routes, for a server or a test.
pub(crate) fn router(config: Config, clock: Arc<dyn Clock>) -> anyhow::Result<Router> {
    let http = crate::skypilot::http_client_builder(&config.skypilot)?
        .timeout(SKYPILOT_METRICS_TIMEOUT)
        .build()
        .context("cannot build the HTTP client for monitor.skypilot_metrics_url")?;
    let state = AppState {
        reader: Arc::new(std::sync::Mutex::new(collect::Reader::new(
            &config.cluster_manager.database,
        ))),
        config: Arc::new(config),
        clock,
        http,
    };
    Ok(Router::new()
        .route("/metrics", get(metrics_handler))
        .route("/metrics/skypilot", get(skypilot_metrics_handler))
        .route("/healthz", get(healthz))
        .with_state(state))
}

/// Serves the monitor on an already bound listener until `shutdown` completes, then
/// finishes the requests in flight.
pub async fn serve(
    listener: TcpListener,
    config: Config,
    clock: Arc<dyn Clock>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let addr = listener
        .local_addr()
        .context("monitor: cannot read the listening address")?;
    let app = router(config, clock)?;
    axum::serve(listener, app)
        .tcp_nodelay(true)
        .with_graceful_shutdown(shutdown)
        .await
        .with_context(|| format!("monitor: serving on {addr} failed"))
}

/// The `monitor` role: binds `monitor.listen` and serves until SIGTERM or SIGINT.
pub(crate) async fn run(config: Config) -> anyhow::Result<()> {
    let addr = config.monitor.listen;
    let listener = TcpListener::bind(addr)
        .await
        .with_context(|| format!("monitor.listen = {addr}: cannot listen there"))?;
    tracing::info!(
        %addr,
        database = %config.cluster_manager.database.display(),
        skypilot_metrics = config.monitor.skypilot_metrics_url.as_deref().unwrap_or("-"),
        "monitor serving /metrics and /healthz"
    );
    crate::systemd::ready(&format!("serving /metrics on {addr}"));
    let shutdown = async {
        crate::systemd::shutdown_signal().await;
        crate::systemd::stopping();
    };
    serve(listener, config, Arc::new(SystemClock), shutdown).await?;
    tracing::info!("monitor stopped");
    Ok(())
}

async fn healthz() -> &'static str {
    "ok\n"
}

/// Size of the pieces a scrape's body is sent in.
const CHUNK_BYTES: usize = 256 * 1024;
/// Pieces rendered ahead of the client.
const CHUNKS_AHEAD: usize = 2;

/// A `fmt::Write` that hands the text over in [`CHUNK_BYTES`] pieces, so a large fleet
/// never holds its whole exposition in memory. Fails (and stops the rendering) when the
/// client went away.
struct ChunkWriter {
    buf: String,
    tx: mpsc::Sender<Result<Bytes, std::io::Error>>,
}

impl ChunkWriter {
    fn new(tx: mpsc::Sender<Result<Bytes, std::io::Error>>) -> ChunkWriter {
        ChunkWriter {
            buf: String::with_capacity(CHUNK_BYTES + 4096),
            tx,
        }
    }

    fn flush(&mut self) -> fmt::Result {
        if self.buf.is_empty() {
            return Ok(());
        }
        let chunk = std::mem::replace(&mut self.buf, String::with_capacity(CHUNK_BYTES + 4096));
        self.tx
            .blocking_send(Ok(Bytes::from(chunk)))
            .map_err(|_| fmt::Error)
    }
}

impl fmt::Write for ChunkWriter {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        self.buf.push_str(s);
        if self.buf.len() >= CHUNK_BYTES {
            self.flush()?;
        }
        Ok(())
    }
}

/// The receiving end of a [`ChunkWriter`], as a response body stream.
struct Chunks(mpsc::Receiver<Result<Bytes, std::io::Error>>);

impl futures_core::Stream for Chunks {
    type Item = Result<Bytes, std::io::Error>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<Option<Self::Item>> {
        self.0.poll_recv(cx)
    }
}

async fn metrics_handler(State(state): State<AppState>, headers: HeaderMap) -> Response {
    let format = Format::negotiate(headers.get(ACCEPT).and_then(|v| v.to_str().ok()));
    let reader = state.reader.clone();
    let clock = state.clock.clone();
    let (tx, rx) = mpsc::channel(CHUNKS_AHEAD);
    // Reading SQLite and rendering are blocking work; the body streams while it runs.
    tokio::task::spawn_blocking(move || {
        // One scrape reads at a time; a poisoned lock only means an earlier scrape
        // panicked, and the reader reopens on any error anyway.
        let snapshot = reader
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .collect(clock.as_ref());
        let mut out = ChunkWriter::new(tx);
        let rendered = render_into(snapshot, format, &mut out).and_then(|()| out.flush());
        if rendered.is_err() && !out.tx.is_closed() {
            tracing::error!("monitor: cannot encode the metrics");
            let _ = out
                .tx
                .blocking_send(Err(std::io::Error::other("cannot encode the metrics")));
        }
    });
    (
        [(CONTENT_TYPE, format.content_type())],
        Body::from_stream(Chunks(rx)),
    )
        .into_response()
}

async fn skypilot_metrics_handler(State(state): State<AppState>, headers: HeaderMap) -> Response {
    let Some(url) = state.config.monitor.skypilot_metrics_url.clone() else {
        return (
            StatusCode::NOT_FOUND,
            "SkyPilot's own metrics are not re-exposed: monitor.skypilot_metrics_url is not set\n",
        )
            .into_response();
    };
    let mut req = state.http.get(&url);
    if let Some(accept) = headers.get(ACCEPT) {
        req = req.header(ACCEPT, accept.clone());
    }
    let bad_gateway = |what: String| {
        tracing::warn!(url = %url, "monitor: {what}");
        (
            StatusCode::BAD_GATEWAY,
            format!("SkyPilot's metrics endpoint {url}: {what}\n"),
        )
            .into_response()
    };
    let resp = match req.send().await {
        Ok(r) => r,
        Err(e) if e.is_timeout() => {
            return bad_gateway(format!(
                "no answer within {} s",
                SKYPILOT_METRICS_TIMEOUT.as_secs()
            ))
        }
        Err(e) => return bad_gateway(format!("request failed: {e}")),
    };
    let status = resp.status();
    if !status.is_success() {
        return bad_gateway(format!("answered HTTP {status}, expected 200"));
    }
    let content_type = resp
        .headers()
        .get(CONTENT_TYPE)
        .cloned()
        .unwrap_or_else(|| HeaderValue::from_static(metrics::TEXT_CONTENT_TYPE));
    match resp.bytes().await {
        Ok(body) => ([(CONTENT_TYPE, content_type)], body).into_response(),
        Err(e) if e.is_timeout() => bad_gateway(format!(
            "body not complete within {} s",
            SKYPILOT_METRICS_TIMEOUT.as_secs()
        )),
        Err(e) => bad_gateway(format!("cannot read the body: {e}")),
    }
}
