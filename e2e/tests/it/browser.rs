//! The cockpit page in headless Chromium (Debian's `chromium`, driven by Playwright from
//! `gateway/browser-test/cockpit.mjs`): open `/#token=…`, see the four figures, change the
//! database, see the widget update without a reload; the screenshot is kept as
//! `target/artifacts/cockpit.png`.
//!
//! Skipped, loudly, only when `chromium` or `node` is not installed. `playwright-core` is
//! installed into `gateway/browser-test/node_modules` with npm when it is missing.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use chrono::Utc;
use followup_producer::{
    Delivery, ProducerMetrics, RunOutcome, RunReport, RunRequest, RunTrigger, execute_run,
};
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio_util::sync::CancellationToken;

use crate::support::{Stack, insert_lead, token};

pub fn chromium() -> Option<PathBuf> {
    let path =
        PathBuf::from(std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into()));
    path.exists().then_some(path)
}

fn node_available() -> bool {
    std::process::Command::new("node")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
}

pub fn browser_test_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../gateway/browser-test")
}

pub fn artifacts_dir() -> PathBuf {
    let target = std::env::var("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|_| Path::new(env!("CARGO_MANIFEST_DIR")).join("../target"));
    let dir = target.join("artifacts");
    std::fs::create_dir_all(&dir).expect("artifacts dir");
    dir
}

/// Whether the browser test can run here. Without Chromium or Node.js it fails, naming what to
/// install: a browser test that skips silently would pass while testing nothing.
pub fn browser_ready() -> bool {
    assert!(
        chromium().is_some() && node_available(),
        "the browser test needs Debian's `chromium` and `node`: \
         apt-get update && apt-get install -y chromium nodejs npm (./scripts/test.sh does it)"
    );
    install_node_modules(&browser_test_dir(), "playwright-core");
    true
}

/// `npm ci` in `dir` when `node_modules/<marker>` is missing (a fresh checkout).
pub fn install_node_modules(dir: &Path, marker: &str) {
    if dir.join("node_modules").join(marker).exists() {
        return;
    }
    let status = std::process::Command::new("npm")
        .args(["ci", "--no-audit", "--no-fund"])
        .current_dir(dir)
        .status()
        .expect("run npm");
    assert!(status.success(), "npm ci in {} failed", dir.display());
}

/// The driver script, running; stdin/stdout lines.
pub struct Driver {
    child: tokio::process::Child,
    lines: tokio::io::Lines<BufReader<tokio::process::ChildStdout>>,
}

impl Driver {
    pub fn spawn(stack: &Stack, token: &str, screenshot: &Path, bench_runs: usize) -> Driver {
        Driver::start(
            &browser_test_dir(),
            "cockpit.mjs",
            &[
                ("GATEWAY_URL", stack.url("")),
                ("TOKEN", token.to_owned()),
                ("SCREENSHOT", screenshot.display().to_string()),
                ("BENCH_RUNS", bench_runs.to_string()),
            ],
        )
    }

    /// `node <script>` in `dir` with `env` (and `CHROMIUM`), its stdin and stdout piped.
    pub fn start(dir: &Path, script: &str, env: &[(&str, String)]) -> Driver {
        let mut command = tokio::process::Command::new("node");
        command
            .arg(script)
            .current_dir(dir)
            .env("CHROMIUM", chromium().expect("chromium"))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .kill_on_drop(true);
        for (name, value) in env {
            command.env(name, value);
        }
        let mut child = command.spawn().expect("start node");
        let lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
        Driver { child, lines }
    }

    /// The next protocol line with `tag`, as JSON; panics on FAIL or silence.
    pub async fn expect(&mut self, tag: &str) -> Value {
        loop {
            let line = tokio::time::timeout(Duration::from_secs(60), self.lines.next_line())
                .await
                .unwrap_or_else(|_| panic!("no {tag} from the browser within 60 s"))
                .expect("read driver output")
                .unwrap_or_else(|| panic!("driver exited before {tag}"));
            if let Some(json) = line.strip_prefix(&format!("{tag} ")) {
                return serde_json::from_str(json).expect("driver JSON");
            }
            if let Some(reason) = line.strip_prefix("FAIL ") {
                panic!("browser driver failed: {reason}");
            }
            eprintln!("[browser] {line}");
        }
    }

    pub async fn send(&mut self, line: &str) {
        let stdin = self.child.stdin.as_mut().expect("stdin");
        stdin
            .write_all(format!("{line}\n").as_bytes())
            .await
            .unwrap();
        stdin.flush().await.unwrap();
    }

    pub async fn finish(mut self) {
        let status = tokio::time::timeout(Duration::from_secs(30), self.child.wait())
            .await
            .expect("driver exits")
            .unwrap();
        assert!(status.success(), "driver exit status {status}");
    }
}

/// One producer run now, as the cron would do it (log mailer); its counts.
pub async fn producer_run(pool: &sqlx::PgPool) -> RunReport {
    let delivery =
        Delivery::log_to_stdout(b"gateway-test-unsubscribe-secret").expect("built-in templates");
    producer_run_with(pool, &delivery).await
}

/// One manual producer run now with `delivery`; its counts.
pub async fn producer_run_with(pool: &sqlx::PgPool, delivery: &Delivery) -> RunReport {
    let request = RunRequest {
        trigger: RunTrigger::Manual,
        now: Utc::now(),
        tz: chrono_tz::Europe::Berlin,
        batch_size: 100,
    };
    let outcome = execute_run(
        pool,
        delivery,
        &ProducerMetrics::new(),
        &request,
        &CancellationToken::new(),
    )
    .await
    .expect("producer run");
    match outcome {
        RunOutcome::Completed(report) => report,
        other => panic!("a manual run completes: {other:?}"),
    }
}

#[tokio::test]
async fn cockpit_updates_live_in_chromium() {
    if !browser_ready() {
        return;
    }
    let stack = Stack::start().await;
    let admin = token("boss", &["admin"]);
    // One lead due for its T+3 (delivered by a producer run: sent today, then pending T+7),
    // one fresh lead pending T+3.
    let due = insert_lead(
        &stack.db.pool,
        "u1",
        &[],
        Utc::now() - chrono::Duration::days(4),
    )
    .await;
    insert_lead(&stack.db.pool, "u2", &[], Utc::now()).await;
    producer_run(&stack.db.pool).await;
    stack
        .wait_for_figures("/api/followup/metrics", &admin, |f| {
            f["pendingT3"] == 1 && f["pendingT7"] == 1 && f["sentToday"] == 1
        })
        .await;

    let screenshot = artifacts_dir().join("cockpit.png");
    let _ = std::fs::remove_file(&screenshot);
    let mut driver = Driver::spawn(&stack, &admin, &screenshot, 0);
    let ready = driver.expect("READY").await;
    eprintln!("[browser] first figures: {ready}");
    let figures = &ready["figures"];
    assert_eq!(figures["pendingT3"], "1");
    assert_eq!(figures["pendingT7"], "1");
    assert_eq!(figures["sentToday"], "1");
    assert_eq!(figures["conversionRate"], "0.00");
    assert_eq!(figures["t7Trend"], "up", "T+7 pending rose today");
    assert_eq!(figures["status"], "live");
    // The browser asks for English (en-US): the page answers in English, tiles read as sentences.
    assert_eq!(ready["lang"], "en");
    assert_eq!(ready["label"], "T+3 pending");
    assert_eq!(ready["tileLabel"], "T+3 pending: 1, up since midnight");
    let url = ready["urlAfterLoad"].as_str().unwrap();
    assert!(!url.contains("token"), "token removed from the URL: {url}");
    assert_eq!(ready["scriptSeesCookie"], false, "the cookie is HttpOnly");
    assert_eq!(ready["cookie"]["httpOnly"], true);
    assert_eq!(ready["cookie"]["sameSite"], "Strict");

    // The CRM changes data: a new lead, and the followed-up lead converts.
    insert_lead(&stack.db.pool, "u3", &[], Utc::now()).await;
    sqlx::query("UPDATE leads SET status = 'CONVERTED', version = version + 1 WHERE id = $1")
        .bind(due)
        .execute(&stack.db.pool)
        .await
        .unwrap();
    driver
        .send(
            r#"EXPECT {"pendingT3":"2","pendingT7":"0","sentToday":"1","conversionRate":"100.00"}"#,
        )
        .await;
    let done = driver.expect("DONE").await;
    eprintln!("[browser] after the change: {done}");
    assert_eq!(done["sameDocument"], true, "updated without a reload");
    assert_eq!(done["navigations"], 0);
    assert_eq!(done["consoleErrors"], serde_json::json!([]));
    driver.finish().await;
    let size = std::fs::metadata(&screenshot)
        .expect("screenshot saved")
        .len();
    assert!(size > 10_000, "screenshot has content ({size} bytes)");
    eprintln!("[browser] screenshot: {}", screenshot.display());
}
