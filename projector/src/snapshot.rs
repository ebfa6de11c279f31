//! Snapshot, then stream (as Debezium does): the projection starts from one consistent snapshot
//! of the CRM's current state — leads, collaborators (`lead_collaborators`), the contactable rule
//! (consent fields and `lead_consent`), follow-ups of any author (`lead_activities` with a
//! `followup_type`) — and then follows the stream.
//!
//! Why nothing is counted twice or missed across the cut: a `lead.changed.v1` carries the lead's
//! whole follow-up state, and a lead's events reach the projector in sequence order. Snapshot rows
//! have sequence 0, so every event of the lead applies over them, older ones included; the lead
//! ends in the state of its newest event, which is never older than the snapshot (every relevant
//! change writes one, in the CRM's transaction). A change the snapshot did not see is an event
//! still to come. Deliveries are keyed by lead and kind, so a `sent` event of a follow-up the
//! snapshot already holds is a duplicate. The snapshot is read in one REPEATABLE READ
//! transaction and written in the same one: a kill during it leaves nothing, and the next start
//! takes it again.

use std::collections::HashMap;

use chrono::{DateTime, Duration, Utc};
use chrono_tz::Tz;
use followup_contract::{FollowupKind, LeadChanged};
use followup_readmodel::{local_date, local_midnight};
use sqlx::{Connection, PgConnection, Row};

use crate::apply::{APPLY_LOCK_KEY, ApplyError};
use crate::fold::BatchPlan;
use crate::model::{Delivery, LeadRecord, LeadState};
use crate::store::StoredLeads;
use crate::write::{Progress, write_plan};

/// Leads read and written per round trip.
const CHUNK: i64 = 20_000;

/// What a snapshot loaded.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SnapshotReport {
    pub leads: u64,
    pub follow_ups: u64,
}

/// The CRM's leads of one chunk, as the triggers would describe them (naive timestamps read as
/// UTC — `::timestamp` also accepts a CRM-less install's older `timestamptz` columns, in our UTC
/// sessions —, NULL flags as false). Keyset-paged by id. Columns, not `to_jsonb(l)`: a row of
/// the CRM's width costs ~30 µs as JSON, which alone would take a million leads past 30 s.
const READ_LEADS: &str = "
SELECT l.id, l.owner_user_id,
       COALESCE((SELECT array_agg(c.user_id::text ORDER BY c.user_id) FROM lead_collaborators c
                 WHERE c.lead_id = l.id), '{}') AS collaborators,
       l.status::text AS status,
       l.registered_at::timestamp AT TIME ZONE 'UTC' AS registered_at,
       l.clock_stopped_at::timestamp AT TIME ZONE 'UTC' AS clock_stopped_at,
       l.t3_followup_sent IS TRUE AS t3, l.t7_followup_sent IS TRUE AS t7,
       followup_contactable_row(l.email, l.metadata, l.contact_blocked,
                                l.consent_revoked_at IS NOT NULL, l.gdpr_deleted)
         AND o.lead_id IS NULL AS contactable,
       l.status = 'DELETED' OR l.gdpr_deleted IS TRUE AS deleted
FROM leads l
-- `followup_email_opted_out` as a join: a function call per lead costs 6 s a million. The
-- snapshot tests compare the result with `verify`, which calls the function.
LEFT JOIN lead_consent o ON o.lead_id = l.id AND o.channel = 'EMAIL' AND o.status = 'OPT_OUT'
WHERE l.id > $1
ORDER BY l.id
LIMIT $2";

/// Follow-ups of any author for the leads `$1 < id <= $2` (the first activity per lead and kind),
/// then our final failures of kinds that were not sent.
const READ_FOLLOW_UPS: &str = "
WITH sent AS (
  SELECT a.lead_id,
         CASE a.metadata ->> 'followup_type' WHEN 'T3_FOLLOWUP' THEN 't3' ELSE 't7' END AS kind,
         min(a.activity_date::timestamp AT TIME ZONE 'UTC') AS sent_at,
         COALESCE(min(a.metadata ->> 'run_id'), 'crm') AS run_id
  FROM lead_activities a
  WHERE a.metadata ? 'followup_type' AND a.lead_id > $1 AND a.lead_id <= $2
    AND a.metadata ->> 'followup_type' IN ('T3_FOLLOWUP', 'T7_FOLLOWUP')
  GROUP BY 1, 2)
SELECT lead_id, kind, sent_at, run_id, FALSE AS failed, NULL::text AS reason FROM sent
UNION ALL
SELECT d.lead_id, d.kind, d.delivered_at, '', TRUE, d.reason FROM followup_deliveries d
WHERE d.status = 'failed' AND d.lead_id > $1 AND d.lead_id <= $2
  AND NOT EXISTS (SELECT 1 FROM sent s WHERE s.lead_id = d.lead_id AND s.kind = d.kind)";

/// On the first start against an empty projection, takes the snapshot (once, whatever number of
/// projectors start together). Returns `None` when the projection was initialised already.
pub async fn ensure_snapshot(
    conn: &mut PgConnection,
    tz: Tz,
) -> Result<Option<SnapshotReport>, ApplyError> {
    // A session lock, taken before the snapshot's transaction begins (in REPEATABLE READ the
    // transaction's first statement fixes what it sees; a second projector must see the first
    // one's snapshot once it gets the lock).
    sqlx::query("SELECT pg_advisory_lock($1)")
        .bind(APPLY_LOCK_KEY)
        .execute(&mut *conn)
        .await?;
    let result = snapshot_if_empty(conn, tz).await;
    sqlx::query("SELECT pg_advisory_unlock($1)")
        .bind(APPLY_LOCK_KEY)
        .execute(&mut *conn)
        .await?;
    result
}

