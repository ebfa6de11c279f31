//! `rebuild`: builds the projection again in the shadow schema `projection_rebuild` — a snapshot
//! of the CRM's current state, then the whole stream — while `serve` keeps the live tables up,
//! then swaps them in.
//!
//! Coexistence with a running `serve`: the shadow tables are created from the same migration
//! file and written by the same apply code (through `search_path`). After the stream's last
//! sequence at start, the rebuild catches up to the position the live projection recorded,
//! then takes the projection's advisory lock (so `serve` pauses before its next transaction),
//! catches up the last few messages, and swaps the tables schema by schema in that one
//! transaction. Messages the live projection had not applied yet are applied by `serve` after
//! the swap; ones the shadow already has are duplicates by its inbox. Dead letters are not part
//! of the projection and stay as they are. A second rebuild at the same time is refused.

use std::time::Duration;

use anyhow::{Context, bail};
use async_nats::jetstream::{self, consumer};
use chrono::NaiveDate;
use chrono_tz::Tz;
use followup_contract::STREAM_NAME;
use followup_readmodel::local_date;
use sqlx::{Connection, PgConnection, PgPool};

use crate::apply::{apply_messages, lock_projection};
use crate::consume::{ack_all, fetch_batch, to_inbound};
use crate::fold::Outcome;
use crate::snapshot::{begin_snapshot, write_snapshot};

/// The projection's DDL: its migration files, run again inside the shadow schema.
const PROJECTION_DDL: &str = concat!(
    include_str!("../../migrations/20261129000003_projection.sql"),
    "\n",
    include_str!("../../migrations/20261202000004_projection_contactable.sql"),
    "\n",
    include_str!("../../migrations/20261204000002_projection_insights.sql"),
    "\n",
    include_str!("../../migrations/20261205000001_projection_user_lists.sql"),
    "\n",
    include_str!("../../migrations/20261206000002_projection_co_members_on_demand.sql"),
);
/// Session advisory lock that keeps a second rebuild out.
const REBUILD_LOCK_KEY: i64 = 0x4650_5052_4f4a_0002;

const SWAP_SQL: &str = "
DROP SCHEMA IF EXISTS projection_retired CASCADE;
CREATE SCHEMA projection_retired;
ALTER TABLE public.projection_inbox SET SCHEMA projection_retired;
ALTER TABLE public.projection_leads SET SCHEMA projection_retired;
ALTER TABLE public.projection_collaborations SET SCHEMA projection_retired;
ALTER TABLE public.projection_deliveries SET SCHEMA projection_retired;
ALTER TABLE public.projection_scope_figures SET SCHEMA projection_retired;
ALTER TABLE public.projection_scope_days SET SCHEMA projection_retired;
ALTER TABLE public.projection_runs SET SCHEMA projection_retired;
ALTER TABLE public.projection_state SET SCHEMA projection_retired;
ALTER TABLE projection_rebuild.projection_inbox SET SCHEMA public;
ALTER TABLE projection_rebuild.projection_leads SET SCHEMA public;
ALTER TABLE projection_rebuild.projection_collaborations SET SCHEMA public;
ALTER TABLE projection_rebuild.projection_deliveries SET SCHEMA public;
ALTER TABLE projection_rebuild.projection_scope_figures SET SCHEMA public;
ALTER TABLE projection_rebuild.projection_scope_days SET SCHEMA public;
ALTER TABLE projection_rebuild.projection_runs SET SCHEMA public;
ALTER TABLE projection_rebuild.projection_state SET SCHEMA public;
-- The rebuilt tables get the grants the replaced ones had (services running as an application
-- role keep their rights).
DO $grants$
DECLARE
    g RECORD;
BEGIN
    FOR g IN SELECT table_name, grantee, privilege_type
             FROM information_schema.role_table_grants
             WHERE table_schema = 'projection_retired' AND grantee <> current_user
    LOOP
        EXECUTE format('GRANT %s ON public.%I TO %s', g.privilege_type, g.table_name,
                       CASE WHEN g.grantee = 'PUBLIC' THEN 'PUBLIC'
                            ELSE quote_ident(g.grantee) END);
    END LOOP;
END $grants$;
";

/// Where a rebuild is, reported after every batch.
#[derive(Debug, Clone, Copy)]
pub struct RebuildProgress {
    /// `build` (up to the stream's end at start), `catch-up` or `swap`.
    pub phase: &'static str,
    /// Stream sequence applied so far.
    pub position: u64,
    /// Sequence this phase runs to.
    pub target: u64,
    /// Messages applied so far.
    pub messages: u64,
    /// Messages skipped as not applicable (dead letters in the live table).
    pub skipped: u64,
}

