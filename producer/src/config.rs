//! The producer's configuration: one typed struct, from flags or the environment, validated at
//! start-up so a typo in `FOLLOWUP_CRON` or `FOLLOWUP_TZ` stops the process with a clear message.

use std::net::SocketAddr;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};
use followup_infra::CommonArgs;

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
#[derive(Debug, Clone, Subcommand)]
pub enum Command {
    /// Scheduler + delivery + outbox relay + /metrics, /healthz, /readyz until SIGINT/SIGTERM.
    Serve,
    /// One run now; exits 0 once its deliveries are settled and the outbox is drained to JetStream.
    RunOnce,
    /// Applies the migrations of all three services and exits. Run it with the URL of the owner
    /// of the CRM's tables; then every service may run as an application role.
    Migrate {
        /// Also grant this application role what the services need (the CRM tables we read and
        /// write, our tables and sequences).
        #[arg(long, value_name = "ROLE")]
        grant_to: Option<String>,
    },
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
    /// `DATABASE_URL`, `NATS_URL` and `FOLLOWUP_TZ` (the time zone of the cron expression
    /// too), read the same way by every binary.
    #[command(flatten)]
    pub common: CommonArgs,
    // HTTP_ADDR stays per binary (not in CommonArgs): each binary has its own default port
    // (producer 9101, projector 9102, gateway 8080) so all three run side by side on one host
    // without settings.
    /// Listener for /metrics, /healthz and /readyz.
    #[arg(long, env = "HTTP_ADDR", default_value = "127.0.0.1:9101")]
    pub http_addr: SocketAddr,
    /// Six-field cron expression (with seconds) for scheduled runs.
    #[arg(long, env = "FOLLOWUP_CRON", default_value = "0 0 9 * * *")]
    pub followup_cron: String,
    /// `log` or `smtp` (`SMTP_URL`, `UNSUBSCRIBE_BASE_URL` and `UNSUBSCRIBE_SECRET` required).
    #[arg(long, env = "MAILER", value_enum, default_value = "log")]
    pub mailer: MailerKind,
    /// With `MAILER=log`: append the JSON lines to this file instead of stdout.
    #[arg(long, env = "MAILER_LOG_FILE")]
    pub mailer_log_file: Option<std::path::PathBuf>,
    /// SMTP server URL, required with `MAILER=smtp`: `smtp://host:port` (plain, local relays),
    /// `smtp://host:port?tls=required` (STARTTLS), `smtps://host:port` (implicit TLS);
    /// `user:password@host` to authenticate.
    #[arg(long, env = "SMTP_URL", hide_env_values = true)]
    pub smtp_url: Option<String>,
    /// Sender of the follow-ups (`Name <address>` or an address).
    #[arg(long, env = "SMTP_FROM", default_value = DEFAULT_SMTP_FROM)]
    pub smtp_from: String,
    /// Timeout for connecting to the SMTP server and for each SMTP command, in milliseconds.
    #[arg(long, env = "SMTP_TIMEOUT_MS", default_value_t = 30_000)]
    pub smtp_timeout_ms: u64,
    /// First retry delay after a temporary failure, in milliseconds; doubles per attempt.
    #[arg(long, env = "SMTP_RETRY_BASE_MS", default_value_t = 2_000)]
    pub smtp_retry_base_ms: u64,
    /// Longest single retry delay, in milliseconds (also while the server is unavailable).
    #[arg(long, env = "SMTP_RETRY_MAX_MS", default_value_t = 60_000)]
    pub smtp_retry_max_ms: u64,
    /// Attempts answered by the server (4xx) before a follow-up finally fails.
    #[arg(long, env = "SMTP_MAX_ATTEMPTS", default_value_t = 5)]
    pub smtp_max_attempts: u32,
    /// Directory with the e-mail templates, replacing the built-in ones (see `templates/`).
    #[arg(long, env = "FOLLOWUP_TEMPLATE_DIR")]
    pub template_dir: Option<std::path::PathBuf>,
    /// Base URL of the gateway for unsubscribe links (`<base>/unsubscribe?lead=..&sig=..`);
    /// required with `MAILER=smtp`, else `http://127.0.0.1:8080`.
    #[arg(long, env = "UNSUBSCRIBE_BASE_URL")]
    pub unsubscribe_base_url: Option<String>,
    /// HMAC key of unsubscribe links, shared with the gateway; required with `MAILER=smtp`
    /// (at least 16 bytes).
    #[arg(long, env = "UNSUBSCRIBE_SECRET", hide_env_values = true)]
    pub unsubscribe_secret: Option<String>,
    /// Seconds without a heartbeat after which a run's unsettled claims count as abandoned
    /// (it crashed) and a later run sends those follow-ups again.
    #[arg(long, env = "FOLLOWUP_CLAIM_TIMEOUT_SECS", default_value_t = 300)]
    pub claim_timeout_secs: u64,
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
    /// The FOLLOWUP stream's replicas and retention (the same in every binary).
    #[command(flatten)]
    pub stream: followup_infra::StreamSettings,
}

