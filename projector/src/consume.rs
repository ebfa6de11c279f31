//! Fetching from JetStream pull consumers, shared by `serve` (the durable consumer),
//! `rebuild` (an ephemeral one) and the benchmark's bare loop.

use std::time::{Duration, Instant};

use anyhow::Context;
use async_nats::jetstream::{self, AckKind, consumer::PullConsumer};
use futures::StreamExt;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::parse::{InboundMessage, ParsedBatch, parse_batch};

/// Fetches up to `max` messages. Takes what is available at once; when nothing is, waits up to
/// `wait` for a first message and then takes what has arrived beside it. So a busy stream is
/// read in full batches and a quiet one with low latency, never by spinning.
pub async fn fetch_batch(
    consumer: &PullConsumer,
    max: usize,
    wait: Duration,
) -> anyhow::Result<Vec<jetstream::Message>> {
    fetch_batch_timed(consumer, max, wait)
        .await
        .map(|(batch, _)| batch)
}

/// [`fetch_batch`], and how long it waited for a first message on an idle stream.
async fn fetch_batch_timed(
    consumer: &PullConsumer,
    max: usize,
    wait: Duration,
) -> anyhow::Result<(Vec<jetstream::Message>, Duration)> {
    let mut idle = Duration::ZERO;
    let mut batch = fetch_available(consumer, max).await?;
    if batch.is_empty() {
        let waiting = Instant::now();
        let mut first = consumer
            .batch()
            .max_messages(1)
            .expires(wait)
            .messages()
            .await
            .context("requesting a message")?;
        while let Some(message) = first.next().await {
            batch.push(
                message
                    .map_err(|e| anyhow::anyhow!(e))
                    .context("receiving a message")?,
            );
        }
        idle = waiting.elapsed();
        if !batch.is_empty() && max > 1 {
            batch.extend(fetch_available(consumer, max - 1).await?);
        }
    }
    Ok((batch, idle))
}

async fn fetch_available(
    consumer: &PullConsumer,
    max: usize,
) -> anyhow::Result<Vec<jetstream::Message>> {
    let mut messages = consumer
        .fetch()
        .max_messages(max)
        .messages()
        .await
        .context("requesting a batch")?;
    let mut batch = Vec::with_capacity(max.min(1024));
    while let Some(message) = messages.next().await {
        batch.push(
            message
                .map_err(|e| anyhow::anyhow!(e))
                .context("receiving a batch")?,
        );
    }
    Ok(batch)
}

/// How much longer than the fetch's own wait the server may take to answer a pull request.
const FETCH_GRACE: Duration = Duration::from_secs(10);

/// A batch fetched and parsed ahead, with the time each took.
pub(crate) struct Prefetched {
    pub messages: Vec<jetstream::Message>,
    pub parsed: ParsedBatch,
    /// From the pull request to the batch in hand, less the wait for a first message on an
    /// idle stream.
    pub fetch: Duration,
    pub parse: Duration,
}

/// Fetches and parses batches ahead in a task, so the next batch is on its way while the
/// current one is written (one batch waits in the channel). An empty batch means the stream was idle for
/// `wait`. On shutdown the task stops; batches it fetched but nobody took are nak'ed, so the
/// server redelivers them at once instead of after `ack_wait`.
pub(crate) fn prefetch_batches(
    consumer: PullConsumer,
    max: usize,
    wait: Duration,
    shutdown: CancellationToken,
) -> mpsc::Receiver<Prefetched> {
    let (sender, receiver) = mpsc::channel(1);
    tokio::spawn(async move {
        loop {
            let fetching = Instant::now();
            let fetched = tokio::select! {
                _ = shutdown.cancelled() => return,
                // Bounded: a pull request the server never answers (no consumer leader after
                // a cluster restart, a request lost in a reconnect) must not stall the
                // projector silently; it is simply asked again.
                fetched = tokio::time::timeout(wait + FETCH_GRACE, fetch_batch_timed(&consumer, max, wait)) => {
                    fetched.unwrap_or_else(|_| Err(anyhow::anyhow!("no answer to the pull request within {:?}", wait + FETCH_GRACE)))
                }
            };
            let (batch, fetch) = match fetched {
                Ok((batch, idle)) => (batch, fetching.elapsed().saturating_sub(idle)),
                Err(err) => {
                    tracing::warn!(error = format!("{err:#}"), "fetch failed; retrying");
                    tokio::time::sleep(Duration::from_millis(500)).await;
                    continue;
                }
            };
            let permit = tokio::select! {
                _ = shutdown.cancelled() => None,
                permit = sender.reserve() => permit.ok(),
            };
            match permit {
                Some(permit) => {
                    let parsing = Instant::now();
                    let parsed = parse_batch(batch.iter().map(to_inbound).collect());
                    permit.send(Prefetched {
                        messages: batch,
                        parsed,
                        fetch,
                        parse: parsing.elapsed(),
                    });
                }
                None => {
                    nak_all(&batch).await;
                    return;
                }
            }
        }
    });
    receiver
}

/// Tells the server these messages were not handled, for immediate redelivery.
pub(crate) async fn nak_all(messages: &[jetstream::Message]) {
    for message in messages {
        let _ = message.ack_with(AckKind::Nak(None)).await;
    }
}

/// Detaches a JetStream message from the client: subject, headers, body and delivery info.
pub fn to_inbound(message: &jetstream::Message) -> InboundMessage {
    let (stream_sequence, deliveries) = message
        .info()
        .map(|info| (info.stream_sequence, info.delivered))
        .unwrap_or((0, 1));
    let headers = message
        .headers
        .iter()
        .flat_map(|h| h.iter())
        .filter_map(|(name, values)| {
            let value = values.last()?;
            Some((
                name.to_string(),
                serde_json::Value::String(value.to_string()),
            ))
        })
        .collect();
    InboundMessage {
        stream_sequence,
        subject: message.subject.to_string(),
        headers,
        body: message.payload.clone(),
        deliveries,
    }
}

/// Acks every message. Acks are plain publishes on the client's connection; `flush` makes sure
/// they left before the caller goes on (e.g. to a shutdown).
pub async fn ack_all(
    client: &async_nats::Client,
    messages: &[jetstream::Message],
) -> anyhow::Result<()> {
    for message in messages {
        message
            .ack()
            .await
            .map_err(|e| anyhow::anyhow!(e))
            .context("acking")?;
    }
    client.flush().await.context("flushing acks")?;
    Ok(())
}
