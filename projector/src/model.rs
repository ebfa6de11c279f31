//! The pure core of the projection: a lead's follow-up state, what it contributes to the figures
//! of each scope, and the deltas a state transition makes. No I/O, so the rules are unit-tested
//! here and shared by `serve`, `rebuild` and dead-letter replay.

use std::collections::BTreeMap;

use chrono::{DateTime, NaiveDate, Utc};
use chrono_tz::Tz;
use followup_contract::{FollowupKind, LeadChanged};
use followup_readmodel::{Scope, lead_members, local_date};

/// A lead as the projection knows it (`projection_leads`).
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct LeadState {
    /// Sequence of the applied `lead.changed.v1`; 0 while the lead is known only from a delivery
    /// or from the snapshot of the CRM (any event of it then applies).
    pub sequence: i64,
    pub owner_user_id: Option<String>,
    pub collaborator_user_ids: Vec<String>,
    pub status: String,
    pub registered_at: Option<DateTime<Utc>>,
    pub clock_stopped_at: Option<DateTime<Utc>>,
    pub t3_sent: bool,
    pub t7_sent: bool,
    /// The contactable rule at the time of the change: a lead that will never be mailed is not
    /// pending.
    pub contactable: bool,
    pub deleted: bool,
    pub changed_at: Option<DateTime<Utc>>,
}

impl LeadState {
    /// A lead seen only through a `sent` event: it counts nowhere until its state arrives
    /// (`changed_at` is None).
    pub fn unknown() -> LeadState {
        LeadState {
            sequence: 0,
            owner_user_id: None,
            collaborator_user_ids: Vec::new(),
            status: String::new(),
            registered_at: None,
            clock_stopped_at: None,
            t3_sent: false,
            t7_sent: false,
            contactable: true,
            deleted: false,
            changed_at: None,
        }
    }

    /// The state a `lead.changed.v1` describes, applied at event time `at`.
    pub fn from_change(change: &LeadChanged, at: DateTime<Utc>) -> LeadState {
        LeadState {
            sequence: change.sequence,
            owner_user_id: change.owner_user_id.clone(),
            collaborator_user_ids: change.collaborator_user_ids.clone(),
            status: change.status.clone(),
            registered_at: Some(change.registered_at),
            clock_stopped_at: change.clock_stopped_at,
            t3_sent: change.t3_sent,
            t7_sent: change.t7_sent,
            contactable: change.contactable.unwrap_or(true),
            deleted: change.deleted || change.status == "DELETED",
            changed_at: Some(at),
        }
    }

    /// Whether the lead's state is known (from an event or the snapshot), not just its deliveries.
    pub fn is_known(&self) -> bool {
        self.changed_at.is_some()
    }

    fn counts(&self) -> bool {
        self.is_known() && !self.deleted
    }

    /// ACTIVE, clock running and contactable: a follow-up may still go out.
    fn clock_running_active(&self) -> bool {
        self.status == "ACTIVE" && self.clock_stopped_at.is_none() && self.contactable
    }
}

/// One delivered follow-up (`projection_deliveries`), or one that finally failed
/// (`lead.followup.failed.v1`; `failed` is set, `sent_at` is when it failed).
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Delivery {
    pub kind: FollowupKind,
    pub sent_at: DateTime<Utc>,
    pub run_id: String,
    pub failed: bool,
    /// Why it finally failed (the `failed` event's reason); `None` for sent ones.
    pub reason: Option<String>,
}

/// A lead with its deliveries: everything its contribution depends on.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct LeadRecord {
    pub state: LeadState,
    pub deliveries: Vec<Delivery>,
}

impl LeadRecord {
    pub fn unknown() -> LeadRecord {
        LeadRecord {
            state: LeadState::unknown(),
            deliveries: Vec::new(),
        }
    }

    /// Follow-ups that reached the lead.
    fn sent(&self) -> impl Iterator<Item = &Delivery> {
        self.deliveries.iter().filter(|d| !d.failed)
    }

    /// Whether the follow-up of `kind` finally failed (and was not sent after all, as it is when
    /// an operator removes the failure record for a retry).
    pub fn failed(&self, kind: FollowupKind) -> bool {
        self.deliveries.iter().any(|d| d.kind == kind && d.failed)
            && !self.sent().any(|d| d.kind == kind)
    }

    /// The lead row's list flags (`projection_leads.failed`, `.followed`, copied to
    /// `projection_collaborations`): whether a follow-up finally failed, whether one was sent.
    pub fn list_flags(&self) -> (bool, bool) {
        (
            self.failed(FollowupKind::T3) || self.failed(FollowupKind::T7),
            self.sent().next().is_some(),
        )
    }

