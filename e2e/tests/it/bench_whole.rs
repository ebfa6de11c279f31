//! The whole pipeline as an operator runs it (issue 17): producer (relay), projector and gateway
//! as three release processes on a private nats-server and a fresh database, measured from
//! outside. Ignored; `scripts/bench.sh whole`.
//!
//! Per run and size (`BENCH_WHOLE_SIZES`, default 20 000 and 100 000 rows in one transaction):
//!
//! 1. **relay alone**: the projector is stopped (SIGSTOP); one transaction inserts the rows;
//!    commit → outbox empty.
//! 2. **projector alone**: the projector continues (SIGCONT) with the relayed events waiting;
//!    → projection through the last event.
//! 3. **end to end**: both running; one transaction of the same size; commit → outbox empty →
//!    projection → the SSE frame at an org client that shows all of them in `pendingT3`.
//! 4. **raw publish**: the same number of messages of the same size published by async-nats
//!    with a window of 2 048 acks to a scratch stream (what NATS itself costs).
//! 5. **bare consume**: a pull consumer fetching and acking phase 3's events, no database.
//!
//! Then small CRM-style transactions: `BENCH_WRITERS` (8) connections each committing one-lead
//! `UPDATE`s as fast as they can for `BENCH_SECONDS` (10); committed → projected, against the
//! writers' commit rate.
//!
//! Phases 1–3 print where the relay's and the projector's time went
//! (`followup_relay_stage_seconds_total`, `followup_projector_stage_seconds_total`, scraped from
//! the processes' `/metrics`). `BENCH_PERF_DIR`: `perf record` the relay and the projector
//! during phase 3 of the last run, into that directory.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use async_nats::jetstream::{self, consumer, stream};
use futures::StreamExt;
use serde_json::json;
use sqlx::PgPool;

use crate::bench_util::{emit, emit_figure, env_usize, load_average, runs};
use crate::service_bin::ServiceProcess;
use crate::support::{Auth, SECRET, SseClient, token};

/// The three services and what they run on.
struct Whole {
    db: followup_testkit::TestDb,
    /// Kept for its lifetime: dropping it stops the nats-server.
    _nats: followup_testkit::NatsServer,
    js: jetstream::Context,
    relay: ServiceProcess,
    projector: ServiceProcess,
    gateway: ServiceProcess,
}

impl Whole {
    async fn start() -> Whole {
        let db = followup_testkit::TestDb::new().await;
        let nats = followup_testkit::NatsServer::start();
        let js = jetstream::new(async_nats::connect(nats.url()).await.unwrap());
        followup_infra::ensure_stream(&js).await.expect("stream");
        let (url, nats_url) = (db.url.clone(), nats.url());
        let common = [("DATABASE_URL", url.as_str()), ("NATS_URL", &nats_url)];
        let relay = ServiceProcess::start(
            "followup-producer",
            // No cron slot in the benchmark's minutes: the producer only relays.
            &[
                &common[..],
                &[("FOLLOWUP_CRON", "0 0 0 1 1 *"), ("MAILER", "log")],
            ]
            .concat(),
        )
        .await;
        let projector = ServiceProcess::start("followup-projector", &common).await;
        let gateway = ServiceProcess::start(
            "followup-gateway",
            &[&common[..], &[("JWT_SECRET", SECRET)]].concat(),
        )
        .await;
        Whole {
            db,
            _nats: nats,
            js,
            relay,
            projector,
            gateway,
        }
    }

    fn pool(&self) -> &PgPool {
        &self.db.pool
    }

    async fn stream_last_sequence(&self) -> u64 {
        let mut stream = self.js.get_stream("FOLLOWUP").await.unwrap();
        // `info` asks the server: the cached info is from `get_stream`.
        stream.info().await.unwrap().state.last_sequence
    }
}

/// Sends `signal` (`STOP`, `CONT`) to a process.
fn signal(pid: u32, signal: &str) {
    let status = Command::new("kill")
        .args([&format!("-{signal}"), &pid.to_string()])
        .status()
        .unwrap();
    assert!(status.success(), "kill -{signal} {pid}");
}

