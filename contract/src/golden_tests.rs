//! The wire format, pinned: `golden/events.json` holds one event of each type as the relay
//! published them before the CloudEvents SDK built them (the hand-written encoder of 2026-11-29).
//! The SDK must write the same attributes and `data`; `time` is compared as an instant (the SDK
//! spells UTC `Z`, the old encoder `+00:00`; both are RFC 3339 with an offset).

use chrono::{DateTime, Utc};
use serde_json::Value;
use uuid::Uuid;

use crate::*;

const GOLDEN: &str = include_str!("../golden/events.json");

fn at(s: &str) -> DateTime<Utc> {
    s.parse().unwrap()
}

fn parts(id: &str, ty: EventType, subject: Option<&str>, key: String, time: &str) -> EventParts {
    EventParts {
        id: Uuid::parse_str(id).unwrap(),
        event_type: ty,
        subject: subject.map(str::to_owned),
        idempotency_key: key,
        time: at(time),
        data: Value::Null,
    }
}

/// The payloads of the golden events, typed.
fn payloads() -> Vec<LeadEvent> {
    let run_id = "0b8e7a52-3c1f-4d2e-9a77-5f1e2d3c4b5a".to_owned();
    vec![
        LeadEvent::Sent(FollowupSent {
            lead_id: 42,
            owner_user_id: Some("anna.schmidt".into()),
            kind: FollowupKind::T3,
            sent_at: at("2026-11-30T08:00:01.250Z"),
            run_id: run_id.clone(),
        }),
        LeadEvent::Failed(FollowupFailed {
            lead_id: 43,
            owner_user_id: None,
            kind: FollowupKind::T7,
            reason: "permanent: 550 5.1.1 mailbox unavailable".into(),
            attempts: 1,
        }),
        LeadEvent::Processed(FollowupProcessed {
            run_id,
            t3_count: 1,
            t7_count: 0,
            skipped_count: 2,
            error_count: 1,
            processed_at: at("2026-11-30T08:00:03Z"),
            duration_ms: 2750,
        }),
        LeadEvent::Changed(LeadChanged {
            lead_id: 42,
            owner_user_id: Some("anna.schmidt".into()),
            collaborator_user_ids: vec!["ben.meyer".into(), "carla.wolf".into()],
            status: "ACTIVE".into(),
            registered_at: at("2026-11-27T07:15:00Z"),
            clock_stopped_at: None,
            t3_sent: true,
            t7_sent: false,
            contactable: Some(true),
            deleted: false,
            sequence: 1001,
        }),
    ]
}

/// The golden events' parts, built the way the producer and the trigger's relay build them.
fn golden_parts() -> Vec<EventParts> {
    let mut parts = vec![
        parts(
            "7d0f3a8e-1b2c-4d5e-8f90-a1b2c3d4e5f6",
            EventType::Sent,
            Some("42"),
            sent_key(42, FollowupKind::T3),
            "2026-11-30T08:00:01.25Z",
        ),
        parts(
            "8e1a4b9f-2c3d-4e5f-9a01-b2c3d4e5f6a7",
            EventType::Failed,
            Some("43"),
            failed_key(43, FollowupKind::T7),
            "2026-11-30T08:00:02.5Z",
        ),
        parts(
            "9f2b5c0a-3d4e-4f60-8b12-c3d4e5f6a7b8",
            EventType::Processed,
            None,
            run_key("2026-11-30T09:00:00+01:00"),
            "2026-11-30T08:00:03Z",
        ),
        parts(
            "a03c6d1b-4e5f-4071-9c23-d4e5f6a7b8c9",
            EventType::Changed,
            Some("42"),
            change_key(42, 1001),
            "2026-11-30T08:00:01.25Z",
        ),
    ];
    for (part, payload) in parts.iter_mut().zip(payloads()) {
        part.data = match payload {
            LeadEvent::Sent(p) => serde_json::to_value(p),
            LeadEvent::Failed(p) => serde_json::to_value(p),
            LeadEvent::Processed(p) => serde_json::to_value(p),
            LeadEvent::Changed(p) => serde_json::to_value(p),
        }
        .unwrap();
    }
    parts
}

fn golden() -> Vec<Value> {
    serde_json::from_str(GOLDEN).unwrap()
}

