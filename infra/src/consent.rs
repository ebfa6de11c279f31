//! Consent changes that do not come from the CRM's UI: the unsubscribe link in every follow-up.
//! The gateway verifies the link's signature (`followup_contract::UnsubscribeParams::verify`)
//! and then calls [`withdraw_consent`].

use sqlx::PgPool;

/// What [`withdraw_consent`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConsentWithdrawal {
    /// `metadata.emailConsent` was not `false` and is now.
    Withdrawn,
    /// It was `false` already; nothing written.
    AlreadyWithdrawn,
    /// No such lead (deleted since the mail went out); nothing written.
    UnknownLead,
}

/// Sets `metadata.emailConsent` of `lead_id` to `false` with a plain `UPDATE` of `leads`, the
/// way any CRM change arrives: the producer reads consent when it claims a lead and again before
/// every retry, so no later follow-up goes out. Consent is not a follow-up-relevant column of
/// `lead.changed.v1` (no cockpit figure depends on it), so the trigger writes no event. Neither
/// `version` (the CRM's optimistic-lock counter) nor any other column is touched besides
/// `updated_at`. Idempotent.
pub async fn withdraw_consent(
    pool: &PgPool,
    lead_id: i64,
) -> Result<ConsentWithdrawal, sqlx::Error> {
    let updated = sqlx::query(
        "UPDATE leads
         SET metadata = jsonb_set(COALESCE(metadata, '{}'::jsonb), '{emailConsent}', 'false'::jsonb),
             updated_at = now()
         WHERE id = $1 AND metadata -> 'emailConsent' IS DISTINCT FROM 'false'::jsonb",
    )
    .bind(lead_id)
    .execute(pool)
    .await?;
    if updated.rows_affected() > 0 {
        tracing::info!(
            lead_id,
            "e-mail consent withdrawn through the unsubscribe link"
        );
        return Ok(ConsentWithdrawal::Withdrawn);
    }
    let exists: bool = sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM leads WHERE id = $1)")
        .bind(lead_id)
        .fetch_one(pool)
        .await?;
    Ok(if exists {
        ConsentWithdrawal::AlreadyWithdrawn
    } else {
        ConsentWithdrawal::UnknownLead
    })
}
