//! `bench_sse_fanout` (ignored; run by `scripts/bench.sh`, which raises the fd limit): 10 000
//! SSE clients of the organisation scope on one gateway, a separate process (the release
//! binary) so its memory is its own. Every run (`BENCH_RUNS`) starts a fresh gateway process
//! and measures, in that run: the time from a lead change committed until every client has the
//! frame with the new figures (baseline: the same change with one client), and the gateway's
//! RSS growth per connected client (RSS before the clients connect against the larger of RSS
//! with them idle and RSS after the frame went to all of them). The test fails when any run's
//! memory per client is above the issue 17 target of 16 KiB.

use crate::service_bin::ServiceProcess;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::Utc;
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::{Semaphore, mpsc, watch};

use crate::bench_util::{
    emit, emit_figure, env_usize, load_average, percentile, rss_kib, runs, wait_projected,
};
use crate::support::{SECRET, Stack, insert_lead, token};

/// The gateway binary as a child process on a free port, with the benchmark's caps.
/// `BENCH_GATEWAY_WRAPPER`, e.g. `valgrind --tool=massif`: where the gateway's memory goes.
async fn start_gateway(stack: &Stack) -> ServiceProcess {
    let wrapper = std::env::var("BENCH_GATEWAY_WRAPPER").unwrap_or_default();
    let nats = stack.nats.url();
    ServiceProcess::start_wrapped(
        &wrapper,
        "followup-gateway",
        &[
            ("DATABASE_URL", stack.db.url.as_str()),
            ("NATS_URL", &nats),
            ("JWT_SECRET", SECRET),
            // Every client is the one admin; the default per-user cap is 20.
            ("SSE_MAX_CONNECTIONS_PER_USER", "100000"),
            ("SSE_MAX_CONNECTIONS", "1000000"),
        ],
    )
    .await
}

/// What the clients look for: round number and the text of the new figure.
type Needle = (u64, String);

