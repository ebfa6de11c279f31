//! The two entry points: [`run_until_stopped`] (scheduler, relay and ops endpoints until shutdown) and
//! [`run_once`] (one run now, then drain the outbox).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::Context;
use async_nats::jetstream;
use chrono::Utc;
use followup_infra::{
    Readiness, connect_database, connect_nats, prepare_database, provision_stream, serve_ops,
};
use sqlx::PgPool;
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio_cron_scheduler::{Job, JobScheduler};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::config::{DEFAULT_SMTP_FROM, DEV_UNSUBSCRIBE_BASE_URL, MailerKind, ProducerConfig};
use crate::delivery::Delivery;
use crate::mailer::{Mailer, SmtpSettings};
use crate::metrics::ProducerMetrics;
use crate::relay::{drain_outbox, last_outbox_id, run_relay_until_stopped};
use crate::run::{RunOutcome, RunReport, RunRequest, RunTrigger, execute_run};
use crate::schedule::Schedule;
use crate::template::{Renderer, UnsubscribeLinks};

/// Connections shared by the tasks of one process.
struct Connections {
    pool: PgPool,
    nats: async_nats::Client,
    js: jetstream::Context,
}

async fn connect_all(
    config: &ProducerConfig,
    shutdown: &CancellationToken,
) -> anyhow::Result<Connections> {
    let pool = connect_database(config.common.database_url()?, 10, shutdown).await?;
    prepare_database(&pool).await?;
    let nats = connect_nats(&config.common.nats_url, "followup-producer", shutdown).await?;
    let js = jetstream_context(&nats);
    provision_stream(&js, &config.stream, shutdown).await?;
    Ok(Connections { pool, nats, js })
}

/// JetStream context with bounded API and PubAck timeouts, so a lost server surfaces as an error
/// the relay retries rather than a hang.
fn jetstream_context(nats: &async_nats::Client) -> jetstream::Context {
    jetstream::ContextBuilder::new()
        .timeout(Duration::from_secs(5))
        .ack_timeout(Duration::from_secs(10))
        .build(nats.clone())
}

fn mailer_for(config: &ProducerConfig) -> anyhow::Result<Mailer> {
    if config.mailer == MailerKind::Smtp {
        let settings = SmtpSettings {
            url: config.smtp_url.clone().context("SMTP_URL")?,
            from: config.smtp_from.clone(),
            timeout: Duration::from_millis(config.smtp_timeout_ms),
            pool_size: config.retry().concurrency as u32,
        };
        if config.smtp_from == DEFAULT_SMTP_FROM {
            tracing::warn!(
                from = DEFAULT_SMTP_FROM,
                "SMTP_FROM not set; using the placeholder sender"
            );
        }
        return Mailer::smtp(&settings).map_err(anyhow::Error::msg);
    }
    match &config.mailer_log_file {
        Some(path) => Mailer::log_file(path)
            .with_context(|| format!("opening MAILER_LOG_FILE {}", path.display())),
        None => Ok(Mailer::Log),
    }
}

/// Mailer, validated templates with the unsubscribe link signer, and retry settings. Fails (and
/// the process with it) when a template does not render, naming the template and the field.
pub fn delivery_for(config: &ProducerConfig) -> anyhow::Result<Delivery> {
    let secret = match &config.unsubscribe_secret {
        Some(secret) => secret.clone().into_bytes(),
        None => {
            // Only with MAILER=log (validate() insists on a secret for SMTP): links in the log
            // are for looking at, not for a gateway to verify.
            tracing::warn!(
                "UNSUBSCRIBE_SECRET not set; unsubscribe links are signed with a throw-away key"
            );
            format!("{}{}", Uuid::new_v4().simple(), Uuid::new_v4().simple()).into_bytes()
        }
    };
    let base_url = config
        .unsubscribe_base_url
        .clone()
        .unwrap_or_else(|| DEV_UNSUBSCRIBE_BASE_URL.to_owned());
    let links = UnsubscribeLinks::new(base_url, secret);
    let renderer = match &config.template_dir {
        Some(dir) => Renderer::from_dir(dir, links),
        None => Renderer::embedded(links),
    }
    .context("e-mail templates")?;
    tracing::info!(templates = %renderer.origin, mailer = ?config.mailer, "e-mail templates validated");
    Ok(Delivery {
        mailer: mailer_for(config)?,
        renderer: Arc::new(renderer),
        retry: config.retry(),
        claim_timeout: Duration::from_secs(config.claim_timeout_secs),
    })
}

