use chrono::Utc;
use followup_projector::{ReplayOutcome, ReplaySelection, list_dead_letters, replay_dead_letters};
use followup_readmodel::Scope;

use crate::helpers::{Harness, TZ, change, sample, wire};

#[tokio::test]
async fn poison_messages_between_good_ones_are_dead_lettered_with_their_reason() {
    let h = Harness::start().await;
    h.nats
        .skip_catalog_check("poison messages are this test's input");
    let now = Utc::now();
    let good = |lead| change(lead, 1, "ACTIVE", "u1").at(now).event();
    let mut wrong_version = wire(good(90));
    wrong_version["specversion"] = "0.3".into();
    let mut unknown_type = wire(good(91));
    unknown_type["type"] = "lead.exploded.v1".into();
    let mut missing_field = wire(good(92));
    missing_field["data"]
        .as_object_mut()
        .unwrap()
        .remove("sequence");

    h.publish(&good(1)).await;
    h.publish_raw("freshplan.lead.changed", b"{not json".to_vec(), "poison-1")
        .await;
    h.publish(&good(2)).await;
    h.publish_raw(
        "freshplan.lead.changed",
        wrong_version.to_string().into_bytes(),
        "poison-2",
    )
    .await;
    h.publish_raw(
        "freshplan.lead.exploded",
        unknown_type.to_string().into_bytes(),
        "poison-3",
    )
    .await;
    h.publish_raw(
        "freshplan.lead.changed",
        missing_field.to_string().into_bytes(),
        "poison-4",
    )
    .await;
    h.publish(&good(3)).await;

    let projector = h.spawn_projector(h.config()).await;
    h.wait_until_caught_up().await;
    assert_eq!(
        h.figures(&Scope::Org, now).await.pending_t3,
        3,
        "good ones applied"
    );
    let letters = list_dead_letters(&h.db.pool).await.unwrap();
    let reasons: Vec<&str> = letters.iter().map(|l| l.reason.as_str()).collect();
    assert_eq!(letters.len(), 4, "{reasons:?}");
    assert!(
        reasons[0].starts_with("not a CloudEvents JSON object"),
        "{reasons:?}"
    );
    assert!(
        reasons[1].contains("unsupported specversion \"0.3\""),
        "{reasons:?}"
    );
    assert!(
        reasons[2].contains("unknown event type \"lead.exploded.v1\""),
        "{reasons:?}"
    );
    assert!(
        reasons[3].contains("invalid data for lead.changed.v1") && reasons[3].contains("sequence")
    );
    assert_eq!(letters[0].body, "{not json");
    assert_eq!(letters[2].subject, "freshplan.lead.exploded");
    assert_eq!(letters[1].headers["Nats-Msg-Id"], "poison-2");
    let metrics = projector.metrics().await;
    assert_eq!(
        sample(&metrics, "followup_projector_dead_letters_total", &[]),
        4.0,
        "{metrics}"
    );
    assert_eq!(
        sample(
            &metrics,
            "followup_projector_events_total",
            &["type=\"lead.changed.v1\"", "dead_lettered"]
        ),
        2.0,
        "a broken event of a known type keeps its type label: {metrics}"
    );
    projector.stop().await;

    // After a fix of the stored message, replay applies it and removes it; the rest stay.
    let fixed = wire(good(91)).to_string();
    sqlx::query("UPDATE projection_dead_letters SET body = $1 WHERE id = $2")
        .bind(fixed.as_bytes())
        .bind(letters[2].id)
        .execute(&h.db.pool)
        .await
        .unwrap();
    let outcomes = replay_dead_letters(&h.db.pool, TZ, ReplaySelection::All)
        .await
        .unwrap();
    let applied = outcomes
        .iter()
        .filter(|o| matches!(o, ReplayOutcome::Applied { .. }))
        .count();
    let failing = outcomes
        .iter()
        .filter(|o| matches!(o, ReplayOutcome::StillFailing { .. }))
        .count();
    assert_eq!((applied, failing), (1, 3));
    assert_eq!(list_dead_letters(&h.db.pool).await.unwrap().len(), 3);
    assert_eq!(h.figures(&Scope::Org, now).await.pending_t3, 4);
}

