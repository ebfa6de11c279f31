//! Which leads are due, by the CRM's rules, and claiming them.
//!
//! - T+3: ACTIVE, clock running, registered at least 3 days ago, T+3 not sent.
//! - T+7: ACTIVE, clock running, registered at least 7 days ago, T+3 sent, T+7 not sent, and the
//!   T+3 not delivered in this run (`last_followup_at` before the run started): an overdue lead
//!   gets its T+3 now and its T+7 at a later run.
//!
//! Claiming is two steps in one short transaction: the due rows are selected with
//! `FOR UPDATE SKIP LOCKED` in keyset batches (`id > after`), so parallel producers split the work
//! and a skipped lead is not looked at twice in one run; then each follow-up to be sent gets a
//! `pending` delivery record ([`insert_claims`]). That record is the claim: `followup_deliveries`
//! is unique per lead and kind, so of two producers that both selected a lead only the one whose
//! insert went in sends (the insert, not the row lock, decides, because a lock on a row that was
//! not updated does not make a later reader re-check its snapshot). The transaction then commits:
//! the row locks on `leads` are held for milliseconds, never while mail is being sent, so CRM users
//! editing those leads do not wait for the mail server.
//!
//! A follow-up with a delivery record (pending, sent or finally failed) is not claimed again. A
//! pending record is settled by its run (`sent`/`failed`), deleted by its run when the follow-up
//! was not sent (shutdown, lead no longer eligible), or — when its run died — deleted by a later
//! run once the dead run's heartbeat is older than the claim timeout ([`release_stale_claims`]);
//! the follow-up is then due again and goes out with the same `Message-ID`.

use std::time::Duration;

use chrono::{DateTime, Utc};
use followup_contract::FollowupKind;
use sqlx::{PgConnection, PgPool};
use uuid::Uuid;

/// A claimed lead with what the e-mail needs.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct DueLead {
    pub id: i64,
    pub company_name: String,
    pub contact_person: Option<String>,
    pub email: Option<String>,
    pub business_type: Option<String>,
    pub territory_id: Option<String>,
    pub owner_user_id: Option<String>,
    /// `leads.metadata`; a NULL reads as `{}`.
    pub metadata: serde_json::Value,
    /// The contactable rule of DESIGN.md, evaluated by the database (`followup_contactable_row`
    /// and `followup_email_opted_out`, its one SQL definition).
    pub contactable: bool,
}

impl DueLead {
    /// Why this lead must not be mailed, if it must not.
    pub fn skip_reason(&self) -> Option<SkipReason> {
        if self.email.as_deref().is_none_or(|e| e.trim().is_empty()) {
            return Some(SkipReason::NoEmail);
        }
        if !self.contactable {
            return Some(SkipReason::NotContactable);
        }
        None
    }
}

/// Why a due lead was skipped (counted as skipped, not as an error).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SkipReason {
    NoEmail,
    /// No e-mail consent, consent withdrawn (GDPR fields or a `lead_consent` OPT_OUT), blocked or
    /// erased.
    NotContactable,
}

// The CRM's production schema (DESIGN.md "Domain"): flags and metadata may be NULL (read as
// their defaults, hence IS [NOT] TRUE and COALESCE), timestamps are naive and hold UTC (compared
// with the run clock converted to naive UTC, whatever the session's TimeZone).
macro_rules! due_columns {
    () => {
        "SELECT id, company_name, contact_person, email, business_type, territory_id,
    owner_user_id, COALESCE(metadata, '{}'::jsonb) AS metadata,
    followup_contactable_row(email, metadata, contact_blocked, consent_revoked_at IS NOT NULL,
                             gdpr_deleted) AND NOT followup_email_opted_out(id) AS contactable"
    };
}

const CLAIM_T3: &str = concat!(
    due_columns!(),
    "
FROM leads l
WHERE l.status = 'ACTIVE' AND l.clock_stopped_at IS NULL AND l.t7_followup_sent IS NOT TRUE
  AND l.t3_followup_sent IS NOT TRUE
  AND l.registered_at <= ($1::timestamptz AT TIME ZONE 'UTC') - interval '3 days'
  AND l.id > $2
  AND NOT EXISTS (SELECT 1 FROM followup_deliveries d WHERE d.lead_id = l.id AND d.kind = 't3')
ORDER BY l.id
LIMIT $3
FOR UPDATE SKIP LOCKED"
);

const CLAIM_T7: &str = concat!(
    due_columns!(),
    "
FROM leads l
WHERE l.status = 'ACTIVE' AND l.clock_stopped_at IS NULL AND l.t7_followup_sent IS NOT TRUE
  AND l.t3_followup_sent IS TRUE
  AND l.registered_at <= ($1::timestamptz AT TIME ZONE 'UTC') - interval '7 days'
  AND l.id > $2
  AND (l.last_followup_at IS NULL OR l.last_followup_at < ($4::timestamptz AT TIME ZONE 'UTC'))
  AND NOT EXISTS (SELECT 1 FROM followup_deliveries d WHERE d.lead_id = l.id AND d.kind = 't7')
ORDER BY l.id
LIMIT $3
FOR UPDATE SKIP LOCKED"
);