#[test]
fn the_sdk_writes_the_golden_attributes_and_data() {
    let golden = golden();
    assert_eq!(golden.len(), EventType::ALL.len());
    for (parts, expected) in golden_parts().into_iter().zip(golden) {
        let ty = parts.event_type.as_str();
        let written: Value = serde_json::from_slice(&parts.encode()).unwrap();
        let (written, expected) = (written.as_object().unwrap(), expected.as_object().unwrap());
        let names = |o: &serde_json::Map<String, Value>| o.keys().cloned().collect::<Vec<_>>();
        assert_eq!(names(written), names(expected), "{ty}: attribute names");
        for (name, value) in expected {
            if name == "time" {
                let instant =
                    |v: &Value| DateTime::parse_from_rfc3339(v.as_str().unwrap()).unwrap();
                assert_eq!(instant(&written[name]), instant(value), "{ty}: time");
                assert!(
                    written[name].as_str().unwrap().ends_with('Z'),
                    "{ty}: UTC offset"
                );
            } else {
                assert_eq!(&written[name], value, "{ty}: {name}");
            }
        }
    }
}

#[test]
fn the_golden_events_read_back_to_their_parts() {
    for ((expected, payload), golden) in golden_parts().into_iter().zip(payloads()).zip(golden()) {
        let read = parse_event(golden.to_string().as_bytes()).unwrap();
        assert_eq!(read.id, expected.id);
        assert_eq!(read.event_type, expected.event_type);
        assert_eq!(read.time, expected.time);
        assert_eq!(read.idempotency_key, expected.idempotency_key);
        assert_eq!(read.payload, payload);
        use cloudevents::AttributesReader;
        assert_eq!(read.event.subject(), expected.subject.as_deref());
        assert_eq!(read.event.source(), EVENT_SOURCE);
    }
}

#[test]
fn rejects_bad_input_with_a_reason() {
    let event = || golden()[0].clone();
    let reason = |v: Value| {
        parse_event(v.to_string().as_bytes())
            .unwrap_err()
            .to_string()
    };
    assert!(
        parse_event(b"not json")
            .unwrap_err()
            .to_string()
            .starts_with("not a CloudEvents JSON object")
    );
    type Edit = Box<dyn Fn(&mut Value)>;
    let cases: Vec<(&str, Edit, &str)> = vec![
        (
            "old spec",
            Box::new(|e| e["specversion"] = "0.3".into()),
            "unsupported specversion \"0.3\"",
        ),
        (
            "unknown type",
            Box::new(|e| e["type"] = "lead.exploded.v1".into()),
            "unknown event type",
        ),
        (
            "bad data",
            Box::new(|e| e["data"] = serde_json::json!({"leadId": "x"})),
            "invalid data for lead.followup.sent.v1",
        ),
        (
            "no key",
            Box::new(|e| {
                e.as_object_mut().unwrap().remove("idempotencykey");
            }),
            "missing attribute idempotencykey",
        ),
        (
            "numeric key",
            Box::new(|e| e["idempotencykey"] = 7.into()),
            "invalid attribute idempotencykey",
        ),
        (
            "no time",
            Box::new(|e| {
                e.as_object_mut().unwrap().remove("time");
            }),
            "missing attribute time",
        ),
        (
            "bad time",
            Box::new(|e| e["time"] = "yesterday".into()),
            "not a CloudEvents JSON object",
        ),
        (
            "id not a UUID",
            Box::new(|e| e["id"] = "42".into()),
            "invalid attribute id",
        ),
        (
            "no id",
            Box::new(|e| {
                e.as_object_mut().unwrap().remove("id");
            }),
            "not a CloudEvents JSON object",
        ),
        (
            "text data",
            Box::new(|e| {
                e["datacontenttype"] = "text/plain".into();
                e["data"] = "hello".into();
            }),
            "is not JSON",
        ),
        (
            "no data",
            Box::new(|e| {
                e.as_object_mut().unwrap().remove("data");
            }),
            "missing attribute data",
        ),
    ];
    for (case, mutate, expected) in cases {
        let mut e = event();
        mutate(&mut e);
        let got = reason(e);
        assert!(got.contains(expected), "{case}: {got}");
    }
}
