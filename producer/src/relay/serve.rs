//! The long-running relay of `serve`. It holds the relay lock (a session advisory lock on a
//! dedicated connection, so only one relay publishes and order holds) and streams the outbox:
//! while one batch is being deleted from the outbox, the next is already being published to
//! JetStream. A row is deleted only after its PubAck; a crash between the two republishes it, and
//! JetStream drops the duplicate by `Nats-Msg-Id`.
//!
//! Batches are read with a cursor (`id > last published`). Outbox ids are taken at insert but
//! rows become visible at commit, so a row can appear below the cursor later: whenever the relay
//! runs out of rows above the cursor it waits for the marker to catch up and rescans from the
//! lowest unpublished id.

use std::time::{Duration, Instant};

use async_nats::jetstream;
use sqlx::postgres::PgListener;
use sqlx::{ConnectOptions, Connection, PgConnection, PgPool};
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use super::backoff::{RELAY_BACKOFF, wait_or_reconnect};
use super::outbox::{
    DELETE_PUBLISHED, RELAY_LOCK_KEY, SELECT_AFTER, count_backlog, record_publish_error,
};
use super::{OutboxRow, RelayConfig, RelayError, publish_rows};
use crate::metrics::ProducerMetrics;
use followup_infra::Backoff;

/// What the relay works with for as long as it runs.
struct Relay<'a> {
    pool: &'a PgPool,
    js: &'a jetstream::Context,
    config: &'a RelayConfig,
    metrics: &'a ProducerMetrics,
    shutdown: &'a CancellationToken,
}

/// Work for the marker task, in the order the batches were published.
enum MarkJob {
    /// Delete these acknowledged rows.
    Mark {
        ids: Vec<i64>,
        duplicates: usize,
        started: Instant,
    },
    /// Answered once every job before it is marked.
    Flush(oneshot::Sender<()>),
}

/// Relays until `shutdown` fires: woken by NOTIFY on `followup_outbox`, polling every
/// `idle_poll` as a fallback. Failures (database or NATS away) are logged, counted and retried
/// with exponential backoff; unpublished rows simply wait.
pub async fn run_relay_until_stopped(
    pool: PgPool,
    js: jetstream::Context,
    config: RelayConfig,
    metrics: ProducerMetrics,
    shutdown: CancellationToken,
) {
    let relay = Relay {
        pool: &pool,
        js: &js,
        config: &config,
        metrics: &metrics,
        shutdown: &shutdown,
    };
    let mut listener = connect_listener(&pool).await;
    let mut backoff = RELAY_BACKOFF;
    while !shutdown.is_cancelled() {
        match relay_session(&relay, &mut listener, &mut backoff).await {
            Ok(()) => {}
            Err(err) => {
                metrics.relay_errors.inc();
                record_publish_error(&pool, &err).await;
                tracing::warn!(error = %err, retry_in_ms = backoff.current().as_millis() as u64, "relay failed; rows kept for retry");
                if let Ok(n) = count_backlog(&pool).await {
                    metrics.outbox_backlog.set(n);
                }
                wait_or_reconnect(&mut backoff, &shutdown, &js.client()).await;
            }
        }
    }
    tracing::info!("relay stopped");
}

/// Takes the relay lock on a dedicated connection (closing it releases the lock, whatever
/// happens) and streams batches until shutdown or an error.
async fn relay_session(
    relay: &Relay<'_>,
    listener: &mut Option<PgListener>,
    backoff: &mut Backoff,
) -> Result<(), RelayError> {
    let Relay {
        pool,
        config,
        metrics,
        shutdown,
        ..
    } = *relay;
    let mut conn = pool.connect_options().connect().await?;
    loop {
        let locked: bool = sqlx::query_scalar("SELECT pg_try_advisory_lock($1)")
            .bind(RELAY_LOCK_KEY)
            .fetch_one(&mut conn)
            .await?;
        if locked {
            break;
        }
        // Another replica relays; stand by.
        wait_for_rows(listener, pool, config.idle_poll, shutdown).await;
        if shutdown.is_cancelled() {
            return Ok(());
        }
    }
    let (jobs, queue) = mpsc::channel(2);
    let marker = tokio::spawn(mark_until_closed(pool.clone(), queue, metrics.clone()));
    let streamed = stream_batches(relay, &mut conn, &jobs, listener, backoff).await;
    drop(jobs);
    let marked = marker.await.unwrap_or_else(|e| {
        Err(RelayError::Publish {
            id: 0,
            reason: format!("marker task: {e}"),
        })
    });
    conn.close().await.ok();
    streamed.and(marked)
}

