//! Recording delivery outcomes: in the caller's transaction, the lead's flags, the CRM activity,
//! the delivery record and the outbox event are written together, set-based for a whole batch.
//!
//! A delivery record exists from the claim on (`pending`, see [`crate::due`]); recording turns this
//! run's pending record into `sent` or `failed`. Only follow-ups whose pending record still belongs
//! to this run are recorded: if a later run took the claim over as stale (this run looked dead),
//! that run sends and records it, and this run's outcome is logged and dropped.

use chrono::{DateTime, Utc};
use followup_contract::{
    EventType, FollowupFailed, FollowupKind, FollowupSent, failed_key, sent_key,
};
use sqlx::PgConnection;
use uuid::Uuid;

/// A follow-up the mailer accepted.
#[derive(Debug, Clone)]
pub struct SentFollowup {
    pub lead_id: i64,
    pub owner_user_id: Option<String>,
    pub message_id: String,
    pub attempts: i32,
}

/// A follow-up that finally failed.
#[derive(Debug, Clone)]
pub struct FailedFollowup {
    pub lead_id: i64,
    pub owner_user_id: Option<String>,
    pub reason: String,
    pub attempts: i32,
}

// Writes as the CRM's production schema expects: naive timestamps in UTC (whatever the
// session's TimeZone), a NULL `followup_count` read as 0, and `version` incremented, so a CRM form
// loaded before this change fails its optimistic lock instead of silently undoing it.
const MARK_T3: &str = "UPDATE leads SET t3_followup_sent = TRUE,
    followup_count = COALESCE(followup_count, 0) + 1,
    last_followup_at = $2::timestamptz AT TIME ZONE 'UTC',
    updated_at = now() AT TIME ZONE 'UTC', version = version + 1
    WHERE id = ANY($1)";
// T+7 also moves the lead to REMINDER, as the CRM does; a lead the CRM moved on (converted, lost,
// ...) while its mail was on the way keeps the CRM's status.
const MARK_T7: &str = "UPDATE leads SET t7_followup_sent = TRUE,
    followup_count = COALESCE(followup_count, 0) + 1,
    last_followup_at = $2::timestamptz AT TIME ZONE 'UTC',
    reminder_sent_at = $2::timestamptz AT TIME ZONE 'UTC',
    status = CASE WHEN status = 'ACTIVE' THEN 'REMINDER' ELSE status END,
    updated_at = now() AT TIME ZONE 'UTC', version = version + 1
    WHERE id = ANY($1)";

const INSERT_ACTIVITIES: &str = "INSERT INTO lead_activities
    (lead_id, user_id, activity_type, activity_date, description, metadata)
    SELECT id, 'SYSTEM', 'NOTE', $2::timestamptz AT TIME ZONE 'UTC', $3,
           jsonb_build_object('followup_type', $4::text, 'automated', true, 'run_id', $5::text)
    FROM unnest($1::bigint[]) AS id";

const SETTLE_DELIVERIES: &str = "UPDATE followup_deliveries d
    SET status = $3, attempts = t.attempts, reason = t.reason,
        message_id = COALESCE(t.message_id, d.message_id), delivered_at = $5
    FROM unnest($1::bigint[], $6::int[], $7::text[], $8::text[])
         AS t(lead_id, attempts, reason, message_id)
    WHERE d.lead_id = t.lead_id AND d.kind = $2 AND d.run_id = $4 AND d.status = 'pending'
    RETURNING d.lead_id";

const INSERT_OUTBOX: &str = "INSERT INTO followup_outbox
    (event_type, subject, idempotency_key, data, occurred_at)
    SELECT $1, subject, key, data::jsonb, $2
    FROM unnest($3::text[], $4::text[], $5::text[]) AS t(subject, key, data)";

/// Records delivered follow-ups of one kind; returns how many were recorded (those whose claim
/// this run still held).
pub async fn record_sent(
    conn: &mut PgConnection,
    kind: FollowupKind,
    run_id: Uuid,
    at: DateTime<Utc>,
    sent: &[SentFollowup],
) -> Result<usize, sqlx::Error> {
    let settled = settle_deliveries(
        conn,
        kind,
        "sent",
        run_id,
        at,
        sent.iter()
            .map(|s| (s.lead_id, s.attempts, None, Some(s.message_id.clone()))),
    )
    .await?;
    let sent: Vec<&SentFollowup> = sent
        .iter()
        .filter(|s| settled.contains(&s.lead_id))
        .collect();
    if sent.is_empty() {
        return Ok(0);
    }
    let ids: Vec<i64> = sent.iter().map(|s| s.lead_id).collect();
    let mark = match kind {
        FollowupKind::T3 => MARK_T3,
        FollowupKind::T7 => MARK_T7,
    };
    let marked = sqlx::query(mark)
        .bind(&ids)
        .bind(at)
        .execute(&mut *conn)
        .await?
        .rows_affected();
    if marked < ids.len() as u64 {
        // Deleted meanwhile, or hidden from this role by the CRM's row-level security: the mail
        // went out and is recorded, but the lead's flag could not be set.
        tracing::error!(
            kind = kind.as_str(),
            expected = ids.len(),
            marked,
            "could not mark every delivered follow-up on its lead (deleted, or hidden by RLS)"
        );
    }
    let description = match kind {
        FollowupKind::T3 => "Automatisches T+3 Follow-up (Musteranfrage) versendet",
        FollowupKind::T7 => "Automatisches T+7 Follow-up versendet",
    };
    sqlx::query(INSERT_ACTIVITIES)
        .bind(&ids)
        .bind(at)
        .bind(description)
        .bind(kind.activity_type())
        .bind(run_id.to_string())
        .execute(&mut *conn)
        .await?;
    let events = sent.iter().map(|s| {
        let data = FollowupSent {
            lead_id: s.lead_id,
            owner_user_id: s.owner_user_id.clone(),
            kind,
            sent_at: at,
            run_id: run_id.to_string(),
        };
        (
            s.lead_id,
            sent_key(s.lead_id, kind),
            serde_json::to_string(&data),
        )
    });
    insert_events(conn, EventType::Sent, at, events).await?;
    Ok(sent.len())
}

