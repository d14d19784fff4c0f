//! The HTTP server setup every listening role shares (the monitor, the web UI with its
//! gateway, the launch policy): a client can hold a connection only while it makes
//! progress, the number of connections is bounded below the file limit, and shutdown
//! has a deadline.
//!
//! - Headers must arrive within `header_read` (a slow-loris client is cut off).
//! - A connection on which no byte moves either way for `idle` is closed: an idle
//!   keep-alive connection, and a client that asks and never reads its answer.
//! - At most `max_connections` at once (4,096; the module's `LimitNOFILE` leaves room
//!   above it); one more is closed at accept, so the process never runs out of files. A
//!   connection costs little: a scrape's body is shared text, not a copy per client.
//! - On shutdown the listener closes at once; connections in flight get `shutdown_grace`
//!   to finish, then are dropped.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio::time::{Instant, Sleep};

/// The limits of [`serve`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Limits {
    pub(crate) header_read: Duration,
    pub(crate) idle: Duration,
    pub(crate) max_connections: usize,
    pub(crate) shutdown_grace: Duration,
}

impl Default for Limits {
    /// Generous for a scraper or a browser, short for a client that hangs on: a
    /// 10,000-cluster scrape is sent in well under a second.
    fn default() -> Limits {
        Limits {
            header_read: Duration::from_secs(10),
            idle: Duration::from_secs(30),
            max_connections: 4096,
            shutdown_grace: Duration::from_secs(5),
        }
    }
}

/// Serves `app` on `listener` until `shutdown` completes, within `limits`.
pub(crate) async fn serve(
    listener: TcpListener,
    app: Router,
    limits: Limits,
    shutdown: impl Future<Output = ()>,
) {
    serve_tls(listener, app, limits, None, shutdown).await;
}

/// Drives one connection until it ends, starting a graceful shutdown of it when `stop`
/// turns true (by hand: hyper-util's watcher does not take a connection with upgrades).
macro_rules! drive {
    ($conn:expr, $stop:expr, $peer:expr) => {{
        let conn = $conn;
        tokio::pin!(conn);
        let mut stop = $stop;
        let mut stopping = false;
        let result = loop {
            tokio::select! {
                r = conn.as_mut() => break r,
                _ = stop.wait_for(|s| *s), if !stopping => {
                    stopping = true;
                    conn.as_mut().graceful_shutdown();
                }
            }
        };
        if let Err(e) = result {
            tracing::debug!(peer = %$peer, error = %e, "connection ended with an error");
        }
    }};
}

/// Like [`serve`], with TLS in front when `tls` is given: the handshake must finish
/// within `limits.header_read`. Every request carries the peer's address as
/// `axum::extract::ConnectInfo<SocketAddr>`. Connections may be upgraded (the web UI's
/// gateway passes SkyPilot's websockets through; an upgraded connection leaves its
/// slot, and the gateway bounds its idle time).
pub(crate) async fn serve_tls(
    listener: TcpListener,
    app: Router,
    limits: Limits,
    tls: Option<tokio_rustls::TlsAcceptor>,
    shutdown: impl Future<Output = ()>,
) {
    // Graceful shutdown: a signal every connection task watches, and the slots counting
    // the connections still open.
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(limits.header_read)
        .keep_alive(true);
    tokio::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Out of files or memory for a moment: wait instead of spinning.
                    tracing::warn!(error = %e, "cannot accept a connection");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            tracing::debug!(%peer, max = limits.max_connections, "connection closed at accept: every slot is taken");
            continue;
        };
        let _ = stream.set_nodelay(true);
        let stream = IdleTimeout::new(stream, limits.idle);
        let service = TowerToHyperService::new(WithPeer {
            app: app.clone(),
            peer,
        });
        let stop = stop_rx.clone();
        let Some(tls) = tls.clone() else {
            let conn = http
                .serve_connection(TokioIo::new(stream), service)
                .with_upgrades();
            tokio::spawn(async move {
                drive!(conn, stop, peer);
                drop(slot);
            });
            continue;
        };
        let http = http.clone();
        tokio::spawn(async move {
            let stream = match tokio::time::timeout(limits.header_read, tls.accept(stream)).await {
                Ok(Ok(s)) => s,
                Ok(Err(e)) => {
                    tracing::debug!(%peer, error = %e, "TLS handshake failed");
                    return;
                }
                Err(_) => {
                    tracing::debug!(%peer, "TLS handshake took too long");
                    return;
                }
            };
            let conn = http
                .serve_connection(TokioIo::new(stream), service)
                .with_upgrades();
            drive!(conn, stop, peer);
            drop(slot);
        });
    }
    drop(listener);
    let open = limits.max_connections - slots.available_permits();
    let _ = stop_tx.send(true);
    let all = u32::try_from(limits.max_connections).unwrap_or(u32::MAX);
    if tokio::time::timeout(limits.shutdown_grace, slots.acquire_many(all))
        .await
        .is_err()
    {
        tracing::warn!(
            open,
            grace_secs = limits.shutdown_grace.as_secs_f64(),
            "connections still open after the shutdown grace period; dropping them"
        );
    }
}

