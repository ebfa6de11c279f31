//! The follow-up producer. A run claims the leads that are due for their T+3 or T+7 follow-up by
//! the CRM's rules, delivers the e-mails through a [`Mailer`], and records each outcome together
//! with its `lead.followup.*` event in a transactional outbox; the [relay] publishes the
//! outbox to the JetStream stream `FOLLOWUP` with `Nats-Msg-Id` set to the idempotency key and
//! awaits every PubAck. The binary `followup-producer` is a thin shell over [`run_until_stopped`] and
//! [`run_once`].

pub mod config;
pub mod delivery;
pub mod due;
pub mod mailer;
pub mod metrics;
pub mod record;
pub mod relay;
pub mod run;
pub mod schedule;
pub mod service;
pub mod template;

pub use config::{Cli, Command, ProducerConfig};
pub use delivery::{Delivery, RetryPolicy};
pub use mailer::Mailer;
pub use metrics::ProducerMetrics;
pub use run::{RunOutcome, RunReport, RunRequest, RunTrigger, execute_run};
pub use service::{delivery_for, migrate, run_once, run_until_stopped};
pub use template::{Renderer, UnsubscribeLinks};
