use anyhow::Context;
use clap::Parser;
use followup_producer::{Cli, Command, migrate, run_once, run_until_stopped};

/// jemalloc instead of glibc's malloc, as in the projector: the relay builds and frees a
/// CloudEvent per outbox row (bench/results/2026-11-30-whole-pipeline.md). Only the binary: the
/// library leaves the choice to whoever embeds it.
#[cfg(not(target_env = "msvc"))]
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    followup_infra::telemetry::init_tracing();
    let cli = Cli::parse();
    // Every producer command works on the CRM database.
    cli.config.common.database_url()?;
    let shutdown = followup_infra::shutdown_on_signals();
    match cli.command {
        Command::Serve => {
            let listener = tokio::net::TcpListener::bind(cli.config.http_addr)
                .await
                .with_context(|| format!("binding HTTP_ADDR {}", cli.config.http_addr))?;
            run_until_stopped(cli.config, listener, shutdown).await
        }
        Command::RunOnce => {
            let report = run_once(cli.config, shutdown).await?;
            eprintln!(
                "run {} done: t3={} t7={} skipped={} errors={} duration_ms={}",
                report.run_id,
                report.t3_count,
                report.t7_count,
                report.skipped_count,
                report.error_count,
                report.duration_ms
            );
            Ok(())
        }
        Command::Migrate { grant_to } => migrate(&cli.config, grant_to.as_deref(), shutdown).await,
    }
}
