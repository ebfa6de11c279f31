//! The snapshot of a populated CRM (issue 12: ≤ 30 s for 1 000 000 leads) against a plain read of
//! the same rows, in the same run.
//!
//! `cargo bench -p followup-projector --bench snapshot` (env: BENCH_LEADS, default 1000000;
//! BENCH_ROUNDS, default 3). Fills a fresh CRM fixture database (testkit) the way a CRM holds it:
//! 20 % of the leads with a collaborator in `lead_collaborators`, 10 % with a follow-up of the
//! CRM's older automation in `lead_activities`, 5 % with an EMAIL OPT_OUT in `lead_consent`, 3 %
//! withdrawn through the GDPR fields, NULL flags and metadata here and there. Then, per round:
//! - baseline: one REPEATABLE READ transaction reading every lead with its collaborators and
//!   follow-ups (the snapshot's reads alone, keyset pages of 20 000 ids);
//! - snapshot: `write_snapshot` into an emptied projection in one REPEATABLE READ transaction
//!   (reads, the contactable rule, the fold, the writes), committed.
//!
//! Prints seconds and leads/s of both and the ratio, and a JSON line per round
//! (`{"bench": "snapshot", "figure": "snapshot_s", …}` for `scripts/bench.sh`). No timing
//! assertions.

use std::time::{Duration, Instant};

use chrono::Utc;
use followup_projector::{begin_snapshot, write_snapshot};
use followup_testkit::TestDb;
use followup_testkit::crm_fill::fill_crm;
use sqlx::PgPool;

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

const TZ: chrono_tz::Tz = chrono_tz::Europe::Berlin;

/// The snapshot's reads without its work: every lead, its collaborators and follow-ups.
const BASELINE_READ: &str = "
SELECT l.*, (SELECT array_agg(c.user_id) FROM lead_collaborators c WHERE c.lead_id = l.id)
FROM leads l WHERE l.id > $1 ORDER BY l.id LIMIT 20000";
const BASELINE_FOLLOW_UPS: &str = "
SELECT lead_id, metadata ->> 'followup_type', min(activity_date) FROM lead_activities
WHERE metadata ? 'followup_type' AND lead_id > $1 AND lead_id <= $2 GROUP BY 1, 2";

#[tokio::main]
async fn main() {
    let leads = env_usize("BENCH_LEADS", 1_000_000);
    let rounds = env_usize("BENCH_ROUNDS", 3);
    let db = TestDb::new().await;
    let started = Instant::now();
    fill_crm(&db.pool, leads).await;
    sqlx::query("VACUUM ANALYZE")
        .execute(&db.pool)
        .await
        .expect("analyze");
    eprintln!("filled {leads} leads in {:.1?}", started.elapsed());
    println!("leads: {leads}, rounds: {rounds}");
    let (mut base, mut snap) = (Vec::new(), Vec::new());
    for round in 0..rounds {
        let b = baseline(&db.pool).await;
        let (s, loaded) = snapshot(&db.pool).await;
        assert_eq!(loaded, leads as u64, "every lead in the snapshot");
        let (bs, ss) = (b.as_secs_f64(), s.as_secs_f64());
        println!(
            "round {round}: baseline read {bs:>6.2} s ({:>8.0} leads/s), snapshot {ss:>6.2} s \
             ({:>8.0} leads/s), ratio {:.2}",
            leads as f64 / bs,
            leads as f64 / ss,
            ss / bs
        );
        let record = serde_json::json!({
            "bench": "snapshot", "figure": "snapshot_s", "run": round, "value": ss,
            "unit": "s", "baseline": bs, "leads": leads,
        });
        println!("{record}");
        base.push(bs);
        snap.push(ss);
    }
    let median = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let (b, s) = (median(&mut base), median(&mut snap));
    println!(
        "median: baseline read {b:.2} s, snapshot {s:.2} s ({:.0} leads/s), ratio {:.2}; target ≤ 30 s",
        leads as f64 / s,
        s / b
    );
}

async fn baseline(pool: &PgPool) -> Duration {
    let mut conn = pool.acquire().await.unwrap();
    let started = Instant::now();
    let mut tx = begin_snapshot(&mut conn).await.unwrap();
    let mut after = 0_i64;
    loop {
        let rows = sqlx::query(BASELINE_READ)
            .bind(after)
            .fetch_all(&mut *tx)
            .await
            .unwrap();
        let Some(last) = rows.last() else { break };
        let last: i64 = sqlx::Row::get(last, "id");
        sqlx::query(BASELINE_FOLLOW_UPS)
            .bind(after)
            .bind(last)
            .fetch_all(&mut *tx)
            .await
            .unwrap();
        after = last;
    }
    tx.commit().await.unwrap();
    started.elapsed()
}

async fn snapshot(pool: &PgPool) -> (Duration, u64) {
    sqlx::raw_sql(
        "TRUNCATE projection_leads, projection_collaborations, projection_deliveries, projection_scope_figures,
                  projection_scope_days, projection_state",
    )
    .execute(pool)
    .await
    .unwrap();
    let mut conn = pool.acquire().await.unwrap();
    let started = Instant::now();
    let mut tx = begin_snapshot(&mut conn).await.unwrap();
    let report = write_snapshot(&mut tx, TZ, Utc::now()).await.unwrap();
    tx.commit().await.unwrap();
    (started.elapsed(), report.leads)
}