/// Rebuilds the projection and swaps it in; returns the final progress.
pub async fn rebuild_projection(
    pool: &PgPool,
    js: &jetstream::Context,
    tz: Tz,
    batch_size: usize,
    on_progress: &mut (dyn FnMut(&RebuildProgress) + Send),
) -> anyhow::Result<RebuildProgress> {
    let mut guard = pool.acquire().await?.detach();
    let locked: bool = sqlx::query_scalar("SELECT pg_try_advisory_lock($1)")
        .bind(REBUILD_LOCK_KEY)
        .fetch_one(&mut guard)
        .await?;
    if !locked {
        bail!("another rebuild is running");
    }
    let mut shadow = pool.acquire().await?.detach();
    create_shadow_tables(&mut shadow).await?;
    // Snapshot, then stream: the CRM's current state first, then every message the stream still
    // holds (older ones apply over the snapshot harmlessly; see `snapshot`), so a stream whose
    // older events expired rebuilds the same figures.
    let mut snapshot = begin_snapshot(&mut shadow).await?;
    let snapshot_at = chrono::Utc::now();
    write_snapshot(&mut snapshot, tz, snapshot_at)
        .await
        .context("taking the snapshot of the CRM")?;
    snapshot.commit().await?;

    let mut stream = js
        .get_stream(STREAM_NAME)
        .await
        .context("looking up the stream")?;
    let target = stream
        .info()
        .await
        .context("stream info")?
        .state
        .last_sequence;
    let reader = stream
        .create_consumer(consumer::pull::Config {
            deliver_policy: consumer::DeliverPolicy::All,
            ack_policy: consumer::AckPolicy::Explicit,
            max_ack_pending: i64::try_from(batch_size * 2).unwrap_or(i64::MAX),
            inactive_threshold: Duration::from_secs(300),
            description: Some("followup-projector rebuild".into()),
            ..Default::default()
        })
        .await
        .context("creating the rebuild's ephemeral consumer")?;
    let mut reader = ShadowReader {
        client: js.client(),
        consumer: reader,
        leftover: Vec::new(),
        batch_size,
        tz,
        progress: RebuildProgress {
            phase: "build",
            position: 0,
            target,
            messages: 0,
            skipped: 0,
        },
    };
    reader.apply_until(&mut shadow, target, on_progress).await?;

    // Catch up with what `serve` applied meanwhile, first without holding it up.
    reader.progress.phase = "catch-up";
    for _ in 0..5 {
        let live = live_position(pool).await?;
        if live <= reader.progress.position {
            break;
        }
        reader.apply_until(&mut shadow, live, on_progress).await?;
    }
    reader.progress.phase = "swap";
    let mut swap = pool.begin().await?;
    lock_projection(&mut swap).await?;
    let live = live_position(&mut *swap).await?;
    reader.apply_until(&mut shadow, live, on_progress).await?;
    carry_history(&mut swap, local_date(snapshot_at, tz)).await?;
    sqlx::raw_sql(SWAP_SQL)
        .execute(&mut *swap)
        .await
        .context("swapping tables")?;
    swap.commit().await?;
    on_progress(&reader.progress);

    sqlx::raw_sql("DROP SCHEMA projection_retired CASCADE; DROP SCHEMA projection_rebuild CASCADE")
        .execute(&mut shadow)
        .await?;
    let name = reader.consumer.cached_info().name.clone();
    let _ = stream.delete_consumer(&name).await;
    shadow.close().await?;
    guard.close().await?;
    Ok(reader.progress)
}