/// Claims up to `limit` due leads of `kind` with ids above `after`, locking them until the
/// caller's transaction ends. `now` is the run's clock; `run_started` guards the one-per-run rule.
pub async fn claim_due_leads(
    conn: &mut PgConnection,
    kind: FollowupKind,
    now: DateTime<Utc>,
    run_started: DateTime<Utc>,
    after: i64,
    limit: i64,
) -> Result<Vec<DueLead>, sqlx::Error> {
    let sql = match kind {
        FollowupKind::T3 => CLAIM_T3,
        FollowupKind::T7 => CLAIM_T7,
    };
    let mut query = sqlx::query_as::<_, DueLead>(sql)
        .bind(now)
        .bind(after)
        .bind(limit);
    if kind == FollowupKind::T7 {
        query = query.bind(run_started);
    }
    query.fetch_all(conn).await
}

const INSERT_CLAIMS: &str = "INSERT INTO followup_deliveries
    (lead_id, kind, status, run_id, owner_user_id, attempts, message_id, delivered_at)
    SELECT lead_id, $2, 'pending', $3, owner, 0, message_id, now()
    FROM unnest($1::bigint[], $4::text[], $5::text[]) AS t(lead_id, owner, message_id)
    ON CONFLICT (lead_id, kind) DO NOTHING
    RETURNING lead_id";

/// A follow-up to claim: lead id, owner, Message-ID.
pub type Claim = (i64, Option<String>, String);

/// Inserts `pending` delivery records for `claims`; returns the lead ids whose record went in
/// (the others are claimed, sent or settled already, and must not be sent by this run).
pub async fn insert_claims(
    conn: &mut PgConnection,
    kind: FollowupKind,
    run_id: Uuid,
    claims: &[Claim],
) -> Result<Vec<i64>, sqlx::Error> {
    if claims.is_empty() {
        return Ok(Vec::new());
    }
    let (mut ids, mut owners, mut message_ids) = (Vec::new(), Vec::new(), Vec::new());
    for (id, owner, message_id) in claims {
        ids.push(*id);
        owners.push(owner.clone());
        message_ids.push(message_id.clone());
    }
    sqlx::query_scalar(INSERT_CLAIMS)
        .bind(&ids)
        .bind(kind.as_str())
        .bind(run_id)
        .bind(&owners)
        .bind(&message_ids)
        .fetch_all(conn)
        .await
}

/// Deletes this run's claims of `lead_ids` that were not sent: they are due again.
pub async fn release_claims(
    conn: &mut PgConnection,
    kind: FollowupKind,
    run_id: Uuid,
    lead_ids: &[i64],
) -> Result<u64, sqlx::Error> {
    if lead_ids.is_empty() {
        return Ok(0);
    }
    let done = sqlx::query(
        "DELETE FROM followup_deliveries
         WHERE kind = $1 AND run_id = $2 AND status = 'pending' AND lead_id = ANY($3)",
    )
    .bind(kind.as_str())
    .bind(run_id)
    .bind(lead_ids)
    .execute(conn)
    .await?;
    Ok(done.rows_affected())
}

/// Deletes every claim this run still holds (end of run, whatever happened).
pub async fn release_run_claims(pool: &PgPool, run_id: Uuid) -> Result<u64, sqlx::Error> {
    let done =
        sqlx::query("DELETE FROM followup_deliveries WHERE run_id = $1 AND status = 'pending'")
            .bind(run_id)
            .execute(pool)
            .await?;
    Ok(done.rows_affected())
}

/// A claim released because its run stopped showing signs of life.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct StaleClaim {
    pub lead_id: i64,
    pub kind: String,
    pub run_id: Uuid,
    pub message_id: Option<String>,
}

/// Deletes pending claims whose run finished, vanished, or has not sent a heartbeat for
/// `timeout` (database clock). Such a run crashed (or lost its database) somewhere between
/// claiming and recording: the follow-up may or may not have reached the mail server. It becomes
/// due again and is sent again with the same `Message-ID`, so the receiving side can recognise
/// the duplicate; losing a follow-up silently would be worse.
pub async fn release_stale_claims(
    pool: &PgPool,
    timeout: Duration,
) -> Result<Vec<StaleClaim>, sqlx::Error> {
    sqlx::query_as(
        "DELETE FROM followup_deliveries d
         WHERE d.status = 'pending'
           AND NOT EXISTS (SELECT 1 FROM followup_runs r
                           WHERE r.run_id = d.run_id AND r.finished_at IS NULL
                             AND r.heartbeat_at > now() - make_interval(secs => $1))
         RETURNING d.lead_id, d.kind, d.run_id, d.message_id",
    )
    .bind(timeout.as_secs_f64())
    .fetch_all(pool)
    .await
}
