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

use crate::metrics::ProducerMetrics;
use crate::relay::{
    DELETE_PUBLISHED, OutboxRow, RELAY_LOCK_KEY, RelayConfig, RelayError, SELECT_AFTER,
    count_backlog, publish_rows, record_publish_error,
};

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
    let mut listener = connect_listener(&pool).await;
    let mut backoff = Backoff::new();
    while !shutdown.is_cancelled() {
        match relay_session(
            &pool,
            &js,
            &config,
            &metrics,
            &mut listener,
            &shutdown,
            &mut backoff,
        )
        .await
        {
            Ok(()) => {}
            Err(err) => {
                metrics.relay_errors.inc();
                record_publish_error(&pool, &err).await;
                tracing::warn!(error = %err, retry_in_ms = backoff.current().as_millis() as u64, "relay failed; rows kept for retry");
                if let Ok(n) = count_backlog(&pool).await {
                    metrics.outbox_backlog.set(n);
                }
                backoff.wait_or_reconnect(&shutdown, &js.client()).await;
            }
        }
    }
    tracing::info!("relay stopped");
}

/// Takes the relay lock on a dedicated connection (closing it releases the lock, whatever
/// happens) and streams batches until shutdown or an error.
async fn relay_session(
    pool: &PgPool,
    js: &jetstream::Context,
    config: &RelayConfig,
    metrics: &ProducerMetrics,
    listener: &mut Option<PgListener>,
    shutdown: &CancellationToken,
    backoff: &mut Backoff,
) -> Result<(), RelayError> {
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
    let streamed = stream_batches(
        &mut conn, js, config, metrics, &jobs, listener, pool, shutdown, backoff,
    )
    .await;
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

#[allow(clippy::too_many_arguments)]
async fn stream_batches(
    conn: &mut PgConnection,
    js: &jetstream::Context,
    config: &RelayConfig,
    metrics: &ProducerMetrics,
    jobs: &mpsc::Sender<MarkJob>,
    listener: &mut Option<PgListener>,
    pool: &PgPool,
    shutdown: &CancellationToken,
    backoff: &mut Backoff,
) -> Result<(), RelayError> {
    let mut cursor = 0_i64;
    while !shutdown.is_cancelled() {
        let started = Instant::now();
        let rows: Vec<OutboxRow> = sqlx::query_as(SELECT_AFTER)
            .bind(cursor)
            .bind(config.batch_size)
            .fetch_all(&mut *conn)
            .await?;
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

async fn flush_marker(jobs: &mpsc::Sender<MarkJob>) -> bool {
    let (done, wait) = oneshot::channel();
    jobs.send(MarkJob::Flush(done)).await.is_ok() && wait.await.is_ok()
}

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
                sqlx::query(DELETE_PUBLISHED)
                    .bind(&ids)
                    .execute(&pool)
                    .await?;
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

/// Exponential backoff from 100 ms to 30 s.
pub(crate) struct Backoff(Duration);

impl Backoff {
    pub(crate) fn new() -> Self {
        Backoff(Duration::from_millis(100))
    }
    pub(crate) fn current(&self) -> Duration {
        self.0
    }
    pub(crate) fn reset(&mut self) {
        self.0 = Duration::from_millis(100);
    }
    pub(crate) async fn wait(&mut self, shutdown: &CancellationToken) {
        tokio::select! {
            _ = shutdown.cancelled() => {}
            _ = tokio::time::sleep(self.0) => {}
        }
        self.0 = (self.0 * 2).min(Duration::from_secs(30));
    }

    /// [`Backoff::wait`], cut short (and the backoff reset) when NATS was away at the start of
    /// the wait and the client has reconnected since: after a long outage the delay has grown to
    /// its maximum, and the backlog should not wait that long once the server is back (found by
    /// the fault suite: 25–30 s of extra recovery after a 60 s NATS outage).
    pub(crate) async fn wait_or_reconnect(
        &mut self,
        shutdown: &CancellationToken,
        client: &async_nats::Client,
    ) {
        use async_nats::connection::State;
        if client.connection_state() == State::Connected {
            return self.wait(shutdown).await;
        }
        let until = tokio::time::Instant::now() + self.0;
        while tokio::time::Instant::now() < until {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tokio::time::sleep(Duration::from_millis(100)) => {}
            }
            if client.connection_state() == State::Connected {
                tracing::info!("NATS is back; relay retries now");
                self.reset();
                return;
            }
        }
        self.0 = (self.0 * 2).min(Duration::from_secs(30));
    }
}
