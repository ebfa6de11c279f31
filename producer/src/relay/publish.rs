//! From outbox rows to acknowledged JetStream messages: [`OutboxRow::into_message`] builds the
//! CloudEvent and its `Nats-Msg-Id`, [`publish_rows`] publishes rows in order with a bounded
//! window of outstanding PubAcks. Marking the rows is the caller's business.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use async_nats::jetstream::message::PublishMessage;
use async_nats::jetstream::{self, context::PublishAckFuture};
use bytes::Bytes;
use chrono::{DateTime, Utc};
use followup_contract::{CONTENT_TYPE, EventParts, EventType, outbox_key};
use uuid::Uuid;

use super::RelayError;

/// One unpublished outbox row: the parts of an event (see `followup_contract::EventParts`).
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct OutboxRow {
    pub id: i64,
    pub event_id: Uuid,
    pub event_type: String,
    pub subject: Option<String>,
    /// `None` on `lead.changed.v1` rows of the trigger: [`outbox_key`] derives theirs.
    pub idempotency_key: Option<String>,
    pub data: serde_json::Value,
    pub occurred_at: DateTime<Utc>,
}

/// An outbox row as a JetStream message: subject, `Nats-Msg-Id` and CloudEvent body.
#[derive(Debug, Clone)]
pub struct OutboxMessage {
    pub id: i64,
    pub subject: &'static str,
    pub key: String,
    pub body: Bytes,
}

impl OutboxRow {
    /// Builds the row's CloudEvent with the SDK (through the contract's [`EventParts`]). A row
    /// no relay can publish (a type outside the contract, no key) is an error naming the row; it
    /// stays in the outbox, where `last_error` shows it to an operator.
    pub fn into_message(self) -> Result<OutboxMessage, RelayError> {
        let bad = |reason: String| RelayError::Publish {
            id: self.id,
            reason,
        };
        let event_type = EventType::parse(&self.event_type)
            .ok_or_else(|| bad(format!("unknown event type {:?}", self.event_type)))?;
        let key = outbox_key(
            event_type,
            self.subject.as_deref(),
            self.idempotency_key.as_deref(),
            self.id,
        )
        .ok_or_else(|| bad("no idempotency key and none derivable".to_owned()))?;
        let body = EventParts {
            id: self.event_id,
            event_type,
            subject: self.subject,
            idempotency_key: key.clone(),
            time: self.occurred_at,
            data: self.data,
        }
        .encode();
        Ok(OutboxMessage {
            id: self.id,
            subject: event_type.subject(),
            key,
            body: Bytes::from(body),
        })
    }
}

/// What JetStream acknowledged for a batch of rows, and where the time went.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Acknowledged {
    /// The rows' outbox ids, in order.
    pub ids: Vec<i64>,
    /// How many JetStream flagged as duplicates (already in the stream).
    pub duplicates: usize,
    /// Building the CloudEvents.
    pub encode: Duration,
    /// Handing the messages to the client.
    pub publish: Duration,
    /// Awaiting PubAcks (a full window, and the batch's last acks).
    pub ack_wait: Duration,
}

/// Publishes `rows` in order with at most `window` PubAcks outstanding and waits for every
/// ack. Marks nothing: the caller deletes the acknowledged rows in its transaction. Duplicates
/// are counted and the first one's key logged, so an operator can see that a relay republished
/// after a crash.
pub async fn publish_rows(
    js: &jetstream::Context,
    rows: Vec<OutboxRow>,
    window: usize,
) -> Result<Acknowledged, RelayError> {
    let mut in_flight: VecDeque<(i64, String, PublishAckFuture)> = VecDeque::with_capacity(window);
    let mut acked = Acknowledged {
        ids: Vec::with_capacity(rows.len()),
        duplicates: 0,
        encode: Duration::ZERO,
        publish: Duration::ZERO,
        ack_wait: Duration::ZERO,
    };
    let (mut encode, mut publish, mut ack_wait) = (Duration::ZERO, Duration::ZERO, Duration::ZERO);
    let mut first_duplicate = None;
    let err = |id: i64, e: &dyn std::fmt::Display| RelayError::Publish {
        id,
        reason: e.to_string(),
    };
    let mut settle = |(id, key, ack): (i64, String, jetstream::publish::PublishAck)| {
        if ack.duplicate {
            acked.duplicates += 1;
            first_duplicate.get_or_insert(key);
        }
        acked.ids.push(id);
    };
    for row in rows {
        if in_flight.len() >= window.max(1) {
            let waited = Instant::now();
            let (id, key, fut) = in_flight.pop_front().expect("window is not empty");
            settle((id, key, fut.await.map_err(|e| err(id, &e))?));
            ack_wait += waited.elapsed();
        }
        let started = Instant::now();
        let message = row.into_message()?;
        let built = PublishMessage::build()
            .payload(message.body)
            .header("Content-Type", CONTENT_TYPE)
            .message_id(&message.key);
        let encoded = Instant::now();
        encode += encoded - started;
        let fut = js
            .send_publish(message.subject, built)
            .await
            .map_err(|e| err(message.id, &e))?;
        publish += encoded.elapsed();
        in_flight.push_back((message.id, message.key, fut));
    }
    let waited = Instant::now();
    for (id, key, fut) in in_flight {
        settle((id, key, fut.await.map_err(|e| err(id, &e))?));
    }
    ack_wait += waited.elapsed();
    (acked.encode, acked.publish, acked.ack_wait) = (encode, publish, ack_wait);
    if let Some(first_key) = first_duplicate {
        tracing::info!(count = acked.duplicates, %first_key, "JetStream dropped republished events as duplicates");
    }
    Ok(acked)
}
