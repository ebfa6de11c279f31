//! The subcommands behind the binary: connect what each needs, run it, print its result.
//! stdout carries command output (verify diffs, dead letters as JSON lines); logs and rebuild
//! progress go to stderr.

use std::io::Write;
use std::process::ExitCode;

use anyhow::Context;
use async_nats::jetstream;
use followup_infra::{connect_database, connect_nats, ensure_stream_replicas, prepare_database};
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;

use crate::config::{Cli, Command, Config, DeadLettersCommand};
use crate::dead_letters::{ReplayOutcome, ReplaySelection, list_dead_letters, replay_dead_letters};
use crate::notice::{notice_for_batch, publish_notice};

/// Runs the parsed command line until it is done or `shutdown` fires.
pub async fn run_cli(cli: Cli, shutdown: CancellationToken) -> anyhow::Result<ExitCode> {
    let config = cli.config;
    match cli.command {
        Command::Serve => {
            config.common.database_url()?;
            let listener = tokio::net::TcpListener::bind(config.http_addr)
                .await
                .with_context(|| format!("binding HTTP_ADDR {}", config.http_addr))?;
            crate::run_until_stopped(config, listener, shutdown).await?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Rebuild => {
            let pool = open_database(&config, &shutdown).await?;
            let client = connect_nats(
                &config.common.nats_url,
                "followup-projector-rebuild",
                &shutdown,
            )
            .await?;
            let js = jetstream::new(client);
            ensure_stream_replicas(&js, &config.stream).await?;
            let mut progress = |p: &crate::RebuildProgress| {
                eprintln!(
                    "rebuild {}: sequence {}/{} ({} messages, {} skipped)",
                    p.phase, p.position, p.target, p.messages, p.skipped
                );
            };
            let tz = config.common.followup_tz;
            let done = crate::rebuild_projection(
                &pool,
                &js,
                tz,
                config.batch_size as usize,
                &mut progress,
            )
            .await?;
            eprintln!(
                "rebuild done: {} messages up to sequence {}",
                done.messages, done.position
            );
            Ok(ExitCode::SUCCESS)
        }
        Command::Verify => {
            let pool = open_database(&config, &shutdown).await?;
            let mut conn = pool.acquire().await?;
            let now = config.clock.now();
            let report =
                crate::verify_projection(&mut conn, now, config.common.followup_tz).await?;
            let mut out = std::io::stdout().lock();
            for mismatch in &report.mismatches {
                writeln!(out, "{mismatch}")?;
            }
            if report.is_exact() {
                writeln!(
                    out,
                    "projection exact: {} scopes checked",
                    report.scopes_checked
                )?;
                Ok(ExitCode::SUCCESS)
            } else {
                writeln!(out, "{} figure(s) differ", report.mismatches.len())?;
                Ok(ExitCode::from(1))
            }
        }
        Command::ShowEvents { from, limit } => {
            // Reads the stream only: no database, no migrations.
            let client = connect_nats(
                &config.common.nats_url,
                "followup-projector-show",
                &shutdown,
            )
            .await?;
            let js = jetstream::new(client);
            let mut out = std::io::stdout().lock();
            let shown = crate::show_events::show_events(&js, from, limit, &mut out).await?;
            eprintln!(
                "{} events, {} invalid messages",
                shown.events, shown.invalid
            );
            Ok(ExitCode::SUCCESS)
        }
        Command::Consumers(command) => {
            crate::module_commands::run_consumers(&config, command, &shutdown).await
        }
        Command::Dlq(command) => crate::module_commands::run_dlq(&config, command, &shutdown).await,
        Command::DeadLetters(DeadLettersCommand::List) => {
            let pool = open_database(&config, &shutdown).await?;
            let mut out = std::io::stdout().lock();
            for letter in list_dead_letters(&pool).await? {
                writeln!(out, "{}", serde_json::to_string(&letter)?)?;
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::DeadLetters(DeadLettersCommand::Replay { id, all }) => {
            let pool = open_database(&config, &shutdown).await?;
            let selection = match (id, all) {
                (Some(id), false) => ReplaySelection::One(id),
                _ => ReplaySelection::All,
            };
            let outcomes = replay_dead_letters(&pool, config.common.followup_tz, selection).await?;
            replay_summary(&config, &outcomes, &shutdown).await
        }
    }
}

async fn replay_summary(
    config: &Config,
    outcomes: &[ReplayOutcome],
    shutdown: &CancellationToken,
) -> anyhow::Result<ExitCode> {
    let mut failed = false;
    let mut client = None;
    for outcome in outcomes {
        match outcome {
            ReplayOutcome::Applied { id, report } => {
                println!("dead letter {id}: applied");
                if let Some(notice) = notice_for_batch(report, chrono::Utc::now()) {
                    if client.is_none() {
                        client = Some(
                            connect_nats(&config.common.nats_url, "followup-projector", shutdown)
                                .await?,
                        );
                    }
                    if let Some(client) = &client {
                        publish_notice(client, &notice).await;
                        client.flush().await.context("flushing notice")?;
                    }
                }
            }
            ReplayOutcome::StillFailing { id, reason } => {
                failed = true;
                println!("dead letter {id}: still failing: {reason}");
            }
            ReplayOutcome::NotFound { id } => {
                failed = true;
                println!("dead letter {id}: not found");
            }
        }
    }
    Ok(if failed {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

async fn open_database(config: &Config, shutdown: &CancellationToken) -> anyhow::Result<PgPool> {
    let pool = connect_database(
        config.common.database_url()?,
        config.db_connections,
        shutdown,
    )
    .await?;
    prepare_database(&pool).await?;
    Ok(pool)
}
