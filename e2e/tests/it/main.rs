//! Whole-pipeline tests: the real gateway on port 0 with the real projector, the producer's
//! outbox relay, a private nats-server and a fresh Postgres database per test. No mocks.

mod api_doc;
mod attacks;
mod bench;
mod bench_fanout;
mod bench_insights;
mod bench_metrics;
mod bench_pipeline;
mod bench_replicas;
mod bench_util;
mod bench_whole;
mod browser;
mod browser_insights;
mod cross_user;
mod insights;
mod limits;
mod ops;
mod rbac;
mod service_bin;
mod sse;
mod support;
mod unsubscribe;
mod widget;
