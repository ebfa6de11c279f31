//! The outbox relay: publishes committed outbox rows to JetStream in outbox order and marks them
//! published once JetStream acknowledged them.
//!
//! - One relay is active at a time (an advisory lock), so order holds with several producer
//!   replicas; the others wait.
//! - A row is deleted from the outbox only after JetStream acknowledged it: the outbox holds
//!   exactly the events not yet in the stream.
//! - Every message carries `Nats-Msg-Id` = idempotency key. A relay that dies after publishing but
//!   before deleting republishes the same rows; JetStream drops them as duplicates within the
//!   stream's duplicate window, and the ack's `duplicate` flag is counted
//!   (`followup_relay_duplicates_total`) and logged with the first key.
//! - At most `window` publishes are awaiting their PubAck at any moment.
//! - When NATS is unreachable the batch's transaction rolls back, nothing is marked, and the relay
//!   retries with exponential backoff; rows are never dropped.
//!
//! The parts: `publish` turns rows into messages and publishes them with a window of PubAcks
//! ([`publish_rows`]); `pass` is one transactional pass ([`relay_pending`]) and the drain
//! `run-once` waits on ([`drain_outbox`]); `serve` is the long-running relay of `serve`
//! ([`run_relay_until_stopped`]), which overlaps publishing with marking; `outbox` holds the
//! queries both share; `backoff` the retry delay.
//!
//! The outbox holds each event's parts; the relay assembles the CloudEvent with the SDK
//! ([`OutboxRow::into_message`]), the one place the envelope is built.

mod backoff;
mod outbox;
mod pass;
mod publish;
mod serve;

pub use outbox::{count_backlog, last_outbox_id};
pub use pass::{RelayOutcome, drain_outbox, relay_pending};
pub use publish::{Acknowledged, OutboxMessage, OutboxRow, publish_rows};
pub use serve::run_relay_until_stopped;

use std::time::Duration;

/// Relay tuning.
#[derive(Debug, Clone)]
pub struct RelayConfig {
    pub batch_size: i64,
    pub window: usize,
    pub idle_poll: Duration,
}

impl Default for RelayConfig {
    fn default() -> Self {
        RelayConfig {
            batch_size: 5000,
            window: 2048,
            idle_poll: Duration::from_secs(1),
        }
    }
}

/// Why a pass failed; the pass changed nothing and can be retried.
#[derive(Debug, thiserror::Error)]
pub enum RelayError {
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
    #[error("publishing outbox row {id} to JetStream: {reason}")]
    Publish { id: i64, reason: String },
}
