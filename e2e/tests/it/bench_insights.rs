//! The insights endpoints on a CRM of 1 000 000 leads (issue 15: a list page p99 ≤ 20 ms and the
//! history ≤ 10 ms at 500 requests/s), beside the JSON figures endpoint at the same rate in the
//! same run (the baseline: what the cockpit's cheapest read costs on the same server).
//!
//! The CRM is filled as the snapshot benchmark fills it (`followup_testkit::crm_fill`, plus 1 %
//! final failures in `followup_deliveries`), the projection is the projector's own snapshot of
//! it, and the real gateway serves it. The load is open loop at a fixed rate: a request is sent
//! every 2 ms whatever the answers do, and a latency counts from when the request was due, so a
//! stalled server is not hidden by fewer requests (no coordinated omission). Requests cycle over
//! every figure's list, the organisation and 20 sales users, first and later pages (cursors
//! collected beforehand), and 30- and 365-day histories. Half the users also collaborate on
//! thousands of leads (the path through `projection_collaborations`).
//!
//! `cargo test -p followup-e2e --release --test it -- --ignored --nocapture bench_insights`
//! (env: BENCH_LEADS, default 1000000; BENCH_SECONDS per endpoint, default 10; BENCH_RPS, default
//! 500; BENCH_RUNS; BENCH_WARMUP_SECONDS per endpoint before the runs, default 5, not measured).
//! Prints p50/p99 and the ratio to the figures endpoint; no timing assertions.

use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::Utc;
use followup_gateway::GatewayConfig;
use followup_readmodel::{LeadFigure, Scope, load_lead_page};
use followup_testkit::crm_fill::fill_crm;
use followup_testkit::{NatsServer, TestDb};
use tokio::sync::Mutex;
use tokio_util::sync::CancellationToken;

use crate::bench_util::{emit_figure, env_usize, load_average, percentile, runs};
use crate::support::{SECRET, token};

const TZ: chrono_tz::Tz = chrono_tz::Europe::Berlin;

