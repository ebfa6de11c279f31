//! `serve`: the durable pull consumer `projector`, applying one batch per transaction, acking
//! after commit, then announcing the change and updating the gauges.
//!
//! Replicas: several `serve` projectors may run against one database; the one holding the
//! consumer lock ([`crate::leader`]) consumes, the others stand by (ready, refreshing their
//! gauges) and take over within [`crate::leader::STANDBY_POLL`] when its connection closes.
//! What the dead one had fetched and not acked comes back after the durable's `ack_wait`.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use async_nats::jetstream::{self, AckKind, consumer::PullConsumer};
use chrono::Utc;
use followup_contract::PROJECTOR_CONSUMER;
use followup_infra::{
    Backoff, Readiness, connect_database, connect_nats, prepare_database, provision_stream,
    retry_until,
};
use followup_readmodel::{Scope, load_figures};
use sqlx::PgPool;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::apply::{BatchReport, apply_and_commit};
use crate::config::Config;
use crate::consume::{Prefetched, ack_all, nak_all, prefetch_batches};
use crate::leader::{ConsumerLock, STANDBY_POLL, hold};
use crate::metrics::ProjectorMetrics;
use crate::notice::{notice_for_batch, publish_notice};
use crate::parse::ParsedBatch;
use crate::snapshot::ensure_snapshot;

/// Runs the projector until `shutdown` fires: serves `/metrics`, `/healthz` and `/readyz` on
/// `ops_listener` (bind port 0 in tests), consumes the stream and keeps the projection. A batch
/// in hand when `shutdown` fires is finished (committed and acked) before it returns.
pub async fn run_until_stopped(
    config: Config,
    ops_listener: TcpListener,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let metrics = ProjectorMetrics::new();
    let readiness = Readiness::default();
    let ready = readiness.check("projector");
    // The ops server stops with the projector, whether it ends on `shutdown` or on an error.
    let ops_stop = shutdown.child_token();
    let ops = tokio::spawn(followup_infra::serve_ops(
        ops_listener,
        metrics.registry.clone(),
        readiness,
        ops_stop.clone(),
    ));
    let result = consume_until_stopped(config, metrics, ready, &shutdown).await;
    ops_stop.cancel();
    let _ = ops.await;
    result
}

async fn consume_until_stopped(
    config: Config,
    metrics: ProjectorMetrics,
    ready: Arc<AtomicBool>,
    shutdown: &CancellationToken,
) -> anyhow::Result<()> {
    let pool = connect_database(
        config.common.database_url()?,
        config.db_connections,
        shutdown,
    )
    .await?;
    prepare_database(&pool).await?;
    // Figures right from the first minute: a CRM that held leads before the projector started.
    let mut conn = pool.acquire().await?;
    ensure_snapshot(&mut conn, config.common.followup_tz)
        .await
        .context("initialising the projection from a snapshot of the CRM")?;
    drop(conn);
    tokio::spawn(crate::prune::prune_until_stopped(
        pool.clone(),
        config.stream.max_age(),
        shutdown.child_token(),
    ));
    let client = connect_nats(&config.common.nats_url, "followup-projector", shutdown).await?;
    let js = jetstream::new(client.clone());
    // JetStream may not be ready yet (a server starting, a cluster electing its leader): wait
    // for it like for the connection, rather than exit.
    let consumer: PullConsumer = retry_until(
        shutdown,
        "projector consumer not available yet",
        None,
        Backoff::new(Duration::from_secs(1), Duration::from_secs(1)),
        || async {
            let stream = provision_stream(&js, &config.stream, shutdown).await?;
            stream
                .get_consumer(PROJECTOR_CONSUMER)
                .await
                .map_err(|e| anyhow::anyhow!(e))
        },
    )
    .await
    .context("looking up the projector's durable consumer")?;
    // Dead letters of every durable on FOLLOWUP, the projector's included: beside the
    // consumption, stopped with it.
    tokio::spawn(crate::dlq::collect_dead_letters(
        js.clone(),
        metrics.clone(),
        shutdown.child_token(),
    ));
    ready.store(true, Ordering::Relaxed);
    tracing::info!(
        tz = config.common.followup_tz.name(),
        batch = config.batch_size,
        "projector serving"
    );

    let projector = Projector {
        config,
        pool,
        client,
        metrics,
        ready,
        last_gauges: std::sync::Mutex::new(Instant::now()),
    };
    let result = projector.consume_while_leader(consumer, shutdown).await;
    projector.ready.store(false, Ordering::Relaxed);
    result
}

/// How long shutdown waits for acks, naks and the final flush.
const SHUTDOWN_DRAIN: Duration = Duration::from_secs(5);

