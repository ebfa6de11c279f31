//! The suite: one phase per fault (load on, the fault injected several times at random moments,
//! load off, wait for quiet, oracle), a final shutdown check, and the table.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;

use crate::Options;
use crate::faults::{Fault, World};
use crate::load::{LoadLog, run_load};
use crate::oracle::{Expectations, Findings, check, quiesce};
use crate::rng::Rng;
use crate::setup::start_world;

/// One line of the table.
struct Row {
    fault: String,
    injected: usize,
    /// Injections not confirmed to have happened.
    unconfirmed: usize,
    /// CRM changes (with their event) the load committed during the phase.
    committed: usize,
    /// Why the phase proves nothing, if it does not (a failure of its own).
    invalid: Vec<String>,
    events: u64,
    lost: u64,
    duplicated: u64,
    diff: u64,
    mail_resends: u64,
    /// Follow-ups sent to leads that never gave e-mail consent.
    without_consent: u64,
    recovery: String,
    quiet: bool,
}

const FAULTS: [Fault; 7] = [
    Fault::KillProducer,
    Fault::KillProjector,
    Fault::KillGateway,
    Fault::PostgresRestart,
    Fault::NatsOutage,
    Fault::NatsNodeLoss,
    Fault::Poison,
];

/// Runs every phase; true when every row is clean.
pub async fn run_suite(options: &Options) -> anyhow::Result<bool> {
    // Kept on failure (logs of every process are in it), removed after a clean run.
    let dir_path = tempfile::Builder::new()
        .prefix("followup-faults-")
        .tempdir()?
        .keep();
    let mode = if options.short { "short" } else { "long" };
    println!(
        "fault suite ({mode}): seed {}, {} NATS node(s), logs in {}",
        options.seed,
        options.nodes,
        dir_path.display()
    );
    // The services run from copies: a build in the same checkout during the run (cargo replaces
    // `target/debug/*`) must not swap a restarted service or `verify` for another version.
    let bin_dir = dir_path.join("bin");
    copy_binaries(&options.bin_dir, &bin_dir)?;
    let options = &Options {
        bin_dir: bin_dir.clone(),
        ..options.clone()
    };
    let mut rng = Rng::new(options.seed);
    let mut world = start_world(options, &dir_path).await?;
    let database_url = world.postgres.url("followup_faults");
    let projector_bin = options.bin_dir.join("followup-projector");
    let mail_log = dir_path.join("mails.jsonl");
    let durations = options.durations();
    let log = Arc::new(Mutex::new(LoadLog::default()));
    let mut previous = Findings::default();
    let mut rows = Vec::new();
    let mut notes = Vec::new();
    let suite_started = Instant::now();

    for fault in FAULTS {
        if fault == Fault::NatsNodeLoss && options.nodes < 3 {
            continue;
        }
        println!("phase: {}", fault.label());
        let committed_before = log.lock().unwrap().committed.len();
        let stop = Arc::new(AtomicBool::new(false));
        let load = tokio::spawn(run_load(
            world.pool.clone(),
            options.rate(),
            rng.next(),
            log.clone(),
            stop.clone(),
        ));
        let mut recoveries = Vec::new();
        let mut failed_recovery = None;
        let mut invalid = Vec::new();
        let mut unconfirmed = 0;
        for n in 0..options.times() {
            tokio::time::sleep(rng.millis(1000, 4000)).await;
            match world.inject(fault, &mut rng, &durations).await {
                Ok(injection) => {
                    println!(
                        "  injection {}: recovered in {:.2} s",
                        n + 1,
                        injection.recovery.as_secs_f64()
                    );
                    if let Some(why) = injection.unconfirmed {
                        println!("  injection {}: NOT CONFIRMED: {why}", n + 1);
                        invalid.push(format!("injection {} not confirmed: {why}", n + 1));
                        unconfirmed += 1;
                    }
                    recoveries.push(injection.recovery);
                }
                Err(err) => {
                    println!("  injection {}: {err:#}", n + 1);
                    failed_recovery = Some(format!("{err:#}"));
                    break;
                }
            }
        }
        tokio::time::sleep(rng.millis(500, 2000)).await;
        stop.store(true, Ordering::Relaxed);
        let _ = load.await;
        let quiet = quiesce(&world.pool, &world.js, Duration::from_secs(180)).await;
        // The load has stopped: a copy of what it committed, so no lock is held across awaits.
        let (committed, uncertain) = {
            let log = log.lock().unwrap();
            (log.committed.clone(), log.uncertain.clone())
        };
        let committed_in_phase = committed.len() - committed_before;
        if committed_in_phase == 0 {
            invalid.push(
                "the CRM load committed no change during the phase: nothing was tested".to_owned(),
            );
        }
        for why in &invalid {
            println!("  ! PHASE INVALID: {why}");
            notes.push(format!("{}: PHASE INVALID: {why}", fault.label()));
        }
        let expect = Expectations {
            committed: &committed,
            uncertain: &uncertain,
            poison_sequences: &world.poison,
            mail_log: &mail_log,
            projector_bin: &projector_bin,
            database_url: &database_url,
        };
        let findings = check(&world.pool, &world.js, &expect).await?;
        let known: std::collections::HashSet<&String> = previous.notes.iter().collect();
        let new: Vec<&String> = findings
            .notes
            .iter()
            .filter(|n| !known.contains(n))
            .collect();
        for note in new.iter().take(8) {
            println!("  ! {note}");
            notes.push(format!("{}: {note}", fault.label()));
        }
        if new.len() > 8 {
            println!("  ! … and {} more", new.len() - 8);
            notes.push(format!("{}: … and {} more", fault.label(), new.len() - 8));
        }
        let max = recoveries.iter().max().copied().unwrap_or_default();
        rows.push(Row {
            fault: fault.label().to_owned(),
            injected: recoveries.len() + usize::from(failed_recovery.is_some()),
            unconfirmed,
            committed: committed_in_phase,
            invalid,
            events: findings.stream_messages - previous.stream_messages,
            lost: findings.lost.saturating_sub(previous.lost),
            duplicated: findings.duplicated.saturating_sub(previous.duplicated),
            diff: findings.diff,
            mail_resends: findings.mail_resends - previous.mail_resends,
            without_consent: findings.without_consent - previous.without_consent,
            recovery: match failed_recovery {
                Some(_) => "NONE".to_owned(),
                None => format!("{:.1} s", max.as_secs_f64()),
            },
            quiet,
        });
        previous = findings;
    }

    let shutdown_row = shutdown_with_everything_gone(&mut world);
    let table = render(
        options,
        &rows,
        &shutdown_row,
        &log.lock().unwrap(),
        world.refused,
        suite_started.elapsed(),
    );
    println!("\n{table}");
    if !notes.is_empty() {
        println!("notes:");
        for note in &notes {
            println!("  {note}");
        }
    }
    if let Some(out) = &options.out {
        std::fs::write(out, &table)?;
    }
    let clean = rows.iter().all(|r| {
        r.lost == 0
            && r.duplicated == 0
            && r.diff == 0
            && r.without_consent == 0
            && r.quiet
            && r.recovery != "NONE"
            && r.invalid.is_empty()
    }) && shutdown_row.1;
    drop(world);
    let _ = std::fs::remove_dir_all(&bin_dir);
    if !clean || options.keep {
        println!("logs kept in {}", dir_path.display());
    } else {
        let _ = std::fs::remove_dir_all(&dir_path);
    }
    Ok(clean)
}

