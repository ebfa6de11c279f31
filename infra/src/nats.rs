//! NATS connection and provisioning of the `FOLLOWUP` stream and durable consumers.

use std::time::Duration;

use anyhow::Context;
use async_nats::jetstream::{self, consumer, stream};
use followup_contract::{
    DLQ_STREAM_DEFINITION, DLQ_STREAM_NAME, PROJECTOR_CONSUMER, PROJECTOR_CONSUMER_DEFINITION,
    STREAM_DEFINITION, STREAM_NAME,
};
use tokio_util::sync::CancellationToken;

use crate::retry::{Backoff, retry_until};

/// The servers of `NATS_URL`: one URL or a comma-separated list (the nodes of a cluster).
pub fn server_addrs(url: &str) -> anyhow::Result<Vec<async_nats::ServerAddr>> {
    url.split(',')
        .map(str::trim)
        .filter(|u| !u.is_empty())
        .map(|u| {
            u.parse::<async_nats::ServerAddr>()
                .with_context(|| format!("NATS_URL: {u:?} is not a NATS URL"))
        })
        .collect()
}

/// Connects to NATS, retrying with backoff until a server answers or `shutdown` fires. `url` is
/// one URL or a comma-separated list; the client also learns the other nodes of a cluster from
/// the server. Once connected, the client reconnects by itself for ever (to any node); callers
/// see errors on operations only.
pub async fn connect_nats(
    url: &str,
    name: &str,
    shutdown: &CancellationToken,
) -> anyhow::Result<async_nats::Client> {
    let servers = server_addrs(url)?;
    let attempt = || {
        async_nats::ConnectOptions::new()
            .name(name)
            .max_reconnects(None)
            .connect(servers.clone())
    };
    retry_until(
        shutdown,
        "NATS not reachable",
        Some(url),
        Backoff::STARTUP,
        attempt,
    )
    .await
    .context("NATS not reachable before shutdown")
}

/// The stream configuration from `nats/stream-FOLLOWUP.json`.
pub fn stream_config() -> anyhow::Result<stream::Config> {
    serde_json::from_str(STREAM_DEFINITION).context("parsing nats/stream-FOLLOWUP.json")
}

/// The dead-letter stream's configuration from `nats/stream-FOLLOWUP_DLQ.json`.
pub fn dlq_stream_config() -> anyhow::Result<stream::Config> {
    serde_json::from_str(DLQ_STREAM_DEFINITION).context("parsing nats/stream-FOLLOWUP_DLQ.json")
}

/// The projector's pull-consumer configuration from `nats/consumers/projector.json`. Other
/// modules' durables are not the services' business: `followup-projector consumers apply`.
pub fn projector_consumer_config() -> anyhow::Result<consumer::pull::Config> {
    serde_json::from_str(PROJECTOR_CONSUMER_DEFINITION)
        .context("parsing nats/consumers/projector.json")
}

/// Creates the stream and the dead-letter stream or updates them to their definitions, then
/// creates the projector's durable if it does not exist yet. An existing durable whose
/// configuration differs is left alone with a warning: changing a live consumer is an operator's
/// decision (`followup-projector consumers apply`).
pub async fn ensure_stream(js: &jetstream::Context) -> anyhow::Result<stream::Stream> {
    ensure_stream_replicas(js, &StreamSettings::default()).await
}

/// The stream's shape a binary creates or updates it to. Every binary that provisions the stream
/// must be given the same values, or each start would set the stream to its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::Args)]
pub struct StreamSettings {
    /// Replicas of the FOLLOWUP stream (1 on a single server, 3 on a three-node cluster).
    #[arg(long, env = "STREAM_REPLICAS", default_value_t = 1,
          value_parser = clap::value_parser!(u8).range(1..=5))]
    pub stream_replicas: u8,
    /// Days the stream keeps an event (JetStream `max_age`); 0 keeps events for ever. Older
    /// history lives on in the CRM's tables: `rebuild` takes a snapshot of them first. The
    /// projector keeps its inbox of applied event ids for as long (see `projector/README.md`).
    #[arg(long, env = "STREAM_MAX_AGE_DAYS", default_value_t = 90,
          value_parser = clap::value_parser!(u32).range(0..=3650))]
    pub stream_max_age_days: u32,
}

