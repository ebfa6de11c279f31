use super::*;
use chrono::TimeZone;
use followup_contract::{FollowupKind, FollowupSent, LeadChanged};

fn tz() -> Tz {
    "Europe/Berlin".parse().unwrap()
}

fn at(h: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 29, h, 0, 0).unwrap()
}

fn change(seq: i64, status: &str, owner: &str, collaborators: &[&str]) -> LeadEvent {
    LeadEvent::Changed(LeadChanged {
        lead_id: 1,
        owner_user_id: Some(owner.into()),
        collaborator_user_ids: collaborators.iter().map(|c| c.to_string()).collect(),
        status: status.into(),
        registered_at: at(0),
        clock_stopped_at: None,
        t3_sent: false,
        t7_sent: false,
        contactable: Some(true),
        deleted: status == "DELETED",
        sequence: seq,
    })
}

fn sent(kind: FollowupKind, h: u32) -> LeadEvent {
    LeadEvent::Sent(FollowupSent {
        lead_id: 1,
        owner_user_id: Some("u1".into()),
        kind,
        sent_at: at(h),
        run_id: "r1".into(),
    })
}

fn fold(events: &[LeadEvent]) -> (Vec<Outcome>, BatchPlan) {
    let timed: Vec<_> = events
        .iter()
        .enumerate()
        .map(|(i, e)| (at(i as u32 + 1), e))
        .collect();
    fold_events(&timed, HashMap::new(), tz())
}

#[test]
fn a_lower_sequence_after_a_higher_one_is_stale() {
    let (outcomes, plan) = fold(&[
        change(5, "ACTIVE", "u1", &[]),
        change(3, "CONVERTED", "u1", &[]),
    ]);
    assert_eq!(outcomes, [Outcome::Applied, Outcome::Stale]);
    assert_eq!(plan.leads[&1].state.status, "ACTIVE");
    assert_eq!(plan.deltas.totals["org"].pending_t3, 1);
    assert_eq!(plan.deltas.totals["user:u1"].pending_t3, 1);
}

#[test]
fn members_share_the_figures_and_a_move_shifts_them() {
    let (_, plan) = fold(&[
        change(1, "ACTIVE", "u1", &["u2"]),
        change(2, "ACTIVE", "u3", &[]),
    ]);
    let totals = &plan.deltas.totals;
    assert_eq!(totals["user:u1"].pending_t3, 0);
    assert_eq!(totals["user:u2"].pending_t3, 0);
    assert_eq!(totals["user:u3"].pending_t3, 1);
    assert_eq!(totals["org"].pending_t3, 1);
    assert_eq!(plan.users.iter().collect::<Vec<_>>(), ["u1", "u2", "u3"]);
}

#[test]
fn deleted_leads_count_nowhere_and_take_their_deliveries_along() {
    let (_, plan) = fold(&[
        change(1, "ACTIVE", "u1", &[]),
        sent(FollowupKind::T3, 2),
        change(2, "DELETED", "u1", &[]),
    ]);
    for totals in plan.deltas.totals.values() {
        assert_eq!(*totals, Default::default());
    }
    assert!(
        plan.deltas
            .days
            .values()
            .flat_map(|d| d.values())
            .all(|d| d.sent == 0)
    );
}

#[test]
fn a_second_delivery_of_a_kind_is_a_duplicate_and_conversion_needs_one() {
    let (outcomes, plan) = fold(&[
        change(1, "ACTIVE", "u1", &[]),
        sent(FollowupKind::T3, 2),
        sent(FollowupKind::T3, 3),
        change(2, "CONVERTED", "u1", &[]),
    ]);
    assert_eq!(outcomes[2], Outcome::Duplicate);
    let org = plan.deltas.totals["org"];
    assert_eq!((org.followed, org.converted, org.pending_t3), (1, 1, 0));
    let day = chrono::NaiveDate::from_ymd_opt(2026, 11, 29).unwrap();
    assert_eq!(plan.deltas.days["org"][&day].sent, 1);
}

#[test]
fn a_delivery_before_the_lead_state_counts_once_the_state_arrives() {
    let (_, plan) = fold(&[sent(FollowupKind::T3, 2), change(1, "ACTIVE", "u1", &[])]);
    assert_eq!(plan.deltas.totals["user:u1"].followed, 1);
    assert_eq!(plan.deliveries.len(), 1);
}

