//! The gateway's Prometheus metrics (base units, `_total` counters, no user ids in labels) and
//! the middleware that counts and times HTTP requests by their matched route.

use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::http::Method;
use axum::middleware::Next;
use axum::response::Response;
use followup_infra::metrics::{counter, counter_vec, histogram, histogram_vec, int_gauge};
use prometheus::{Histogram, HistogramVec, IntCounter, IntCounterVec, IntGauge, Registry};

/// All gateway metrics, registered in their own registry (one per server, so tests can run
/// several servers in one process).
#[derive(Clone)]
pub struct GatewayMetrics {
    pub registry: Registry,
    /// `http_requests_total{method,route,status}`.
    pub http_requests: IntCounterVec,
    /// `http_request_duration_seconds{method,route}`: until the response head (for the SSE
    /// route: until the first frame is ready).
    pub http_duration: HistogramVec,
    /// `followup_sse_clients`: open stream connections.
    pub sse_clients: IntGauge,
    /// `followup_sse_frames_total`: `metrics` frames written to stream clients.
    pub sse_frames: IntCounter,
    /// `followup_sse_clients_dropped_total`: clients cut off because their buffer was full.
    pub sse_dropped: IntCounter,
    /// `followup_sse_push_latency_seconds`: projector commit (`committedAt` of the notice) to
    /// the frame handed to the connection.
    pub push_latency: Histogram,
    /// `followup_change_notices_total`: notices received from the projector.
    pub notices: IntCounter,
    /// `followup_figure_refreshes_total{outcome}`: hub reloads of a scope's figures.
    pub refreshes: IntCounterVec,
}

impl GatewayMetrics {
    /// Creates and registers every metric.
    pub fn new() -> Self {
        let registry = Registry::new();
        let r = &registry;
        let http_requests = counter_vec(
            r,
            "http_requests_total",
            "HTTP requests by matched route",
            &["method", "route", "status"],
        );
        let http_duration = histogram_vec(
            r,
            "http_request_duration_seconds",
            "HTTP request duration until the response head, by matched route",
            vec![
                0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
            ],
            &["method", "route"],
        );
        let sse_clients = int_gauge(r, "followup_sse_clients", "Open SSE stream connections");
        let sse_frames = counter(
            r,
            "followup_sse_frames_total",
            "Figure frames written to SSE clients",
        );
        let sse_dropped = counter(
            r,
            "followup_sse_clients_dropped_total",
            "SSE clients disconnected because they fell too far behind",
        );
        let push_latency = histogram(
            r,
            "followup_sse_push_latency_seconds",
            "Projection commit to SSE frame written",
            vec![
                0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
            ],
        );
        let notices = counter(
            r,
            "followup_change_notices_total",
            "Change notices received from the projector",
        );
        let refreshes = counter_vec(
            r,
            "followup_figure_refreshes_total",
            "Reloads of a scope's figures for its stream clients",
            &["outcome"],
        );
        for outcome in ["pushed", "unchanged", "error"] {
            refreshes.with_label_values(&[outcome]);
        }
        GatewayMetrics {
            registry,
            http_requests,
            http_duration,
            sse_clients,
            sse_frames,
            sse_dropped,
            push_latency,
            notices,
            refreshes,
        }
    }
}

impl Default for GatewayMetrics {
    fn default() -> Self {
        Self::new()
    }
}

/// Middleware: counts and times every request under its route template (`/api/followup/metrics`,
/// never the raw path, so unknown paths cannot blow up the label set).
pub async fn track_http(
    State(metrics): State<GatewayMetrics>,
    request: Request,
    next: Next,
) -> Response {
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_else(|| "unmatched".to_owned());
    // Only standard methods become label values; anything else is "OTHER".
    let method = match *request.method() {
        Method::GET
        | Method::HEAD
        | Method::POST
        | Method::PUT
        | Method::DELETE
        | Method::PATCH
        | Method::OPTIONS => request.method().as_str().to_owned(),
        _ => "OTHER".to_owned(),
    };
    let started = Instant::now();
    let response = next.run(request).await;
    let status = response.status().as_u16().to_string();
    metrics
        .http_duration
        .with_label_values(&[method.as_str(), route.as_str()])
        .observe(started.elapsed().as_secs_f64());
    metrics
        .http_requests
        .with_label_values(&[method.as_str(), route.as_str(), status.as_str()])
        .inc();
    response
}
