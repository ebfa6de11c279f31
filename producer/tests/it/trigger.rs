//! The `lead.changed.v1` triggers on the CRM's `leads`, `lead_collaborators` and `lead_consent`.

use chrono::{Duration, Utc};
use followup_contract::{EventType, LeadChanged, change_key, outbox_key};
use followup_testkit::{TestDb, crm};

use crate::support::{LeadSpec, insert_lead};

async fn changes_for(
    pool: &sqlx::PgPool,
    lead_id: i64,
) -> Vec<(i64, Option<String>, serde_json::Value)> {
    sqlx::query_as(
        "SELECT id, idempotency_key, data FROM followup_outbox
         WHERE event_type = 'lead.changed.v1' AND subject = $1 ORDER BY id",
    )
    .bind(lead_id.to_string())
    .fetch_all(pool)
    .await
    .unwrap()
}

#[tokio::test]
async fn relevant_updates_write_one_change_event_and_unrelated_ones_none() {
    let db = TestDb::new().await;
    let id = insert_lead(
        &db.pool,
        &LeadSpec::registered(Utc::now() - Duration::days(1)),
    )
    .await;
    assert_eq!(
        changes_for(&db.pool, id).await.len(),
        1,
        "insert writes one change"
    );

    // Unrelated columns, as the CRM edits them all day.
    sqlx::query("UPDATE leads SET company_name = 'Neu GmbH', email = 'x@y.de', version = version + 1 WHERE id = $1")
        .bind(id)
        .execute(&db.pool)
        .await
        .unwrap();
    assert_eq!(
        changes_for(&db.pool, id).await.len(),
        1,
        "unrelated update writes nothing"
    );

    // A CRM-style status update.
    sqlx::query("UPDATE leads SET status = 'CONVERTED', version = version + 1 WHERE id = $1")
        .bind(id)
        .execute(&db.pool)
        .await
        .unwrap();
    let changes = changes_for(&db.pool, id).await;
    assert_eq!(changes.len(), 2, "status update writes exactly one change");
    let (outbox_id, key, data) = changes.last().unwrap().clone();
    // The trigger writes data only; the relay derives the key (the format lives in Rust).
    assert_eq!(key, None);
    let derived = outbox_key(EventType::Changed, Some(&id.to_string()), None, outbox_id);
    assert_eq!(derived, Some(change_key(id, outbox_id)));
    let change: LeadChanged =
        serde_json::from_value(data).expect("trigger payload matches the contract");
    assert_eq!(change.status, "CONVERTED");
    assert_eq!(change.sequence, outbox_id);
    assert!(!change.deleted);

    // Collaborators, clock and a hard delete are relevant too; sequences grow.
    // Collaborators live in `lead_collaborators`: each insert is a change of the lead.
    crm::add_collaborator(&db.pool, id, "u3").await;
    crm::add_collaborator(&db.pool, id, "u2").await;
    sqlx::query("DELETE FROM leads WHERE id = $1")
        .bind(id)
        .execute(&db.pool)
        .await
        .unwrap();
    let changes = changes_for(&db.pool, id).await;
    assert_eq!(changes.len(), 5);
    let collab: LeadChanged = serde_json::from_value(changes[3].2.clone()).unwrap();
    assert_eq!(
        collab.collaborator_user_ids,
        vec!["u2".to_owned(), "u3".to_owned()]
    );
    let deleted: LeadChanged = serde_json::from_value(changes[4].2.clone()).unwrap();
    assert!(deleted.deleted);
    assert!(deleted.sequence > collab.sequence && collab.sequence > change.sequence);
}

/// Outbox rows get time-ordered event ids (UUID v7, migration 20261206000001): the projector's
/// inbox is keyed by them, and a later event's id sorts after an earlier one's.
#[tokio::test]
async fn outbox_event_ids_are_time_ordered_uuids() {
    let db = TestDb::new().await;
    let before = Utc::now();
    for _ in 0..3 {
        insert_lead(
            &db.pool,
            &LeadSpec::registered(Utc::now() - Duration::days(1)),
        )
        .await;
        // The time part has millisecond resolution; ids within one millisecond sort randomly.
        tokio::time::sleep(std::time::Duration::from_millis(3)).await;
    }
    let ids: Vec<uuid::Uuid> =
        sqlx::query_scalar("SELECT event_id FROM followup_outbox ORDER BY id")
            .fetch_all(&db.pool)
            .await
            .unwrap();
    assert_eq!(ids.len(), 3);
    for id in &ids {
        assert_eq!(id.get_version_num(), 7, "{id} is a version 7 UUID");
        assert_eq!(id.get_variant(), uuid::Variant::RFC4122, "{id}");
        let (secs, nanos) = id.get_timestamp().expect("v7 carries a time").to_unix();
        let at = chrono::DateTime::from_timestamp(secs as i64, nanos).unwrap();
        assert!(
            (at - before).num_seconds().abs() < 60,
            "{id} carries the insert time, not {at}"
        );
    }
    assert!(
        ids.is_sorted(),
        "later outbox rows have larger ids: {ids:?}"
    );
}

/// The trigger function keeps what 20261202000001 gave it after later migrations replaced its
/// text (a `CREATE OR REPLACE` drops SET clauses it does not repeat): it runs as its owner, reads
/// naive timestamps as UTC, and resolves names in our schema only.
#[tokio::test]
async fn the_change_trigger_keeps_its_owner_rights_time_zone_and_search_path() {
    let db = TestDb::new().await;
    let (definer, config): (bool, Vec<String>) = sqlx::query_as(
        "SELECT prosecdef, proconfig FROM pg_proc WHERE proname = 'followup_lead_changed'",
    )
    .fetch_one(&db.pool)
    .await
    .unwrap();
    assert!(definer, "SECURITY DEFINER");
    assert!(config.contains(&"TimeZone=UTC".to_owned()), "{config:?}");
    assert!(
        config.contains(&"search_path=public, pg_temp".to_owned()),
        "{config:?}"
    );
}
