//! NATS connection and provisioning of the `FOLLOWUP` stream and durable consumers.

use std::time::Duration;

use anyhow::Context;
use async_nats::jetstream::{self, consumer, stream};
use followup_contract::{CONSUMER_DEFINITIONS, STREAM_DEFINITION, STREAM_NAME};
use tokio_util::sync::CancellationToken;

/// Connects to NATS, retrying with backoff until the server answers or `shutdown` fires. Once
/// connected, the client reconnects by itself for ever; callers see errors on operations only.
pub async fn connect_nats(
    url: &str,
    name: &str,
    shutdown: &CancellationToken,
) -> anyhow::Result<async_nats::Client> {
    let mut delay = Duration::from_millis(200);
    loop {
        let attempt = async_nats::ConnectOptions::new()
            .name(name)
            .max_reconnects(None)
            .connect(url)
            .await;
        match attempt {
            Ok(client) => return Ok(client),
            Err(err) => {
                tracing::warn!(error = %err, url, retry_in_ms = delay.as_millis() as u64, "NATS not reachable");
                tokio::select! {
                    _ = shutdown.cancelled() => {
                        return Err(err).context("NATS not reachable before shutdown");
                    }
                    _ = tokio::time::sleep(delay) => {}
                }
                delay = (delay * 2).min(Duration::from_secs(10));
            }
        }
    }
}

/// The stream configuration from `nats/stream-FOLLOWUP.json`.
pub fn stream_config() -> anyhow::Result<stream::Config> {
    serde_json::from_str(STREAM_DEFINITION).context("parsing nats/stream-FOLLOWUP.json")
}

/// The pull-consumer configuration of durable `name` from `nats/consumer-<name>.json`.
pub fn consumer_config(name: &str) -> anyhow::Result<consumer::pull::Config> {
    let (_, json) = CONSUMER_DEFINITIONS
        .iter()
        .find(|(durable, _)| *durable == name)
        .with_context(|| format!("no consumer definition named {name:?}"))?;
    serde_json::from_str(json).with_context(|| format!("parsing nats/consumer-{name}.json"))
}

/// Creates the stream or updates it to the definition, then creates every durable consumer
/// that does not exist yet. An existing consumer whose configuration differs is left alone with
/// a warning: changing a live consumer is an operator's decision (`nats consumer edit`).
pub async fn ensure_stream(js: &jetstream::Context) -> anyhow::Result<stream::Stream> {
    let config = stream_config()?;
    js.create_or_update_stream(config)
        .await
        .with_context(|| format!("creating or updating stream {STREAM_NAME}"))?;
    let stream = js
        .get_stream(STREAM_NAME)
        .await
        .with_context(|| format!("looking up stream {STREAM_NAME}"))?;
    for (name, _) in CONSUMER_DEFINITIONS {
        let wanted = consumer_config(name)?;
        match stream.consumer_info(*name).await {
            Ok(info)
                if info.config.ack_wait == wanted.ack_wait
                    && info.config.max_deliver == wanted.max_deliver
                    && info.config.filter_subject == wanted.filter_subject => {}
            Ok(_) => tracing::warn!(
                consumer = name,
                "durable consumer differs from its nats/ definition; left unchanged"
            ),
            Err(_) => {
                stream
                    .create_consumer(wanted)
                    .await
                    .with_context(|| format!("creating durable consumer {name}"))?;
                tracing::info!(consumer = name, "created durable consumer");
            }
        }
    }
    Ok(stream)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn definitions_parse_into_client_configs() {
        let stream = stream_config().unwrap();
        assert_eq!(stream.name, "FOLLOWUP");
        assert_eq!(stream.storage, stream::StorageType::File);
        assert_eq!(stream.retention, stream::RetentionPolicy::Limits);
        assert!(stream.duplicate_window >= Duration::from_secs(120));
        let projector = consumer_config("projector").unwrap();
        assert_eq!(projector.durable_name.as_deref(), Some("projector"));
        assert_eq!(projector.ack_policy, consumer::AckPolicy::Explicit);
        assert!(projector.max_deliver > 0);
    }
}
