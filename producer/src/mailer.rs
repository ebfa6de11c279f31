//! Mailers deliver rendered follow-ups. The outcome says whether the server accepted the
//! message: only an accepted message is recorded as sent.

use std::io::Write;
use std::path::Path;
use std::sync::{Arc, Mutex};

use crate::template::Email;

/// Why a delivery did not go through.
#[derive(Debug, Clone, thiserror::Error)]
pub enum SendError {
    /// Worth retrying (4xx, connection refused, timeout).
    #[error("temporary delivery failure: {0}")]
    Temporary(String),
    /// Retrying will not help (5xx, invalid address).
    #[error("permanent delivery failure: {0}")]
    Permanent(String),
}

/// The configured mailer. An enum rather than a trait object: the set is closed and known.
#[derive(Debug, Clone)]
pub enum Mailer {
    /// Writes each e-mail as one JSON line to stdout (development, demos).
    Log,
    /// Writes each e-mail as one JSON line to a file (`MAILER_LOG_FILE`), appending.
    LogFile(Arc<Mutex<std::io::BufWriter<std::fs::File>>>),
}

impl Mailer {
    /// A `log` mailer appending to `path`.
    pub fn log_file(path: &Path) -> std::io::Result<Mailer> {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)?;
        Ok(Mailer::LogFile(Arc::new(Mutex::new(
            std::io::BufWriter::new(file),
        ))))
    }

    /// Flushes buffered output; a run calls it before committing a batch, so every e-mail it
    /// records as sent has been written.
    pub fn flush(&self) -> Result<(), SendError> {
        match self {
            Mailer::Log => std::io::stdout()
                .flush()
                .map_err(|e| SendError::Temporary(format!("stdout: {e}"))),
            Mailer::LogFile(file) => file
                .lock()
                .map_err(|_| SendError::Temporary("mail log poisoned".into()))?
                .flush()
                .map_err(|e| SendError::Temporary(format!("mail log: {e}"))),
        }
    }

    /// Delivers one e-mail.
    pub async fn send(&self, email: &Email) -> Result<(), SendError> {
        match self {
            Mailer::Log => {
                let line = serde_json::to_string(email)
                    .map_err(|e| SendError::Permanent(format!("cannot serialise e-mail: {e}")))?;
                let mut out = std::io::stdout().lock();
                writeln!(out, "{line}").map_err(|e| SendError::Temporary(format!("stdout: {e}")))
            }
            Mailer::LogFile(file) => {
                let line = serde_json::to_string(email)
                    .map_err(|e| SendError::Permanent(format!("cannot serialise e-mail: {e}")))?;
                let mut out = file
                    .lock()
                    .map_err(|_| SendError::Temporary("mail log poisoned".into()))?;
                writeln!(out, "{line}").map_err(|e| SendError::Temporary(format!("mail log: {e}")))
            }
        }
    }
}