struct Projector {
    config: Config,
    pool: PgPool,
    client: async_nats::Client,
    metrics: ProjectorMetrics,
    /// `/readyz`: false while batches fail to apply (the database is away).
    ready: Arc<AtomicBool>,
    last_gauges: std::sync::Mutex<Instant>,
}

impl Projector {
    /// Stands by until this projector holds the consumer lock, consumes while it does, and
    /// stands by again if another projector took the lock meanwhile; until `shutdown`.
    async fn consume_while_leader(
        &self,
        consumer: PullConsumer,
        shutdown: &CancellationToken,
    ) -> anyhow::Result<()> {
        let mut lock = ConsumerLock::new(self.pool.clone());
        loop {
            let mut announced = false;
            loop {
                let taken = tokio::select! {
                    _ = shutdown.cancelled() => return Ok(()),
                    taken = lock.try_take() => taken,
                };
                match taken {
                    Ok(true) => break,
                    Ok(false) if !announced => {
                        tracing::info!("another projector consumes; standing by");
                        announced = true;
                    }
                    Ok(false) => {}
                    Err(err) => tracing::debug!(error = %err, "consumer lock not available"),
                }
                // A standby's gauges show the same figures as the consumer's.
                tokio::select! {
                    _ = shutdown.cancelled() => return Ok(()),
                    _ = async {
                        self.refresh_gauges().await;
                        tokio::time::sleep(STANDBY_POLL).await;
                    } => {}
                }
            }
            tracing::info!("holding the consumer lock; consuming");
            self.metrics.set_active(true);
            let stop = shutdown.child_token();
            let holder = tokio::spawn(hold(lock, stop.clone()));
            let result = self.consume_until_stopped(consumer.clone(), &stop).await;
            stop.cancel();
            lock = holder.await.context("the consumer lock's holder task")?;
            self.metrics.set_active(false);
            lock.release().await;
            if result.is_err() || shutdown.is_cancelled() {
                return result;
            }
        }
    }

    async fn consume_until_stopped(
        &self,
        consumer: PullConsumer,
        shutdown: &CancellationToken,
    ) -> anyhow::Result<()> {
        let max = self.config.batch_size as usize;
        let wait = self.config.fetch_wait();
        let fetcher = shutdown.child_token();
        let mut batches = prefetch_batches(consumer.clone(), max, wait, fetcher.clone());
        // The lag gauge is a JetStream request (up to its 5 s timeout when an answer is lost):
        // measured beside the consumption, never between two batches.
        tokio::spawn(watch_consumer_lag(
            consumer,
            self.metrics.clone(),
            fetcher.clone(),
        ));
        self.refresh_gauges().await;
        let mut pending_acks: Option<JoinHandle<()>> = None;
        // Whether the previous batch had messages: only then is waiting for the next a stall
        // (the `wait` stage); after an idle batch it is the stream being quiet.
        let mut busy = false;
        let result = loop {
            let waiting = Instant::now();
            let prefetched = tokio::select! {
                _ = shutdown.cancelled() => break Ok(()),
                batch = batches.recv() => match batch {
                    Some(prefetched) => prefetched,
                    None => break Ok(()),
                },
            };
            let Prefetched {
                messages: batch,
                parsed,
                fetch,
                parse,
            } = prefetched;
            let idle = batch.is_empty();
            if !idle {
                if busy {
                    self.metrics.add_stage("wait", waiting.elapsed());
                }
                self.metrics.add_stage("fetch", fetch);
                self.metrics.add_stage("parse", parse);
                // From here on the batch is in hand: finish it even if shutdown fires.
                match self.handle_batch(batch, &parsed, shutdown).await {
                    Ok(acks) => {
                        if let Some(previous) = std::mem::replace(&mut pending_acks, acks) {
                            // Acks wait for NATS when it is away; a shutdown does not.
                            let abort = previous.abort_handle();
                            tokio::select! {
                                _ = shutdown.cancelled() => {
                                    abort.abort();
                                    break Ok(());
                                }
                                _ = previous => {}
                            }
                        }
                    }
                    Err(err) => break Err(err),
                }
            }
            busy = !idle;
            if idle {
                // Idle: keep sentToday right across local midnight.
                self.refresh_gauges().await;
            }
        };
        // Bounded: with NATS gone these would wait for a reconnect that may never come, and a
        // shutdown must finish. Whatever is not acked or nak'ed is redelivered after ack_wait.
        let drain = async {
            if let Some(acks) = pending_acks {
                let _ = acks.await;
            }
            fetcher.cancel();
            while let Some(prefetched) = batches.recv().await {
                nak_all(&prefetched.messages).await;
            }
            let _ = self.client.flush().await;
        };
        if tokio::time::timeout(SHUTDOWN_DRAIN, drain).await.is_err() {
            tracing::warn!(
                "NATS did not answer during shutdown; unacked messages will be redelivered"
            );
        }
        result
    }

