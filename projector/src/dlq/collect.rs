//! The dead-letter collector, run inside `serve`: reads the max-deliveries advisories that the
//! `FOLLOWUP_DLQ` stream captured (durable `dlq-collector`, so an advisory raised while no
//! projector ran is collected at the next start) and copies each given-up message from `FOLLOWUP`
//! into `followup.dlq.letter.<durable>`. Idempotent: the copy's `Nats-Msg-Id` is
//! `<durable>:<stream sequence>`, so an advisory redelivered after a crash between publish and
//! ack, or collected by two projectors, is stored once (within the 24 h duplicate window).

use std::time::{Duration, Instant};

use anyhow::Context;
use async_nats::HeaderMap;
use async_nats::jetstream::{self, consumer, stream::Stream};
use followup_contract::{
    DLQ_COLLECTOR_CONSUMER, DLQ_HEADER_DELIVERIES, DLQ_HEADER_DURABLE, DLQ_HEADER_ERROR,
    DLQ_HEADER_ORIGINAL_ID, DLQ_HEADER_SEQUENCE, DLQ_HEADER_SUBJECT, DLQ_STREAM_NAME,
    MAX_DELIVERIES_ADVISORIES, STREAM_NAME, dlq_error_subject, dlq_letter_subject,
};
use followup_infra::Backoff;
use serde::Deserialize;
use tokio_util::sync::CancellationToken;

use crate::consume::fetch_batch;
use crate::metrics::ProjectorMetrics;

/// The fields of `io.nats.jetstream.advisory.v1.max_deliver` the collector needs.
#[derive(Debug, Deserialize)]
struct MaxDeliveries {
    consumer: String,
    stream_seq: u64,
    deliveries: u64,
}

/// Collects dead letters until `shutdown` fires; NATS errors are retried with backoff.
pub async fn collect_dead_letters(
    js: jetstream::Context,
    metrics: ProjectorMetrics,
    shutdown: CancellationToken,
) {
    let mut backoff = Backoff::new(Duration::from_millis(500), Duration::from_secs(10));
    loop {
        match collect_until_stopped(&js, &metrics, &shutdown).await {
            Ok(()) => return,
            Err(err) => tracing::warn!(error = format!("{err:#}"), "dead-letter collector"),
        }
        if !backoff.wait(&shutdown).await {
            return;
        }
    }
}

async fn collect_until_stopped(
    js: &jetstream::Context,
    metrics: &ProjectorMetrics,
    shutdown: &CancellationToken,
) -> anyhow::Result<()> {
    let dlq = js.get_stream(DLQ_STREAM_NAME).await?;
    let followup = js.get_stream(STREAM_NAME).await?;
    let collector: consumer::PullConsumer = dlq
        .create_consumer(consumer::pull::Config {
            durable_name: Some(DLQ_COLLECTOR_CONSUMER.to_owned()),
            description: Some("Copies given-up messages of FOLLOWUP into dead letters".into()),
            filter_subject: MAX_DELIVERIES_ADVISORIES.to_owned(),
            ack_policy: consumer::AckPolicy::Explicit,
            ack_wait: Duration::from_secs(30),
            ..Default::default()
        })
        .await
        .context("creating the dlq-collector durable")?;
    let mut known_at: Option<Instant> = None;
    loop {
        // Every durable of FOLLOWUP gets its series at 0, so the alert's `increase` sees the
        // first dead letter of a durable too; refreshed for durables applied later.
        if known_at.is_none_or(|at| at.elapsed() >= Duration::from_secs(30)) {
            register_durables(&followup, metrics).await;
            known_at = Some(Instant::now());
        }
        let batch = tokio::select! {
            _ = shutdown.cancelled() => return Ok(()),
            batch = fetch_batch(&collector, 100, Duration::from_secs(1)) => batch?,
        };
        for message in batch {
            if let Some(durable) = collect_one(js, &followup, &dlq, &message.payload).await? {
                metrics.count_module_dead_letter(&durable);
            }
            message
                .ack()
                .await
                .map_err(|e| anyhow::anyhow!(e))
                .context("acking an advisory")?;
        }
    }
}

async fn register_durables(followup: &Stream, metrics: &ProjectorMetrics) {
    use futures::StreamExt;
    let mut names = followup.consumer_names();
    while let Some(name) = names.next().await {
        match name {
            Ok(name) => metrics.know_durable(&name),
            Err(err) => return tracing::debug!(error = %err, "listing durables"),
        }
    }
}

/// Stores the dead letter an advisory names; `Some(durable)` when it was new.
async fn collect_one(
    js: &jetstream::Context,
    followup: &Stream,
    dlq: &Stream,
    advisory: &[u8],
) -> anyhow::Result<Option<String>> {
    let advisory: MaxDeliveries = match serde_json::from_slice(advisory) {
        Ok(advisory) => advisory,
        Err(err) => {
            tracing::warn!(error = %err, "ignoring a malformed max-deliveries advisory");
            return Ok(None);
        }
    };
    let durable = advisory.consumer;
    let seq = advisory.stream_seq;
    let mut headers = HeaderMap::new();
    let mut payload = bytes::Bytes::new();
    let mut error = None;
    match followup.get_raw_message(seq).await {
        Ok(original) => {
            for (name, values) in original.headers.iter() {
                for value in values {
                    let name: &str = name.as_ref();
                    let name = match name {
                        "Nats-Msg-Id" => DLQ_HEADER_ORIGINAL_ID,
                        other => other,
                    };
                    headers.append(name, value.as_str());
                }
            }
            headers.insert(DLQ_HEADER_SUBJECT, original.subject.as_str());
            payload = original.payload;
        }
        // Expired by the stream's max age, or deleted: keep the fact without the body.
        Err(err) => {
            error = Some(format!(
                "original message not readable from FOLLOWUP: {err}"
            ))
        }
    }
    if let Ok(reported) = dlq
        .get_last_raw_message_by_subject(&dlq_error_subject(&durable, seq))
        .await
    {
        error = Some(String::from_utf8_lossy(&reported.payload).into_owned());
    }
    if let Some(error) = error {
        headers.insert(DLQ_HEADER_ERROR, header_text(&error).as_str());
    }
    headers.insert(DLQ_HEADER_SEQUENCE, seq.to_string().as_str());
    headers.insert(DLQ_HEADER_DURABLE, durable.as_str());
    headers.insert(
        DLQ_HEADER_DELIVERIES,
        advisory.deliveries.to_string().as_str(),
    );
    headers.insert("Nats-Msg-Id", format!("{durable}:{seq}").as_str());
    let ack = js
        .publish_with_headers(dlq_letter_subject(&durable), headers, payload)
        .await
        .map_err(|e| anyhow::anyhow!(e))?
        .await
        .map_err(|e| anyhow::anyhow!(e))
        .context("storing a dead letter")?;
    if ack.duplicate {
        return Ok(None);
    }
    tracing::warn!(durable, stream_sequence = seq, "message dead-lettered");
    Ok(Some(durable))
}

/// An error text as a header value: one line, bounded.
fn header_text(text: &str) -> String {
    let line: String = text
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .take(1000)
        .collect();
    line.trim().to_owned()
}
