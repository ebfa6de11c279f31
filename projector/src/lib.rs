//! The cockpit projector of the follow-up pipeline. It reads the `FOLLOWUP` JetStream stream
//! through the durable pull consumer `projector` and keeps a Postgres read model of the cockpit
//! figures for the organisation and for every sales user: pending T+3 and T+7, follow-ups sent
//! today (local day in `FOLLOWUP_TZ`), conversion rate, trends against local midnight and the
//! recent producer runs. Each fetched batch is applied in one transaction together with an
//! inbox of event ids (exactly once in the projection), acked after commit and announced on
//! `freshplan.cockpit.followup.changed`. The projection can be rebuilt from the stream
//! ([`rebuild_projection`]) and checked against the CRM's tables ([`verify_projection`]).
//!
//! How the figures are kept: `projection_leads` holds each lead's latest state (by the
//! `lead.changed.v1` sequence) and `projection_deliveries` its delivered follow-ups. Every
//! accepted event is a transition of one lead; the lead's contribution to the scopes it belongs
//! to before the transition is subtracted and the one after it added, into
//! `projection_scope_figures` (current totals) and `projection_scope_days` (sent per local day of
//! the delivery, and the net change of pending per local day of the event, whose sign is the
//! trend). Day keys come from event times, never from the wall clock, so a rebuild yields the
//! same rows. The read side (the figures' shape and queries, scopes, local days, the notice's
//! body) is `followup-readmodel`; the gateway reads the projection through it, not through this
//! crate.

pub mod apply;
mod commands;
pub mod config;
pub mod consume;
pub mod dead_letters;
pub mod dlq;
pub mod durables;
mod fold;
pub mod leader;
pub mod metrics;
mod model;
mod module_commands;
mod notice;
mod parse;
pub mod prune;
pub mod rebuild;
mod serve;
pub mod show_events;
pub mod snapshot;
mod store;
pub mod verify;
pub mod verify_history;
pub mod verify_lists;
mod write;

pub use apply::{
    ApplyError, ApplyPhases, BatchReport, apply_and_commit, apply_messages, apply_parsed,
};
pub use commands::run_cli;
pub use config::{Cli, Command, Config, ConsumersCommand, DeadLettersCommand, DlqCommand};
pub use dead_letters::{
    DeadLetter, ReplayOutcome, ReplaySelection, list_dead_letters, replay_dead_letters,
};
pub use fold::Outcome;
pub use parse::{InboundMessage, ParsedBatch, parse_batch};
pub use rebuild::{RebuildProgress, rebuild_projection};
pub use serve::run_until_stopped;
pub use snapshot::{SnapshotReport, begin_snapshot, ensure_snapshot, write_snapshot};
pub use verify::{Mismatch, VerifyReport, truth_pending, verify_projection};
pub use verify_lists::{LeadLists, served_list, truth_lists};
