//! Dead letters of another module's durable: a module that always fails one message sees it
//! dead-lettered after `max_deliver` (with its sequence, durable, deliveries and last error),
//! counted on the projector's /metrics, collected when a projector starts after the advisory was
//! raised, stored once however often the advisory arrives, and
//! replayed after the fix to that module exactly once and to no other module.

use std::time::Duration;

use async_nats::jetstream::{self, AckKind, consumer::PullConsumer};
use chrono::Utc;
use followup_contract::{DLQ_COLLECTOR_CONSUMER, DLQ_STREAM_NAME, STREAM_NAME, dlq_error_subject};
use followup_projector::dlq::{list_module_dead_letters, replay_module_dead_letters};
use followup_projector::durables::{apply_definitions, read_definitions};
use followup_testkit::eventually;
use futures::StreamExt;
use tokio_util::sync::CancellationToken;

use crate::helpers::{Harness, change, sample};
use crate::module_apply::write_definition;

async fn durable(js: &jetstream::Context, stream: &str, name: &str) -> PullConsumer {
    js.get_stream(stream)
        .await
        .unwrap()
        .get_consumer(name)
        .await
        .unwrap()
}

const ADVISORY_A: &str = "$JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES.FOLLOWUP.mod-a";

/// Module `mod-a`: acks everything except stream sequence `poison`, which it reports and naks.
fn spawn_failing_module(js: jetstream::Context, poison: u64, stop: CancellationToken) {
    tokio::spawn(async move {
        let consumer = durable(&js, STREAM_NAME, "mod-a").await;
        while !stop.is_cancelled() {
            let Ok(mut batch) = consumer
                .fetch()
                .max_messages(10)
                .expires(Duration::from_millis(200))
                .messages()
                .await
            else {
                continue;
            };
            while let Some(Ok(message)) = batch.next().await {
                if message.info().unwrap().stream_sequence == poison {
                    let subject = dlq_error_subject("mod-a", poison);
                    let _ = js.publish(subject, "cannot apply: boom".into()).await;
                    let _ = message.ack_with(AckKind::Nak(None)).await;
                } else {
                    let _ = message.ack().await;
                }
            }
        }
    });
}

/// Every message `consumer` delivers within `wait`, acked.
async fn drain(consumer: &PullConsumer, wait: Duration) -> Vec<jetstream::Message> {
    let mut got = Vec::new();
    let mut batch = consumer
        .fetch()
        .max_messages(100)
        .expires(wait)
        .messages()
        .await
        .unwrap();
    while let Some(Ok(message)) = batch.next().await {
        message.ack().await.unwrap();
        got.push(message);
    }
    got
}

