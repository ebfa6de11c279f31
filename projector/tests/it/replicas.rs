//! Two `serve` projectors on one database and the one durable consumer `projector`: both fetch,
//! the server splits the stream's batches between them (a lead's events land in batches of
//! both), and their transactions commit one at a time under the projection's write lock
//! (`APPLY_LOCK_KEY`) in whatever order they get it, not in stream order. The projection must
//! still be exact: each transaction folds over the state the previous one committed, and a
//! lead's state is that of its largest `sequence` whatever the order.

use std::time::Duration;

use chrono::Utc;
use followup_projector::verify_projection;
use followup_testkit::eventually;

use crate::crm::{publish_deliveries, seed_crm};
use crate::helpers::{Harness, TZ, sample};

/// Events a projector applied, from its own `/metrics`.
fn applied(metrics: &str) -> f64 {
    sample(
        metrics,
        "followup_projector_events_total",
        &["outcome=\"applied\""],
    )
}

fn stale(metrics: &str) -> f64 {
    sample(
        metrics,
        "followup_projector_events_total",
        &["outcome=\"stale\""],
    )
}

#[tokio::test]
async fn two_projectors_on_one_durable_split_the_stream_and_end_exact() {
    let h = Harness::start().await;
    seed_crm(&h, 600).await;
    // Churn: every lead changes owner and status four more times, its changes a few positions
    // apart in the stream, so consecutive batches (which the two projectors fetch and commit
    // side by side) hold changes of the same leads.
    let last: i64 = h.count("SELECT max(id) FROM leads").await;
    for group in (1..=last).step_by(5) {
        for round in 1..=4_i64 {
            sqlx::query(
                "UPDATE leads SET owner_user_id = 'u' || ((id + $1) % 5), \
                        status = CASE WHEN status = 'ACTIVE' THEN 'REGISTERED' \
                                      WHEN status = 'REGISTERED' THEN 'ACTIVE' ELSE status END, \
                        version = version + 1 \
                 WHERE id BETWEEN $2 AND $2 + 4",
            )
            .bind(round)
            .bind(group)
            .execute(&h.db.pool)
            .await
            .unwrap();
        }
    }
    let events = (h.relay_outbox().await + publish_deliveries(&h).await) as i64;
    assert!(events > 2500, "a stream long enough to split: {events}");

    // Small batches: many of them, handed alternately to the two projectors' pull requests.
    let mut config = h.config();
    config.batch_size = 10;
    let first = h.spawn_projector(config.clone()).await;
    let second = h.spawn_projector(config).await;
    h.wait_until_caught_up().await;
    let done = eventually(Duration::from_secs(30), || async {
        let applied = h.count("SELECT count(*) FROM projection_inbox").await;
        (applied == events).then_some(())
    })
    .await;
    assert!(done.is_some(), "every event applied once");

    let (a, b) = (first.metrics().await, second.metrics().await);
    let (applied_a, applied_b) = (applied(&a), applied(&b));
    println!(
        "applied: first {applied_a}, second {applied_b}; stale (committed out of stream order): \
         first {}, second {}",
        stale(&a),
        stale(&b)
    );
    // The test means something only if both projectors took a real share of the batches.
    let total = applied_a + applied_b;
    assert!(
        applied_a > total / 10.0 && applied_b > total / 10.0,
        "both projectors applied batches: {applied_a} and {applied_b}"
    );

    let report = verify_projection(&mut h.db.pool.acquire().await.unwrap(), Utc::now(), TZ)
        .await
        .unwrap();
    assert!(report.is_exact(), "{:#?}", report.mismatches);
    assert!(report.scopes_checked >= 6, "org and five users: {report:?}");
    // The lead states are those of the CRM: the largest sequence won in every lead.
    let behind = h
        .count(
            "SELECT count(*) FROM leads l LEFT JOIN projection_leads p ON p.lead_id = l.id \
             WHERE p.lead_id IS NULL OR p.status <> l.status \
                OR p.owner_user_id IS DISTINCT FROM l.owner_user_id",
        )
        .await;
    assert_eq!(behind, 0, "leads whose projected state is not the CRM's");
    first.stop().await;
    second.stop().await;
}
