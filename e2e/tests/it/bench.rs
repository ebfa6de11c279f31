//! Benchmarks (ignored by default; they print figures and assert nothing about time):
//!
//! ```text
//! cargo test -p followup-gateway --release --test it -- --ignored --nocapture --test-threads 1 bench_
//! ```
//!
//! - `bench_push_latency`: lead change committed in Postgres → SSE frame at the client,
//!   through outbox, relay, JetStream, projector, notice and gateway (`BENCH_CHANGES`, default
//!   1000), with one client and again with 500 clients connected.
//! - `bench_metrics_endpoint`: `GET /api/followup/metrics` under `wrk` (closed loop, maximum
//!   rate) and `oha` (open loop at a fixed 5000 req/s), when installed.
//! - `bench_widget_first_figures`: the page's `followup:first-figures` mark in Chromium.

use std::time::{Duration, Instant};

use chrono::Utc;

use crate::bench_util::{emit_figure, load_average, percentile, runs};
use crate::browser::{Driver, artifacts_dir, browser_ready};
use crate::support::{Auth, SseClient, Stack, insert_lead, token};

fn summary(label: &str, mut samples: Vec<f64>) -> f64 {
    samples.sort_by(f64::total_cmp);
    let mean = samples.iter().sum::<f64>() / samples.len() as f64;
    println!(
        "{label}: n={} p50={:.2} ms p90={:.2} ms p99={:.2} ms max={:.2} ms mean={:.2} ms (load average {})",
        samples.len(),
        percentile(&samples, 50.0),
        percentile(&samples, 90.0),
        percentile(&samples, 99.0),
        samples[samples.len() - 1],
        mean,
        load_average()
    );
    percentile(&samples, 50.0)
}

