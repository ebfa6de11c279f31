//! The run's row in `followup_runs`: taken at the start (one row per cron slot, so only one
//! replica runs a slot), kept alive by a heartbeat while the run holds claims, and closed with
//! the counts and the `lead.followup.processed.v1` event in one transaction.

use std::time::Duration;

use chrono::{DateTime, Utc};
use followup_contract::{EventType, FollowupProcessed};
use sqlx::PgPool;
use uuid::Uuid;

use super::{RunReport, RunRequest};

/// Inserts the run's row; `false` when another run already has `key` (its cron slot).
pub(super) async fn open_run(
    pool: &PgPool,
    run_id: Uuid,
    key: &str,
    trigger: &str,
    now: DateTime<Utc>,
) -> Result<bool, sqlx::Error> {
    let claimed: Option<Uuid> = sqlx::query_scalar(
        "INSERT INTO followup_runs (run_id, run_key, trigger, started_at) VALUES ($1, $2, $3, $4)
         ON CONFLICT (run_key) DO NOTHING RETURNING run_id",
    )
    .bind(run_id)
    .bind(key)
    .bind(trigger)
    .bind(now)
    .fetch_optional(pool)
    .await?;
    Ok(claimed.is_some())
}

/// Keeps `followup_runs.heartbeat_at` fresh while the run holds claims, so no other run mistakes
/// it for dead, however long the mail server makes it wait. Stops when dropped.
pub(super) struct Heartbeat(tokio::task::JoinHandle<()>);

impl Heartbeat {
    /// Beats four times per claim timeout (at most every 100 ms).
    pub(super) fn start(pool: PgPool, run_id: Uuid, claim_timeout: Duration) -> Heartbeat {
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

/// Stores the run's counts and queues its `processed` event in one transaction.
pub(super) async fn finish_run(
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
