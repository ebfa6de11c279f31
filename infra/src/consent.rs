//! Consent changes that do not come from the CRM's UI: the unsubscribe link in every follow-up.
//! The gateway verifies the link's signature (`followup_contract::UnsubscribeParams::verify`)
//! and then calls [`withdraw_consent`].

use sqlx::PgPool;

/// What [`withdraw_consent`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConsentWithdrawal {
    /// E-mail consent was not withdrawn and is now.
    Withdrawn,
    /// It was withdrawn already (`consent_revoked_at` set); nothing written.
    AlreadyWithdrawn,
    /// No such lead (deleted since the mail went out); nothing written.
    UnknownLead,
}

/// Who the CRM sees as having withdrawn the consent (`leads.consent_revoked_by`).
pub const REVOKED_BY: &str = "followup-unsubscribe";

/// Records the lead's withdrawal of e-mail consent where the CRM looks for it, in one
/// transaction: `consent_revoked_at`/`consent_revoked_by` on the lead (with
/// `metadata.emailConsent = false` for older readers, `version` incremented so a CRM form loaded
/// before fails its optimistic lock instead of restoring the consent) and an EMAIL OPT_OUT row in
/// `lead_consent`. `contact_blocked` stays as it was: the link withdraws e-mail only, not every
/// channel. The triggers turn it into a `lead.changed.v1` with `contactable = false`; the producer
/// reads the contactable rule when it claims a lead and again before every send. Idempotent.
pub async fn withdraw_consent(
    pool: &PgPool,
    lead_id: i64,
) -> Result<ConsentWithdrawal, sqlx::Error> {
    let mut tx = pool.begin().await?;
    let revoked: Option<bool> = sqlx::query_scalar(
        "SELECT consent_revoked_at IS NOT NULL FROM leads WHERE id = $1 FOR UPDATE",
    )
    .bind(lead_id)
    .fetch_optional(&mut *tx)
    .await?;
    let outcome = match revoked {
        None => ConsentWithdrawal::UnknownLead,
        Some(true) => ConsentWithdrawal::AlreadyWithdrawn,
        Some(false) => {
            sqlx::query(
                "UPDATE leads
                 SET consent_revoked_at = now() AT TIME ZONE 'UTC', consent_revoked_by = $2,
                     metadata = jsonb_set(COALESCE(metadata, '{}'::jsonb), '{emailConsent}',
                                          'false'::jsonb),
                     updated_at = now() AT TIME ZONE 'UTC', version = version + 1
                 WHERE id = $1",
            )
            .bind(lead_id)
            .bind(REVOKED_BY)
            .execute(&mut *tx)
            .await?;
            sqlx::query(
                "INSERT INTO lead_consent (lead_id, channel, status, occurred_at)
                 VALUES ($1, 'EMAIL', 'OPT_OUT', now() AT TIME ZONE 'UTC')
                 ON CONFLICT (lead_id, channel)
                 DO UPDATE SET status = 'OPT_OUT', occurred_at = EXCLUDED.occurred_at",
            )
            .bind(lead_id)
            .execute(&mut *tx)
            .await?;
            tracing::info!(
                lead_id,
                "e-mail consent withdrawn through the unsubscribe link"
            );
            ConsentWithdrawal::Withdrawn
        }
    };
    tx.commit().await?;
    Ok(outcome)
}
