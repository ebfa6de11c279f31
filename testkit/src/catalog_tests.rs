//! The catalog itself: a valid AsyncAPI 3.0 document that covers the contract, accepts the events
//! the contract types produce and refuses deliberately wrong ones.

use std::collections::HashMap;

use chrono::Utc;
use followup_contract::{
    EventParts, EventType, FollowupFailed, FollowupKind, FollowupProcessed, FollowupSent,
    LeadChanged, change_key, failed_key, run_key, sent_key,
};
use serde_json::{Value, json};
use uuid::Uuid;

use crate::catalog::{ASYNCAPI_DOCUMENT, Catalog, CatalogViolation};

fn document() -> Value {
    serde_json::from_str(ASYNCAPI_DOCUMENT).unwrap()
}

#[test]
fn the_catalog_is_a_valid_asyncapi_3_document_whose_references_resolve() {
    let meta: Value = serde_json::from_str(include_str!("../schemas/asyncapi-3.0.0.json")).unwrap();
    let validator = jsonschema::draft7::new(&meta).unwrap();
    let doc = document();
    let errors: Vec<String> = validator.iter_errors(&doc).map(|e| e.to_string()).collect();
    assert!(errors.is_empty(), "not AsyncAPI 3.0.0: {errors:#?}");
    assert_eq!(doc["asyncapi"], "3.0.0");

    fn refs<'a>(v: &'a Value, out: &mut Vec<&'a str>) {
        match v {
            Value::Object(map) => {
                if let Some(Value::String(r)) = map.get("$ref") {
                    out.push(r);
                }
                map.values().for_each(|v| refs(v, out));
            }
            Value::Array(items) => items.iter().for_each(|v| refs(v, out)),
            _ => {}
        }
    }
    let mut all = Vec::new();
    refs(&doc, &mut all);
    assert!(all.len() > 20, "{} references", all.len());
    for r in all {
        let pointer = r.strip_prefix('#').expect("local reference");
        assert!(doc.pointer(pointer).is_some(), "{r} does not resolve");
    }
}

#[test]
fn the_catalog_covers_every_event_type_subject_and_consumer() {
    let catalog = Catalog::load();
    let mut types: Vec<&str> = catalog.event_types().collect();
    types.sort_unstable();
    let mut expected: Vec<&str> = EventType::ALL.iter().map(|t| t.as_str()).collect();
    expected.sort_unstable();
    assert_eq!(types, expected);

    let doc = document();
    let addresses: Vec<&str> = doc["channels"]
        .as_object()
        .unwrap()
        .values()
        .map(|c| c["address"].as_str().unwrap())
        .collect();
    for ty in EventType::ALL {
        assert!(
            addresses.contains(&ty.subject()),
            "{} has no channel",
            ty.subject()
        );
    }
    // Every durable defined in nats/consumers/ is named as a receiver of every event.
    for durable in durables_defined() {
        let durable = durable.as_str();
        for message in doc["components"]["messages"].as_object().unwrap().values() {
            let consumers = message["x-consumers"].as_array().unwrap();
            assert!(consumers.contains(&json!(durable)), "{durable} missing");
        }
        let receives = doc["operations"]
            .as_object()
            .unwrap()
            .values()
            .filter(|op| op["action"] == "receive" && op["x-jetstream-durable"] == *durable)
            .count();
        assert_eq!(
            receives,
            EventType::ALL.len(),
            "receive operations of {durable}"
        );
    }
}

/// The durables of `nats/consumers/*.json`, by their `durable_name` (which must be the file's
/// name: `consumers apply` relies on it).
fn durables_defined() -> Vec<String> {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../nats/consumers");
    let mut names = Vec::new();
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        let config: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        let name = config["durable_name"].as_str().unwrap().to_owned();
        assert_eq!(path.file_stem().unwrap().to_str(), Some(name.as_str()));
        names.push(name);
    }
    assert!(names.len() >= 3, "{names:?}");
    names
}

/// Subject, headers and body of an event as the relay publishes it.
fn message(event: EventParts) -> (String, HashMap<String, String>, Vec<u8>) {
    let ty = event.event_type;
    let headers = HashMap::from([
        (
            "Content-Type".to_owned(),
            followup_contract::CONTENT_TYPE.to_owned(),
        ),
        ("Nats-Msg-Id".to_owned(), event.idempotency_key.clone()),
    ]);
    (ty.subject().to_owned(), headers, event.encode())
}

