//! `consumers apply`: makes the server's durables what `nats/consumers/` says. Missing durables
//! are created, changed tunables (ack wait, max deliver, description, …) updated in place, and a
//! change of a locked field ([`LOCKED_FIELDS`]) is refused unless explicitly allowed. Every
//! module durable except the projector's also gets its replay durable: the same name on
//! `FOLLOWUP_DLQ`, filtered to `followup.dlq.replay.<durable>`.

use async_nats::jetstream::context::ConsumerInfoErrorKind;
use async_nats::jetstream::{self, consumer, stream::Stream};
use followup_contract::{DLQ_STREAM_NAME, PROJECTOR_CONSUMER, STREAM_NAME, dlq_replay_subject};

use super::{Definition, LOCKED_FIELDS, differing_fields};

/// What `apply` did to one durable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    Created,
    /// Updated in place; the fields that changed.
    Updated(Vec<String>),
    /// Deleted and created again with a changed locked field (only when allowed).
    Recreated(Vec<String>),
    Unchanged,
}

/// One durable on one stream and what was done to it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Applied {
    pub stream: &'static str,
    pub durable: String,
    pub action: Action,
}

/// Why `apply` changed nothing or stopped.
#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    #[error(
        "refusing to change {} (pass --allow-policy-change to delete and recreate, which loses the durable's position); nothing was changed",
        .0.join("; ")
    )]
    Refused(Vec<String>),
    #[error("{stream}/{durable}: {detail}")]
    Nats {
        stream: &'static str,
        durable: String,
        detail: String,
    },
}

/// One planned change: the stream, the wanted config and what the live durable looks like.
struct Plan<'a> {
    stream: &'a Stream,
    stream_name: &'static str,
    durable: String,
    config: consumer::pull::Config,
    action: Action,
}

/// Applies `definitions` to `FOLLOWUP` (and their replay durables to `FOLLOWUP_DLQ`). All
/// refusals are found before anything changes, so a refused apply leaves the server as it was.
pub async fn apply_definitions(
    js: &jetstream::Context,
    definitions: &[Definition],
    allow_policy_change: bool,
) -> Result<Vec<Applied>, ApplyError> {
    let nats = |stream: &'static str, durable: &str| {
        let durable = durable.to_owned();
        move |e: &dyn std::fmt::Display| ApplyError::Nats {
            stream,
            durable: durable.clone(),
            detail: e.to_string(),
        }
    };
    let followup = js
        .get_stream(STREAM_NAME)
        .await
        .map_err(|e| nats(STREAM_NAME, "-")(&e))?;
    let dlq = js
        .get_stream(DLQ_STREAM_NAME)
        .await
        .map_err(|e| nats(DLQ_STREAM_NAME, "-")(&e))?;
    let mut plans = Vec::new();
    for definition in definitions {
        let wanted = [
            Some((&followup, STREAM_NAME, definition.config.clone())),
            (definition.durable != PROJECTOR_CONSUMER)
                .then(|| (&dlq, DLQ_STREAM_NAME, replay_config(definition))),
        ];
        for (stream, stream_name, config) in wanted.into_iter().flatten() {
            let action = match stream.consumer_info(&definition.durable).await {
                Ok(info) => {
                    let fields = differing_fields(&definition.keys, &config, &info.config);
                    if fields.is_empty() {
                        Action::Unchanged
                    } else if fields.iter().any(|f| LOCKED_FIELDS.contains(&f.as_str())) {
                        Action::Recreated(fields)
                    } else {
                        Action::Updated(fields)
                    }
                }
                Err(e) if e.kind() == ConsumerInfoErrorKind::NotFound => Action::Created,
                Err(e) => return Err(nats(stream_name, &definition.durable)(&e)),
            };
            plans.push(Plan {
                stream,
                stream_name,
                durable: definition.durable.clone(),
                config,
                action,
            });
        }
    }
    refuse_locked_changes(&plans, allow_policy_change)?;
    let mut applied = Vec::new();
    for plan in plans {
        let fail = nats(plan.stream_name, &plan.durable);
        match &plan.action {
            Action::Unchanged => {}
            Action::Recreated(_) => {
                plan.stream
                    .delete_consumer(&plan.durable)
                    .await
                    .map_err(|e| fail(&e))?;
                plan.stream
                    .create_consumer(plan.config.clone())
                    .await
                    .map_err(|e| fail(&e))?;
            }
            // On 2.9 a create of an existing durable is an update of its tunables.
            Action::Created | Action::Updated(_) => {
                plan.stream
                    .create_consumer(plan.config.clone())
                    .await
                    .map_err(|e| fail(&e))?;
            }
        }
        applied.push(Applied {
            stream: plan.stream_name,
            durable: plan.durable,
            action: plan.action,
        });
    }
    Ok(applied)
}

fn refuse_locked_changes(plans: &[Plan<'_>], allow: bool) -> Result<(), ApplyError> {
    let refused: Vec<String> = plans
        .iter()
        .filter_map(|plan| match &plan.action {
            Action::Recreated(fields) if !allow => Some(format!(
                "durable {:?} on {}: {}",
                plan.durable,
                plan.stream_name,
                fields.join(", ")
            )),
            _ => None,
        })
        .collect();
    if refused.is_empty() {
        Ok(())
    } else {
        Err(ApplyError::Refused(refused))
    }
}

/// The replay durable of a module: its own settings, reading only its replay subject.
fn replay_config(definition: &Definition) -> consumer::pull::Config {
    let mut config = definition.config.clone();
    config.filter_subject = dlq_replay_subject(&definition.durable);
    config.description = Some(format!(
        "Replayed dead letters of {} (followup-projector dlq replay)",
        definition.durable
    ));
    config
}
