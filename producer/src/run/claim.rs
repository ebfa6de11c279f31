//! Step 1 of a run: claiming a batch of due leads in one short transaction, so the row locks on
//! `leads` are released before any mail is sent.

use std::collections::HashSet;

use followup_contract::FollowupKind;

use super::RunContext;
use crate::delivery::Pending;
use crate::due::{Claim, claim_due_leads, insert_claims};

/// A claimed batch: the follow-ups to send, and what was left out.
pub(super) struct ClaimedBatch {
    /// The highest lead id the batch looked at: the next batch starts above it.
    pub(super) last_lead_id: i64,
    pub(super) claimed: Vec<Pending>,
    pub(super) skipped: usize,
    pub(super) render_errors: usize,
}

/// Claims one batch in a short transaction: selects due leads, renders their e-mails, inserts a
/// pending delivery record per follow-up to send. `None` when nothing is due above `after`.
pub(super) async fn claim_batch(
    run: &RunContext<'_>,
    kind: FollowupKind,
    after: i64,
) -> Result<Option<ClaimedBatch>, sqlx::Error> {
    let RunContext {
        pool,
        delivery,
        request,
        run_id,
        ..
    } = *run;
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
