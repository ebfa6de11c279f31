//! Bounded growth: the inbox of applied event ids is the one projector table that grows with
//! every event. An id is needed only while a duplicate of its event can still arrive: a
//! redelivery or republish while the event is in the stream (`STREAM_MAX_AGE_DAYS`), or the
//! replay of a dead letter (kept until an operator removes it). Ids applied before both horizons,
//! less a day of margin, are deleted. With no stream retention (0 days) nothing is pruned.
//!
//! What stays exact without the inbox: a `sent` event is also deduplicated by lead and kind
//! (`projection_deliveries`), a `lead.changed.v1` by its sequence, a `processed` event by its run
//! id; the inbox is the first line, these the second.

use std::time::Duration;

use sqlx::PgPool;
use tokio_util::sync::CancellationToken;

/// How often `serve` prunes.
pub const PRUNE_EVERY: Duration = Duration::from_secs(3600);

/// Deletes inbox ids that no duplicate can reach any more; returns how many.
pub async fn prune_inbox(pool: &PgPool, stream_max_age: Option<Duration>) -> sqlx::Result<u64> {
    let Some(max_age) = stream_max_age else {
        return Ok(0);
    };
    let done = sqlx::query(
        "DELETE FROM projection_inbox
         WHERE applied_at < LEAST(
                 now(),
                 COALESCE((SELECT min(dead_lettered_at) FROM projection_dead_letters), now()))
               - make_interval(secs => $1) - interval '1 day'",
    )
    .bind(max_age.as_secs_f64())
    .execute(pool)
    .await?;
    Ok(done.rows_affected())
}

/// Prunes now and every [`PRUNE_EVERY`] until `shutdown`; errors are logged and retried then.
pub async fn prune_until_stopped(
    pool: PgPool,
    stream_max_age: Option<Duration>,
    shutdown: CancellationToken,
) {
    loop {
        match prune_inbox(&pool, stream_max_age).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(deleted = n, "pruned inbox ids no duplicate can reach"),
            Err(err) => tracing::warn!(%err, "pruning the inbox failed; trying again later"),
        }
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(PRUNE_EVERY) => {}
        }
    }
}