/// `SMTP_FROM` when unset. Set it to an address of your own domain: relays reject or junk mail
/// from a domain whose SPF/DKIM do not cover them.
pub const DEFAULT_SMTP_FROM: &str = "FreshPlan <noreply@freshplan.example>";

/// `UNSUBSCRIBE_BASE_URL` with `MAILER=log`: the gateway's default listener.
pub const DEV_UNSUBSCRIBE_BASE_URL: &str = "http://127.0.0.1:8080";

/// Why a configuration is rejected.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error(
        "FOLLOWUP_CRON {expr:?} is not a six-field cron expression (sec min hour dom mon dow): {reason}"
    )]
    Cron { expr: String, reason: String },
    #[error("MAILER=smtp needs {0}")]
    MissingForSmtp(&'static str),
    #[error("{name} is not valid: {reason}")]
    Invalid { name: &'static str, reason: String },
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
        let schedule = Schedule::parse(&self.followup_cron, self.common.followup_tz)?;
        if self.mailer == MailerKind::Smtp {
            let url = self
                .smtp_url
                .as_deref()
                .ok_or(ConfigError::MissingForSmtp("SMTP_URL"))?;
            // Parses scheme, host, port, tls parameter and credentials; connects nothing.
            lettre::AsyncSmtpTransport::<lettre::Tokio1Executor>::from_url(url).map_err(|e| {
                ConfigError::Invalid {
                    name: "SMTP_URL",
                    reason: format!(
                        "{e} (use smtp://host:port, smtp://host:port?tls=required or smtps://host:port)"
                    ),
                }
            })?;
            if self.unsubscribe_base_url.is_none() {
                return Err(ConfigError::MissingForSmtp("UNSUBSCRIBE_BASE_URL"));
            }
            if self.unsubscribe_secret.is_none() {
                return Err(ConfigError::MissingForSmtp("UNSUBSCRIBE_SECRET"));
            }
        }
        self.smtp_from
            .parse::<lettre::message::Mailbox>()
            .map_err(|e| ConfigError::Invalid {
                name: "SMTP_FROM",
                reason: e.to_string(),
            })?;
        if let Some(base) = &self.unsubscribe_base_url
            && !(base.starts_with("http://") || base.starts_with("https://"))
        {
            return Err(ConfigError::Invalid {
                name: "UNSUBSCRIBE_BASE_URL",
                reason: format!("{base:?} is not an http(s) URL"),
            });
        }
        if let Some(secret) = &self.unsubscribe_secret
            && secret.len() < 16
        {
            return Err(ConfigError::Invalid {
                name: "UNSUBSCRIBE_SECRET",
                reason: "shorter than 16 bytes".into(),
            });
        }
        check_range("SMTP_MAX_ATTEMPTS", self.smtp_max_attempts as i64, 1, 100)?;
        check_range(
            "SMTP_RETRY_BASE_MS",
            self.smtp_retry_base_ms as i64,
            1,
            3_600_000,
        )?;
        check_range(
            "SMTP_RETRY_MAX_MS",
            self.smtp_retry_max_ms as i64,
            self.smtp_retry_base_ms as i64,
            3_600_000,
        )?;
        check_range("SMTP_TIMEOUT_MS", self.smtp_timeout_ms as i64, 100, 600_000)?;
        check_range(
            "FOLLOWUP_CLAIM_TIMEOUT_SECS",
            self.claim_timeout_secs as i64,
            1,
            86_400,
        )?;
        check_range("FOLLOWUP_BATCH_SIZE", self.batch_size, 1, 50_000)?;
        check_range("RELAY_BATCH_SIZE", self.relay_batch_size, 1, 50_000)?;
        check_range("RELAY_WINDOW", self.relay_window as i64, 1, 4096)?;
        Ok(schedule)
    }

    /// Retry settings derived from this configuration.
    pub fn retry(&self) -> crate::delivery::RetryPolicy {
        crate::delivery::RetryPolicy {
            base: Duration::from_millis(self.smtp_retry_base_ms),
            max_attempts: self.smtp_max_attempts,
            max_delay: Duration::from_millis(self.smtp_retry_max_ms),
            ..Default::default()
        }
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