fn sent() -> EventParts {
    EventParts::new(
        Some("42".into()),
        sent_key(42, FollowupKind::T3),
        Utc::now(),
        &FollowupSent {
            lead_id: 42,
            owner_user_id: Some("bob".into()),
            kind: FollowupKind::T3,
            sent_at: Utc::now(),
            run_id: Uuid::new_v4().to_string(),
        },
    )
}

#[test]
fn events_built_from_the_contract_types_match() {
    let catalog = Catalog::load();
    let now = Utc::now();
    let check = |(subject, headers, body): (String, HashMap<String, String>, Vec<u8>)| {
        catalog
            .validate(&subject, &headers, &body)
            .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&body)));
    };
    check(message(sent()));
    check(message(EventParts::new(
        Some("7".into()),
        failed_key(7, FollowupKind::T7),
        now,
        &FollowupFailed {
            lead_id: 7,
            owner_user_id: None,
            kind: FollowupKind::T7,
            reason: "550 5.1.1 no such user".into(),
            attempts: 1,
        },
    )));
    check(message(EventParts::new(
        None,
        run_key("2026-11-29T09:00:00+01:00"),
        now,
        &FollowupProcessed {
            run_id: Uuid::new_v4().to_string(),
            t3_count: 3,
            t7_count: 1,
            skipped_count: 0,
            error_count: 0,
            processed_at: now,
            duration_ms: 12,
        },
    )));
    check(message(EventParts::new(
        Some("9".into()),
        change_key(9, 31),
        now,
        &LeadChanged {
            lead_id: 9,
            owner_user_id: Some("bob".into()),
            collaborator_user_ids: vec!["carol".into()],
            status: "ACTIVE".into(),
            registered_at: now,
            clock_stopped_at: None,
            t3_sent: false,
            t7_sent: false,
            contactable: Some(true),
            deleted: false,
            sequence: 31,
        },
    )));
}

/// Applies `edit` to a valid `sent` message and returns the catalog's verdict.
fn verdict(edit: impl FnOnce(&mut String, &mut HashMap<String, String>, &mut Value)) -> String {
    let (mut subject, mut headers, body) = message(sent());
    let mut json: Value = serde_json::from_slice(&body).unwrap();
    edit(&mut subject, &mut headers, &mut json);
    let body = serde_json::to_vec(&json).unwrap();
    match Catalog::load().validate(&subject, &headers, &body) {
        Ok(_) => panic!("accepted a wrong message: {json}"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn deliberately_wrong_messages_fail_validation_naming_the_fault() {
    let cases: Vec<(&str, String)> = vec![
        (
            "leadId",
            verdict(|_, _, j| j["data"]["leadId"] = json!("42")),
        ),
        ("t5", verdict(|_, _, j| j["data"]["kind"] = json!("t5"))),
        (
            "sentAt",
            verdict(|_, _, j| drop(j["data"].as_object_mut().unwrap().remove("sentAt"))),
        ),
        (
            "surprise",
            verdict(|_, _, j| j["data"]["surprise"] = json!(1)),
        ),
        (
            "not-a-time",
            verdict(|_, _, j| j["data"]["sentAt"] = json!("not-a-time")),
        ),
        (
            "/time",
            verdict(|_, _, j| j["time"] = json!("2026-11-29T09:00:00")),
        ),
        (
            "specversion",
            verdict(|_, _, j| j["specversion"] = json!("0.3")),
        ),
        (
            "\"subject\" is a required property",
            verdict(|_, _, j| drop(j.as_object_mut().unwrap().remove("subject"))),
        ),
        (
            "idempotencykey",
            verdict(|_, _, j| j["idempotencykey"] = json!("lead:42:t3")),
        ),
        (
            "freshplan.lead.changed",
            verdict(|s, _, _| *s = "freshplan.lead.changed".into()),
        ),
        (
            "Content-Type",
            verdict(|_, h, _| drop(h.insert("Content-Type".into(), "application/json".into()))),
        ),
        (
            "differs",
            verdict(|_, h, _| drop(h.insert("Nats-Msg-Id".into(), "lead:43:followup:t3".into()))),
        ),
        (
            "lead.exploded.v1",
            verdict(|_, _, j| j["type"] = json!("lead.exploded.v1")),
        ),
    ];
    for (needle, message) in cases {
        assert!(
            message.contains(needle),
            "{needle:?} not named in: {message}"
        );
    }
    let not_json = Catalog::load().validate("freshplan.lead.followup.sent", &HashMap::new(), b"{");
    assert!(matches!(not_json, Err(CatalogViolation::NotJson(_))));
}