impl Default for StreamSettings {
    fn default() -> StreamSettings {
        StreamSettings {
            stream_replicas: 1,
            stream_max_age_days: 90,
        }
    }
}

impl StreamSettings {
    /// The retention as a duration; `None` for "for ever".
    pub fn max_age(&self) -> Option<Duration> {
        (self.stream_max_age_days > 0)
            .then(|| Duration::from_secs(u64::from(self.stream_max_age_days) * 86_400))
    }
}

/// [`ensure_stream`] with the stream's replica count and retention from `settings`.
pub async fn ensure_stream_replicas(
    js: &jetstream::Context,
    settings: &StreamSettings,
) -> anyhow::Result<stream::Stream> {
    let mut config = stream_config()?;
    config.num_replicas = usize::from(settings.stream_replicas.max(1));
    config.max_age = settings.max_age().unwrap_or_default();
    js.create_or_update_stream(config)
        .await
        .with_context(|| format!("creating or updating stream {STREAM_NAME}"))?;
    // The dead-letter stream captures max-deliveries advisories: it must exist before any
    // durable gives up on a message, whether or not a collector runs yet.
    let mut dlq = dlq_stream_config()?;
    dlq.num_replicas = usize::from(settings.stream_replicas.max(1));
    js.create_or_update_stream(dlq)
        .await
        .with_context(|| format!("creating or updating stream {DLQ_STREAM_NAME}"))?;
    let stream = js
        .get_stream(STREAM_NAME)
        .await
        .with_context(|| format!("looking up stream {STREAM_NAME}"))?;
    let name = PROJECTOR_CONSUMER;
    let wanted = projector_consumer_config()?;
    match stream.consumer_info(name).await {
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
    Ok(stream)
}

/// [`ensure_stream_replicas`], retried with backoff (200 ms doubling to 10 s) while JetStream is
/// not available yet — a server still starting, a cluster still electing its leader — until it
/// succeeds or `shutdown` fires. A service started before its NATS is ready waits instead of
/// exiting.
pub async fn provision_stream(
    js: &jetstream::Context,
    settings: &StreamSettings,
    shutdown: &CancellationToken,
) -> anyhow::Result<stream::Stream> {
    retry_until(
        shutdown,
        "cannot provision stream yet",
        None,
        Backoff::STARTUP,
        || ensure_stream_replicas(js, settings),
    )
    .await
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
        let projector = projector_consumer_config().unwrap();
        assert_eq!(projector.durable_name.as_deref(), Some("projector"));
        assert_eq!(projector.ack_policy, consumer::AckPolicy::Explicit);
        assert!(projector.max_deliver > 0);
        let dlq = dlq_stream_config().unwrap();
        assert_eq!(dlq.name, "FOLLOWUP_DLQ");
        assert!(dlq.duplicate_window >= Duration::from_secs(3600));
    }

    #[test]
    fn nats_url_takes_one_server_or_a_comma_separated_cluster() {
        assert_eq!(server_addrs("nats://127.0.0.1:4222").unwrap().len(), 1);
        let cluster =
            server_addrs("nats://127.0.0.1:4222, nats://127.0.0.1:4223,nats://127.0.0.1:4224")
                .unwrap();
        assert_eq!(cluster.len(), 3);
        assert_eq!(cluster[1].port(), 4223);
        let err = server_addrs("nats://127.0.0.1:4222,http://[bad").unwrap_err();
        assert!(format!("{err:#}").contains("NATS_URL"), "{err:#}");
    }
}