/// The router, with the peer's address put into each request.
#[derive(Clone)]
struct WithPeer {
    app: Router,
    peer: std::net::SocketAddr,
}

impl tower::Service<axum::http::Request<hyper::body::Incoming>> for WithPeer {
    type Response = axum::response::Response;
    type Error = std::convert::Infallible;
    type Future = <Router as tower::Service<axum::http::Request<hyper::body::Incoming>>>::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        tower::Service::<axum::http::Request<hyper::body::Incoming>>::poll_ready(&mut self.app, cx)
    }

    fn call(&mut self, mut req: axum::http::Request<hyper::body::Incoming>) -> Self::Future {
        req.extensions_mut()
            .insert(axum::extract::ConnectInfo(self.peer));
        tower::Service::call(&mut self.app, req)
    }
}

/// A stream that fails once no byte has moved either way for `idle`.
pub(crate) struct IdleTimeout<S> {
    inner: S,
    idle: Duration,
    deadline: Pin<Box<Sleep>>,
}

impl<S> IdleTimeout<S> {
    pub(crate) fn new(inner: S, idle: Duration) -> IdleTimeout<S> {
        IdleTimeout {
            inner,
            idle,
            deadline: Box::pin(tokio::time::sleep(idle)),
        }
    }

    fn progress(&mut self) {
        let next = Instant::now() + self.idle;
        self.deadline.as_mut().reset(next);
    }

