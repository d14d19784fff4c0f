//! `skypilot-host monitor`: a Prometheus exporter for the fleet and the host services.
//!
//! `/metrics` shows the host database (read only) in Prometheus text 0.0.4 or OpenMetrics
//! 1.0 by `Accept` negotiation. Every scrape checks whether the database changed; the
//! text rendered from it is reused while it did not, and the time-dependent series are
//! computed for every scrape ([`cache`]). A missing or broken database never fails the
//! endpoint: the problem is a metric.
//! `/metrics/skypilot` passes SkyPilot's own metrics through when
//! `monitor.skypilot_metrics_url` is set, streamed and capped at
//! `monitor.skypilot_metrics_max_bytes`. `/healthz` answers while the process serves.
//!
//! It listens with the shared server setup of [`crate::http`] (timeouts, bounded
//! connections, a shutdown deadline). Scrapes wait their turn without holding a thread,
//! and share work: a scrape that arrived before the latest answer began rendering is
//! given that answer (its pieces are shared, not copied), so a crowd of scrapes costs
//! one rendering.

pub(crate) mod cache;
pub mod collect;
pub(crate) mod metrics;

use crate::runner::Serving;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context as TaskContext, Poll};
use std::time::Duration;

use anyhow::Context;
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::header::{ACCEPT, CONTENT_LENGTH, CONTENT_TYPE};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use tokio::net::TcpListener;

use crate::config::Config;
use crate::time::{Clock, SystemClock};

pub use cache::{Scraper, Served};
pub use collect::{collect, DbVersion, Reader, Snapshot};
pub use metrics::{render, render_into, Exposition, Format, Moment};

/// Timeout of one request to SkyPilot's own metrics endpoint.
pub(crate) const SKYPILOT_METRICS_TIMEOUT: Duration = Duration::from_secs(3);

#[derive(Clone)]
struct AppState {
    config: Arc<Config>,
    /// Taken (without a thread) before a scrape goes to a blocking thread, so waiting
    /// scrapes never pile up on the blocking pool.
    scraping: Arc<tokio::sync::Mutex<Scraping>>,
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
        scraping: Arc::new(tokio::sync::Mutex::new(Scraping {
            scraper: Scraper::new(&config.cluster_manager.database),
            latest: None,
        })),
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
/// gives the requests in flight a few seconds to finish.
pub async fn serve(
    listener: TcpListener,
    config: Config,
    clock: Arc<dyn Clock>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let app = router(config, clock)?;
    crate::http::serve(listener, app, crate::http::Limits::default(), shutdown).await;
    Ok(())
}

/// The `monitor` role: binds `monitor.listen` and serves until SIGTERM or SIGINT.
pub(crate) async fn run(config: Config) -> anyhow::Result<()> {
    let addr = config.monitor.listen;
    let listener = crate::runner::bind("monitor.listen", addr).await?;
    tracing::info!(
        %addr,
        database = %config.cluster_manager.database.display(),
        skypilot_metrics = config.monitor.skypilot_metrics_url.as_deref().unwrap_or("-"),
        "monitor serving /metrics and /healthz"
    );
    let _serving = Serving::ready(&format!("serving /metrics on {addr}"));
    serve(listener, config, Arc::new(SystemClock), Serving::shutdown()).await?;
    tracing::info!("monitor stopped");
    Ok(())
}

/// The reader of the database, and the latest answer of `/metrics` for scrapes that were
/// waiting while it rendered.
struct Scraping {
    scraper: Scraper,
    latest: Option<Latest>,
}

struct Latest {
    format: Format,
    /// When its rendering began.
    began: std::time::Instant,
    pieces: Vec<Bytes>,
}

async fn healthz() -> &'static str {
    "ok\n"
}

/// A scrape's body: its pieces in order, sent without copying them together.
struct Pieces(std::vec::IntoIter<Bytes>);

impl futures_core::Stream for Pieces {
    type Item = Result<Bytes, std::convert::Infallible>;

    fn poll_next(mut self: Pin<&mut Self>, _: &mut TaskContext<'_>) -> Poll<Option<Self::Item>> {
        Poll::Ready(self.0.next().map(Ok))
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        self.0.size_hint()
    }
}

