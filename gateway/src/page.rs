//! The cockpit page: static HTML, JavaScript and CSS compiled into the binary (no build step,
//! no separate front-end server).
//!
//! `GET /` serves the HTML with the CSS and the script inlined, so the figures are fetched
//! without waiting for two more requests; the Content-Security-Policy allows exactly those two
//! inline blocks by their SHA-256 hashes and nothing else inline. The same files are also served
//! under `/assets/` for anyone who wants them separately.
//!
//! The page speaks German (the CRM's language) unless `?lang=en` or the browser's
//! `Accept-Language` prefers English; both variants are rendered once at start-up with the
//! configured `FOLLOWUP_TZ` (times are shown in it) and the CRM's origins (`CORS_ORIGINS`), which
//! may frame the page and hand it fresh tokens by `postMessage` (see `static/cockpit.js`).

use std::sync::LazyLock;

use axum::extract::Query;
use axum::http::{HeaderMap, HeaderName, HeaderValue, header};
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

/// A language of the page.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Language {
    German,
    English,
}

impl Language {
    fn tag(self) -> &'static str {
        match self {
            Language::German => "de",
            Language::English => "en",
        }
    }

    /// The words of the HTML; the script has its own (status, trends, scope, list titles, due).
    fn words(self) -> [(&'static str, &'static str); 20] {
        match self {
            Language::German => [
                ("title", "Follow-up Automation"),
                ("connecting", "verbinde …"),
                ("pendingT3", "T+3 ausstehend"),
                ("pendingT7", "T+7 ausstehend"),
                ("sentToday", "Heute versendet"),
                ("conversionRate", "Konversionsrate"),
                ("close", "Schließen"),
                ("colCompany", "Firma"),
                ("colOwner", "Verantwortlich"),
                ("colStatus", "Status"),
                ("colDue", "Fällig"),
                ("colLast", "Letztes Follow-up"),
                ("colReason", "Fehlergrund"),
                ("more", "Mehr laden"),
                ("chartTitle", "Letzte 30 Tage"),
                ("t3Sent", "T+3 versendet"),
                ("t7Sent", "T+7 versendet"),
                ("conversions", "Konversionen"),
                ("day", "Tag"),
                ("failed", "Fehlgeschlagen"),
            ],
            Language::English => [
                ("title", "Follow-up Automation"),
                ("connecting", "connecting …"),
                ("pendingT3", "T+3 pending"),
                ("pendingT7", "T+7 pending"),
                ("sentToday", "Sent today"),
                ("conversionRate", "Conversion rate"),
                ("close", "Close"),
                ("colCompany", "Company"),
                ("colOwner", "Owner"),
                ("colStatus", "Status"),
                ("colDue", "Due"),
                ("colLast", "Last follow-up"),
                ("colReason", "Failure reason"),
                ("more", "Load more"),
                ("chartTitle", "Last 30 days"),
                ("t3Sent", "T+3 sent"),
                ("t7Sent", "T+7 sent"),
                ("conversions", "Conversions"),
                ("day", "Day"),
                ("failed", "Failed"),
            ],
        }
    }

    /// `?lang=` (the host's choice) first, then the first of German or English in
    /// `Accept-Language` by preference; German when neither says.
    pub fn negotiate(lang: Option<&str>, accept_language: Option<&str>) -> Language {
        let of = |tag: &str| match tag.trim().split('-').next().map(str::to_ascii_lowercase) {
            Some(primary) if primary == "de" => Some(Language::German),
            Some(primary) if primary == "en" => Some(Language::English),
            _ => None,
        };
        if let Some(chosen) = lang.and_then(of) {
            return chosen;
        }
        let mut ranked: Vec<(f32, Language)> = accept_language
            .unwrap_or_default()
            .split(',')
            .filter_map(|item| {
                let mut parts = item.split(';');
                let language = of(parts.next()?)?;
                let q = parts
                    .find_map(|p| p.trim().strip_prefix("q="))
                    .map_or(Some(1.0), |q| q.trim().parse::<f32>().ok())?;
                (q > 0.0).then_some((q, language))
            })
            .collect();
        // Stable: among equal weights the earlier entry wins.
        ranked.sort_by(|a, b| b.0.total_cmp(&a.0));
        ranked.first().map_or(Language::German, |(_, l)| *l)
    }
}

/// One rendered variant of the page and its headers.
struct Page {
    html: String,
    csp: HeaderValue,
    language: HeaderValue,
}

/// Both variants, rendered for this gateway's time zone and CRM origins.
pub struct Pages {
    german: Page,
    english: Page,
    /// No origin may frame the page: also `X-Frame-Options: DENY` for old browsers.
    deny_framing: bool,
}

fn csp_hash(content: &str) -> String {
    let digest = Sha256::digest(content.as_bytes());
    format!(
        "'sha256-{}'",
        base64::engine::general_purpose::STANDARD.encode(digest)
    )
}

/// The HTML with its assets inlined, before the per-variant placeholders are filled.
static INLINED: LazyLock<String> = LazyLock::new(|| {
    assert!(
        INDEX_HTML.contains(STYLE_LINK)
            && INDEX_HTML.contains(SCRIPT_TAG)
            && INDEX_HTML.contains(EARLY_TAG),
        "static/index.html links the stylesheet and the scripts"
    );
    // early.js starts the figures request from <head>; cockpit.js runs at the end of the body,
    // where the tiles it fills already exist.
    INDEX_HTML
        .replace(EARLY_TAG, &format!("<script>{EARLY_JS}</script>"))
        .replace(STYLE_LINK, &format!("<style>{COCKPIT_CSS}</style>"))
        .replace(SCRIPT_TAG, "")
        .replace(
            "</body>",
            &format!("<script>{COCKPIT_JS}</script>\n</body>"),
        )
});

