//! The CRM's side of the load, written the way the CRM writes its production schema (DESIGN.md
//! "Domain"): lead inserts with `created_by` and naive UTC timestamps, NULL in some nullable
//! columns; whole-row saves of forms loaded earlier, guarded by Hibernate's `version` (status and
//! owner changes; a form loaded before a later change fails its optimistic lock and changes
//! nothing); collaborator changes in `lead_collaborators`; GDPR consent withdrawals. Each change is
//! its own transaction, at a steady rate.
//!
//! Each committed change records the idempotency key of the `lead.changed.v1` event its trigger
//! wrote in that transaction (`lead:<id>:change:<outbox id>`), so the oracle can look for exactly
//! that event. A change of no follow-up-relevant fact (a save that changes no status or owner, a
//! second withdrawal) makes the trigger write nothing: then nothing is recorded.

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use sqlx::{PgConnection, PgPool};

use crate::rng::Rng;

/// What the load committed.
#[derive(Debug, Default)]
pub struct LoadLog {
    /// Keys of the events written by changes whose commit succeeded.
    pub committed: Vec<String>,
    /// Keys of changes whose COMMIT failed in flight (the database went away): they may or may
    /// not have committed, so they are neither expected nor forbidden.
    pub uncertain: HashSet<String>,
    /// Transactions that failed before COMMIT (rolled back, nothing to expect).
    pub failed: u64,
    /// Whole-row saves the optimistic lock refused (the lead changed after its form was loaded).
    pub stale_saves: u64,
    /// Committed writes that changed no follow-up-relevant fact, so no event was written.
    pub without_event: u64,
    /// Lead ids that exist (inserted and committed), for later updates.
    pub leads: Vec<i64>,
}

/// Leads are registered this many whole days ago (plus 1–12 hours), never near the 3- and 7-day
/// marks, so nothing becomes due by the clock alone while the suite waits for quiet.
const AGES_DAYS: [i64; 6] = [0, 1, 4, 5, 8, 9];
const OWNERS: [&str; 4] = ["u1", "u2", "u3", "u4"];
const STATUSES: [&str; 5] = ["ACTIVE", "CONVERTED", "REGISTERED", "LOST", "DELETED"];
const BUSINESS_TYPES: [Option<&str>; 4] =
    [Some("RESTAURANT"), Some("HOTEL"), Some("KANTINE"), None];
/// Forms left open in CRM browser tabs, saved later (often after someone else changed the lead).
const OPEN_FORMS: usize = 32;

/// A lead as a CRM form loaded it (the columns the form writes back on save).
#[derive(Debug, Clone)]
struct Form {
    lead: i64,
    version: i64,
    status: String,
    owner: Option<String>,
    t3: Option<bool>,
    t7: Option<bool>,
}