/// One statement (one transaction) inserting `n` ACTIVE leads the way the CRM writes them (naive
/// UTC timestamps, e-mail consent in `metadata`), owned by `<prefix>0` … `<prefix>49`: one
/// `lead.changed.v1` each through the CRM trigger, and each one more pending T+3. Returns their
/// ids and when the commit returned.
async fn commit_leads(pool: &PgPool, prefix: &str, n: usize) -> (Vec<i64>, Instant) {
    let ids = sqlx::query_scalar(
        "INSERT INTO leads (company_name, contact_person, email, business_type, territory_id,
             status, owner_user_id, registered_at, t3_followup_sent, t7_followup_sent,
             followup_count, metadata, contact_blocked, gdpr_deleted, created_by, created_at,
             updated_at)
         SELECT 'Gasthaus ' || g, 'Frau ' || g, 'lead' || g || '@example.com', 'RESTAURANT',
             'DE', 'ACTIVE', $1 || (g % 50), (now() AT TIME ZONE 'UTC') - interval '1 day',
             false, false, 0, '{\"emailConsent\": true}', false, false, 'crm-import',
             now() AT TIME ZONE 'UTC', now() AT TIME ZONE 'UTC'
         FROM generate_series(1, $2) AS g RETURNING id",
    )
    .bind(prefix)
    .bind(n as i64)
    .fetch_all(pool)
    .await
    .unwrap();
    (ids, Instant::now())
}

/// Polls (every 10 ms) until `done` answers true; returns when.
async fn poll_until(pool: &PgPool, sql: &'static str, bind: i64) -> Instant {
    let deadline = Instant::now() + Duration::from_secs(600);
    loop {
        let done: bool = sqlx::query_scalar(sql)
            .bind(bind)
            .fetch_one(pool)
            .await
            .unwrap();
        if done {
            return Instant::now();
        }
        assert!(Instant::now() < deadline, "pipeline stalled: {sql}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

const OUTBOX_EMPTY: &str = "SELECT NOT EXISTS (SELECT 1 FROM followup_outbox) OR $1 < 0";
const PROJECTED_THROUGH: &str =
    "SELECT COALESCE(max(last_stream_sequence), 0) >= $1 FROM projection_state";

/// What a phase reads off a process's `/metrics` before and after: its stage counters
/// (`<name>{stage="…"}`) and how many batches it has handled (its batch histogram's `_count`).
#[derive(Default)]
struct Counters {
    /// `relay.<stage>` / `projector.<stage>` → seconds.
    stages: BTreeMap<String, f64>,
    /// `relay` / `projector` → batches.
    batches: BTreeMap<String, f64>,
}

impl Counters {
    /// Reads one process's counters into `self`, its keys prefixed with `short`.
    async fn scrape(&mut self, addr: SocketAddr, short: &str, stages: &str, batches: &str) {
        let text = reqwest::get(format!("http://{addr}/metrics"))
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        let stage_prefix = format!("{stages}{{stage=\"");
        let batch_prefix = format!("{batches}_count ");
        for line in text.lines() {
            if let Some((stage, value)) = line
                .strip_prefix(&stage_prefix)
                .and_then(|rest| rest.split_once("\"} "))
                && let Ok(value) = value.trim().parse()
            {
                self.stages.insert(format!("{short}.{stage}"), value);
            } else if let Some(Ok(value)) =
                line.strip_prefix(&batch_prefix).map(|v| v.trim().parse())
            {
                self.batches.insert(short.to_owned(), value);
            }
        }
    }
}

/// The counters of the relay and (unless it is stopped) the projector, to subtract the
/// "before" from the "after" of a phase.
async fn scrape_all(whole: &Whole, projector: bool) -> Counters {
    let mut all = Counters::default();
    all.scrape(
        whole.relay.addr,
        "relay",
        "followup_relay_stage_seconds_total",
        "followup_relay_batch_duration_seconds",
    )
    .await;
    if projector {
        all.scrape(
            whole.projector.addr,
            "projector",
            "followup_projector_stage_seconds_total",
            "followup_projector_apply_duration_seconds",
        )
        .await;
    }
    all
}

/// `after - before` per key, leaving out what did not move.
fn moved<'a>(
    before: &BTreeMap<String, f64>,
    after: &'a BTreeMap<String, f64>,
    least: f64,
) -> BTreeMap<&'a str, f64> {
    after
        .iter()
        .map(|(k, v)| (k.as_str(), v - before.get(k).copied().unwrap_or(0.0)))
        .filter(|(_, v)| *v >= least)
        .collect()
}

/// Prints and emits the stage split of a phase of `wall` seconds that moved `n` events, and how
/// many batches each process took for them.
fn report_stages(
    phase: &str,
    run: usize,
    wall: f64,
    n: usize,
    before: &Counters,
    after: &Counters,
) {
    let split = moved(&before.stages, &after.stages, 0.0005);
    let batches = moved(&before.batches, &after.batches, 1.0);
    let line: Vec<String> = split
        .iter()
        .map(|(k, v)| format!("{k} {:.0} ms ({:.0} %)", v * 1e3, 100.0 * v / wall))
        .collect();
    let sizes: Vec<String> = batches
        .iter()
        .map(|(k, v)| format!("{k} {v:.0} (mean {:.0} events)", n as f64 / v))
        .collect();
    println!(
        "  stages of {phase} ({:.0} ms wall): {}; batches: {}",
        wall * 1e3,
        line.join(", "),
        sizes.join(", ")
    );
    emit(json!({
        "bench": "whole_stages", "series": "whole_stages", "run": run, "phase": phase,
        "wall_seconds": wall, "seconds": split, "events": n, "batches": batches,
    }));
}

/// Starts `perf record` on a process; stopped (SIGINT) by dropping the guard.
struct Perf(std::process::Child);

impl Perf {
    fn record(pid: u32, out: &std::path::Path) -> Option<Perf> {
        let child = Command::new("perf")
            .args(["record", "-F", "499", "-g", "-p", &pid.to_string(), "-o"])
            .arg(out)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .ok()?;
        Some(Perf(child))
    }
}

impl Drop for Perf {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-INT", &self.0.id().to_string()])
            .status();
        let _ = self.0.wait();
    }
}