/// Random, incompressible text: a repeated letter would shrink below every size limit once
/// Postgres compresses it.
fn random_text(len: usize) -> String {
    let mut text = String::with_capacity(len + 32);
    while text.len() < len {
        text.push_str(&uuid::Uuid::new_v4().simple().to_string());
    }
    text.truncate(len);
    text
}

#[tokio::test]
async fn oversized_and_mistyped_events_are_dead_lettered_without_blocking_the_stream() {
    let h = Harness::start().await;
    h.nats
        .skip_catalog_check("oversized and mistyped events are this test's input");
    let now = Utc::now();
    let good = |lead| change(lead, 1, "ACTIVE", "u1").at(now).event();
    let edit = |lead, f: &dyn Fn(&mut serde_json::Value)| {
        let mut event = wire(good(lead));
        f(&mut event);
        event.to_string().into_bytes()
    };
    // A structurally valid CloudEvent whose data has the wrong types.
    let mistyped = edit(80, &|e| {
        e["data"]["leadId"] = "80".into();
        e["data"]["t3Sent"] = "yes".into();
        e["data"]["registeredAt"] = 1_764_000_000.into();
    });
    let mistyped_envelope = edit(81, &|e| e["time"] = serde_json::json!({"at": "now"}));
    // A 900 KB owner id (fits NATS' 1 MB payload): as a scope key it cannot be indexed.
    let huge_owner = edit(82, &|e| {
        e["data"]["ownerUserId"] = random_text(900_000).into()
    });
    let huge_collaborators = edit(83, &|e| {
        e["data"]["collaboratorUserIds"] = (0..20_000)
            .map(|i| format!("user-{i}"))
            .collect::<Vec<_>>()
            .into()
    });
    // 8 000 characters: a small message, but an owner id no index can hold.
    let long_owner = edit(84, &|e| {
        e["data"]["ownerUserId"] = random_text(8_000).into()
    });

    h.publish(&good(1)).await;
    let subject = "freshplan.lead.changed";
    h.publish_raw(subject, mistyped, "poison-types").await;
    h.publish_raw(subject, mistyped_envelope, "poison-envelope")
        .await;
    h.publish_raw(subject, huge_owner, "poison-huge-owner")
        .await;
    h.publish_raw(subject, huge_collaborators, "poison-many-collaborators")
        .await;
    h.publish_raw(subject, long_owner, "poison-long-owner")
        .await;
    // 2 MB never reaches the stream: the server refuses it (max_payload 1 MB).
    let two_mb = edit(85, &|e| {
        e["data"]["ownerUserId"] = random_text(2_000_000).into()
    });
    let refused = match h.js.publish(subject.to_owned(), two_mb.into()).await {
        Err(_) => true,
        Ok(ack) => ack.await.is_err(),
    };
    assert!(refused, "a 2 MB message is refused at publish");
    h.publish(&good(2)).await;

    let projector = h.spawn_projector(h.config()).await;
    h.wait_until_caught_up().await;
    assert_eq!(
        h.figures(&Scope::Org, now).await.pending_t3,
        2,
        "the good events around the poison are applied"
    );
    let letters = list_dead_letters(&h.db.pool).await.unwrap();
    let reasons: Vec<(&str, &str)> = letters
        .iter()
        .map(|l| {
            (
                l.headers["Nats-Msg-Id"].as_str().unwrap(),
                l.reason.as_str(),
            )
        })
        .collect();
    assert_eq!(letters.len(), 5, "{reasons:?}");
    assert!(
        reasons[0].1.contains("invalid data for lead.changed.v1"),
        "{reasons:?}"
    );
    assert!(
        reasons[1].1.starts_with("not a CloudEvents JSON object"),
        "{reasons:?}"
    );
    assert!(reasons[2].1.starts_with("event too large"), "{reasons:?}");
    assert!(reasons[3].1.starts_with("event too large"), "{reasons:?}");
    assert!(
        reasons[4]
            .1
            .starts_with("field ownerUserId too long: 8000 characters"),
        "{reasons:?}"
    );
    assert!(
        letters[2].body.len() > 900_000,
        "the raw message is kept whole"
    );
    projector.stop().await;
}
