//! The read side of the cockpit projection, shared by the projector (which writes the
//! `projection_*` tables) and the gateway (which serves them): the figures of a scope and the
//! recent producer runs as the cockpit's JSON shows them, and how they are read
//! ([`load_figures`], [`load_recent_runs`]); the scopes the figures are kept for ([`Scope`]: the
//! organisation, or the leads one sales user owns or collaborates on, [`lead_members`]); which
//! local day is "today" and when it began ([`local_date`], [`local_midnight`], [`Clock`]); and the
//! body of the notice the projector sends after each commit ([`ChangeNotice`]). It has no NATS
//! and writes nothing, so the gateway can read the projection without depending on the projector;
//! the tables themselves are defined by the migrations in `migrations/`.

pub mod clock;
pub mod figures;
pub mod history;
pub mod lead_query;
pub mod leads;
pub mod notice;
pub mod scope;

pub use clock::{Clock, local_date, local_midnight};
pub use figures::{
    Figures, FiguresError, RecentRun, Trend, conversion_percent, load_figures, load_recent_runs,
};
pub use history::{History, HistoryDay, MAX_HISTORY_DAYS, load_history};
pub use lead_query::load_lead_page;
pub use leads::{
    Cursor, DueClass, FollowUpFailure, LastFollowUp, LeadFigure, LeadItem, LeadPage, NextFollowUp,
};
pub use notice::ChangeNotice;
pub use scope::{Scope, lead_members};
