//! Integration tests of the projector against a real nats-server and Postgres, one binary with
//! one module per behaviour.

mod crm;
mod dead_letters;
mod dedup;
mod due_rules;
mod figures;
mod helpers;
mod kill;
mod lists;
mod module_apply;
mod module_dlq;
mod ordering;
mod rebuild;
mod replicas;
mod retention;
mod shutdown;
mod snapshot;
mod startup;
mod verify;