/// Opens `n` stream connections; each reports once connected (first frame read) and then, per
/// round, when it saw the round's needle.
async fn connect_clients(
    addr: SocketAddr,
    bearer: &str,
    n: usize,
    needle: watch::Receiver<Needle>,
    arrivals: mpsc::UnboundedSender<Instant>,
) -> Vec<tokio::task::JoinHandle<()>> {
    let request = Arc::new(format!(
        "GET /api/dashboard/followup-stream HTTP/1.1\r\nHost: bench\r\nAccept: text/event-stream\r\nAuthorization: Bearer {bearer}\r\n\r\n"
    ));
    let (ready_tx, mut ready_rx) = mpsc::unbounded_channel();
    let gate = Arc::new(Semaphore::new(256));
    let mut tasks = Vec::with_capacity(n);
    for _ in 0..n {
        let (request, gate, ready, arrivals) = (
            request.clone(),
            gate.clone(),
            ready_tx.clone(),
            arrivals.clone(),
        );
        let mut needle = needle.clone();
        tasks.push(tokio::spawn(async move {
            let permit = gate.acquire_owned().await.unwrap();
            let mut socket = tokio::net::TcpStream::connect(addr).await.expect("connect");
            socket.write_all(request.as_bytes()).await.unwrap();
            let mut buffer = Vec::with_capacity(2048);
            let mut chunk = [0u8; 2048];
            while !contains(&buffer, b"\ndata: ") {
                let read = socket.read(&mut chunk).await.unwrap();
                assert!(read > 0, "stream closed before the first frame");
                buffer.extend_from_slice(&chunk[..read]);
            }
            drop(permit);
            // Before reporting ready: the first round may start right after.
            let mut seen = needle.borrow_and_update().0;
            let _ = ready.send(());
            buffer.clear();
            loop {
                let read = match socket.read(&mut chunk).await {
                    Ok(0) | Err(_) => return,
                    Ok(read) => read,
                };
                if needle.has_changed().unwrap_or(false) {
                    buffer.clear();
                }
                buffer.extend_from_slice(&chunk[..read]);
                let (round, text) = needle.borrow_and_update().clone();

                if round > seen && contains(&buffer, text.as_bytes()) {
                    seen = round;
                    let _ = arrivals.send(Instant::now());
                }
                if buffer.len() > 4096 {
                    buffer.drain(..buffer.len() - 512);
                }
            }
        }));
    }
    for _ in 0..n {
        tokio::time::timeout(Duration::from_secs(300), ready_rx.recv())
            .await
            .expect("clients connected in time")
            .expect("client task alive");
    }
    tasks
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// Toggles the probe lead and returns how long each of `n` clients took to see the result.
async fn change_round(
    stack: &Stack,
    probe: i64,
    round: u64,
    pending: &mut i64,
    needle: &watch::Sender<Needle>,
    arrivals: &mut mpsc::UnboundedReceiver<Instant>,
    n: usize,
) -> Vec<f64> {
    let (status, next) = if round % 2 == 1 {
        ("REGISTERED", *pending - 1)
    } else {
        ("ACTIVE", *pending + 1)
    };
    needle.send_replace((round, format!("\"pendingT3\":{next}")));
    sqlx::query("UPDATE leads SET status = $1 WHERE id = $2")
        .bind(status)
        .bind(probe)
        .execute(&stack.db.pool)
        .await
        .unwrap();
    let committed = Instant::now();
    let mut samples = Vec::with_capacity(n);
    while samples.len() < n {
        let at = tokio::time::timeout(Duration::from_secs(30), arrivals.recv())
            .await
            .expect("every client got the frame within 30 s")
            .unwrap();
        samples.push(at.saturating_duration_since(committed).as_secs_f64() * 1000.0);
    }
    *pending = next;
    samples.sort_by(f64::total_cmp);
    samples
}

/// The target of issue 17: gateway RSS growth per idle stream client, in KiB.
const TARGET_KIB_PER_CLIENT: f64 = 16.0;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "benchmark"]
async fn bench_sse_fanout() {
    let clients = env_usize("BENCH_CLIENTS", 10_000);
    let stack = Stack::start().await;
    stack.nats.skip_catalog_check("benchmark: the integration tests validate events against the catalog; here it would only lengthen the run");
    let admin = token("boss", &["admin"]);
    let probe = insert_lead(&stack.db.pool, "u1", &[], Utc::now()).await;
    wait_projected(&stack.db.pool).await;
    let (_, figures) = stack.get_json("/api/followup/metrics", Some(&admin)).await;
    let mut pending = figures["pendingT3"].as_i64().unwrap();
    let mut round = 0;
    let mut over_target = Vec::new();

    // Every run starts a fresh gateway process, so each run's memory figure is a measurement of
    // its own (a second batch of clients on the same process would reuse the first one's heap).
    for run in 0..runs() {
        let gateway = start_gateway(&stack).await;
        let pid = gateway.pid();
        let (needle_tx, needle_rx) = watch::channel((round, String::new()));
        let (arrival_tx, mut arrival_rx) = mpsc::unbounded_channel();

        // Baseline: the same change with one client, on the same process.
        let single = connect_clients(
            gateway.addr,
            &admin,
            1,
            needle_rx.clone(),
            arrival_tx.clone(),
        )
        .await;
        round += 1;
        let alone = change_round(
            &stack,
            probe,
            round,
            &mut pending,
            &needle_tx,
            &mut arrival_rx,
            1,
        )
        .await[0];
        for task in single {
            task.abort();
        }
        tokio::time::sleep(Duration::from_millis(500)).await;

        let before = rss_kib(pid);
        let started = Instant::now();
        let tasks = connect_clients(gateway.addr, &admin, clients, needle_rx, arrival_tx).await;
        let connected_in = started.elapsed();
        tokio::time::sleep(Duration::from_millis(500)).await;
        let idle = rss_kib(pid);

        round += 1;
        let samples = change_round(
            &stack,
            probe,
            round,
            &mut pending,
            &needle_tx,
            &mut arrival_rx,
            clients,
        )
        .await;
        // Idle again after a frame went to every client: what the connections keep holding.
        tokio::time::sleep(Duration::from_millis(500)).await;
        let after_push = rss_kib(pid);
        let per_client = idle.max(after_push).saturating_sub(before) as f64 / clients as f64;
        let all = samples[samples.len() - 1];
        println!(
            "run {run}: {clients} clients connected in {connected_in:.1?}; gateway RSS {before} KiB → {idle} KiB (idle) → {after_push} KiB (after a frame to all): {per_client:.1} KiB per client (target ≤ {TARGET_KIB_PER_CLIENT}); change → frame at all {clients} clients {all:.1} ms (p50 {:.1} ms, first {:.1} ms); one client alone {alone:.1} ms (load average {})",
            percentile(&samples, 50.0),
            samples[0],
            load_average()
        );
        emit_figure("fanout_all_ms", run, all, "ms", Some(alone));
        emit_figure("fanout_kib_per_client", run, per_client, "KiB", None);
        let step = (samples.len() / 200).max(1);
        let cdf: Vec<f64> = samples.iter().step_by(step).copied().collect();
        emit(json!({"bench": "fanout_samples", "series": "fanout_samples", "run": run, "ms": cdf}));
        if per_client > TARGET_KIB_PER_CLIENT {
            over_target.push(format!("run {run}: {per_client:.1} KiB"));
        }
        for task in tasks {
            task.abort();
        }
        drop(gateway);
    }
    assert!(
        over_target.is_empty(),
        "gateway memory per SSE client above {TARGET_KIB_PER_CLIENT} KiB: {}",
        over_target.join(", ")
    );
}