/// Escapes text for an HTML attribute or text node.
fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

impl Pages {
    /// Renders both languages. `tz` is `FOLLOWUP_TZ`; `hosts` are the CRM's origins
    /// (`CORS_ORIGINS`), allowed to frame the page and to send it tokens.
    pub fn new(tz: &str, hosts: &[String]) -> Pages {
        let ancestors = if hosts.is_empty() {
            "'none'".to_owned()
        } else {
            format!("'self' {}", hosts.join(" "))
        };
        let csp = format!(
            "default-src 'none'; script-src 'self' {} {}; style-src 'self' {}; connect-src 'self'; \
             img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors {ancestors}",
            csp_hash(EARLY_JS),
            csp_hash(COCKPIT_JS),
            csp_hash(COCKPIT_CSS)
        );
        let render = |language: Language| {
            let mut html = INLINED
                .replace("{{lang}}", language.tag())
                .replace("{{tz}}", &escape(tz))
                .replace("{{hosts}}", &escape(&hosts.join(" ")));
            for (key, word) in language.words() {
                html = html.replace(&format!("{{{{{key}}}}}"), word);
            }
            Page {
                html,
                csp: HeaderValue::from_str(&csp).expect("CSP is a valid header value"),
                language: HeaderValue::from_static(language.tag()),
            }
        };
        Pages {
            german: render(Language::German),
            english: render(Language::English),
            deny_framing: hosts.is_empty(),
        }
    }
}

/// `?lang=` of the page.
#[derive(Debug, Default, serde::Deserialize)]
pub struct PageQuery {
    lang: Option<String>,
}

/// `GET /`.
pub fn index(pages: &Pages, query: &Query<PageQuery>, headers: &HeaderMap) -> Response {
    let accept = headers
        .get(header::ACCEPT_LANGUAGE)
        .and_then(|v| v.to_str().ok());
    let page = match Language::negotiate(query.lang.as_deref(), accept) {
        Language::German => &pages.german,
        Language::English => &pages.english,
    };
    let mut response = (
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/html; charset=utf-8"),
            ),
            (header::CACHE_CONTROL, HeaderValue::from_static("no-cache")),
            (header::VARY, HeaderValue::from_static("Accept-Language")),
        ],
        page.html.clone(),
    )
        .into_response();
    let out = response.headers_mut();
    out.insert(header::CONTENT_SECURITY_POLICY, page.csp.clone());
    out.insert(header::CONTENT_LANGUAGE, page.language.clone());
    // The token travels in the fragment, which browsers never send; keep the page's URL
    // out of other sites' logs too.
    out.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    if pages.deny_framing {
        out.insert(
            HeaderName::from_static("x-frame-options"),
            HeaderValue::from_static("DENY"),
        );
    }
    response
}

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
        let pages = Pages::new("Europe/Berlin", &[]);
        let page = &pages.german;
        assert!(page.html.contains("<style>:root"));
        assert!(page.html.contains("<script>'use strict';"));
        assert!(!page.html.contains("/assets/"));
        assert!(!page.html.contains("{{"), "every placeholder filled");
        let csp = page.csp.to_str().unwrap();
        assert!(csp.contains(&csp_hash(COCKPIT_JS)));
        assert!(csp.contains(&csp_hash(EARLY_JS)));
        assert!(csp.ends_with("frame-ancestors 'none'"));
        assert!(page.html.find("window.followupEarly") < page.html.find("<body>"));
        assert!(!csp.contains("unsafe-inline"));
    }

    #[test]
    fn variants_carry_their_words_the_zone_and_the_hosts() {
        let hosts = vec!["https://crm.example.com".to_owned()];
        let pages = Pages::new("Europe/Vienna", &hosts);
        assert!(pages.german.html.contains(r#"<html lang="de">"#));
        assert!(pages.german.html.contains("<h2>T+3 ausstehend</h2>"));
        assert!(pages.english.html.contains("<h2>T+3 pending</h2>"));
        // The lists and the chart, in both languages.
        assert!(pages.german.html.contains(">Mehr laden</button>"));
        assert!(pages.english.html.contains(">Load more</button>"));
        assert!(
            pages
                .german
                .html
                .contains(r#"<figcaption id="chart-title">Letzte 30 Tage</figcaption>"#)
        );
        assert!(pages.english.html.contains(">Failure reason</th>"));
        assert!(
            pages
                .english
                .html
                .contains(r#"<meta name="followup-tz" content="Europe/Vienna">"#)
        );
        assert!(
            pages
                .german
                .html
                .contains(r#"<meta name="followup-hosts" content="https://crm.example.com">"#)
        );
        let csp = pages.german.csp.to_str().unwrap();
        assert!(csp.ends_with("frame-ancestors 'self' https://crm.example.com"));
        assert!(!pages.deny_framing);
    }

    #[test]
    fn german_unless_english_is_asked_for() {
        use Language::{English, German};
        let cases: [(Option<&str>, Option<&str>, Language); 9] = [
            (None, None, German),
            (None, Some("en-US,en;q=0.9"), English),
            (None, Some("de-DE,de;q=0.9,en;q=0.8"), German),
            (None, Some("fr-FR,en;q=0.5,de;q=0.4"), English),
            (None, Some("en;q=0.2,de;q=0.8"), German),
            (None, Some("fr, it"), German),
            (None, Some("en;q=0"), German),
            (Some("en"), Some("de-DE"), English),
            (Some("xx"), Some("en-GB"), English),
        ];
        for (lang, accept, want) in cases {
            assert_eq!(
                Language::negotiate(lang, accept),
                want,
                "{lang:?} {accept:?}"
            );
        }
    }
}
