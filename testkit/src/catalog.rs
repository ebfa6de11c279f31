//! The event catalog `nats/asyncapi.json` as a validator: every message on the stream must be
//! one of its messages — on that message's channel, with its headers and a payload matching its
//! JSON Schema. Private nats-servers check their whole stream with it when a test ends (see
//! [`crate::NatsServer`]), so every event the system publishes in the tests is validated.

use std::collections::{BTreeMap, HashMap};

use serde_json::Value;

/// `nats/asyncapi.json`, the AsyncAPI 3.0 catalog of the stream.
pub const ASYNCAPI_DOCUMENT: &str = include_str!("../../nats/asyncapi.json");

/// Why a message does not match the catalog; the text names the message part and the rule.
#[derive(Debug, thiserror::Error)]
pub enum CatalogViolation {
    #[error("payload is not JSON: {0}")]
    NotJson(#[from] serde_json::Error),
    #[error("event type {0:?} is not in the catalog")]
    UnknownType(String),
    #[error("{event_type} published on {actual}, the catalog's channel is {expected}")]
    WrongChannel {
        event_type: String,
        expected: String,
        actual: String,
    },
    #[error("{event_type} {part} violates the catalog: {errors}")]
    Schema {
        event_type: String,
        part: &'static str,
        errors: String,
    },
    #[error("{event_type}: Nats-Msg-Id {header:?} differs from idempotencykey {attribute:?}")]
    KeyMismatch {
        event_type: String,
        header: String,
        attribute: String,
    },
}

struct MessageRules {
    address: String,
    headers: jsonschema::Validator,
    payload: jsonschema::Validator,
}

/// The compiled catalog: per event type, its channel address and header/payload validators.
pub struct Catalog {
    by_type: HashMap<String, MessageRules>,
}

impl Catalog {
    /// Compiles the schemas of every message of `nats/asyncapi.json`.
    pub fn load() -> Catalog {
        let doc: Value = serde_json::from_str(ASYNCAPI_DOCUMENT).expect("asyncapi.json is JSON");
        let mut by_type = HashMap::new();
        for (channel_name, channel) in doc["channels"].as_object().expect("channels") {
            let address = channel["address"].as_str().expect("channel address");
            for message_ref in channel["messages"].as_object().expect("messages").values() {
                let pointer = message_ref["$ref"]
                    .as_str()
                    .and_then(|r| r.strip_prefix('#'))
                    .unwrap_or_else(|| panic!("channel {channel_name}: message is not a $ref"));
                let message = doc
                    .pointer(pointer)
                    .unwrap_or_else(|| panic!("{pointer} does not resolve"));
                let name = message["name"].as_str().expect("message name").to_owned();
                let rules = MessageRules {
                    address: address.to_owned(),
                    headers: compile(&doc, &format!("{pointer}/headers")),
                    payload: compile(&doc, &format!("{pointer}/payload")),
                };
                by_type.insert(name, rules);
            }
        }
        Catalog { by_type }
    }

    /// The event types the catalog knows.
    pub fn event_types(&self) -> impl Iterator<Item = &str> {
        self.by_type.keys().map(String::as_str)
    }

