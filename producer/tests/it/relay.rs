//! The relay: dedup by idempotency key, crash between publish and mark, NATS outages.

use std::time::Duration;

use async_nats::jetstream::message::PublishMessage;
use bytes::Bytes;
use chrono::Utc;
use followup_contract::STREAM_NAME;
use followup_infra::ensure_stream;
use followup_producer::ProducerMetrics;
use followup_producer::relay::{
    OutboxRow, RelayConfig, RelayOutcome, publish_rows, relay_pending, run_relay_until_stopped,
};
use followup_testkit::{NatsServer, TestDb, eventually};
use tokio_util::sync::CancellationToken;

use crate::support::{LeadSpec, insert_lead, jetstream_for, outbox_state, run_at, stream_events};

/// Runs the relay loop as `serve` does; returns its metrics, its shutdown token and its task.
fn start_relay(
    db: &TestDb,
    js: &async_nats::jetstream::Context,
    batch_size: i64,
    window: usize,
    idle_poll: Duration,
) -> (
    ProducerMetrics,
    CancellationToken,
    tokio::task::JoinHandle<()>,
) {
    let metrics = ProducerMetrics::new();
    let shutdown = CancellationToken::new();
    let config = RelayConfig {
        batch_size,
        window,
        idle_poll,
    };
    let task = tokio::spawn(run_relay_until_stopped(
        db.pool.clone(),
        js.clone(),
        config,
        metrics.clone(),
        shutdown.clone(),
    ));
    (metrics, shutdown, task)
}

async fn stream_len(js: &async_nats::jetstream::Context) -> u64 {
    js.get_stream(STREAM_NAME)
        .await
        .unwrap()
        .info()
        .await
        .unwrap()
        .state
        .messages
}

#[tokio::test]
async fn the_same_idempotency_key_twice_leaves_one_message() {
    let nats = NatsServer::start();
    nats.skip_catalog_check("a placeholder body tests JetStream's dedup; it is not an event");
    let js = jetstream_for(&nats.url()).await;
    ensure_stream(&js).await.unwrap();
    let publish = || async {
        js.send_publish(
            "freshplan.lead.followup.sent",
            PublishMessage::build()
                .payload(Bytes::from_static(b"{}"))
                .message_id("lead:1:followup:t3"),
        )
        .await
        .unwrap()
        .await
        .unwrap()
    };
    let first = publish().await;
    let second = publish().await;
    assert!(!first.duplicate);
    assert!(second.duplicate, "second ack reports the duplicate");
    assert_eq!(second.sequence, first.sequence);
    assert_eq!(stream_len(&js).await, 1);
}

#[tokio::test]
async fn a_relay_that_died_after_publishing_republishes_without_duplicates() {
    let db = TestDb::new().await;
    let nats = NatsServer::start();
    let js = jetstream_for(&nats.url()).await;
    ensure_stream(&js).await.unwrap();
    for _ in 0..40 {
        insert_lead(
            &db.pool,
            &LeadSpec::registered(Utc::now() - chrono::Duration::days(4)),
        )
        .await;
    }
    run_at(&db.pool, Utc::now()).await;
    let (rows, produced) = outbox_state(&db.pool).await;
    assert_eq!(rows, produced, "nothing published yet");

    // The dead relay: it read and published every row, then died before its transaction deleted
    // them (so, as after a real crash, every row is still in the outbox).
    let pending: Vec<OutboxRow> = sqlx::query_as(
        "SELECT id, event_id, event_type, subject, idempotency_key, data, occurred_at
         FROM followup_outbox ORDER BY id",
    )
    .fetch_all(&db.pool)
    .await
    .unwrap();
    publish_rows(&js, pending, 8).await.unwrap();
    assert_eq!(stream_len(&js).await as i64, rows);

    // The restarted relay publishes everything again; JetStream drops all of it as duplicates.
    let metrics = ProducerMetrics::new();
    let config = RelayConfig {
        batch_size: 1000,
        window: 16,
        ..RelayConfig::default()
    };
    let outcome = relay_pending(&db.pool, &js, &config, &metrics)
        .await
        .unwrap();
    assert_eq!(
        outcome,
        RelayOutcome::Published {
            rows: rows as usize,
            duplicates: rows as usize
        }
    );
    assert_eq!(
        stream_len(&js).await as i64,
        rows,
        "no duplicate in the stream"
    );
    assert_eq!(
        outbox_state(&db.pool).await.0,
        0,
        "acknowledged rows left the outbox"
    );
    assert_eq!(metrics.relay_duplicates.get() as i64, rows);
}