    /// Applies and commits a batch, then acks, announces and measures. While the database
    /// fails, the batch is retried in hand (with "in progress" acks so the server does not
    /// redeliver it): counting those failures as deliveries would exhaust `max_deliver` during
    /// an outage and lose good events. Only a message that is not a valid event is dead-lettered.
    async fn handle_batch(
        &self,
        batch: Vec<jetstream::Message>,
        parsed: &ParsedBatch,
        shutdown: &CancellationToken,
    ) -> anyhow::Result<Option<JoinHandle<()>>> {
        let mut backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(5));
        let (report, seconds) = loop {
            let started = Instant::now();
            match apply_and_commit(&self.pool, self.config.common.followup_tz, parsed).await {
                Ok(report) => break (report, started.elapsed().as_secs_f64()),
                Err(err @ crate::apply::ApplyError::TimeZoneMismatch { .. }) => {
                    return Err(err.into());
                }
                Err(err) => {
                    tracing::warn!(error = %err, messages = batch.len(), "batch not applied; retrying");
                    self.ready.store(false, Ordering::Relaxed);
                    if shutdown.is_cancelled() {
                        // Not acked: the server redelivers it to the next projector.
                        return Ok(None);
                    }
                    // With NATS away too, the client's command buffer fills and each publish
                    // waits for a reconnect that may never come: never let that hold up a
                    // shutdown (the batch is not acked and will be redelivered).
                    let progress = async {
                        for message in &batch {
                            let _ = message.ack_with(AckKind::Progress).await;
                        }
                    };
                    tokio::select! {
                        _ = shutdown.cancelled() => return Ok(None),
                        _ = progress => {}
                    }
                    if !backoff.wait(shutdown).await {
                        return Ok(None);
                    }
                }
            }
        };
        // Acks go out in a task, beside the next batch's transaction.
        let client = self.client.clone();
        let metrics = self.metrics.clone();
        let acks = tokio::spawn(async move {
            let acking = Instant::now();
            let acked = ack_all(&client, &batch).await;
            metrics.add_stage("ack", acking.elapsed());
            if let Err(err) = acked {
                // Committed but not acked: the server redelivers, and the inbox makes those
                // redeliveries duplicates.
                tracing::warn!(error = format!("{err:#}"), "acking a committed batch");
            }
        });
        self.ready.store(true, Ordering::Relaxed);
        self.after_commit(&report, seconds).await;
        Ok(Some(acks))
    }

    async fn after_commit(&self, report: &BatchReport, seconds: f64) {
        self.metrics.observe_batch(report, seconds);
        let noticing = Instant::now();
        if let Some(notice) = notice_for_batch(report, Utc::now()) {
            publish_notice(&self.client, &notice).await;
        }
        self.metrics.add_stage("notice", noticing.elapsed());
        // At most about once a second under load: the gauges are scraped, not streamed.
        let due = self
            .last_gauges
            .lock()
            .map(|at| at.elapsed() >= Duration::from_secs(1));
        if report.org && due.unwrap_or(true) {
            let refreshing = Instant::now();
            self.refresh_gauges().await;
            self.metrics.add_stage("gauges", refreshing.elapsed());
        }
        tracing::debug!(messages = report.outcomes.len(), seconds, "batch committed");
    }

    async fn refresh_gauges(&self) {
        if let Ok(mut at) = self.last_gauges.lock() {
            *at = Instant::now();
        }
        let now = self.config.clock.now();
        match load_figures(&self.pool, &Scope::Org, now, self.config.common.followup_tz).await {
            Ok(figures) => self.metrics.set_org_figures(&figures),
            Err(err) => tracing::warn!(error = %err, "loading figures for the gauges"),
        }
    }
}

/// Updates `followup_projector_consumer_pending` about once a second until `stop` fires. Each
/// request is bounded: the client's own timeout does not cover handing the request to the
/// connection, which waits for a reconnect while NATS is away.
async fn watch_consumer_lag(
    mut consumer: PullConsumer,
    metrics: ProjectorMetrics,
    stop: CancellationToken,
) {
    loop {
        let info = tokio::select! {
            _ = stop.cancelled() => return,
            info = tokio::time::timeout(Duration::from_secs(5), consumer.info()) => info,
        };
        match info {
            Ok(Ok(info)) => metrics.set_consumer_pending(info.num_pending),
            Ok(Err(err)) => tracing::debug!(error = %err, "consumer info"),
            Err(_) => tracing::debug!("consumer info: no answer"),
        }
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
        }
    }
}
