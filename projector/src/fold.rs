//! Folds the new events of one batch, in stream order, over the stored state of the leads they
//! touch. Pure: the caller loads the records and writes the resulting plan in its transaction.

use std::collections::{BTreeSet, HashMap};

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use followup_contract::{FollowupProcessed, LeadEvent};

use crate::model::{Delivery, FigureDeltas, LeadRecord, LeadState};

/// What happened to one message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Outcome {
    /// It changed the projection (or was a no-op by design, such as `failed`).
    Applied,
    /// Its event id (or, for `sent`, its lead and kind) was applied before.
    Duplicate,
    /// A `lead.changed.v1` whose sequence is not larger than the stored one.
    Stale,
    /// It cannot be applied and was stored in `projection_dead_letters`.
    DeadLettered,
}

impl Outcome {
    /// The `outcome` label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Applied => "applied",
            Outcome::Duplicate => "duplicate",
            Outcome::Stale => "stale",
            Outcome::DeadLettered => "dead_lettered",
        }
    }
}

/// The writes one batch makes, and whom they concern.
#[derive(Debug, Default)]
pub(crate) struct BatchPlan {
    /// Final state of every lead whose state changed.
    pub leads: HashMap<i64, LeadRecord>,
    /// New deliveries, per lead.
    pub deliveries: Vec<(i64, Delivery)>,
    pub deltas: FigureDeltas,
    pub runs: Vec<FollowupProcessed>,
    /// Old and new members of every touched lead.
    pub users: BTreeSet<String>,
    /// Whether anything the organisation scope shows (figures or runs) may have changed.
    pub org: bool,
}

/// Whether `change` was written by the trigger of an earlier version (no `contactable`) for a
/// lead whose state comes from a snapshot of the CRM: every snapshot is taken after the current
/// trigger was installed, so such an event is older than the snapshot, and its collaborators
/// (from a column nothing writes) and its missing consent would undo the snapshot's facts.
fn predates_snapshot(change: &followup_contract::LeadChanged, record: &LeadRecord) -> bool {
    change.contactable.is_none() && record.state.sequence == 0 && record.state.is_known()
}

/// Adds a delivered or finally failed follow-up to the lead's record, at event time `at`: the
/// transition of the figures, the users it concerns, the row to write. A failure of the same
/// kind gives way (an operator cleared it for a retry, and the follow-up was sent after all).
fn add_delivery(
    plan: &mut BatchPlan,
    record: &mut LeadRecord,
    lead_id: i64,
    delivery: Delivery,
    at: DateTime<Utc>,
    tz: Tz,
) {
    let mut after = record.clone();
    after.deliveries.retain(|d| d.kind != delivery.kind);
    after.deliveries.push(delivery.clone());
    plan.deltas.record_transition(record, &after, at, tz);
    plan.users.extend(after.members());
    // The lead's row is written again when its list flags change (in the same statement as its
    // change when both are in this batch); a lead known only from deliveries gets a placeholder
    // row, so the delivery is found when the state arrives.
    if !record.state.is_known() || record.list_flags() != after.list_flags() {
        plan.leads.insert(lead_id, after.clone());
    }
    plan.deliveries.push((lead_id, delivery));
    *record = after;
    plan.org = true;
}

/// Applies `events` (already deduplicated against the inbox, in stream order) to `records`
/// (the stored records of the leads they name; missing ones are unknown) and returns each
/// event's outcome and the plan.
pub(crate) fn fold_events(
    events: &[(DateTime<Utc>, &LeadEvent)],
    mut records: HashMap<i64, LeadRecord>,
    tz: Tz,
) -> (Vec<Outcome>, BatchPlan) {
    let mut plan = BatchPlan::default();
    let mut outcomes = Vec::with_capacity(events.len());
    for (at, event) in events {
        let outcome = match event {
            LeadEvent::Changed(change) => {
                let record = records
                    .entry(change.lead_id)
                    .or_insert_with(LeadRecord::unknown);
                if change.sequence <= record.state.sequence || predates_snapshot(change, record) {
                    Outcome::Stale
                } else {
                    let after = LeadRecord {
                        state: LeadState::from_change(change, *at),
                        deliveries: record.deliveries.clone(),
                    };
                    plan.deltas.record_transition(record, &after, *at, tz);
                    plan.users.extend(record.members());
                    plan.users.extend(after.members());
                    plan.leads.insert(change.lead_id, after.clone());
                    *record = after;
                    plan.org = true;
                    Outcome::Applied
                }
            }
            LeadEvent::Sent(sent) => {
                let record = records
                    .entry(sent.lead_id)
                    .or_insert_with(LeadRecord::unknown);
                if record
                    .deliveries
                    .iter()
                    .any(|d| d.kind == sent.kind && !d.failed)
                {
                    Outcome::Duplicate
                } else {
                    let delivery = Delivery {
                        kind: sent.kind,
                        sent_at: sent.sent_at,
                        run_id: sent.run_id.clone(),
                        failed: false,
                        reason: None,
                    };
                    add_delivery(&mut plan, record, sent.lead_id, delivery, *at, tz);
                    Outcome::Applied
                }
            }
            // A final failure: that follow-up will never go out, so the lead is no longer
            // pending for it (nor for T+7 when its T+3 failed).
            LeadEvent::Failed(failed) => {
                let record = records
                    .entry(failed.lead_id)
                    .or_insert_with(LeadRecord::unknown);
                if record.deliveries.iter().any(|d| d.kind == failed.kind) {
                    Outcome::Duplicate
                } else {
                    let delivery = Delivery {
                        kind: failed.kind,
                        sent_at: *at,
                        run_id: String::new(),
                        failed: true,
                        reason: Some(failed.reason.clone()),
                    };
                    add_delivery(&mut plan, record, failed.lead_id, delivery, *at, tz);
                    Outcome::Applied
                }
            }
            LeadEvent::Processed(run) => {
                plan.runs.push(run.clone());
                plan.org = true;
                Outcome::Applied
            }
        };
        outcomes.push(outcome);
    }
    // One row per lead and kind for the set-based upsert (a failure and the send that replaced
    // it in the same batch: the send): Postgres refuses to update a row twice in one statement.
    let mut seen = std::collections::HashSet::new();
    let mut deliveries: Vec<_> = plan.deliveries.drain(..).rev().collect();
    deliveries.retain(|(lead, d)| seen.insert((*lead, d.kind)));
    deliveries.reverse();
    plan.deliveries = deliveries;
    (outcomes, plan)
}

#[cfg(test)]
#[path = "fold_tests.rs"]
mod tests;
