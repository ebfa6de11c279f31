//! The CloudEvents 1.0 envelope in structured JSON mode, and its validation.

use chrono::{DateTime, FixedOffset};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::events::{FollowupFailed, FollowupProcessed, FollowupSent, LeadChanged, LeadEvent};
use crate::{EVENT_SOURCE, SPEC_VERSION};

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

/// A CloudEvents 1.0 event in structured JSON mode, generic over its `data`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CloudEvent<T = serde_json::Value> {
    pub specversion: String,
    pub id: Uuid,
    pub source: String,
    #[serde(rename = "type")]
    pub event_type: String,
    /// RFC 3339 with a numeric offset (`+00:00`, never `Z`, so every consumer sees the offset).
    #[serde(serialize_with = "serialize_rfc3339_offset")]
    pub time: DateTime<FixedOffset>,
    pub datacontenttype: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject: Option<String>,
    /// Extension attribute: the idempotency key, equal to the `Nats-Msg-Id` header.
    pub idempotencykey: String,
    pub data: T,
}

impl<T> CloudEvent<T> {
    /// An envelope with this pipeline's `source` and the JSON content type.
    pub fn new(
        id: Uuid,
        event_type: EventType,
        time: DateTime<FixedOffset>,
        subject: Option<String>,
        idempotencykey: String,
        data: T,
    ) -> Self {
        CloudEvent {
            specversion: SPEC_VERSION.to_owned(),
            id,
            source: EVENT_SOURCE.to_owned(),
            event_type: event_type.as_str().to_owned(),
            time,
            datacontenttype: "application/json".to_owned(),
            subject,
            idempotencykey,
            data,
        }
    }
}

fn serialize_rfc3339_offset<S: serde::Serializer>(
    time: &DateTime<FixedOffset>,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    serializer.serialize_str(&time.to_rfc3339_opts(chrono::SecondsFormat::Micros, false))
}

/// Why a message is not a valid event of this contract. The text is what an operator sees in the
/// dead-letter table, so it names the offending part.
#[derive(Debug, thiserror::Error)]
pub enum ContractError {
    #[error("not a CloudEvents JSON object: {0}")]
    NotCloudEvent(#[source] serde_json::Error),
    #[error("unsupported specversion {0:?} (expected \"1.0\")")]
    SpecVersion(String),
    #[error("unknown event type {0:?}")]
    UnknownType(String),
    #[error("invalid data for {event_type}: {source}")]
    InvalidData {
        event_type: &'static str,
        #[source]
        source: serde_json::Error,
    },
    #[error("event too large: {bytes} bytes, at most {max}", max = crate::limits::MAX_EVENT_BYTES)]
    TooLarge { bytes: usize },
    #[error("field {field} too long: {chars} characters, at most {max}", max = crate::limits::MAX_FIELD_CHARS)]
    FieldTooLong { field: &'static str, chars: usize },
}

/// Parses and validates a structured-mode message body into its envelope and typed payload.
pub fn parse_event(body: &[u8]) -> Result<(CloudEvent<()>, LeadEvent), ContractError> {
    crate::limits::check_size(body)?;
    // Check specversion before the full envelope so an old or foreign event gets a precise reason.
    let raw: serde_json::Value =
        serde_json::from_slice(body).map_err(ContractError::NotCloudEvent)?;
    if let Some(v) = raw.get("specversion").and_then(|v| v.as_str())
        && v != SPEC_VERSION
    {
        return Err(ContractError::SpecVersion(v.to_owned()));
    }
    let event: CloudEvent = serde_json::from_value(raw).map_err(ContractError::NotCloudEvent)?;
    if event.specversion != SPEC_VERSION {
        return Err(ContractError::SpecVersion(event.specversion));
    }
    let ty = EventType::parse(&event.event_type)
        .ok_or_else(|| ContractError::UnknownType(event.event_type.clone()))?;
    let invalid = |source| ContractError::InvalidData {
        event_type: ty.as_str(),
        source,
    };
    let data = event.data;
    let payload = match ty {
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
    };
    let envelope = CloudEvent {
        specversion: event.specversion,
        id: event.id,
        source: event.source,
        event_type: event.event_type,
        time: event.time,
        datacontenttype: event.datacontenttype,
        subject: event.subject,
        idempotencykey: event.idempotencykey,
        data: (),
    };
    crate::limits::check_fields(&payload)?;
    Ok((envelope, payload))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{FollowupKind, sent_key};
    use chrono::Utc;

    fn sent_event() -> CloudEvent<FollowupSent> {
        let now = Utc::now();
        CloudEvent::new(
            Uuid::new_v4(),
            EventType::Sent,
            now.fixed_offset(),
            Some("42".into()),
            sent_key(42, FollowupKind::T3),
            FollowupSent {
                lead_id: 42,
                owner_user_id: Some("u1".into()),
                kind: FollowupKind::T3,
                sent_at: now,
                run_id: "r".into(),
            },
        )
    }

    #[test]
    fn round_trips_a_sent_event_with_contract_attributes() {
        let json = serde_json::to_value(sent_event()).unwrap();
        assert_eq!(json["specversion"], "1.0");
        assert_eq!(json["source"], "freshplan.leads.followup");
        assert_eq!(json["type"], "lead.followup.sent.v1");
        assert_eq!(json["data"]["leadId"], 42);
        assert_eq!(json["data"]["kind"], "t3");
        assert!(json["time"].as_str().unwrap().ends_with("+00:00"));
        let (env, payload) = parse_event(json.to_string().as_bytes()).unwrap();
        assert_eq!(env.idempotencykey, "lead:42:followup:t3");
        assert!(matches!(payload, LeadEvent::Sent(s) if s.lead_id == 42));
    }

    #[test]
    fn rejects_bad_input_with_a_reason() {
        assert!(matches!(
            parse_event(b"not json"),
            Err(ContractError::NotCloudEvent(_))
        ));
        let mut json = serde_json::to_value(sent_event()).unwrap();
        json["specversion"] = "0.3".into();
        assert!(matches!(
            parse_event(json.to_string().as_bytes()),
            Err(ContractError::SpecVersion(v)) if v == "0.3"
        ));
        let mut json = serde_json::to_value(sent_event()).unwrap();
        json["type"] = "lead.exploded.v1".into();
        assert!(matches!(
            parse_event(json.to_string().as_bytes()),
            Err(ContractError::UnknownType(_))
        ));
        let mut json = serde_json::to_value(sent_event()).unwrap();
        json["data"] = serde_json::json!({"leadId": "x"});
        let err = parse_event(json.to_string().as_bytes()).unwrap_err();
        assert!(err.to_string().contains("lead.followup.sent.v1"), "{err}");
    }
}
