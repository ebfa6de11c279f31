//! Bounded growth: a stream whose older events expired still rebuilds exactly (snapshot + tail),
//! and the inbox forgets ids no duplicate can reach any more.

use std::time::Duration;

use chrono::Utc;
use followup_contract::STREAM_NAME;
use followup_projector::prune::prune_inbox;
use followup_projector::{rebuild_projection, verify_projection};
use followup_testkit::crm::{self, CrmLead};

use crate::crm::{publish_deliveries, seed_crm};
use crate::helpers::{Harness, TZ};

#[tokio::test]
async fn rebuild_is_exact_after_the_streams_older_events_expired() {
    let h = Harness::start().await;
    seed_crm(&h, 120).await;
    h.relay_outbox().await;
    publish_deliveries(&h).await;
    let projector = h.spawn_projector(h.config()).await;
    h.wait_until_caught_up().await;
    // Later changes, then everything before them leaves the stream (as max_age would do).
    let mut stream = h.js.get_stream(STREAM_NAME).await.unwrap();
    let cut = stream.info().await.unwrap().state.last_sequence + 1;
    let id = CrmLead::active("u2", Utc::now() - chrono::Duration::days(4))
        .insert(&h.db.pool)
        .await;
    crm::add_collaborator(&h.db.pool, id, "u4").await;
    sqlx::query("UPDATE leads SET status = 'CONVERTED', version = version + 1 WHERE id % 7 = 2")
        .execute(&h.db.pool)
        .await
        .unwrap();
    h.relay_outbox().await;
    h.wait_until_caught_up().await;
    stream.purge().sequence(cut).await.unwrap();
    assert_eq!(stream.info().await.unwrap().state.first_sequence, cut);
    // A service running as an application role keeps its rights on the rebuilt tables.
    sqlx::query("GRANT SELECT, INSERT, UPDATE, DELETE ON projection_leads TO followup_app")
        .execute(&h.db.pool)
        .await
        .unwrap();

    let mut progress = |_: &followup_projector::RebuildProgress| {};
    rebuild_projection(&h.db.pool, &h.js, TZ, 500, &mut progress)
        .await
        .unwrap();
    let mut conn = h.db.pool.acquire().await.unwrap();
    let report = verify_projection(&mut conn, Utc::now(), TZ).await.unwrap();
    assert!(report.is_exact(), "{:#?}", report.mismatches);
    let granted: bool = sqlx::query_scalar(
        "SELECT has_table_privilege('followup_app', 'public.projection_leads', 'UPDATE')",
    )
    .fetch_one(&h.db.pool)
    .await
    .unwrap();
    assert!(granted, "the rebuilt table kept the replaced one's grants");
    projector.stop().await;
}

#[tokio::test]
async fn the_inbox_keeps_ids_while_a_duplicate_can_arrive_and_forgets_them_after() {
    let h = Harness::start().await;
    let pool = &h.db.pool;
    sqlx::raw_sql(
        "INSERT INTO projection_inbox (event_id, applied_at) VALUES
           ('00000000-0000-0000-0000-000000000001', now() - interval '100 days'),
           ('00000000-0000-0000-0000-000000000002', now() - interval '89 days'),
           ('00000000-0000-0000-0000-000000000003', now() - interval '1 hour')",
    )
    .execute(pool)
    .await
    .unwrap();
    let ninety_days = Some(Duration::from_secs(90 * 86_400));
    assert_eq!(
        prune_inbox(pool, None).await.unwrap(),
        0,
        "no retention: keep all"
    );
    // A dead letter from 30 days ago may be replayed: ids from 30 + 90 days back stay.
    sqlx::query(
        "INSERT INTO projection_dead_letters
             (stream_sequence, subject, body, reason, deliveries, dead_lettered_at)
         VALUES (1, 'freshplan.lead.changed', 'x', 'test', 1, now() - interval '30 days')",
    )
    .execute(pool)
    .await
    .unwrap();
    assert_eq!(prune_inbox(pool, ninety_days).await.unwrap(), 0);
    sqlx::query("DELETE FROM projection_dead_letters")
        .execute(pool)
        .await
        .unwrap();
    assert_eq!(prune_inbox(pool, ninety_days).await.unwrap(), 1);
    let left: Vec<String> =
        sqlx::query_scalar("SELECT event_id::text FROM projection_inbox ORDER BY event_id")
            .fetch_all(pool)
            .await
            .unwrap();
    assert_eq!(
        left,
        vec![
            "00000000-0000-0000-0000-000000000002",
            "00000000-0000-0000-0000-000000000003"
        ]
    );
}
