//! Accepting connections: HTTP/1.1 through hyper with a header-read timeout, TCP tuned for
//! long-lived streams, and a graceful end that lets open responses finish.

use std::time::Duration;

use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// How accepted connections are set up.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Connections {
    /// `HTTP_HEADER_TIMEOUT_MS`: complete request headers within this time, or the connection
    /// is closed (also between requests on a kept-alive connection).
    pub(crate) header_timeout: Duration,
    /// `TCP_USER_TIMEOUT_MS`.
    pub(crate) user_timeout: Duration,
}

/// Serves HTTP/1.1 on `listener` until `shutdown` fires, then lets every open connection finish
/// its response (streams end on the same signal) and returns. Hyper directly rather than
/// `axum::serve`, which does not expose hyper's `header_read_timeout`: a client that opens
/// connections and sends its headers slowly, or never, would hold them forever.
///
/// Memory per idle SSE stream (issue 17; `bench/results/2026-11-30-sse-memory.md`): hyper holds
/// an 8 KiB header buffer for the connection's life and, while a response streams, allocates a
/// second 8 KiB read buffer to notice the client closing (the first is still shared with the
/// request's headers then). Neither is configurable: `max_buf_size` cannot go below 8 KiB and
/// does not change the first read. `half_close(true)` would skip that read buffer, but hyper
/// would then notice a departed client only when a heartbeat write fails, and its stream slot
/// (the per-user and per-gateway caps) would stay taken meanwhile — measured and decided
/// against; the builder keeps hyper's defaults apart from the header timeout. The binary's
/// allocator (jemalloc, `main.rs`) is what keeps an idle stream at ~13.5 KiB instead of ~16.5.
pub(crate) async fn serve_connections(
    listener: TcpListener,
    app: Router,
    connections: Connections,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(connections.header_timeout);
    let graceful = GracefulShutdown::new();
    loop {
        let accepted = tokio::select! {
            _ = shutdown.cancelled() => break,
            accepted = listener.accept() => accepted,
        };
        let tcp = match accepted {
            Ok((tcp, _peer)) => tcp,
            Err(err) if is_connection_error(&err) => continue,
            Err(err) => {
                // Out of file descriptors and the like: wait rather than spin.
                tracing::error!(error = %err, "accepting a connection");
                tokio::select! {
                    _ = shutdown.cancelled() => break,
                    _ = tokio::time::sleep(Duration::from_secs(1)) => continue,
                }
            }
        };
        tune_socket(&tcp, connections.user_timeout);
        let connection =
            http.serve_connection(TokioIo::new(tcp), TowerToHyperService::new(app.clone()));
        let connection = graceful.watch(connection);
        tokio::spawn(async move {
            if let Err(err) = connection.await {
                tracing::debug!(error = %err, "HTTP connection ended with an error");
            }
        });
    }
    drop(listener);
    graceful.shutdown().await;
    Ok(())
}

fn is_connection_error(err: &std::io::Error) -> bool {
    matches!(
        err.kind(),
        std::io::ErrorKind::ConnectionRefused
            | std::io::ErrorKind::ConnectionAborted
            | std::io::ErrorKind::ConnectionReset
    )
}

/// No Nagle delay on small SSE frames; and a peer that stops acknowledging (or keeps its window
/// shut: a stalled stream client) is disconnected by the kernel after the timeout, which frees
/// what hyper and the socket still hold for it.
fn tune_socket(tcp: &tokio::net::TcpStream, user_timeout: Duration) {
    if let Err(err) = tcp.set_nodelay(true) {
        tracing::debug!(error = %err, "TCP_NODELAY");
    }
    #[cfg(target_os = "linux")]
    if let Err(err) = socket2::SockRef::from(tcp).set_tcp_user_timeout(Some(user_timeout)) {
        tracing::debug!(error = %err, "TCP_USER_TIMEOUT");
    }
    #[cfg(not(target_os = "linux"))]
    let _ = user_timeout;
}
