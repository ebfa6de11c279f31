//! Applying a batch of stream messages to the projection inside the caller's transaction
//! (esrs style: the caller begins, commits, and only then acks and announces). Parsing, inbox
//! dedup, dead letters, folding and the set-based writes meet here.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use followup_contract::LeadEvent;
use sqlx::{PgConnection, PgPool};

use crate::dead_letters::insert_dead_letter;
use crate::fold::{Outcome, fold_events};
use crate::parse::{InboundMessage, ParsedBatch, Slot, parse_batch};
use crate::store::{insert_inbox_ids, load_lead_records};
use crate::write::{Progress, write_plan};

/// Advisory lock held by every transaction that writes the live projection, and by the swap at
/// the end of `rebuild`: while a swap runs, `serve` waits.
pub const APPLY_LOCK_KEY: i64 = 0x4650_5052_4f4a_0001;

/// What a committed batch did.
#[derive(Debug, Default)]
pub struct BatchReport {
    /// `(type label, outcome)` per message, in order. The label is the event type, or `unknown`
    /// for a message whose type is not in the contract.
    pub outcomes: Vec<(&'static str, Outcome)>,
    /// Old and new owners and collaborators of the leads the batch changed.
    pub users: Vec<String>,
    /// Whether the organisation's figures or runs may have changed.
    pub org: bool,
    /// Latest event time among the applied events.
    pub last_event_at: Option<DateTime<Utc>>,
    /// Where the batch's time went.
    pub phases: ApplyPhases,
}

/// Time spent per phase of applying a batch (`followup_projector_stage_seconds_total`).
#[derive(Debug, Default, Clone, Copy)]
pub struct ApplyPhases {
    /// `BEGIN` and waiting for the projection lock ([`apply_and_commit`] only).
    pub lock: Duration,
    /// Recording the event ids in the inbox (duplicates found here).
    pub inbox: Duration,
    /// Loading the stored records of the batch's leads.
    pub load: Duration,
    /// Folding the events into a write plan (no I/O).
    pub fold: Duration,
    /// The one write statement.
    pub write: Duration,
    /// `COMMIT` ([`apply_and_commit`] only).
    pub commit: Duration,
}

impl BatchReport {
    /// Number of messages with this outcome.
    pub fn count(&self, outcome: Outcome) -> usize {
        self.outcomes.iter().filter(|(_, o)| *o == outcome).count()
    }
}

/// Why a batch could not be applied. Any of these rolls the whole batch back; the caller
/// retries it without acking.
#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    #[error("database error while applying a batch: {0}")]
    Database(#[from] sqlx::Error),
    #[error(
        "the projection was built for time zone {stored}, this projector uses {configured}: \
         run `followup-projector rebuild` to change it"
    )]
    TimeZoneMismatch { stored: String, configured: String },
}

/// Takes the projection's write lock for the rest of the caller's transaction.
pub async fn lock_projection(conn: &mut PgConnection) -> sqlx::Result<()> {
    sqlx::query("SELECT pg_advisory_xact_lock($1)")
        .bind(APPLY_LOCK_KEY)
        .execute(conn)
        .await
        .map(|_| ())
}

/// Applies `messages` (in stream order) inside the caller's transaction; see [`apply_parsed`].
pub async fn apply_messages(
    conn: &mut PgConnection,
    tz: Tz,
    messages: &[InboundMessage],
) -> Result<BatchReport, ApplyError> {
    apply_parsed(conn, tz, &parse_batch(messages.to_vec())).await
}

