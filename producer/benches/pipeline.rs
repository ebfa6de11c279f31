//! Producer benchmarks (`cargo bench -p followup-producer --bench pipeline`): figures printed
//! beside a baseline measured in the same process, never asserted.
//!
//! 1. Relay: outbox → JetStream, acknowledged and marked, against a raw async-nats pipelined
//!    publish of the very same message bodies to the same stream.
//! 2. A producer run over 1 000 000 leads of which 100 000 are due, with the `log` mailer
//!    writing to a file.
//!
//! Environment: `BENCH_EVENTS` (default 200000), `BENCH_LEADS` (1000000), `BENCH_DUE` (100000),
//! `BENCH_REPEAT` (3), `BENCH_ONLY` (`relay` or `run`: only that part). Needs Postgres
//! (TEST_DATABASE_URL) and the `nats-server` binary. Besides the text, every measured figure is
//! printed as a JSON line (`{"bench": …}`) for `scripts/bench.sh`.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use async_nats::jetstream::{self, message::PublishMessage};
use bytes::Bytes;
use chrono::Utc;
use followup_contract::STREAM_NAME;
use followup_infra::ensure_stream;
use followup_producer::relay::{OutboxRow, RelayConfig, run_relay_until_stopped};
use followup_producer::{
    Delivery, Mailer, ProducerMetrics, Renderer, RetryPolicy, RunOutcome, RunRequest, RunTrigger,
    UnsubscribeLinks, execute_run,
};
use followup_testkit::{NatsServer, TestDb};
use tokio_util::sync::CancellationToken;

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn median(xs: &mut [f64]) -> f64 {
    xs.sort_by(|a, b| a.partial_cmp(b).unwrap());
    xs[xs.len() / 2]
}

fn spread(xs: &[f64]) -> (f64, f64) {
    let min = xs.iter().cloned().fold(f64::INFINITY, f64::min);
    let max = xs.iter().cloned().fold(0.0, f64::max);
    (min, max)
}

async fn purge(js: &jetstream::Context) {
    js.get_stream(STREAM_NAME)
        .await
        .unwrap()
        .purge()
        .await
        .unwrap();
}

/// Fills the outbox with `n` unpublished `lead.changed.v1` rows shaped like the trigger's (no
/// stored key: the relay derives it from lead and outbox id). Keys carry the outbox id, which
/// never repeats, so every round publishes keys JetStream has not seen
/// (a purge empties the stream but not its duplicate window: repeated keys would be dropped as
/// duplicates and nothing stored).
async fn seed_outbox(db: &TestDb, n: usize) {
    sqlx::query("TRUNCATE followup_outbox")
        .execute(&db.pool)
        .await
        .unwrap();
    sqlx::query(
        "INSERT INTO followup_outbox (id, event_type, subject, data)
         SELECT s.id, 'lead.changed.v1', s.i::text,
                jsonb_build_object('leadId', s.i, 'ownerUserId', 'u' || (s.i % 50), 'collaboratorUserIds', '[]'::jsonb,
                  'status', 'ACTIVE', 'registeredAt', '2026-11-20T08:00:00.000000Z', 'clockStoppedAt', null,
                  't3Sent', false, 't7Sent', false, 'contactable', true, 'deleted', false, 'sequence', s.id)
         FROM (SELECT nextval(pg_get_serial_sequence('followup_outbox', 'id')) AS id, i
               FROM generate_series(1, $1::bigint) AS i) AS s",
    )
    .bind(n as i64)
    .execute(&db.pool)
    .await
    .unwrap();
}

/// Asserts that the stream stores exactly `n` messages: a figure of a pass whose publishes were
/// dropped as duplicates would measure nothing.
async fn assert_stored(js: &jetstream::Context, n: usize, what: &str) {
    let mut stream = js.get_stream(STREAM_NAME).await.unwrap();
    let stored = stream.info().await.unwrap().state.messages as usize;
    assert_eq!(
        stored, n,
        "{what}: every event stored once, none dropped as duplicate"
    );
}

