//! The cockpit page: static HTML, JavaScript and CSS compiled into the binary (no build step,
//! no separate front-end server).
//!
//! `GET /` serves the HTML with the CSS and the script inlined, so the figures are fetched
//! without waiting for two more requests; the Content-Security-Policy allows exactly those two
//! inline blocks by their SHA-256 hashes and nothing else inline. The same files are also served
//! under `/assets/` for anyone who wants them separately.

use std::sync::LazyLock;

use axum::http::{HeaderName, HeaderValue, header};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use sha2::{Digest, Sha256};

const INDEX_HTML: &str = include_str!("../static/index.html");
const COCKPIT_JS: &str = include_str!("../static/cockpit.js");
const COCKPIT_CSS: &str = include_str!("../static/cockpit.css");
const EARLY_JS: &str = include_str!("../static/early.js");

const STYLE_LINK: &str = r#"<link rel="stylesheet" href="/assets/cockpit.css">"#;
const SCRIPT_TAG: &str = r#"<script src="/assets/cockpit.js" defer></script>"#;
const EARLY_TAG: &str = r#"<script src="/assets/early.js"></script>"#;

/// The page with inlined assets and its CSP, built once.
struct Page {
    html: String,
    csp: HeaderValue,
}

fn csp_hash(content: &str) -> String {
    let digest = Sha256::digest(content.as_bytes());
    format!(
        "'sha256-{}'",
        base64::engine::general_purpose::STANDARD.encode(digest)
    )
}

static PAGE: LazyLock<Page> = LazyLock::new(|| {
    assert!(
        INDEX_HTML.contains(STYLE_LINK)
            && INDEX_HTML.contains(SCRIPT_TAG)
            && INDEX_HTML.contains(EARLY_TAG),
        "static/index.html links the stylesheet and the scripts"
    );
    // early.js starts the figures request from <head>; cockpit.js runs at the end of the body,
    // where the tiles it fills already exist.
    let html = INDEX_HTML
        .replace(EARLY_TAG, &format!("<script>{EARLY_JS}</script>"))
        .replace(STYLE_LINK, &format!("<style>{COCKPIT_CSS}</style>"))
        .replace(SCRIPT_TAG, "")
        .replace(
            "</body>",
            &format!("<script>{COCKPIT_JS}</script>\n</body>"),
        );
    let csp = format!(
        "default-src 'none'; script-src 'self' {} {}; style-src 'self' {}; connect-src 'self'; \
         img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
        csp_hash(EARLY_JS),
        csp_hash(COCKPIT_JS),
        csp_hash(COCKPIT_CSS)
    );
    Page {
        html,
        csp: HeaderValue::from_str(&csp).expect("CSP is a valid header value"),
    }
});

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
    let page = &*PAGE;
    let mut response = (
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/html; charset=utf-8"),
            ),
            (header::CACHE_CONTROL, HeaderValue::from_static("no-cache")),
        ],
        page.html.clone(),
    )
        .into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_SECURITY_POLICY, page.csp.clone());
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

/// `GET /assets/early.js`.
pub async fn early_script() -> Response {
    asset("text/javascript; charset=utf-8", EARLY_JS)
}

/// `GET /assets/cockpit.css`.
pub async fn style() -> Response {
    asset("text/css; charset=utf-8", COCKPIT_CSS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_page_inlines_its_assets_and_allows_only_them() {
        let page = &*PAGE;
        assert!(page.html.contains("<style>:root"));
        assert!(page.html.contains("<script>'use strict';"));
        assert!(!page.html.contains("/assets/"));
        let csp = page.csp.to_str().unwrap();
        assert!(csp.contains(&csp_hash(COCKPIT_JS)));
        assert!(csp.contains(&csp_hash(EARLY_JS)));
        assert!(page.html.find("window.followupEarly") < page.html.find("<body>"));
        assert!(!csp.contains("unsafe-inline"));
    }
}
