//! Idempotency keys. They double as `Nats-Msg-Id`, so JetStream drops a republished event.

use crate::{EventType, FollowupKind};

/// `lead:<id>:followup:<t3|t7>`: a follow-up kind is delivered to a lead at most once.
pub fn sent_key(lead_id: i64, kind: FollowupKind) -> String {
    format!("lead:{lead_id}:followup:{}", kind.as_str())
}

/// `lead:<id>:followup:<t3|t7>:failed`.
pub fn failed_key(lead_id: i64, kind: FollowupKind) -> String {
    format!("{}:failed", sent_key(lead_id, kind))
}

/// `lead:<id>:change:<outbox id>`.
pub fn change_key(lead_id: i64, outbox_id: i64) -> String {
    format!("lead:{lead_id}:change:{outbox_id}")
}

/// The idempotency key of an outbox row: the key it holds, or — for a `lead.changed.v1` row the
/// database trigger wrote, which holds none so that the key format lives here only —
/// [`change_key`] of its subject (the lead id) and its outbox id. `None`: the row has neither.
pub fn outbox_key(
    event_type: EventType,
    subject: Option<&str>,
    stored_key: Option<&str>,
    outbox_id: i64,
) -> Option<String> {
    match (stored_key, event_type) {
        (Some(key), _) => Some(key.to_owned()),
        (None, EventType::Changed) => {
            let lead_id = subject?.parse().ok()?;
            Some(change_key(lead_id, outbox_id))
        }
        (None, _) => None,
    }
}

/// `followup-run:<slot or run id>`: a scheduled slot (RFC 3339) or a manual run's id, so two
/// replicas firing the same slot publish one `processed` event.
pub fn run_key(slot_or_run_id: &str) -> String {
    format!("followup-run:{slot_or_run_id}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_follow_the_contract() {
        assert_eq!(sent_key(42, FollowupKind::T3), "lead:42:followup:t3");
        assert_eq!(
            failed_key(42, FollowupKind::T7),
            "lead:42:followup:t7:failed"
        );
        assert_eq!(change_key(7, 1001), "lead:7:change:1001");
        let changed = EventType::Changed;
        assert_eq!(
            outbox_key(changed, Some("7"), None, 1001).unwrap(),
            "lead:7:change:1001"
        );
        assert_eq!(
            outbox_key(EventType::Sent, Some("7"), Some("k"), 1).unwrap(),
            "k"
        );
        assert_eq!(outbox_key(EventType::Sent, Some("7"), None, 1), None);
        assert_eq!(outbox_key(changed, Some("x"), None, 1), None);
        assert_eq!(
            run_key("2026-11-29T09:00:00+01:00"),
            "followup-run:2026-11-29T09:00:00+01:00"
        );
    }
}
