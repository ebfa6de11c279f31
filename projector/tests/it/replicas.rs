//! Two `serve` projectors on one database and the one durable consumer `projector`: the one
//! holding the consumer lock consumes, the other stands by and takes over when the first stops.
//!
//! Why not both (see `projector/src/leader.rs`): two consuming projectors split the durable's
//! batches and commit them under the apply lock in whatever order they get it. That was tested
//! here first (this file's history): the figures stayed exact (`verify`), with 0–94 changes per
//! run committed out of stream order, and the same test failed without the apply lock. But
//! the folding then follows commit order, not stream order, and a second consumer adds no
//! throughput, so one consumes at a time.

use std::time::Duration;

use chrono::Utc;
use followup_projector::verify_projection;
use followup_testkit::eventually;

use crate::crm::{publish_deliveries, seed_crm};
use crate::helpers::{Harness, RunningProjector, TZ, sample};

/// Events a projector applied, from its own `/metrics`.
fn applied(metrics: &str) -> f64 {
    sample(
        metrics,
        "followup_projector_events_total",
        &["outcome=\"applied\""],
    )
}

async fn active(projector: &RunningProjector) -> f64 {
    sample(&projector.metrics().await, "followup_projector_active", &[])
}

/// Every lead changes owner and status `rounds` more times, its changes a few positions apart
/// in the stream, so consecutive batches hold changes of the same leads.
async fn churn(h: &Harness, rounds: std::ops::RangeInclusive<i64>) {
    let last: i64 = h.count("SELECT max(id) FROM leads").await;
    for group in (1..=last).step_by(5) {
        for round in rounds.clone() {
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
}

async fn wait_applied(h: &Harness, events: i64) {
    h.wait_until_caught_up().await;
    let done = eventually(Duration::from_secs(30), || async {
        let applied = h.count("SELECT count(*) FROM projection_inbox").await;
        (applied == events).then_some(())
    })
    .await;
    assert!(done.is_some(), "every event applied once");
}

#[tokio::test]
async fn of_two_projectors_one_consumes_and_the_other_takes_over_when_it_stops() {
    let h = Harness::start().await;
    seed_crm(&h, 600).await;
    churn(&h, 1..=4).await;
    let first_events = (h.relay_outbox().await + publish_deliveries(&h).await) as i64;
    assert!(first_events > 2500, "a stream long enough: {first_events}");

    // Small batches: two consuming projectors would each get many of them.
    let mut config = h.config();
    config.batch_size = 10;
    let first = h.spawn_projector(config.clone()).await;
    let holds = eventually(Duration::from_secs(30), || async {
        (active(&first).await == 1.0).then_some(())
    })
    .await;
    assert!(
        holds.is_some(),
        "the first projector takes the consumer lock"
    );
    let second = h.spawn_projector(config).await;
    wait_applied(&h, first_events).await;

    let (a, b) = (first.metrics().await, second.metrics().await);
    println!("applied: first {}, second {}", applied(&a), applied(&b));
    assert!(applied(&a) > 0.0, "the first projector consumed");
    assert_eq!(applied(&b), 0.0, "the standby applied nothing");
    assert_eq!(active(&second).await, 0.0);
    let (status, _) = followup_testkit::http_get(second.addr, "/readyz")
        .await
        .unwrap();
    assert_eq!(status, 200, "a standby is ready");
    // The standby's gauges show the consumer's figures.
    for kind in ["t3", "t7"] {
        let gauge = |m: &str| sample(m, "followup_pending", &[&format!("kind=\"{kind}\"")]);
        let seen = eventually(Duration::from_secs(10), || async {
            let (a, b) = (first.metrics().await, second.metrics().await);
            (gauge(&a) == gauge(&b) && gauge(&a) > 0.0).then_some(())
        })
        .await;
        assert!(
            seen.is_some(),
            "followup_pending{{kind={kind}}} the same on both"
        );
    }

    // The consumer stops; the standby takes over and applies what follows.
    first.stop().await;
    churn(&h, 5..=6).await;
    let more = h.relay_outbox().await as i64;
    wait_applied(&h, first_events + more).await;
    assert_eq!(applied(&second.metrics().await), more as f64);
    assert_eq!(active(&second).await, 1.0);

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
    second.stop().await;
}