/// Applies a parsed batch inside the caller's transaction: messages that are not valid events
/// go to `projection_dead_letters` (a parse error is deterministic, so they are stored on first
/// sight instead of being redelivered), known event ids are duplicates, and the rest are folded
/// into the read model.
pub async fn apply_parsed(
    conn: &mut PgConnection,
    tz: Tz,
    batch: &ParsedBatch,
) -> Result<BatchReport, ApplyError> {
    let ParsedBatch {
        messages,
        slots,
        events: parsed,
    } = batch;
    for (message, (_, slot)) in messages.iter().zip(slots) {
        if let Slot::DeadLettered(reason) = slot {
            insert_dead_letter(conn, message, reason).await?;
        }
    }
    // Phase times go to the debug log and the report: where a batch's time goes (see
    // projector/BENCH.md).
    let started = Instant::now();
    let ids: Vec<_> = parsed.iter().map(|(id, _, _)| *id).collect();
    let new: HashSet<_> = insert_inbox_ids(conn, &ids).await?.into_iter().collect();
    let inbox = started.elapsed();
    let fresh: Vec<(DateTime<Utc>, &LeadEvent)> = parsed
        .iter()
        .filter(|(id, _, _)| new.contains(id))
        .map(|(_, at, event)| (*at, event))
        .collect();
    let lead_ids: Vec<i64> = fresh.iter().filter_map(|(_, e)| lead_id(e)).collect();
    let (records, stored) = load_lead_records(conn, &lead_ids).await?;
    let load = started.elapsed();
    let (fresh_outcomes, plan) = fold_events(&fresh, records, tz);
    let fold = started.elapsed();
    let last_event_at = fresh.iter().map(|(at, _)| *at).max();
    let last_sequence = messages
        .iter()
        .map(|m| m.stream_sequence)
        .max()
        .unwrap_or(0);
    // The writes and the progress in one statement; it refuses to mix day keys of two zones.
    let progress = Progress {
        time_zone: tz.name(),
        last_sequence: i64::try_from(last_sequence).unwrap_or(i64::MAX),
        last_event_at,
    };
    let stored_zone = write_plan(conn, &plan, &stored, &progress).await?;
    let write = started.elapsed();
    tracing::debug!(
        events = parsed.len(),
        inbox_ms = inbox.as_secs_f64() * 1e3,
        load_ms = (load - inbox).as_secs_f64() * 1e3,
        fold_ms = (fold - load).as_secs_f64() * 1e3,
        write_ms = (write - fold).as_secs_f64() * 1e3,
        "batch phases"
    );
    if stored_zone != tz.name() {
        return Err(ApplyError::TimeZoneMismatch {
            stored: stored_zone,
            configured: tz.name().to_owned(),
        });
    }

    // Merge the outcomes of the fresh events back into message order.
    let mut fresh_outcomes = fresh_outcomes.into_iter();
    let outcomes = slots
        .iter()
        .map(|(label, slot)| match slot {
            Slot::DeadLettered(_) => (*label, Outcome::DeadLettered),
            Slot::Event(Some(i)) if new.contains(&parsed[*i].0) => {
                let outcome = fresh_outcomes.next().expect("one outcome per fresh event");
                (*label, outcome)
            }
            Slot::Event(_) => (*label, Outcome::Duplicate),
        })
        .collect();
    Ok(BatchReport {
        outcomes,
        users: plan.users.into_iter().collect(),
        org: plan.org,
        last_event_at,
        phases: ApplyPhases {
            inbox,
            load: load - inbox,
            fold: fold - load,
            write: write - fold,
            ..ApplyPhases::default()
        },
    })
}

/// Begins a transaction, takes the projection lock, applies `batch` and commits.
pub async fn apply_and_commit(
    pool: &PgPool,
    tz: Tz,
    batch: &ParsedBatch,
) -> Result<BatchReport, ApplyError> {
    let started = Instant::now();
    let mut tx = pool.begin().await?;
    lock_projection(&mut tx).await?;
    let lock = started.elapsed();
    let mut report = apply_parsed(&mut tx, tz, batch).await?;
    let committing = Instant::now();
    tx.commit().await?;
    report.phases.lock = lock;
    report.phases.commit = committing.elapsed();
    Ok(report)
}

fn lead_id(event: &LeadEvent) -> Option<i64> {
    match event {
        LeadEvent::Changed(c) => Some(c.lead_id),
        LeadEvent::Sent(s) => Some(s.lead_id),
        LeadEvent::Failed(f) => Some(f.lead_id),
        LeadEvent::Processed(_) => None,
    }
}
