//! The drill-down lists: which leads are behind a figure of a scope, a page at a time (keyset
//! pagination), with what a sales manager asks next — whose, in which state, due when, what was
//! sent last, why it failed. Read from the projection; the company name is the only CRM column,
//! fetched for the page's ids by primary key ([`crate::load_lead_page`]), so no name enters the
//! stream.
//! No personal data (contact person, e-mail) is read at all.

use chrono::{DateTime, Days, NaiveDate, Utc};
use chrono_tz::Tz;

use crate::clock::local_date;

/// A figure whose leads can be listed.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    PartialOrd,
    Ord,
    serde::Deserialize,
    serde::Serialize,
    utoipa::ToSchema,
)]
#[serde(rename_all = "camelCase")]
pub enum LeadFigure {
    /// Pending T+3, in due order (oldest registration first).
    PendingT3,
    /// Pending T+7, in due order.
    PendingT7,
    /// Leads that got a follow-up since local midnight.
    SentToday,
    /// Followed-up leads that are CONVERTED (the conversion rate's numerator).
    Converted,
    /// Leads whose T+3 or T+7 finally failed (with the reason).
    Failed,
}

impl LeadFigure {
    /// All of them, in the cockpit's order.
    pub const ALL: [LeadFigure; 5] = [
        LeadFigure::PendingT3,
        LeadFigure::PendingT7,
        LeadFigure::SentToday,
        LeadFigure::Converted,
        LeadFigure::Failed,
    ];

    /// Whether the list is ordered by due date (registration) rather than by lead id.
    pub fn in_due_order(self) -> bool {
        matches!(self, LeadFigure::PendingT3 | LeadFigure::PendingT7)
    }
}

/// When the next follow-up is due, against the local day of the request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum DueClass {
    /// Due on an earlier local day and not sent yet.
    Overdue,
    Today,
    Tomorrow,
    /// After tomorrow.
    Later,
}

impl DueClass {
    /// The class of a follow-up due on `due`, seen on `today`.
    pub fn of(due: NaiveDate, today: NaiveDate) -> DueClass {
        match (due - today).num_days() {
            ..0 => DueClass::Overdue,
            0 => DueClass::Today,
            1 => DueClass::Tomorrow,
            _ => DueClass::Later,
        }
    }
}

/// The next follow-up a lead is waiting for.
#[derive(Debug, Clone, PartialEq, serde::Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct NextFollowUp {
    /// `t3` or `t7`.
    pub kind: String,
    /// The local day (`FOLLOWUP_TZ`) it becomes due: registration + 3 or + 7 days.
    pub due_date: NaiveDate,
    pub due: DueClass,
}

/// The last follow-up that reached the lead.
#[derive(Debug, Clone, PartialEq, serde::Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct LastFollowUp {
    /// `t3` or `t7`.
    pub kind: String,
    pub at: DateTime<Utc>,
}

/// A follow-up that finally failed.
#[derive(Debug, Clone, PartialEq, serde::Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct FollowUpFailure {
    /// `t3` or `t7`.
    pub kind: String,
    /// The producer's reason (no address in it); absent for failures projected before reasons
    /// were kept.
    pub reason: Option<String>,
    pub at: DateTime<Utc>,
}

/// One lead of a list.
#[derive(Debug, Clone, PartialEq, serde::Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct LeadItem {
    pub lead_id: i64,
    /// The CRM's `company_name`.
    pub company: String,
    /// `owner_user_id`.
    pub owner: Option<String>,
    /// The CRM status (`ACTIVE`, `CONVERTED`, …).
    pub status: String,
    pub registered_at: DateTime<Utc>,
    /// Absent when no follow-up will go out (both sent, failed, clock stopped, not ACTIVE, not
    /// contactable).
    pub next_follow_up: Option<NextFollowUp>,
    pub last_follow_up: Option<LastFollowUp>,
    pub failure: Option<FollowUpFailure>,
}

/// One page of a list.
#[derive(Debug, Clone, PartialEq, serde::Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct LeadPage {
    pub figure: LeadFigure,
    /// `org` or `user:<id>`.
    pub scope: String,
    pub items: Vec<LeadItem>,
    /// Pass as `after` for the next page; absent on the last page.
    pub next: Option<String>,
}