fn failed(kind: FollowupKind) -> LeadEvent {
    LeadEvent::Failed(followup_contract::FollowupFailed {
        lead_id: 1,
        owner_user_id: Some("u1".into()),
        kind,
        reason: "550 5.1.1 <address>: unknown".into(),
        attempts: 1,
    })
}

fn change_t3_sent(seq: i64, contactable: bool) -> LeadEvent {
    let LeadEvent::Changed(mut c) = change(seq, "ACTIVE", "u1", &[]) else {
        unreachable!()
    };
    c.t3_sent = true;
    c.contactable = Some(contactable);
    LeadEvent::Changed(c)
}

#[test]
fn a_lead_whose_follow_up_finally_failed_is_not_pending_for_it() {
    let (outcomes, plan) = fold(&[
        change(1, "ACTIVE", "u1", &[]),
        failed(FollowupKind::T3),
        failed(FollowupKind::T3),
    ]);
    assert_eq!(outcomes[1..], [Outcome::Applied, Outcome::Duplicate]);
    assert_eq!(plan.deltas.totals["org"].pending_t3, 0);
    assert_eq!(
        plan.deltas.totals["org"].followed, 0,
        "a failure is no follow-up"
    );
    // A T+3 sent after all (an operator cleared the failure) replaces it.
    let (outcomes, plan) = fold(&[
        change(1, "ACTIVE", "u1", &[]),
        failed(FollowupKind::T3),
        sent(FollowupKind::T3, 3),
        change_t3_sent(2, true),
    ]);
    assert_eq!(outcomes[2], Outcome::Applied);
    let org = plan.deltas.totals["org"];
    assert_eq!((org.pending_t3, org.pending_t7, org.followed), (0, 1, 1));
}

#[test]
fn a_lead_that_is_not_contactable_is_not_pending() {
    let (_, plan) = fold(&[change_t3_sent(1, true), change_t3_sent(2, false)]);
    assert_eq!(plan.deltas.totals["org"].pending_t7, 0);
    let (_, plan) = fold(&[change_t3_sent(1, false), change_t3_sent(2, true)]);
    assert_eq!(plan.deltas.totals["org"].pending_t7, 1);
}

#[test]
fn a_failure_and_the_send_that_replaced_it_in_one_batch_write_one_row() {
    let (_, plan) = fold(&[
        change(1, "ACTIVE", "u1", &[]),
        failed(FollowupKind::T3),
        sent(FollowupKind::T3, 3),
    ]);
    assert_eq!(plan.deliveries.len(), 1);
    assert!(!plan.deliveries[0].1.failed);
}

#[test]
fn a_change_from_the_earlier_trigger_does_not_undo_a_snapshot() {
    let mut records = HashMap::new();
    let mut snapshot = LeadChanged {
        lead_id: 1,
        owner_user_id: Some("u1".into()),
        collaborator_user_ids: vec!["u2".into()],
        status: "ACTIVE".into(),
        registered_at: at(0),
        clock_stopped_at: None,
        t3_sent: false,
        t7_sent: false,
        contactable: Some(false),
        deleted: false,
        sequence: 0,
    };
    records.insert(
        1,
        crate::model::LeadRecord {
            state: crate::model::LeadState::from_change(&snapshot, at(5)),
            deliveries: Vec::new(),
        },
    );
    // The earlier trigger: no contactable, collaborators from the legacy column.
    snapshot.contactable = None;
    snapshot.collaborator_user_ids = Vec::new();
    snapshot.sequence = 7;
    let old = LeadEvent::Changed(snapshot.clone());
    let (outcomes, _) = fold_events(&[(at(6), &old)], records.clone(), tz());
    assert_eq!(outcomes, [Outcome::Stale]);
    // The current trigger's event applies over the snapshot.
    snapshot.contactable = Some(true);
    let new = LeadEvent::Changed(snapshot);
    let (outcomes, plan) = fold_events(&[(at(6), &new)], records, tz());
    assert_eq!(outcomes, [Outcome::Applied]);
    assert_eq!(plan.deltas.totals["org"].pending_t3, 1);
}