/// Reads batches above the cursor on the locked connection, publishes them and hands them to
/// the marker, until shutdown or an error.
async fn stream_batches(
    relay: &Relay<'_>,
    conn: &mut PgConnection,
    jobs: &mpsc::Sender<MarkJob>,
    listener: &mut Option<PgListener>,
    backoff: &mut Backoff,
) -> Result<(), RelayError> {
    let Relay {
        pool,
        js,
        config,
        metrics,
        shutdown,
    } = *relay;
    let mut cursor = 0_i64;
    while !shutdown.is_cancelled() {
        let started = Instant::now();
        let rows: Vec<OutboxRow> = sqlx::query_as(SELECT_AFTER)
            .bind(cursor)
            .bind(config.batch_size)
            .fetch_all(&mut *conn)
            .await?;
        metrics.add_relay_stage("read", started.elapsed());
        let Some(last) = rows.last() else {
            if !flush_marker(jobs).await {
                return Ok(()); // the marker failed; its error is reported by the caller
            }
            if cursor != 0 {
                cursor = 0; // rescan for rows that committed below the cursor
                continue;
            }
            if let Ok(n) = count_backlog(pool).await {
                metrics.outbox_backlog.set(n);
            }
            wait_for_rows(listener, pool, config.idle_poll, shutdown).await;
            continue;
        };
        cursor = last.id;
        let acked = publish_rows(js, rows, config.window).await?;
        metrics.add_publish_stages(&acked);
        backoff.reset();
        let job = MarkJob::Mark {
            ids: acked.ids,
            duplicates: acked.duplicates,
            started,
        };
        if jobs.send(job).await.is_err() {
            return Ok(());
        }
    }
    flush_marker(jobs).await;
    Ok(())
}

/// Waits until the marker has deleted every batch handed to it; `false` if it has stopped.
async fn flush_marker(jobs: &mpsc::Sender<MarkJob>) -> bool {
    let (done, wait) = oneshot::channel();
    jobs.send(MarkJob::Flush(done)).await.is_ok() && wait.await.is_ok()
}

/// The marker task: deletes acknowledged batches in order and counts them, until the queue
/// closes or a delete fails.
async fn mark_until_closed(
    pool: PgPool,
    mut queue: mpsc::Receiver<MarkJob>,
    metrics: ProducerMetrics,
) -> Result<(), RelayError> {
    while let Some(job) = queue.recv().await {
        match job {
            MarkJob::Flush(done) => {
                let _ = done.send(());
            }
            MarkJob::Mark {
                ids,
                duplicates,
                started,
            } => {
                let deleting = Instant::now();
                sqlx::query(DELETE_PUBLISHED)
                    .bind(&ids)
                    .execute(&pool)
                    .await?;
                metrics.add_relay_stage("delete", deleting.elapsed());
                metrics.relay_published.inc_by(ids.len() as u64);
                metrics.relay_duplicates.inc_by(duplicates as u64);
                metrics
                    .relay_batch_duration
                    .observe(started.elapsed().as_secs_f64());
            }
        }
    }
    Ok(())
}

async fn connect_listener(pool: &PgPool) -> Option<PgListener> {
    let mut listener = PgListener::connect_with(pool).await.ok()?;
    listener.listen("followup_outbox").await.ok()?;
    Some(listener)
}

/// Sleeps until a NOTIFY on the outbox, `poll` or shutdown; a broken listener is dropped and
/// reconnected on the next wait, polling meanwhile.
async fn wait_for_rows(
    listener: &mut Option<PgListener>,
    pool: &PgPool,
    poll: Duration,
    shutdown: &CancellationToken,
) {
    match listener {
        Some(l) => {
            tokio::select! {
                _ = shutdown.cancelled() => {}
                _ = tokio::time::sleep(poll) => {}
                received = l.recv() => {
                    if received.is_err() {
                        *listener = None;
                    }
                }
            }
        }
        None => {
            tokio::select! {
                _ = shutdown.cancelled() => {}
                _ = tokio::time::sleep(poll) => {}
            }
            *listener = connect_listener(pool).await;
        }
    }
}
