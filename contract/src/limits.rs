//! Size bounds of an event. A message beyond them is not an event of this contract: a consumer
//! dead-letters it instead of failing on it for ever (a user id of a few kilobytes cannot be a
//! Postgres index key, so the projector's transaction would fail on every retry and block the
//! stream behind it).

use crate::events::LeadEvent;
use crate::read::ContractError;

/// Largest event body accepted. The contract's events are well under 2 KiB; this leaves room
/// for a lead with hundreds of collaborators.
pub const MAX_EVENT_BYTES: usize = 64 * 1024;
/// Longest user id, status or run id. The CRM's columns hold 50 (user ids) and 30 (status)
/// characters; 255 leaves room and stays far below what Postgres can index (2 704 bytes).
pub const MAX_FIELD_CHARS: usize = 255;

pub(crate) fn check_size(body: &[u8]) -> Result<(), ContractError> {
    if body.len() > MAX_EVENT_BYTES {
        return Err(ContractError::TooLarge { bytes: body.len() });
    }
    Ok(())
}

pub(crate) fn check_fields(event: &LeadEvent) -> Result<(), ContractError> {
    let mut fields: Vec<(&'static str, &str)> = Vec::new();
    match event {
        LeadEvent::Processed(p) => fields.push(("runId", &p.run_id)),
        LeadEvent::Sent(s) => {
            fields.push(("runId", &s.run_id));
            fields.extend(s.owner_user_id.as_deref().map(|o| ("ownerUserId", o)));
        }
        LeadEvent::Failed(f) => {
            fields.extend(f.owner_user_id.as_deref().map(|o| ("ownerUserId", o)));
        }
        LeadEvent::Changed(c) => {
            fields.push(("status", &c.status));
            fields.extend(c.owner_user_id.as_deref().map(|o| ("ownerUserId", o)));
            fields.extend(
                c.collaborator_user_ids
                    .iter()
                    .map(|u| ("collaboratorUserIds", u.as_str())),
            );
        }
    }
    for (field, value) in fields {
        let chars = value.chars().count();
        if chars > MAX_FIELD_CHARS {
            return Err(ContractError::FieldTooLong { field, chars });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parse_event;

    fn change(owner: &str, padding: usize) -> Vec<u8> {
        serde_json::json!({
            "specversion": "1.0", "id": "6f1c2f4e-8a4b-4c1e-9d0f-2b7f5a1e3c9d",
            "source": "freshplan.leads.followup", "type": "lead.changed.v1",
            "time": "2026-11-29T10:00:00+01:00", "datacontenttype": "application/json",
            "subject": "1", "idempotencykey": "lead:1:change:1", "padding": "x".repeat(padding),
            "data": {"leadId": 1, "ownerUserId": owner, "collaboratorUserIds": [], "status": "ACTIVE",
                     "registeredAt": "2026-11-20T09:00:00Z", "clockStoppedAt": null, "t3Sent": false,
                     "t7Sent": false, "deleted": false, "sequence": 1}
        })
        .to_string()
        .into_bytes()
    }

    #[test]
    fn bounds_are_inclusive_and_name_what_is_too_big() {
        assert!(parse_event(&change(&"ü".repeat(MAX_FIELD_CHARS), 0)).is_ok());
        let err = parse_event(&change(&"u".repeat(MAX_FIELD_CHARS + 1), 0)).unwrap_err();
        assert_eq!(
            err.to_string(),
            "field ownerUserId too long: 256 characters, at most 255"
        );
        let err = parse_event(&change("u1", MAX_EVENT_BYTES)).unwrap_err();
        assert!(
            matches!(err, ContractError::TooLarge { bytes } if bytes > MAX_EVENT_BYTES),
            "{err}"
        );
    }
}
