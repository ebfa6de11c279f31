//! Turning fetched messages into events, before any transaction. Pure CPU: `serve` parses the
//! next batch while the database writes the current one.

use std::collections::HashSet;

use bytes::Bytes;
use chrono::{DateTime, Utc};
use followup_contract::{EventType, LeadEvent, parse_event};
use uuid::Uuid;

/// A message as fetched from the stream, detached from the NATS client so it can be stored,
/// replayed and tested.
#[derive(Debug, Clone)]
pub struct InboundMessage {
    pub stream_sequence: u64,
    pub subject: String,
    /// Header names to values (the last value of a repeated header).
    pub headers: serde_json::Map<String, serde_json::Value>,
    pub body: Bytes,
    /// How often the server has delivered it (1 on first delivery).
    pub deliveries: i64,
}

/// What decides a message's outcome.
#[derive(Debug)]
pub(crate) enum Slot {
    /// Not a valid event, with the reason.
    DeadLettered(String),
    /// Index into the batch's events, or `None` for a repeat of an id earlier in the batch.
    Event(Option<usize>),
}

/// A batch of messages with their parsed events, in stream order.
#[derive(Debug)]
pub struct ParsedBatch {
    pub(crate) messages: Vec<InboundMessage>,
    /// Per message: its metric type label and its slot.
    pub(crate) slots: Vec<(&'static str, Slot)>,
    /// Distinct events: id, event time, payload.
    pub(crate) events: Vec<(Uuid, DateTime<Utc>, LeadEvent)>,
}

impl ParsedBatch {
    /// The messages of the batch.
    pub fn messages(&self) -> &[InboundMessage] {
        &self.messages
    }
}

/// Parses every message; the first of several messages with one event id carries the event.
pub fn parse_batch(messages: Vec<InboundMessage>) -> ParsedBatch {
    let mut events = Vec::with_capacity(messages.len());
    let mut seen = HashSet::with_capacity(messages.len());
    let mut slots = Vec::with_capacity(messages.len());
    for message in &messages {
        match parse_event(&message.body) {
            Ok(received) => {
                let index = seen.insert(received.id).then_some(events.len());
                if index.is_some() {
                    events.push((received.id, received.time, received.payload));
                }
                slots.push((received.event_type.as_str(), Slot::Event(index)));
            }
            Err(reason) => {
                slots.push((
                    type_label(&message.body),
                    Slot::DeadLettered(reason.to_string()),
                ));
            }
        }
    }
    ParsedBatch {
        messages,
        slots,
        events,
    }
}

/// The metric label of a message that failed to parse: its `type` when that is a contract type
/// (e.g. only its data is broken), else `unknown`, so labels stay a bounded set.
fn type_label(body: &[u8]) -> &'static str {
    serde_json::from_slice::<serde_json::Value>(body)
        .ok()
        .and_then(|v| {
            v.get("type")
                .and_then(|t| t.as_str())
                .and_then(EventType::parse)
        })
        .map_or("unknown", EventType::as_str)
}
