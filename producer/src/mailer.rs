//! Mailers deliver rendered follow-ups. The outcome says whether the server accepted the
//! message: only an accepted message is recorded as sent. Retrying is the caller's business
//! ([`crate::delivery`]); a mailer makes exactly one attempt per call.

use std::io::Write;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use lettre::message::header::{ContentType, HeaderName, HeaderValue};
use lettre::message::{Mailbox, Message};
use lettre::transport::smtp::PoolConfig;
use lettre::{AsyncSmtpTransport, AsyncTransport, Tokio1Executor};

use crate::template::Email;

/// Why a delivery did not go through.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SendError {
    /// The server answered this message with a transient reply (4xx) or a garbled one: worth
    /// retrying, and each such answer counts as an attempt.
    #[error("temporary delivery failure: {0}")]
    Temporary(String),
    /// Retrying will not help (5xx, invalid address).
    #[error("permanent delivery failure: {0}")]
    Permanent(String),
    /// The server cannot take mail at all right now: connection refused or reset, timeout, TLS
    /// or authentication failure. Not this message's fault, so it does not count as an attempt:
    /// deliveries wait until the server is back.
    #[error("mail server unavailable: {0}")]
    Unavailable(String),
}

/// The configured mailer. An enum rather than a trait object: the set is closed and known.
#[derive(Debug, Clone)]
pub enum Mailer {
    /// Writes each e-mail as one JSON line to stdout (development, demos).
    Log,
    /// Writes each e-mail as one JSON line to a file (`MAILER_LOG_FILE`), appending.
    LogFile(Arc<Mutex<std::io::BufWriter<std::fs::File>>>),
    /// Delivers over SMTP (`SMTP_URL`).
    Smtp(Arc<SmtpMailer>),
}

/// SMTP delivery through lettre's async transport, with a connection pool.
pub struct SmtpMailer {
    transport: AsyncSmtpTransport<Tokio1Executor>,
    from: Mailbox,
}

impl std::fmt::Debug for SmtpMailer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The transport holds the credentials of SMTP_URL: never print it.
        f.debug_struct("SmtpMailer")
            .field("from", &self.from.to_string())
            .finish_non_exhaustive()
    }
}

/// SMTP settings (from `SMTP_URL`, `SMTP_FROM`, `SMTP_TIMEOUT_MS`).
#[derive(Clone)]
pub struct SmtpSettings {
    /// `smtp://host:port` (plain, for local relays), `smtp://host:port?tls=required` (STARTTLS),
    /// `smtps://host:port` (implicit TLS); `user:password@` for authentication.
    pub url: String,
    pub from: String,
    /// Connect and per-command timeout.
    pub timeout: Duration,
    /// Connections kept open at most (one per concurrent delivery).
    pub pool_size: u32,
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

    /// An SMTP mailer. Validates the URL and the sender; connects lazily (the server may be down
    /// at start-up, deliveries wait for it).
    pub fn smtp(settings: &SmtpSettings) -> Result<Mailer, String> {
        let from: Mailbox = settings
            .from
            .parse()
            .map_err(|e| format!("SMTP_FROM {:?} is not a mailbox: {e}", settings.from))?;
        let transport = AsyncSmtpTransport::<Tokio1Executor>::from_url(&settings.url)
            .map_err(|e| format!("SMTP_URL is not usable: {e}"))?
            .timeout(Some(settings.timeout))
            .pool_config(
                PoolConfig::new()
                    .max_size(settings.pool_size.max(1))
                    .idle_timeout(Duration::from_secs(30)),
            )
            .build();
        Ok(Mailer::Smtp(Arc::new(SmtpMailer { transport, from })))
    }

    /// Flushes buffered output; a run calls it before recording deliveries as sent, so every
    /// e-mail it records has been written. SMTP has nothing to flush: the server's reply is the
    /// acceptance.
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
            Mailer::Smtp(_) => Ok(()),
        }
    }

    /// One delivery attempt.
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
            Mailer::Smtp(smtp) => {
                let message = smtp.message(email)?;
                smtp.transport
                    .send(message)
                    .await
                    .map(|_| ())
                    .map_err(classify)
            }
        }
    }
}