/// Publishes `n` messages of `size` bytes to a scratch stream with at most 2 048 acks
/// outstanding; returns messages per second.
async fn raw_publish(js: &jetstream::Context, n: usize, size: usize, run: usize) -> f64 {
    let name = format!("BENCH_RAW_{run}_{n}");
    let subject = format!("bench.raw.{run}.{n}");
    js.create_stream(stream::Config {
        name: name.clone(),
        subjects: vec![subject.clone()],
        ..Default::default()
    })
    .await
    .unwrap();
    let body = bytes::Bytes::from(vec![b'x'; size]);
    let started = Instant::now();
    let mut in_flight = std::collections::VecDeque::new();
    for i in 0..n {
        if in_flight.len() >= 2048 {
            let ack: jetstream::context::PublishAckFuture = in_flight.pop_front().unwrap();
            ack.await.unwrap();
        }
        let message = jetstream::message::PublishMessage::build()
            .payload(body.clone())
            .message_id(format!("raw-{run}-{i}"));
        in_flight.push_back(js.send_publish(subject.clone(), message).await.unwrap());
    }
    for ack in in_flight {
        ack.await.unwrap();
    }
    let rate = n as f64 / started.elapsed().as_secs_f64();
    js.delete_stream(&name).await.unwrap();
    rate
}

/// Fetches and acks `n` messages of FOLLOWUP from `start_sequence` with a fresh pull consumer
/// (batches of 5 000, like the projector); returns messages per second.
async fn bare_consume(js: &jetstream::Context, start_sequence: u64, n: usize) -> f64 {
    let stream = js.get_stream("FOLLOWUP").await.unwrap();
    let consumer: consumer::PullConsumer = stream
        .create_consumer(consumer::pull::Config {
            deliver_policy: consumer::DeliverPolicy::ByStartSequence { start_sequence },
            ack_policy: consumer::AckPolicy::Explicit,
            ..Default::default()
        })
        .await
        .unwrap();
    let started = Instant::now();
    let mut got = 0;
    while got < n {
        let mut batch = consumer
            .fetch()
            .max_messages((n - got).min(5000))
            .expires(Duration::from_secs(1))
            .messages()
            .await
            .unwrap();
        while let Some(message) = batch.next().await {
            message.unwrap().ack().await.unwrap();
            got += 1;
        }
    }
    js.get_stream("FOLLOWUP")
        .await
        .unwrap()
        .delete_consumer(&consumer.cached_info().name)
        .await
        .unwrap();
    n as f64 / started.elapsed().as_secs_f64()
}

