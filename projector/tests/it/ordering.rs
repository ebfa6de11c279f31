use chrono::Utc;
use followup_readmodel::Scope;
use sqlx::Row;

use crate::helpers::{Harness, change, sample};

#[tokio::test]
async fn lead_changes_out_of_order_end_in_the_state_of_the_largest_sequence() {
    let h = Harness::start().await;
    let now = Utc::now();
    // Lead 1: a late, older change in the same batch as the newer one.
    h.publish(&change(1, 9, "ACTIVE", "u1").at(now).event())
        .await;
    h.publish(&change(1, 7, "CONVERTED", "u2").at(now).event())
        .await;
    // Lead 2: the newer change first, the older one in a later batch.
    h.publish(&change(2, 20, "LOST", "u2").at(now).event())
        .await;
    let projector = h.spawn_projector(h.config()).await;
    h.wait_until_caught_up().await;
    h.publish(&change(2, 15, "ACTIVE", "u2").at(now).event())
        .await;
    h.wait_until_caught_up().await;

    let rows = sqlx::query(
        "SELECT lead_id, sequence, status, owner_user_id FROM projection_leads ORDER BY lead_id",
    )
    .fetch_all(&h.db.pool)
    .await
    .unwrap();
    let states: Vec<(i64, i64, String, String)> = rows
        .iter()
        .map(|r| {
            (
                r.get("lead_id"),
                r.get("sequence"),
                r.get("status"),
                r.get("owner_user_id"),
            )
        })
        .collect();
    assert_eq!(
        states,
        [
            (1, 9, "ACTIVE".into(), "u1".into()),
            (2, 20, "LOST".into(), "u2".into())
        ]
    );
    assert_eq!(h.figures(&Scope::Org, now).await.pending_t3, 1);
    assert_eq!(
        h.figures(&Scope::User("u1".into()), now).await.pending_t3,
        1
    );
    assert_eq!(
        h.figures(&Scope::User("u2".into()), now).await.pending_t3,
        0
    );
    let metrics = projector.metrics().await;
    let stale = sample(
        &metrics,
        "followup_projector_events_total",
        &["outcome=\"stale\""],
    );
    assert_eq!(stale, 2.0, "{metrics}");

    // A newer change still applies after the stale ones.
    h.publish(&change(2, 21, "ACTIVE", "u2").at(now).event())
        .await;
    h.wait_until_caught_up().await;
    assert_eq!(
        h.figures(&Scope::User("u2".into()), now).await.pending_t3,
        1
    );
    projector.stop().await;
}