#[tokio::test]
async fn nats_down_during_a_run_loses_nothing_and_duplicates_nothing() {
    let db = TestDb::new().await;
    let mut nats = NatsServer::start();
    let js = jetstream_for(&nats.url()).await;
    ensure_stream(&js).await.unwrap();
    let (metrics, shutdown, relay) = start_relay(&db, &js, 50, 8, Duration::from_millis(100));

    nats.stop();
    for _ in 0..120 {
        insert_lead(
            &db.pool,
            &LeadSpec::registered(Utc::now() - chrono::Duration::days(4)),
        )
        .await;
    }
    let report = run_at(&db.pool, Utc::now()).await;
    assert_eq!(report.t3_count, 120, "the run itself does not need NATS");
    let failing = eventually(Duration::from_secs(20), || async {
        (metrics.relay_errors.get() > 0).then_some(())
    })
    .await;
    assert!(failing.is_some(), "relay noticed the outage");
    let (waiting, _) = outbox_state(&db.pool).await;
    assert!(waiting > 0, "rows wait in the outbox while NATS is down");

    nats.restart();
    let drained = eventually(Duration::from_secs(60), || async {
        let (waiting, produced) = outbox_state(&db.pool).await;
        (waiting == 0).then_some(produced)
    })
    .await
    .expect("outbox drained after NATS came back");
    shutdown.cancel();
    relay.await.unwrap();

    let events = stream_events(&js).await;
    assert_eq!(
        events.len() as i64,
        drained,
        "every outbox row is in the stream once"
    );
    let mut keys: Vec<_> = events
        .iter()
        .map(|e| e.event.idempotency_key.clone())
        .collect();
    keys.sort();
    keys.dedup();
    assert_eq!(keys.len() as i64, drained, "no idempotency key twice");
    let sent = events
        .iter()
        .filter(|e| e.event.event_type.as_str() == "lead.followup.sent.v1")
        .count();
    assert_eq!(sent, 120);
}

#[tokio::test]
async fn a_row_that_commits_below_the_relay_cursor_is_still_published() {
    let db = TestDb::new().await;
    let nats = NatsServer::start();
    let js = jetstream_for(&nats.url()).await;
    ensure_stream(&js).await.unwrap();
    let (_, shutdown, relay) = start_relay(&db, &js, 10, 4, Duration::from_millis(50));

    // A slow CRM transaction takes an outbox id first and commits last.
    let mut slow = db.pool.begin().await.unwrap();
    sqlx::query("INSERT INTO leads (company_name, status, registered_at, created_by) VALUES ('Langsam', 'ACTIVE', now() AT TIME ZONE 'UTC', 'crm')")
        .execute(&mut *slow)
        .await
        .unwrap();
    for i in 0..25 {
        sqlx::query(
            "INSERT INTO leads (company_name, status, registered_at, created_by) VALUES ($1, 'ACTIVE', now() AT TIME ZONE 'UTC', 'crm')",
        )
        .bind(format!("Schnell {i}"))
        .execute(&db.pool)
        .await
        .unwrap();
    }
    let fast = eventually(Duration::from_secs(10), || async {
        (stream_len(&js).await == 25).then_some(())
    })
    .await;
    assert!(
        fast.is_some(),
        "the committed rows above the slow one are published"
    );
    slow.commit().await.unwrap();

    let all = eventually(Duration::from_secs(10), || async {
        (stream_len(&js).await == 26).then_some(())
    })
    .await;
    assert!(
        all.is_some(),
        "the late row below the cursor is published too"
    );
    // The relay deletes a row after its PubAck, in a task beside the next publish: the stream
    // can hold the row a moment before the outbox lets go of it.
    let drained = eventually(Duration::from_secs(10), || async {
        (outbox_state(&db.pool).await == (0, 26)).then_some(())
    })
    .await;
    assert!(
        drained.is_some(),
        "outbox (rows, ids) is {:?}, not (0, 26)",
        outbox_state(&db.pool).await
    );
    shutdown.cancel();
    relay.await.unwrap();
}

