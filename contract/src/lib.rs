//! The public event contract of the follow-up pipeline, shared by the producer, the projector,
//! the gateway and their tests: the CloudEvents envelope (built and read by the CloudEvents SDK,
//! re-exported as [`cloudevents`] so every crate uses one version), payload types, subjects,
//! idempotency keys, the JetStream stream/consumer definitions kept in `nats/`, and the signing
//! of unsubscribe links (pure HMAC, so producer and gateway agree). This crate does no I/O;
//! other modules of the CRM may depend on it to read the stream.

mod envelope;
mod events;
#[cfg(test)]
mod golden_tests;
mod keys;
mod limits;
mod nats;
mod read;
mod unsubscribe;

pub use cloudevents;
pub use envelope::{
    DATA_CONTENT_TYPE, EventParts, EventType, IDEMPOTENCY_KEY_EXTENSION, encode_event,
};
pub use events::{
    FollowupFailed, FollowupKind, FollowupProcessed, FollowupSent, LeadChanged, LeadEvent, Payload,
};
pub use keys::{change_key, failed_key, outbox_key, run_key, sent_key};
pub use limits::{MAX_EVENT_BYTES, MAX_FIELD_CHARS};
pub use nats::{
    COCKPIT_CHANGED_SUBJECT, CONTENT_TYPE, DLQ_COLLECTOR_CONSUMER, DLQ_HEADER_DELIVERIES,
    DLQ_HEADER_DURABLE, DLQ_HEADER_ERROR, DLQ_HEADER_ORIGINAL_ID, DLQ_HEADER_SEQUENCE,
    DLQ_HEADER_SUBJECT, DLQ_STREAM_DEFINITION, DLQ_STREAM_NAME, MAX_DELIVERIES_ADVISORIES,
    PROJECTOR_CONSUMER, PROJECTOR_CONSUMER_DEFINITION, STREAM_DEFINITION, STREAM_NAME,
    STREAM_SUBJECTS, dlq_error_subject, dlq_letter_subject, dlq_replay_subject,
};
pub use read::{ContractError, ReceivedEvent, parse_event};
pub use unsubscribe::{
    UNSUBSCRIBE_PATH, UnsubscribeError, UnsubscribeParams, unsubscribe_signature, unsubscribe_url,
    verify_unsubscribe_signature,
};

/// CloudEvents `source` of every event this pipeline publishes.
pub const EVENT_SOURCE: &str = "freshplan.leads.followup";
/// CloudEvents spec version this contract speaks.
pub const SPEC_VERSION: &str = "1.0";
