//! The outbox relay: publishes committed outbox rows to JetStream in outbox order and marks them
//! published once JetStream acknowledged them.
//!
//! - One relay is active at a time (a transaction-scoped advisory lock), so order holds with
//!   several producer replicas; the others wait.
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
//! [`relay_pending`] is one transactional pass (used by `run-once` and tests); the long-running
//! relay of `serve` lives in [`crate::relay_loop`] and overlaps publishing with marking.
//!
//! The outbox holds each event's parts; the relay assembles the CloudEvent with the SDK
//! ([`OutboxRow::into_message`]), the one place the envelope is built.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use async_nats::jetstream::message::PublishMessage;
use async_nats::jetstream::{self, context::PublishAckFuture};
use bytes::Bytes;
use chrono::{DateTime, Utc};
use followup_contract::{CONTENT_TYPE, EventParts, EventType, outbox_key};
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::metrics::ProducerMetrics;
use crate::relay_loop::Backoff;

/// Advisory-lock key that elects the active relay ("FOLLOWUP" in ASCII).
pub(crate) const RELAY_LOCK_KEY: i64 = 0x464F_4C4C_4F57_5550;

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

/// What JetStream acknowledged for a batch of rows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Acknowledged {
    /// The rows' outbox ids, in order.
    pub ids: Vec<i64>,
    /// How many JetStream flagged as duplicates (already in the stream).
    pub duplicates: usize,
}

/// What one relay pass did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RelayOutcome {
    /// Rows published and marked.
    Published { rows: usize, duplicates: usize },
    /// Nothing to publish.
    Idle,
    /// Another relay holds the lock.
    LockedElsewhere,
}

/// Why a pass failed; the pass changed nothing and can be retried.
#[derive(Debug, thiserror::Error)]
pub enum RelayError {
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
    #[error("publishing outbox row {id} to JetStream: {reason}")]
    Publish { id: i64, reason: String },
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
    };
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
            let (id, key, fut) = in_flight.pop_front().expect("window is not empty");
            settle((id, key, fut.await.map_err(|e| err(id, &e))?));
        }
        let message = row.into_message()?;
        let publish = PublishMessage::build()
            .payload(message.body)
            .header("Content-Type", CONTENT_TYPE)
            .message_id(&message.key);
        let fut = js
            .send_publish(message.subject, publish)
            .await
            .map_err(|e| err(message.id, &e))?;
        in_flight.push_back((message.id, message.key, fut));
    }
    for (id, key, fut) in in_flight {
        settle((id, key, fut.await.map_err(|e| err(id, &e))?));
    }
    if let Some(first_key) = first_duplicate {
        tracing::info!(count = acked.duplicates, %first_key, "JetStream dropped republished events as duplicates");
    }
    Ok(acked)
}

/// Up to `$2` outbox rows with ids above `$1`, in outbox order (`$1` = 0: from the start).
pub(crate) const SELECT_AFTER: &str =
    "SELECT id, event_id, event_type, subject, idempotency_key, data, occurred_at
    FROM followup_outbox WHERE id > $1 ORDER BY id LIMIT $2";

/// Removes acknowledged rows.
pub(crate) const DELETE_PUBLISHED: &str = "DELETE FROM followup_outbox WHERE id = ANY($1)";

/// One pass: lock, read a batch in outbox order, publish, await every PubAck, mark, commit.
pub async fn relay_pending(
    pool: &PgPool,
    js: &jetstream::Context,
    config: &RelayConfig,
    metrics: &ProducerMetrics,
) -> Result<RelayOutcome, RelayError> {
    let started = Instant::now();
    let mut tx = pool.begin().await?;
    let locked: bool = sqlx::query_scalar("SELECT pg_try_advisory_xact_lock($1)")
        .bind(RELAY_LOCK_KEY)
        .fetch_one(&mut *tx)
        .await?;
    if !locked {
        return Ok(RelayOutcome::LockedElsewhere);
    }
    let rows: Vec<OutboxRow> = sqlx::query_as(SELECT_AFTER)
        .bind(0_i64)
        .bind(config.batch_size)
        .fetch_all(&mut *tx)
        .await?;
    if rows.is_empty() {
        tx.commit().await?;
        return Ok(RelayOutcome::Idle);
    }
    let acked = publish_rows(js, rows, config.window).await?;
    sqlx::query(DELETE_PUBLISHED)
        .bind(&acked.ids)
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    metrics.relay_published.inc_by(acked.ids.len() as u64);
    metrics.relay_duplicates.inc_by(acked.duplicates as u64);
    metrics
        .relay_batch_duration
        .observe(started.elapsed().as_secs_f64());
    Ok(RelayOutcome::Published {
        rows: acked.ids.len(),
        duplicates: acked.duplicates,
    })
}

/// Number of outbox rows not yet published.
pub async fn count_backlog(pool: &PgPool) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar("SELECT count(*) FROM followup_outbox")
        .fetch_one(pool)
        .await
}

/// Records a failed pass on the first unpublished row, for operators reading the outbox.
pub(crate) async fn record_publish_error(pool: &PgPool, err: &RelayError) {
    let id = match err {
        RelayError::Publish { id, .. } => *id,
        RelayError::Database(_) => return,
    };
    let result = sqlx::query(
        "UPDATE followup_outbox SET publish_attempts = publish_attempts + 1, last_error = $2 WHERE id = $1",
    )
    .bind(id)
    .bind(err.to_string())
    .execute(pool)
    .await;
    if let Err(e) = result {
        tracing::warn!(error = %e, "cannot record relay error");
    }
}

/// Publishes until every outbox row with an id up to `through` is acknowledged (used by
/// `run-once`), retrying failed passes with backoff. Returns the rows this process published,
/// or the last error if `shutdown` fires first.
pub async fn drain_outbox(
    pool: &PgPool,
    js: &jetstream::Context,
    config: &RelayConfig,
    metrics: &ProducerMetrics,
    through: i64,
    shutdown: &CancellationToken,
) -> Result<usize, RelayError> {
    let mut total = 0;
    let mut backoff = Backoff::new();
    loop {
        let remaining: i64 =
            sqlx::query_scalar("SELECT count(*) FROM followup_outbox WHERE id <= $1")
                .bind(through)
                .fetch_one(pool)
                .await?;
        if remaining == 0 {
            return Ok(total);
        }
        match relay_pending(pool, js, config, metrics).await {
            Ok(RelayOutcome::Published { rows, .. }) => {
                total += rows;
                backoff.reset();
            }
            Ok(RelayOutcome::Idle) => {}
            // A serving relay is publishing: wait for it.
            Ok(RelayOutcome::LockedElsewhere) => backoff.wait(shutdown).await,
            Err(err) => {
                metrics.relay_errors.inc();
                record_publish_error(pool, &err).await;
                tracing::warn!(error = %err, remaining, retry_in_ms = backoff.current().as_millis() as u64, "relay pass failed; rows kept for retry");
                if shutdown.is_cancelled() {
                    return Err(err);
                }
                backoff.wait(shutdown).await;
            }
        }
        if shutdown.is_cancelled() {
            return Ok(total);
        }
    }
}

/// The highest outbox id so far (0 when empty).
pub async fn last_outbox_id(pool: &PgPool) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar("SELECT COALESCE(max(id), 0) FROM followup_outbox")
        .fetch_one(pool)
        .await
}
