//! The accept loop. axum's own `serve` has no header-read timeout, and without
//! one a client that opens connections and sends nothing (slowloris) holds
//! them forever; so connections are served by hyper's HTTP/1 builder directly,
//! with the timeout, keep-alive and graceful shutdown. Every request body gets
//! an idle timeout (no byte for `idle_timeout` ends it), so a slow but
//! progressing upload is never cut off while a stalled one is. Open connections
//! are capped; past the cap a connection gets a 503 and is closed at once.

use std::net::SocketAddr;
use std::time::Duration;

use axum::Router;
use axum::extract::ConnectInfo;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use std::convert::Infallible;
use std::pin::Pin;
use std::sync::Arc;

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;
use tower_http::timeout::TimeoutBody;

/// What one node's listener allows its clients.
#[derive(Debug, Clone, Copy)]
pub struct ConnectionLimits {
    /// No byte of headers or body for this long ends the request.
    pub idle_timeout: Duration,
    /// Connections served at once.
    pub max_connections: usize,
}

/// The answer to a connection past the cap, written before closing it. It is
/// a fixed string because no request has been read (and none will be).
const OVER_CAPACITY: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\n\
content-type: application/problem+json\r\nretry-after: 1\r\nconnection: close\r\ncontent-length: 139\r\n\r\n\
{\"type\":\"/problems/over-capacity\",\"title\":\"Over capacity\",\"status\":503,\"detail\":\"this server has too many open connections; retry shortly\"}";

/// Serves `router` on `listener` until `shutdown`, then lets open requests finish.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    limits: ConnectionLimits,
    shutdown: CancellationToken,
) {
    let graceful = GracefulShutdown::new();
    let open = Arc::new(Semaphore::new(limits.max_connections));
    let idle_timeout = limits.idle_timeout;
    loop {
        let (stream, peer) = tokio::select! {
            _ = shutdown.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok(conn) => conn,
                Err(e) => {
                    // Out of file descriptors and the like: back off instead of spinning.
                    tracing::warn!(error = %e, "accepting a connection");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let Ok(permit) = open.clone().try_acquire_owned() else {
            metrics::counter!("http_connections_refused_total").increment(1);
            tokio::spawn(refuse(stream));
            continue;
        };
        let _ = stream.set_nodelay(true);
        let router = router.clone();
        let service = tower::service_fn(move |request: axum::http::Request<Incoming>| {
            let (mut parts, body) = request.into_parts();
            parts.extensions.insert(ConnectInfo::<SocketAddr>(peer));
            let body = axum::body::Body::new(TimeoutBody::new(idle_timeout, body));
            let request = axum::http::Request::from_parts(parts, body);
            run_to_completion(router.clone(), request)
        });
        let connection = hyper::server::conn::http1::Builder::new()
            .timer(TokioTimer::new())
            .header_read_timeout(idle_timeout)
            .keep_alive(true)
            // Per-connection read buffer; uploads stream through it, so small keeps memory flat.
            .max_buf_size(64 * 1024)
            .serve_connection(TokioIo::new(stream), TowerToHyperService::new(service));
        let connection = graceful.watch(connection);
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::debug!(error = %e, %peer, "connection ended with an error");
            }
            drop(permit);
        });
    }
    drop(listener);
    // Requests in flight get a bounded time to finish.
    if tokio::time::timeout(Duration::from_secs(30), graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("some connections were still busy at shutdown");
    }
}

/// Handles a request. A write starts at once in a task of its own and runs to
/// its end even if the client disconnects: hyper drops a request's future when
/// its connection closes, possibly before polling it even once, and a write
/// must neither stop halfway nor depend on that race (PRODUCT.md §2: a vanished
/// client changes nothing about the outcome). Reads are simply dropped.
fn run_to_completion(
    router: Router,
    request: axum::http::Request<axum::body::Body>,
) -> Pin<Box<dyn Future<Output = Result<Response, Infallible>> + Send>> {
    use axum::http::Method;
    let read = matches!(
        *request.method(),
        Method::GET | Method::HEAD | Method::OPTIONS
    );
    let handling = router.oneshot(request);
    if read {
        return Box::pin(handling);
    }
    let task = tokio::spawn(handling);
    Box::pin(async move {
        Ok(match task.await {
            Ok(Ok(response)) => response,
            Ok(Err(never)) => match never {},
            Err(e) => {
                tracing::error!(error = %e, "a write's task failed");
                StatusCode::INTERNAL_SERVER_ERROR.into_response()
            }
        })
    })
}

/// Tells a connection past the cap to come back later, without reading from it.
async fn refuse(mut stream: TcpStream) {
    let _ = tokio::time::timeout(Duration::from_secs(1), async {
        let _ = stream.write_all(OVER_CAPACITY).await;
        let _ = stream.shutdown().await;
    })
    .await;
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_over_capacity_answer_declares_its_exact_length() {
        let text = std::str::from_utf8(super::OVER_CAPACITY).unwrap();
        let (head, body) = text.split_once("\r\n\r\n").unwrap();
        assert!(head.contains(&format!("content-length: {}", body.len())));
        serde_json::from_str::<serde_json::Value>(body).unwrap();
    }
}
