//! Stream and consumer definitions. The JSON files in `nats/` are the single source: operators
//! feed them to `nats stream add --config` / `nats consumer add --config`, services embed them
//! here and create or update the stream from them at start-up.

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

/// `(durable name, ConsumerConfig JSON)` of every durable consumer the pipeline provisions.
pub const CONSUMER_DEFINITIONS: &[(&str, &str)] = &[
    (
        "projector",
        include_str!("../../nats/consumer-projector.json"),
    ),
    (
        "customer-conversion",
        include_str!("../../nats/consumer-customer-conversion.json"),
    ),
    (
        "analytics",
        include_str!("../../nats/consumer-analytics.json"),
    ),
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn definitions_name_the_stream_and_their_durables() {
        let stream: serde_json::Value = serde_json::from_str(STREAM_DEFINITION).unwrap();
        assert_eq!(stream["name"], STREAM_NAME);
        assert_eq!(stream["subjects"][0], STREAM_SUBJECTS);
        for (name, json) in CONSUMER_DEFINITIONS {
            let consumer: serde_json::Value = serde_json::from_str(json).unwrap();
            assert_eq!(consumer["durable_name"], *name);
            assert_eq!(consumer["ack_policy"], "explicit");
            assert!(consumer.get("filter_subjects").is_none(), "2.10-only field");
        }
    }
}
