//! The relay of `run-once` and the tests: one transactional pass ([`relay_pending`]: a
//! transaction-scoped advisory lock, one batch published and deleted, commit), and the drain that
//! repeats passes until the outbox holds nothing up to a given id ([`drain_outbox`]).

use std::time::Instant;

use async_nats::jetstream;
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;

use super::backoff::RELAY_BACKOFF;
use super::outbox::{DELETE_PUBLISHED, RELAY_LOCK_KEY, SELECT_AFTER, record_publish_error};
use super::{OutboxRow, RelayConfig, RelayError, publish_rows};
use crate::metrics::ProducerMetrics;

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
    metrics.add_relay_stage("read", started.elapsed());
    if rows.is_empty() {
        tx.commit().await?;
        return Ok(RelayOutcome::Idle);
    }
    let acked = publish_rows(js, rows, config.window).await?;
    metrics.add_publish_stages(&acked);
    let deleting = Instant::now();
    sqlx::query(DELETE_PUBLISHED)
        .bind(&acked.ids)
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    metrics.add_relay_stage("delete", deleting.elapsed());
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
    let mut backoff = RELAY_BACKOFF;
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
            Ok(RelayOutcome::LockedElsewhere) => {
                backoff.wait(shutdown).await;
            }
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
