//! Which leads are due, by the CRM's rules, and claiming them.
//!
//! - T+3: ACTIVE, clock running, registered at least 3 days ago, T+3 not sent.
//! - T+7: ACTIVE, clock running, registered at least 7 days ago, T+3 sent, T+7 not sent, and the
//!   T+3 not delivered in this run (`last_followup_at` before the run started): an overdue lead
//!   gets its T+3 now and its T+7 at a later run.
//!
//! Rows are claimed with `FOR UPDATE SKIP LOCKED` in keyset batches (`id > after`), so parallel
//! producers split the work and a skipped lead is not claimed twice in one run. A follow-up with a
//! delivery record (sent or finally failed) is never claimed again.

use chrono::{DateTime, Utc};
use followup_contract::FollowupKind;
use sqlx::PgConnection;

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
    pub metadata: serde_json::Value,
}

impl DueLead {
    /// Why this lead must not be mailed, if it must not.
    pub fn skip_reason(&self) -> Option<SkipReason> {
        if self.email.as_deref().is_none_or(|e| e.trim().is_empty()) {
            return Some(SkipReason::NoEmail);
        }
        if self.metadata.get("emailConsent").and_then(|v| v.as_bool()) != Some(true) {
            return Some(SkipReason::NoConsent);
        }
        None
    }
}

/// Why a due lead was skipped (counted as skipped, not as an error).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SkipReason {
    NoEmail,
    NoConsent,
}

const CLAIM_T3: &str = "
SELECT id, company_name, contact_person, email, business_type, territory_id, owner_user_id, metadata
FROM leads l
WHERE l.status = 'ACTIVE' AND l.clock_stopped_at IS NULL AND NOT l.t7_followup_sent
  AND NOT l.t3_followup_sent
  AND l.registered_at <= $1 - interval '3 days'
  AND l.id > $2
  AND NOT EXISTS (SELECT 1 FROM followup_deliveries d WHERE d.lead_id = l.id AND d.kind = 't3')
ORDER BY l.id
LIMIT $3
FOR UPDATE SKIP LOCKED";

const CLAIM_T7: &str = "
SELECT id, company_name, contact_person, email, business_type, territory_id, owner_user_id, metadata
FROM leads l
WHERE l.status = 'ACTIVE' AND l.clock_stopped_at IS NULL AND NOT l.t7_followup_sent
  AND l.t3_followup_sent
  AND l.registered_at <= $1 - interval '7 days'
  AND l.id > $2
  AND (l.last_followup_at IS NULL OR l.last_followup_at < $4)
  AND NOT EXISTS (SELECT 1 FROM followup_deliveries d WHERE d.lead_id = l.id AND d.kind = 't7')
ORDER BY l.id
LIMIT $3
FOR UPDATE SKIP LOCKED";

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
