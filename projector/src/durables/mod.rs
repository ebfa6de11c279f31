//! Durables as data (`nats/consumers/`) and the command that applies them.

mod apply;
mod definitions;

pub use apply::{Action, Applied, ApplyError, apply_definitions};
pub use definitions::{Definition, DefinitionError, LOCKED_FIELDS, read_definitions};
