//! `followup-projector`: parses the command line and runs it through the library.

use std::process::ExitCode;

use clap::Parser;
use followup_projector::Cli;

/// jemalloc instead of glibc's malloc: every event is parsed into small maps and strings that are
/// freed a batch later, and glibc's malloc and free took about a seventh of the projector's
/// samples in the whole-pipeline profile (bench/results/2026-11-30-whole-pipeline.md). Only the
/// binary: the library leaves the choice to whoever embeds it.
#[cfg(not(target_env = "msvc"))]
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    followup_infra::telemetry::init_tracing();
    let shutdown = followup_infra::shutdown_on_signals();
    match followup_projector::run_cli(cli, shutdown).await {
        Ok(code) => code,
        Err(err) => {
            tracing::error!(error = format!("{err:#}"), "followup-projector failed");
            ExitCode::FAILURE
        }
    }
}
