use std::time::Duration;

use anyhow::Context;
use clap::Parser;
use followup_gateway::auth::{DevClaims, dev_token};
use followup_gateway::{Cli, Command, run_until_stopped};

/// jemalloc instead of glibc's malloc: an idle SSE connection holds two 8 KiB hyper read buffers
/// of which little is touched; jemalloc's 8 KiB size class has no in-band headers, so such a
/// buffer costs the pages written, and 10 000 idle clients cost ~13 KiB each instead of ~16.5
/// (bench/results/2026-11-30-sse-memory.md). Only the binary: the library leaves the choice to
/// whoever embeds it.
#[cfg(not(target_env = "msvc"))]
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Serve(config) => {
            followup_infra::telemetry::init_tracing();
            config.jwt.validate()?;
            config.common.database_url()?;
            let shutdown = followup_infra::shutdown_on_signals();
            let listener = tokio::net::TcpListener::bind(config.http_addr)
                .await
                .with_context(|| format!("binding HTTP_ADDR {}", config.http_addr))?;
            run_until_stopped(*config, listener, shutdown).await
        }
        Command::DevToken(args) => {
            let token = dev_token(
                &args.jwt_secret,
                &DevClaims {
                    user_claim: &args.jwt_user_claim,
                    user: &args.sub,
                    roles: &args.roles,
                    ttl: Duration::from_secs(args.ttl_secs),
                    issuer: args.jwt_issuer.as_deref(),
                    audience: args.jwt_audience.as_deref(),
                },
            )?;
            match args.url {
                Some(base) => println!("{}/#token={token}", base.trim_end_matches('/')),
                None => println!("{token}"),
            }
            Ok(())
        }
    }
}
