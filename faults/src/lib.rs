//! The reusable parts of the fault suite: the private NATS deployment (one node or a
//! three-node cluster) and the service binaries as child processes. The suite's program
//! (`src/main.rs`) uses them, and so does the replica benchmark of `followup-e2e`
//! (`e2e/tests/it/bench_replicas.rs`).

pub mod nats;
pub mod services;
