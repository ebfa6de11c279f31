//! Configuration from the environment and matching flags, validated at start-up.

use std::net::SocketAddr;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use followup_infra::CommonArgs;
use followup_readmodel::Clock;

/// `followup-projector`: keeps the cockpit's follow-up figures from the `FOLLOWUP` stream.
#[derive(Debug, Parser)]
#[command(name = "followup-projector", version, about)]
pub struct Cli {
    #[command(flatten)]
    pub config: Config,
    #[command(subcommand)]
    pub command: Command,
}

/// What to do.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Consume the stream and keep the projection, with /metrics, /healthz, /readyz.
    Serve,
    /// Rebuild the projection from the start of the stream beside the live one, then swap.
    Rebuild,
    /// Recompute every figure from `leads` and the delivery records; exit 1 on a difference.
    Verify,
    /// List or replay dead letters.
    #[command(subcommand)]
    DeadLetters(DeadLettersCommand),
    /// Apply the durables defined in a directory (`nats/consumers/`).
    #[command(subcommand)]
    Consumers(ConsumersCommand),
    /// List or replay the dead letters of FOLLOWUP's durables (stream FOLLOWUP_DLQ).
    #[command(subcommand)]
    Dlq(DlqCommand),
    /// Print the stream's messages as the contract reads them, one JSON line each (attributes as
    /// the CloudEvents SDK read them, `data` as JSON; invalid messages with their reason).
    ShowEvents {
        /// First stream sequence to print.
        #[arg(long, default_value_t = 1)]
        from: u64,
        /// Print at most this many messages.
        #[arg(long)]
        limit: Option<u64>,
    },
}

/// `dead-letters` subcommands.
#[derive(Debug, Subcommand)]
pub enum DeadLettersCommand {
    /// Print every stored dead letter as a JSON line.
    List,
    /// Re-apply one dead letter (by id) or all of them; applied ones are removed.
    Replay {
        /// Id of the dead letter to replay.
        #[arg(required_unless_present = "all", conflicts_with = "all")]
        id: Option<i64>,
        /// Replay every dead letter.
        #[arg(long)]
        all: bool,
    },
}

/// `consumers` subcommands.
#[derive(Debug, Subcommand)]
pub enum ConsumersCommand {
    /// Create missing durables and update changed tunables; refuse a changed delivery policy.
    Apply {
        /// Directory of `<durable>.json` files (`nats consumer add --config` form).
        #[arg(long, default_value = "nats/consumers")]
        dir: std::path::PathBuf,
        /// Delete and recreate a durable whose deliver/ack/replay policy or filter changed (it
        /// starts again from its deliver policy).
        #[arg(long)]
        allow_policy_change: bool,
    },
}

/// `dlq` subcommands.
#[derive(Debug, Subcommand)]
pub enum DlqCommand {
    /// Print the dead letters as JSON lines, oldest first.
    List {
        /// Only this durable's.
        #[arg(long)]
        durable: Option<String>,
    },
    /// Deliver dead letters again to their module only (its replay durable on FOLLOWUP_DLQ).
    Replay {
        /// The durable whose dead letters to replay.
        durable: String,
        /// FOLLOWUP's stream sequence of the dead letter.
        #[arg(required_unless_present = "all", conflicts_with = "all")]
        sequence: Option<u64>,
        /// Replay all of the durable's dead letters.
        #[arg(long)]
        all: bool,
    },
}

/// Settings shared by every subcommand.
#[derive(Debug, Clone, Args)]
pub struct Config {
    /// `DATABASE_URL`, `NATS_URL` and `FOLLOWUP_TZ`, read the same way by every binary.
    #[command(flatten)]
    pub common: CommonArgs,
    // HTTP_ADDR stays per binary (not in CommonArgs): each binary has its own default port
    // (producer 9101, projector 9102, gateway 8080) so all three run side by side on one host
    // without settings.
    /// Listener of /metrics, /healthz, /readyz.
    #[arg(long, env = "HTTP_ADDR", default_value = "127.0.0.1:9102")]
    pub http_addr: SocketAddr,
    /// Messages per fetch and per transaction.
    #[arg(long, env = "PROJECTOR_BATCH_SIZE", default_value_t = 5000,
          value_parser = clap::value_parser!(u32).range(1..=20_000))]
    pub batch_size: u32,
    /// How long an idle fetch waits for the first message, in milliseconds.
    #[arg(long, env = "PROJECTOR_FETCH_WAIT_MS", default_value_t = 1000,
          value_parser = clap::value_parser!(u64).range(10..=30_000))]
    pub fetch_wait_ms: u64,
    /// Postgres connections in the pool.
    #[arg(long, env = "PROJECTOR_DB_CONNECTIONS", default_value_t = 4,
          value_parser = clap::value_parser!(u32).range(2..=64))]
    pub db_connections: u32,
    /// The FOLLOWUP stream's replicas and retention (the same in every binary); the retention
    /// also bounds how long the inbox keeps applied event ids.
    #[command(flatten)]
    pub stream: followup_infra::StreamSettings,
    /// Source of "now" for the gauges; tests inject a fixed or moving clock.
    #[arg(skip = Clock::system())]
    pub clock: Clock,
}

impl Config {
    /// A configuration with defaults, for tests and benchmarks that start the projector in
    /// process.
    pub fn new(database_url: impl Into<String>, nats_url: impl Into<String>) -> Config {
        Config {
            common: CommonArgs::new(database_url, nats_url),
            http_addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            batch_size: 5000,
            fetch_wait_ms: 1000,
            db_connections: 4,
            stream: followup_infra::StreamSettings::default(),
            clock: Clock::system(),
        }
    }

    /// The idle fetch wait.
    pub fn fetch_wait(&self) -> Duration {
        Duration::from_millis(self.fetch_wait_ms)
    }
}
