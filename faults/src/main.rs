//! `followup-faults`: starts a private Postgres, a NATS cluster and the three service binaries,
//! drives CRM load, injects each fault several times at random moments, then checks the exact
//! oracle and prints the table. `scripts/faults.sh` is the way to run it (see README
//! "Reliability").

mod faults;
mod load;
mod oracle;
mod phase;
mod postgres;
mod rng;
mod setup;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use followup_faults::{nats, services};

use crate::faults::Durations;

/// Command-line settings.
#[derive(Debug, Clone)]
pub struct Options {
    pub short: bool,
    pub seed: u64,
    pub nodes: usize,
    pub bin_dir: PathBuf,
    pub out: Option<PathBuf>,
    pub keep: bool,
}

impl Options {
    fn parse() -> anyhow::Result<Options> {
        let mut options = Options {
            short: false,
            seed: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)?
                .as_nanos() as u64,
            nodes: 3,
            bin_dir: PathBuf::from("target/debug"),
            out: None,
            keep: false,
        };
        let mut args = std::env::args().skip(1);
        while let Some(arg) = args.next() {
            let mut value = || args.next().with_context(|| format!("{arg} needs a value"));
            match arg.as_str() {
                "--short" => options.short = true,
                "--long" => options.short = false,
                "--seed" => options.seed = value()?.parse()?,
                "--nodes" => options.nodes = value()?.parse()?,
                "--bin-dir" => options.bin_dir = value()?.into(),
                "--out" => options.out = Some(value()?.into()),
                "--keep" => options.keep = true,
                other => anyhow::bail!(
                    "unknown argument {other}; usage: followup-faults [--short|--long] \
                     [--seed N] [--nodes 1|3] [--bin-dir DIR] [--out FILE] [--keep]"
                ),
            }
        }
        anyhow::ensure!(
            options.nodes == 1 || options.nodes == 3,
            "--nodes is 1 or 3"
        );
        Ok(options)
    }

    /// Injections per fault.
    pub fn times(&self) -> usize {
        if self.short { 2 } else { 5 }
    }

    /// Changes per second of the CRM load.
    pub fn rate(&self) -> u32 {
        if self.short { 25 } else { 50 }
    }

    /// Fault lengths.
    pub fn durations(&self) -> Durations {
        if self.short {
            Durations {
                nats_outage: Duration::from_secs(10),
                postgres_down: Duration::from_secs(3),
                node_down: Duration::from_secs(5),
            }
        } else {
            Durations {
                nats_outage: Duration::from_secs(60),
                postgres_down: Duration::from_secs(10),
                node_down: Duration::from_secs(20),
            }
        }
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    let options = match Options::parse() {
        Ok(options) => options,
        Err(err) => {
            eprintln!("{err:#}");
            return ExitCode::from(2);
        }
    };
    // On SIGINT/SIGTERM (e.g. CI's `timeout`) the suite's future is dropped, and with it every
    // child process, server and temporary directory it owns.
    let outcome = tokio::select! {
        outcome = phase::run_suite(&options) => outcome,
        _ = interrupted() => {
            eprintln!("fault suite interrupted; children stopped");
            return ExitCode::from(130);
        }
    };
    match outcome {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(err) => {
            eprintln!("fault suite failed: {err:#}");
            ExitCode::from(1)
        }
    }
}

async fn interrupted() {
    use tokio::signal::unix::{SignalKind, signal};
    match signal(SignalKind::terminate()) {
        Ok(mut term) => tokio::select! {
            _ = term.recv() => {}
            _ = tokio::signal::ctrl_c() => {}
        },
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}