    /// Checks one message: its `type` is in the catalog, it was published on that type's channel,
    /// headers and payload match the schemas, and `Nats-Msg-Id` equals `idempotencykey` (a rule
    /// JSON Schema cannot express). Returns the event type.
    pub fn validate(
        &self,
        subject: &str,
        headers: &HashMap<String, String>,
        payload: &[u8],
    ) -> Result<String, CatalogViolation> {
        let event: Value = serde_json::from_slice(payload)?;
        let event_type = event["type"].as_str().unwrap_or_default().to_owned();
        let rules = self
            .by_type
            .get(&event_type)
            .ok_or_else(|| CatalogViolation::UnknownType(event_type.clone()))?;
        if rules.address != subject {
            return Err(CatalogViolation::WrongChannel {
                event_type,
                expected: rules.address.clone(),
                actual: subject.to_owned(),
            });
        }
        let header_json = serde_json::to_value(headers)?;
        check(&rules.headers, &header_json, &event_type, "headers")?;
        check(&rules.payload, &event, &event_type, "payload")?;
        let attribute = event["idempotencykey"].as_str().unwrap_or_default();
        let header = headers.get("Nats-Msg-Id").map(String::as_str);
        if header != Some(attribute) {
            return Err(CatalogViolation::KeyMismatch {
                event_type,
                header: header.unwrap_or_default().to_owned(),
                attribute: attribute.to_owned(),
            });
        }
        Ok(event_type)
    }
}

/// A draft-7 validator for the schema at `pointer`, with the whole document as its root so the
/// catalog's `#/components/...` references resolve.
fn compile(doc: &Value, pointer: &str) -> jsonschema::Validator {
    let mut root = doc.clone();
    root.as_object_mut()
        .expect("document is an object")
        .insert("$ref".to_owned(), Value::String(format!("#{pointer}")));
    jsonschema::draft7::options()
        .should_validate_formats(true)
        .build(&root)
        .unwrap_or_else(|e| panic!("schema {pointer} of asyncapi.json does not compile: {e}"))
}

fn check(
    validator: &jsonschema::Validator,
    instance: &Value,
    event_type: &str,
    part: &'static str,
) -> Result<(), CatalogViolation> {
    let errors: Vec<String> = validator
        .iter_errors(instance)
        .map(|e| format!("at {:?}: {e}", e.instance_path().as_str()))
        .collect();
    if errors.is_empty() {
        Ok(())
    } else {
        Err(CatalogViolation::Schema {
            event_type: event_type.to_owned(),
            part,
            errors: errors.join("; "),
        })
    }
}

/// Reads every message of the stream `FOLLOWUP` at `nats_url` and validates it against the
/// catalog. Returns how many messages of each type were checked, or every violation with its
/// stream sequence.
pub async fn validate_stream(nats_url: &str) -> Result<BTreeMap<String, usize>, String> {
    use async_nats::jetstream::consumer::{AckPolicy, DeliverPolicy, pull};
    use futures::StreamExt;

    let client = async_nats::connect(nats_url)
        .await
        .map_err(|e| format!("connect {nats_url}: {e}"))?;
    let js = async_nats::jetstream::new(client);
    let mut stream = match js.get_stream(followup_contract::STREAM_NAME).await {
        Ok(stream) => stream,
        // No stream: the test published nothing.
        Err(_) => return Ok(BTreeMap::new()),
    };
    let total = stream
        .info()
        .await
        .map_err(|e| e.to_string())?
        .state
        .messages as usize;
    let consumer = stream
        .create_consumer(pull::Config {
            ack_policy: AckPolicy::None,
            deliver_policy: DeliverPolicy::All,
            inactive_threshold: std::time::Duration::from_secs(30),
            ..Default::default()
        })
        .await
        .map_err(|e| format!("create a validating consumer: {e}"))?;
    let catalog = Catalog::load();
    let mut violations = Vec::new();
    let mut by_type = BTreeMap::new();
    let mut seen = 0;
    while seen < total {
        let mut batch = consumer
            .fetch()
            .max_messages(1000)
            .expires(std::time::Duration::from_secs(2))
            .messages()
            .await
            .map_err(|e| format!("fetch: {e}"))?;
        let before = seen;
        while let Some(message) = batch.next().await {
            let message = message.map_err(|e| format!("fetch: {e}"))?;
            seen += 1;
            let headers: HashMap<String, String> = message
                .headers
                .iter()
                .flat_map(|h| h.iter())
                .filter_map(|(name, values)| {
                    values
                        .first()
                        .map(|v| (name.to_string(), v.as_str().to_owned()))
                })
                .collect();
            match catalog.validate(&message.subject, &headers, &message.payload) {
                Ok(event_type) => *by_type.entry(event_type).or_insert(0) += 1,
                Err(violation) => {
                    let sequence = message.info().map(|i| i.stream_sequence).unwrap_or(0);
                    violations.push(format!(
                        "stream sequence {sequence} on {}: {violation}",
                        message.subject
                    ));
                }
            }
        }
        if seen == before {
            return Err(format!(
                "read {seen} of {total} messages, then nothing more came"
            ));
        }
    }
    if violations.is_empty() {
        Ok(by_type)
    } else {
        Err(violations.join("\n"))
    }
}