/// `migrate`: applies the migrations (as the owner of the CRM's tables) and, with `grant_to`,
/// grants that application role what the services need. Needs only `DATABASE_URL`.
pub async fn migrate(
    config: &ProducerConfig,
    grant_to: Option<&str>,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let pool = connect_database(config.common.database_url()?, 2, &shutdown).await?;
    followup_infra::migrate_database(&pool).await?;
    if let Some(role) = grant_to {
        followup_infra::grant_app_role(&pool, role).await?;
        tracing::info!(role, "granted the application role what the services need");
    }
    tracing::info!("migrations applied");
    Ok(())
}

/// One run now; returns once its events are acknowledged by JetStream.
pub async fn run_once(
    config: ProducerConfig,
    shutdown: CancellationToken,
) -> anyhow::Result<RunReport> {
    config.validate()?;
    let delivery = delivery_for(&config)?;
    let conns = connect_all(&config, &shutdown).await?;
    let metrics = ProducerMetrics::new();
    let request = RunRequest {
        trigger: RunTrigger::Manual,
        now: Utc::now(),
        tz: config.common.followup_tz,
        batch_size: config.batch_size,
    };
    let outcome = execute_run(&conns.pool, &delivery, &metrics, &request, &shutdown)
        .await
        .context("follow-up run")?;
    let RunOutcome::Completed(report) = outcome else {
        anyhow::bail!("a manual run cannot lose its slot");
    };
    let through = last_outbox_id(&conns.pool).await?;
    let published = drain_outbox(
        &conns.pool,
        &conns.js,
        &config.relay(),
        &metrics,
        through,
        &shutdown,
    )
    .await
    .context("draining the outbox to JetStream")?;
    if shutdown.is_cancelled() {
        anyhow::bail!(
            "interrupted before the outbox was drained; the relay of any producer will publish the rest"
        );
    }
    conns.nats.flush().await.ok();
    tracing::info!(published, "outbox drained");
    Ok(report)
}

/// Runs the scheduler, the relay and the ops endpoints on `listener` until `shutdown` fires.
pub async fn run_until_stopped(
    config: ProducerConfig,
    listener: TcpListener,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let schedule = config.validate()?;
    let delivery = delivery_for(&config)?;
    let metrics = ProducerMetrics::new();
    let readiness = Readiness::default();
    // Registered before the ops server starts, so /readyz says 503 until both answer.
    let db_ready = readiness.check("database");
    let nats_ready = readiness.check("nats");
    let ops = tokio::spawn(serve_ops(
        listener,
        metrics.registry.clone(),
        readiness.clone(),
        shutdown.clone(),
    ));
    let pool = connect_database(config.common.database_url()?, 10, &shutdown).await?;
    prepare_database(&pool).await?;
    tokio::spawn(watch_database(pool.clone(), db_ready, shutdown.clone()));
    // The "no run for 25 h" alert must not fire just because this process restarted.
    let last_run: Option<i64> = sqlx::query_scalar(
        "SELECT extract(epoch FROM max(finished_at))::bigint FROM followup_runs",
    )
    .fetch_one(&pool)
    .await
    .context("reading the last run")?;
    if let Some(at) = last_run {
        metrics.last_run.set(at);
    }
    // Runs only need Postgres (the outbox); the relay catches up whenever NATS is reachable.
    let relay = tokio::spawn(relay_when_connected(
        config.clone(),
        pool.clone(),
        metrics.clone(),
        nats_ready,
        shutdown.clone(),
    ));
    let (tick_tx, tick_rx) = mpsc::channel::<()>(1);
    let mut scheduler = start_scheduler(&schedule, tick_tx).await?;
    if let Some(next) = schedule.next_after(Utc::now()) {
        tracing::info!(cron = %schedule.expr, tz = %schedule.tz, next = %next.to_rfc3339(), "scheduler started");
    }
    run_scheduled_until_stopped(
        &pool, &delivery, &config, &schedule, &metrics, tick_rx, &shutdown,
    )
    .await;
    scheduler.shutdown().await.ok();
    relay.await.ok();
    ops.await.ok();
    tracing::info!("producer stopped");
    Ok(())
}

