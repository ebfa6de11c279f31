//! The outbox queries both relays share: the lock key that elects the active relay, reading and
//! deleting rows, the backlog, and the error an operator sees on a row that failed to publish.

use sqlx::PgPool;

use super::RelayError;

/// Advisory-lock key that elects the active relay ("FOLLOWUP" in ASCII).
pub(super) const RELAY_LOCK_KEY: i64 = 0x464F_4C4C_4F57_5550;

/// Up to `$2` outbox rows with ids above `$1`, in outbox order (`$1` = 0: from the start).
pub(super) const SELECT_AFTER: &str =
    "SELECT id, event_id, event_type, subject, idempotency_key, data, occurred_at
    FROM followup_outbox WHERE id > $1 ORDER BY id LIMIT $2";

/// Removes acknowledged rows.
pub(super) const DELETE_PUBLISHED: &str = "DELETE FROM followup_outbox WHERE id = ANY($1)";

/// Number of outbox rows not yet published.
pub async fn count_backlog(pool: &PgPool) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar("SELECT count(*) FROM followup_outbox")
        .fetch_one(pool)
        .await
}

/// The highest outbox id so far (0 when empty).
pub async fn last_outbox_id(pool: &PgPool) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar("SELECT COALESCE(max(id), 0) FROM followup_outbox")
        .fetch_one(pool)
        .await
}

/// Records a failed pass on the first unpublished row, for operators reading the outbox.
pub(super) async fn record_publish_error(pool: &PgPool, err: &RelayError) {
    let id = match err {
        RelayError::Publish { id, .. } => *id,
        RelayError::Database(_) => return,
    };
    let result = sqlx::query(
        "UPDATE followup_outbox SET publish_attempts = publish_attempts + 1, last_error = $2 WHERE id = $1",
    )
    .bind(id)
    .bind(err.to_string())
    .execute(pool)
    .await;
    if let Err(e) = result {
        tracing::warn!(error = %e, "cannot record relay error");
    }
}
