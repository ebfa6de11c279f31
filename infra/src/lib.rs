//! Runtime plumbing shared by the three binaries: the settings they all read, connecting to
//! Postgres and applying the migrations, connecting to NATS and provisioning the `FOLLOWUP` stream
//! from the `nats/` definitions, the small operational HTTP server (`/metrics`, `/healthz`,
//! `/readyz`) and the registration of the metrics it serves, shutdown on SIGINT/SIGTERM, waiting
//! for a dependency with backoff, logging set-up, and withdrawing e-mail consent (the unsubscribe
//! link). Domain logic lives in the service crates.

pub mod config;
pub mod consent;
pub mod db;
pub mod metrics;
pub mod nats;
pub mod ops;
pub mod retry;
pub mod shutdown;
pub mod telemetry;

pub use config::CommonArgs;
pub use consent::{ConsentWithdrawal, withdraw_consent};
pub use db::{
    check_crm_access, connect_database, grant_app_role, migrate_database, prepare_database,
};
pub use nats::{
    StreamSettings, connect_nats, ensure_stream, ensure_stream_replicas, provision_stream,
    server_addrs,
};
pub use ops::{Readiness, serve_ops};
pub use retry::{Backoff, retry_until};
pub use shutdown::shutdown_on_signals;
