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

use std::collections::HashSet;
use std::future::Future;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use followup_contract::{EventType, FollowupKind, FollowupProcessed, run_key};
use futures::stream::FuturesUnordered;
use futures::{FutureExt, StreamExt};
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::delivery::{Delivery, Pending, Sender, Settled};
use crate::due::{
    Claim, claim_due_leads, insert_claims, release_claims, release_run_claims, release_stale_claims,
};
use crate::metrics::ProducerMetrics;
use crate::record::{FailedFollowup, SentFollowup, record_failed, record_sent};

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
    let claimed: Option<Uuid> = sqlx::query_scalar(
        "INSERT INTO followup_runs (run_id, run_key, trigger, started_at) VALUES ($1, $2, $3, $4)
         ON CONFLICT (run_key) DO NOTHING RETURNING run_id",
    )
    .bind(run_id)
    .bind(&key)
    .bind(trigger)
    .bind(request.now)
    .fetch_optional(pool)
    .await?;
    if claimed.is_none() {
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
    let delivered = deliver_all(
        pool,
        delivery,
        metrics,
        request,
        run_id,
        shutdown,
        &mut report,
    )
    .await;
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
    pool: &PgPool,
    delivery: &Delivery,
    metrics: &ProducerMetrics,
    request: &RunRequest,
    run_id: Uuid,
    shutdown: &CancellationToken,
    report: &mut RunReport,
) -> Result<(), sqlx::Error> {
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
                record_settled(pool, delivery, metrics, request, run_id, settled, report).await?;
            }
            let Some(batch) = claim_batch(pool, delivery, request, run_id, kind, after).await?
            else {
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
            record_settled(pool, delivery, metrics, request, run_id, settled, report).await?;
        }
    }
    while !flight.is_empty() {
        let settled = settle(&mut flight, true, limit).await;
        record_settled(pool, delivery, metrics, request, run_id, settled, report).await?;
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

struct ClaimedBatch {
    last_lead_id: i64,
    claimed: Vec<Pending>,
    skipped: usize,
    render_errors: usize,
}

/// Claims one batch in a short transaction: selects due leads, renders their e-mails, inserts a
/// pending delivery record per follow-up to send. `None` when nothing is due above `after`.
async fn claim_batch(
    pool: &PgPool,
    delivery: &Delivery,
    request: &RunRequest,
    run_id: Uuid,
    kind: FollowupKind,
    after: i64,
) -> Result<Option<ClaimedBatch>, sqlx::Error> {
    let mut tx = pool.begin().await?;
    let leads = claim_due_leads(
        &mut tx,
        kind,
        request.now,
        request.now,
        after,
        request.batch_size,
    )
    .await?;
    let Some(last) = leads.last() else {
        tx.rollback().await?;
        return Ok(None);
    };
    let last_lead_id = last.id;
    let local_now = request.now.with_timezone(&request.tz);
    let (sendable, skipped): (Vec<_>, Vec<_>) =
        leads.into_iter().partition(|l| l.skip_reason().is_none());
    let mut pending = Vec::with_capacity(sendable.len());
    let mut render_errors = 0;
    for lead in sendable {
        match delivery.renderer.render(&lead, kind, local_now) {
            Ok(email) => pending.push(Pending {
                lead_id: lead.id,
                owner_user_id: lead.owner_user_id,
                kind,
                email,
            }),
            Err(err) => {
                // Not claimed: the lead stays due and is tried again by the next run.
                render_errors += 1;
                tracing::error!(lead_id = lead.id, kind = kind.as_str(), %err, "cannot render follow-up");
            }
        }
    }
    let claims: Vec<Claim> = pending
        .iter()
        .map(|p| {
            (
                p.lead_id,
                p.owner_user_id.clone(),
                p.email.message_id.clone(),
            )
        })
        .collect();
    let won: HashSet<i64> = insert_claims(&mut tx, kind, run_id, &claims)
        .await?
        .into_iter()
        .collect();
    tx.commit().await?;
    pending.retain(|p| won.contains(&p.lead_id));
    Ok(Some(ClaimedBatch {
        last_lead_id,
        claimed: pending,
        skipped: skipped.len(),
        render_errors,
    }))
}

/// Records settled deliveries in one transaction and counts them.
async fn record_settled(
    pool: &PgPool,
    delivery: &Delivery,
    metrics: &ProducerMetrics,
    request: &RunRequest,
    run_id: Uuid,
    settled: Vec<(Pending, Settled)>,
    report: &mut RunReport,
) -> Result<(), sqlx::Error> {
    if settled.is_empty() {
        return Ok(());
    }
    let mut sent = [Vec::new(), Vec::new()];
    let mut failed = [Vec::new(), Vec::new()];
    let mut unsent = [Vec::new(), Vec::new()];
    let mut withdrawn = [0_u64, 0_u64];
    let slot = |kind: FollowupKind| match kind {
        FollowupKind::T3 => 0,
        FollowupKind::T7 => 1,
    };
    for (pending, outcome) in settled {
        let i = slot(pending.kind);
        match outcome {
            Settled::Sent { attempts } => sent[i].push(SentFollowup {
                lead_id: pending.lead_id,
                owner_user_id: pending.owner_user_id,
                message_id: pending.email.message_id,
                attempts,
            }),
            Settled::Failed { attempts, reason } => {
                tracing::warn!(
                    lead_id = pending.lead_id, kind = pending.kind.as_str(), attempts, %reason,
                    "follow-up failed"
                );
                failed[i].push(FailedFollowup {
                    lead_id: pending.lead_id,
                    owner_user_id: pending.owner_user_id,
                    reason,
                    attempts,
                });
            }
            Settled::Withdrawn => {
                withdrawn[i] += 1;
                unsent[i].push(pending.lead_id);
            }
            Settled::Released => unsent[i].push(pending.lead_id),
        }
    }
    if sent.iter().any(|s| !s.is_empty())
        && let Err(err) = delivery.mailer.flush()
    {
        // Unflushed output may be lost: record none of it as sent, it stays due.
        tracing::error!(%err, "mailer flush failed; these follow-ups stay due");
        for i in 0..2 {
            unsent[i].extend(sent[i].drain(..).map(|s| s.lead_id));
        }
    }
    // Recorded at the later of the run clock and the database clock, so a parallel run that
    // started before this commit sees the T+3 as "this run" and leaves the T+7 for later.
    let at = request.now.max(Utc::now());
    let mut tx = pool.begin().await?;
    // Lock order: `leads` before `followup_deliveries`, as the claim takes them. A claim may hold
    // a lead row it then finds claimed already, and waits on that lead's delivery record; were the
    // record step to update delivery records first and leads second, the two would deadlock.
    let mut lead_ids: Vec<i64> = sent
        .iter()
        .flatten()
        .map(|s| s.lead_id)
        .chain(failed.iter().flatten().map(|f| f.lead_id))
        .collect();
    lead_ids.sort_unstable();
    lead_ids.dedup();
    sqlx::query("SELECT 1 FROM leads WHERE id = ANY($1) ORDER BY id FOR UPDATE")
        .bind(&lead_ids)
        .execute(&mut *tx)
        .await?;
    let mut counts = [(0, 0), (0, 0)];
    for kind in [FollowupKind::T3, FollowupKind::T7] {
        let i = slot(kind);
        counts[i].0 = record_sent(&mut tx, kind, run_id, at, &sent[i]).await?;
        counts[i].1 = record_failed(&mut tx, kind, run_id, at, &failed[i]).await?;
        release_claims(&mut tx, kind, run_id, &unsent[i]).await?;
    }
    tx.commit().await?;
    for kind in [FollowupKind::T3, FollowupKind::T7] {
        let i = slot(kind);
        let (n_sent, n_failed) = (counts[i].0 as i64, counts[i].1 as i64);
        match kind {
            FollowupKind::T3 => report.t3_count += n_sent,
            FollowupKind::T7 => report.t7_count += n_sent,
        }
        report.error_count += n_failed;
        report.skipped_count += withdrawn[i] as i64;
        metrics
            .processed
            .with_label_values(&["email", kind.as_str()])
            .inc_by(n_sent as u64);
        metrics
            .skipped
            .with_label_values(&[kind.as_str()])
            .inc_by(withdrawn[i]);
        metrics.errors.inc_by(n_failed as u64);
    }
    Ok(())
}

/// Keeps `followup_runs.heartbeat_at` fresh while the run holds claims, so no other run mistakes
/// it for dead, however long the mail server makes it wait. Stops when dropped.
struct Heartbeat(tokio::task::JoinHandle<()>);

impl Heartbeat {
    fn start(pool: PgPool, run_id: Uuid, claim_timeout: Duration) -> Heartbeat {
        let every = (claim_timeout / 4).max(Duration::from_millis(100));
        Heartbeat(tokio::spawn(async move {
            loop {
                tokio::time::sleep(every).await;
                if let Err(err) =
                    sqlx::query("UPDATE followup_runs SET heartbeat_at = now() WHERE run_id = $1")
                        .bind(run_id)
                        .execute(&pool)
                        .await
                {
                    tracing::warn!(%run_id, %err, "run heartbeat failed");
                }
            }
        }))
    }
}

impl Drop for Heartbeat {
    fn drop(&mut self) {
        self.0.abort();
    }
}

async fn finish_run(
    pool: &PgPool,
    request: &RunRequest,
    report: &RunReport,
) -> Result<(), sqlx::Error> {
    let processed_at = request.now.max(Utc::now());
    let data = FollowupProcessed {
        run_id: report.run_id.to_string(),
        t3_count: report.t3_count,
        t7_count: report.t7_count,
        skipped_count: report.skipped_count,
        error_count: report.error_count,
        processed_at,
        duration_ms: report.duration_ms,
    };
    let mut tx = pool.begin().await?;
    sqlx::query(
        "UPDATE followup_runs SET finished_at = $2, t3_count = $3, t7_count = $4,
                skipped_count = $5, error_count = $6, duration_ms = $7 WHERE run_id = $1",
    )
    .bind(report.run_id)
    .bind(processed_at)
    .bind(report.t3_count)
    .bind(report.t7_count)
    .bind(report.skipped_count)
    .bind(report.error_count)
    .bind(report.duration_ms)
    .execute(&mut *tx)
    .await?;
    insert_run_event(&mut tx, processed_at, &report.run_key, &data).await?;
    tx.commit().await
}

async fn insert_run_event(
    conn: &mut sqlx::PgConnection,
    at: DateTime<Utc>,
    key: &str,
    data: &FollowupProcessed,
) -> Result<(), sqlx::Error> {
    let json = serde_json::to_string(data).map_err(|e| sqlx::Error::Encode(Box::new(e)))?;
    sqlx::query(
        // No CloudEvents subject: a run concerns no single lead.
        "INSERT INTO followup_outbox (event_type, subject, idempotency_key, data, occurred_at)
         VALUES ($1, NULL, $2, $3::jsonb, $4)",
    )
    .bind(EventType::Processed.as_str())
    .bind(key)
    .bind(json)
    .bind(at)
    .execute(conn)
    .await?;
    Ok(())
}
