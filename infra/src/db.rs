//! Postgres pool and migrations.

use std::time::Duration;

use anyhow::Context;
use sqlx::PgPool;
use sqlx::migrate::Migrator;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use tokio_util::sync::CancellationToken;

use crate::retry::{Backoff, retry_until};

/// The project's migrations (`migrations/` at the repository root), embedded at compile time.
pub static MIGRATOR: Migrator = sqlx::migrate!("../migrations");

/// Our own bookkeeping table, so a CRM database that itself uses sqlx keeps its history apart.
pub const MIGRATIONS_TABLE: &str = "_followup_migrations";

/// Settings of every session of ours, sent at connect time. Naive CRM timestamps hold UTC, so
/// the session is in UTC (the SQL converts explicitly as well). The CRM's row-level-security
/// policies read the `app.*` settings: our services act as the CRM's system user, so an
/// application role that is not the table owner sees and updates every lead.
pub const SESSION_SETTINGS: [(&str, &str); 5] = [
    ("TimeZone", "UTC"),
    ("app.user_context", "SYSTEM"),
    ("app.role_context", "SYSTEM"),
    ("app.current_user", "SYSTEM"),
    ("app.current_role", "SYSTEM"),
];

/// A pooled connection idle at least this long is pinged before it is handed out.
const IDLE_PING_AFTER: Duration = Duration::from_secs(1);

/// Connects to Postgres, retrying with backoff until it answers or `shutdown` fires, so a
/// service started before its database waits instead of crash-looping.
pub async fn connect_database(
    url: &str,
    max_connections: u32,
    shutdown: &CancellationToken,
) -> anyhow::Result<PgPool> {
    let options: PgConnectOptions = url
        .parse()
        .context("DATABASE_URL is not a valid Postgres URL")?;
    let options = options.options(SESSION_SETTINGS);
    let attempt = || {
        PgPoolOptions::new()
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
            .connect_with(options.clone())
    };
    retry_until(
        shutdown,
        "database not reachable",
        None,
        Backoff::STARTUP,
        attempt,
    )
    .await
    .context("database not reachable before shutdown")
}

/// Applies pending migrations. Safe to run from several processes at once (one at a time passes
/// the migration gate below) and against a CRM database that already has `leads`. With nothing
/// pending it writes nothing, so a service may start as an application role once the owner of
/// the CRM's tables has migrated; a role that cannot migrate gets an error naming the fix.
pub async fn migrate_database(pool: &PgPool) -> anyhow::Result<()> {
    let mut migrator = Migrator {
        migrations: MIGRATOR.migrations.clone(),
        ..Migrator::DEFAULT
    };
    migrator.dangerous_set_table_name(MIGRATIONS_TABLE);
    // The gate below keeps our processes apart; sqlx's own blocking lock would bring back the
    // deadlock with CREATE INDEX CONCURRENTLY it exists to avoid.
    migrator.set_locking(false);
    let mut conn = pool
        .acquire()
        .await
        .context("a connection for the migrations")?;
    let mut applied = applied_migrations(&mut conn).await?;
    accept_rewritten_migrations(&mut conn, &migrator, &mut applied).await?;
    if pending_count(&migrator, &applied) == 0 {
        return Ok(());
    }
    drop(conn);
    let mut gate = enter_migration_gate(pool).await?;
    let result = run_pending(&mut gate, &migrator).await;
    leave_migration_gate(gate).await;
    result
}

/// Session advisory lock that lets one process at a time migrate (the key spells "FUPMIGRT").
const MIGRATION_GATE_KEY: i64 = 0x4655_504d_4947_5254;