/// Reads org frames until one shows `pending_t3`; returns when it arrived.
async fn frame_showing(sse: &mut SseClient, pending_t3: i64) -> Instant {
    loop {
        let frame = sse
            .next_event(Duration::from_secs(300))
            .await
            .expect("an SSE frame");
        if frame.json()["pendingT3"].as_i64() == Some(pending_t3) {
            return Instant::now();
        }
    }
}

/// One size, one run: the five phases above. Returns the pending T+3 the org shows after it.
async fn large_transaction(
    whole: &Whole,
    sse: &mut SseClient,
    n: usize,
    run: usize,
    mut pending: i64,
) -> i64 {
    let pool = whole.pool();
    let secs = |from: Instant, to: Instant| to.duration_since(from).as_secs_f64();

    // 1. Relay alone. The projector is idle here: its counters now are phase 2's "before"
    // (read after it continues they could already include its first batch).
    let projector_before = scrape_all(whole, true).await;
    signal(whole.projector.pid(), "STOP");
    let before = scrape_all(whole, false).await;
    let first = whole.stream_last_sequence().await + 1;
    let (_, committed) = commit_leads(pool, "whole", n).await;
    let relayed = poll_until(pool, OUTBOX_EMPTY, 0).await;
    let relay_alone = n as f64 / secs(committed, relayed);
    let after = scrape_all(whole, false).await;
    report_stages(
        &format!("relay alone, {n} rows"),
        run,
        secs(committed, relayed),
        n,
        &before,
        &after,
    );

    // 2. Projector alone: the relay's counters from the end of phase 1, the projector's from
    // before it stopped.
    let mut before = projector_before;
    before.stages.extend(after.stages);
    before.batches.extend(after.batches);
    let resumed = Instant::now();
    signal(whole.projector.pid(), "CONT");
    let last = first + n as u64 - 1;
    let projected = poll_until(pool, PROJECTED_THROUGH, last as i64).await;
    let projector_alone = n as f64 / secs(resumed, projected);
    let after = scrape_all(whole, true).await;
    report_stages(
        &format!("projector alone, {n} rows"),
        run,
        secs(resumed, projected),
        n,
        &before,
        &after,
    );
    pending += n as i64;
    frame_showing(sse, pending).await;

    // 3. End to end.
    let perf = std::env::var_os("BENCH_PERF_DIR")
        .filter(|_| run + 1 == runs())
        .map(|dir| {
            let dir = std::path::PathBuf::from(dir);
            std::fs::create_dir_all(&dir).unwrap();
            [
                Perf::record(whole.relay.pid(), &dir.join(format!("relay-{n}.data"))),
                Perf::record(
                    whole.projector.pid(),
                    &dir.join(format!("projector-{n}.data")),
                ),
            ]
        });
    let before = scrape_all(whole, true).await;
    let first_e2e = whole.stream_last_sequence().await + 1;
    let (_, committed) = commit_leads(pool, "whole", n).await;
    let relayed = poll_until(pool, OUTBOX_EMPTY, 0).await;
    let projected = poll_until(pool, PROJECTED_THROUGH, (first_e2e + n as u64 - 1) as i64).await;
    pending += n as i64;
    let framed = frame_showing(sse, pending).await;
    drop(perf);
    let wall = secs(committed, framed);
    let after = scrape_all(whole, true).await;
    report_stages(
        &format!("end to end, {n} rows"),
        run,
        wall,
        n,
        &before,
        &after,
    );
    let end_to_end = n as f64 / wall;

    // 4. and 5. What NATS alone costs for as many messages.
    let size = whole
        .js
        .get_stream("FOLLOWUP")
        .await
        .unwrap()
        .get_raw_message(first_e2e)
        .await
        .unwrap()
        .payload
        .len();
    let raw = raw_publish(&whole.js, n, size, run).await;
    let bare = bare_consume(&whole.js, first_e2e, n).await;

    // Both stages on the same two cores, one after the other: the ceiling of a pipeline whose
    // parts cannot overlap; `min` is the ceiling if they overlapped perfectly.
    let serial = 1.0 / (1.0 / relay_alone + 1.0 / projector_alone);
    println!(
        "run {run}, {n} rows in one transaction: end to end {end_to_end:.0} changes/s \
         (commit → outbox empty {:.2} s, → projection {:.2} s, → SSE frame {:.2} s); \
         relay alone {relay_alone:.0}/s, projector alone {projector_alone:.0}/s \
         (serial ceiling {serial:.0}/s, ratio {:.2}); raw publish {raw:.0}/s, bare consume \
         {bare:.0}/s ({size}-byte events) (load average {})",
        secs(committed, relayed),
        secs(committed, projected),
        wall,
        end_to_end / serial,
        load_average()
    );
    let k = n / 1000;
    emit_figure(
        &format!("whole_tx{k}k_rate"),
        run,
        end_to_end,
        "changes/s",
        Some(serial),
    );
    emit_figure(
        &format!("whole_tx{k}k_relay_alone"),
        run,
        relay_alone,
        "events/s",
        Some(raw),
    );
    emit_figure(
        &format!("whole_tx{k}k_projector_alone"),
        run,
        projector_alone,
        "events/s",
        Some(bare),
    );
    pending
}