/// One change of the CRM.
enum Change {
    Insert,
    /// A form saved with a new status or owner.
    Save(Form),
    Collaborator(i64, &'static str),
    Withdraw(i64),
}

/// Runs changes at `per_second` until `stop` is set.
pub async fn run_load(
    pool: PgPool,
    per_second: u32,
    seed: u64,
    log: Arc<Mutex<LoadLog>>,
    stop: Arc<AtomicBool>,
) {
    let mut rng = Rng::new(seed);
    let mut open_forms: Vec<Form> = Vec::new();
    let pause = Duration::from_micros(1_000_000 / u64::from(per_second.max(1)));
    let mut tick = tokio::time::interval(pause);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    while !stop.load(Ordering::Relaxed) {
        tick.tick().await;
        let known = log.lock().unwrap().leads.len();
        let pick = rng.below(100);
        let lead = (known > 0).then(|| log.lock().unwrap().leads[rng.below(known as u64) as usize]);
        let change = match (pick, lead) {
            (0..35, _) | (_, None) => Some(Change::Insert),
            (35..80, Some(id)) => {
                // Someone opens the lead's form and leaves it open for later.
                if rng.below(4) == 0
                    && let Ok(form) = load_form(&pool, id).await
                {
                    if open_forms.len() >= OPEN_FORMS {
                        open_forms.swap_remove(rng.below(OPEN_FORMS as u64) as usize);
                    }
                    open_forms.push(form);
                }
                // A form open for a while, or one loaded just now.
                let form = if !open_forms.is_empty() && rng.below(3) == 0 {
                    Some(open_forms.swap_remove(rng.below(open_forms.len() as u64) as usize))
                } else {
                    load_form(&pool, id).await.ok()
                };
                form.and_then(|mut form| {
                    // The CRM does not edit a deleted lead.
                    if form.status == "DELETED" {
                        return None;
                    }
                    if pick < 62 {
                        let choices = if rng.below(20) == 0 { 5 } else { 4 };
                        form.status = STATUSES[rng.below(choices) as usize].to_owned();
                    } else {
                        form.owner = Some(OWNERS[rng.below(4) as usize].to_owned());
                    }
                    Some(Change::Save(form))
                })
            }
            (80..96, Some(id)) => Some(Change::Collaborator(id, OWNERS[rng.below(4) as usize])),
            (_, Some(id)) => Some(Change::Withdraw(id)),
        };
        let result = match change {
            Some(change) => apply(&pool, change, &mut rng).await,
            None => Outcome::Nothing,
        };
        let mut log = log.lock().unwrap();
        match result {
            Outcome::Committed(keys, new_lead) => {
                if keys.is_empty() {
                    log.without_event += 1;
                }
                log.committed.extend(keys);
                log.leads.extend(new_lead);
            }
            Outcome::Uncertain(keys) => log.uncertain.extend(keys),
            Outcome::Stale => log.stale_saves += 1,
            Outcome::Nothing => {}
            Outcome::Failed => log.failed += 1,
        }
    }
}

enum Outcome {
    /// Committed: the keys of the events its triggers wrote, the id of an inserted lead.
    Committed(Vec<String>, Option<i64>),
    Uncertain(Vec<String>),
    /// A save refused by the optimistic lock: nothing changed.
    Stale,
    Nothing,
    Failed,
}

/// Loads the lead as the CRM's form does.
async fn load_form(pool: &PgPool, lead: i64) -> sqlx::Result<Form> {
    let (version, status, owner, t3, t7) = sqlx::query_as(
        "SELECT version, status, owner_user_id, t3_followup_sent, t7_followup_sent \
         FROM leads WHERE id = $1",
    )
    .bind(lead)
    .fetch_one(pool)
    .await?;
    Ok(Form {
        lead,
        version,
        status,
        owner,
        t3,
        t7,
    })
}

/// Runs `change` in its own transaction and commits it if it changed a row.
async fn apply(pool: &PgPool, change: Change, rng: &mut Rng) -> Outcome {
    let step = async {
        let mut tx = pool.begin().await?;
        let (lead, new_lead) = match change {
            Change::Insert => {
                let id = insert(&mut tx, rng).await?;
                (id, Some(id))
            }
            Change::Save(form) => {
                if !save(&mut tx, &form).await? {
                    return Ok(None);
                }
                (form.lead, None)
            }
            Change::Collaborator(id, user) => {
                collaborator(&mut tx, id, user).await?;
                (id, None)
            }
            Change::Withdraw(id) => {
                withdraw(&mut tx, id).await?;
                (id, None)
            }
        };
        let keys = written_keys(&mut tx, lead).await?;
        Ok::<_, sqlx::Error>(Some((tx, keys, new_lead)))
    };
    match step.await {
        Ok(Some((tx, keys, new_lead))) => match tx.commit().await {
            Ok(()) => Outcome::Committed(keys, new_lead),
            Err(_) => Outcome::Uncertain(keys),
        },
        Ok(None) => Outcome::Stale,
        Err(_) => Outcome::Failed,
    }
}

/// A new lead as the CRM inserts it: every column written, NULL in some nullable ones (NULL
/// flags and counts mean their defaults, NULL metadata means no e-mail consent).
async fn insert(conn: &mut PgConnection, rng: &mut Rng) -> sqlx::Result<i64> {
    let days = AGES_DAYS[rng.below(AGES_DAYS.len() as u64) as usize];
    let hours = 1 + rng.below(12) as i64;
    let status = if rng.below(10) < 8 {
        "ACTIVE"
    } else {
        "REGISTERED"
    };
    let owner = OWNERS[rng.below(4) as usize];
    let business_type = BUSINESS_TYPES[rng.below(BUSINESS_TYPES.len() as u64) as usize];
    let flag = |rng: &mut Rng| (rng.below(2) == 0).then_some(false);
    let (t3, t7, blocked) = (flag(rng), flag(rng), flag(rng));
    let count = (rng.below(2) == 0).then_some(0);
    let metadata = match rng.below(20) {
        0 | 1 => None,
        2 => Some(serde_json::json!({})),
        3 => Some(serde_json::json!({"emailConsent": false})),
        _ => Some(serde_json::json!({"emailConsent": true})),
    };
    sqlx::query_scalar(
        "INSERT INTO leads (company_name, contact_person, email, business_type, status, \
                            owner_user_id, registered_at, t3_followup_sent, t7_followup_sent, \
                            followup_count, metadata, contact_blocked, created_by, created_at, \
                            updated_at) \
         VALUES ('Faults GmbH', 'Eva Muster', 'lead@faults.example', $1, $2, $3, \
                 (now() AT TIME ZONE 'UTC') - make_interval(days => $4, hours => $5), \
                 $6, $7, $8, $9, $10, 'crm-ui', now() AT TIME ZONE 'UTC', \
                 now() AT TIME ZONE 'UTC') \
         RETURNING id",
    )
    .bind(business_type)
    .bind(status)
    .bind(owner)
    .bind(days as i32)
    .bind(hours as i32)
    .bind(t3)
    .bind(t7)
    .bind(count)
    .bind(metadata)
    .bind(blocked)
    .fetch_one(conn)
    .await
}

/// Hibernate's save of a whole form: every column it loaded written back, `version` checked and
/// incremented. False when the optimistic lock refused it (the row changed since the load).
async fn save(conn: &mut PgConnection, form: &Form) -> sqlx::Result<bool> {
    let done = sqlx::query(
        "UPDATE leads SET status = $3, owner_user_id = $4, t3_followup_sent = $5, \
                t7_followup_sent = $6, version = version + 1, \
                updated_at = now() AT TIME ZONE 'UTC', updated_by = 'crm-ui' \
         WHERE id = $1 AND version = $2",
    )
    .bind(form.lead)
    .bind(form.version)
    .bind(&form.status)
    .bind(&form.owner)
    .bind(form.t3)
    .bind(form.t7)
    .execute(conn)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// Adds `user` as a collaborator of the lead, or removes them if they are one.
async fn collaborator(conn: &mut PgConnection, lead: i64, user: &str) -> sqlx::Result<()> {
    let removed = sqlx::query("DELETE FROM lead_collaborators WHERE lead_id = $1 AND user_id = $2")
        .bind(lead)
        .bind(user)
        .execute(&mut *conn)
        .await?
        .rows_affected();
    if removed == 0 {
        sqlx::query(
            "INSERT INTO lead_collaborators (lead_id, user_id, added_at, added_by) \
             VALUES ($1, $2, now() AT TIME ZONE 'UTC', 'crm-ui') ON CONFLICT DO NOTHING",
        )
        .bind(lead)
        .bind(user)
        .execute(&mut *conn)
        .await?;
    }
    Ok(())
}

/// The CRM's GDPR consent withdrawal (metadata left as it was).
async fn withdraw(conn: &mut PgConnection, lead: i64) -> sqlx::Result<()> {
    sqlx::query(
        "UPDATE leads SET contact_blocked = TRUE, consent_revoked_at = now() AT TIME ZONE 'UTC', \
                consent_revoked_by = 'dsgvo', version = version + 1, \
                updated_at = now() AT TIME ZONE 'UTC' \
         WHERE id = $1",
    )
    .bind(lead)
    .execute(conn)
    .await?;
    Ok(())
}

/// The keys of the `lead.changed.v1` events the triggers wrote for `lead` in this transaction
/// (none when the change touched no follow-up-relevant fact), built from the outbox ids as the
/// contract defines them (`lead:<id>:change:<outbox id>`), so a trigger writing another key shows
/// as lost. The rows this transaction inserted are exactly those whose `xmin` is its transaction
/// id: nobody else sees them before the commit (the relay cannot have deleted them), and another
/// session's events for the same lead (the producer marking a follow-up sent) are not taken for
/// ours, which comparing `currval` or `max(id)` before and after could not tell apart.
async fn written_keys(conn: &mut PgConnection, lead: i64) -> sqlx::Result<Vec<String>> {
    let ids: Vec<i64> = sqlx::query_scalar(
        "SELECT id FROM followup_outbox \
         WHERE subject = $1 AND event_type = 'lead.changed.v1' \
           AND xmin = pg_current_xact_id()::xid \
         ORDER BY id",
    )
    .bind(lead.to_string())
    .fetch_all(conn)
    .await?;
    Ok(ids
        .into_iter()
        .map(|id| format!("lead:{lead}:change:{id}"))
        .collect())
}