/// The earliest and the latest registration a cursor names (0001-01-01T00:00:00Z and
/// 9999-12-31T23:59:59Z; Postgres holds both): a due-order list starts before the first.
pub(crate) const FIRST_REGISTRATION: DateTime<Utc> = instant(-62_135_596_800);
pub(crate) const LAST_REGISTRATION: DateTime<Utc> = instant(253_402_300_799);

const fn instant(secs: i64) -> DateTime<Utc> {
    match DateTime::from_timestamp(secs, 0) {
        Some(at) => at,
        None => panic!("a valid instant"),
    }
}

/// Where a page starts: after this (registration, lead id) in due order, or after this lead id.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cursor {
    pub registered_at: Option<DateTime<Utc>>,
    pub lead_id: i64,
}

impl Cursor {
    /// The start of a list.
    pub const START: Cursor = Cursor {
        registered_at: None,
        lead_id: i64::MIN,
    };

    /// The opaque `next` string: `<registration µs>.<lead id>` or `<lead id>`.
    pub fn encode(&self) -> String {
        match self.registered_at {
            Some(at) => format!("{}.{}", at.timestamp_micros(), self.lead_id),
            None => self.lead_id.to_string(),
        }
    }

    /// Parses an `after` string: `<lead id>` or `<registration µs>.<lead id>`, digits only (the
    /// API's documented pattern). Either form is taken for any list — a due-order list reads a
    /// bare id as "from the start", an id-order list ignores the registration — and a
    /// registration outside the years 1–9999 is clamped, so every string of the pattern is a
    /// valid start; `None` for anything else.
    pub fn decode(text: &str, figure: LeadFigure) -> Option<Cursor> {
        let digits =
            |s: &str| !s.is_empty() && s.len() <= 18 && s.bytes().all(|b| b.is_ascii_digit());
        let (micros, id) = match text.split_once('.') {
            Some((micros, id)) if digits(micros) && digits(id) => (Some(micros), id),
            None if digits(text) => (None, text),
            _ => return None,
        };
        let lead_id = id.parse().ok()?;
        if !figure.in_due_order() {
            return Some(Cursor {
                registered_at: None,
                lead_id,
            });
        }
        let micros: i64 = micros.map_or(Some(i64::MIN), |m| m.parse().ok())?;
        let at = DateTime::from_timestamp_micros(micros).map_or(FIRST_REGISTRATION, |at| {
            at.clamp(FIRST_REGISTRATION, LAST_REGISTRATION)
        });
        Some(Cursor {
            registered_at: Some(at),
            lead_id,
        })
    }
}

/// A follow-up row of a lead, as the list query returns it.
#[derive(Debug, Clone)]
pub(crate) struct DeliveryFacts {
    pub kind: &'static str,
    pub failed: bool,
    pub at: DateTime<Utc>,
    pub reason: Option<String>,
}

/// The projection's facts of one listed lead.
#[derive(Debug, Clone)]
pub(crate) struct LeadFacts {
    pub lead_id: i64,
    pub owner: Option<String>,
    pub status: String,
    pub registered_at: DateTime<Utc>,
    /// ACTIVE, clock running, contactable.
    pub may_send: bool,
    pub t3_sent: bool,
    pub t7_sent: bool,
    pub deliveries: Vec<DeliveryFacts>,
}

