//! Benchmarks of the whole pipeline (ignored; run by `scripts/bench.sh`):
//!
//! - `bench_pipeline_end_to_end`: lead changes committed as fast as two connections commit them
//!   → visible in the projection; sustained rate (baseline: the commit rate itself) and the
//!   backlog over time.
//! - `bench_latency_at_rate`: under a steady background load of `BENCH_RATE` (1000) changes/s,
//!   a probe lead's change committed → SSE frame at its owner's client; baseline: committed →
//!   the projector's change notice for it (projection committed).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use chrono::Utc;
use followup_contract::COCKPIT_CHANGED_SUBJECT;
use futures::StreamExt;
use serde_json::{Value, json};
use sqlx::PgPool;

use crate::bench_util::{
    Load, emit, emit_figure, env_usize, load_average, percentile, runs, seed_background_leads,
    toggle_status, wait_projected,
};
use crate::support::{Auth, SseClient, Stack, insert_lead, token};

async fn last_sequence(pool: &PgPool) -> i64 {
    sqlx::query_scalar("SELECT COALESCE(max(last_stream_sequence), 0) FROM projection_state")
        .fetch_one(pool)
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "benchmark"]
async fn bench_pipeline_end_to_end() {
    let changes = env_usize("BENCH_PIPELINE_CHANGES", 100_000) as u64;
    const WRITERS: usize = 2;
    let per_statement = 500;
    let stack = Stack::start().await;
    stack.nats.skip_catalog_check("benchmark: the integration tests validate events against the catalog; here it would only lengthen the run");
    let pool = stack.db.pool.clone();
    let ids = seed_background_leads(&pool, "p", 100, 20_000).await;
    wait_projected(&pool).await;
    for run in 0..runs() {
        let start_sequence = last_sequence(&pool).await;
        let committed = Arc::new(AtomicU64::new(0));
        let started = Instant::now();
        // Two connections commit the changes, each on its own half of the leads.
        let generators: Vec<_> = ids
            .chunks(ids.len() / WRITERS)
            .map(|half| {
                let (pool, half, committed) = (pool.clone(), half.to_vec(), committed.clone());
                tokio::spawn(async move {
                    let mut next = 0;
                    while committed.load(Ordering::Relaxed) < changes {
                        let batch: Vec<i64> = (0..per_statement)
                            .map(|k| half[(next + k) % half.len()])
                            .collect();
                        next += batch.len();
                        toggle_status(&pool, &batch).await;
                        committed.fetch_add(batch.len() as u64, Ordering::Relaxed);
                    }
                    started.elapsed()
                })
            })
            .collect();
        // Sample every 100 ms: committed, still in the outbox, visible in the projection.
        let mut points = Vec::new();
        let mut max_backlog = 0;
        loop {
            tokio::time::sleep(Duration::from_millis(100)).await;
            // Read before `done`: once finished, `done` is the final count.
            let finished = generators.iter().all(|g| g.is_finished());
            let done = committed.load(Ordering::Relaxed) as i64;
            let (outbox, sequence): (i64, i64) = sqlx::query_as(
                "SELECT (SELECT count(*) FROM followup_outbox),
                        (SELECT COALESCE(max(last_stream_sequence), 0) FROM projection_state)",
            )
            .fetch_one(&pool)
            .await
            .unwrap();
            let projected = sequence - start_sequence;
            max_backlog = max_backlog.max(done - projected);
            points.push(json!([
                started.elapsed().as_secs_f64(),
                done,
                done - outbox,
                projected
            ]));
            if finished && projected >= done {
                break;
            }
            assert!(
                started.elapsed() < Duration::from_secs(300),
                "pipeline stalled"
            );
        }
        let total = started.elapsed().as_secs_f64();
        let mut commit_secs: f64 = 0.0;
        for generator in generators {
            commit_secs = commit_secs.max(generator.await.unwrap().as_secs_f64());
        }
        let changes = committed.load(Ordering::Relaxed);
        let (rate, commit_rate) = (changes as f64 / total, changes as f64 / commit_secs);
        println!(
            "run {run}: {changes} changes committed in {commit_secs:.2} s ({commit_rate:.0}/s), all projected after {total:.2} s ({rate:.0}/s), max backlog {max_backlog} (load average {})",
            load_average()
        );
        emit_figure("pipeline_rate", run, rate, "changes/s", Some(commit_rate));
        emit_figure(
            "pipeline_max_backlog",
            run,
            max_backlog as f64,
            "changes",
            None,
        );
        emit(json!({
            "bench": "pipeline_timeline", "series": "pipeline_timeline", "run": run,
            "columns": ["seconds", "committed", "relayed", "projected"], "points": points,
        }));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "benchmark"]
async fn bench_latency_at_rate() {
    let rate = env_usize("BENCH_RATE", 1000);
    let seconds = env_usize("BENCH_SECONDS", 20) as u64;
    let stack = Stack::start().await;
    stack.nats.skip_catalog_check("benchmark: the integration tests validate events against the catalog; here it would only lengthen the run");
    let pool = stack.db.pool.clone();
    let ids = seed_background_leads(&pool, "bg", 100, 10_000).await;
    let probe = insert_lead(&pool, "probe", &[], Utc::now()).await;
    wait_projected(&pool).await;

    // The projector's notices that name the probe's owner: when its change was projected.
    let nats = async_nats::connect(stack.nats.url()).await.unwrap();
    let mut notices = nats.subscribe(COCKPIT_CHANGED_SUBJECT).await.unwrap();
    let (notice_tx, mut notice_rx) = tokio::sync::mpsc::unbounded_channel::<Instant>();
    tokio::spawn(async move {
        while let Some(message) = notices.next().await {
            let Ok(notice) = serde_json::from_slice::<Value>(&message.payload) else {
                continue;
            };
            if notice["users"]
                .as_array()
                .is_some_and(|users| users.iter().any(|u| u == "probe"))
            {
                let _ = notice_tx.send(Instant::now());
            }
        }
    });
    let sales = token("probe", &["sales"]);
    let mut sse = SseClient::connect(&stack, "", Auth::Bearer(&sales), None).await;
    let mut pending = sse.next_event(Duration::from_secs(5)).await.unwrap().json()["pendingT3"]
        .as_i64()
        .unwrap();

    for run in 0..runs() {
        let load = Load::start(pool.clone(), ids.clone(), rate);
        tokio::time::sleep(Duration::from_secs(1)).await;
        let (mut frames, mut projected) = (Vec::new(), Vec::new());
        let end = Instant::now() + Duration::from_secs(seconds);
        while Instant::now() < end {
            while notice_rx.try_recv().is_ok() {}
            let (status, expect) = if pending == 1 {
                ("REGISTERED", 0)
            } else {
                ("ACTIVE", 1)
            };
            sqlx::query("UPDATE leads SET status = $1 WHERE id = $2")
                .bind(status)
                .bind(probe)
                .execute(&pool)
                .await
                .unwrap();
            let committed = Instant::now();
            loop {
                let frame = sse
                    .next_event(Duration::from_secs(15))
                    .await
                    .expect("frame");
                if frame.json()["pendingT3"] == expect {
                    break;
                }
            }
            frames.push(committed.elapsed().as_secs_f64() * 1000.0);
            if let Ok(at) = notice_rx.try_recv() {
                projected.push(at.duration_since(committed).as_secs_f64() * 1000.0);
            }
            pending = expect;
            // About 20 probes a second, part of the load's rate.
            tokio::time::sleep_until((committed + Duration::from_millis(50)).into()).await;
        }
        let achieved = load.stop().await;
        frames.sort_by(f64::total_cmp);
        projected.sort_by(f64::total_cmp);
        println!(
            "run {run}: load {achieved:.0} changes/s, {} probes; commit → SSE p50 {:.2} p95 {:.2} p99 {:.2} max {:.2} ms; commit → notice p50 {:.2} p99 {:.2} ms (load average {})",
            frames.len(),
            percentile(&frames, 50.0),
            percentile(&frames, 95.0),
            percentile(&frames, 99.0),
            frames[frames.len() - 1],
            percentile(&projected, 50.0),
            percentile(&projected, 99.0),
            load_average()
        );
        for (name, p) in [("p50", 50.0), ("p95", 95.0), ("p99", 99.0), ("max", 100.0)] {
            emit_figure(
                &format!("latency_{name}"),
                run,
                percentile(&frames, p),
                "ms",
                Some(percentile(&projected, p)),
            );
        }
        emit_figure("latency_load_rate", run, achieved, "changes/s", None);
        emit(json!({
            "bench": "latency_samples", "series": "latency_samples", "run": run,
            "sse_ms": frames, "notice_ms": projected,
        }));
        wait_projected(&pool).await;
    }
}