async fn bench_relay(db: &TestDb, js: &jetstream::Context, n: usize) -> f64 {
    seed_outbox(db, n).await;
    purge(js).await;
    let metrics = ProducerMetrics::new();
    let shutdown = CancellationToken::new();
    let started = Instant::now();
    // The relay exactly as `serve` runs it; done when every row is acknowledged and marked.
    let relay = tokio::spawn(run_relay_until_stopped(
        db.pool.clone(),
        js.clone(),
        RelayConfig::default(),
        metrics.clone(),
        shutdown.clone(),
    ));
    while (metrics.relay_published.get() as usize) < n {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let secs = started.elapsed().as_secs_f64();
    shutdown.cancel();
    relay.await.unwrap();
    let (waiting,): (i64,) = sqlx::query_as("SELECT count(*) FROM followup_outbox")
        .fetch_one(&db.pool)
        .await
        .unwrap();
    assert_eq!(waiting, 0, "every row acknowledged and removed");
    assert_stored(js, n, "relay").await;
    n as f64 / secs
}

async fn bench_raw(db: &TestDb, js: &jetstream::Context, n: usize, window: usize) -> f64 {
    seed_outbox(db, n).await;
    let rows: Vec<OutboxRow> = sqlx::query_as(
        "SELECT id, event_id, event_type, subject, idempotency_key, data, occurred_at FROM followup_outbox ORDER BY id",
    )
    .fetch_all(&db.pool)
    .await
    .unwrap();
    // Encoding is done up front: the baseline is the broker and client alone.
    let bodies: Vec<(&str, String, Bytes)> = rows
        .into_iter()
        .map(|r| {
            let m = r.into_message().unwrap();
            (m.subject, format!("raw:{}", m.key), m.body)
        })
        .collect();
    purge(js).await;
    let started = Instant::now();
    let mut in_flight = VecDeque::with_capacity(window);
    for (subject, id, body) in bodies.iter().take(n) {
        if in_flight.len() >= window {
            let fut: jetstream::context::PublishAckFuture = in_flight.pop_front().unwrap();
            fut.await.unwrap();
        }
        let msg = PublishMessage::build()
            .payload(body.clone())
            .header("Content-Type", "application/cloudevents+json")
            .message_id(id);
        in_flight.push_back(js.send_publish(*subject, msg).await.unwrap());
    }
    for fut in in_flight {
        fut.await.unwrap();
    }
    let rate = n as f64 / started.elapsed().as_secs_f64();
    assert_stored(js, n, "raw publish").await;
    rate
}

async fn bench_run(leads: usize, due: usize) -> (f64, i64) {
    let db = TestDb::new().await;
    // Seeding is not measured; the CRM's insert trigger is off so the outbox starts empty.
    sqlx::query("ALTER TABLE leads DISABLE TRIGGER followup_lead_changed_ins")
        .execute(&db.pool)
        .await
        .unwrap();
    sqlx::query(
        "INSERT INTO leads (company_name, contact_person, email, business_type, territory_id, status,
                            owner_user_id, registered_at, metadata, created_by)
         SELECT 'Firma ' || i, 'Kontakt ' || i, 'lead' || i || '@example.com',
                (ARRAY['RESTAURANT','HOTEL','KANTINE','CATERING','SONSTIGES'])[1 + i % 5], 'DE',
                CASE WHEN i <= $2 THEN 'ACTIVE' ELSE (ARRAY['ACTIVE','REGISTERED','CONVERTED','LOST'])[1 + i % 4] END,
                'u' || (i % 50),
                (now() AT TIME ZONE 'UTC')
                  - CASE WHEN i <= $2 THEN interval '4 days' ELSE interval '1 day' END,
                '{\"emailConsent\": true}', 'bench'
         FROM generate_series(1, $1::bigint) AS i",
    )
    .bind(leads as i64)
    .bind(due as i64)
    .execute(&db.pool)
    .await
    .unwrap();
    sqlx::query("ALTER TABLE leads ENABLE TRIGGER followup_lead_changed_ins")
        .execute(&db.pool)
        .await
        .unwrap();
    sqlx::query("VACUUM ANALYZE leads")
        .execute(&db.pool)
        .await
        .unwrap();
    let dir = tempfile_dir();
    let delivery = Delivery {
        mailer: Mailer::log_file(&dir.join("mails.jsonl")).unwrap(),
        renderer: std::sync::Arc::new(
            Renderer::embedded(UnsubscribeLinks::new(
                "https://crm.example.com",
                b"bench secret".to_vec(),
            ))
            .unwrap(),
        ),
        retry: RetryPolicy::default(),
        claim_timeout: Duration::from_secs(300),
    };
    let request = RunRequest {
        trigger: RunTrigger::Manual,
        now: Utc::now(),
        tz: chrono_tz::Europe::Berlin,
        batch_size: 1000,
    };
    let started = Instant::now();
    let outcome = execute_run(
        &db.pool,
        &delivery,
        &ProducerMetrics::new(),
        &request,
        &CancellationToken::new(),
    )
    .await
    .unwrap();
    let secs = started.elapsed().as_secs_f64();
    let RunOutcome::Completed(report) = outcome else {
        panic!("manual run")
    };
    (secs, report.t3_count)
}

