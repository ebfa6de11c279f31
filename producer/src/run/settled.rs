//! Step 3 of a run: recording a group of settled deliveries in one transaction (sent with the
//! lead's flags, activity and event; failed with its event; unsent claims deleted so the
//! follow-up stays due) and counting them in the run's report and the metrics.

use chrono::Utc;
use followup_contract::FollowupKind;

use super::{RunContext, RunReport};
use crate::delivery::{Delivery, Pending, Settled};
use crate::due::release_claims;
use crate::metrics::ProducerMetrics;
use crate::record::{FailedFollowup, SentFollowup, record_failed, record_sent};

/// The kinds in the order their outcomes are written and counted.
const KINDS: [FollowupKind; 2] = [FollowupKind::T3, FollowupKind::T7];

/// Settled deliveries of one kind, sorted by what is written for them.
#[derive(Default)]
struct KindOutcomes {
    sent: Vec<SentFollowup>,
    failed: Vec<FailedFollowup>,
    /// Leads whose claim is deleted: the follow-up stays due.
    unsent: Vec<i64>,
    /// Of `unsent`, the follow-ups withdrawn before sending (counted as skipped).
    withdrawn: u64,
}

/// A group of settled deliveries, per kind (T+3, T+7).
#[derive(Default)]
struct Outcomes([KindOutcomes; 2]);

impl Outcomes {
    fn of(&self, kind: FollowupKind) -> &KindOutcomes {
        &self.0[slot(kind)]
    }

    fn of_mut(&mut self, kind: FollowupKind) -> &mut KindOutcomes {
        &mut self.0[slot(kind)]
    }
}

fn slot(kind: FollowupKind) -> usize {
    match kind {
        FollowupKind::T3 => 0,
        FollowupKind::T7 => 1,
    }
}

/// How many follow-ups of one kind the transaction recorded as sent and as failed.
#[derive(Default, Clone, Copy)]
struct Recorded {
    sent: usize,
    failed: usize,
}

/// Records settled deliveries in one transaction and counts them.
pub(super) async fn record_settled(
    run: &RunContext<'_>,
    settled: Vec<(Pending, Settled)>,
    report: &mut RunReport,
) -> Result<(), sqlx::Error> {
    if settled.is_empty() {
        return Ok(());
    }
    let mut outcomes = sort_outcomes(settled);
    flush_mailer(run.delivery, &mut outcomes);
    let recorded = write_outcomes(run, &outcomes).await?;
    count_outcomes(run.metrics, &outcomes, recorded, report);
    Ok(())
}

/// Sorts settled deliveries by kind and outcome (and logs the failures).
fn sort_outcomes(settled: Vec<(Pending, Settled)>) -> Outcomes {
    let mut outcomes = Outcomes::default();
    for (pending, outcome) in settled {
        let of_kind = outcomes.of_mut(pending.kind);
        match outcome {
            Settled::Sent { attempts } => of_kind.sent.push(SentFollowup {
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
                of_kind.failed.push(FailedFollowup {
                    lead_id: pending.lead_id,
                    owner_user_id: pending.owner_user_id,
                    reason,
                    attempts,
                });
            }
            Settled::Withdrawn => {
                of_kind.withdrawn += 1;
                of_kind.unsent.push(pending.lead_id);
            }
            Settled::Released => of_kind.unsent.push(pending.lead_id),
        }
    }
    outcomes
}

/// Flushes the mailer when anything was sent; if that fails, the sent follow-ups become unsent.
fn flush_mailer(delivery: &Delivery, outcomes: &mut Outcomes) {
    if outcomes.0.iter().any(|o| !o.sent.is_empty())
        && let Err(err) = delivery.mailer.flush()
    {
        // Unflushed output may be lost: record none of it as sent, it stays due.
        tracing::error!(%err, "mailer flush failed; these follow-ups stay due");
        for of_kind in &mut outcomes.0 {
            let sent = of_kind.sent.drain(..).map(|s| s.lead_id);
            of_kind.unsent.extend(sent);
        }
    }
}

/// Writes the outcomes in one transaction, after locking their leads; returns what each kind
/// recorded.
async fn write_outcomes(
    run: &RunContext<'_>,
    outcomes: &Outcomes,
) -> Result<[Recorded; 2], sqlx::Error> {
    // Recorded at the later of the run clock and the database clock, so a parallel run that
    // started before this commit sees the T+3 as "this run" and leaves the T+7 for later.
    let at = run.request.now.max(Utc::now());
    let mut tx = run.pool.begin().await?;
    // Lock order: `leads` before `followup_deliveries`, as the claim takes them. A claim may hold
    // a lead row it then finds claimed already, and waits on that lead's delivery record; were the
    // record step to update delivery records first and leads second, the two would deadlock.
    let mut lead_ids: Vec<i64> = outcomes
        .0
        .iter()
        .flat_map(|o| &o.sent)
        .map(|s| s.lead_id)
        .chain(outcomes.0.iter().flat_map(|o| &o.failed).map(|f| f.lead_id))
        .collect();
    lead_ids.sort_unstable();
    lead_ids.dedup();
    sqlx::query("SELECT 1 FROM leads WHERE id = ANY($1) ORDER BY id FOR UPDATE")
        .bind(&lead_ids)
        .execute(&mut *tx)
        .await?;
    let mut recorded = [Recorded::default(); 2];
    for kind in KINDS {
        let of_kind = outcomes.of(kind);
        recorded[slot(kind)] = Recorded {
            sent: record_sent(&mut tx, kind, run.run_id, at, &of_kind.sent).await?,
            failed: record_failed(&mut tx, kind, run.run_id, at, &of_kind.failed).await?,
        };
        release_claims(&mut tx, kind, run.run_id, &of_kind.unsent).await?;
    }
    tx.commit().await?;
    Ok(recorded)
}

/// Adds what was recorded to the run's report and the metrics.
fn count_outcomes(
    metrics: &ProducerMetrics,
    outcomes: &Outcomes,
    recorded: [Recorded; 2],
    report: &mut RunReport,
) {
    for kind in KINDS {
        let Recorded { sent, failed } = recorded[slot(kind)];
        let (n_sent, n_failed) = (sent as i64, failed as i64);
        let withdrawn = outcomes.of(kind).withdrawn;
        match kind {
            FollowupKind::T3 => report.t3_count += n_sent,
            FollowupKind::T7 => report.t7_count += n_sent,
        }
        report.error_count += n_failed;
        report.skipped_count += withdrawn as i64;
        metrics
            .processed
            .with_label_values(&["email", kind.as_str()])
            .inc_by(n_sent as u64);
        metrics
            .skipped
            .with_label_values(&[kind.as_str()])
            .inc_by(withdrawn);
        metrics.errors.inc_by(n_failed as u64);
    }
}
