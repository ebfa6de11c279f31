//! CORS for an allow-list of exact origins (`CORS_ORIGINS`), with credentials. A request from a
//! listed origin gets `Access-Control-Allow-Origin: <origin>` and
//! `Access-Control-Allow-Credentials: true`; its preflight (`OPTIONS` with
//! `Access-Control-Request-Method`) is answered here with what the cockpit sends (GET,
//! `Authorization`, `Last-Event-ID`, `Content-Type`). Any other origin gets no CORS header at
//! all, so the browser refuses. Every response carries `Vary: Origin` since its headers depend
//! on it. Hand-written rather than tower-http's `CorsLayer`, which adds
//! `Access-Control-Allow-Credentials` and the allowed methods to preflights of any origin.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

/// The paths a page of another origin may call: the figures and the stream, under both names.
pub const CROSS_ORIGIN_PATHS: [&str; 7] = [
    "/api/followup/metrics",
    "/api/followup/runs",
    "/api/followup/leads",
    "/api/followup/history",
    "/api/dashboard/followup-stream",
    "/metrics/followup",
    "/metrics/followup/stream",
];

/// How long a browser may cache a preflight answer (seconds).
const PREFLIGHT_MAX_AGE: &str = "600";

/// The allowed origins (lower-case, as browsers send them); cheap to clone.
#[derive(Clone, Debug)]
pub struct CorsOrigins(Arc<[HeaderValue]>);

impl CorsOrigins {
    /// From origins validated by [`crate::config::parse_cors_origins`].
    pub fn new(origins: &[String]) -> anyhow::Result<CorsOrigins> {
        let values = origins
            .iter()
            .map(|o| HeaderValue::from_str(o))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(CorsOrigins(values.into()))
    }

    /// The origins, as listed.
    pub fn origins(&self) -> Vec<String> {
        self.0
            .iter()
            .filter_map(|o| o.to_str().ok().map(str::to_owned))
            .collect()
    }

    fn allows(&self, origin: &HeaderValue) -> bool {
        self.0.iter().any(|allowed| allowed == origin)
    }
}

/// The middleware, around the whole router (a layer on the routes alone would not see the
/// `OPTIONS` requests the router answers 405); it acts on [`CROSS_ORIGIN_PATHS`] only.
pub async fn cors(State(origins): State<CorsOrigins>, request: Request, next: Next) -> Response {
    if !CROSS_ORIGIN_PATHS.contains(&request.uri().path()) {
        return next.run(request).await;
    }
    let allowed = request
        .headers()
        .get(header::ORIGIN)
        .filter(|origin| origins.allows(origin))
        .cloned();
    let preflight = request.method() == Method::OPTIONS
        && request
            .headers()
            .contains_key(header::ACCESS_CONTROL_REQUEST_METHOD);
    let mut response = match (&allowed, preflight) {
        (Some(_), true) => {
            let mut response = StatusCode::NO_CONTENT.into_response();
            let headers = response.headers_mut();
            headers.insert(
                header::ACCESS_CONTROL_ALLOW_METHODS,
                HeaderValue::from_static("GET"),
            );
            headers.insert(
                header::ACCESS_CONTROL_ALLOW_HEADERS,
                HeaderValue::from_static("authorization, last-event-id, content-type"),
            );
            headers.insert(
                header::ACCESS_CONTROL_MAX_AGE,
                HeaderValue::from_static(PREFLIGHT_MAX_AGE),
            );
            response
        }
        _ => next.run(request).await,
    };
    let headers = response.headers_mut();
    headers.append(header::VARY, HeaderValue::from_static("origin"));
    if let Some(origin) = allowed {
        headers.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin);
        headers.insert(
            header::ACCESS_CONTROL_ALLOW_CREDENTIALS,
            HeaderValue::from_static("true"),
        );
    }
    response
}