/// What the CRM does not keep survives the rebuild: the conversions the projection recorded per
/// day (all days: `serve` applied everything up to the swap), and the pending figures' net
/// changes of the days before the snapshot's day `snapshot_day`, which then absorbs the
/// difference so the net changes still add up to today's pending figures. Runs in the swap's
/// transaction, under the projection lock.
async fn carry_history(swap: &mut PgConnection, snapshot_day: NaiveDate) -> anyhow::Result<()> {
    for statement in [
        // The snapshot's day takes what the earlier days' nets change.
        "INSERT INTO projection_rebuild.projection_scope_days AS d (scope, local_date, t3_net, t7_net) \
         SELECT scope, $1, sum(t3), sum(t7) FROM ( \
           SELECT scope, t3_net AS t3, t7_net AS t7 FROM projection_rebuild.projection_scope_days \
           WHERE local_date < $1 \
           UNION ALL SELECT scope, -t3_net, -t7_net FROM public.projection_scope_days \
           WHERE local_date < $1) x \
         GROUP BY scope HAVING sum(t3) <> 0 OR sum(t7) <> 0 \
         ON CONFLICT (scope, local_date) DO UPDATE \
           SET t3_net = d.t3_net + EXCLUDED.t3_net, t7_net = d.t7_net + EXCLUDED.t7_net",
        "UPDATE projection_rebuild.projection_scope_days SET converted = 0, \
           t3_net = CASE WHEN local_date < $1 THEN 0 ELSE t3_net END, \
           t7_net = CASE WHEN local_date < $1 THEN 0 ELSE t7_net END",
        "INSERT INTO projection_rebuild.projection_scope_days AS d \
           (scope, local_date, t3_net, t7_net, converted) \
         SELECT scope, local_date, CASE WHEN local_date < $1 THEN t3_net ELSE 0 END, \
                CASE WHEN local_date < $1 THEN t7_net ELSE 0 END, converted \
         FROM public.projection_scope_days \
         ON CONFLICT (scope, local_date) DO UPDATE SET t3_net = d.t3_net + EXCLUDED.t3_net, \
           t7_net = d.t7_net + EXCLUDED.t7_net, converted = EXCLUDED.converted",
    ] {
        sqlx::query(statement)
            .bind(snapshot_day)
            .execute(&mut *swap)
            .await
            .context("carrying the recorded history over")?;
    }
    Ok(())
}

async fn create_shadow_tables(shadow: &mut PgConnection) -> anyhow::Result<()> {
    sqlx::raw_sql(
        "DROP SCHEMA IF EXISTS projection_rebuild CASCADE; CREATE SCHEMA projection_rebuild; \
         SET search_path = projection_rebuild",
    )
    .execute(&mut *shadow)
    .await?;
    sqlx::raw_sql(PROJECTION_DDL)
        .execute(&mut *shadow)
        .await
        .context("creating shadow tables")?;
    // From now on this connection's unqualified names are the shadow tables (and the CRM's).
    sqlx::raw_sql("SET search_path = projection_rebuild, public")
        .execute(&mut *shadow)
        .await?;
    Ok(())
}

async fn live_position<'e>(db: impl sqlx::PgExecutor<'e>) -> sqlx::Result<u64> {
    let position: Option<i64> =
        sqlx::query_scalar("SELECT last_stream_sequence FROM public.projection_state")
            .fetch_optional(db)
            .await?;
    Ok(position.map_or(0, |p| u64::try_from(p).unwrap_or(0)))
}

struct ShadowReader {
    client: async_nats::Client,
    consumer: consumer::PullConsumer,
    /// Messages fetched beyond the current target, kept for the next phase.
    leftover: Vec<jetstream::Message>,
    batch_size: usize,
    tz: Tz,
    progress: RebuildProgress,
}

impl ShadowReader {
    /// Applies stream messages up to sequence `target` to the shadow tables, one transaction
    /// per batch.
    async fn apply_until(
        &mut self,
        shadow: &mut PgConnection,
        target: u64,
        on_progress: &mut (dyn FnMut(&RebuildProgress) + Send),
    ) -> anyhow::Result<()> {
        self.progress.target = target;
        while self.progress.position < target {
            let mut batch = std::mem::take(&mut self.leftover);
            if batch.is_empty() {
                batch =
                    fetch_batch(&self.consumer, self.batch_size, Duration::from_secs(2)).await?;
                if batch.is_empty() {
                    break; // Nothing more to read: the stream has a gap up to `target`.
                }
            }
            let split = batch
                .iter()
                .position(|m| m.info().map_or(0, |i| i.stream_sequence) > target)
                .unwrap_or(batch.len());
            self.leftover = batch.split_off(split);
            if batch.is_empty() {
                break;
            }
            let inbound: Vec<_> = batch.iter().map(to_inbound).collect();
            let mut tx = shadow.begin().await?;
            let report = apply_messages(&mut tx, self.tz, &inbound).await?;
            tx.commit().await?;
            ack_all(&self.client, &batch).await?;
            self.progress.position = inbound.last().map_or(0, |m| m.stream_sequence);
            self.progress.messages += inbound.len() as u64;
            self.progress.skipped += report.count(Outcome::DeadLettered) as u64;
            on_progress(&self.progress);
        }
        Ok(())
    }
}
