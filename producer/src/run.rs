//! One follow-up run: claim due leads batch by batch, deliver, record, and close the run with a
//! `lead.followup.processed.v1` event. Each batch is one transaction, so a crash loses nothing
//! that was committed and re-claims nothing that was.

use std::time::Instant;

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use followup_contract::{EventType, FollowupKind, FollowupProcessed, run_key};
use futures::StreamExt;
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::due::claim_due_leads;
use crate::mailer::{Mailer, SendError};
use crate::metrics::ProducerMetrics;
use crate::record::{FailedFollowup, SentFollowup, record_failed, record_sent};
use crate::template::render_email;

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

/// How many deliveries of one batch are in flight at once.
const SEND_CONCURRENCY: usize = 16;

/// Executes one run to completion.
pub async fn execute_run(
    pool: &PgPool,
    mailer: &Mailer,
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

    let mut report = RunReport {
        run_id,
        run_key: key,
        t3_count: 0,
        t7_count: 0,
        skipped_count: 0,
        error_count: 0,
        duration_ms: 0,
    };
    // T+7 first: a lead whose T+3 goes out in this run is then not yet T+7-eligible anyway, and
    // the last_followup_at guard in the claim keeps it so for parallel runs.
    for kind in [FollowupKind::T7, FollowupKind::T3] {
        let mut after = 0_i64;
        while let Some(batch) = process_batch(pool, mailer, request, run_id, kind, after).await? {
            // Stop between batches on shutdown: what is committed stays, the rest stays due.
            after = batch.last_lead_id;
            let (sent, skipped, failed) =
                (batch.sent as i64, batch.skipped as i64, batch.failed as i64);
            match kind {
                FollowupKind::T3 => report.t3_count += sent,
                FollowupKind::T7 => report.t7_count += sent,
            }
            report.skipped_count += skipped;
            report.error_count += failed;
            metrics
                .processed
                .with_label_values(&["email", kind.as_str()])
                .inc_by(sent as u64);
            metrics
                .skipped
                .with_label_values(&[kind.as_str()])
                .inc_by(skipped as u64);
            metrics.errors.inc_by(failed as u64);
            if shutdown.is_cancelled() {
                tracing::warn!(%run_id, "run interrupted by shutdown; remaining leads stay due");
                break;
            }
        }
    }
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

struct BatchResult {
    last_lead_id: i64,
    sent: usize,
    skipped: usize,
    failed: usize,
}

/// Claims one batch, delivers it and records the outcomes in the same transaction. `None` when
/// nothing is due above `after`.
async fn process_batch(
    pool: &PgPool,
    mailer: &Mailer,
    request: &RunRequest,
    run_id: Uuid,
    kind: FollowupKind,
    after: i64,
) -> Result<Option<BatchResult>, sqlx::Error> {
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
    let outcomes: Vec<_> = futures::stream::iter(sendable)
        .map(|lead| async move {
            let email = render_email(&lead, kind, local_now);
            let result = mailer.send(&email).await;
            (lead, email, result)
        })
        .buffered(SEND_CONCURRENCY)
        .collect()
        .await;
    let mut sent = Vec::new();
    let mut failed = Vec::new();
    for (lead, email, result) in outcomes {
        match result {
            Ok(()) => sent.push(SentFollowup {
                lead_id: lead.id,
                owner_user_id: lead.owner_user_id,
                message_id: email.message_id,
                attempts: 1,
            }),
            Err(err) => {
                let reason = match &err {
                    SendError::Temporary(r) | SendError::Permanent(r) => r.clone(),
                };
                tracing::warn!(lead_id = lead.id, kind = kind.as_str(), %err, "follow-up failed");
                failed.push(FailedFollowup {
                    lead_id: lead.id,
                    owner_user_id: lead.owner_user_id,
                    reason,
                    attempts: 1,
                });
            }
        }
    }
    if let Err(err) = mailer.flush() {
        // Unflushed output may be lost: record nothing of this batch, it stays due.
        tracing::error!(%err, "mailer flush failed; batch rolled back");
        tx.rollback().await?;
        return Ok(Some(BatchResult {
            last_lead_id,
            sent: 0,
            skipped: skipped.len(),
            failed: 0,
        }));
    }
    // Recorded at the later of the run clock and the database clock, so a parallel run that
    // started before this commit sees the T+3 as "this run" and leaves the T+7 for later.
    let at = request.now.max(Utc::now());
    record_sent(&mut tx, kind, run_id, at, &sent).await?;
    record_failed(&mut tx, kind, run_id, at, &failed).await?;
    tx.commit().await?;
    Ok(Some(BatchResult {
        last_lead_id,
        sent: sent.len(),
        skipped: skipped.len(),
        failed: failed.len(),
    }))
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
