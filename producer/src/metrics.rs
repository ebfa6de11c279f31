//! The producer's Prometheus metrics (names from DESIGN.md; base units, no user ids in labels).

use prometheus::{Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge, Opts, Registry};

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
}

impl ProducerMetrics {
    /// Creates and registers every metric.
    pub fn new() -> Self {
        let registry = Registry::new();
        let processed = IntCounterVec::new(
            Opts::new("followup_processed_total", "Follow-ups delivered"),
            &["type", "kind"],
        )
        .expect("metric");
        let skipped = IntCounterVec::new(
            Opts::new(
                "followup_skipped_total",
                "Due leads skipped (no e-mail or no consent)",
            ),
            &["kind"],
        )
        .expect("metric");
        let errors = IntCounter::new(
            "followup_errors_total",
            "Follow-ups that finally failed, and failed runs",
        )
        .expect("metric");
        let delivery_retries = IntCounterVec::new(
            Opts::new(
                "followup_delivery_retries_total",
                "Delivery attempts that failed and will be retried, by cause",
            ),
            &["cause"],
        )
        .expect("metric");
        let mailer_unavailable = IntGauge::new(
            "followup_mailer_unavailable",
            "1 while deliveries wait for an unavailable mail server",
        )
        .expect("metric");
        let run_duration = Histogram::with_opts(
            HistogramOpts::new(
                "followup_processing_duration_seconds",
                "Duration of a follow-up run",
            )
            .buckets(vec![
                0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0, 40.0, 80.0, 160.0,
            ]),
        )
        .expect("metric");
        let runs = IntCounterVec::new(
            Opts::new("followup_runs_total", "Follow-up runs by outcome"),
            &["outcome"],
        )
        .expect("metric");
        let last_run = IntGauge::new(
            "followup_last_run_timestamp_seconds",
            "Unix time at which the last completed run finished",
        )
        .expect("metric");
        let outbox_backlog = IntGauge::new(
            "followup_outbox_backlog",
            "Outbox rows not yet acknowledged by JetStream",
        )
        .expect("metric");
        let relay_published = IntCounter::new(
            "followup_relay_published_total",
            "Outbox rows acknowledged by JetStream",
        )
        .expect("metric");
        let relay_duplicates = IntCounter::new(
            "followup_relay_duplicates_total",
            "Publishes JetStream acknowledged as duplicates (a republish after a crash)",
        )
        .expect("metric");
        let relay_errors = IntCounter::new(
            "followup_relay_errors_total",
            "Relay batches that failed and will be retried",
        )
        .expect("metric");
        let relay_batch_duration = Histogram::with_opts(
            HistogramOpts::new(
                "followup_relay_batch_duration_seconds",
                "Relay batch: publish, await PubAcks, mark",
            )
            .buckets(prometheus::exponential_buckets(0.001, 2.0, 14).expect("buckets")),
        )
        .expect("metric");
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
        let metrics = ProducerMetrics {
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
        };
        let r = &metrics.registry;
        r.register(Box::new(metrics.processed.clone()))
            .expect("register");
        r.register(Box::new(metrics.skipped.clone()))
            .expect("register");
        r.register(Box::new(metrics.errors.clone()))
            .expect("register");
        r.register(Box::new(metrics.delivery_retries.clone()))
            .expect("register");
        r.register(Box::new(metrics.mailer_unavailable.clone()))
            .expect("register");
        r.register(Box::new(metrics.run_duration.clone()))
            .expect("register");
        r.register(Box::new(metrics.runs.clone()))
            .expect("register");
        r.register(Box::new(metrics.last_run.clone()))
            .expect("register");
        r.register(Box::new(metrics.outbox_backlog.clone()))
            .expect("register");
        r.register(Box::new(metrics.relay_published.clone()))
            .expect("register");
        r.register(Box::new(metrics.relay_duplicates.clone()))
            .expect("register");
        r.register(Box::new(metrics.relay_errors.clone()))
            .expect("register");
        r.register(Box::new(metrics.relay_batch_duration.clone()))
            .expect("register");
        metrics
    }
}

impl Default for ProducerMetrics {
    fn default() -> Self {
        Self::new()
    }
}
