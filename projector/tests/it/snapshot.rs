//! Snapshot, then stream: figures right from the first minute on a CRM that held leads,
//! collaborators, withdrawn consents and the CRM's older follow-ups before the projector started.

use std::time::{Duration, Instant};

use chrono::Utc;
use followup_projector::{begin_snapshot, verify_projection, write_snapshot};
use followup_readmodel::Scope;
use followup_testkit::crm::{self, CrmLead};
use followup_testkit::eventually;
use sqlx::Connection;

use crate::crm::{publish_deliveries, seed_crm};
use crate::helpers::{Harness, TZ};
use crate::kill::run_projector_binary;

async fn snapshot_taken(h: &Harness) -> bool {
    eventually(Duration::from_secs(30), || async {
        let taken: Option<bool> =
            sqlx::query_scalar("SELECT snapshot_at IS NOT NULL FROM projection_state")
                .fetch_optional(&h.db.pool)
                .await
                .ok()
                .flatten();
        taken.filter(|t| *t)
    })
    .await
    .is_some()
}

async fn assert_exact(h: &Harness) {
    let mut conn = h.db.pool.acquire().await.unwrap();
    let report = verify_projection(&mut conn, Utc::now(), TZ).await.unwrap();
    assert!(report.is_exact(), "{:#?}", report.mismatches);
}

/// The populated CRM: pending leads, collaborators, a GDPR withdrawal, a lead followed
/// up by the CRM's older automation and converted since.
async fn populate_crm(h: &Harness) {
    let now = Utc::now();
    let pool = &h.db.pool;
    for _ in 0..2 {
        CrmLead::active("admin.a", now - chrono::Duration::days(1))
            .insert(pool)
            .await;
    }
    let withdrawn = CrmLead::active("admin.a", now - chrono::Duration::days(1))
        .insert(pool)
        .await;
    crm::withdraw_consent_gdpr(pool, withdrawn, "datenschutz").await;
    let opted_out = CrmLead::active("admin.a", now - chrono::Duration::days(1))
        .insert(pool)
        .await;
    crm::set_email_consent(pool, opted_out, "OPT_OUT").await;
    for _ in 0..2 {
        let mut lead = CrmLead::active("owner.b", now - chrono::Duration::days(9));
        lead.t3_followup_sent = Some(true);
        let id = lead.insert(pool).await;
        crm::add_collaborator(pool, id, "sales.c").await;
    }
    let converted = CrmLead::active("owner.b", now - chrono::Duration::days(30))
        .insert(pool)
        .await;
    crm::record_legacy_followup(pool, converted, "t3", now - chrono::Duration::days(27)).await;
    sqlx::query("UPDATE leads SET status = 'CONVERTED', version = version + 1 WHERE id = $1")
        .bind(converted)
        .execute(pool)
        .await
        .unwrap();
    for _ in 0..4 {
        let id = CrmLead::active("owner.b", now - chrono::Duration::days(30))
            .insert(pool)
            .await;
        crm::record_legacy_followup(pool, id, "t3", now - chrono::Duration::days(27)).await;
        sqlx::query("UPDATE leads SET status = 'LOST', version = version + 1 WHERE id = $1")
            .bind(id)
            .execute(pool)
            .await
            .unwrap();
    }
}

#[tokio::test]
async fn verify_is_exact_within_seconds_of_the_first_start_on_a_populated_crm() {
    let h = Harness::start().await;
    populate_crm(&h).await;
    // Nothing of this ever reached the stream: the projector must load it.
    let started = Instant::now();
    let projector = h.spawn_projector(h.config()).await;
    assert!(snapshot_taken(&h).await, "no snapshot on first start");
    let took = started.elapsed();
    assert_exact(&h).await;
    let output = run_projector_binary(&h, &["verify"]);
    assert_eq!(
        output.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&output.stdout)
    );
    eprintln!("snapshot on first start: verify exact after {took:?}");

    let org = h.figures(&Scope::Org, Utc::now()).await;
    assert_eq!(
        (org.pending_t3, org.pending_t7),
        (2, 2),
        "the withdrawn and the opted-out lead are not pending"
    );
    assert_eq!(
        org.conversion_rate, 20.0,
        "1 of 5 followed-up leads converted"
    );
    let collaborator = h.figures(&Scope::User("sales.c".into()), Utc::now()).await;
    assert_eq!(
        collaborator.pending_t7, 2,
        "collaborators from lead_collaborators"
    );
    projector.stop().await;
}

#[tokio::test]
async fn snapshot_then_stream_counts_nothing_twice_across_the_cut() {
    let h = Harness::start().await;
    // Before the start: the CRM's state, part of it already on the stream.
    seed_crm(&h, 150).await;
    h.relay_outbox().await;
    publish_deliveries(&h).await;
    let projector = h.spawn_projector(h.config()).await;
    assert!(snapshot_taken(&h).await);
    h.wait_until_caught_up().await;
    assert_exact(&h).await;

    // After the cut: more changes of leads the snapshot holds, new leads, collaborators.
    let now = Utc::now();
    let new = CrmLead::active("u1", now - chrono::Duration::days(1))
        .insert(&h.db.pool)
        .await;
    crm::add_collaborator(&h.db.pool, new, "u3").await;
    sqlx::query("UPDATE leads SET status = 'CONVERTED', version = version + 1 WHERE id % 5 = 1")
        .execute(&h.db.pool)
        .await
        .unwrap();
    crm::set_email_consent(&h.db.pool, 2, "OPT_OUT").await;
    h.relay_outbox().await;
    h.wait_until_caught_up().await;
    assert_exact(&h).await;
    projector.stop().await;
}

#[tokio::test]
async fn a_snapshot_interrupted_midway_is_taken_again_on_the_next_start() {
    let h = Harness::start().await;
    populate_crm(&h).await;
    seed_crm(&h, 60).await;
    // A projector killed while writing its snapshot: the transaction never commits.
    {
        let mut conn = sqlx::PgConnection::connect(&h.db.url).await.unwrap();
        let mut tx = begin_snapshot(&mut conn).await.unwrap();
        write_snapshot(&mut tx, TZ, Utc::now()).await.unwrap();
        // Dropped without commit, connection closed: as a SIGKILL leaves it.
    }
    let rows: i64 = sqlx::query_scalar("SELECT count(*) FROM projection_leads")
        .fetch_one(&h.db.pool)
        .await
        .unwrap();
    assert_eq!(rows, 0, "nothing of the interrupted snapshot remains");
    let projector = h.spawn_projector(h.config()).await;
    assert!(snapshot_taken(&h).await);
    assert_exact(&h).await;
    projector.stop().await;
}
