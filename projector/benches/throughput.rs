//! Projector throughput against a bare loop, on the same messages in the same run.
//!
//! `cargo bench -p followup-projector --bench throughput` (env: BENCH_EVENTS, default 100000;
//! BENCH_BATCH, default 5000). Starts a private nats-server and a fresh database (testkit),
//! publishes the events once, then measures:
//! - bare: a durable pull consumer that fetches batches, inserts them into one table with one
//!   UNNEST statement per batch in a transaction, commits and acks;
//! - projector: `run_until_stopped` from readiness until its consumer has everything
//!   acked (inbox, lead states, deliveries, scope counters, runs, all committed).
//!
//! BENCH_ROUNDS (default 3) alternates both loops. Prints events/s of both and their ratio per
//! round and the medians, and each round as a JSON line (`{"bench": "projector", …}`) for
//! `scripts/bench.sh`. No timing assertions.

use std::time::{Duration, Instant};

use async_nats::HeaderMap;
use async_nats::jetstream::{self, consumer};
use chrono::Utc;
use followup_contract::{
    CONTENT_TYPE, EventParts, FollowupKind, FollowupProcessed, FollowupSent, LeadChanged,
    PROJECTOR_CONSUMER, Payload, STREAM_NAME, change_key, run_key, sent_key,
};
use followup_projector::consume::{ack_all, fetch_batch};
use followup_projector::{Config, run_until_stopped};
use followup_testkit::{NatsServer, TestDb};
use tokio_util::sync::CancellationToken;

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

