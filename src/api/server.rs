//! The HTTP/1.1 server loop under the API: what `axum::serve` does, plus
//! what an exposed listener needs and it lacks: a deadline for the request
//! head, an idle timeout for kept-alive connections, and a cap on
//! connections served at once.
//!
//! hyper's own `header_read_timeout` also runs while a kept-alive connection
//! waits for its next request, so the two deadlines could not differ; a
//! small per-connection clock keeps them apart instead.

use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::Router;
use axum::http::Request;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper_util::rt::TokioIo;
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::ApiSettings;

/// Per-listener connection limits (`api.header_read_timeout`,
/// `api.idle_timeout`, `api.max_connections`).
#[derive(Debug, Clone, Copy)]
pub struct ConnectionLimits {
    pub header_read_timeout: Duration,
    pub idle_timeout: Duration,
    pub max_connections: usize,
}

impl From<&ApiSettings> for ConnectionLimits {
    fn from(api: &ApiSettings) -> Self {
        Self {
            header_read_timeout: api.header_read_timeout,
            idle_timeout: api.idle_timeout,
            max_connections: api.max_connections,
        }
    }
}

/// Serves `app` on `listener` until `stop`; then stops accepting, lets
/// requests in flight finish, closes idle connections, and returns when
/// every connection has ended. Beyond `max_connections`, new connections
/// wait in the kernel's accept queue until one closes.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    limits: ConnectionLimits,
    stop: CancellationToken,
) -> io::Result<()> {
    let permits = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    let connections = TaskTracker::new();
    loop {
        let permit = tokio::select! {
            _ = stop.cancelled() => break,
            permit = permits.clone().acquire_owned() => match permit {
                Ok(permit) => permit,
                Err(_) => break,
            },
        };
        let stream = tokio::select! {
            _ = stop.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(error) => {
                    accept_failed(&error).await;
                    continue;
                }
            },
        };
        connections.spawn(connection(
            stream,
            app.clone(),
            limits,
            stop.clone(),
            permit,
        ));
    }
    drop(listener);
    connections.close();
    connections.wait().await;
    Ok(())
}

/// A failed accept is about one connection (reset before it was taken) or
/// about the process (out of file descriptors): the latter gets a pause so
/// the loop does not spin.
async fn accept_failed(error: &io::Error) {
    use io::ErrorKind::*;
    if matches!(
        error.kind(),
        ConnectionAborted | ConnectionRefused | ConnectionReset | Interrupted
    ) {
        return;
    }
    tracing::warn!(error = %error, "accepting a connection failed");
    tokio::time::sleep(Duration::from_millis(100)).await;
}

async fn connection(
    stream: TcpStream,
    app: Router,
    limits: ConnectionLimits,
    stop: CancellationToken,
    _permit: OwnedSemaphorePermit,
) {
    let _ = stream.set_nodelay(true);
    let peer = stream.peer_addr().ok();
    let clock = Arc::new(Clock::new());
    let io = TokioIo::new(Watched {
        inner: stream,
        clock: clock.clone(),
    });
    let service = Tracked {
        inner: TowerToHyperService::new(app),
        clock: clock.clone(),
        peer,
    };
    let conn = http1::Builder::new()
        .keep_alive(true)
        .serve_connection(io, service);
    tokio::pin!(conn);
    let mut stopping = false;
    loop {
        tokio::select! {
            result = conn.as_mut() => {
                if let Err(error) = result {
                    tracing::debug!(error = %error, "connection ended with an error");
                }
                return;
            }
            reason = clock.expired(limits) => {
                // Dropping the connection closes the socket.
                tracing::debug!(reason, "closing connection");
                return;
            }
            _ = stop.cancelled(), if !stopping => {
                stopping = true;
                conn.as_mut().graceful_shutdown();
            }
        }
    }
}

const NONE: u64 = u64::MAX;

/// What one connection is doing, in milliseconds since it was accepted.
struct Clock {
    epoch: Instant,
    in_flight: AtomicUsize,
    /// When the current request head began to arrive (NONE: not reading one).
    head_started: AtomicU64,
    /// When the last response was handed over.
    idle_since: AtomicU64,
    /// Wakes the watchdog when a deadline moves.
    changed: Notify,
}

