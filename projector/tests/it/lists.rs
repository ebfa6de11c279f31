//! The rows a sales user's drill-down lists read (migration 20261205000002): the collaborations
//! copied per collaborator in the apply statement, and the `failed` and `followed` flags the
//! deliveries' trigger keeps, as leads are handed over, lose collaborators, fail and are sent
//! after all.

use followup_contract::FollowupKind;

use crate::helpers::{Harness, berlin, change, failed, sent};

type Row = (String, i64, bool, bool, String);

/// `(user, lead, failed, followed, status)` of every collaboration row, sorted.
async fn collaborations(h: &Harness) -> Vec<Row> {
    sqlx::query_as(
        "SELECT user_id, lead_id, failed, followed, status FROM projection_collaborations \
         ORDER BY user_id, lead_id",
    )
    .fetch_all(&h.db.pool)
    .await
    .unwrap()
}

/// `(failed, followed)` of the lead's row.
async fn lead_flags(h: &Harness, lead_id: i64) -> (bool, bool) {
    sqlx::query_as("SELECT failed, followed FROM projection_leads WHERE lead_id = $1")
        .bind(lead_id)
        .fetch_one(&h.db.pool)
        .await
        .unwrap()
}

fn row(user: &str, lead: i64, failed: bool, followed: bool, status: &str) -> Row {
    (user.to_owned(), lead, failed, followed, status.to_owned())
}

/// Publishes lead `id`'s change number `sequence`.
async fn publish_lead(h: &Harness, id: i64, sequence: i64, status: &str, who: (&str, &[&str])) {
    let at = berlin(2026, 11, 29, 10, 0);
    let (owner, collaborators) = who;
    h.publish(
        &change(id, sequence, status, owner)
            .collaborators(collaborators)
            .at(at)
            .event(),
    )
    .await;
}

/// Once the projector caught up: the collaboration rows and lead 2's flags.
async fn settled(h: &Harness) -> (Vec<Row>, (bool, bool)) {
    h.wait_until_caught_up().await;
    (collaborations(h).await, lead_flags(h, 2).await)
}

#[tokio::test]
async fn collaborations_and_failures_follow_the_events() {
    let h = Harness::start().await;
    let at = berlin(2026, 11, 29, 10, 0);
    let projector = h.spawn_projector(h.config()).await;

    // Collaborators are trimmed; an owner listed as collaborator gets no collaboration row. Lead
    // 2 fails right after its first state (often in the same batch).
    publish_lead(&h, 1, 1, "ACTIVE", ("u2", &[" u1 ", "u3", "u2"])).await;
    publish_lead(&h, 2, 2, "ACTIVE", ("u4", &["u1"])).await;
    h.publish(&failed(2, FollowupKind::T3, at)).await;
    let expected = vec![
        row("u1", 1, false, false, "ACTIVE"),
        row("u1", 2, true, false, "ACTIVE"),
        row("u3", 1, false, false, "ACTIVE"),
    ];
    assert_eq!(settled(&h).await, (expected, (true, false)));

    // Lead 1: u3 takes it over, u1 is taken off, it converts; lead 2 is sent after all (the
    // failure gives way), then a later change keeps the flags as the trigger left them.
    publish_lead(&h, 1, 3, "CONVERTED", ("u3", &["u3"])).await;
    h.publish(&sent(2, FollowupKind::T3, at)).await;
    publish_lead(&h, 2, 4, "LOST", ("u4", &["u1"])).await;
    let expected = vec![row("u1", 2, false, true, "LOST")];
    assert_eq!(settled(&h).await, (expected, (false, true)));

    // A failure of a lead already known, then its state changes again: both rows keep it.
    h.publish(&failed(2, FollowupKind::T7, at)).await;
    h.wait_until_caught_up().await;
    publish_lead(&h, 2, 5, "ACTIVE", ("u4", &["u1"])).await;
    let expected = vec![row("u1", 2, true, true, "ACTIVE")];
    assert_eq!(settled(&h).await, (expected, (true, true)));

    // Lead 2 loses its last collaborator in a batch where no lead has any now: the row goes
    // all the same (the stored lead had collaborators). Then a new lead without any.
    publish_lead(&h, 2, 6, "ACTIVE", ("u4", &[])).await;
    assert_eq!(settled(&h).await, (vec![], (true, true)));
    publish_lead(&h, 3, 7, "ACTIVE", ("u4", &[])).await;
    assert_eq!(settled(&h).await, (vec![], (true, true)));
    projector.stop().await;
}