/// `(p50, p99)` in ms and the share answered 200, of `paths` requested in turn at `rate`/s for
/// `secs`, each latency counted from the request's due time.
async fn fixed_rate(
    base: &str,
    bearer: &str,
    paths: &[String],
    rate: usize,
    secs: u64,
) -> (f64, f64, f64) {
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(64)
        .build()
        .unwrap();
    let samples = Arc::new(Mutex::new(Vec::new()));
    let ok = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let every = Duration::from_secs_f64(1.0 / rate as f64);
    let start = tokio::time::Instant::now();
    let total = rate * secs as usize;
    let mut tasks = Vec::with_capacity(total);
    for i in 0..total {
        let due = start + every * i as u32;
        tokio::time::sleep_until(due).await;
        let request = http
            .get(format!("{base}{}", paths[i % paths.len()]))
            .bearer_auth(bearer);
        let (samples, ok) = (samples.clone(), ok.clone());
        tasks.push(tokio::spawn(async move {
            let answered = request.send().await.ok().filter(|r| r.status() == 200);
            if let Some(response) = answered {
                let _ = response.bytes().await;
                ok.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            }
            let ms = (tokio::time::Instant::now() - due).as_secs_f64() * 1000.0;
            samples.lock().await.push(ms);
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    let mut ms = samples.lock().await.clone();
    ms.sort_by(f64::total_cmp);
    let share = ok.load(std::sync::atomic::Ordering::Relaxed) as f64 / total as f64;
    (percentile(&ms, 50.0), percentile(&ms, 99.0), share)
}

/// The 20 sales users the requests are for: ten who only own leads (`user0`, `user20`, …) and
/// ten who also collaborate on 5 000 leads each (`user7`, `user27`, …; `crm_fill` gives the
/// collaborations to users ≡ 2 mod 5), among them `user7` and `user107`, who own the failures.
fn sampled_users() -> Vec<String> {
    (0..10)
        .flat_map(|k| [format!("user{}", k * 20), format!("user{}", k * 20 + 7)])
        .collect()
}

/// Paths of list pages: every figure, the organisation and 20 users, pages 1 to 5 of each.
async fn list_paths(db: &TestDb) -> Vec<String> {
    let mut conn = db.pool.acquire().await.unwrap();
    let mut paths = Vec::new();
    let scopes = std::iter::once(Scope::Org).chain(sampled_users().into_iter().map(Scope::User));
    for scope in scopes {
        let owner = match &scope {
            Scope::Org => String::new(),
            Scope::User(id) => format!("&owner={id}"),
        };
        for figure in LeadFigure::ALL {
            let name = serde_json::to_value(figure).unwrap();
            let mut after = followup_readmodel::Cursor::START;
            for _ in 0..5 {
                let cursor = if after == followup_readmodel::Cursor::START {
                    String::new()
                } else {
                    format!("&after={}", after.encode())
                };
                paths.push(format!(
                    "/api/followup/leads?figure={}&limit=50{owner}{cursor}",
                    name.as_str().unwrap()
                ));
                let page = load_lead_page(&mut conn, figure, &scope, after, 50, Utc::now(), TZ)
                    .await
                    .unwrap();
                match page
                    .next
                    .as_deref()
                    .and_then(|n| followup_readmodel::Cursor::decode(n, figure))
                {
                    Some(next) => after = next,
                    None => break,
                }
            }
        }
    }
    paths
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "benchmark"]
async fn bench_insights_endpoints() {
    let leads = env_usize("BENCH_LEADS", 1_000_000);
    let secs = env_usize("BENCH_SECONDS", 10) as u64;
    let rate = env_usize("BENCH_RPS", 500);
    let db = TestDb::new().await;
    let started = Instant::now();
    fill_crm(&db.pool, leads).await;
    sqlx::query(
        "INSERT INTO followup_deliveries (lead_id, kind, status, run_id, owner_user_id, attempts, \
           reason, delivered_at) \
         SELECT id, 't3', 'failed', gen_random_uuid(), owner_user_id, 3, '550 mailbox unavailable', \
           now() - (id % 30) * interval '1 day' \
         FROM leads WHERE id % 100 = 7",
    )
    .execute(&db.pool)
    .await
    .expect("failures");
    // Statistics first, as a CRM that has run for a while has them (the snapshot's keyset reads
    // plan badly on a freshly filled table).
    sqlx::query("VACUUM ANALYZE")
        .execute(&db.pool)
        .await
        .expect("analyze");
    let mut conn = db.pool.acquire().await.unwrap();
    let report = followup_projector::ensure_snapshot(&mut conn, TZ)
        .await
        .expect("snapshot")
        .expect("a fresh projection");
    drop(conn);
    sqlx::query("VACUUM ANALYZE")
        .execute(&db.pool)
        .await
        .expect("analyze");
    println!(
        "CRM of {leads} leads filled and projected in {:.1?} ({report:?}); load average {}",
        started.elapsed(),
        load_average()
    );

    let nats = NatsServer::start();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let shutdown = CancellationToken::new();
    let gateway = tokio::spawn(followup_gateway::run_until_stopped(
        GatewayConfig::for_tests(&db.url, &nats.url(), SECRET),
        listener,
        shutdown.clone(),
    ));
    let admin = token("boss", &["admin"]);
    let ready = followup_testkit::eventually(Duration::from_secs(30), || {
        let url = format!("{base}/readyz");
        async move { (reqwest::get(url).await.ok()?.status() == 200).then_some(()) }
    })
    .await;
    assert!(ready.is_some(), "gateway ready");

    let lists = list_paths(&db).await;
    let histories: Vec<String> = std::iter::once(String::new())
        .chain(sampled_users().iter().map(|u| format!("&owner={u}")))
        .flat_map(|owner| [30, 365].map(|days| format!("/api/followup/history?days={days}{owner}")))
        .collect();
    let figures: Vec<String> = std::iter::once(String::new())
        .chain(sampled_users().iter().map(|u| format!("?owner={u}")))
        .map(|owner| format!("/api/followup/metrics{owner}"))
        .collect();
    println!(
        "{} list pages, {} histories, {} figure scopes; {rate} req/s for {secs} s each",
        lists.len(),
        histories.len(),
        figures.len()
    );
    // A gateway that has just started plans each statement once per pooled connection (a few
    // ms each, on the pool's 16 connections) and finds the indexes' pages cold: not what a
    // running cockpit sees, so every path is requested for a while before the measured runs.
    let warmup = env_usize("BENCH_WARMUP_SECONDS", 5) as u64;
    for paths in [&figures, &lists, &histories] {
        fixed_rate(&base, &admin, paths, rate, warmup).await;
    }
    for run in 0..runs() {
        let (f50, f99, f_ok) = fixed_rate(&base, &admin, &figures, rate, secs).await;
        let (l50, l99, l_ok) = fixed_rate(&base, &admin, &lists, rate, secs).await;
        let (h50, h99, h_ok) = fixed_rate(&base, &admin, &histories, rate, secs).await;
        println!(
            "run {run}: figures p50 {f50:.2} ms p99 {f99:.2} ms ({:.1} % 200) | list page p50 \
             {l50:.2} ms p99 {l99:.2} ms ({:.1} % 200, p99 {:.2}× figures; target ≤ 20) | history \
             p50 {h50:.2} ms p99 {h99:.2} ms ({:.1} % 200, p99 {:.2}× figures; target ≤ 10) \
             (load average {})",
            f_ok * 100.0,
            l_ok * 100.0,
            l99 / f99,
            h_ok * 100.0,
            h99 / f99,
            load_average()
        );
        emit_figure("insights_list_p99_ms", run, l99, "ms", Some(f99));
        emit_figure("insights_history_p99_ms", run, h99, "ms", Some(f99));
        emit_figure("insights_figures_p99_ms", run, f99, "ms", None);
        assert!(
            f_ok == 1.0 && l_ok == 1.0 && h_ok == 1.0,
            "every request answered 200"
        );
    }
    shutdown.cancel();
    let _ = gateway.await;
}