async fn start_scheduler(
    schedule: &Schedule,
    ticks: mpsc::Sender<()>,
) -> anyhow::Result<JobScheduler> {
    let scheduler = JobScheduler::new()
        .await
        .context("creating the scheduler")?;
    let job = Job::new_async_tz(schedule.expr.as_str(), schedule.tz, move |_id, _lock| {
        let ticks = ticks.clone();
        Box::pin(async move {
            // A full channel means a run is still going: that firing is folded into it.
            let _ = ticks.try_send(());
        })
    })
    .with_context(|| format!("scheduling FOLLOWUP_CRON {:?}", schedule.expr))?;
    scheduler
        .add(job)
        .await
        .context("adding the follow-up job")?;
    scheduler.start().await.context("starting the scheduler")?;
    Ok(scheduler)
}

/// Executes a run per scheduler tick, one at a time, until shutdown.
async fn run_scheduled_until_stopped(
    pool: &PgPool,
    delivery: &Delivery,
    config: &ProducerConfig,
    schedule: &Schedule,
    metrics: &ProducerMetrics,
    mut ticks: mpsc::Receiver<()>,
    shutdown: &CancellationToken,
) {
    while next_tick(&mut ticks, shutdown).await {
        let now = Utc::now();
        let Some(slot) = schedule.slot_at(now) else {
            tracing::warn!("scheduler fired outside any slot of FOLLOWUP_CRON");
            continue;
        };
        let request = RunRequest {
            trigger: RunTrigger::Schedule { slot },
            now,
            tz: config.common.followup_tz,
            batch_size: config.batch_size,
        };
        if let Err(err) = execute_run(pool, delivery, metrics, &request, shutdown).await {
            metrics.errors.inc();
            metrics.runs.with_label_values(&["failed"]).inc();
            tracing::error!(error = %err, "follow-up run failed; due leads stay due for the next run");
        }
    }
}

/// Waits for the next scheduler tick; false when the process is shutting down (or the scheduler
/// is gone). Shutdown wins over a waiting tick: when runs fail slowly (the database away, each
/// attempt waiting for the pool's timeout) a tick is always waiting too, and an unbiased select
/// kept choosing it (found by the fault suite: `serve` ignored SIGTERM with NATS and Postgres
/// gone).
async fn next_tick(ticks: &mut mpsc::Receiver<()>, shutdown: &CancellationToken) -> bool {
    tokio::select! {
        biased;
        _ = shutdown.cancelled() => false,
        tick = ticks.recv() => tick.is_some(),
    }
}

/// Connects to NATS and provisions the stream (both retried until they succeed), then relays
/// until shutdown.
async fn relay_when_connected(
    config: ProducerConfig,
    pool: PgPool,
    metrics: ProducerMetrics,
    ready: Arc<AtomicBool>,
    shutdown: CancellationToken,
) {
    let nats = match connect_nats(&config.common.nats_url, "followup-producer", &shutdown).await {
        Ok(client) => client,
        Err(_) => return, // shutdown before NATS answered
    };
    let js = jetstream_context(&nats);
    if provision_stream(&js, &config.stream, &shutdown)
        .await
        .is_err()
    {
        return;
    }
    tokio::spawn(watch_nats(nats, ready, shutdown.clone()));
    run_relay_until_stopped(pool, js, config.relay(), metrics, shutdown).await;
}

/// Keeps the `database` readiness check honest.
async fn watch_database(pool: PgPool, ready: Arc<AtomicBool>, shutdown: CancellationToken) {
    loop {
        let ok = sqlx::query("SELECT 1").execute(&pool).await.is_ok();
        ready.store(ok, Ordering::Relaxed);
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(Duration::from_secs(2)) => {}
        }
    }
}

/// Keeps the `nats` readiness check honest.
async fn watch_nats(nats: async_nats::Client, ready: Arc<AtomicBool>, shutdown: CancellationToken) {
    loop {
        let ok = nats.connection_state() == async_nats::connection::State::Connected;
        ready.store(ok, Ordering::Relaxed);
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn shutdown_wins_over_a_waiting_tick() {
        // An unbiased select would pick the tick half of the time: 20 rounds make a lucky pass
        // of the old code a one-in-a-million event.
        for _ in 0..20 {
            let (tx, mut rx) = mpsc::channel(1);
            tx.try_send(()).unwrap();
            let shutdown = CancellationToken::new();
            shutdown.cancel();
            assert!(!next_tick(&mut rx, &shutdown).await);
        }
        let (tx, mut rx) = mpsc::channel(1);
        tx.try_send(()).unwrap();
        assert!(next_tick(&mut rx, &CancellationToken::new()).await);
    }
}
