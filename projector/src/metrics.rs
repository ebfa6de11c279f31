//! The projector's Prometheus metrics, in their own registry. Base units, no user ids in labels.

use std::time::Duration;

use followup_infra::metrics::{
    StageSeconds, counter, counter_vec, gauge, histogram, int_gauge, int_gauge_vec,
};
use followup_readmodel::Figures;
use prometheus::{Gauge, Histogram, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Registry};

use crate::apply::BatchReport;

/// Handles to every metric; cheap to clone.
#[derive(Clone)]
pub struct ProjectorMetrics {
    pub registry: Registry,
    pending: IntGaugeVec,
    sent_today: IntGauge,
    conversion_ratio: Gauge,
    events: IntCounterVec,
    consumer_pending: IntGauge,
    apply_duration: Histogram,
    dead_letters: IntCounter,
    module_dead_letters: IntCounterVec,
    last_event_timestamp: Gauge,
    stage_seconds: StageSeconds,
    active: IntGauge,
}

/// The projector's stages (`followup_projector_stage_seconds_total{stage}`). Beside the batch
/// loop, in a task of their own: `fetch` (pull request → batch in hand, an idle stream's wait
/// for a first message excluded), `parse` (CloudEvents decoded) and `ack`. In the loop, in
/// order: `wait` (a stall: waiting for the next batch right after a non-empty one), then the
/// [`crate::ApplyPhases`] `lock`, `inbox`, `load`, `fold`, `write`, `commit`, then `notice` (the
/// change notice published) and `gauges` (the organisation's figures reloaded, about once a
/// second).
pub const PROJECTOR_STAGES: [&str; 12] = [
    "fetch", "parse", "ack", "wait", "lock", "inbox", "load", "fold", "write", "commit", "notice",
    "gauges",
];

impl ProjectorMetrics {
    /// Creates and registers the metrics.
    pub fn new() -> ProjectorMetrics {
        let registry = Registry::new();
        let r = &registry;
        let pending = int_gauge_vec(
            r,
            "followup_pending",
            "Leads waiting for a follow-up, organisation-wide",
            &["kind"],
        );
        let sent_today = int_gauge(
            r,
            "followup_sent_today",
            "Follow-ups delivered since local midnight (FOLLOWUP_TZ), organisation-wide",
        );
        let conversion_ratio = gauge(
            r,
            "followup_conversion_ratio",
            "Share (0-1) of followed-up leads that are now CONVERTED",
        );
        let events = counter_vec(
            r,
            "followup_projector_events_total",
            "Messages handled, by type and outcome",
            &["type", "outcome"],
        );
        let consumer_pending = int_gauge(
            r,
            "followup_projector_consumer_pending",
            "Messages in the stream not yet delivered to the projector's consumer",
        );
        let apply_duration = histogram(
            r,
            "followup_projector_apply_duration_seconds",
            "Time to apply and commit one batch",
            vec![
                0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
            ],
        );
        let dead_letters = counter(
            r,
            "followup_projector_dead_letters_total",
            "Messages stored as dead letters",
        );
        let module_dead_letters = counter_vec(
            r,
            "followup_dead_letters_total",
            "Messages of FOLLOWUP a durable gave up on (max_deliver), stored in FOLLOWUP_DLQ",
            &["durable"],
        );
        let last_event_timestamp = gauge(
            r,
            "followup_projector_last_event_timestamp_seconds",
            "Event time of the latest applied event, Unix seconds",
        );
        let stage_seconds = StageSeconds::register(
            r,
            "followup_projector_stage_seconds_total",
            "Seconds the projector spent per stage of its batches",
            &PROJECTOR_STAGES,
        );
        let active = int_gauge(
            r,
            "followup_projector_active",
            "1 while this projector holds the consumer lock and consumes; 0 while it stands by",
        );
        ProjectorMetrics {
            registry,
            pending,
            sent_today,
            conversion_ratio,
            events,
            consumer_pending,
            apply_duration,
            dead_letters,
            module_dead_letters,
            last_event_timestamp,
            stage_seconds,
            active,
        }
    }

    /// Adds `spent` to `stage` (one of [`PROJECTOR_STAGES`]).
    pub fn add_stage(&self, stage: &str, spent: Duration) {
        self.stage_seconds.add(stage, spent);
    }

    /// Counts a committed batch and how long it took.
    pub fn observe_batch(&self, report: &BatchReport, seconds: f64) {
        self.apply_duration.observe(seconds);
        let phases = &report.phases;
        for (stage, spent) in [
            ("lock", phases.lock),
            ("inbox", phases.inbox),
            ("load", phases.load),
            ("fold", phases.fold),
            ("write", phases.write),
            ("commit", phases.commit),
        ] {
            self.add_stage(stage, spent);
        }
        for (label, outcome) in &report.outcomes {
            self.events
                .with_label_values(&[*label, outcome.as_str()])
                .inc();
            if *outcome == crate::fold::Outcome::DeadLettered {
                self.dead_letters.inc();
            }
        }
        if let Some(at) = report.last_event_at {
            let seconds = at.timestamp_micros() as f64 / 1e6;
            if seconds > self.last_event_timestamp.get() {
                self.last_event_timestamp.set(seconds);
            }
        }
    }

    /// Sets the organisation-wide gauges from freshly loaded figures.
    pub fn set_org_figures(&self, figures: &Figures) {
        self.pending
            .with_label_values(&["t3"])
            .set(figures.pending_t3);
        self.pending
            .with_label_values(&["t7"])
            .set(figures.pending_t7);
        self.sent_today.set(figures.sent_today);
        self.conversion_ratio.set(figures.conversion_rate / 100.0);
    }

    /// Counts a dead letter the collector stored for `durable`.
    pub fn count_module_dead_letter(&self, durable: &str) {
        self.module_dead_letters.with_label_values(&[durable]).inc();
    }

    /// Makes `durable`'s dead-letter series exist (at 0 until its first dead letter).
    pub fn know_durable(&self, durable: &str) {
        self.module_dead_letters.with_label_values(&[durable]);
    }

    /// Whether this projector consumes (holds the consumer lock) or stands by.
    pub fn set_active(&self, active: bool) {
        self.active.set(i64::from(active));
    }

    /// Sets the consumer lag.
    pub fn set_consumer_pending(&self, pending: u64) {
        self.consumer_pending
            .set(i64::try_from(pending).unwrap_or(i64::MAX));
    }
}

impl Default for ProjectorMetrics {
    fn default() -> Self {
        Self::new()
    }
}