    /// Pending T+3: ACTIVE, clock running, contactable, T+3 not sent and not finally failed.
    fn pending_t3(&self) -> bool {
        self.state.clock_running_active() && !self.state.t3_sent && !self.failed(FollowupKind::T3)
    }

    /// Pending T+7: as T+3 with T+3 sent, T+7 not sent; a lead whose T+3 or T+7 finally failed
    /// will never get it.
    fn pending_t7(&self) -> bool {
        self.state.clock_running_active()
            && self.state.t3_sent
            && !self.state.t7_sent
            && !self.failed(FollowupKind::T3)
            && !self.failed(FollowupKind::T7)
    }

    /// The users whose figures include this lead (none when it counts nowhere).
    pub fn members(&self) -> Vec<String> {
        if !self.state.counts() {
            return Vec::new();
        }
        lead_members(
            self.state.owner_user_id.as_deref(),
            &self.state.collaborator_user_ids,
        )
    }

    fn scopes(&self) -> Vec<String> {
        if !self.state.counts() {
            return Vec::new();
        }
        let users = self.members().into_iter().map(Scope::User);
        std::iter::once(Scope::Org)
            .chain(users)
            .map(|s| s.key())
            .collect()
    }
}

/// Changes of the current figures of one scope.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct TotalsDelta {
    pub pending_t3: i64,
    pub pending_t7: i64,
    pub followed: i64,
    pub converted: i64,
}

/// Changes of one scope's counters for one local day.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct DayDelta {
    /// Follow-ups delivered that day (`t3_sent + t7_sent`, what "sent today" reads).
    pub sent: i64,
    pub t3_net: i64,
    pub t7_net: i64,
    pub t3_sent: i64,
    pub t7_sent: i64,
    /// Follow-ups that finally failed that day.
    pub failed: i64,
    /// Followed-up leads that became CONVERTED that day (negative: a conversion undone), as
    /// recorded when it happened: it stays with the scopes the lead had then.
    pub converted: i64,
}

/// Accumulated deltas of a batch. An entry exists for every key a transition touched, even when
/// it sums to zero, so the set of stored rows depends on the events only, never on how they
/// were cut into batches (a rebuild then yields exactly the same rows).
#[derive(Debug, Default, PartialEq)]
pub(crate) struct FigureDeltas {
    pub totals: BTreeMap<String, TotalsDelta>,
    /// Per scope, per local day.
    pub days: BTreeMap<String, BTreeMap<NaiveDate, DayDelta>>,
}

/// The value under `key`, inserted as default first if missing; allocates the key only then
/// (this runs for every scope of every transition).
fn slot<'a, V: Default>(map: &'a mut BTreeMap<String, V>, key: &str) -> &'a mut V {
    if !map.contains_key(key) {
        map.insert(key.to_owned(), V::default());
    }
    map.get_mut(key).expect("inserted above")
}

impl FigureDeltas {
    /// Records the lead's move from `before` to `after`, which happened at `at`: its old
    /// contribution leaves its old scopes and its new one enters the new scopes. Pending changes
    /// land on the local day of `at` (for trends); sent counts stay on their delivery days.
    pub fn record_transition(
        &mut self,
        before: &LeadRecord,
        after: &LeadRecord,
        at: DateTime<Utc>,
        tz: Tz,
    ) {
        let day = local_date(at, tz);
        for (record, sign) in [(before, -1), (after, 1)] {
            let state = &record.state;
            let followed = record.sent().next().is_some();
            let totals = TotalsDelta {
                pending_t3: sign * i64::from(record.pending_t3()),
                pending_t7: sign * i64::from(record.pending_t7()),
                followed: sign * i64::from(followed),
                converted: sign * i64::from(followed && state.status == "CONVERTED"),
            };
            // Sent and failed counts are facts of the deliveries: they move with the lead's
            // membership (as `sent` always did), so they can be rebuilt from the CRM.
            let delivery_days: Vec<(NaiveDate, &Delivery)> = record
                .deliveries
                .iter()
                .map(|d| (local_date(d.sent_at, tz), d))
                .collect();
            for scope in record.scopes() {
                let entry = slot(&mut self.totals, &scope);
                entry.pending_t3 += totals.pending_t3;
                entry.pending_t7 += totals.pending_t7;
                entry.followed += totals.followed;
                entry.converted += totals.converted;
                let days = slot(&mut self.days, &scope);
                let net = days.entry(day).or_default();
                net.t3_net += totals.pending_t3;
                net.t7_net += totals.pending_t7;
                for (delivery_day, delivery) in &delivery_days {
                    let entry = days.entry(*delivery_day).or_default();
                    match (delivery.failed, delivery.kind) {
                        (true, _) => entry.failed += sign,
                        (false, FollowupKind::T3) => {
                            entry.sent += sign;
                            entry.t3_sent += sign;
                        }
                        (false, FollowupKind::T7) => {
                            entry.sent += sign;
                            entry.t7_sent += sign;
                        }
                    }
                }
            }
        }
        let change = conversion_change(before, after);
        if change != 0 {
            for scope in after.scopes() {
                slot(&mut self.days, &scope)
                    .entry(day)
                    .or_default()
                    .converted += change;
            }
        }
    }
}

