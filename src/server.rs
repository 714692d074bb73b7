//! The HTTP server loop of the public listener: axum's router on hyper, with what a server
//! on the internet needs and `axum::serve` lacks (`[server]` settings):
//!
//! - a header-read timeout (`header_read_timeout`): a client that sends its header slowly,
//!   or nothing at all, is cut off (HTTP/1; hyper's own timer);
//! - an idle timeout (`idle_timeout`): a connection without a byte read or written for that
//!   long is shut down gracefully (an answer being computed is finished first), and closed
//!   if it still has not finished after as long again;
//! - a cap on open connections (`max_connections`): past it the listener stops accepting,
//!   so new connections wait in the kernel's backlog while the open ones are answered.
//!
//! On shutdown it stops accepting, shuts every connection down gracefully and waits for
//! them at most `shutdown_timeout`.
//!
//! [`layers`] adds what every request gets, from `tower-http`: a request id (`x-request-id`,
//! the proxy's if it sent one, else made here) in the response and in the span of every log
//! line the request causes, a trace span with an access line at debug level
//! (`TALLY_LOG=info,tower_http=debug`), and `X-Content-Type-Options: nosniff`.

use std::{
    convert::Infallible,
    net::SocketAddr,
    pin::Pin,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    task::{Context, Poll},
    time::{Duration, Instant},
};

use axum::{Router, extract::ConnectInfo, http::Request};
use hyper::body::Incoming;
use hyper_util::{
    rt::{TokioExecutor, TokioIo, TokioTimer},
    server::conn::auto::Builder,
    service::TowerToHyperService,
};
use tally_core::settings::ServerSettings;
use tokio::{
    io::{AsyncRead, AsyncWrite, ReadBuf},
    net::TcpListener,
    sync::Semaphore,
};
use tokio_util::{sync::CancellationToken, task::TaskTracker};

/// The `[server]` settings the loop applies.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Limits {
    pub header_read_timeout: Duration,
    pub idle_timeout: Duration,
    pub max_connections: usize,
    pub shutdown_timeout: Duration,
}

impl Limits {
    pub(crate) fn of(s: &ServerSettings) -> Self {
        Self {
            header_read_timeout: s.header_read_timeout,
            idle_timeout: s.idle_timeout,
            max_connections: s.max_connections,
            shutdown_timeout: s.shutdown_timeout,
        }
    }
}

/// Serves `router` on `listener` until `shutdown`, then drains the connections.
pub(crate) async fn serve(
    listener: TcpListener,
    router: Router,
    limits: Limits,
    shutdown: CancellationToken,
) {
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    let connections = TaskTracker::new();
    let mut builder = Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout);
    builder.http2().timer(TokioTimer::new());
    let builder = Arc::new(builder);
    loop {
        // A slot first: at the cap nothing is accepted, and the kernel holds new connections.
        let slot = match slots.clone().try_acquire_owned() {
            Ok(slot) => slot,
            Err(_) => {
                metrics::counter!("tally_http_connections_waited_total").increment(1);
                tokio::select! {
                    () = shutdown.cancelled() => break,
                    slot = slots.clone().acquire_owned() => slot.expect("the semaphore is never closed"),
                }
            }
        };
        let (stream, peer) = tokio::select! {
            () = shutdown.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    // Out of file descriptors, or a connection reset before it was taken:
                    // wait a little rather than spin.
                    tracing::warn!(message = "accept failed", %error);
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        let _ = stream.set_nodelay(true);
        let (router, builder, stop) = (router.clone(), builder.clone(), shutdown.clone());
        connections.spawn(async move {
            metrics::gauge!("tally_http_connections").increment(1.0);
            connection(stream, peer, router, &builder, limits, stop).await;
            metrics::gauge!("tally_http_connections").decrement(1.0);
            drop(slot);
        });
    }
    connections.close();
    if tokio::time::timeout(limits.shutdown_timeout, connections.wait())
        .await
        .is_err()
    {
        tracing::warn!("connections still open after the shutdown timeout; closing them");
    }
}

/// Serves one connection until it ends, is idle too long, or the server shuts down.
async fn connection(
    stream: tokio::net::TcpStream,
    peer: SocketAddr,
    router: Router,
    builder: &Builder<TokioExecutor>,
    limits: Limits,
    shutdown: CancellationToken,
) {
    let activity = Activity::new();
    let io = TokioIo::new(Tracked {
        inner: stream,
        activity: activity.clone(),
    });
    let service = TowerToHyperService::new(WithPeer { router, peer });
    let conn = builder.serve_connection_with_upgrades(io, service);
    tokio::pin!(conn);
    let check_every = (limits.idle_timeout / 4).max(Duration::from_millis(100));
    let mut tick = tokio::time::interval(check_every);
    // When the connection was asked to shut down, and how long it may take then.
    let mut closing: Option<(Instant, Duration)> = None;
    loop {
        tokio::select! {
            result = conn.as_mut() => {
                if let Err(error) = result {
                    tracing::debug!(message = "connection ended with an error", %error);
                }
                return;
            }
            () = shutdown.cancelled(), if closing.is_none() => {
                conn.as_mut().graceful_shutdown();
                closing = Some((Instant::now(), limits.shutdown_timeout));
            }
            _ = tick.tick() => match closing {
                Some((since, grace)) if since.elapsed() > grace => return,
                Some(_) => {}
                None if activity.idle() > limits.idle_timeout => {
                    conn.as_mut().graceful_shutdown();
                    closing = Some((Instant::now(), limits.idle_timeout));
                }
                None => {}
            },
        }
    }
}

