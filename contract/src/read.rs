//! Reading an event: the CloudEvents SDK parses the structured JSON, and this contract's checks
//! come on top — spec version 1.0 only, a UUID `id`, a known `type`, `time` and the
//! `idempotencykey` extension present, JSON `data` of the type's shape, size and field bounds.
//! What fails them is not an event of the contract; the reason names the offending part, as an
//! operator reads it in the dead-letter table.

use chrono::{DateTime, Utc};
use cloudevents::event::{AttributesReader, Data, ExtensionValue};
use uuid::Uuid;

use crate::SPEC_VERSION;
use crate::envelope::{EventType, IDEMPOTENCY_KEY_EXTENSION};
use crate::events::{FollowupFailed, FollowupProcessed, FollowupSent, LeadChanged, LeadEvent};

/// Why a message is not a valid event of this contract.
#[derive(Debug, thiserror::Error)]
pub enum ContractError {
    #[error("not a CloudEvents JSON object: {0}")]
    NotCloudEvent(#[source] serde_json::Error),
    #[error("unsupported specversion {0:?} (expected \"1.0\")")]
    SpecVersion(String),
    #[error("unknown event type {0:?}")]
    UnknownType(String),
    #[error("missing attribute {0}")]
    MissingAttribute(&'static str),
    #[error("invalid attribute {name}: {reason}")]
    InvalidAttribute { name: &'static str, reason: String },
    #[error("invalid data for {event_type}: {source}")]
    InvalidData {
        event_type: &'static str,
        #[source]
        source: serde_json::Error,
    },
    #[error("data of {event_type} is not JSON (datacontenttype must be application/json)")]
    DataNotJson { event_type: &'static str },
    #[error("event too large: {bytes} bytes, at most {max}", max = crate::limits::MAX_EVENT_BYTES)]
    TooLarge { bytes: usize },
    #[error("field {field} too long: {chars} characters, at most {max}", max = crate::limits::MAX_FIELD_CHARS)]
    FieldTooLong { field: &'static str, chars: usize },
}

/// An event read and checked: the SDK's event (its `data` moved into `payload`) and the
/// attributes the contract requires, already validated.
#[derive(Debug, Clone)]
pub struct ReceivedEvent {
    /// The event as the SDK read it, without its data.
    pub event: cloudevents::Event,
    pub id: Uuid,
    pub event_type: EventType,
    pub time: DateTime<Utc>,
    pub idempotency_key: String,
    pub payload: LeadEvent,
}

/// Parses and validates a structured-mode message body.
pub fn parse_event(body: &[u8]) -> Result<ReceivedEvent, ContractError> {
    crate::limits::check_size(body)?;
    // Straight from the bytes into the SDK's event: going through a `serde_json::Value` first
    // built every event twice (a third of the projector's parse time).
    let mut event: cloudevents::Event = match serde_json::from_slice(body) {
        Ok(event) => event,
        Err(err) => {
            return Err(foreign_spec_version(body).unwrap_or(ContractError::NotCloudEvent(err)));
        }
    };
    // The SDK also reads 0.3; this contract speaks 1.0 only, and an old or foreign event gets a
    // precise reason rather than a field error.
    let version = event.specversion().to_string();
    if version != SPEC_VERSION {
        return Err(ContractError::SpecVersion(version));
    }
    let event_type = EventType::parse(event.ty())
        .ok_or_else(|| ContractError::UnknownType(event.ty().into()))?;
    let id = Uuid::parse_str(event.id()).map_err(|e| ContractError::InvalidAttribute {
        name: "id",
        reason: format!("{:?} is not a UUID: {e}", event.id()),
    })?;
    let time = *event
        .time()
        .ok_or(ContractError::MissingAttribute("time"))?;
    let idempotency_key = match event.extension(IDEMPOTENCY_KEY_EXTENSION) {
        Some(ExtensionValue::String(key)) if !key.is_empty() => key.clone(),
        Some(other) => {
            return Err(ContractError::InvalidAttribute {
                name: IDEMPOTENCY_KEY_EXTENSION,
                reason: format!("expected a non-empty string, got {other:?}"),
            });
        }
        None => return Err(ContractError::MissingAttribute(IDEMPOTENCY_KEY_EXTENSION)),
    };
    let data = match event.take_data().2 {
        Some(Data::Json(data)) => data,
        Some(_) => {
            return Err(ContractError::DataNotJson {
                event_type: event_type.as_str(),
            });
        }
        None => return Err(ContractError::MissingAttribute("data")),
    };
    let payload = typed_payload(event_type, data)?;
    crate::limits::check_fields(&payload)?;
    Ok(ReceivedEvent {
        event,
        id,
        event_type,
        time,
        idempotency_key,
        payload,
    })
}

/// The reason for a body the SDK could not read, when it names a `specversion` other than ours
/// (the SDK rejects versions it does not know before looking at the rest).
fn foreign_spec_version(body: &[u8]) -> Option<ContractError> {
    let raw: serde_json::Value = serde_json::from_slice(body).ok()?;
    let version = raw.get("specversion")?.as_str()?;
    (version != SPEC_VERSION).then(|| ContractError::SpecVersion(version.to_owned()))
}

fn typed_payload(ty: EventType, data: serde_json::Value) -> Result<LeadEvent, ContractError> {
    let invalid = |source| ContractError::InvalidData {
        event_type: ty.as_str(),
        source,
    };
    Ok(match ty {
        EventType::Processed => LeadEvent::Processed(
            serde_json::from_value::<FollowupProcessed>(data).map_err(invalid)?,
        ),
        EventType::Sent => {
            LeadEvent::Sent(serde_json::from_value::<FollowupSent>(data).map_err(invalid)?)
        }
        EventType::Failed => {
            LeadEvent::Failed(serde_json::from_value::<FollowupFailed>(data).map_err(invalid)?)
        }
        EventType::Changed => {
            LeadEvent::Changed(serde_json::from_value::<LeadChanged>(data).map_err(invalid)?)
        }
    })
}
