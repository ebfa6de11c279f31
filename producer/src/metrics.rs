//! The producer's Prometheus metrics (names from DESIGN.md; base units, no user ids in labels).

use std::time::Duration;

use followup_infra::metrics::{
    StageSeconds, counter, counter_vec, exponential_buckets, histogram, int_gauge,
};
use prometheus::{Histogram, IntCounter, IntCounterVec, IntGauge, Registry};

/// All producer metrics, registered in their own registry.
#[derive(Clone)]
pub struct ProducerMetrics {
    pub registry: Registry,
    /// `followup_processed_total{type="email",kind}`: follow-ups delivered.
    pub processed: IntCounterVec,
    /// `followup_skipped_total{kind}`: due leads skipped for missing e-mail or consent.
    pub skipped: IntCounterVec,
    /// `followup_errors_total`: follow-ups that finally failed, follow-ups that could not be
    /// rendered, and runs that aborted.
    pub errors: IntCounter,
    /// `followup_delivery_retries_total{cause}`: attempts that will be retried, by cause
    /// (`temporary`: 4xx reply; `unavailable`: server unreachable, timeout, TLS, auth).
    pub delivery_retries: IntCounterVec,
    /// `followup_mailer_unavailable`: 1 while deliveries wait for an unavailable mail server.
    pub mailer_unavailable: IntGauge,
    /// `followup_processing_duration_seconds`: duration of a whole run.
    pub run_duration: Histogram,
    /// `followup_runs_total{outcome}`: completed, skipped_slot (another replica ran it), failed.
    pub runs: IntCounterVec,
    /// `followup_last_run_timestamp_seconds`: end of the last completed run.
    pub last_run: IntGauge,
    /// `followup_outbox_backlog`: outbox rows not yet acknowledged by JetStream.
    pub outbox_backlog: IntGauge,
    /// `followup_relay_published_total`, `..._duplicates_total`, `..._errors_total`.
    pub relay_published: IntCounter,
    pub relay_duplicates: IntCounter,
    pub relay_errors: IntCounter,
    /// `followup_relay_batch_duration_seconds`: publish + PubAck + mark, per batch.
    pub relay_batch_duration: Histogram,
    /// `followup_relay_stage_seconds_total{stage}`: where the relay's time goes (see
    /// [`RELAY_STAGES`]); the marker's `delete` runs beside the next batch's publish.
    pub relay_stage_seconds: StageSeconds,
}

/// The relay's stages, in a batch's order: `read` (the outbox batch query), `encode` (rows to
/// CloudEvents), `publish` (handing messages to the client, waiting when the window is full
/// excluded), `ack_wait` (awaiting PubAcks), `delete` (removing acknowledged rows).
pub const RELAY_STAGES: [&str; 5] = ["read", "encode", "publish", "ack_wait", "delete"];

impl ProducerMetrics {
    /// Creates and registers every metric.
    pub fn new() -> Self {
        let registry = Registry::new();
        let r = &registry;
        let processed = counter_vec(
            r,
            "followup_processed_total",
            "Follow-ups delivered",
            &["type", "kind"],
        );
        let skipped = counter_vec(
            r,
            "followup_skipped_total",
            "Due leads skipped (no e-mail or no consent)",
            &["kind"],
        );
        let errors = counter(
            r,
            "followup_errors_total",
            "Follow-ups that finally failed, and failed runs",
        );
        let delivery_retries = counter_vec(
            r,
            "followup_delivery_retries_total",
            "Delivery attempts that failed and will be retried, by cause",
            &["cause"],
        );
        let mailer_unavailable = int_gauge(
            r,
            "followup_mailer_unavailable",
            "1 while deliveries wait for an unavailable mail server",
        );
        let run_duration = histogram(
            r,
            "followup_processing_duration_seconds",
            "Duration of a follow-up run",
            vec![
                0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0, 40.0, 80.0, 160.0,
            ],
        );
        let runs = counter_vec(
            r,
            "followup_runs_total",
            "Follow-up runs by outcome",
            &["outcome"],
        );
        let last_run = int_gauge(
            r,
            "followup_last_run_timestamp_seconds",
            "Unix time at which the last completed run finished",
        );
        let outbox_backlog = int_gauge(
            r,
            "followup_outbox_backlog",
            "Outbox rows not yet acknowledged by JetStream",
        );
        let relay_published = counter(
            r,
            "followup_relay_published_total",
            "Outbox rows acknowledged by JetStream",
        );
        let relay_duplicates = counter(
            r,
            "followup_relay_duplicates_total",
            "Publishes JetStream acknowledged as duplicates (a republish after a crash)",
        );
        let relay_errors = counter(
            r,
            "followup_relay_errors_total",
            "Relay batches that failed and will be retried",
        );
        let relay_batch_duration = histogram(
            r,
            "followup_relay_batch_duration_seconds",
            "Relay batch: publish, await PubAcks, mark",
            exponential_buckets(0.001, 2.0, 14),
        );
        let relay_stage_seconds = StageSeconds::register(
            r,
            "followup_relay_stage_seconds_total",
            "Seconds the relay spent per stage of its batches",
            &RELAY_STAGES,
        );
        for kind in ["t3", "t7"] {
            processed.with_label_values(&["email", kind]);
            skipped.with_label_values(&[kind]);
        }
        for cause in ["temporary", "unavailable"] {
            delivery_retries.with_label_values(&[cause]);
        }
        for outcome in ["completed", "skipped_slot", "failed"] {
            runs.with_label_values(&[outcome]);
        }
        ProducerMetrics {
            registry,
            processed,
            skipped,
            errors,
            delivery_retries,
            mailer_unavailable,
            run_duration,
            runs,
            last_run,
            outbox_backlog,
            relay_published,
            relay_duplicates,
            relay_errors,
            relay_batch_duration,
            relay_stage_seconds,
        }
    }
}

impl ProducerMetrics {
    /// Adds `spent` to the relay's `stage` (one of [`RELAY_STAGES`]).
    pub fn add_relay_stage(&self, stage: &str, spent: Duration) {
        self.relay_stage_seconds.add(stage, spent);
    }

    /// Adds a batch's publish-side times ([`crate::relay::Acknowledged`]).
    pub fn add_publish_stages(&self, acked: &crate::relay::Acknowledged) {
        self.add_relay_stage("encode", acked.encode);
        self.add_relay_stage("publish", acked.publish);
        self.add_relay_stage("ack_wait", acked.ack_wait);
    }
}

impl Default for ProducerMetrics {
    fn default() -> Self {
        Self::new()
    }
}
