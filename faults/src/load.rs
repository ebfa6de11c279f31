//! The CRM's side of the load: lead inserts, status changes (activation, conversion, loss,
//! deletion), owner and collaborator changes, each in its own transaction, at a steady rate.
//! Each committed change records the idempotency key of the `lead.changed.v1` event its trigger
//! wrote (`lead:<id>:change:<outbox id>`), so the oracle can look for exactly that event.

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use sqlx::PgPool;

use crate::rng::Rng;

/// What the load committed.
#[derive(Debug, Default)]
pub struct LoadLog {
    /// Keys of changes whose commit succeeded.
    pub committed: Vec<String>,
    /// Keys of changes whose COMMIT failed in flight (the database went away): they may or may
    /// not have committed, so they are neither expected nor forbidden.
    pub uncertain: HashSet<String>,
    /// Transactions that failed before COMMIT (rolled back, nothing to expect).
    pub failed: u64,
    /// Lead ids that exist (inserted and committed), for later updates.
    pub leads: Vec<i64>,
}

/// Leads are registered this many whole days ago (plus 1–12 hours), never near the 3- and 7-day
/// marks, so nothing becomes due by the clock alone while the suite waits for quiet.
const AGES_DAYS: [i64; 6] = [0, 1, 4, 5, 8, 9];
const OWNERS: [&str; 4] = ["u1", "u2", "u3", "u4"];
const STATUSES: [&str; 5] = ["ACTIVE", "CONVERTED", "REGISTERED", "LOST", "DELETED"];

/// Runs changes at `per_second` until `stop` is set.
pub async fn run_load(
    pool: PgPool,
    per_second: u32,
    seed: u64,
    log: Arc<Mutex<LoadLog>>,
    stop: Arc<AtomicBool>,
) {
    let mut rng = Rng::new(seed);
    let pause = Duration::from_micros(1_000_000 / u64::from(per_second.max(1)));
    let mut tick = tokio::time::interval(pause);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    while !stop.load(Ordering::Relaxed) {
        tick.tick().await;
        let known = log.lock().unwrap().leads.len();
        let pick = rng.below(100);
        let lead = (known > 0).then(|| log.lock().unwrap().leads[rng.below(known as u64) as usize]);
        let result = match (pick, lead) {
            (0..40, _) | (_, None) => insert(&pool, &mut rng).await,
            (40..75, Some(id)) => {
                let choices = if rng.below(20) == 0 { 5 } else { 4 };
                let status = STATUSES[rng.below(choices) as usize];
                change(
                    &pool,
                    id,
                    "UPDATE leads SET status = $2 WHERE id = $1 AND status <> $2 AND status <> 'DELETED'",
                    status,
                )
                .await
            }
            (75..92, Some(id)) => {
                let owner = OWNERS[rng.below(4) as usize];
                change(
                    &pool,
                    id,
                    "UPDATE leads SET owner_user_id = $2 WHERE id = $1 AND owner_user_id IS DISTINCT FROM $2",
                    owner,
                )
                .await
            }
            (_, Some(id)) => {
                let collaborator = OWNERS[rng.below(4) as usize];
                change(
                    &pool,
                    id,
                    "UPDATE leads SET collaborator_user_ids = ARRAY[$2::text] \
                    WHERE id = $1 AND collaborator_user_ids IS DISTINCT FROM ARRAY[$2::text]",
                    collaborator,
                )
                .await
            }
        };
        let mut log = log.lock().unwrap();
        match result {
            Outcome::Committed(key, new_lead) => {
                log.committed.push(key);
                log.leads.extend(new_lead);
            }
            Outcome::Uncertain(key) => {
                log.uncertain.insert(key);
            }
            Outcome::Nothing => {}
            Outcome::Failed => log.failed += 1,
        }
    }
}

enum Outcome {
    Committed(String, Option<i64>),
    Uncertain(String),
    Nothing,
    Failed,
}

async fn insert(pool: &PgPool, rng: &mut Rng) -> Outcome {
    let days = AGES_DAYS[rng.below(AGES_DAYS.len() as u64) as usize];
    let hours = 1 + rng.below(12) as i64;
    let status = if rng.below(10) < 8 {
        "ACTIVE"
    } else {
        "REGISTERED"
    };
    let owner = OWNERS[rng.below(4) as usize];
    let step = async {
        let mut tx = pool.begin().await?;
        let id: i64 = sqlx::query_scalar(
            "INSERT INTO leads (company_name, contact_person, email, status, owner_user_id, \
                                registered_at, metadata) \
             VALUES ('Faults GmbH', 'Eva Muster', 'lead@faults.example', $1, $2, \
                     now() - make_interval(days => $3, hours => $4), '{\"emailConsent\": true}') \
             RETURNING id",
        )
        .bind(status)
        .bind(owner)
        .bind(days as i32)
        .bind(hours as i32)
        .fetch_one(&mut *tx)
        .await?;
        let key = last_change_key(&mut tx, id).await?;
        Ok::<_, sqlx::Error>((tx, id, key))
    };
    match step.await {
        Ok((tx, id, key)) => match tx.commit().await {
            Ok(()) => Outcome::Committed(key, Some(id)),
            Err(_) => Outcome::Uncertain(key),
        },
        Err(_) => Outcome::Failed,
    }
}

/// One `UPDATE leads` statement with `$1` = lead id, `$2` = value; changes one row or none.
async fn change(pool: &PgPool, id: i64, sql: &'static str, value: &str) -> Outcome {
    let step = async {
        let mut tx = pool.begin().await?;
        let rows = sqlx::query(sql)
            .bind(id)
            .bind(value)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        if rows == 0 {
            return Ok(None);
        }
        let key = last_change_key(&mut tx, id).await?;
        Ok::<_, sqlx::Error>(Some((tx, key)))
    };
    match step.await {
        Ok(Some((tx, key))) => match tx.commit().await {
            Ok(()) => Outcome::Committed(key, None),
            Err(_) => Outcome::Uncertain(key),
        },
        Ok(None) => Outcome::Nothing,
        Err(_) => Outcome::Failed,
    }
}

/// The key of the event the trigger just wrote in this transaction (its outbox id came from
/// the session's last `nextval` of the outbox sequence).
async fn last_change_key(
    tx: &mut sqlx::Transaction<'_, sqlx::Postgres>,
    lead: i64,
) -> sqlx::Result<String> {
    let outbox: i64 =
        sqlx::query_scalar("SELECT currval(pg_get_serial_sequence('followup_outbox', 'id'))")
            .fetch_one(&mut **tx)
            .await?;
    Ok(format!("lead:{lead}:change:{outbox}"))
}
