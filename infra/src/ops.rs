//! The operational HTTP endpoints of the producer and the projector: `/metrics` (Prometheus text
//! format), `/healthz` (the process is alive) and `/readyz` (its dependencies answer).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use prometheus::{Encoder, Registry, TextEncoder};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

type Checks = Vec<(&'static str, Arc<AtomicBool>)>;

/// Named readiness flags; `/readyz` answers 200 only when all are set.
#[derive(Clone, Default)]
pub struct Readiness {
    checks: Arc<std::sync::Mutex<Checks>>,
}

impl Readiness {
    /// Registers a check (initially not ready) and returns its flag.
    pub fn check(&self, name: &'static str) -> Arc<AtomicBool> {
        let flag = Arc::new(AtomicBool::new(false));
        self.checks
            .lock()
            .expect("readiness lock")
            .push((name, flag.clone()));
        flag
    }

    /// The names of the checks that are not ready; `starting` while none is registered yet (a
    /// probe answered between the listener's start and the first `check` must not read "ready").
    pub fn failing(&self) -> Vec<&'static str> {
        let checks = self.checks.lock().expect("readiness lock");
        if checks.is_empty() {
            return vec!["starting"];
        }
        checks
            .iter()
            .filter(|(_, f)| !f.load(Ordering::Relaxed))
            .map(|(n, _)| *n)
            .collect()
    }
}

/// The router with `/metrics`, `/healthz` and `/readyz`; the gateway merges it into its own.
pub fn ops_router(registry: Registry, readiness: Readiness) -> Router {
    health_router(readiness).merge(metrics_router(registry))
}

/// `/healthz` and `/readyz` alone (the gateway's public port when `/metrics` has a listener of
/// its own).
pub fn health_router(readiness: Readiness) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .with_state(readiness)
}

/// `/metrics` alone.
pub fn metrics_router(registry: Registry) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .with_state(registry)
}

/// Serves the operational endpoints on `listener` until `shutdown` fires.
pub async fn serve_ops(
    listener: TcpListener,
    registry: Registry,
    readiness: Readiness,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    axum::serve(listener, ops_router(registry, readiness))
        .with_graceful_shutdown(async move { shutdown.cancelled().await })
        .await
}

async fn metrics(State(registry): State<Registry>) -> impl IntoResponse {
    let mut buf = Vec::with_capacity(8 * 1024);
    let families = registry.gather();
    match TextEncoder::new().encode(&families, &mut buf) {
        Ok(()) => (
            StatusCode::OK,
            [(
                header::CONTENT_TYPE,
                TextEncoder::new().format_type().to_owned(),
            )],
            buf,
        )
            .into_response(),
        Err(err) => {
            tracing::error!(error = %err, "encoding metrics");
            StatusCode::INTERNAL_SERVER_ERROR.into_response()
        }
    }
}

async fn readyz(State(readiness): State<Readiness>) -> impl IntoResponse {
    let failing = readiness.failing();
    if failing.is_empty() {
        (StatusCode::OK, "ready".to_owned())
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("not ready: {}", failing.join(", ")),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn not_ready_until_every_registered_check_is() {
        let readiness = Readiness::default();
        // Nothing registered yet: the service is starting, not ready.
        assert_eq!(readiness.failing(), vec!["starting"]);
        let db = readiness.check("database");
        assert_eq!(readiness.failing(), vec!["database"]);
        db.store(true, Ordering::Relaxed);
        assert!(readiness.failing().is_empty());
    }
}