impl Clock {
    fn new() -> Self {
        Self {
            epoch: Instant::now(),
            in_flight: AtomicUsize::new(0),
            // A new connection owes its first request head at once.
            head_started: AtomicU64::new(0),
            idle_since: AtomicU64::new(0),
            changed: Notify::new(),
        }
    }

    fn now(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(NONE - 1)
    }

    fn bytes_read(&self) {
        if self.in_flight.load(Ordering::Relaxed) == 0
            && self.head_started.load(Ordering::Relaxed) == NONE
        {
            self.head_started.store(self.now(), Ordering::Relaxed);
            // The watchdog may be asleep until a later idle deadline.
            self.changed.notify_one();
        }
    }

    fn request_started(&self) {
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        self.head_started.store(NONE, Ordering::Relaxed);
        self.changed.notify_one();
    }

    fn request_ended(&self) {
        self.idle_since.store(self.now(), Ordering::Relaxed);
        self.in_flight.fetch_sub(1, Ordering::Relaxed);
        self.changed.notify_one();
    }

    /// Resolves when a deadline has passed, naming it; never while a request
    /// is being handled.
    async fn expired(&self, limits: ConnectionLimits) -> &'static str {
        let millis = |d: Duration| u64::try_from(d.as_millis()).unwrap_or(NONE - 1);
        let header = millis(limits.header_read_timeout);
        let idle = millis(limits.idle_timeout);
        loop {
            let now = self.now();
            let head_started = self.head_started.load(Ordering::Relaxed);
            let (deadline, reason) = if self.in_flight.load(Ordering::Relaxed) > 0 {
                (NONE, None)
            } else if head_started != NONE {
                (
                    head_started.saturating_add(header),
                    Some("header read timeout"),
                )
            } else {
                let since = self.idle_since.load(Ordering::Relaxed);
                (since.saturating_add(idle), Some("idle timeout"))
            };
            if let Some(reason) = reason
                && now >= deadline
            {
                return reason;
            }
            let wait = Duration::from_millis(deadline.saturating_sub(now).max(1));
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                _ = self.changed.notified() => {}
            }
        }
    }
}

/// The socket, telling the clock when bytes arrive.
struct Watched {
    inner: TcpStream,
    clock: Arc<Clock>,
}

impl AsyncRead for Watched {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        if matches!(polled, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.clock.bytes_read();
        }
        polled
    }
}

impl AsyncWrite for Watched {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

/// The application, telling the clock when a request starts and ends.
#[derive(Clone)]
struct Tracked {
    inner: TowerToHyperService<Router>,
    clock: Arc<Clock>,
    /// The client's address, given to handlers as `ConnectInfo` (the
    /// console limits failed sign-ins by it).
    peer: Option<std::net::SocketAddr>,
}

/// Ends the request on the clock however the response ends: when its body
/// has been sent (a streamed body, such as an import's results, can
/// outlast the idle timeout), or when it is dropped unsent.
struct InFlight(Arc<Clock>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.request_ended();
    }
}

type Reply = axum::response::Response;

/// A response body holding its request's place on the clock.
struct TrackedBody {
    inner: axum::body::Body,
    _in_flight: InFlight,
}

impl hyper::body::Body for TrackedBody {
    type Data = axum::body::Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<hyper::body::Frame<Self::Data>, Self::Error>>> {
        Pin::new(&mut self.inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        self.inner.size_hint()
    }
}

impl hyper::service::Service<Request<Incoming>> for Tracked {
    type Response = Reply;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Reply, Infallible>> + Send>>;

    fn call(&self, mut request: Request<Incoming>) -> Self::Future {
        if let Some(peer) = self.peer {
            request
                .extensions_mut()
                .insert(axum::extract::ConnectInfo(peer));
        }
        self.clock.request_started();
        let in_flight = InFlight(self.clock.clone());
        let response = self.inner.call(request);
        Box::pin(async move {
            let response = response.await?;
            Ok(response.map(|inner| {
                axum::body::Body::new(TrackedBody {
                    inner,
                    _in_flight: in_flight,
                })
            }))
        })
    }
}