/// +1 when this transition converts a followed-up lead, -1 when it undoes a conversion, else 0.
/// Only for a lead that was known before and still counts: a snapshot's first sight of a lead
/// converted long ago has no day, and a deleted lead is not an undone conversion.
fn conversion_change(before: &LeadRecord, after: &LeadRecord) -> i64 {
    let converted = |r: &LeadRecord| r.sent().next().is_some() && r.state.status == "CONVERTED";
    if !before.state.is_known() || !after.state.counts() {
        return 0;
    }
    i64::from(converted(after)) - i64::from(converted(before))
}

#[cfg(test)]
mod day_tests {
    use chrono::TimeZone;

    use super::*;

    fn record(status: &str, sent: &[(FollowupKind, bool)], at: DateTime<Utc>) -> LeadRecord {
        let mut state = LeadState::unknown();
        state.owner_user_id = Some("u1".into());
        state.status = status.into();
        state.registered_at = Some(at);
        state.changed_at = Some(at);
        LeadRecord {
            state,
            deliveries: sent
                .iter()
                .map(|(kind, failed)| Delivery {
                    kind: *kind,
                    sent_at: at,
                    run_id: "r".into(),
                    failed: *failed,
                    reason: None,
                })
                .collect(),
        }
    }

    #[test]
    fn days_count_sent_by_kind_failures_and_conversions_as_they_happen() {
        let tz = chrono_tz::Europe::Berlin;
        let at = Utc.with_ymd_and_hms(2026, 11, 30, 10, 0, 0).unwrap();
        let day = local_date(at, tz);
        let followed = record("ACTIVE", &[(FollowupKind::T3, false)], at);
        let converted = record("CONVERTED", &[(FollowupKind::T3, false)], at);
        let mut deltas = FigureDeltas::default();
        deltas.record_transition(&followed, &converted, at, tz);
        let org = deltas.days["org"][&day];
        // The T+3 moves out and back in: net zero; the conversion counts once.
        assert_eq!((org.t3_sent, org.sent, org.converted), (0, 0, 1));
        assert_eq!(deltas.days["user:u1"][&day].converted, 1);

        let mut deltas = FigureDeltas::default();
        deltas.record_transition(&converted, &followed, at, tz);
        assert_eq!(
            deltas.days["org"][&day].converted, -1,
            "a conversion undone"
        );

        // First sight (snapshot) of a converted lead: no conversion day.
        let mut deltas = FigureDeltas::default();
        deltas.record_transition(&LeadRecord::unknown(), &converted, at, tz);
        assert_eq!(deltas.days["org"][&day].converted, 0);
        assert_eq!(deltas.days["org"][&day].t3_sent, 1);

        // Deleted: not an undone conversion.
        let mut gone = converted.clone();
        gone.state.deleted = true;
        let mut deltas = FigureDeltas::default();
        deltas.record_transition(&converted, &gone, at, tz);
        assert_eq!(deltas.days["org"][&day].converted, 0);

        let failed = record("ACTIVE", &[(FollowupKind::T3, true)], at);
        let mut deltas = FigureDeltas::default();
        deltas.record_transition(&LeadRecord::unknown(), &failed, at, tz);
        let org = deltas.days["org"][&day];
        assert_eq!((org.failed, org.sent, org.t3_sent), (1, 0, 0));
        let t7 = record(
            "ACTIVE",
            &[(FollowupKind::T3, false), (FollowupKind::T7, false)],
            at,
        );
        let mut deltas = FigureDeltas::default();
        deltas.record_transition(&followed, &t7, at, tz);
        let org = deltas.days["org"][&day];
        assert_eq!((org.t3_sent, org.t7_sent, org.sent), (0, 1, 1));
    }
}
