//! Dead letters of every durable on `FOLLOWUP`: the collector that fills the `FOLLOWUP_DLQ`
//! stream from JetStream's max-deliveries advisories, and listing and replaying its letters.
//! The projector's own poison messages (valid NATS messages that are no valid event) keep their
//! table `projection_dead_letters`: they are stored in the same transaction as the batch around
//! them and replayed into the projection by `dead-letters replay`, which a stream cannot do.

mod collect;
mod letters;

pub use collect::collect_dead_letters;
pub use letters::{
    DlqError, ModuleDeadLetter, list_module_dead_letters, replay_module_dead_letters,
};