/// Small transactions from several writers, as fast as they commit, for `seconds`.
async fn small_transactions(whole: &Whole, ids: &[i64], run: usize) {
    let writers = env_usize("BENCH_WRITERS", 8);
    let seconds = env_usize("BENCH_SECONDS", 10) as u64;
    // A connection per writer, as the CRM's application servers each hold their own.
    let writer_pool = sqlx::postgres::PgPoolOptions::new()
        .max_connections(writers as u32)
        .connect(&whole.db.url)
        .await
        .unwrap();
    let pool = whole.pool();
    let first = whole.stream_last_sequence().await + 1;
    let committed = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let end = started + Duration::from_secs(seconds);
    let tasks: Vec<_> = ids
        .chunks(ids.len() / writers)
        .take(writers)
        .map(|mine| {
            let (pool, mine, committed) = (writer_pool.clone(), mine.to_vec(), committed.clone());
            tokio::spawn(async move {
                let mut next = 0;
                while Instant::now() < end {
                    crate::bench_util::toggle_status(&pool, &[mine[next % mine.len()]]).await;
                    next += 1;
                    committed.fetch_add(1, Ordering::Relaxed);
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap();
    }
    let commit_secs = started.elapsed().as_secs_f64();
    let changes = committed.load(Ordering::Relaxed);
    let projected = poll_until(pool, PROJECTED_THROUGH, (first + changes - 1) as i64).await;
    let total = projected.duration_since(started).as_secs_f64();
    let (rate, commit_rate) = (changes as f64 / total, changes as f64 / commit_secs);
    println!(
        "run {run}: {writers} writers committed {changes} one-lead transactions in \
         {commit_secs:.2} s ({commit_rate:.0}/s); all projected after {total:.2} s ({rate:.0}/s, \
         {:.2} of the commit rate) (load average {})",
        rate / commit_rate,
        load_average()
    );
    emit_figure(
        "whole_small_rate",
        run,
        rate,
        "changes/s",
        Some(commit_rate),
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "benchmark"]
async fn bench_whole_pipeline() {
    let sizes: Vec<usize> = std::env::var("BENCH_WHOLE_SIZES")
        .unwrap_or_else(|_| "20000,100000".into())
        .split(',')
        .map(|s| s.trim().parse().expect("BENCH_WHOLE_SIZES: numbers"))
        .collect();
    let whole = Whole::start().await;
    let (ids, _) = commit_leads(whole.pool(), "small", 20_000).await;
    let admin = token("bench-admin", &["admin"]);
    let url = format!(
        "http://{}/api/dashboard/followup-stream",
        whole.gateway.addr
    );
    let mut sse = SseClient::connect_url(&url, Auth::Bearer(&admin), None).await;
    // The seeded leads are pending T+3 too: wait until the org shows all of them.
    let mut pending = ids.len() as i64;
    frame_showing(&mut sse, pending).await;
    for run in 0..runs() {
        for &n in &sizes {
            pending = large_transaction(&whole, &mut sse, n, run, pending).await;
        }
        small_transactions(&whole, &ids, run).await;
        // The writers moved leads out of and back into pending T+3: ask what it is now.
        pending = org_pending_t3(&whole, &admin).await;
    }
}

async fn org_pending_t3(whole: &Whole, admin: &str) -> i64 {
    let url = format!("http://{}/api/followup/metrics", whole.gateway.addr);
    let body: serde_json::Value = reqwest::Client::new()
        .get(url)
        .bearer_auth(admin)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    body["pendingT3"].as_i64().expect("pendingT3")
}