#[tokio::test]
async fn a_message_one_module_always_fails_is_dead_lettered_counted_and_replayed_to_it_once() {
    let h = Harness::start().await;
    let dir = tempfile::tempdir().unwrap();
    write_definition(dir.path(), "mod-a", "all", 3);
    write_definition(dir.path(), "mod-b", "all", 3);
    let definitions = read_definitions(dir.path()).unwrap();
    apply_definitions(&h.js, &definitions, false).await.unwrap();
    let now = Utc::now();
    for lead in 1..=3 {
        h.publish(&change(lead, 1, "ACTIVE", "u1").at(now).event())
            .await;
    }
    let poison_key = change(2, 1, "ACTIVE", "u1").at(now).event().idempotency_key;
    drain(
        &durable(&h.js, STREAM_NAME, "mod-b").await,
        Duration::from_millis(500),
    )
    .await;
    let fixed = CancellationToken::new();
    spawn_failing_module(h.js.clone(), 2, fixed.clone());

    // No projector (so no collector) runs yet: FOLLOWUP_DLQ keeps the advisory until one starts.
    let captured = eventually(Duration::from_secs(30), || async {
        let dlq = h.js.get_stream(DLQ_STREAM_NAME).await.ok()?;
        dlq.get_last_raw_message_by_subject(ADVISORY_A).await.ok()
    })
    .await;
    assert!(
        captured.is_some(),
        "the max-deliveries advisory is captured"
    );
    assert!(
        list_module_dead_letters(&h.js, None)
            .await
            .unwrap()
            .is_empty()
    );
    let projector = h.spawn_projector(h.config()).await;
    let letters = eventually(Duration::from_secs(30), || async {
        let letters = list_module_dead_letters(&h.js, Some("mod-a")).await.ok()?;
        (!letters.is_empty()).then_some(letters)
    })
    .await;
    let letters = letters.expect("the failed message reaches FOLLOWUP_DLQ");
    assert_eq!(letters.len(), 1, "{letters:?}");
    let letter = &letters[0];
    assert_eq!(
        (
            letter.durable.as_str(),
            letter.stream_sequence,
            letter.deliveries
        ),
        ("mod-a", 2, 3)
    );
    assert_eq!(letter.idempotency_key.as_deref(), Some(poison_key.as_str()));
    assert_eq!(letter.last_error.as_deref(), Some("cannot apply: boom"));
    assert_eq!(letter.subject.as_deref(), Some("freshplan.lead.changed"));
    assert!(
        list_module_dead_letters(&h.js, Some("mod-b"))
            .await
            .unwrap()
            .is_empty()
    );

    // The same advisory again (a redelivery after a collector crash): stored and counted once.
    let advisory = serde_json::json!({"stream": "FOLLOWUP", "consumer": "mod-a",
        "stream_seq": 2, "deliveries": 3});
    h.js.publish(ADVISORY_A, advisory.to_string().into())
        .await
        .unwrap()
        .await
        .unwrap();
    let collected = eventually(Duration::from_secs(10), || async {
        let info = durable(&h.js, DLQ_STREAM_NAME, DLQ_COLLECTOR_CONSUMER)
            .await
            .info()
            .await
            .ok()?
            .clone();
        (info.num_pending == 0 && info.num_ack_pending == 0 && info.delivered.stream_sequence >= 2)
            .then_some(())
    })
    .await;
    assert!(collected.is_some(), "collector read both advisories");
    assert_eq!(
        list_module_dead_letters(&h.js, None).await.unwrap().len(),
        1
    );
    let metrics = projector.metrics().await;
    let count = |d: &str| sample(&metrics, "followup_dead_letters_total", &[d]);
    assert_eq!(count("durable=\"mod-a\""), 1.0, "{metrics}");
    assert!(
        metrics.contains("followup_dead_letters_total{durable=\"mod-b\"} 0"),
        "{metrics}"
    );

    // The fix: mod-a stops failing; the replay reaches mod-a's replay durable only, once.
    fixed.cancel();
    assert_eq!(
        replay_module_dead_letters(&h.js, "mod-a", Some(2))
            .await
            .unwrap(),
        [2]
    );
    let replay_a = durable(&h.js, DLQ_STREAM_NAME, "mod-a").await;
    let replayed = drain(&replay_a, Duration::from_secs(2)).await;
    assert_eq!(replayed.len(), 1);
    let original =
        h.js.get_stream(STREAM_NAME)
            .await
            .unwrap()
            .get_raw_message(2)
            .await
            .unwrap();
    assert_eq!(replayed[0].payload, original.payload);
    assert!(
        drain(&replay_a, Duration::from_secs(1)).await.is_empty(),
        "exactly once"
    );
    let replay_b = durable(&h.js, DLQ_STREAM_NAME, "mod-b").await;
    assert!(
        drain(&replay_b, Duration::from_secs(1)).await.is_empty(),
        "not to mod-b"
    );
    let stream_b = durable(&h.js, STREAM_NAME, "mod-b").await;
    assert!(
        drain(&stream_b, Duration::from_millis(500))
            .await
            .is_empty()
    );
    assert_eq!(
        list_module_dead_letters(&h.js, Some("mod-a"))
            .await
            .unwrap()[0]
            .replays,
        1
    );
    assert!(
        replay_module_dead_letters(&h.js, "projector", None)
            .await
            .is_err()
    );
    projector.stop().await;
}
