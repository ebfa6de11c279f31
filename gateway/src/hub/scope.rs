//! The state the hub keeps per scope: its clients' channels, the last frame (the cache for new
//! clients), the fingerprint of the last pushed figures, and the pending change with the timing
//! of reloads and pushes that the worker schedules by.

use std::collections::HashMap;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::Frame;

/// One scope's clients, cached frame and refresh state.
pub(super) struct ScopeEntry {
    pub(super) clients: HashMap<u64, ClientSlot>,
    /// The last frame the worker made (pushed or not): the cache for new clients.
    pub(super) latest: Option<Arc<Frame>>,
    /// Figures of the last pushed frame.
    pub(super) fingerprint: Option<String>,
    pub(super) dirty: Option<Dirty>,
    pub(super) refreshing: bool,
    /// Start of the last reload (coalescing window).
    pub(super) last_refresh: Option<Instant>,
    /// Last push to all clients (periodic frame).
    pub(super) last_push: Instant,
    /// After a failed reload: not again before this.
    pub(super) not_before: Option<Instant>,
}

/// A change waiting for a reload.
#[derive(Debug, Clone, Copy)]
pub(super) struct Dirty {
    pub(super) committed_at: Option<DateTime<Utc>>,
}

/// A client's end of the scope: where its frames go, and how it is cut off.
pub(super) struct ClientSlot {
    pub(super) tx: mpsc::Sender<Arc<Frame>>,
    pub(super) kicked: CancellationToken,
}

impl ScopeEntry {
    pub(super) fn new(now: Instant) -> ScopeEntry {
        ScopeEntry {
            clients: HashMap::new(),
            latest: None,
            fingerprint: None,
            dirty: None,
            refreshing: false,
            last_refresh: None,
            last_push: now,
            not_before: None,
        }
    }

    /// Records a change; of several pending ones, the earliest commit time is kept, so the
    /// latency histogram measures from the first change the next frame answers.
    pub(super) fn mark_dirty(&mut self, committed_at: Option<DateTime<Utc>>) {
        let earliest = match (self.dirty.and_then(|d| d.committed_at), committed_at) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        self.dirty = Some(Dirty {
            committed_at: earliest,
        });
    }
}