/// Waits for the migration gate by polling `pg_try_advisory_lock` on a connection of its own.
/// Not sqlx's blocking `pg_advisory_lock`: a session blocked in that statement holds a snapshot,
/// `CREATE INDEX CONCURRENTLY` in the migrating session waits for every older snapshot, and the
/// two deadlock (three services starting together on a fresh database did).
async fn enter_migration_gate(
    pool: &PgPool,
) -> anyhow::Result<sqlx::pool::PoolConnection<sqlx::Postgres>> {
    let mut conn = pool
        .acquire()
        .await
        .context("a connection for the migration gate")?;
    let started = std::time::Instant::now();
    let mut told = false;
    loop {
        let got: bool = sqlx::query_scalar("SELECT pg_try_advisory_lock($1)")
            .bind(MIGRATION_GATE_KEY)
            .fetch_one(&mut *conn)
            .await
            .context("taking the migration gate")?;
        if got {
            return Ok(conn);
        }
        if !told && started.elapsed() > Duration::from_secs(5) {
            tracing::info!("waiting for another process to finish applying the migrations");
            told = true;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn leave_migration_gate(mut conn: sqlx::pool::PoolConnection<sqlx::Postgres>) {
    let released = sqlx::query("SELECT pg_advisory_unlock($1)")
        .bind(MIGRATION_GATE_KEY)
        .execute(&mut *conn)
        .await;
    if released.is_err() {
        // The lock lives as long as the session: do not hand this connection out again.
        conn.detach();
    }
}

/// Runs what is still pending once inside the gate (another process may have done it all), on
/// the gate's own connection, so a pool of one connection suffices.
async fn run_pending(gate: &mut sqlx::PgConnection, migrator: &Migrator) -> anyhow::Result<()> {
    if pending_count(migrator, &applied_migrations(gate).await?) == 0 {
        return Ok(());
    }
    // `run_direct` takes the connection itself (`run(&mut conn)` makes the future not `Send`
    // for every lifetime: sqlx's own workaround, public for this).
    if let Err(err) = migrator.run_direct(None, gate, false).await {
        let role: String = sqlx::query_scalar("SELECT current_user::text")
            .fetch_one(&mut *gate)
            .await
            .unwrap_or_else(|_| "?".to_owned());
        let text = err.to_string();
        if text.contains("must be owner") || text.contains("permission denied") {
            anyhow::bail!(
                "applying database migrations as role {role}: {text}. Migrations must be applied \
                 by the owner of the CRM's tables: run `followup-producer migrate --grant-to \
                 {role}` once with the owner's DATABASE_URL, then start the services as {role}"
            );
        }
        return Err(err).context("applying database migrations");
    }
    Ok(())
}

/// `(version, checksum)` of every migration this database applied; none before the first.
async fn applied_migrations(conn: &mut sqlx::PgConnection) -> anyhow::Result<Vec<(i64, Vec<u8>)>> {
    let exists: bool = sqlx::query_scalar("SELECT to_regclass($1) IS NOT NULL")
        .bind(MIGRATIONS_TABLE)
        .fetch_one(&mut *conn)
        .await
        .context("looking for the migrations table")?;
    if !exists {
        return Ok(Vec::new());
    }
    sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT version, checksum FROM {MIGRATIONS_TABLE} WHERE success"
    )))
    .fetch_all(&mut *conn)
    .await
    .context("reading the migrations table")
}

/// How many of our migrations are not among `applied` with the same checksum.
fn pending_count(migrator: &Migrator, applied: &[(i64, Vec<u8>)]) -> usize {
    migrator
        .migrations
        .iter()
        .filter(|m| {
            !applied
                .iter()
                .any(|(v, c)| *v == m.version && c.as_slice() == m.checksum.as_ref())
        })
        .count()
}

/// Grants `role` what the services need to run as it (see `20261202000005_crm_access.sql`).
/// Run by the owner of the CRM's tables after migrating.
pub async fn grant_app_role(pool: &PgPool, role: &str) -> anyhow::Result<()> {
    sqlx::query("SELECT followup_grant_app_role($1)")
        .bind(role)
        .execute(pool)
        .await
        .with_context(|| format!("granting role {role} what the services need"))?;
    Ok(())
}