    /// Called when the inner stream is pending: an error once the deadline passed (the
    /// timer wakes the task then).
    fn pending<T>(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<T>> {
        match self.deadline.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!("no byte moved for {} s", self.idle.as_secs_f64()),
            ))),
            Poll::Pending => Poll::Pending,
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for IdleTimeout<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        match Pin::new(&mut this.inner).poll_read(cx, buf) {
            Poll::Ready(r) => {
                this.progress();
                Poll::Ready(r)
            }
            Poll::Pending => this.pending(cx),
        }
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for IdleTimeout<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        match Pin::new(&mut this.inner).poll_write(cx, buf) {
            Poll::Ready(r) => {
                this.progress();
                Poll::Ready(r)
            }
            Poll::Pending => this.pending(cx),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        match Pin::new(&mut this.inner).poll_write_vectored(cx, bufs) {
            Poll::Ready(r) => {
                this.progress();
                Poll::Ready(r)
            }
            Poll::Pending => this.pending(cx),
        }
    }

    /// Vectored as the socket is, so the server sends a body's pieces as they are
    /// instead of copying them into a buffer per connection.
    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        match Pin::new(&mut this.inner).poll_flush(cx) {
            Poll::Ready(r) => Poll::Ready(r),
            Poll::Pending => this.pending(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        match Pin::new(&mut this.inner).poll_shutdown(cx) {
            Poll::Ready(r) => Poll::Ready(r),
            Poll::Pending => this.pending(cx),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::routing::get;
    use std::net::SocketAddr;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpStream;

    const LIMITS: Limits = Limits {
        header_read: Duration::from_millis(400),
        idle: Duration::from_millis(400),
        max_connections: 4,
        shutdown_grace: Duration::from_millis(400),
    };

    async fn start() -> (
        SocketAddr,
        tokio::sync::oneshot::Sender<()>,
        tokio::task::JoinHandle<()>,
    ) {
        start_with(LIMITS).await
    }

    async fn start_with(
        limits: Limits,
    ) -> (
        SocketAddr,
        tokio::sync::oneshot::Sender<()>,
        tokio::task::JoinHandle<()>,
    ) {
        let app = Router::new()
            .route("/", get(|| async { "ok" }))
            .route("/big", get(|| async { vec![b'x'; 32 * 1024 * 1024] }));
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(serve(listener, app, limits, async {
            let _ = rx.await;
        }));
        (addr, tx, task)
    }

    async fn get_ok(addr: SocketAddr) -> bool {
        let Ok(mut s) = TcpStream::connect(addr).await else {
            return false;
        };
        if s.write_all(b"GET / HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")
            .await
            .is_err()
        {
            return false;
        }
        let mut out = String::new();
        let _ = tokio::time::timeout(Duration::from_secs(2), s.read_to_string(&mut out)).await;
        out.starts_with("HTTP/1.1 200") && out.ends_with("ok")
    }

    /// Reads until the server closes; the time it took.
    async fn closed_within(s: &mut TcpStream, limit: Duration) -> Duration {
        let started = Instant::now();
        let mut buf = vec![0u8; 1 << 16];
        loop {
            match tokio::time::timeout(limit, s.read(&mut buf)).await {
                Ok(Ok(0)) | Ok(Err(_)) => return started.elapsed(),
                Ok(Ok(_)) => {}
                Err(_) => panic!("still open after {limit:?}"),
            }
        }
    }

    #[tokio::test]
    async fn idle_and_slow_clients_are_cut_off() {
        let (addr, _stop, _task) = start().await;
        // An idle connection.
        let mut idle = TcpStream::connect(addr).await.unwrap();
        let t = closed_within(&mut idle, Duration::from_secs(3)).await;
        assert!(t >= Duration::from_millis(300), "{t:?}");
        // Headers one byte at a time, never finished.
        let mut slow = TcpStream::connect(addr).await.unwrap();
        let drip = tokio::spawn(async move {
            for b in
                b"GET / HTTP/1.1\r\nhost: x\r\nx-drip: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
            {
                if slow.write_all(&[*b]).await.is_err() {
                    return true;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            false
        });
        assert!(
            tokio::time::timeout(Duration::from_secs(3), drip)
                .await
                .unwrap()
                .unwrap(),
            "the dripping client was never cut off"
        );
        assert!(get_ok(addr).await);
    }

    #[tokio::test]
    async fn a_client_that_never_reads_frees_its_slot() {
        // Timeouts long enough that "closed at once" and "closed by a timeout" stay
        // apart on a loaded machine.
        let limits = Limits {
            header_read: Duration::from_secs(3),
            idle: Duration::from_secs(3),
            ..LIMITS
        };
        let (addr, _stop, _task) = start_with(limits).await;
        let mut stuck = Vec::new();
        for _ in 0..LIMITS.max_connections {
            let mut s = TcpStream::connect(addr).await.unwrap();
            s.write_all(b"GET /big HTTP/1.1\r\nhost: x\r\n\r\n")
                .await
                .unwrap();
            stuck.push(s);
        }
        // Each stuck client holds a slot once its response has begun: wait for that
        // rather than for a fixed time, which a loaded machine may not honour.
        for s in &mut stuck {
            let mut first = [0u8; 1];
            tokio::time::timeout(Duration::from_secs(5), s.read_exact(&mut first))
                .await
                .unwrap()
                .unwrap();
        }
        // Every slot is taken: one more is closed at once.
        let mut extra = TcpStream::connect(addr).await.unwrap();
        let t = closed_within(&mut extra, Duration::from_secs(5)).await;
        assert!(t < Duration::from_millis(1500), "{t:?}");
        // The readers that never read are dropped after `idle`; the slots come back.
        let started = Instant::now();
        while !get_ok(addr).await {
            assert!(
                started.elapsed() < Duration::from_secs(15),
                "no slot came back"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        drop(stuck);
    }

    #[tokio::test]
    async fn shutdown_has_a_deadline() {
        let (addr, stop, task) = start().await;
        let mut s = TcpStream::connect(addr).await.unwrap();
        s.write_all(b"GET /big HTTP/1.1\r\nhost: x\r\n\r\n")
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(50)).await;
        let started = Instant::now();
        stop.send(()).unwrap();
        tokio::time::timeout(Duration::from_secs(3), task)
            .await
            .expect("serve did not return")
            .unwrap();
        assert!(
            started.elapsed() < Duration::from_secs(1),
            "{:?}",
            started.elapsed()
        );
        assert!(
            TcpStream::connect(addr).await.is_err(),
            "the listener is closed"
        );
        drop(s);
    }
}
