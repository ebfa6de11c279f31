use chrono::Utc;
use followup_contract::{FollowupKind, PROJECTOR_CONSUMER, STREAM_NAME};
use followup_readmodel::Scope;

use crate::helpers::{Harness, change, http_get, sample, sent};

#[tokio::test]
async fn an_event_redelivered_or_republished_under_a_new_msg_id_counts_once() {
    let h = Harness::start().await;
    h.nats
        .skip_catalog_check("republishes events under foreign Nats-Msg-Ids on purpose");
    let now = Utc::now();
    let created = change(1, 1, "ACTIVE", "u1").at(now).event();
    let delivered = sent(1, FollowupKind::T3, now);
    let flagged = change(1, 2, "ACTIVE", "u1").t3_sent().at(now).event();
    for event in [&created, &flagged] {
        h.publish(event).await;
    }
    h.publish(&delivered).await;
    // The same events again under new message ids: JetStream stores them, the inbox drops them.
    h.publish_with_msg_id(&created, "republished-1").await;
    h.publish_with_msg_id(&delivered, "republished-2").await;

    let projector = h.spawn_projector(h.config()).await;
    h.wait_until_caught_up().await;
    for path in ["/healthz", "/readyz"] {
        let response = http_get(projector.addr, path).await;
        assert!(
            response.starts_with("HTTP/1.1 200") || response.starts_with("HTTP/1.0 200"),
            "{path}: {response}"
        );
    }
    let figures = h.figures(&Scope::User("u1".into()), now).await;
    assert_eq!(
        (figures.pending_t3, figures.pending_t7, figures.sent_today),
        (0, 1, 1)
    );
    let metrics = projector.metrics().await;
    let duplicates = |ty: &str| {
        sample(
            &metrics,
            "followup_projector_events_total",
            &[ty, "outcome=\"duplicate\""],
        )
    };
    assert_eq!(duplicates("lead.changed.v1"), 1.0, "{metrics}");
    assert_eq!(duplicates("lead.followup.sent.v1"), 1.0, "{metrics}");
    // Where the batches' time went: every stage of a batch that did work has counted some.
    for stage in [
        "fetch", "parse", "lock", "inbox", "load", "fold", "write", "commit",
    ] {
        let seconds = sample(
            &metrics,
            "followup_projector_stage_seconds_total",
            &[&format!("stage=\"{stage}\"")],
        );
        assert!(seconds > 0.0, "stage {stage}: {metrics}");
    }
    projector.stop().await;

    // Redeliver the whole stream to a fresh durable consumer: every event is seen again.
    let stream = h.js.get_stream(STREAM_NAME).await.unwrap();
    stream.delete_consumer(PROJECTOR_CONSUMER).await.unwrap();
    let projector = h.spawn_projector(h.config()).await;
    h.wait_until_caught_up().await;
    let metrics = projector.metrics().await;
    let applied = sample(
        &metrics,
        "followup_projector_events_total",
        &["outcome=\"applied\""],
    );
    assert_eq!(applied, 0.0, "nothing is applied twice: {metrics}");
    let figures = h.figures(&Scope::User("u1".into()), now).await;
    assert_eq!(
        (figures.pending_t3, figures.pending_t7, figures.sent_today),
        (0, 1, 1)
    );
    let org = h.figures(&Scope::Org, now).await;
    assert_eq!((org.pending_t7, org.sent_today), (1, 1));
    assert_eq!(h.count("SELECT count(*) FROM projection_inbox").await, 3);
    projector.stop().await;
}