#[tokio::main]
async fn main() {
    if std::env::var_os("RUST_LOG").is_some() {
        // e.g. RUST_LOG=followup_projector::apply=debug: the phase times of every batch.
        followup_infra::telemetry::init_tracing();
    }
    let events = env_usize("BENCH_EVENTS", 100_000);
    let batch = env_usize("BENCH_BATCH", 5000);
    let rounds = env_usize("BENCH_ROUNDS", 3);
    let nats = NatsServer::start();
    nats.skip_catalog_check("benchmark: the integration tests validate events against the catalog; here it would only lengthen the run");
    let client = async_nats::connect(nats.url()).await.unwrap();
    let js = jetstream::new(client.clone());
    followup_infra::ensure_stream(&js).await.unwrap();

    let started = Instant::now();
    publish_events(&js, events).await;
    let mut stream = js.get_stream(STREAM_NAME).await.unwrap();
    let stored = stream.info().await.unwrap().state.messages as usize;
    assert_eq!(
        stored, events,
        "every event stored (no idempotency key repeated)"
    );
    eprintln!("published {events} events in {:.1?}", started.elapsed());

    // Alternate the two loops, each round on a fresh database and fresh consumers, so that
    // load from elsewhere on the machine hits both alike; report every round and the medians.
    let (mut bare, mut projector, mut ratios) = (Vec::new(), Vec::new(), Vec::<f64>::new());
    println!("events: {events}, batch: {batch}, rounds: {rounds}");
    for round in 0..rounds {
        let db = TestDb::new().await;
        let b = bare_loop(&js, &db, events, batch, round).await;
        let db = TestDb::new().await;
        let _ = stream.delete_consumer(PROJECTOR_CONSUMER).await;
        let p = projector_run(&js, &db, &nats, events, batch).await;
        let (b, p) = (
            events as f64 / b.as_secs_f64(),
            events as f64 / p.as_secs_f64(),
        );
        println!(
            "round {round}: bare loop {b:>8.0} events/s, projector {p:>8.0} events/s, ratio {:.2}",
            p / b
        );
        let record = serde_json::json!({
            "bench": "projector", "figure": "projector", "run": round, "value": p,
            "unit": "events/s", "baseline": b,
        });
        println!("{record}");
        bare.push(b);
        projector.push(p);
        ratios.push(p / b);
    }
    let (b, p, r) = (
        median(&mut bare),
        median(&mut projector),
        median(&mut ratios),
    );
    println!(
        "median: bare loop {b:>8.0} events/s, projector {p:>8.0} events/s, ratio of rounds {r:.2}"
    );
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

/// 70 % lead changes (50 owners, one collaborator each), 29 % deliveries, 1 % runs.
async fn publish_events(js: &jetstream::Context, events: usize) {
    let now = Utc::now();
    let mut pending = Vec::with_capacity(2000);
    for i in 0..events {
        // Each block of 40 000 events has its own 20 000 leads, each changed twice. A delivery
        // goes to the lead of the change 70 events earlier (so the lead exists): T+3 for changes
        // in a block's first half, T+7 in its second. No idempotency key repeats.
        let lead_of = |j: usize| (j % 20_000 + j / 40_000 * 20_000) as i64 + 1;
        let lead = lead_of(i);
        let (subject, key, body) = match i % 100 {
            0 => {
                let run = format!("run-{i}");
                let data = FollowupProcessed {
                    run_id: run.clone(),
                    t3_count: 10,
                    t7_count: 5,
                    skipped_count: 1,
                    error_count: 0,
                    processed_at: now,
                    duration_ms: 800,
                };
                encode(None, run_key(&run), data)
            }
            1..=29 if i >= 70 => {
                let j = i - 70;
                let lead = lead_of(j);
                let kind = if (j / 20_000) % 2 == 0 {
                    FollowupKind::T3
                } else {
                    FollowupKind::T7
                };
                let data = FollowupSent {
                    lead_id: lead,
                    owner_user_id: Some(format!("u{}", lead % 50)),
                    kind,
                    sent_at: now,
                    run_id: "run".into(),
                };
                encode(Some(lead), sent_key(lead, kind), data)
            }
            _ => {
                let sequence = i as i64 + 1;
                let data = LeadChanged {
                    lead_id: lead,
                    owner_user_id: Some(format!("u{}", lead % 50)),
                    collaborator_user_ids: vec![format!("u{}", (lead + 7) % 50)],
                    status: if i % 13 == 0 { "CONVERTED" } else { "ACTIVE" }.into(),
                    registered_at: now,
                    clock_stopped_at: None,
                    t3_sent: i % 3 == 0,
                    t7_sent: false,
                    contactable: Some(true),
                    deleted: false,
                    sequence,
                };
                encode(Some(lead), change_key(lead, sequence), data)
            }
        };
        let mut headers = HeaderMap::new();
        headers.insert("Content-Type", CONTENT_TYPE);
        headers.insert("Nats-Msg-Id", key.as_str());
        pending.push(
            js.publish_with_headers(subject, headers, body.into())
                .await
                .unwrap(),
        );
        if pending.len() == 2000 {
            for ack in pending.drain(..) {
                ack.await.unwrap();
            }
        }
    }
    for ack in pending {
        ack.await.unwrap();
    }
}

fn encode<T: Payload>(lead: Option<i64>, key: String, data: T) -> (&'static str, String, Vec<u8>) {
    let event = EventParts::new(lead.map(|l| l.to_string()), key.clone(), Utc::now(), &data);
    (T::TYPE.subject(), key, event.encode())
}

/// Fetch, insert the batch into one table in one statement, commit, ack.
async fn bare_loop(
    js: &jetstream::Context,
    db: &TestDb,
    events: usize,
    batch: usize,
    round: usize,
) -> Duration {
    sqlx::query(
        "CREATE TABLE bench_bare (stream_sequence BIGINT PRIMARY KEY, subject TEXT, body BYTEA)",
    )
    .execute(&db.pool)
    .await
    .unwrap();
    let stream = js.get_stream(STREAM_NAME).await.unwrap();
    let mut config = followup_infra::nats::projector_consumer_config().unwrap();
    config.durable_name = Some(format!("bench-bare-{round}"));
    let consumer: consumer::PullConsumer = stream.create_consumer(config).await.unwrap();
    let started = Instant::now();
    let mut done = 0;
    while done < events {
        // The projector's own fetch, so both loops read the stream the same way.
        let fetched = fetch_batch(&consumer, batch, Duration::from_millis(100))
            .await
            .unwrap();
        let sequences: Vec<i64> = fetched
            .iter()
            .map(|m| m.info().unwrap().stream_sequence as i64)
            .collect();
        let subjects: Vec<String> = fetched.iter().map(|m| m.subject.to_string()).collect();
        let bodies: Vec<Vec<u8>> = fetched.iter().map(|m| m.payload.to_vec()).collect();
        let mut tx = db.pool.begin().await.unwrap();
        sqlx::query(
            "INSERT INTO bench_bare SELECT * FROM UNNEST($1::int8[], $2::text[], $3::bytea[])",
        )
        .bind(sequences)
        .bind(subjects)
        .bind(bodies)
        .execute(&mut *tx)
        .await
        .unwrap();
        tx.commit().await.unwrap();
        ack_all(&js.client(), &fetched).await.unwrap();
        done += fetched.len();
    }
    started.elapsed()
}

async fn readyz(addr: std::net::SocketAddr) -> bool {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let Ok(mut stream) = tokio::net::TcpStream::connect(addr).await else {
        return false;
    };
    let _ = stream.write_all(b"GET /readyz HTTP/1.0\r\n\r\n").await;
    let mut response = String::new();
    let _ = stream.read_to_string(&mut response).await;
    response.starts_with("HTTP/1.0 200") || response.starts_with("HTTP/1.1 200")
}

/// The real projector, from readiness until everything is applied, committed and acked.
async fn projector_run(
    js: &jetstream::Context,
    db: &TestDb,
    nats: &NatsServer,
    events: usize,
    batch: usize,
) -> Duration {
    let mut config = Config::new(db.url.clone(), nats.url());
    config.batch_size = batch as u32;
    config.fetch_wait_ms = 100;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let token = CancellationToken::new();
    let handle = tokio::spawn(run_until_stopped(config, listener, token.clone()));
    // Time from readiness (connected, migrated, consumer looked up), as the bare loop's time
    // starts after its set-up too.
    while !readyz(addr).await {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let started = Instant::now();
    let stream = js.get_stream(STREAM_NAME).await.unwrap();
    loop {
        tokio::time::sleep(Duration::from_millis(5)).await;
        let Ok(mut consumer) = stream
            .get_consumer::<consumer::pull::Config>(PROJECTOR_CONSUMER)
            .await
        else {
            continue;
        };
        let info = consumer.info().await.unwrap();
        if info.ack_floor.stream_sequence >= events as u64 {
            break;
        }
    }
    let elapsed = started.elapsed();
    let applied: i64 = sqlx::query_scalar("SELECT count(*) FROM projection_inbox")
        .fetch_one(&db.pool)
        .await
        .unwrap();
    assert_eq!(applied as usize, events, "every event applied");
    token.cancel();
    handle.await.unwrap().unwrap();
    elapsed
}
