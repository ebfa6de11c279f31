//! The SSE hub: one entry per scope (`org`, `user:<id>`) that has stream clients.
//!
//! - The projector's change notices mark scopes dirty; one worker reloads each dirty scope's
//!   figures at most once per coalescing window (a burst of notices gives a few reloads), and
//!   pushes a frame only when the figures differ from the last pushed ones. Every scope also gets
//!   a frame every `period`, changed or not, which also covers a lost notice.
//! - A frame is serialised once, as the bytes of an SSE event, and shared (`Arc`) by every
//!   client of the scope.
//! - Each client has a bounded buffer. A client that lets it fill up is cut off (its connection
//!   is aborted), so a stalled reader never makes the gateway hold more than `client_buffer`
//!   frames for it.
//! - Frame ids grow across all scopes and across restarts (they start from the clock in
//!   microseconds), so a reconnecting client's `Last-Event-ID` is always below the ids it gets
//!   next.
//!
//! The parts: `frame` (what is loaded and sent), `scope` (the state kept per scope), `refresh`
//! (notices, the worker's reloads and pushes) and `subscription` (a client's registration and
//! its response body).

mod frame;
mod refresh;
mod scope;
mod subscription;
#[cfg(test)]
mod test_support;

pub use frame::{Frame, HEARTBEAT, Loader, RETRY, Snapshot};
pub use subscription::Subscription;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::Utc;
use tokio::sync::Notify;

use crate::metrics::GatewayMetrics;
use scope::ScopeEntry;

/// Hub tuning.
#[derive(Debug, Clone)]
pub struct HubConfig {
    /// Every client gets a frame at least this often.
    pub period: Duration,
    /// A dirty scope is reloaded at most once per window.
    pub coalesce: Duration,
    /// Frames buffered per client before it is cut off.
    pub client_buffer: usize,
    /// Comment lines on an otherwise idle stream.
    pub heartbeat: Duration,
}

/// The hub; cheap to clone.
#[derive(Clone)]
pub struct Hub {
    inner: Arc<Inner>,
}

struct Inner {
    config: HubConfig,
    loader: Loader,
    metrics: GatewayMetrics,
    scopes: Mutex<HashMap<String, ScopeEntry>>,
    wake: Notify,
    last_frame_id: AtomicU64,
    next_client: AtomicU64,
}

impl Hub {
    /// A hub without clients; its worker is [`Hub::run`].
    pub fn new(config: HubConfig, loader: Loader, metrics: GatewayMetrics) -> Hub {
        Hub {
            inner: Arc::new(Inner {
                config,
                loader,
                metrics,
                scopes: Mutex::new(HashMap::new()),
                wake: Notify::new(),
                last_frame_id: AtomicU64::new(0),
                next_client: AtomicU64::new(1),
            }),
        }
    }

    /// The tuning the hub was built with.
    pub fn config(&self) -> &HubConfig {
        &self.inner.config
    }

    /// A new frame id: above every id handed out so far, and at least the clock in µs.
    fn next_frame_id(&self) -> u64 {
        let now = Utc::now().timestamp_micros().max(0) as u64;
        let previous = self
            .inner
            .last_frame_id
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |prev| {
                Some(prev.saturating_add(1).max(now))
            })
            .unwrap_or_default();
        previous.saturating_add(1).max(now)
    }

    /// Scopes with at least one client.
    pub fn scope_count(&self) -> usize {
        self.inner.scopes.lock().expect("hub lock").len()
    }
}
