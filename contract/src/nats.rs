//! Stream and consumer definitions. The JSON files in `nats/` are the single source: operators
//! feed them to `nats stream add --config` / `nats consumer add --config`, services embed the
//! streams and the projector's durable here and create or update them at start-up. Also the
//! dead-letter stream's subjects and headers, which other modules read.

/// Name of the JetStream stream holding every follow-up event.
pub const STREAM_NAME: &str = "FOLLOWUP";
/// Subjects bound to the stream.
pub const STREAM_SUBJECTS: &str = "freshplan.lead.>";
/// Durable name of the cockpit projector's consumer.
pub const PROJECTOR_CONSUMER: &str = "projector";
/// Core-NATS subject on which the projector announces changed figures (not persisted).
pub const COCKPIT_CHANGED_SUBJECT: &str = "freshplan.cockpit.followup.changed";
/// `Content-Type` header of every published event (structured-mode CloudEvents).
pub const CONTENT_TYPE: &str = "application/cloudevents+json";

/// `nats/stream-FOLLOWUP.json`, in the server's StreamConfig JSON form.
pub const STREAM_DEFINITION: &str = include_str!("../../nats/stream-FOLLOWUP.json");

/// `nats/consumers/projector.json`: the projector's own durable, which the services provision.
/// The other modules' durables are data (`nats/consumers/<durable>.json`), applied by
/// `followup-projector consumers apply`, never built into a binary.
pub const PROJECTOR_CONSUMER_DEFINITION: &str = include_str!("../../nats/consumers/projector.json");

/// Name of the stream holding the dead letters of FOLLOWUP's durables and their replays.
pub const DLQ_STREAM_NAME: &str = "FOLLOWUP_DLQ";
/// `nats/stream-FOLLOWUP_DLQ.json`, in the server's StreamConfig JSON form.
pub const DLQ_STREAM_DEFINITION: &str = include_str!("../../nats/stream-FOLLOWUP_DLQ.json");
/// Durable of the dead-letter collector on `FOLLOWUP_DLQ` (reads the captured advisories).
pub const DLQ_COLLECTOR_CONSUMER: &str = "dlq-collector";
/// Subject of JetStream's max-deliveries advisories for FOLLOWUP's durables (`*` = durable),
/// captured by the `FOLLOWUP_DLQ` stream so no advisory is lost while no collector runs.
pub const MAX_DELIVERIES_ADVISORIES: &str = "$JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES.FOLLOWUP.*";

/// Header of a dead letter or replay: FOLLOWUP's stream sequence of the original message.
pub const DLQ_HEADER_SEQUENCE: &str = "Followup-Dlq-Stream-Sequence";
/// Header of a dead letter or replay: the durable that gave up on the message.
pub const DLQ_HEADER_DURABLE: &str = "Followup-Dlq-Durable";
/// Header of a dead letter or replay: deliveries the durable made.
pub const DLQ_HEADER_DELIVERIES: &str = "Followup-Dlq-Deliveries";
/// Header of a dead letter or replay: the original message's subject.
pub const DLQ_HEADER_SUBJECT: &str = "Followup-Dlq-Subject";
/// Header of a dead letter or replay: the last error the module reported, when it did.
pub const DLQ_HEADER_ERROR: &str = "Followup-Dlq-Last-Error";
/// Header of a dead letter or replay: the original message's `Nats-Msg-Id` (idempotency key).
pub const DLQ_HEADER_ORIGINAL_ID: &str = "Followup-Dlq-Original-Msg-Id";

/// Subject of `durable`'s dead letters in `FOLLOWUP_DLQ`.
pub fn dlq_letter_subject(durable: &str) -> String {
    format!("followup.dlq.letter.{durable}")
}

/// Subject of `durable`'s replays in `FOLLOWUP_DLQ`: the filter of its replay durable (same
/// name, on `FOLLOWUP_DLQ`), so a replay reaches that module only.
pub fn dlq_replay_subject(durable: &str) -> String {
    format!("followup.dlq.replay.{durable}")
}

/// Subject on which a module may report why it could not process FOLLOWUP's message `sequence`
/// (the body is the error text); the collector copies the last one into the dead letter.
pub fn dlq_error_subject(durable: &str, sequence: u64) -> String {
    format!("followup.dlq.error.{durable}.{sequence}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn definitions_name_the_stream_and_their_durables() {
        let stream: serde_json::Value = serde_json::from_str(STREAM_DEFINITION).unwrap();
        assert_eq!(stream["name"], STREAM_NAME);
        assert_eq!(stream["subjects"][0], STREAM_SUBJECTS);
        let consumer: serde_json::Value =
            serde_json::from_str(PROJECTOR_CONSUMER_DEFINITION).unwrap();
        assert_eq!(consumer["durable_name"], PROJECTOR_CONSUMER);
        assert_eq!(consumer["ack_policy"], "explicit");
        assert!(consumer.get("filter_subjects").is_none(), "2.10-only field");
        let dlq: serde_json::Value = serde_json::from_str(DLQ_STREAM_DEFINITION).unwrap();
        assert_eq!(dlq["name"], DLQ_STREAM_NAME);
        assert_eq!(dlq["subjects"][1], MAX_DELIVERIES_ADVISORIES);
        assert!(dlq_replay_subject("analytics").starts_with("followup.dlq."));
    }
}
