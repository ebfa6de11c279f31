//! The commands for other modules' durables: `consumers apply` and `dlq list|replay`. They need
//! NATS only (no database, no migrations).

use std::io::Write;
use std::process::ExitCode;

use anyhow::Context;
use async_nats::jetstream::context::{GetStreamError, GetStreamErrorKind};
use async_nats::jetstream::{self, ErrorCode};
use followup_contract::{DLQ_STREAM_NAME, STREAM_NAME};
use followup_infra::nats::dlq_stream_config;
use followup_infra::{connect_nats, ensure_stream_replicas};
use tokio_util::sync::CancellationToken;

use crate::config::{Config, ConsumersCommand, DlqCommand};
use crate::dlq::{list_module_dead_letters, replay_module_dead_letters};
use crate::durables::{Action, apply_definitions, read_definitions};

/// Runs `consumers apply`: prints one line per durable; exit 1 when a change was refused.
pub async fn run_consumers(
    config: &Config,
    command: ConsumersCommand,
    shutdown: &CancellationToken,
) -> anyhow::Result<ExitCode> {
    let ConsumersCommand::Apply {
        dir,
        allow_policy_change,
    } = command;
    let definitions = read_definitions(&dir)?;
    let js = connect(config, shutdown).await?;
    create_missing_streams(&js, config).await?;
    let applied = match apply_definitions(&js, &definitions, allow_policy_change).await {
        Ok(applied) => applied,
        Err(err @ crate::durables::ApplyError::Refused(_)) => {
            eprintln!("{err}");
            return Ok(ExitCode::from(1));
        }
        Err(err) => return Err(err.into()),
    };
    let mut out = std::io::stdout().lock();
    for a in applied {
        let what = match &a.action {
            Action::Created => "created".to_owned(),
            Action::Updated(fields) => format!("updated {}", fields.join(", ")),
            Action::Recreated(fields) => format!("recreated ({})", fields.join(", ")),
            Action::Unchanged => "unchanged".to_owned(),
        };
        writeln!(out, "{}/{}: {what}", a.stream, a.durable)?;
    }
    Ok(ExitCode::SUCCESS)
}

/// Runs `dlq list` or `dlq replay`.
pub async fn run_dlq(
    config: &Config,
    command: DlqCommand,
    shutdown: &CancellationToken,
) -> anyhow::Result<ExitCode> {
    let js = connect(config, shutdown).await?;
    let mut out = std::io::stdout().lock();
    match command {
        DlqCommand::List { durable } => {
            for letter in list_module_dead_letters(&js, durable.as_deref()).await? {
                writeln!(out, "{}", serde_json::to_string(&letter)?)?;
            }
        }
        DlqCommand::Replay {
            durable,
            sequence,
            all,
        } => {
            let only = if all { None } else { sequence };
            let replayed = replay_module_dead_letters(&js, &durable, only)
                .await
                .with_context(|| format!("replaying dead letters of {durable}"))?;
            for sequence in &replayed {
                writeln!(out, "{durable}: replayed stream sequence {sequence}")?;
            }
            writeln!(out, "{} replayed", replayed.len())?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// The streams must exist before their durables. Only missing ones are created (FOLLOWUP_DLQ with
/// FOLLOWUP's replicas): an operator's apply never changes a live stream, whose replicas and
/// retention are the services' `STREAM_*` settings.
async fn create_missing_streams(js: &jetstream::Context, config: &Config) -> anyhow::Result<()> {
    let missing = |e: &GetStreamError| {
        matches!(e.kind(), GetStreamErrorKind::JetStream(e)
            if e.error_code() == ErrorCode::STREAM_NOT_FOUND)
    };
    let mut followup = match js.get_stream(STREAM_NAME).await {
        Ok(stream) => stream,
        Err(e) if missing(&e) => return ensure_stream_replicas(js, &config.stream).await.map(drop),
        Err(e) => return Err(e).context("looking up stream FOLLOWUP"),
    };
    match js.get_stream(DLQ_STREAM_NAME).await {
        Ok(_) => Ok(()),
        Err(e) if missing(&e) => {
            let mut dlq = dlq_stream_config()?;
            dlq.num_replicas = followup.info().await?.config.num_replicas;
            js.create_stream(dlq)
                .await
                .context("creating stream FOLLOWUP_DLQ")?;
            Ok(())
        }
        Err(e) => Err(e).context("looking up stream FOLLOWUP_DLQ"),
    }
}

async fn connect(
    config: &Config,
    shutdown: &CancellationToken,
) -> anyhow::Result<jetstream::Context> {
    let client = connect_nats(&config.common.nats_url, "followup-projector-dlq", shutdown).await?;
    Ok(jetstream::new(client))
}
