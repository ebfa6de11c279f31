//! `followup-projector`: parses the command line and runs it through the library.

use std::process::ExitCode;

use clap::Parser;
use followup_projector::Cli;

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
