//! The cockpit page: static HTML, JavaScript and CSS compiled into the binary (no build step,
//! no separate front-end server).

use axum::http::{HeaderName, HeaderValue, header};
use axum::response::{IntoResponse, Response};

const INDEX_HTML: &str = include_str!("../static/index.html");
const COCKPIT_JS: &str = include_str!("../static/cockpit.js");
const COCKPIT_CSS: &str = include_str!("../static/cockpit.css");

/// Scripts, styles and connections from this origin only; no inline code, no framing.
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; \
                   img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

fn asset(content_type: &'static str, body: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, HeaderValue::from_static(content_type)),
            (header::CACHE_CONTROL, HeaderValue::from_static("no-cache")),
        ],
        body,
    )
        .into_response()
}

/// `GET /`.
pub async fn index() -> Response {
    let mut response = asset("text/html; charset=utf-8", INDEX_HTML);
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    // The token travels in the fragment, which browsers never send; keep the page's URL
    // out of other sites' logs too.
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    headers.insert(
        HeaderName::from_static("x-frame-options"),
        HeaderValue::from_static("DENY"),
    );
    response
}

/// `GET /assets/cockpit.js`.
pub async fn script() -> Response {
    asset("text/javascript; charset=utf-8", COCKPIT_JS)
}

/// `GET /assets/cockpit.css`.
pub async fn style() -> Response {
    asset("text/css; charset=utf-8", COCKPIT_CSS)
}
