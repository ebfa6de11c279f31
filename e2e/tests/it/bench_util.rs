//! Helpers of the benchmarks: JSON lines for `scripts/bench.sh`, percentiles, CPU time, and a
//! steady background load of lead changes. Nothing here asserts a time.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use sqlx::PgPool;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// How many measured runs each benchmark makes (`BENCH_RUNS`, default 3).
pub fn runs() -> usize {
    env_usize("BENCH_RUNS", 3).max(1)
}

pub fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// One JSON line for the suite's driver (`{"bench": …}`), next to the human-readable output.
pub fn emit(record: Value) {
    println!("{record}");
}

/// One figure of one run, beside the baseline measured in the same run.
pub fn emit_figure(figure: &str, run: usize, value: f64, unit: &str, baseline: Option<f64>) {
    emit(json!({
        "bench": figure, "figure": figure, "run": run, "value": value, "unit": unit,
        "baseline": baseline,
    }));
}

pub fn percentile(sorted: &[f64], p: f64) -> f64 {
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

pub fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

/// CPU time of this process so far (all threads, from the scheduler's nanosecond counters).
pub fn process_cpu_seconds() -> f64 {
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return 0.0;
    };
    let mut ns: u64 = 0;
    for task in tasks.flatten() {
        if let Ok(text) = std::fs::read_to_string(task.path().join("schedstat")) {
            ns += text
                .split_whitespace()
                .next()
                .and_then(|v| v.parse::<u64>().ok())
                .unwrap_or(0);
        }
    }
    ns as f64 / 1e9
}

/// `VmRSS` of a process in KiB.
pub fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

/// Inserts `count` ACTIVE leads owned by `<prefix>0` … `<prefix>(owners-1)`; returns their ids.
pub async fn seed_background_leads(
    pool: &PgPool,
    prefix: &str,
    owners: usize,
    count: usize,
) -> Vec<i64> {
    sqlx::query_scalar(
        "INSERT INTO leads (company_name, email, status, owner_user_id, registered_at, metadata, created_by)
         SELECT 'Lead ' || g, 'x@example.com', 'ACTIVE', $1 || (g % $2), (now() AT TIME ZONE 'UTC') - interval '1 day', '{}', 'bench'
         FROM generate_series(1, $3) AS g RETURNING id",
    )
    .bind(prefix)
    .bind(owners as i64)
    .bind(count as i64)
    .fetch_all(pool)
    .await
    .unwrap()
}

/// Waits until the projection has caught up with every change committed so far.
pub async fn wait_projected(pool: &PgPool) {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let (waiting, behind): (i64, bool) = sqlx::query_as(
            "SELECT (SELECT count(*) FROM followup_outbox),
                    EXISTS (SELECT 1 FROM leads l LEFT JOIN projection_leads p ON p.lead_id = l.id
                            WHERE p.lead_id IS NULL OR p.status <> l.status)",
        )
        .fetch_one(pool)
        .await
        .unwrap();
        if waiting == 0 && !behind {
            return;
        }
        assert!(Instant::now() < deadline, "projection did not catch up");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Flips the status of `ids` between ACTIVE and REGISTERED in one statement: one committed
/// follow-up-relevant change (and `lead.changed.v1`) per lead.
pub async fn toggle_status(pool: &PgPool, ids: &[i64]) {
    sqlx::query(
        "UPDATE leads SET status = CASE WHEN status = 'ACTIVE' THEN 'REGISTERED' ELSE 'ACTIVE' END
         WHERE id = ANY($1)",
    )
    .bind(ids)
    .execute(pool)
    .await
    .unwrap();
}

/// A steady load of lead changes: every 10 ms one statement toggles the status of the next
/// `rate / 100` leads of `ids` (one outbox event per lead, through the CRM trigger).
pub struct Load {
    pub committed: Arc<AtomicU64>,
    stop: CancellationToken,
    task: JoinHandle<()>,
    started: Instant,
}

impl Load {
    pub fn start(pool: PgPool, ids: Vec<i64>, rate: usize) -> Load {
        let committed = Arc::new(AtomicU64::new(0));
        let stop = CancellationToken::new();
        let per_tick = (rate / 100).max(1);
        let (count, token) = (committed.clone(), stop.clone());
        let task = tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_millis(10));
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
            let mut next = 0;
            while !token.is_cancelled() {
                tick.tick().await;
                let batch: Vec<i64> = (0..per_tick).map(|k| ids[(next + k) % ids.len()]).collect();
                next += per_tick;
                toggle_status(&pool, &batch).await;
                count.fetch_add(batch.len() as u64, Ordering::Relaxed);
            }
        });
        Load {
            committed,
            stop,
            task,
            started: Instant::now(),
        }
    }

    /// Stops the load; returns the achieved rate (changes/s).
    pub async fn stop(self) -> f64 {
        self.stop.cancel();
        let _ = self.task.await;
        self.committed.load(Ordering::Relaxed) as f64 / self.started.elapsed().as_secs_f64()
    }
}