#[tokio::test]
async fn the_relay_wakes_on_notify_not_on_its_poll() {
    let db = TestDb::new().await;
    let nats = NatsServer::start();
    let js = jetstream_for(&nats.url()).await;
    ensure_stream(&js).await.unwrap();
    // A poll interval far beyond the test's patience: only NOTIFY can wake the relay in time.
    let (_, shutdown, relay) = start_relay(&db, &js, 100, 8, Duration::from_secs(3600));
    // Let the relay go idle (it published nothing and waits).
    tokio::time::sleep(Duration::from_millis(300)).await;
    insert_lead(&db.pool, &LeadSpec::registered(Utc::now())).await;
    let woke = eventually(Duration::from_secs(10), || async {
        (stream_len(&js).await == 1).then_some(())
    })
    .await;
    assert!(woke.is_some(), "the insert's NOTIFY woke the relay");
    shutdown.cancel();
    relay.await.unwrap();
}

#[tokio::test]
async fn a_row_outside_the_contract_waits_in_the_outbox_with_its_reason() {
    let nats = NatsServer::start();
    let db = TestDb::new().await;
    let js = jetstream_for(&nats.url()).await;
    ensure_stream(&js).await.unwrap();
    // A hand-written row of a type no contract knows, and a producer row without a key.
    let bad: i64 = sqlx::query_scalar(
        "INSERT INTO followup_outbox (event_type, subject, idempotency_key, data)
         VALUES ('lead.exploded.v1', '1', 'k1', '{}') RETURNING id",
    )
    .fetch_one(&db.pool)
    .await
    .unwrap();
    let (metrics, shutdown, task) = start_relay(&db, &js, 100, 8, Duration::from_millis(50));
    eventually(Duration::from_secs(20), || async {
        let attempts: i32 =
            sqlx::query_scalar("SELECT publish_attempts FROM followup_outbox WHERE id = $1")
                .bind(bad)
                .fetch_one(&db.pool)
                .await
                .unwrap();
        (attempts > 0).then_some(())
    })
    .await
    .expect("the relay records why the row waits");
    let reason: String = sqlx::query_scalar("SELECT last_error FROM followup_outbox WHERE id = $1")
        .bind(bad)
        .fetch_one(&db.pool)
        .await
        .unwrap();
    assert!(reason.contains(&format!("outbox row {bad}")), "{reason}");
    assert!(
        reason.contains("unknown event type \"lead.exploded.v1\""),
        "{reason}"
    );
    assert_eq!(
        stream_len(&js).await,
        0,
        "nothing published past it: order holds"
    );

    // The operator repairs the row: it is published with the trigger's derived key.
    sqlx::query(
        "UPDATE followup_outbox SET event_type = 'lead.changed.v1', idempotency_key = NULL,
           data = jsonb_build_object('leadId', 1, 'ownerUserId', 'u1', 'collaboratorUserIds', '[]'::jsonb,
             'status', 'ACTIVE', 'registeredAt', '2026-11-20T08:00:00Z', 'clockStoppedAt', null,
             't3Sent', false, 't7Sent', false, 'contactable', true, 'deleted', false, 'sequence', id)
         WHERE id = $1",
    )
    .bind(bad)
    .execute(&db.pool)
    .await
    .unwrap();
    // The relay retries with backoff (100 ms doubling); 40 s covers several attempts.
    eventually(Duration::from_secs(40), || async {
        (metrics.relay_published.get() == 1).then_some(())
    })
    .await
    .expect("the repaired row is published");
    shutdown.cancel();
    task.await.unwrap();
    let events = stream_events(&js).await;
    assert_eq!(events.len(), 1);
    assert_eq!(
        events[0].msg_id.as_deref(),
        Some(format!("lead:1:change:{bad}").as_str())
    );
}