/// Records follow-ups that finally failed: the delivery record and a `failed` event; the lead's
/// flags stay untouched (no later run sends that kind, and it no longer counts as pending).
/// Returns how many were recorded.
pub async fn record_failed(
    conn: &mut PgConnection,
    kind: FollowupKind,
    run_id: Uuid,
    at: DateTime<Utc>,
    failed: &[FailedFollowup],
) -> Result<usize, sqlx::Error> {
    let settled = settle_deliveries(
        conn,
        kind,
        "failed",
        run_id,
        at,
        failed
            .iter()
            .map(|f| (f.lead_id, f.attempts, Some(f.reason.clone()), None)),
    )
    .await?;
    let failed: Vec<&FailedFollowup> = failed
        .iter()
        .filter(|f| settled.contains(&f.lead_id))
        .collect();
    if failed.is_empty() {
        return Ok(0);
    }
    let events = failed.iter().map(|f| {
        let data = FollowupFailed {
            lead_id: f.lead_id,
            owner_user_id: f.owner_user_id.clone(),
            kind,
            reason: f.reason.clone(),
            attempts: f.attempts,
        };
        (
            f.lead_id,
            failed_key(f.lead_id, kind),
            serde_json::to_string(&data),
        )
    });
    insert_events(conn, EventType::Failed, at, events).await?;
    Ok(failed.len())
}

/// `(lead id, attempts, reason, message id)`.
type DeliveryRow = (i64, i32, Option<String>, Option<String>);

/// Turns this run's pending records into `status`; returns the lead ids it turned.
async fn settle_deliveries(
    conn: &mut PgConnection,
    kind: FollowupKind,
    status: &str,
    run_id: Uuid,
    at: DateTime<Utc>,
    rows: impl Iterator<Item = DeliveryRow>,
) -> Result<std::collections::HashSet<i64>, sqlx::Error> {
    let (mut ids, mut attempts, mut reasons, mut message_ids) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for (id, n, reason, message_id) in rows {
        ids.push(id);
        attempts.push(n);
        reasons.push(reason);
        message_ids.push(message_id);
    }
    if ids.is_empty() {
        return Ok(Default::default());
    }
    let settled: Vec<i64> = sqlx::query_scalar(SETTLE_DELIVERIES)
        .bind(&ids)
        .bind(kind.as_str())
        .bind(status)
        .bind(run_id)
        .bind(at)
        .bind(&attempts)
        .bind(&reasons)
        .bind(&message_ids)
        .fetch_all(conn)
        .await?;
    if settled.len() < ids.len() {
        let lost: Vec<i64> = ids
            .iter()
            .copied()
            .filter(|id| !settled.contains(id))
            .collect();
        tracing::warn!(
            kind = kind.as_str(),
            status,
            ?lost,
            "claims taken over by a later run (this run looked dead); outcome not recorded here"
        );
    }
    Ok(settled.into_iter().collect())
}

/// Appends events of one type to the outbox: `(lead id, idempotency key, data JSON)`.
pub async fn insert_events(
    conn: &mut PgConnection,
    event_type: EventType,
    at: DateTime<Utc>,
    events: impl Iterator<Item = (i64, String, serde_json::Result<String>)>,
) -> Result<(), sqlx::Error> {
    let (mut subjects, mut keys, mut data) = (Vec::new(), Vec::new(), Vec::new());
    for (lead_id, key, json) in events {
        subjects.push(lead_id.to_string());
        keys.push(key);
        data.push(json.map_err(|e| sqlx::Error::Encode(Box::new(e)))?);
    }
    sqlx::query(INSERT_OUTBOX)
        .bind(event_type.as_str())
        .bind(at)
        .bind(&subjects)
        .bind(&keys)
        .bind(&data)
        .execute(conn)
        .await?;
    Ok(())
}
