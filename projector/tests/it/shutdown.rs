//! Shutdown while everything is gone: a projector retrying a batch its database refuses, whose
//! NATS then disappears too, must still stop on SIGTERM (found by the fault suite: the progress
//! acks of a large batch filled the client's command buffer and waited for a reconnect for ever).

use std::time::Duration;

use followup_testkit::eventually;

use crate::helpers::{Harness, change};

#[tokio::test]
async fn a_projector_retrying_a_batch_stops_when_nats_is_gone_too() {
    let mut h = Harness::start().await;
    // One batch of more messages than the client buffers (2048 commands): each retry of the
    // batch sends one progress ack per message.
    const EVENTS: i64 = 3000;
    for lead in 1..=EVENTS {
        h.publish(&change(lead, lead, "ACTIVE", "u1").event()).await;
    }
    // Every batch now fails to apply, as with a dropped database.
    sqlx::query("ALTER TABLE projection_inbox RENAME TO projection_inbox_gone")
        .execute(&h.db.pool)
        .await
        .unwrap();
    let mut config = h.config();
    config.batch_size = 5000;
    let projector = h.spawn_projector(config).await;
    let consumer = h.consumer().await.expect("durable consumer");
    let in_hand = eventually(Duration::from_secs(60), || {
        let mut consumer = consumer.clone();
        async move {
            let info = consumer.info().await.ok()?;
            (info.num_ack_pending as i64 >= EVENTS).then_some(())
        }
    })
    .await;
    assert!(in_hand.is_some(), "the projector never fetched the batch");

    h.nats.stop();
    // Let the retry loop run into the dead connection (its delays are 0.1, 0.2, 0.4 … s).
    tokio::time::sleep(Duration::from_secs(3)).await;
    projector.token.cancel();
    let stopped = tokio::time::timeout(Duration::from_secs(60), projector.handle).await;
    assert!(
        stopped.is_ok(),
        "the projector did not stop after shutdown with its database and NATS gone"
    );
    assert_eq!(
        h.count("SELECT count(*) FROM projection_leads").await,
        0,
        "nothing was applied"
    );
}
