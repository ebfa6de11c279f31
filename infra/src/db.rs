//! Postgres pool and migrations.

use std::time::Duration;

use anyhow::Context;
use sqlx::PgPool;
use sqlx::migrate::Migrator;
use sqlx::postgres::PgPoolOptions;
use tokio_util::sync::CancellationToken;

/// The project's migrations (`migrations/` at the repository root), embedded at compile time.
pub static MIGRATOR: Migrator = sqlx::migrate!("../migrations");

/// Our own bookkeeping table, so a CRM database that itself uses sqlx keeps its history apart.
pub const MIGRATIONS_TABLE: &str = "_followup_migrations";

/// A pooled connection idle at least this long is pinged before it is handed out.
const IDLE_PING_AFTER: Duration = Duration::from_secs(1);

/// Connects to Postgres, retrying with backoff until it answers or `shutdown` fires, so a
/// service started before its database waits instead of crash-looping.
pub async fn connect_database(
    url: &str,
    max_connections: u32,
    shutdown: &CancellationToken,
) -> anyhow::Result<PgPool> {
    let mut delay = Duration::from_millis(200);
    loop {
        let attempt = PgPoolOptions::new()
            .max_connections(max_connections)
            .acquire_timeout(Duration::from_secs(10))
            // sqlx pings every connection before handing it out: one more round trip per
            // request or batch. A connection in steady use is known alive; only one that sat
            // idle for a while (the database may have restarted meanwhile) is pinged.
            .test_before_acquire(false)
            .before_acquire(|conn, meta| {
                Box::pin(async move {
                    if meta.idle_for >= IDLE_PING_AFTER {
                        sqlx::Connection::ping(conn).await?;
                    }
                    Ok(true)
                })
            })
            .connect(url)
            .await;
        match attempt {
            Ok(pool) => return Ok(pool),
            Err(err) => {
                tracing::warn!(error = %err, retry_in_ms = delay.as_millis() as u64, "database not reachable");
                tokio::select! {
                    _ = shutdown.cancelled() => {
                        return Err(err).context("database not reachable before shutdown");
                    }
                    _ = tokio::time::sleep(delay) => {}
                }
                delay = (delay * 2).min(Duration::from_secs(10));
            }
        }
    }
}

/// Applies pending migrations. Safe to run from several processes at once (sqlx takes an
/// advisory lock) and against a CRM database that already has `leads`.
pub async fn migrate_database(pool: &PgPool) -> anyhow::Result<()> {
    let mut migrator = Migrator {
        migrations: MIGRATOR.migrations.clone(),
        ..Migrator::DEFAULT
    };
    migrator.dangerous_set_table_name(MIGRATIONS_TABLE);
    accept_rewritten_migrations(pool, &migrator).await?;
    migrator
        .run(pool)
        .await
        .context("applying database migrations")?;
    Ok(())
}

/// Migrations whose text was rewritten after release, with the checksum of the earlier text.
/// 20261129000001 added columns to an existing `leads` table; its new text never touches an
/// existing CRM table. 20261129000002 created a trigger whose WHEN clause named CRM columns. A database that applied the earlier text keeps what it did (the next
/// migrations handle both shapes) and takes the new checksum, as Flyway's `repair` would.
const REWRITTEN: &[(i64, &str)] = &[
    (
        20261129000001,
        "fe3371cd8aed4d92ba71044e767102700105fe67088e839e464a9de1f07788664cacf67b659f5402f7dca48256387edc",
    ),
    (
        20261129000002,
        "3bbf2c5b62dffebbb3819b649b4e377cf9677e3aa016c6b2aecad123866e911c27ddb8f395db4de97585f5029bf284c9",
    ),
];

async fn accept_rewritten_migrations(pool: &PgPool, migrator: &Migrator) -> anyhow::Result<()> {
    let exists: bool = sqlx::query_scalar("SELECT to_regclass($1) IS NOT NULL")
        .bind(MIGRATIONS_TABLE)
        .fetch_one(pool)
        .await
        .context("reading the migrations table")?;
    if !exists {
        return Ok(());
    }
    for (version, earlier) in REWRITTEN {
        let Some(current) = migrator.migrations.iter().find(|m| m.version == *version) else {
            continue;
        };
        let earlier = hex::decode(earlier).expect("checksum constant is hex");
        let repaired = sqlx::query(sqlx::AssertSqlSafe(format!(
            "UPDATE {MIGRATIONS_TABLE} SET checksum = $1 WHERE version = $2 AND checksum = $3"
        )))
        .bind(current.checksum.as_ref())
        .bind(version)
        .bind(earlier)
        .execute(pool)
        .await
        .context("accepting a rewritten migration")?;
        if repaired.rows_affected() > 0 {
            tracing::info!(
                version,
                "migration text was rewritten since it was applied here; checksum updated"
            );
        }
    }
    Ok(())
}