/// Copies the service binaries of `from` into `to`.
fn copy_binaries(from: &std::path::Path, to: &std::path::Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(to)?;
    for binary in [
        "followup-producer",
        "followup-projector",
        "followup-gateway",
    ] {
        std::fs::copy(from.join(binary), to.join(binary))
            .with_context(|| format!("copying {}", from.join(binary).display()))?;
    }
    Ok(())
}

/// NATS (every node) and Postgres go away at the same moment, then each service gets SIGTERM:
/// each must exit by itself. Returns the cell text and whether all exited.
fn shutdown_with_everything_gone(world: &mut World) -> (String, bool) {
    world.nats.kill_all();
    let _ = world.postgres.stop_server("immediate");
    std::thread::sleep(Duration::from_secs(2));
    let mut cells = Vec::new();
    let mut all = true;
    for service in [
        &mut world.producer,
        &mut world.projector,
        &mut world.gateway,
    ] {
        match service.terminate(Duration::from_secs(30)) {
            Some(took) => cells.push(format!("{} {:.1} s", service.name, took.as_secs_f64())),
            None => {
                all = false;
                cells.push(format!("{} HUNG (killed after 30 s)", service.name));
            }
        }
    }
    (cells.join(", "), all)
}

fn render(
    options: &Options,
    rows: &[Row],
    shutdown: &(String, bool),
    load: &LoadLog,
    refused: u64,
    took: Duration,
) -> String {
    let d = options.durations();
    let mut t = String::new();
    let _ = writeln!(
        t,
        "Mode {}, seed {}, {} NATS node(s) (stream replicas {}), load {} CRM changes/s, \
         NATS outage {} s, Postgres down {} s, node down {} s; {} committed CRM changes with an \
         event ({} more with an interrupted COMMIT; besides {} committed writes that changed no \
         follow-up fact, so no event, and {} saves refused by the optimistic lock), {} oversized \
         message(s) refused by NATS; {:.0} s in all.\n",
        if options.short { "short" } else { "long" },
        options.seed,
        options.nodes,
        options.nodes,
        options.rate(),
        d.nats_outage.as_secs(),
        d.postgres_down.as_secs(),
        d.node_down.as_secs(),
        load.committed.len(),
        load.uncertain.len(),
        load.without_event,
        load.stale_saves,
        refused,
        took.as_secs_f64()
    );
    let _ = writeln!(
        t,
        "| fault | times injected | CRM changes | events produced | lost | duplicated | diff | mail resends | sent without consent | recovery (max) |"
    );
    let _ = writeln!(t, "|---|---|---|---|---|---|---|---|---|---|");
    for r in rows {
        let quiet = if r.quiet { "" } else { " (never quiet)" };
        let invalid = if r.invalid.is_empty() {
            ""
        } else {
            " (INVALID)"
        };
        let injected = if r.unconfirmed == 0 {
            r.injected.to_string()
        } else {
            format!("{} ({} NOT CONFIRMED)", r.injected, r.unconfirmed)
        };
        let _ = writeln!(
            t,
            "| {}{quiet}{invalid} | {injected} | {} | {} | {} | {} | {} | {} | {} | {} |",
            r.fault,
            r.committed,
            r.events,
            r.lost,
            r.duplicated,
            r.diff,
            r.mail_resends,
            r.without_consent,
            r.recovery
        );
    }
    let _ = writeln!(
        t,
        "| SIGTERM while NATS and Postgres are both gone | 1 | – | – | – | – | – | – | – | {} |",
        shutdown.0
    );
    t
}
