//! One follow-up run: claim due leads batch by batch, deliver, record, and close the run with a
//! `lead.followup.processed.v1` event.
//!
//! Claim, send and record are separate short transactions, so no row lock on `leads` is held
//! while mail is being sent (an SMTP outage can last hours; CRM users must not wait for it):
//! 1. **Claim** (one transaction per batch): select due leads `FOR UPDATE SKIP LOCKED`, render
//!    their e-mails, insert a `pending` delivery record per follow-up, commit.
//! 2. **Send** outside any transaction, concurrently, each follow-up with its own retries
//!    ([`crate::delivery`]); the next batch is claimed while earlier ones are still retrying.
//! 3. **Record** whatever has settled, in one transaction per group: `sent` with the lead's flags,
//!    the CRM activity and the `sent` event; `failed` with the `failed` event; unsent claims
//!    (shutdown, lead no longer eligible) deleted, so those follow-ups stay due.
//!
//! A crash leaves pending records behind; the run's heartbeat stops, and a later run deletes them
//! after the claim timeout and sends those follow-ups again with the same `Message-ID`
//! ([`crate::due::release_stale_claims`]). The run returns when every delivery it claimed is
//! settled, so `run-once` waits for them.
//!
//! The steps live beside this module: `claim` (step 1), `settled` (step 3) and `ledger` (the
//! run's row in `followup_runs`: opened, kept alive, closed with its event).

mod claim;
mod ledger;
mod settled;

use std::future::Future;
use std::time::Instant;

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use followup_contract::{FollowupKind, run_key};
use futures::stream::FuturesUnordered;
use futures::{FutureExt, StreamExt};
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::delivery::{Delivery, Sender};
use crate::due::{release_run_claims, release_stale_claims};
use crate::metrics::ProducerMetrics;
use claim::claim_batch;
use ledger::{Heartbeat, finish_run, open_run};
use settled::record_settled;

/// What started a run.
#[derive(Debug, Clone)]
pub enum RunTrigger {
    /// A cron firing; the slot is the scheduled instant in `FOLLOWUP_TZ`.
    Schedule { slot: DateTime<Tz> },
    /// `run-once` or an operator.
    Manual,
}

/// Everything a run needs besides the database.
#[derive(Debug, Clone)]
pub struct RunRequest {
    pub trigger: RunTrigger,
    /// The run's clock (injected in tests).
    pub now: DateTime<Utc>,
    pub tz: Tz,
    pub batch_size: i64,
}

/// The counts of a completed run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunReport {
    pub run_id: Uuid,
    pub run_key: String,
    pub t3_count: i64,
    pub t7_count: i64,
    pub skipped_count: i64,
    pub error_count: i64,
    pub duration_ms: i64,
}

/// How a run ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RunOutcome {
    Completed(RunReport),
    /// Another replica already took this cron slot.
    SlotTakenElsewhere {
        run_key: String,
    },
}

/// What the steps of one run share.
struct RunContext<'a> {
    pool: &'a PgPool,
    delivery: &'a Delivery,
    metrics: &'a ProducerMetrics,
    request: &'a RunRequest,
    run_id: Uuid,
}

