//! Payloads (`data`) of the four event types, serialised in camelCase as the contract shows.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::EventType;

/// A payload type of the contract, with its event type. Sealed: the four types below.
pub trait Payload: Serialize + private::Sealed {
    /// The event type whose `data` this is.
    const TYPE: EventType;
}

mod private {
    pub trait Sealed {}
}

macro_rules! payload {
    ($ty:ident, $event:ident) => {
        impl private::Sealed for $ty {}
        impl Payload for $ty {
            const TYPE: EventType = EventType::$event;
        }
    };
}
payload!(FollowupProcessed, Processed);
payload!(FollowupSent, Sent);
payload!(FollowupFailed, Failed);
payload!(LeadChanged, Changed);

/// Which follow-up: three or seven days after registration.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FollowupKind {
    /// T+3, the "sample request" mail.
    T3,
    /// T+7, the "follow-up" mail; the lead becomes REMINDER afterwards.
    T7,
}

impl FollowupKind {
    /// `t3` / `t7`, as used in keys, labels and the `kind` field.
    pub fn as_str(self) -> &'static str {
        match self {
            FollowupKind::T3 => "t3",
            FollowupKind::T7 => "t7",
        }
    }

    /// The CRM's `lead_activities.metadata.followup_type`.
    pub fn activity_type(self) -> &'static str {
        match self {
            FollowupKind::T3 => "T3_FOLLOWUP",
            FollowupKind::T7 => "T7_FOLLOWUP",
        }
    }

    /// Parses `t3` / `t7`.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "t3" => Some(FollowupKind::T3),
            "t7" => Some(FollowupKind::T7),
            _ => None,
        }
    }
}

/// `lead.followup.processed.v1`: summary of one producer run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FollowupProcessed {
    pub run_id: String,
    pub t3_count: i64,
    pub t7_count: i64,
    pub skipped_count: i64,
    pub error_count: i64,
    pub processed_at: DateTime<Utc>,
    pub duration_ms: i64,
}

/// `lead.followup.sent.v1`: one follow-up was accepted by the mailer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FollowupSent {
    pub lead_id: i64,
    pub owner_user_id: Option<String>,
    pub kind: FollowupKind,
    pub sent_at: DateTime<Utc>,
    pub run_id: String,
}

/// `lead.followup.failed.v1`: a follow-up finally failed after its retries.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FollowupFailed {
    pub lead_id: i64,
    pub owner_user_id: Option<String>,
    pub kind: FollowupKind,
    pub reason: String,
    pub attempts: i32,
}

/// `lead.changed.v1`: a follow-up-relevant column of a lead changed (written by a trigger).
/// `deleted` is true for a hard delete and for status `DELETED`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LeadChanged {
    pub lead_id: i64,
    pub owner_user_id: Option<String>,
    #[serde(default)]
    pub collaborator_user_ids: Vec<String>,
    pub status: String,
    pub registered_at: DateTime<Utc>,
    pub clock_stopped_at: Option<DateTime<Utc>>,
    pub t3_sent: bool,
    pub t7_sent: bool,
    /// The contactable rule of DESIGN.md "Domain" at the time of the change. `None`: an event
    /// written before the field was part of the contract (2026-12-02), to be read as contactable;
    /// such an event is older than any snapshot of the CRM a consumer took since.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub contactable: Option<bool>,
    pub deleted: bool,
    /// The outbox id: later changes of the same lead carry larger values.
    pub sequence: i64,
}

/// A decoded event payload, by type.
#[derive(Debug, Clone, PartialEq)]
pub enum LeadEvent {
    Processed(FollowupProcessed),
    Sent(FollowupSent),
    Failed(FollowupFailed),
    Changed(LeadChanged),
}
