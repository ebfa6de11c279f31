//! Mailers deliver rendered follow-ups. The outcome says whether the server accepted the
//! message: only an accepted message is recorded as sent.

use std::io::Write;

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
    /// Writes each e-mail as one JSON line to stdout (development, demos, benchmarks).
    Log,
}

impl Mailer {
    /// Delivers one e-mail.
    pub async fn send(&self, email: &Email) -> Result<(), SendError> {
        match self {
            Mailer::Log => {
                let line = serde_json::to_string(email)
                    .map_err(|e| SendError::Permanent(format!("cannot serialise e-mail: {e}")))?;
                let mut out = std::io::stdout().lock();
                writeln!(out, "{line}").map_err(|e| SendError::Temporary(format!("stdout: {e}")))
            }
        }
    }
}
