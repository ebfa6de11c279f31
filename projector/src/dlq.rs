//! Dead letters of every durable on `FOLLOWUP`: the collector that fills the `FOLLOWUP_DLQ`
//! stream from JetStream's max-deliveries advisories, and listing and replaying its letters.
//! The projector's own poison messages (valid NATS messages that are no valid event) keep their
//! table `projection_dead_letters`: they are stored in the same transaction as the batch around
//! them and replayed into the projection by `dead-letters replay`, which a stream cannot do.
//!
//! Here: `dlq list` and `dlq replay`: the dead letters of FOLLOWUP's durables, as stored by the
//! collector, and their replay to the one module they belong to. A replay is published on
//! `followup.dlq.replay.<durable>`, which only that module's replay durable (same name, on
//! `FOLLOWUP_DLQ`) reads: nats-server 2.9 gives a consumer one filter subject, so a module's
//! replays cannot go through its `FOLLOWUP` durable without reaching every other module too.

mod collect;

pub use collect::collect_dead_letters;

use async_nats::HeaderMap;
use async_nats::jetstream::stream::{RawMessageErrorKind, Stream};
use async_nats::jetstream::{self, message::StreamMessage};
use followup_contract::{
    DLQ_HEADER_DELIVERIES, DLQ_HEADER_DURABLE, DLQ_HEADER_ERROR, DLQ_HEADER_ORIGINAL_ID,
    DLQ_HEADER_SEQUENCE, DLQ_HEADER_SUBJECT, DLQ_STREAM_NAME, PROJECTOR_CONSUMER,
    dlq_letter_subject, dlq_replay_subject,
};
use serde::Serialize;

/// One dead letter, as `dlq list` prints it (a JSON line).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ModuleDeadLetter {
    pub durable: String,
    /// FOLLOWUP's sequence of the original message.
    pub stream_sequence: u64,
    pub deliveries: u64,
    pub subject: Option<String>,
    pub idempotency_key: Option<String>,
    pub last_error: Option<String>,
    /// Where the letter is in `FOLLOWUP_DLQ`.
    pub dlq_sequence: u64,
    pub collected_at: String,
    /// How often it was replayed so far.
    pub replays: u64,
}

/// Why a listing or replay failed.
#[derive(Debug, thiserror::Error)]
pub enum DlqError {
    #[error("FOLLOWUP_DLQ: {0}")]
    Nats(String),
    #[error(
        "the projector reads no replays: its poison messages are in its own table (`dead-letters replay`), and a projector message in FOLLOWUP_DLQ (a crash loop) is re-read by `rebuild`"
    )]
    ProjectorReplay,
    #[error("no dead letter of {durable:?} with stream sequence {sequence}")]
    NotFound { durable: String, sequence: u64 },
}

fn nats(e: impl std::fmt::Display) -> DlqError {
    DlqError::Nats(e.to_string())
}

/// Every dead letter (of `durable`, or of all durables), oldest first.
pub async fn list_module_dead_letters(
    js: &jetstream::Context,
    durable: Option<&str>,
) -> Result<Vec<ModuleDeadLetter>, DlqError> {
    let dlq = js.get_stream(DLQ_STREAM_NAME).await.map_err(nats)?;
    let durable = durable.unwrap_or("*");
    let replays = read_subject(&dlq, &dlq_replay_subject(durable)).await?;
    let letters = read_subject(&dlq, &dlq_letter_subject(durable)).await?;
    Ok(letters
        .iter()
        .map(|message| {
            let mut letter = describe(message);
            letter.replays = replays
                .iter()
                .map(describe)
                .filter(|r| r.durable == letter.durable)
                .filter(|r| r.stream_sequence == letter.stream_sequence)
                .count() as u64;
            letter
        })
        .collect())
}

/// Publishes the dead letter(s) of `durable` (one stream sequence, or all) to its replay
/// subject, once per call; returns the stream sequences replayed. The replay keeps the original
/// body and headers, so the module deduplicates it by `idempotencykey` like any redelivery.
pub async fn replay_module_dead_letters(
    js: &jetstream::Context,
    durable: &str,
    sequence: Option<u64>,
) -> Result<Vec<u64>, DlqError> {
    if durable == PROJECTOR_CONSUMER {
        return Err(DlqError::ProjectorReplay);
    }
    let dlq = js.get_stream(DLQ_STREAM_NAME).await.map_err(nats)?;
    let letters: Vec<ModuleDeadLetter> = list_module_dead_letters(js, Some(durable))
        .await?
        .into_iter()
        .filter(|l| sequence.is_none_or(|s| s == l.stream_sequence))
        .collect();
    if let (Some(sequence), true) = (sequence, letters.is_empty()) {
        let durable = durable.to_owned();
        return Err(DlqError::NotFound { durable, sequence });
    }
    let mut replayed = Vec::new();
    for letter in letters {
        let stored = dlq
            .get_raw_message(letter.dlq_sequence)
            .await
            .map_err(nats)?;
        let mut headers = HeaderMap::new();
        for (name, values) in stored.headers.iter() {
            let name: &str = name.as_ref();
            if name != "Nats-Msg-Id" {
                for value in values {
                    headers.append(name, value.as_str());
                }
            }
        }
        // A new id per replay: replaying again is a deliberate second delivery.
        let id = format!(
            "{durable}:{}:replay:{}",
            letter.stream_sequence,
            letter.replays + 1
        );
        headers.insert("Nats-Msg-Id", id.as_str());
        js.publish_with_headers(dlq_replay_subject(durable), headers, stored.payload)
            .await
            .map_err(nats)?
            .await
            .map_err(nats)?;
        replayed.push(letter.stream_sequence);
    }
    Ok(replayed)
}

/// Every message of `subject` (wildcards allowed), by direct sequence reads.
async fn read_subject(dlq: &Stream, subject: &str) -> Result<Vec<StreamMessage>, DlqError> {
    let mut messages = Vec::new();
    let mut next = 1;
    loop {
        let found = dlq
            .raw_message_builder()
            .sequence(next)
            .next_by_subject(subject)
            .send()
            .await;
        match found {
            Ok(message) => {
                next = message.sequence + 1;
                messages.push(message);
            }
            Err(e) if e.kind() == RawMessageErrorKind::NoMessageFound => return Ok(messages),
            Err(e) => return Err(nats(e)),
        }
    }
}

fn describe(message: &StreamMessage) -> ModuleDeadLetter {
    let header = |name: &str| message.headers.get(name).map(|v| v.as_str().to_owned());
    let number = |name: &str| header(name).and_then(|v| v.parse().ok()).unwrap_or(0);
    ModuleDeadLetter {
        durable: header(DLQ_HEADER_DURABLE).unwrap_or_default(),
        stream_sequence: number(DLQ_HEADER_SEQUENCE),
        deliveries: number(DLQ_HEADER_DELIVERIES),
        subject: header(DLQ_HEADER_SUBJECT),
        idempotency_key: header(DLQ_HEADER_ORIGINAL_ID),
        last_error: header(DLQ_HEADER_ERROR),
        dlq_sequence: message.sequence,
        collected_at: message.time.to_string(),
        replays: 0,
    }
}