/// Why this process's role cannot work on the CRM's data, checked at start: the CRM holds leads
/// but row-level security shows this role none, or the role may not update them.
pub async fn check_crm_access(pool: &PgPool) -> anyhow::Result<()> {
    let (role, held, visible, may_update): (String, bool, bool, bool) = sqlx::query_as(
        "SELECT current_user::text, followup_crm_holds_leads(), EXISTS (SELECT 1 FROM leads),
                has_table_privilege('leads', 'SELECT') AND has_table_privilege('leads', 'UPDATE')",
    )
    .fetch_one(pool)
    .await
    .context("checking access to the CRM's leads")?;
    if !may_update {
        anyhow::bail!(
            "role {role} may not read and update the CRM's leads: as the owner of the CRM's \
             tables, run `followup-producer migrate --grant-to {role}`"
        );
    }
    // An interrupted CREATE INDEX CONCURRENTLY leaves an INVALID index that IF NOT EXISTS skips.
    let invalid: Vec<String> = sqlx::query_scalar(
        "SELECT c.relname::text FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid
         WHERE NOT i.indisvalid AND c.relname IN ('followup_leads_active_idx',
                                                  'followup_activities_followups_idx')",
    )
    .fetch_all(pool)
    .await
    .context("checking our indexes")?;
    for index in invalid {
        tracing::warn!(
            index,
            "index left INVALID by an interrupted build: as the owner, DROP INDEX CONCURRENTLY \
             it and run the CREATE INDEX CONCURRENTLY of its migration file again \
             (migrations/20261202000002_*.sql or 20261202000006_*.sql)"
        );
    }
    if held && !visible {
        anyhow::bail!(
            "role {role} sees no leads although the CRM holds some: the CRM's row-level security \
             hides them. Our sessions set app.user_context, app.role_context, app.current_user \
             and app.current_role to SYSTEM; make the CRM's policies admit role_context SYSTEM \
             (as its production policies do), or run the services as the owner of the CRM's tables"
        );
    }
    Ok(())
}

/// Migrations, then the access check: what every service does with its pool at start.
pub async fn prepare_database(pool: &PgPool) -> anyhow::Result<()> {
    migrate_database(pool).await?;
    check_crm_access(pool).await
}

/// Migrations whose text was rewritten after release, with the checksum of the earlier text.
/// 20261129000001 added columns to an existing `leads` table; its new text never touches an
/// existing CRM table. 20261129000002 created a trigger whose WHEN clause named CRM columns. A
/// database that applied the earlier text keeps what it did (the next migrations handle both
/// shapes) and takes the new checksum, as Flyway's `repair` would.
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

/// Gives the rows of `applied` that hold an earlier text's checksum the current one, in the
/// database and in `applied`. Only writes when there is such a row: an application role may read
/// the history but not write it.
async fn accept_rewritten_migrations(
    conn: &mut sqlx::PgConnection,
    migrator: &Migrator,
    applied: &mut [(i64, Vec<u8>)],
) -> anyhow::Result<()> {
    for (version, earlier) in REWRITTEN {
        let Some(current) = migrator.migrations.iter().find(|m| m.version == *version) else {
            continue;
        };
        let earlier = hex::decode(earlier).expect("checksum constant is hex");
        let Some(row) = applied
            .iter_mut()
            .find(|(v, c)| v == version && *c == earlier)
        else {
            continue;
        };
        let repaired = sqlx::query(sqlx::AssertSqlSafe(format!(
            "UPDATE {MIGRATIONS_TABLE} SET checksum = $1 WHERE version = $2 AND checksum = $3"
        )))
        .bind(current.checksum.as_ref())
        .bind(version)
        .bind(&earlier)
        .execute(&mut *conn)
        .await
        .context(
            "accepting a rewritten migration (only the owner of the CRM's tables may: run \
             `followup-producer migrate` with the owner's DATABASE_URL)",
        )?;
        row.1 = current.checksum.to_vec();
        // Zero rows: another process starting beside this one repaired it first.
        if repaired.rows_affected() > 0 {
            tracing::info!(
                version,
                "migration text was rewritten since it was applied here; checksum updated"
            );
        }
    }
    Ok(())
}
