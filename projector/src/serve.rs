//! `serve`: the durable pull consumer `projector`, applying one batch per transaction, acking
//! after commit, then announcing the change and updating the gauges.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use anyhow::Context;
use async_nats::jetstream::{self, AckKind, consumer::PullConsumer};
use chrono::Utc;
use followup_contract::PROJECTOR_CONSUMER;
use followup_infra::{Readiness, connect_database, connect_nats, ensure_stream, migrate_database};
use sqlx::PgPool;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::apply::{BatchReport, apply_and_commit};
use crate::config::Config;
use crate::consume::{ack_all, fetch_batch, to_inbound};
use crate::figures::load_figures;
use crate::metrics::ProjectorMetrics;
use crate::notice::{ChangeNotice, publish_notice};
use crate::scope::Scope;

/// Runs the projector until `shutdown` fires: serves `/metrics`, `/healthz` and `/readyz` on
/// `ops_listener` (bind port 0 in tests), consumes the stream and keeps the projection. A batch
/// in hand when `shutdown` fires is finished (committed and acked) before it returns.
pub async fn run_projector_until_stopped(
    config: Config,
    ops_listener: TcpListener,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let metrics = ProjectorMetrics::new().context("registering metrics")?;
    let readiness = Readiness::default();
    let ready = readiness.check("projector");
    let ops = tokio::spawn(followup_infra::serve_ops(
        ops_listener,
        metrics.registry.clone(),
        readiness,
        shutdown.clone(),
    ));

    let pool = connect_database(&config.database_url, config.db_connections, &shutdown).await?;
    migrate_database(&pool).await?;
    let client = connect_nats(&config.nats_url, "followup-projector", &shutdown).await?;
    let js = jetstream::new(client.clone());
    let stream = ensure_stream(&js).await?;
    let consumer: PullConsumer = stream
        .get_consumer(PROJECTOR_CONSUMER)
        .await
        .map_err(|e| anyhow::anyhow!(e))
        .context("looking up the projector's durable consumer")?;
    ready.store(true, Ordering::Relaxed);
    tracing::info!(
        tz = config.followup_tz.name(),
        batch = config.batch_size,
        "projector serving"
    );

    let projector = Projector {
        config,
        pool,
        client,
        metrics,
    };
    let result = projector.consume_until_stopped(consumer, &shutdown).await;
    ready.store(false, Ordering::Relaxed);
    shutdown.cancel();
    let _ = ops.await;
    result
}

struct Projector {
    config: Config,
    pool: PgPool,
    client: async_nats::Client,
    metrics: ProjectorMetrics,
}

impl Projector {
    async fn consume_until_stopped(
        &self,
        mut consumer: PullConsumer,
        shutdown: &CancellationToken,
    ) -> anyhow::Result<()> {
        let max = self.config.batch_size as usize;
        let mut last_lag_check = Instant::now() - Duration::from_secs(60);
        self.refresh_gauges().await;
        while !shutdown.is_cancelled() {
            let fetched = tokio::select! {
                _ = shutdown.cancelled() => break,
                fetched = fetch_batch(&consumer, max, self.config.fetch_wait()) => fetched,
            };
            let batch = match fetched {
                Ok(batch) => batch,
                Err(err) => {
                    tracing::warn!(error = format!("{err:#}"), "fetch failed; retrying");
                    tokio::time::sleep(Duration::from_millis(500)).await;
                    continue;
                }
            };
            if !batch.is_empty() {
                // From here on the batch is in hand: finish it even if shutdown fires.
                self.handle_batch(&batch, shutdown).await?;
            }
            if batch.is_empty() || last_lag_check.elapsed() >= Duration::from_secs(1) {
                last_lag_check = Instant::now();
                match consumer.info().await {
                    Ok(info) => self.metrics.set_consumer_pending(info.num_pending),
                    Err(err) => tracing::debug!(error = %err, "consumer info"),
                }
                if batch.is_empty() {
                    // Idle: keep sentToday right across local midnight.
                    self.refresh_gauges().await;
                }
            }
        }
        Ok(())
    }

    /// Applies and commits a batch (retrying while the database fails, and telling the server
    /// the work is in progress so it does not redeliver), then acks, announces and measures.
    async fn handle_batch(
        &self,
        batch: &[jetstream::Message],
        shutdown: &CancellationToken,
    ) -> anyhow::Result<()> {
        let inbound: Vec<_> = batch.iter().map(to_inbound).collect();
        let mut delay = Duration::from_millis(100);
        let (report, seconds) = loop {
            let started = Instant::now();
            match apply_and_commit(&self.pool, self.config.followup_tz, &inbound).await {
                Ok(report) => break (report, started.elapsed().as_secs_f64()),
                Err(err @ crate::apply::ApplyError::TimeZoneMismatch { .. }) => {
                    return Err(err.into());
                }
                Err(err) => {
                    tracing::warn!(error = %err, messages = batch.len(), "batch not applied; retrying");
                    if shutdown.is_cancelled() {
                        // Not acked: the server redelivers it to the next projector.
                        return Ok(());
                    }
                    for message in batch {
                        let _ = message.ack_with(AckKind::Progress).await;
                    }
                    tokio::select! {
                        _ = shutdown.cancelled() => return Ok(()),
                        _ = tokio::time::sleep(delay) => {}
                    }
                    delay = (delay * 2).min(Duration::from_secs(5));
                }
            }
        };
        ack_all(&self.client, batch).await?;
        self.after_commit(&report, seconds).await;
        Ok(())
    }

    async fn after_commit(&self, report: &BatchReport, seconds: f64) {
        self.metrics.observe_batch(report, seconds);
        if let Some(notice) = ChangeNotice::for_batch(report, Utc::now()) {
            publish_notice(&self.client, &notice).await;
        }
        if report.org {
            self.refresh_gauges().await;
        }
        tracing::debug!(messages = report.outcomes.len(), seconds, "batch committed");
    }

    async fn refresh_gauges(&self) {
        let now = self.config.clock.now();
        match load_figures(&self.pool, &Scope::Org, now, self.config.followup_tz).await {
            Ok(figures) => self.metrics.set_org_figures(&figures),
            Err(err) => tracing::warn!(error = %err, "loading figures for the gauges"),
        }
    }
}
