//! Creating and registering a Prometheus metric in one expression, for the services' metric
//! sets.
//!
//! Every function panics when the metric cannot be created or registered: an invalid name,
//! label or bucket list, or a name registered twice. Those are fixed strings in the code, so the
//! panic is a bug found by the first test that builds the metric set, never a run-time
//! condition.

use std::time::Duration;

use prometheus::core::Collector;
use prometheus::{
    CounterVec, Gauge, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge,
    IntGaugeVec, Opts, Registry,
};

/// Registers `metric` in `registry` and returns it (a handle sharing its values).
#[track_caller]
fn registered<M: Collector + Clone + 'static>(
    registry: &Registry,
    name: &str,
    metric: prometheus::Result<M>,
) -> M {
    let metric = metric.unwrap_or_else(|err| panic!("metric {name}: {err}"));
    registry
        .register(Box::new(metric.clone()))
        .unwrap_or_else(|err| panic!("registering metric {name}: {err}"));
    metric
}

/// An integer counter (`…_total`).
#[track_caller]
pub fn counter(registry: &Registry, name: &str, help: &str) -> IntCounter {
    registered(registry, name, IntCounter::new(name, help))
}

/// Integer counters by `labels`.
#[track_caller]
pub fn counter_vec(registry: &Registry, name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    registered(
        registry,
        name,
        IntCounterVec::new(Opts::new(name, help), labels),
    )
}

/// Seconds spent per stage of a service's work (`<name>{stage}`, a `…_seconds_total` counter):
/// a `rate()` of it is the share of wall time each stage takes. Every stage's series exists from
/// the start, at 0.
#[derive(Clone)]
pub struct StageSeconds(CounterVec);

impl StageSeconds {
    /// Registers `name` with a series for each of `stages`.
    #[track_caller]
    pub fn register(registry: &Registry, name: &str, help: &str, stages: &[&str]) -> StageSeconds {
        let counters = registered(
            registry,
            name,
            CounterVec::new(Opts::new(name, help), &["stage"]),
        );
        for stage in stages {
            counters.with_label_values(&[stage]);
        }
        StageSeconds(counters)
    }

    /// Adds `spent` to `stage`.
    pub fn add(&self, stage: &str, spent: Duration) {
        self.0
            .with_label_values(&[stage])
            .inc_by(spent.as_secs_f64());
    }
}

/// An integer gauge.
#[track_caller]
pub fn int_gauge(registry: &Registry, name: &str, help: &str) -> IntGauge {
    registered(registry, name, IntGauge::new(name, help))
}

/// Integer gauges by `labels`.
#[track_caller]
pub fn int_gauge_vec(registry: &Registry, name: &str, help: &str, labels: &[&str]) -> IntGaugeVec {
    registered(
        registry,
        name,
        IntGaugeVec::new(Opts::new(name, help), labels),
    )
}

/// A floating-point gauge (ratios, Unix times with fractions).
#[track_caller]
pub fn gauge(registry: &Registry, name: &str, help: &str) -> Gauge {
    registered(registry, name, Gauge::new(name, help))
}

/// A histogram with the given bucket upper bounds.
#[track_caller]
pub fn histogram(registry: &Registry, name: &str, help: &str, buckets: Vec<f64>) -> Histogram {
    registered(
        registry,
        name,
        Histogram::with_opts(HistogramOpts::new(name, help).buckets(buckets)),
    )
}

/// Histograms by `labels`, with the given bucket upper bounds.
#[track_caller]
pub fn histogram_vec(
    registry: &Registry,
    name: &str,
    help: &str,
    buckets: Vec<f64>,
    labels: &[&str],
) -> HistogramVec {
    registered(
        registry,
        name,
        HistogramVec::new(HistogramOpts::new(name, help).buckets(buckets), labels),
    )
}

/// `count` buckets from `start`, each `factor` times the previous
/// ([`prometheus::exponential_buckets`], panicking on arguments it rejects).
#[track_caller]
pub fn exponential_buckets(start: f64, factor: f64, count: usize) -> Vec<f64> {
    prometheus::exponential_buckets(start, factor, count)
        .unwrap_or_else(|err| panic!("exponential buckets: {err}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_metric_is_created_and_registered() {
        let registry = Registry::new();
        let total = counter(&registry, "t_total", "A counter");
        let by_kind = counter_vec(&registry, "t_kind_total", "By kind", &["kind"]);
        let level = int_gauge(&registry, "t_level", "A gauge");
        let ratio = gauge(&registry, "t_ratio", "A ratio");
        let pending = int_gauge_vec(&registry, "t_pending", "Pending", &["kind"]);
        let took = histogram(&registry, "t_seconds", "Took", vec![0.1, 1.0]);
        let by_route = histogram_vec(
            &registry,
            "t_route_seconds",
            "By route",
            exponential_buckets(0.001, 2.0, 3),
            &["route"],
        );
        total.inc();
        by_kind.with_label_values(&["t3"]).inc();
        level.set(2);
        ratio.set(0.5);
        pending.with_label_values(&["t7"]).set(1);
        took.observe(0.5);
        by_route.with_label_values(&["/"]).observe(0.002);
        let families = registry.gather();
        let names: Vec<&str> = families.iter().map(|f| f.name()).collect();
        assert_eq!(
            names,
            [
                "t_kind_total",
                "t_level",
                "t_pending",
                "t_ratio",
                "t_route_seconds",
                "t_seconds",
                "t_total"
            ]
        );
        let took = families.iter().find(|f| f.name() == "t_seconds").unwrap();
        assert_eq!(took.help(), "Took");
        let buckets = took.get_metric()[0].get_histogram().get_bucket();
        let bounds: Vec<f64> = buckets.iter().map(|b| b.upper_bound()).collect();
        assert_eq!(bounds, [0.1, 1.0]);
    }

    #[test]
    #[should_panic(expected = "registering metric t_total")]
    fn a_name_registered_twice_is_a_bug() {
        let registry = Registry::new();
        counter(&registry, "t_total", "A counter");
        counter(&registry, "t_total", "Again");
    }
}