/// The router with the client's address as `ConnectInfo`, like axum's own server gives it.
#[derive(Clone)]
struct WithPeer {
    router: Router,
    peer: SocketAddr,
}

impl tower_service::Service<Request<Incoming>> for WithPeer {
    type Response = axum::response::Response;
    type Error = Infallible;
    type Future = axum::routing::future::RouteFuture<Infallible>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        // A router is always ready.
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, mut req: Request<Incoming>) -> Self::Future {
        req.extensions_mut().insert(ConnectInfo(self.peer));
        self.router.call(req)
    }
}

/// When a connection last read or wrote a byte.
#[derive(Clone)]
struct Activity {
    epoch: Instant,
    /// Milliseconds since `epoch`.
    last: Arc<AtomicU64>,
}

impl Activity {
    fn new() -> Self {
        Self {
            epoch: Instant::now(),
            last: Arc::new(AtomicU64::new(0)),
        }
    }

    fn touch(&self) {
        self.last
            .store(self.epoch.elapsed().as_millis() as u64, Ordering::Relaxed);
    }

    fn idle(&self) -> Duration {
        self.epoch
            .elapsed()
            .saturating_sub(Duration::from_millis(self.last.load(Ordering::Relaxed)))
    }
}

/// A stream that records its activity.
struct Tracked<T> {
    inner: T,
    activity: Activity,
}

impl<T: AsyncRead + Unpin> AsyncRead for Tracked<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        if buf.filled().len() > before {
            self.activity.touch();
        }
        polled
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Tracked<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write(cx, data);
        if matches!(polled, Poll::Ready(Ok(n)) if n > 0) {
            self.activity.touch();
        }
        polled
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        if matches!(polled, Poll::Ready(Ok(n)) if n > 0) {
            self.activity.touch();
        }
        polled
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// The layers every route gets; see the module documentation.
pub(crate) fn layers(router: Router) -> Router {
    use axum::http::{HeaderName, HeaderValue, header};
    use tower_http::{
        request_id::{PropagateRequestIdLayer, SetRequestIdLayer},
        set_header::SetResponseHeaderLayer,
        trace::{DefaultOnResponse, TraceLayer},
    };
    let id = HeaderName::from_static("x-request-id");
    let trace = TraceLayer::new_for_http()
        .make_span_with(|req: &Request<axum::body::Body>| {
            let id = req
                .headers()
                .get("x-request-id")
                .and_then(|v| v.to_str().ok())
                .unwrap_or("");
            // At error level so that no log filter drops it: every line logged while the
            // request is handled, at any level, then carries its id.
            let path = loggable_path(req.uri().path());
            tracing::error_span!("request", id, method = %req.method(), path = &*path)
        })
        // No line when a request starts; the access line (at debug) says all.
        .on_request(())
        .on_response(DefaultOnResponse::new().level(tracing::Level::DEBUG));
    // The last layer added runs first: the id is set before the span is made.
    router
        .layer(SetResponseHeaderLayer::if_not_present(
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        ))
        .layer(PropagateRequestIdLayer::new(id.clone()))
        .layer(trace)
        .layer(SetRequestIdLayer::new(id, RequestIds::default()))
}

/// Paths whose last segment is a secret (a shared dashboard's link, an invitation link).
const SECRET_PATHS: [&str; 2] = ["/share/", "/admin/invite/"];

/// `path` as it may be logged: the secret of a shared or invitation link is left out.
fn loggable_path(path: &str) -> std::borrow::Cow<'_, str> {
    match SECRET_PATHS.iter().find(|p| path.starts_with(**p)) {
        Some(prefix) => format!("{prefix}…").into(),
        None => path.into(),
    }
}

/// Request ids: this process's random prefix and a counter (unique per process, and
/// across processes with near certainty), 24 hex digits.
#[derive(Clone)]
struct RequestIds {
    prefix: u64,
    next: Arc<AtomicU64>,
}

impl Default for RequestIds {
    fn default() -> Self {
        Self {
            // A random prefix without a dependency: std's hasher keys are random per process.
            prefix: std::hash::BuildHasher::hash_one(
                &std::collections::hash_map::RandomState::new(),
                std::process::id(),
            ),
            next: Arc::new(AtomicU64::new(0)),
        }
    }
}

impl tower_http::request_id::MakeRequestId for RequestIds {
    fn make_request_id<B>(&mut self, _: &Request<B>) -> Option<tower_http::request_id::RequestId> {
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        let id = format!("{:016x}{:08x}", self.prefix, n as u32);
        axum::http::HeaderValue::from_str(&id)
            .ok()
            .map(tower_http::request_id::RequestId::new)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn link_secrets_stay_out_of_logged_paths() {
        assert_eq!(loggable_path("/share/8d7c1d00ff"), "/share/…");
        assert_eq!(loggable_path("/admin/invite/abc"), "/admin/invite/…");
        assert_eq!(loggable_path("/api/v1/sites"), "/api/v1/sites");
    }
}