impl SmtpMailer {
    /// The MIME message: plain text UTF-8, the stable Message-ID, and RFC 2369/8058
    /// `List-Unsubscribe` headers pointing at the signed link.
    fn message(&self, email: &Email) -> Result<Message, SendError> {
        // The address is personal data: the reason is stored and logged without it.
        let to: Mailbox = email.to.parse().map_err(|e| {
            SendError::Permanent(redact_addresses(&format!("invalid recipient address: {e}")))
        })?;
        Message::builder()
            .from(self.from.clone())
            .to(to)
            .subject(email.subject.clone())
            .message_id(Some(email.message_id.clone()))
            .date_now()
            .header(ContentType::TEXT_PLAIN)
            .raw_header(HeaderValue::new(
                HeaderName::new_from_ascii_str("List-Unsubscribe"),
                format!("<{}>", email.unsubscribe_url),
            ))
            .raw_header(HeaderValue::new(
                HeaderName::new_from_ascii_str("List-Unsubscribe-Post"),
                "List-Unsubscribe=One-Click".to_owned(),
            ))
            .body(email.body.clone())
            .map_err(|e| SendError::Permanent(format!("cannot build the message: {e}")))
    }
}

/// SMTP reply codes that say "this sender may not send", not "this message is refused":
/// authentication required / failed / too weak / needs encryption, and temporary auth failure.
const SENDER_LEVEL_CODES: [u16; 5] = [454, 530, 534, 535, 538];

/// Sorts a lettre error into the retry classes.
fn classify(err: lettre::transport::smtp::Error) -> SendError {
    let text = error_text(&err);
    match err.status().map(u16::from) {
        Some(code) if SENDER_LEVEL_CODES.contains(&code) => SendError::Unavailable(text),
        Some(_) if err.is_permanent() => SendError::Permanent(text),
        Some(_) => SendError::Temporary(text),
        // A reply we could not parse: the server talked to us, count it as an attempt.
        None if err.is_response() => SendError::Temporary(text),
        // Connection, network, timeout, TLS, STARTTLS/auth mechanism missing, pool shut down.
        None => SendError::Unavailable(text),
    }
}

/// The error with its sources, on one line (lettre's Display omits nested causes).
fn error_text(err: &lettre::transport::smtp::Error) -> String {
    let mut text = err.to_string();
    let mut source = std::error::Error::source(err);
    while let Some(inner) = source {
        let more = inner.to_string();
        if !text.contains(&more) {
            text.push_str(&format!(": {more}"));
        }
        source = inner.source();
    }
    redact_addresses(&text.replace(['\r', '\n'], " "))
}

/// `text` with every e-mail address replaced by `<address>`: SMTP replies often quote the
/// recipient ("550 5.1.1 <lead@example.com>: unknown user"), and reasons are stored in
/// `followup_deliveries`, sent in `failed` events and logged, none of which may hold personal data.
pub fn redact_addresses(text: &str) -> String {
    let local = |c: char| c.is_alphanumeric() || "._%+-'!#$&*/=?^`{|}~".contains(c);
    let domain = |c: char| c.is_alphanumeric() || c == '.' || c == '-';
    let chars: Vec<char> = text.chars().collect();
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    while i < chars.len() {
        if chars[i] == '@' {
            let kept: Vec<char> = out.chars().collect();
            let mut k = kept.len();
            while k > 0 && local(kept[k - 1]) {
                k -= 1;
            }
            let mut end = i + 1;
            while end < chars.len() && domain(chars[end]) {
                end += 1;
            }
            if k < kept.len() && end > i + 1 {
                let start = kept[..k].iter().collect::<String>().len();
                out.truncate(start);
                out.push_str("<address>");
                i = end;
                continue;
            }
        }
        out.push(chars[i]);
        i += 1;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::redact_addresses;

    #[test]
    fn addresses_are_redacted_from_smtp_replies() {
        assert_eq!(
            redact_addresses(
                "550 5.1.1 <frau.test+x@gasthaus-test.de>: Recipient address rejected"
            ),
            "550 5.1.1 <<address>>: Recipient address rejected"
        );
        assert_eq!(
            redact_addresses("a@b.de and c.d@e.org"),
            "<address> and <address>"
        );
        assert_eq!(redact_addresses("no address @ here"), "no address @ here");
        assert_eq!(redact_addresses("Grüße@Straße.de"), "<address>");
    }
}
