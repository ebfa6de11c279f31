//! `show-events`: the stream's messages as this contract reads them, one JSON line each — the
//! operator's view of the stream without the `nats` CLI, and the reference the cross-SDK check
//! (`scripts/check-cloudevents.sh`) compares the Python and JavaScript CloudEvents SDKs against.
//!
//! A line is `{"seq", "subject", "event": {<attribute>: <string>, …, "data": <JSON>}}`: every
//! attribute and extension the CloudEvents SDK read, as its string form, and `data` as JSON. A
//! message that is not a valid event of the contract gives `{"seq", "subject", "error"}`.

use std::io::Write;

use async_nats::jetstream;
use cloudevents::event::Data;
use followup_contract::{STREAM_NAME, cloudevents, parse_event};
use serde_json::{Map, Value, json};

/// What [`show_events`] printed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Shown {
    pub events: u64,
    pub invalid: u64,
}

/// Prints the messages from stream sequence `from` on, at most `limit` of them.
pub async fn show_events(
    js: &jetstream::Context,
    from: u64,
    limit: Option<u64>,
    out: &mut impl Write,
) -> anyhow::Result<Shown> {
    let mut stream = js.get_stream(STREAM_NAME).await?;
    let state = stream.info().await?.state.clone();
    let mut shown = Shown::default();
    if state.messages == 0 {
        return Ok(shown);
    }
    for seq in from.max(state.first_sequence)..=state.last_sequence {
        if limit.is_some_and(|limit| shown.events + shown.invalid >= limit) {
            break;
        }
        // A sequence may be gone (deleted, or expired by the stream's max age): skip it.
        let Ok(message) = stream.get_raw_message(seq).await else {
            continue;
        };
        let line = describe(seq, &message.subject, &message.payload);
        if line.get("error").is_some() {
            shown.invalid += 1;
        } else {
            shown.events += 1;
        }
        writeln!(out, "{line}")?;
    }
    Ok(shown)
}

/// One message's line (see the module documentation).
pub fn describe(seq: u64, subject: &str, body: &[u8]) -> Value {
    if let Err(reason) = parse_event(body) {
        return json!({"seq": seq, "subject": subject, "error": reason.to_string()});
    }
    // The contract's checks passed, so the SDK reads it; the SDK's own view is what is shown.
    let event: cloudevents::Event = match serde_json::from_slice(body) {
        Ok(event) => event,
        Err(e) => return json!({"seq": seq, "subject": subject, "error": e.to_string()}),
    };
    let mut attributes = Map::new();
    for (name, value) in event.iter_attributes() {
        attributes.insert(name.to_owned(), Value::String(value.to_string()));
    }
    for (name, value) in event.iter_extensions() {
        attributes.insert(name.to_owned(), Value::String(value.to_string()));
    }
    let data = match event.data() {
        Some(Data::Json(data)) => data.clone(),
        Some(Data::String(text)) => Value::String(text.clone()),
        Some(Data::Binary(_)) | None => Value::Null,
    };
    attributes.insert("data".to_owned(), data);
    json!({"seq": seq, "subject": subject, "event": attributes})
}

#[cfg(test)]
mod tests {
    use super::*;
    use followup_contract::{EventParts, FollowupKind, FollowupSent, sent_key};

    #[test]
    fn a_line_holds_every_attribute_as_a_string_and_data_as_json() {
        let now = chrono::Utc::now();
        let parts = EventParts::new(
            Some("42".into()),
            sent_key(42, FollowupKind::T3),
            now,
            &FollowupSent {
                lead_id: 42,
                owner_user_id: None,
                kind: FollowupKind::T3,
                sent_at: now,
                run_id: "r".into(),
            },
        );
        let id = parts.id.to_string();
        let line = describe(7, "freshplan.lead.followup.sent", &parts.encode());
        let event = &line["event"];
        assert_eq!(line["seq"], 7);
        assert_eq!(event["id"], id.as_str());
        assert_eq!(event["specversion"], "1.0");
        assert_eq!(event["type"], "lead.followup.sent.v1");
        assert_eq!(event["subject"], "42");
        assert_eq!(event["idempotencykey"], "lead:42:followup:t3");
        assert_eq!(event["data"]["leadId"], 42);
        assert!(event["time"].is_string());
        let bad = describe(8, "freshplan.lead.changed", b"{}");
        assert!(
            bad["error"].as_str().unwrap().contains("CloudEvents"),
            "{bad}"
        );
    }
}