fn tempfile_dir() -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("followup-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// One figure of one run as a JSON line, beside the baseline measured in the same run.
fn emit(figure: &str, run: usize, value: f64, unit: &str, baseline: Option<f64>) {
    let record = serde_json::json!({
        "bench": figure, "figure": figure, "run": run, "value": value, "unit": unit,
        "baseline": baseline,
    });
    println!("{record}");
}

#[tokio::main]
async fn main() {
    let n = env_usize("BENCH_EVENTS", 200_000);
    let repeat = env_usize("BENCH_REPEAT", 3).max(1);
    let only = std::env::var("BENCH_ONLY").unwrap_or_default();
    if only != "run" {
        bench_relays(n, repeat).await;
    }
    if only != "relay" {
        let leads = env_usize("BENCH_LEADS", 1_000_000);
        let due = env_usize("BENCH_DUE", 100_000);
        println!("## Producer run: {leads} leads, {due} due for T+3, log mailer to a file");
        for run in 0..repeat {
            let (secs, sent) = bench_run(leads, due).await;
            println!(
                "run {run}: {secs:.2} s for {sent} follow-ups ({:.0} follow-ups/s); target ≤ 20 s",
                sent as f64 / secs
            );
            emit("producer_run_s", run, secs, "s", None);
        }
    }
}

async fn bench_relays(n: usize, repeat: usize) {
    let nats = NatsServer::start();
    nats.skip_catalog_check("benchmark: the integration tests validate events against the catalog; here it would only lengthen the run");
    let client = async_nats::connect(nats.url()).await.unwrap();
    let js = jetstream::ContextBuilder::new()
        .timeout(Duration::from_secs(10))
        .build(client);
    ensure_stream(&js).await.unwrap();
    let db = TestDb::new().await;

    println!(
        "## Relay: {n} events, {repeat} runs each (window {})",
        RelayConfig::default().window
    );
    let (mut relay, mut raw) = (Vec::new(), Vec::new());
    for run in 0..repeat {
        relay.push(bench_relay(&db, &js, n).await);
        raw.push(bench_raw(&db, &js, n, 4096).await);
        emit("relay", run, relay[run], "events/s", Some(raw[run]));
    }
    let (r_min, r_max) = spread(&relay);
    let (b_min, b_max) = spread(&raw);
    let (r, b) = (median(&mut relay), median(&mut raw));
    println!(
        "relay (outbox → JetStream, acked, removed): median {r:>9.0} events/s  (min {r_min:.0}, max {r_max:.0})"
    );
    println!(
        "raw pipelined async-nats publish:          median {b:>9.0} events/s  (min {b_min:.0}, max {b_max:.0})"
    );
    println!(
        "ratio relay/raw: {:.2}   targets: ≥ 50000 events/s and ≥ 0.50",
        r / b
    );
}