fn changes() -> usize {
    std::env::var("BENCH_CHANGES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1000)
}

/// Where a slow change is stuck: relayed yet? projected yet?
async fn diagnose(stack: &Stack, lead: i64, committed: Instant) {
    // The relay deletes what JetStream acknowledged: a row still here is not relayed yet.
    let relayed: Option<(Option<f64>,)> = sqlx::query_as(
        "SELECT EXTRACT(EPOCH FROM (now() - occurred_at))::float8 * 1000
         FROM followup_outbox WHERE subject = $1 ORDER BY id DESC LIMIT 1",
    )
    .bind(lead.to_string())
    .fetch_optional(&stack.db.pool)
    .await
    .unwrap();
    let projected: Option<(String,)> =
        sqlx::query_as("SELECT status FROM projection_leads WHERE lead_id = $1")
            .bind(lead)
            .fetch_optional(&stack.db.pool)
            .await
            .unwrap();
    let current: (String,) = sqlx::query_as("SELECT status FROM leads WHERE id = $1")
        .bind(lead)
        .fetch_one(&stack.db.pool)
        .await
        .unwrap();
    println!(
        "  slow change at +{:?}: waiting in the outbox for {relayed:?} ms (None: relayed); projection has {projected:?}, leads has {current:?}",
        committed.elapsed()
    );
}

async fn push_latency(stack: &Stack, lead: i64, extra_clients: usize) -> Vec<f64> {
    let sales = token("u1", &["sales"]);
    // Other clients on the same scope share the frames; they must be read, or they'd be dropped.
    let mut readers = Vec::new();
    for _ in 0..extra_clients {
        let mut client = SseClient::connect(stack, "", Auth::Bearer(&sales), None).await;
        assert_eq!(client.status, 200);
        readers.push(tokio::spawn(async move {
            while client.next_event(Duration::from_secs(30)).await.is_some() {}
        }));
    }
    let mut sse = SseClient::connect(stack, "", Auth::Bearer(&sales), None).await;
    let mut pending = sse.next_event(Duration::from_secs(5)).await.unwrap().json()["pendingT3"]
        .as_i64()
        .unwrap();
    let mut samples = Vec::with_capacity(changes());
    for _ in 0..changes() {
        let (status, expect) = if pending == 1 {
            ("REGISTERED", 0)
        } else {
            ("ACTIVE", 1)
        };
        sqlx::query("UPDATE leads SET status = $1 WHERE id = $2")
            .bind(status)
            .bind(lead)
            .execute(&stack.db.pool)
            .await
            .unwrap();
        let committed = Instant::now();
        let mut diagnosed = false;
        loop {
            let Some(frame) = sse.next_event(Duration::from_millis(300)).await else {
                assert!(committed.elapsed() < Duration::from_secs(15), "no frame");
                if !diagnosed {
                    diagnosed = true;
                    diagnose(stack, lead, committed).await;
                }
                continue;
            };
            if frame.json()["pendingT3"] == expect {
                break;
            }
        }
        let ms = committed.elapsed().as_secs_f64() * 1000.0;
        if ms > 100.0 {
            println!("slow change #{}: {ms:.1} ms", samples.len());
        }
        samples.push(ms);
        pending = expect;
    }
    for reader in readers {
        reader.abort();
    }
    samples
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "benchmark"]
async fn bench_push_latency() {
    let coalesce = std::env::var("BENCH_COALESCE_MS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20);
    println!("SSE_COALESCE_MS={coalesce}");
    let stack = Stack::start_with(|c| {
        c.sse_coalesce_ms = coalesce;
        // The extra clients are all one user's.
        c.sse_max_connections_per_user = 100_000;
    })
    .await;
    stack.nats.skip_catalog_check("benchmark: the integration tests validate events against the catalog; here it would only lengthen the run");
    let admin = token("boss", &["admin"]);
    let lead = insert_lead(&stack.db.pool, "u1", &[], Utc::now()).await;
    stack
        .wait_for_figures("/api/followup/metrics?owner=u1", &admin, |f| {
            f["pendingT3"] == 1
        })
        .await;
    let samples = push_latency(&stack, lead, 0).await;
    summary("commit → SSE frame, 1 client", samples);
    let samples = push_latency(&stack, lead, 500).await;
    summary("commit → SSE frame, 501 clients on the scope", samples);
}

/// `users * per_user` ACTIVE leads with e-mail consent (so each is pending T+3).
async fn seed_leads(stack: &Stack, users: usize, per_user: usize) {
    sqlx::query(
        "INSERT INTO leads (company_name, email, status, owner_user_id, registered_at, metadata, created_by)
         SELECT 'Lead ' || g, 'x@example.com', 'ACTIVE', 'u' || (g % $1), (now() AT TIME ZONE 'UTC') - interval '1 day',
                '{\"emailConsent\": true}', 'bench'
         FROM generate_series(1, $2) AS g",
    )
    .bind(users as i64)
    .bind((users * per_user) as i64)
    .execute(&stack.db.pool)
    .await
    .unwrap();
    let admin = token("boss", &["admin"]);
    let total = (users * per_user) as i64;
    stack
        .wait_for_figures("/api/followup/metrics", &admin, |f| f["pendingT3"] == total)
        .await;
}

fn run_tool(program: &str, args: &[String]) -> Option<String> {
    match std::process::Command::new(program).args(args).output() {
        Ok(out) => Some(format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )),
        Err(err) => {
            println!("{program} not available ({err}); skipped");
            None
        }
    }
}

/// `oha` at a fixed rate, open loop with latency correction: (requests/s answered 200, p50 and
/// p99 in ms).
fn oha_fixed_rate(url: &str, auth: &str, secs: &str, rate: &str) -> Option<(f64, f64, f64)> {
    let args: Vec<String> = [
        "--no-tui",
        "--output-format",
        "json",
        "-z",
        secs,
        "-q",
        rate,
        "-c",
        "32",
        "--latency-correction",
        "-H",
        auth,
        url,
    ]
    .iter()
    .map(|a| (*a).to_owned())
    .collect();
    let out = run_tool("oha", &args)?;
    let Some(start) = out.find('{') else {
        println!("oha printed no report: {out}");
        return None;
    };
    let report: serde_json::Value = match serde_json::from_str(&out[start..]) {
        Ok(report) => report,
        Err(err) => {
            println!("oha output not understood ({err}): {out}");
            return None;
        }
    };
    let ms = |key: &str| {
        report["latencyPercentiles"][key]
            .as_f64()
            .unwrap_or(f64::NAN)
            * 1000.0
    };
    let ok = report["statusCodeDistribution"]["200"]
        .as_f64()
        .unwrap_or(0.0);
    let total = report["summary"]["total"].as_f64().unwrap_or(f64::NAN);
    Some((ok / total, ms("p50"), ms("p99")))
}

/// `GET /api/followup/metrics` at a fixed 5000 requests/s from `oha`; baseline: `/healthz` of
/// the same server at the same rate (HTTP, loopback and the load generator alone).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "benchmark"]
async fn bench_metrics_endpoint() {
    let stack = Stack::start().await;
    stack.nats.skip_catalog_check("benchmark: the integration tests validate events against the catalog; here it would only lengthen the run");
    seed_leads(&stack, 100, 100).await;
    let path = "/api/followup/metrics?owner=u7";
    let manager = token("boss", &["manager"]);
    let (status, body) = stack.get_json(path, Some(&manager)).await;
    println!("probe: {status} {body}");
    let auth = format!("Authorization: Bearer {manager}");
    let secs = std::env::var("BENCH_SECONDS").unwrap_or_else(|_| "10".into());
    let rate = std::env::var("BENCH_RPS").unwrap_or_else(|_| "5000".into());
    for run in 0..runs() {
        println!("load average before run {run}: {}", load_average());
        let Some((ok_rps, p50, p99)) =
            oha_fixed_rate(&stack.url(path), &auth, &format!("{secs}s"), &rate)
        else {
            return;
        };
        let Some((_, base_p50, base_p99)) =
            oha_fixed_rate(&stack.url("/healthz"), &auth, &format!("{secs}s"), &rate)
        else {
            return;
        };
        println!(
            "run {run}: oha -q {rate}: {ok_rps:.0} req/s answered 200, p50 {p50:.2} ms, p99 {p99:.2} ms; /healthz p50 {base_p50:.2} ms, p99 {base_p99:.2} ms (load average {})",
            load_average()
        );
        emit_figure("json_p99_ms", run, p99, "ms", Some(base_p99));
        emit_figure("json_p50_ms", run, p50, "ms", Some(base_p50));
        emit_figure("json_rps", run, ok_rps, "req/s (200)", None);
    }
    if std::env::var_os("BENCH_WRK").is_some()
        && let Some(out) = run_tool(
            "wrk",
            &[
                "-t2".into(),
                "-c32".into(),
                format!("-d{secs}s"),
                "--latency".into(),
                "-H".into(),
                auth.clone(),
                stack.url(path),
            ],
        )
    {
        println!("--- wrk (closed loop, 2 threads, 32 connections) ---\n{out}");
    }
}

/// The page's `followup:first-figures` mark in headless Chromium, 30 loads per run; baseline:
/// the browser's own first contentful paint of the same loads.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "benchmark"]
async fn bench_widget_first_figures() {
    if !browser_ready() {
        return;
    }
    let stack = Stack::start().await;
    stack.nats.skip_catalog_check("benchmark: the integration tests validate events against the catalog; here it would only lengthen the run");
    seed_leads(&stack, 10, 10).await;
    let admin = token("boss", &["admin"]);
    for run in 0..runs() {
        let mut driver = Driver::spawn(
            &stack,
            &admin,
            &artifacts_dir().join("bench-unused.png"),
            30,
        );
        let result = driver.expect("BENCH").await;
        driver.finish().await;
        let samples: Vec<f64> = result["samples"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_f64().unwrap())
            .collect();
        println!("first-figures samples (ms): {samples:?}");
        let figures = summary(
            "widget first figures after navigation start (Performance API)",
            samples[1..].to_vec(),
        );
        println!(
            "(first navigation, with a cold browser: {:.1} ms)",
            samples[0]
        );
        // What the browser itself needs here, for comparison: its first paint of the page.
        let runs = &result["breakdown"].as_array().unwrap()[1..];
        let of = |key: &str| -> Vec<f64> {
            runs.iter()
                .filter_map(|b| b.pointer(key).and_then(serde_json::Value::as_f64))
                .collect()
        };
        summary("  HTML response end", of("/responseEnd"));
        summary("  DOM interactive", of("/domInteractive"));
        let paint = summary(
            "  browser's first contentful paint",
            of("/paint/first-contentful-paint"),
        );
        emit_figure("widget_ms", run, figures, "ms", Some(paint));
    }
}