/// Executes one run to completion: returns when every follow-up it claimed is settled.
pub async fn execute_run(
    pool: &PgPool,
    delivery: &Delivery,
    metrics: &ProducerMetrics,
    request: &RunRequest,
    shutdown: &CancellationToken,
) -> Result<RunOutcome, sqlx::Error> {
    let started = Instant::now();
    let run_id = Uuid::new_v4();
    let (key, trigger) = match &request.trigger {
        RunTrigger::Schedule { slot } => (run_key(&slot.to_rfc3339()), "schedule"),
        RunTrigger::Manual => (run_key(&run_id.to_string()), "manual"),
    };
    if !open_run(pool, run_id, &key, trigger, request.now).await? {
        metrics.runs.with_label_values(&["skipped_slot"]).inc();
        tracing::info!(run_key = %key, "slot already run by another replica");
        return Ok(RunOutcome::SlotTakenElsewhere { run_key: key });
    }
    tracing::info!(%run_id, run_key = %key, "follow-up run started");
    for stale in release_stale_claims(pool, delivery.claim_timeout).await? {
        tracing::warn!(
            lead_id = stale.lead_id, kind = %stale.kind, dead_run = %stale.run_id,
            message_id = stale.message_id.as_deref().unwrap_or(""),
            "released the claim of a run that stopped; the follow-up is sent again with the same Message-ID"
        );
    }

    let mut report = RunReport {
        run_id,
        run_key: key,
        t3_count: 0,
        t7_count: 0,
        skipped_count: 0,
        error_count: 0,
        duration_ms: 0,
    };
    let heartbeat = Heartbeat::start(pool.clone(), run_id, delivery.claim_timeout);
    let run = RunContext {
        pool,
        delivery,
        metrics,
        request,
        run_id,
    };
    let delivered = deliver_all(&run, shutdown, &mut report).await;
    // Whatever happened, claims this run still holds were not sent (or, after a database error,
    // not recorded): they are due again.
    match release_run_claims(pool, run_id).await {
        Ok(0) => {}
        Ok(n) => tracing::info!(%run_id, released = n, "unsent follow-ups stay due"),
        Err(err) => tracing::warn!(%run_id, %err, "cannot release claims; a later run will"),
    }
    drop(heartbeat);
    delivered?;

    report.duration_ms = started.elapsed().as_millis() as i64;
    finish_run(pool, request, &report).await?;
    metrics
        .run_duration
        .observe(started.elapsed().as_secs_f64());
    metrics.runs.with_label_values(&["completed"]).inc();
    metrics.last_run.set(Utc::now().timestamp());
    tracing::info!(
        %run_id, t3 = report.t3_count, t7 = report.t7_count, skipped = report.skipped_count,
        errors = report.error_count, duration_ms = report.duration_ms, "follow-up run finished"
    );
    Ok(RunOutcome::Completed(report))
}

/// Claims batch after batch and keeps their deliveries going, recording outcomes as they settle.
async fn deliver_all(
    run: &RunContext<'_>,
    shutdown: &CancellationToken,
    report: &mut RunReport,
) -> Result<(), sqlx::Error> {
    let RunContext {
        pool,
        delivery,
        metrics,
        request,
        run_id,
    } = *run;
    let sender = Sender::new(&delivery.mailer, &delivery.retry, pool, metrics, shutdown);
    let mut flight = FuturesUnordered::new();
    // In flight at most about two batches: claiming goes on while earlier deliveries retry.
    let limit = request.batch_size.max(1) as usize;
    // T+7 first: a lead whose T+3 goes out in this run is then not yet T+7-eligible anyway, and
    // the last_followup_at guard in the claim keeps it so for parallel runs.
    'claiming: for kind in [FollowupKind::T7, FollowupKind::T3] {
        let mut after = 0_i64;
        loop {
            // Stop claiming on shutdown: what is recorded stays, the rest stays due.
            if shutdown.is_cancelled() {
                tracing::warn!(%run_id, "run interrupted by shutdown; remaining leads stay due");
                break 'claiming;
            }
            while flight.len() >= limit {
                let settled = settle(&mut flight, true, limit).await;
                record_settled(run, settled, report).await?;
            }
            let Some(batch) = claim_batch(run, kind, after).await? else {
                break;
            };
            after = batch.last_lead_id;
            report.skipped_count += batch.skipped as i64;
            report.error_count += batch.render_errors as i64;
            metrics
                .skipped
                .with_label_values(&[kind.as_str()])
                .inc_by(batch.skipped as u64);
            metrics.errors.inc_by(batch.render_errors as u64);
            for pending in batch.claimed {
                flight.push(sender.deliver(pending));
            }
            let settled = settle(&mut flight, false, limit).await;
            record_settled(run, settled, report).await?;
        }
    }
    while !flight.is_empty() {
        let settled = settle(&mut flight, true, limit).await;
        record_settled(run, settled, report).await?;
    }
    // Nobody of this run waits any more.
    metrics.mailer_unavailable.set(0);
    Ok(())
}

/// Up to `max` settled deliveries: whatever is ready now, after waiting for one if `wait`.
async fn settle<F>(flight: &mut FuturesUnordered<F>, wait: bool, max: usize) -> Vec<F::Output>
where
    F: Future,
{
    let mut out = Vec::new();
    if wait && let Some(done) = flight.next().await {
        out.push(done);
    }
    while out.len() < max {
        match flight.next().now_or_never() {
            Some(Some(done)) => out.push(done),
            _ => break,
        }
    }
    out
}
