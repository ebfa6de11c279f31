//! What the hub loads and sends: a scope's figures as loaded ([`Snapshot`]), the loader that
//! fetches them, and the serialised SSE event every client of the scope shares ([`Frame`]).

use std::sync::Arc;

use bytes::Bytes;
use chrono::{DateTime, Utc};
use futures::future::BoxFuture;
use tokio::time::Instant;

/// The figures of a scope as loaded: the JSON to send, and the same without `asOf` to tell
/// whether anything changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Snapshot {
    pub json: String,
    pub fingerprint: String,
}

/// Loads a scope's figures by its key.
pub type Loader = Arc<dyn Fn(String) -> BoxFuture<'static, anyhow::Result<Snapshot>> + Send + Sync>;

/// One serialised figures frame.
#[derive(Debug)]
pub struct Frame {
    pub id: u64,
    /// `id: …\ndata: {…}\n\n`: no event name, so a browser delivers it to
    /// `EventSource.onmessage` (the CRM's hook listens there; DESIGN.md, 2026-11-30).
    pub bytes: Bytes,
    /// The earliest projector commit this frame is the answer to (for the latency histogram).
    pub committed_at: Option<DateTime<Utc>>,
    pub made_at: Instant,
}

impl Frame {
    pub(super) fn new(id: u64, json: &str, committed_at: Option<DateTime<Utc>>) -> Frame {
        Frame {
            id,
            bytes: Bytes::from(format!("id: {id}\ndata: {json}\n\n")),
            committed_at,
            made_at: Instant::now(),
        }
    }
}

/// SSE comment sent on idle streams.
pub const HEARTBEAT: &[u8] = b": keep-alive\n\n";
/// Reconnection delay suggested to EventSource clients, sent once at the start of a stream.
pub const RETRY: &[u8] = b"retry: 2000\n\n";
