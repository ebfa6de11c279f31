//! The widget package (`widget/`) in Debian's Chromium, as the CRM would use it (issue 14): a
//! React host app on another origin embeds `<FollowUpWidget />` against the real gateway and
//! hands it tokens that live 20 s; for two minutes the CRM changes data every 5 s. Every change
//! must be shown, in order, with no gap in the frames and no "signed out", the stream
//! re-authorised before each expiry (make before break). Then the CRM sprint's own hook, exactly
//! as the sprint writes it, receives frames. Screenshots in German and English are kept in
//! `target/artifacts/` (the README's copies are in `docs/images/`).
//!
//! `WIDGET_TEST_SECS` shortens the two minutes for a local run.

use std::path::{Path, PathBuf};
use std::time::Duration;

use chrono::Utc;
use serde_json::{Value, json};

use crate::browser::{Driver, artifacts_dir, browser_ready, install_node_modules};
use crate::support::{SECRET, Stack, insert_lead};

const TOKEN_TTL_SECS: u64 = 20;
const CHANGE_EVERY: Duration = Duration::from_secs(5);

fn widget_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../widget")
}

fn test_duration() -> Duration {
    let secs = std::env::var("WIDGET_TEST_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(120);
    Duration::from_secs(secs)
}

#[tokio::test]
async fn host_app_on_another_origin_keeps_the_widget_live_through_token_renewals() {
    assert!(browser_ready());
    install_node_modules(&widget_dir(), "esbuild");
    let shots = artifacts_dir();
    let mut driver = Driver::start(
        &widget_dir(),
        "e2e/host-driver.mjs",
        &[
            ("SECRET", SECRET.to_owned()),
            ("TOKEN_TTL_SECS", TOKEN_TTL_SECS.to_string()),
            ("SCREENSHOT_DIR", shots.display().to_string()),
        ],
    );
    let host: String = serde_json::from_value(driver.expect("HOST").await).unwrap();
    // The host's origin is the only one allowed; the gateway is on another port, so another
    // origin: without CORS the browser would refuse every request.
    let stack = Stack::start_with(|c| c.cors_origins = host.clone()).await;
    driver
        .send(&format!("GATEWAY {}", json!(stack.url(""))))
        .await;

    let ready = driver.expect("READY").await;
    assert_eq!(ready, json!({"pendingT3": "0", "status": "live"}));

    let started = tokio::time::Instant::now();
    let mut pending = 0;
    while started.elapsed() < test_duration() {
        tokio::time::sleep(CHANGE_EVERY).await;
        insert_lead(&stack.db.pool, "u1", &[], Utc::now()).await;
        pending += 1;
        driver
            .send(&format!(
                "EXPECT {}",
                json!({"pendingT3": pending.to_string()})
            ))
            .await;
        let shown = driver.expect("SHOWN").await;
        eprintln!("[widget] {shown}");
    }
    driver.send("FINISH").await;
    let report = driver.expect("REPORT").await;
    eprintln!("[widget] report: {report}");
    check_report(&report, pending);
    // A tile opened its list across origins (Bearer): every pending lead, in German, and Esc
    // gave the focus back; the 30-day chart is under the tiles.
    assert_eq!(
        report["widgetList"],
        json!({"title": "T+3 ausstehend", "rows": pending, "focus": "T+3 ausstehend", "focusAfterEsc": "pendingT3"})
    );
    assert_eq!(report["widgetChart"], json!({"days": 30, "tableRows": 30}));

    let crm = driver.expect("CRM_READY").await;
    assert_eq!(crm["session"], "200", "the CRM page got its session cookie");
    assert_eq!(
        crm["data"]["pendingT3"], pending,
        "the sprint's hook got the figures"
    );
    insert_lead(&stack.db.pool, "u1", &[], Utc::now()).await;
    driver
        .send(&format!("EXPECT_CRM {}", json!({"pendingT3": pending + 1})))
        .await;
    let done = driver.expect("DONE").await;
    assert_eq!(done["crm"]["pendingT3"], pending + 1);
    driver.finish().await;
    for name in ["widget-de.png", "widget-en.png"] {
        let size = std::fs::metadata(shots.join(name)).expect(name).len();
        assert!(size > 10_000, "{name} has content ({size} bytes)");
    }
}

/// What the user saw and what the browser did, against what the two minutes must show: for the
/// widget package (Bearer streams) and for the gateway's own page framed by the CRM (cookie
/// streams, tokens by postMessage).
fn check_report(report: &Value, changes: usize) {
    let expected: Vec<String> = (0..=changes).map(|n| n.to_string()).collect();
    let elapsed_secs = u64::try_from(changes).unwrap() * CHANGE_EVERY.as_secs();
    // A 20 s token: a successor every 15 s or so.
    let least_renewals = elapsed_secs / TOKEN_TTL_SECS;
    for (name, seen) in [("widget", &report["widget"]), ("page", &report["page"])] {
        assert_eq!(
            seen["pendingT3Shown"],
            json!(expected),
            "{name}: every change shown, in order, none skipped or undone"
        );
        assert_eq!(
            seen["statusesAfterLive"],
            json!(["live"]),
            "{name}: never reconnecting or signed out while the host is signed in"
        );
        // The gateway sends a frame at least every 5 s; a renewal that left a gap shows here.
        let gap = seen["maxFrameGapMs"].as_u64().unwrap();
        assert!(
            gap <= 8_000,
            "{name}: longest time without a frame {gap} ms"
        );
        let streams = &seen["streams"];
        assert!(
            streams["maxOpen"].as_u64().unwrap() <= 2,
            "{name}: at most the stream and its successor: {streams}"
        );
        assert!(
            streams["count"].as_u64().unwrap() > least_renewals,
            "{name}: renewed before each expiry: {streams}"
        );
        if least_renewals > 0 {
            assert!(
                streams["minOverlapMs"].as_i64().unwrap() > 0,
                "{name}: each successor opened before its predecessor closed: {streams}"
            );
        }
    }
    assert_eq!(
        report["widget"]["streams"]["allBearer"], true,
        "the widget sends the host's token"
    );
    assert!(
        report["tokensFetched"].as_u64().unwrap()
            >= report["widget"]["streams"]["count"].as_u64().unwrap()
    );
    assert!(report["page"]["tokenRequests"].as_u64().unwrap() >= least_renewals);
    assert_eq!(
        report["page"]["lang"], "de",
        "the page speaks German by default"
    );
    assert_eq!(report["page"]["label"], "T+3 ausstehend");
    assert_eq!(report["consoleErrors"], json!([]));
    assert_eq!(
        report["english"],
        json!({"title": "Follow-up Automation", "label": "T+3 pending", "lang": "en"})
    );
}
