//! The whole-pipeline tests of the follow-up pipeline, kept apart from the crates they exercise
//! so that none of those needs the others as a dependency: the one test binary `it`
//! (`tests/it/`) starts the producer's outbox relay, the real projector and the gateway in
//! process (and the gateway binary where a test needs a process of its own) against a fresh
//! Postgres database and a private nats-server per test, and drives them over HTTP, SSE, NATS
//! and the CRM's tables. The gateway's benchmarks are `#[ignore]`d tests in the same binary
//! (`gateway/BENCH.md`). This library is empty on purpose.