impl LeadFacts {
    /// The item for this lead, named `company`, seen on `now` in `tz`.
    pub fn into_item(self, company: String, now: DateTime<Utc>, tz: Tz) -> LeadItem {
        let failed = |kind| self.deliveries.iter().any(|d| d.kind == kind && d.failed);
        let next_kind = match (self.may_send, self.t3_sent, self.t7_sent) {
            (true, false, _) if !failed("t3") => Some(("t3", 3)),
            (true, true, false) if !failed("t3") && !failed("t7") => Some(("t7", 7)),
            _ => None,
        };
        let today = local_date(now, tz);
        let next_follow_up = next_kind.and_then(|(kind, days)| {
            let due_date = local_date(self.registered_at.checked_add_days(Days::new(days))?, tz);
            Some(NextFollowUp {
                kind: kind.to_owned(),
                due_date,
                due: DueClass::of(due_date, today),
            })
        });
        let last_follow_up = self
            .deliveries
            .iter()
            .filter(|d| !d.failed)
            .max_by_key(|d| d.at)
            .map(|d| LastFollowUp {
                kind: d.kind.to_owned(),
                at: d.at,
            });
        let failure = self
            .deliveries
            .iter()
            .find(|d| d.failed)
            .map(|d| FollowUpFailure {
                kind: d.kind.to_owned(),
                reason: d.reason.clone(),
                at: d.at,
            });
        LeadItem {
            lead_id: self.lead_id,
            company,
            owner: self.owner,
            status: self.status,
            registered_at: self.registered_at,
            next_follow_up,
            last_follow_up,
            failure,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn due_classes_by_local_day() {
        let today = NaiveDate::from_ymd_opt(2026, 11, 30).unwrap();
        let day = |d| NaiveDate::from_ymd_opt(2026, 11, d).unwrap();
        assert_eq!(DueClass::of(day(28), today), DueClass::Overdue);
        assert_eq!(DueClass::of(day(30), today), DueClass::Today);
        assert_eq!(
            DueClass::of(NaiveDate::from_ymd_opt(2026, 12, 1).unwrap(), today),
            DueClass::Tomorrow
        );
        assert_eq!(
            DueClass::of(NaiveDate::from_ymd_opt(2026, 12, 2).unwrap(), today),
            DueClass::Later
        );
    }

    #[test]
    fn cursors_round_trip_and_reject_garbage() {
        let due = Cursor {
            registered_at: DateTime::from_timestamp_micros(1_764_000_000_123_456),
            lead_id: 42,
        };
        assert_eq!(
            Cursor::decode(&due.encode(), LeadFigure::PendingT3),
            Some(due)
        );
        let plain = Cursor {
            registered_at: None,
            lead_id: 7,
        };
        assert_eq!(
            Cursor::decode(&plain.encode(), LeadFigure::Failed),
            Some(plain)
        );
        for bad in [
            "",
            "x",
            "1.2.3",
            "1.x",
            "-5",
            "1.-5",
            "1234567890123456789",
            " 1",
        ] {
            assert_eq!(Cursor::decode(bad, LeadFigure::PendingT7), None, "{bad}");
        }
        // Every string of the documented pattern is a start, for every list.
        assert_eq!(
            Cursor::decode("1.5", LeadFigure::Converted),
            Some(Cursor {
                registered_at: None,
                lead_id: 5
            })
        );
        let far = Cursor::decode("999999999999999999.3", LeadFigure::PendingT3).unwrap();
        assert_eq!(
            far.registered_at.map(|at| at.timestamp()),
            Some(LAST_REGISTRATION.timestamp())
        );
        let bare = Cursor::decode("9", LeadFigure::PendingT3).unwrap();
        assert_eq!(
            bare.registered_at.map(|at| at.timestamp()),
            Some(FIRST_REGISTRATION.timestamp())
        );
    }

    #[test]
    fn next_follow_up_follows_the_pending_rule() {
        let now = DateTime::parse_from_rfc3339("2026-11-30T10:00:00Z")
            .unwrap()
            .to_utc();
        let registered = DateTime::parse_from_rfc3339("2026-11-27T23:30:00Z")
            .unwrap()
            .to_utc();
        let facts = |t3_sent, deliveries: Vec<DeliveryFacts>| LeadFacts {
            lead_id: 1,
            owner: Some("u1".into()),
            status: "ACTIVE".into(),
            registered_at: registered,
            may_send: true,
            t3_sent,
            t7_sent: false,
            deliveries,
        };
        // Registered 27 Nov 23:30 UTC = 28 Nov in Berlin: T+3 due on 1 Dec, tomorrow.
        let item = facts(false, vec![]).into_item("ACME".into(), now, chrono_tz::Europe::Berlin);
        let next = item.next_follow_up.unwrap();
        assert_eq!((next.kind.as_str(), next.due), ("t3", DueClass::Tomorrow));
        assert_eq!(next.due_date, NaiveDate::from_ymd_opt(2026, 12, 1).unwrap());
        let sent = DeliveryFacts {
            kind: "t3",
            failed: false,
            at: now,
            reason: None,
        };
        let item = facts(true, vec![sent]).into_item("ACME".into(), now, chrono_tz::UTC);
        assert_eq!(item.next_follow_up.unwrap().kind, "t7");
        assert_eq!(item.last_follow_up.unwrap().at, now);
        let failed = DeliveryFacts {
            kind: "t3",
            failed: true,
            at: now,
            reason: Some("550".into()),
        };
        let item = facts(false, vec![failed]).into_item("ACME".into(), now, chrono_tz::UTC);
        assert!(item.next_follow_up.is_none());
        assert_eq!(item.failure.unwrap().reason.as_deref(), Some("550"));
    }
}
