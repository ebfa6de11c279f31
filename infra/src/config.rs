//! The settings every binary reads the same way, as one clap [`Args`](clap::Args) struct each
//! binary flattens into its own configuration: one declaration of each variable's name, default,
//! help text and validation, so the three binaries cannot drift apart.
//!
//! `HTTP_ADDR` is not here: its default port differs per binary (see each `config.rs`).

use chrono_tz::Tz;

/// `NATS_URL` when unset: a local server.
pub const DEFAULT_NATS_URL: &str = "nats://127.0.0.1:4222";

/// `FOLLOWUP_TZ` when unset.
pub const DEFAULT_TZ: Tz = chrono_tz::Europe::Berlin;

/// Where the CRM database and NATS are, and the time zone of "today".
#[derive(Debug, Clone, clap::Args)]
pub struct CommonArgs {
    /// Postgres URL of the CRM database. Every command that reads or writes the database needs
    /// it (every producer command, the gateway's `serve`); the projector's NATS-only commands
    /// (`consumers`, `dlq`, `show-events`) run without it.
    #[arg(long, env = "DATABASE_URL")]
    pub database_url: Option<String>,
    /// NATS server URL, or several comma-separated (the nodes of a cluster).
    #[arg(long, env = "NATS_URL", default_value = DEFAULT_NATS_URL)]
    pub nats_url: String,
    /// IANA time zone of "today" and local midnight (and of the producer's cron expression);
    /// the same in every binary.
    #[arg(long, env = "FOLLOWUP_TZ", default_value = DEFAULT_TZ.name(), value_parser = parse_tz)]
    pub followup_tz: Tz,
}

/// A setting a command needs is missing.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("DATABASE_URL (or --database-url) is not set: this command needs the CRM's database")]
    MissingDatabaseUrl,
}

impl CommonArgs {
    /// The defaults, with this database and NATS: for tests and benchmarks that start a service
    /// in process.
    pub fn new(database_url: impl Into<String>, nats_url: impl Into<String>) -> CommonArgs {
        CommonArgs {
            database_url: Some(database_url.into()),
            nats_url: nats_url.into(),
            followup_tz: DEFAULT_TZ,
        }
    }

    /// `DATABASE_URL`, for a command that needs the database; checked first, before anything
    /// connects, so a missing setting is named instead of surfacing as a connection error.
    pub fn database_url(&self) -> Result<&str, ConfigError> {
        self.database_url
            .as_deref()
            .filter(|url| !url.trim().is_empty())
            .ok_or(ConfigError::MissingDatabaseUrl)
    }
}

/// `FOLLOWUP_TZ`'s parser: an IANA name, with a message that says so.
fn parse_tz(s: &str) -> Result<Tz, String> {
    s.parse::<Tz>()
        .map_err(|err| format!("not an IANA time zone: {s:?} ({err})"))
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(Debug, Parser)]
    struct Cli {
        #[command(flatten)]
        common: CommonArgs,
    }

    #[test]
    fn defaults_and_a_bad_time_zone() {
        let cli = Cli::try_parse_from(["t", "--database-url", "postgres://x/y"]).unwrap();
        assert_eq!(cli.common.nats_url, DEFAULT_NATS_URL);
        assert_eq!(cli.common.followup_tz, chrono_tz::Europe::Berlin);
        let err = Cli::try_parse_from(["t", "--database-url", "x", "--followup-tz", "Mars/Base"])
            .unwrap_err();
        assert!(err.to_string().contains("not an IANA time zone"), "{err}");
    }

    #[test]
    fn a_missing_or_blank_database_url_is_named() {
        let mut common = CommonArgs::new("postgres://x/y", DEFAULT_NATS_URL);
        assert_eq!(common.database_url().unwrap(), "postgres://x/y");
        for missing in [None, Some(String::new()), Some("  ".to_owned())] {
            common.database_url = missing;
            let err = common.database_url().unwrap_err().to_string();
            assert!(
                err.starts_with("DATABASE_URL (or --database-url) is not set"),
                "{err}"
            );
        }
    }
}
