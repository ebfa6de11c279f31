//! A CRM scenario written into the source of truth (`leads`, `followup_deliveries`), and a
//! relay that turns it into the contract's events, for tests that run `verify`.

use chrono::{DateTime, Utc};
use followup_contract::{EventParts, FollowupKind, FollowupSent, sent_key};
use sqlx::Row;

use crate::helpers::Harness;

/// Writes `leads` leads with varied owners, collaborators, statuses, clocks, deliveries,
/// conversions and deletions, the way the CRM and the producer would.
pub async fn seed_crm(h: &Harness, leads: i64) {
    let statements: [&'static str; 12] = [
        "INSERT INTO leads (company_name, status, owner_user_id, registered_at, created_by, \
                            email, metadata) \
         SELECT 'Company ' || i, CASE WHEN i % 7 = 0 THEN 'REGISTERED' ELSE 'ACTIVE' END, \
                'u' || (i % 5), (now() AT TIME ZONE 'UTC') - interval '10 days', 'crm-import', \
                'lead' || i || '@example.com', \
                CASE WHEN i % 17 = 0 THEN NULL ELSE '{\"emailConsent\": true}'::jsonb END \
         FROM generate_series(1, $1::int8) AS i",
        "INSERT INTO lead_collaborators (lead_id, user_id) \
         SELECT id, 'u' || ((id + 1) % 5) FROM leads WHERE id % 3 = 0 AND $1::int8 > 0",
        "UPDATE leads SET contact_blocked = TRUE, consent_revoked_at = now() AT TIME ZONE 'UTC' \
         WHERE id % 19 = 0 AND $1::int8 > 0",
        "UPDATE leads SET clock_stopped_at = now() AT TIME ZONE 'UTC' WHERE id % 13 = 0",
        "INSERT INTO followup_deliveries (lead_id, kind, status, run_id, owner_user_id, delivered_at) \
         SELECT id, 't3', 'sent', gen_random_uuid(), owner_user_id, now() - (id % 3) * interval '1 day' \
         FROM leads WHERE id % 2 = 0 AND status = 'ACTIVE' AND $1::int8 > 0",
        "UPDATE leads SET t3_followup_sent = TRUE WHERE id IN \
         (SELECT lead_id FROM followup_deliveries WHERE kind = 't3') AND $1::int8 > 0",
        "INSERT INTO followup_deliveries (lead_id, kind, status, run_id, owner_user_id, delivered_at) \
         SELECT id, 't7', CASE WHEN id % 8 = 0 THEN 'failed' ELSE 'sent' END, gen_random_uuid(), \
                owner_user_id, now() \
         FROM leads WHERE id % 4 = 0 AND t3_followup_sent AND $1::int8 > 0",
        "UPDATE leads SET t7_followup_sent = TRUE, status = 'REMINDER', reminder_sent_at = now() AT TIME ZONE 'UTC' \
         WHERE id IN (SELECT lead_id FROM followup_deliveries WHERE kind = 't7' AND status = 'sent') \
           AND $1::int8 > 0",
        "UPDATE leads SET status = CASE WHEN id % 11 = 0 THEN 'DELETED' ELSE 'CONVERTED' END \
         WHERE (id % 6 = 0 OR id % 11 = 0) AND $1::int8 > 0",
        // Each sent follow-up has its CRM activity, as the producer writes it.
        "INSERT INTO lead_activities (lead_id, user_id, activity_type, activity_date, metadata) \
         SELECT d.lead_id, 'SYSTEM', 'NOTE', d.delivered_at AT TIME ZONE 'UTC', \
                jsonb_build_object('followup_type', upper(d.kind) || '_FOLLOWUP', \
                                   'automated', true, 'run_id', d.run_id::text) \
         FROM followup_deliveries d WHERE d.status = 'sent' AND $1::int8 > 0",
        // Follow-ups of the CRM's older automation: an activity and the flag, no delivery record
        // and no event of ours; some of these leads converted since.
        "WITH legacy AS (UPDATE leads SET t3_followup_sent = TRUE, version = version + 1 \
                         WHERE id % 23 = 5 AND t3_followup_sent IS NOT TRUE AND $1::int8 > 0 \
                         RETURNING id) \
         INSERT INTO lead_activities (lead_id, user_id, activity_type, activity_date, metadata) \
         SELECT id, 'SYSTEM', 'NOTE', (now() AT TIME ZONE 'UTC') - interval '20 days', \
                '{\"followup_type\": \"T3_FOLLOWUP\", \"automated\": true}'::jsonb FROM legacy",
        "DELETE FROM leads WHERE id % 10 = 0 AND $1::int8 > 0",
    ];
    for sql in statements {
        sqlx::query(sql)
            .bind(leads)
            .execute(&h.db.pool)
            .await
            .unwrap();
    }
}

/// Publishes lead.followup.sent.v1 for every sent delivery, as the producer's relay would.
pub async fn publish_deliveries(h: &Harness) -> usize {
    let rows = sqlx::query(
        "SELECT lead_id, kind, owner_user_id, delivered_at, run_id::text AS run_id \
         FROM followup_deliveries WHERE status = 'sent' ORDER BY id",
    )
    .fetch_all(&h.db.pool)
    .await
    .unwrap();
    for row in &rows {
        let lead_id: i64 = row.get("lead_id");
        let kind = FollowupKind::parse(row.get("kind")).unwrap();
        let sent_at: DateTime<Utc> = row.get("delivered_at");
        let event = EventParts::new(
            Some(lead_id.to_string()),
            sent_key(lead_id, kind),
            sent_at,
            &FollowupSent {
                lead_id,
                owner_user_id: row.get("owner_user_id"),
                kind,
                sent_at,
                run_id: row.get("run_id"),
            },
        );
        h.publish(&event).await;
    }
    rows.len()
}

/// Seeds the CRM and publishes everything it produced; returns the number of events.
pub async fn seed_and_publish(h: &Harness, leads: i64) -> usize {
    seed_crm(h, leads).await;
    h.relay_outbox().await + publish_deliveries(h).await
}