async fn metrics_handler(State(state): State<AppState>, headers: HeaderMap) -> Response {
    let format = Format::negotiate(headers.get(ACCEPT).and_then(|v| v.to_str().ok()));
    let arrived = std::time::Instant::now();
    let mut turn = state.scraping.clone().lock_owned().await;
    if let Some(latest) = &turn.latest {
        if latest.format == format && latest.began >= arrived {
            return pieces_response(format, latest.pieces.clone());
        }
    }
    let began = std::time::Instant::now();
    let clock = state.clock.clone();
    // Asking SQLite is blocking work (it may wait on a lock), so it runs off the async
    // workers, holding the turn; it hands the turn back with its answer. A scrape that
    // panicked drops the turn, and the reader reopens on any error anyway.
    let backup = state
        .config
        .backup
        .directory
        .clone()
        .map(|d| (d, state.config.backup.interval_secs));
    let scraped = tokio::task::spawn_blocking(move || {
        let mut answer = turn.scraper.scrape(clock.as_ref(), format);
        if let (Ok(pieces), Some((dir, interval))) = (answer.as_mut(), backup) {
            let b = metrics::BackupState::read(&dir, interval);
            match metrics::render_backup(b, clock.now(), format) {
                // Before OpenMetrics' closing `# EOF`.
                Ok(piece) => {
                    let at = match format {
                        Format::OpenMetrics => pieces.len().saturating_sub(1),
                        Format::Text => pieces.len(),
                    };
                    pieces.insert(at, piece);
                }
                Err(e) => answer = Err(e),
            }
        }
        (turn, answer)
    })
    .await;
    let (mut turn, pieces) = match scraped {
        Ok((turn, Ok(pieces))) => (turn, pieces),
        Ok((_, Err(std::fmt::Error))) => {
            tracing::error!("monitor: cannot encode the metrics");
            return (
                StatusCode::INTERNAL_SERVER_ERROR,
                "cannot encode the metrics\n",
            )
                .into_response();
        }
        Err(e) => {
            tracing::error!(error = %e, "monitor: the scrape did not complete");
            return (
                StatusCode::INTERNAL_SERVER_ERROR,
                "the scrape did not complete\n",
            )
                .into_response();
        }
    };
    turn.latest = Some(Latest {
        format,
        began,
        pieces: pieces.clone(),
    });
    drop(turn);
    pieces_response(format, pieces)
}

fn pieces_response(format: Format, pieces: Vec<Bytes>) -> Response {
    let length: usize = pieces.iter().map(Bytes::len).sum();
    (
        [
            (
                CONTENT_TYPE,
                HeaderValue::from_static(format.content_type()),
            ),
            (CONTENT_LENGTH, HeaderValue::from(length)),
        ],
        Body::from_stream(Pieces(pieces.into_iter())),
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
    let max = state.config.monitor.skypilot_metrics_max_bytes;
    if resp.content_length().is_some_and(|n| n > max) {
        return bad_gateway(format!(
            "answer larger than {max} bytes (monitor.skypilot_metrics_max_bytes)"
        ));
    }
    // Passed on piece by piece: a large or endless answer never sits in memory whole,
    // and it is cut at the cap.
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Bytes, std::io::Error>>(2);
    tokio::spawn(async move {
        let mut resp = resp;
        let mut sent = 0u64;
        loop {
            let piece = match resp.chunk().await {
                Ok(Some(p)) => p,
                Ok(None) => return,
                Err(e) => {
                    tracing::warn!(url = %url, error = %e, "monitor: SkyPilot's metrics answer broke off");
                    let _ = tx.send(Err(std::io::Error::other(e))).await;
                    return;
                }
            };
            sent += piece.len() as u64;
            if sent > max {
                tracing::warn!(url = %url, max, "monitor: SkyPilot's metrics answer is larger than monitor.skypilot_metrics_max_bytes; cut off");
                let _ = tx
                    .send(Err(std::io::Error::other("answer larger than the cap")))
                    .await;
                return;
            }
            if tx.send(Ok(piece)).await.is_err() {
                return;
            }
        }
    });
    ([(CONTENT_TYPE, content_type)], Body::from_stream(Relay(rx))).into_response()
}

/// The receiving end of a relayed body.
struct Relay(tokio::sync::mpsc::Receiver<Result<Bytes, std::io::Error>>);

impl futures_core::Stream for Relay {
    type Item = Result<Bytes, std::io::Error>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<Option<Self::Item>> {
        self.0.poll_recv(cx)
    }
}
