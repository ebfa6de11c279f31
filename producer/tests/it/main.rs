//! Producer integration tests against real Postgres and a private nats-server per test.

mod relay;
mod rules;
mod run_once;
mod serve;
mod support;
mod trigger;
