//! The gateway's Prometheus metrics (base units, `_total` counters, no user ids in labels) and
//! the middleware that counts and times HTTP requests by their matched route.

use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::http::Method;
use axum::middleware::Next;
use axum::response::Response;
use prometheus::{
    Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, Opts, Registry,
};

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
        let http_requests = IntCounterVec::new(
            Opts::new("http_requests_total", "HTTP requests by matched route"),
            &["method", "route", "status"],
        )
        .expect("metric");
        let http_duration = HistogramVec::new(
            HistogramOpts::new(
                "http_request_duration_seconds",
                "HTTP request duration until the response head, by matched route",
            )
            .buckets(vec![
                0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
            ]),
            &["method", "route"],
        )
        .expect("metric");
        let sse_clients =
            IntGauge::new("followup_sse_clients", "Open SSE stream connections").expect("metric");
        let sse_frames = IntCounter::new(
            "followup_sse_frames_total",
            "Figure frames written to SSE clients",
        )
        .expect("metric");
        let sse_dropped = IntCounter::new(
            "followup_sse_clients_dropped_total",
            "SSE clients disconnected because they fell too far behind",
        )
        .expect("metric");
        let push_latency = Histogram::with_opts(
            HistogramOpts::new(
                "followup_sse_push_latency_seconds",
                "Projection commit to SSE frame written",
            )
            .buckets(vec![
                0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
            ]),
        )
        .expect("metric");
        let notices = IntCounter::new(
            "followup_change_notices_total",
            "Change notices received from the projector",
        )
        .expect("metric");
        let refreshes = IntCounterVec::new(
            Opts::new(
                "followup_figure_refreshes_total",
                "Reloads of a scope's figures for its stream clients",
            ),
            &["outcome"],
        )
        .expect("metric");
        for outcome in ["pushed", "unchanged", "error"] {
            refreshes.with_label_values(&[outcome]);
        }
        let metrics = GatewayMetrics {
            registry,
            http_requests,
            http_duration,
            sse_clients,
            sse_frames,
            sse_dropped,
            push_latency,
            notices,
            refreshes,
        };
        let r = &metrics.registry;
        r.register(Box::new(metrics.http_requests.clone()))
            .expect("register");
        r.register(Box::new(metrics.http_duration.clone()))
            .expect("register");
        r.register(Box::new(metrics.sse_clients.clone()))
            .expect("register");
        r.register(Box::new(metrics.sse_frames.clone()))
            .expect("register");
        r.register(Box::new(metrics.sse_dropped.clone()))
            .expect("register");
        r.register(Box::new(metrics.push_latency.clone()))
            .expect("register");
        r.register(Box::new(metrics.notices.clone()))
            .expect("register");
        r.register(Box::new(metrics.refreshes.clone()))
            .expect("register");
        metrics
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
