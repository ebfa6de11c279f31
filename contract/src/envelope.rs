//! The CloudEvents 1.0 envelope in structured JSON mode, built by the CloudEvents SDK
//! (`cloudevents-sdk`). This crate fixes what every event of the contract shares (`specversion`
//! 1.0, `source`, `datacontenttype` JSON, the `idempotencykey` extension); a writer supplies the
//! [`EventParts`] that vary. The outbox holds exactly those parts, and the relay assembles the
//! CloudEvent from them when it publishes, so there is one definition of the envelope.

use chrono::{DateTime, SubsecRound, Utc};
use cloudevents::{EventBuilder, EventBuilderV10};
use uuid::Uuid;

use crate::EVENT_SOURCE;
use crate::events::Payload;

/// Name of the CloudEvents extension attribute holding the idempotency key (equal to the
/// `Nats-Msg-Id` header).
pub const IDEMPOTENCY_KEY_EXTENSION: &str = "idempotencykey";
/// `datacontenttype` of every event.
pub const DATA_CONTENT_TYPE: &str = "application/json";

/// The four event types of the contract.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EventType {
    Processed,
    Sent,
    Failed,
    Changed,
}

impl EventType {
    /// Every type, for metrics and catalogues.
    pub const ALL: [EventType; 4] = [
        EventType::Processed,
        EventType::Sent,
        EventType::Failed,
        EventType::Changed,
    ];

    /// The CloudEvents `type`, e.g. `lead.followup.sent.v1`.
    pub fn as_str(self) -> &'static str {
        match self {
            EventType::Processed => "lead.followup.processed.v1",
            EventType::Sent => "lead.followup.sent.v1",
            EventType::Failed => "lead.followup.failed.v1",
            EventType::Changed => "lead.changed.v1",
        }
    }

    /// The NATS subject: `freshplan.` + type without its version suffix.
    pub fn subject(self) -> &'static str {
        match self {
            EventType::Processed => "freshplan.lead.followup.processed",
            EventType::Sent => "freshplan.lead.followup.sent",
            EventType::Failed => "freshplan.lead.followup.failed",
            EventType::Changed => "freshplan.lead.changed",
        }
    }

    /// Parses a CloudEvents `type`.
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|t| t.as_str() == s)
    }
}

/// What varies between events: an outbox row's columns. [`EventParts::into_event`] turns them
/// into the CloudEvent.
#[derive(Debug, Clone, PartialEq)]
pub struct EventParts {
    /// CloudEvents `id`.
    pub id: Uuid,
    pub event_type: EventType,
    /// CloudEvents `subject`: the lead id, where the event concerns one lead.
    pub subject: Option<String>,
    pub idempotency_key: String,
    /// CloudEvents `time`: when the change happened.
    pub time: DateTime<Utc>,
    /// The payload, one of the types in [`crate::events`].
    pub data: serde_json::Value,
}

impl EventParts {
    /// Parts with a fresh id and a typed payload, whose type sets the event type. The id is
    /// time-ordered (UUID v7), like the ids the outbox gives its rows (migration
    /// `20261206000001`): the projector's inbox is keyed by it.
    pub fn new<T: Payload>(
        subject: Option<String>,
        idempotency_key: String,
        time: DateTime<Utc>,
        data: &T,
    ) -> Self {
        EventParts {
            id: Uuid::now_v7(),
            event_type: T::TYPE,
            subject,
            idempotency_key,
            time,
            // Derived `Serialize` of structs with string keys and no custom code cannot fail.
            data: serde_json::to_value(data).expect("contract payloads serialise to JSON"),
        }
    }

    /// The CloudEvent, assembled by the SDK's `EventBuilderV10`.
    pub fn into_event(self) -> cloudevents::Event {
        let mut builder = EventBuilderV10::new()
            .id(self.id.to_string())
            .source(EVENT_SOURCE)
            .ty(self.event_type.as_str())
            // PostgreSQL keeps microseconds: an event's time equals the stored one it came from.
            .time(self.time.trunc_subsecs(6))
            .extension(IDEMPOTENCY_KEY_EXTENSION, self.idempotency_key)
            .data(DATA_CONTENT_TYPE, self.data);
        if let Some(subject) = self.subject {
            builder = builder.subject(subject);
        }
        builder
            .build()
            // The builder fails only on a missing id, type or source, or an empty source; all
            // three are always set above, the source to a constant.
            .expect("id, type and source are set")
    }

    /// The structured-mode JSON body of the event (the message payload on the stream).
    pub fn encode(self) -> Vec<u8> {
        encode_event(&self.into_event())
    }
}

/// Serialises an event in structured JSON mode with the SDK's serializer.
pub fn encode_event(event: &cloudevents::Event) -> Vec<u8> {
    // Serialising attributes and a JSON value into a Vec cannot fail (no I/O, string keys).
    serde_json::to_vec(event).expect("a CloudEvent serialises to JSON")
}
