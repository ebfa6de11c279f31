//! Which of several `serve` projectors consumes: the one holding the consumer lock, a session
//! advisory lock on a dedicated connection (as the producer's relay does). The others stand by
//! and take it when that connection closes — a SIGKILLed or crashed projector's connection is
//! closed by its kernel, so Postgres releases the lock at once.
//!
//! Why one at a time, although two would be exact: two projectors on the durable `projector`
//! split its batches and commit them under [`crate::apply::APPLY_LOCK_KEY`] in whatever order
//! they get the lock; the figures stay exact (each transaction folds over what the previous one
//! committed, a lead's largest sequence wins; `tests/it/replicas.rs` shows it, and fails without
//! the apply lock), but the folding is no longer in stream order: the day a pending change or a
//! conversion is booked on, and which scopes get a zero row, then depend on commit order, so a
//! rebuild no longer reproduces the rows; and the second projector adds no throughput, since
//! every batch waits for the same lock (bench/results/2026-11-30-replicas.md). So the lock
//! exists for stream order, not for exactness: if it is ever held twice (its connection failed
//! and another projector took it before this one noticed), the projection stays exact.

use std::time::Duration;

use sqlx::{ConnectOptions, Connection, PgConnection, PgPool};
use tokio_util::sync::CancellationToken;

/// Advisory lock held, on its own connection, by the projector that consumes.
pub const CONSUMER_LOCK_KEY: i64 = 0x4650_5052_4f4a_0003;

/// How often a standby tries to take the lock: the longest a failover waits for it.
pub(crate) const STANDBY_POLL: Duration = Duration::from_millis(500);

/// How often the holder checks that its lock connection is alive.
const HOLD_CHECK: Duration = Duration::from_secs(1);

/// How often the holder tries to reconnect and take the lock again after its connection failed
/// (faster than [`STANDBY_POLL`], so after a database restart the holder usually keeps it).
const RETAKE: Duration = Duration::from_millis(200);

/// The dedicated connection of the consumer lock (opened on first use, not from the pool: a
/// pooled connection would go back to the pool holding the lock).
pub(crate) struct ConsumerLock {
    pool: PgPool,
    conn: Option<PgConnection>,
}

impl ConsumerLock {
    pub(crate) fn new(pool: PgPool) -> ConsumerLock {
        ConsumerLock { pool, conn: None }
    }

    /// Takes the lock if it is free (or already ours); connects first when needed. An error
    /// drops the connection (and with it the lock, if it was held).
    pub(crate) async fn try_take(&mut self) -> sqlx::Result<bool> {
        let result = async {
            if self.conn.is_none() {
                self.conn = Some(self.pool.connect_options().connect().await?);
            }
            let conn = self.conn.as_mut().expect("connected above");
            sqlx::query_scalar("SELECT pg_try_advisory_lock($1)")
                .bind(CONSUMER_LOCK_KEY)
                .fetch_one(conn)
                .await
        }
        .await;
        if result.is_err() {
            self.conn = None;
        }
        result
    }

    /// Gives the lock up (closing its connection, or dropping it when the server does not
    /// answer within a second: the socket closes either way).
    pub(crate) async fn release(&mut self) {
        if let Some(conn) = self.conn.take() {
            let _ = tokio::time::timeout(Duration::from_secs(1), conn.close()).await;
        }
    }

    /// Whether the lock's connection answers (then the lock is still held).
    async fn alive(&mut self) -> bool {
        match self.conn.as_mut() {
            Some(conn) => conn.ping().await.is_ok(),
            None => false,
        }
    }
}

/// Watches the held lock until `stop` fires, then hands it back. When its connection fails, it
/// reconnects and takes the lock again; while the database is away it keeps trying (this
/// projector keeps its batch in hand, retrying it, as it always does). Only when another
/// projector holds the lock by then does it fire `stop`, so this one stands by.
pub(crate) async fn hold(mut lock: ConsumerLock, stop: CancellationToken) -> ConsumerLock {
    loop {
        tokio::select! {
            _ = stop.cancelled() => return lock,
            _ = tokio::time::sleep(HOLD_CHECK) => {}
        }
        let alive = tokio::select! {
            _ = stop.cancelled() => return lock,
            alive = lock.alive() => alive,
        };
        if alive {
            continue;
        }
        lock.release().await;
        tracing::warn!("the consumer lock's connection failed; taking the lock again");
        loop {
            let taken = tokio::select! {
                _ = stop.cancelled() => return lock,
                taken = lock.try_take() => taken,
            };
            match taken {
                Ok(true) => {
                    tracing::info!("consumer lock taken again");
                    break;
                }
                Ok(false) => {
                    tracing::warn!("another projector took the consumer lock; standing by");
                    stop.cancel();
                    return lock;
                }
                Err(err) => tracing::debug!(error = %err, "consumer lock: database not reachable"),
            }
            tokio::select! {
                _ = stop.cancelled() => return lock,
                _ = tokio::time::sleep(RETAKE) => {}
            }
        }
    }
}
