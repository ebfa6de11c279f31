//! The producer's configuration: one typed struct, from flags or the environment, validated at
//! start-up so a typo in `FOLLOWUP_CRON` or `FOLLOWUP_TZ` stops the process with a clear message.

use std::net::SocketAddr;
use std::time::Duration;

use chrono_tz::Tz;
use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::schedule::Schedule;

/// `followup-producer`: due T+3/T+7 follow-ups → e-mail → transactional outbox → JetStream.
#[derive(Debug, Parser)]
#[command(name = "followup-producer", version, about)]
pub struct Cli {
    #[command(flatten)]
    pub config: ProducerConfig,
    #[command(subcommand)]
    pub command: Command,
}

/// What the process does.
#[derive(Debug, Clone, Copy, Subcommand)]
pub enum Command {
    /// Scheduler + delivery + outbox relay + /metrics, /healthz, /readyz until SIGINT/SIGTERM.
    Serve,
    /// One run now; exits 0 once its deliveries are settled and the outbox is drained to JetStream.
    RunOnce,
}

/// Which mailer delivers the rendered follow-ups.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum MailerKind {
    /// Writes every rendered e-mail as one JSON line to stdout.
    Log,
    /// SMTP delivery (`SMTP_URL`).
    Smtp,
}

/// Settings shared by both subcommands.
#[derive(Debug, Clone, Args)]
pub struct ProducerConfig {
    /// Postgres URL of the CRM database.
    #[arg(long, env = "DATABASE_URL")]
    pub database_url: String,
    /// NATS server URL.
    #[arg(long, env = "NATS_URL", default_value = "nats://127.0.0.1:4222")]
    pub nats_url: String,
    /// Listener for /metrics, /healthz and /readyz.
    #[arg(long, env = "HTTP_ADDR", default_value = "127.0.0.1:9101")]
    pub http_addr: SocketAddr,
    /// Six-field cron expression (with seconds) for scheduled runs.
    #[arg(long, env = "FOLLOWUP_CRON", default_value = "0 0 9 * * *")]
    pub followup_cron: String,
    /// IANA time zone the cron expression and "today" are read in.
    #[arg(long, env = "FOLLOWUP_TZ", default_value = "Europe/Berlin")]
    pub followup_tz: Tz,
    /// `log` or `smtp`.
    #[arg(long, env = "MAILER", value_enum, default_value = "log")]
    pub mailer: MailerKind,
    /// With `MAILER=log`: append the JSON lines to this file instead of stdout.
    #[arg(long, env = "MAILER_LOG_FILE")]
    pub mailer_log_file: Option<std::path::PathBuf>,
    /// SMTP server URL, required with `MAILER=smtp`.
    #[arg(long, env = "SMTP_URL")]
    pub smtp_url: Option<String>,
    /// Leads claimed and committed per transaction during a run.
    #[arg(long, env = "FOLLOWUP_BATCH_SIZE", default_value_t = 1000)]
    pub batch_size: i64,
    /// Outbox rows the relay publishes per transaction.
    #[arg(long, env = "RELAY_BATCH_SIZE", default_value_t = 5000)]
    pub relay_batch_size: i64,
    /// Publishes in flight (sent, PubAck not yet received); bounded well below the client's 5000.
    #[arg(long, env = "RELAY_WINDOW", default_value_t = 2048)]
    pub relay_window: usize,
    /// How often the relay polls when no NOTIFY arrives, in milliseconds.
    #[arg(long, env = "RELAY_POLL_MS", default_value_t = 1000)]
    pub relay_poll_ms: u64,
}

/// Why a configuration is rejected.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error(
        "FOLLOWUP_CRON {expr:?} is not a six-field cron expression (sec min hour dom mon dow): {reason}"
    )]
    Cron { expr: String, reason: String },
    #[error("MAILER=smtp needs SMTP_URL")]
    SmtpUrlMissing,
    #[error("MAILER=smtp is not available in this build yet; use MAILER=log")]
    SmtpUnavailable,
    #[error("{name} must be between {min} and {max}, got {value}")]
    OutOfRange {
        name: &'static str,
        value: i64,
        min: i64,
        max: i64,
    },
}

impl ProducerConfig {
    /// Checks everything that can be checked without I/O and returns the parsed schedule.
    pub fn validate(&self) -> Result<Schedule, ConfigError> {
        let schedule = Schedule::parse(&self.followup_cron, self.followup_tz)?;
        if self.mailer == MailerKind::Smtp {
            if self.smtp_url.is_none() {
                return Err(ConfigError::SmtpUrlMissing);
            }
            return Err(ConfigError::SmtpUnavailable);
        }
        check_range("FOLLOWUP_BATCH_SIZE", self.batch_size, 1, 50_000)?;
        check_range("RELAY_BATCH_SIZE", self.relay_batch_size, 1, 50_000)?;
        check_range("RELAY_WINDOW", self.relay_window as i64, 1, 4096)?;
        Ok(schedule)
    }

    /// Relay settings derived from this configuration.
    pub fn relay(&self) -> crate::relay::RelayConfig {
        crate::relay::RelayConfig {
            batch_size: self.relay_batch_size,
            window: self.relay_window,
            idle_poll: Duration::from_millis(self.relay_poll_ms.max(10)),
        }
    }
}

fn check_range(name: &'static str, value: i64, min: i64, max: i64) -> Result<(), ConfigError> {
    if (min..=max).contains(&value) {
        Ok(())
    } else {
        Err(ConfigError::OutOfRange {
            name,
            value,
            min,
            max,
        })
    }
}