/// Begins the transaction a snapshot is read and written in: REPEATABLE READ, so every chunk
/// sees the CRM as of its first statement.
pub async fn begin_snapshot(
    conn: &mut PgConnection,
) -> sqlx::Result<sqlx::Transaction<'_, sqlx::Postgres>> {
    let mut tx = conn.begin().await?;
    sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
        .execute(&mut *tx)
        .await?;
    Ok(tx)
}

async fn snapshot_if_empty(
    conn: &mut PgConnection,
    tz: Tz,
) -> Result<Option<SnapshotReport>, ApplyError> {
    let mut tx = begin_snapshot(conn).await?;
    let (taken, projected): (bool, bool) = sqlx::query_as(
        "SELECT EXISTS (SELECT 1 FROM projection_state WHERE snapshot_at IS NOT NULL),
                EXISTS (SELECT 1 FROM projection_leads)",
    )
    .fetch_one(&mut *tx)
    .await?;
    if taken {
        return Ok(None);
    }
    if projected {
        // Built from events by an earlier version: its figures lack the leads that existed
        // before it started. Only a rebuild replaces a projection.
        tracing::warn!(
            "the projection was built without a snapshot of the CRM; run `followup-projector \
             rebuild` to include leads and follow-ups older than the stream"
        );
        return Ok(None);
    }
    let report = write_snapshot(&mut tx, tz, Utc::now()).await?;
    tx.commit().await?;
    Ok(Some(report))
}

/// Reads the CRM's current state and writes it as the projection, in the caller's REPEATABLE
/// READ transaction ([`begin_snapshot`]), into the tables `search_path` names (the live ones, or `rebuild`'s shadow
/// tables). `now` stamps the rows.
pub async fn write_snapshot(
    conn: &mut PgConnection,
    tz: Tz,
    now: DateTime<Utc>,
) -> Result<SnapshotReport, ApplyError> {
    let started = std::time::Instant::now();
    // Pending changes land on the day before today: a snapshot knows the figures, not how they
    // moved, so today's trend starts flat.
    let before_today = local_midnight(local_date(now, tz), tz) - Duration::seconds(1);
    let mut report = SnapshotReport::default();
    let unknown = LeadRecord::unknown();
    let mut after = 0_i64;
    loop {
        let rows = sqlx::query(READ_LEADS)
            .bind(after)
            .bind(CHUNK)
            .fetch_all(&mut *conn)
            .await?;
        let Some(last) = rows.last() else { break };
        let last_id: i64 = last.try_get("id")?;
        let follow_ups = sqlx::query(READ_FOLLOW_UPS)
            .bind(after)
            .bind(last_id)
            .fetch_all(&mut *conn)
            .await?;
        let mut deliveries: HashMap<i64, Vec<Delivery>> = HashMap::new();
        for row in &follow_ups {
            let kind: String = row.try_get("kind")?;
            deliveries
                .entry(row.try_get("lead_id")?)
                .or_default()
                .push(Delivery {
                    kind: FollowupKind::parse(&kind).unwrap_or(FollowupKind::T3),
                    sent_at: row.try_get("sent_at")?,
                    run_id: row.try_get("run_id")?,
                    failed: row.try_get("failed")?,
                    reason: row.try_get("reason")?,
                });
        }
        let mut plan = BatchPlan::default();
        for row in &rows {
            let lead_id: i64 = row.try_get("id")?;
            let change = LeadChanged {
                lead_id,
                owner_user_id: row.try_get("owner_user_id")?,
                collaborator_user_ids: row.try_get("collaborators")?,
                status: row.try_get("status")?,
                registered_at: row.try_get("registered_at")?,
                clock_stopped_at: row.try_get("clock_stopped_at")?,
                t3_sent: row.try_get("t3")?,
                t7_sent: row.try_get("t7")?,
                contactable: Some(row.try_get("contactable")?),
                deleted: row.try_get("deleted")?,
                sequence: 0,
            };
            let record = LeadRecord {
                state: LeadState::from_change(&change, now),
                deliveries: deliveries.remove(&lead_id).unwrap_or_default(),
            };
            // The lead's whole contribution, as a transition from "unknown".
            plan.deltas
                .record_transition(&unknown, &record, before_today, tz);
            report.follow_ups += record.deliveries.iter().filter(|d| !d.failed).count() as u64;
            plan.deliveries
                .extend(record.deliveries.iter().map(|d| (lead_id, d.clone())));
            plan.leads.insert(lead_id, record);
        }
        report.leads += rows.len() as u64;
        let progress = Progress {
            time_zone: tz.name(),
            last_sequence: 0,
            last_event_at: None,
        };
        write_plan(conn, &plan, &StoredLeads::default(), &progress).await?;
        after = last_id;
    }
    // With an empty CRM no batch wrote the state row; the snapshot is recorded all the same.
    sqlx::query(
        "INSERT INTO projection_state (id, time_zone, snapshot_at) VALUES (TRUE, $1, $2)
         ON CONFLICT (id) DO UPDATE SET snapshot_at = EXCLUDED.snapshot_at",
    )
    .bind(tz.name())
    .bind(now)
    .execute(&mut *conn)
    .await?;
    tracing::info!(
        leads = report.leads,
        follow_ups = report.follow_ups,
        took_ms = started.elapsed().as_millis() as u64,
        "projection initialised from a snapshot of the CRM"
    );
    Ok(report)
}
