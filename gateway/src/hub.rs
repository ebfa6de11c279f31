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

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use chrono::{DateTime, Utc};
use futures::future::BoxFuture;
use futures::{Stream, StreamExt};
use tokio::sync::{Notify, mpsc};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::metrics::GatewayMetrics;

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
    fn new(id: u64, json: &str, committed_at: Option<DateTime<Utc>>) -> Frame {
        Frame {
            id,
            bytes: Bytes::from(format!("id: {id}\ndata: {json}\n\n")),
            committed_at,
            made_at: Instant::now(),
        }
    }
}

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

struct ScopeEntry {
    clients: HashMap<u64, ClientSlot>,
    /// The last frame the worker made (pushed or not): the cache for new clients.
    latest: Option<Arc<Frame>>,
    /// Figures of the last pushed frame.
    fingerprint: Option<String>,
    dirty: Option<Dirty>,
    refreshing: bool,
    /// Start of the last reload (coalescing window).
    last_refresh: Option<Instant>,
    /// Last push to all clients (periodic frame).
    last_push: Instant,
    /// After a failed reload: not again before this.
    not_before: Option<Instant>,
}

#[derive(Debug, Clone, Copy)]
struct Dirty {
    committed_at: Option<DateTime<Utc>>,
}

struct ClientSlot {
    tx: mpsc::Sender<Arc<Frame>>,
    kicked: CancellationToken,
}

/// A reload the worker is about to do.
struct Job {
    scope: String,
    frame_id: u64,
    committed_at: Option<DateTime<Utc>>,
    /// Periodic: push even when nothing changed.
    force: bool,
}

impl ScopeEntry {
    fn new(now: Instant) -> ScopeEntry {
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

    fn mark_dirty(&mut self, committed_at: Option<DateTime<Utc>>) {
        let earliest = match (self.dirty.and_then(|d| d.committed_at), committed_at) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        self.dirty = Some(Dirty {
            committed_at: earliest,
        });
    }
}

/// A stream client's registration; the stream ends when it is dropped.
pub struct Subscription {
    pub first: Arc<Frame>,
    rx: mpsc::Receiver<Arc<Frame>>,
    kicked: CancellationToken,
    _guard: ClientGuard,
}

struct ClientGuard {
    hub: Hub,
    scope: String,
    id: u64,
}

impl Drop for ClientGuard {
    fn drop(&mut self) {
        self.hub.inner.metrics.sse_clients.dec();
        let mut scopes = self.hub.inner.scopes.lock().expect("hub lock");
        if let Some(entry) = scopes.get_mut(&self.scope) {
            entry.clients.remove(&self.id);
            if entry.clients.is_empty() {
                scopes.remove(&self.scope);
            }
        }
    }
}

/// SSE comment sent on idle streams.
pub const HEARTBEAT: &[u8] = b": keep-alive\n\n";
/// Reconnection delay suggested to EventSource clients, sent once at the start of a stream.
pub const RETRY: &[u8] = b"retry: 2000\n\n";

impl Hub {
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

    /// Registers a client of `scope` and returns its first frame: the current figures. With a
    /// `Last-Event-ID` the figures are always loaded fresh and the frame id is above it;
    /// otherwise a frame the worker made less than a period ago, with no change pending since,
    /// is shared.
    pub async fn subscribe(
        &self,
        scope: String,
        last_event_id: Option<u64>,
    ) -> anyhow::Result<Subscription> {
        let (tx, rx) = mpsc::channel(self.inner.config.client_buffer);
        let kicked = CancellationToken::new();
        let id = self.inner.next_client.fetch_add(1, Ordering::Relaxed);
        let (cached, new_scope) = {
            let mut scopes = self.inner.scopes.lock().expect("hub lock");
            let new_scope = !scopes.contains_key(&scope);
            let entry = scopes
                .entry(scope.clone())
                .or_insert_with(|| ScopeEntry::new(Instant::now()));
            entry.clients.insert(
                id,
                ClientSlot {
                    tx,
                    kicked: kicked.clone(),
                },
            );
            let cached = match (&entry.latest, last_event_id) {
                (Some(frame), None)
                    if entry.dirty.is_none()
                        && !entry.refreshing
                        && frame.made_at.elapsed() < self.inner.config.period =>
                {
                    Some(frame.clone())
                }
                _ => None,
            };
            (cached, new_scope)
        };
        if new_scope {
            // The worker may be asleep with no deadline for this scope yet.
            self.inner.wake.notify_one();
        }
        self.inner.metrics.sse_clients.inc();
        let guard = ClientGuard {
            hub: self.clone(),
            scope: scope.clone(),
            id,
        };
        let first = match cached {
            Some(frame) => frame,
            None => {
                if let Some(last) = last_event_id {
                    self.inner.last_frame_id.fetch_max(last, Ordering::SeqCst);
                }
                // Reserved before loading, so a reload that started earlier has a lower id.
                let frame_id = self.next_frame_id();
                let snapshot = (self.inner.loader)(scope.clone()).await?;
                let frame = Arc::new(Frame::new(frame_id, &snapshot.json, None));
                // The first client of a scope: the worker's next reload compares with what it
                // got (a reload that already pushed something has set the fingerprint).
                let mut scopes = self.inner.scopes.lock().expect("hub lock");
                if let Some(entry) = scopes.get_mut(&scope)
                    && entry.fingerprint.is_none()
                {
                    entry.fingerprint = Some(snapshot.fingerprint);
                }
                drop(scopes);
                frame
            }
        };
        Ok(Subscription {
            first,
            rx,
            kicked,
            _guard: guard,
        })
    }

    /// A projector notice: the figures of these users and, with `org`, of the organisation
    /// may have changed. Scopes without clients are ignored.
    pub fn notify<'a>(
        &self,
        users: impl IntoIterator<Item = &'a str>,
        org: bool,
        committed_at: Option<DateTime<Utc>>,
    ) {
        self.inner.metrics.notices.inc();
        let mut marked = false;
        {
            let mut scopes = self.inner.scopes.lock().expect("hub lock");
            for user in users {
                if let Some(entry) = scopes.get_mut(&format!("user:{user}")) {
                    entry.mark_dirty(committed_at);
                    marked = true;
                }
            }
            if org && let Some(entry) = scopes.get_mut("org") {
                entry.mark_dirty(committed_at);
                marked = true;
            }
        }
        if marked {
            self.inner.wake.notify_one();
        }
    }

    /// Marks every scope dirty (after a NATS reconnect, when notices may have been missed).
    pub fn mark_all_dirty(&self) {
        {
            let mut scopes = self.inner.scopes.lock().expect("hub lock");
            for entry in scopes.values_mut() {
                entry.mark_dirty(None);
            }
        }
        self.inner.wake.notify_one();
    }

    /// The worker: reloads dirty and periodic scopes and pushes frames, until `shutdown`.
    pub async fn run(self, shutdown: CancellationToken) {
        loop {
            let (jobs, next_wake) = self.collect_due(Instant::now());
            if !jobs.is_empty() {
                let loads = futures::stream::iter(jobs)
                    .map(|job| {
                        let load = (self.inner.loader)(job.scope.clone());
                        async move { (job, load.await) }
                    })
                    .buffer_unordered(8);
                tokio::pin!(loads);
                while let Some((job, result)) = loads.next().await {
                    self.publish(job, result);
                }
                continue;
            }
            let sleep = next_wake.unwrap_or_else(|| Instant::now() + Duration::from_secs(60));
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = self.inner.wake.notified() => {}
                _ = tokio::time::sleep_until(sleep) => {}
            }
        }
        tracing::debug!("hub worker stopped");
    }

    /// Takes the scopes due for a reload now, and says when the next one is due.
    fn collect_due(&self, now: Instant) -> (Vec<Job>, Option<Instant>) {
        let config = &self.inner.config;
        let mut jobs = Vec::new();
        let mut next: Option<Instant> = None;
        let mut scopes = self.inner.scopes.lock().expect("hub lock");
        for (scope, entry) in scopes.iter_mut() {
            if entry.refreshing {
                continue;
            }
            let mut due_at = entry.last_push + config.period;
            if entry.dirty.is_some() {
                let window_end = entry
                    .last_refresh
                    .map_or(now, |t| t + config.coalesce)
                    .max(entry.not_before.unwrap_or(now));
                due_at = due_at.min(window_end);
            }
            if due_at > now {
                next = Some(next.map_or(due_at, |n| n.min(due_at)));
                continue;
            }
            let force = entry.last_push + config.period <= now;
            let committed_at = entry.dirty.take().and_then(|d| d.committed_at);
            entry.refreshing = true;
            entry.last_refresh = Some(now);
            jobs.push(Job {
                scope: scope.clone(),
                frame_id: 0,
                committed_at,
                force,
            });
        }
        drop(scopes);
        for job in &mut jobs {
            job.frame_id = self.next_frame_id();
        }
        (jobs, next)
    }

    /// Stores a reload's result and pushes its frame when the figures changed or a periodic
    /// frame is due.
    fn publish(&self, job: Job, result: anyhow::Result<Snapshot>) {
        let metrics = &self.inner.metrics;
        let mut scopes = self.inner.scopes.lock().expect("hub lock");
        let Some(entry) = scopes.get_mut(&job.scope) else {
            return;
        };
        entry.refreshing = false;
        let snapshot = match result {
            Ok(snapshot) => snapshot,
            Err(err) => {
                metrics.refreshes.with_label_values(&["error"]).inc();
                tracing::warn!(scope = %job.scope, error = format!("{err:#}"), "reloading figures failed");
                // Retry in a second; keep the change pending.
                entry.mark_dirty(job.committed_at);
                entry.not_before = Some(Instant::now() + Duration::from_secs(1));
                if job.force {
                    // Do not hammer a failing database with periodic reloads either.
                    entry.last_push = Instant::now();
                }
                return;
            }
        };
        entry.not_before = None;
        let frame = Arc::new(Frame::new(job.frame_id, &snapshot.json, job.committed_at));
        let changed = entry.fingerprint.as_deref() != Some(snapshot.fingerprint.as_str());
        entry.latest = Some(frame.clone());
        if !changed && !job.force {
            metrics.refreshes.with_label_values(&["unchanged"]).inc();
            return;
        }
        metrics.refreshes.with_label_values(&["pushed"]).inc();
        entry.fingerprint = Some(snapshot.fingerprint);
        entry.last_push = Instant::now();
        entry
            .clients
            .retain(|_, slot| match slot.tx.try_send(frame.clone()) {
                Ok(()) => true,
                Err(mpsc::error::TrySendError::Full(_)) => {
                    slot.kicked.cancel();
                    metrics.sse_dropped.inc();
                    tracing::info!(scope = %job.scope, "dropping an SSE client that fell behind");
                    false
                }
                Err(mpsc::error::TrySendError::Closed(_)) => false,
            });
    }
}

/// What the stream does next.
enum Next {
    Frame(Arc<Frame>),
    Heartbeat,
    Kicked,
    End,
}

impl Subscription {
    /// The response body: `retry`, the first frame, then pushed frames and heartbeats, until the
    /// client goes, is cut off (an error aborts the connection), or `shutdown` fires or
    /// `expires_in` passes (a clean end).
    pub fn into_body_stream(
        self,
        heartbeat: Duration,
        expires_in: Option<Duration>,
        metrics: GatewayMetrics,
        shutdown: CancellationToken,
    ) -> impl Stream<Item = Result<Bytes, std::io::Error>> + Send + 'static {
        let Subscription {
            first,
            mut rx,
            kicked,
            _guard,
        } = self;
        async_stream::stream! {
            let _guard = _guard;
            let mut last_id = first.id;
            yield Ok(Bytes::from_static(RETRY));
            metrics.sse_frames.inc();
            yield Ok(first.bytes.clone());
            let mut beat = tokio::time::interval_at(Instant::now() + heartbeat, heartbeat);
            let far = Duration::from_secs(10 * 365 * 24 * 3600);
            let expiry = tokio::time::sleep(expires_in.unwrap_or(far).min(far));
            tokio::pin!(expiry);
            beat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                let next = tokio::select! {
                    biased;
                    _ = shutdown.cancelled() => Next::End,
                    _ = kicked.cancelled() => Next::Kicked,
                    _ = &mut expiry => Next::End,
                    frame = rx.recv() => frame.map_or(Next::End, Next::Frame),
                    _ = beat.tick() => Next::Heartbeat,
                };
                match next {
                    Next::Frame(frame) => {
                        if frame.id <= last_id {
                            continue;
                        }
                        last_id = frame.id;
                        if let Some(at) = frame.committed_at {
                            let seconds = (Utc::now() - at).num_microseconds().unwrap_or(0).max(0) as f64 / 1e6;
                            metrics.push_latency.observe(seconds);
                        }
                        metrics.sse_frames.inc();
                        beat.reset();
                        yield Ok(frame.bytes.clone());
                    }
                    Next::Heartbeat => yield Ok(Bytes::from_static(HEARTBEAT)),
                    Next::Kicked => {
                        yield Err(std::io::Error::other("SSE client fell too far behind"));
                        break;
                    }
                    Next::End => break,
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicI64;

    /// Figures are a counter the test moves; each load counts.
    fn counter_loader(value: Arc<AtomicI64>, loads: Arc<AtomicU64>) -> Loader {
        Arc::new(move |scope: String| {
            let value = value.load(Ordering::SeqCst);
            loads.fetch_add(1, Ordering::SeqCst);
            Box::pin(async move {
                Ok(Snapshot {
                    json: format!(r#"{{"scope":"{scope}","pendingT3":{value}}}"#),
                    fingerprint: value.to_string(),
                })
            })
        })
    }

    fn hub(buffer: usize, period_ms: u64) -> (Hub, Arc<AtomicI64>, Arc<AtomicU64>) {
        let value = Arc::new(AtomicI64::new(0));
        let loads = Arc::new(AtomicU64::new(0));
        let hub = Hub::new(
            HubConfig {
                period: Duration::from_millis(period_ms),
                coalesce: Duration::from_millis(50),
                client_buffer: buffer,
                heartbeat: Duration::from_secs(15),
            },
            counter_loader(value.clone(), loads.clone()),
            GatewayMetrics::new(),
        );
        (hub, value, loads)
    }

    fn pending_t3(frame: &Frame) -> i64 {
        let text = std::str::from_utf8(&frame.bytes).unwrap();
        let data = text.lines().find_map(|l| l.strip_prefix("data: ")).unwrap();
        serde_json::from_str::<serde_json::Value>(data).unwrap()["pendingT3"]
            .as_i64()
            .unwrap()
    }

    #[tokio::test]
    async fn a_burst_of_notices_gives_few_frames_with_the_last_figures() {
        let (hub, value, loads) = hub(64, 60_000);
        let shutdown = CancellationToken::new();
        tokio::spawn(hub.clone().run(shutdown.clone()));
        let mut sub = hub.subscribe("user:u1".into(), None).await.unwrap();
        assert_eq!(pending_t3(&sub.first), 0);
        let started = Instant::now();
        for i in 1..=1000 {
            value.store(i, Ordering::SeqCst);
            hub.notify(["u1"], false, Some(Utc::now()));
            if i % 50 == 0 {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        }
        let mut frames = Vec::new();
        while let Ok(Some(frame)) =
            tokio::time::timeout(Duration::from_millis(300), sub.rx.recv()).await
        {
            frames.push(frame);
        }
        let elapsed = started.elapsed();
        assert!(!frames.is_empty());
        assert_eq!(pending_t3(frames.last().unwrap()), 1000);
        // One reload per 50 ms window at most, plus the first.
        let bound = 2 + elapsed.as_millis() as usize / 50;
        assert!(
            frames.len() <= bound,
            "{} frames in {elapsed:?}",
            frames.len()
        );
        assert!(loads.load(Ordering::SeqCst) <= bound as u64 + 1);
        assert!(frames.windows(2).all(|w| w[0].id < w[1].id));
        shutdown.cancel();
    }

    #[tokio::test]
    async fn notices_for_other_scopes_and_unchanged_figures_push_nothing() {
        let (hub, value, _) = hub(8, 60_000);
        let shutdown = CancellationToken::new();
        tokio::spawn(hub.clone().run(shutdown.clone()));
        let mut sub = hub.subscribe("user:u1".into(), None).await.unwrap();
        value.store(5, Ordering::SeqCst);
        hub.notify(["u2"], true, None);
        assert!(
            tokio::time::timeout(Duration::from_millis(200), sub.rx.recv())
                .await
                .is_err(),
            "no frame for another user's change"
        );
        hub.notify(["u1"], false, None);
        let frame = tokio::time::timeout(Duration::from_secs(1), sub.rx.recv())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(pending_t3(&frame), 5);
        // The same figures again: nothing.
        hub.notify(["u1"], false, None);
        assert!(
            tokio::time::timeout(Duration::from_millis(200), sub.rx.recv())
                .await
                .is_err()
        );
        shutdown.cancel();
    }

    #[tokio::test]
    async fn periodic_frames_arrive_without_changes() {
        let (hub, _, _) = hub(8, 200);
        let shutdown = CancellationToken::new();
        tokio::spawn(hub.clone().run(shutdown.clone()));
        // The worker is idle with no scopes when the first client comes.
        tokio::time::sleep(Duration::from_millis(50)).await;
        let mut sub = hub.subscribe("org".into(), None).await.unwrap();
        let started = Instant::now();
        for _ in 0..3 {
            let frame = tokio::time::timeout(Duration::from_millis(500), sub.rx.recv())
                .await
                .expect("a periodic frame")
                .unwrap();
            assert_eq!(pending_t3(&frame), 0);
        }
        assert!(started.elapsed() >= Duration::from_millis(500));
        shutdown.cancel();
    }

    #[tokio::test]
    async fn a_client_that_does_not_read_is_cut_off_and_others_keep_going() {
        let (hub, value, _) = hub(2, 60_000);
        let shutdown = CancellationToken::new();
        tokio::spawn(hub.clone().run(shutdown.clone()));
        let stalled = hub.subscribe("org".into(), None).await.unwrap();
        let mut reader = hub.subscribe("org".into(), None).await.unwrap();
        let stalled_kicked = stalled.kicked.clone();
        for i in 1..=5 {
            value.store(i, Ordering::SeqCst);
            hub.notify([], true, None);
            let frame = tokio::time::timeout(Duration::from_secs(1), reader.rx.recv())
                .await
                .unwrap()
                .unwrap();
            assert_eq!(pending_t3(&frame), i);
        }
        assert!(stalled_kicked.is_cancelled(), "stalled client dropped");
        assert_eq!(hub.inner.metrics.sse_dropped.get(), 1);
        // Its body stream ends with an error (the connection is aborted), after the first frame.
        let mut body = Box::pin(stalled.into_body_stream(
            Duration::from_secs(15),
            None,
            hub.inner.metrics.clone(),
            shutdown.clone(),
        ));
        let mut items = Vec::new();
        while let Some(item) = body.next().await {
            items.push(item.is_ok());
        }
        assert_eq!(items, [true, true, false]);
        shutdown.cancel();
    }

    #[tokio::test]
    async fn last_event_id_gets_fresh_figures_with_a_higher_id() {
        let (hub, value, loads) = hub(8, 60_000);
        let shutdown = CancellationToken::new();
        tokio::spawn(hub.clone().run(shutdown.clone()));
        let first = hub.subscribe("org".into(), None).await.unwrap();
        value.store(9, Ordering::SeqCst);
        let far_future = first.first.id + 10_000_000_000;
        let again = hub.subscribe("org".into(), Some(far_future)).await.unwrap();
        assert!(again.first.id > far_future);
        assert_eq!(pending_t3(&again.first), 9);
        assert_eq!(loads.load(Ordering::SeqCst), 2);
        shutdown.cancel();
    }

    #[tokio::test]
    async fn clients_are_counted_and_scopes_forgotten_when_they_leave() {
        let (hub, _, _) = hub(8, 60_000);
        let a = hub.subscribe("user:u1".into(), None).await.unwrap();
        let b = hub.subscribe("user:u1".into(), None).await.unwrap();
        assert_eq!(hub.inner.metrics.sse_clients.get(), 2);
        assert_eq!(hub.scope_count(), 1);
        drop(a);
        drop(b);
        assert_eq!(hub.inner.metrics.sse_clients.get(), 0);
        assert_eq!(hub.scope_count(), 0);
    }

    #[tokio::test]
    async fn streams_end_cleanly_on_shutdown() {
        let (hub, _, _) = hub(8, 60_000);
        let shutdown = CancellationToken::new();
        let sub = hub.subscribe("org".into(), None).await.unwrap();
        let mut body = Box::pin(sub.into_body_stream(
            Duration::from_millis(30),
            None,
            hub.inner.metrics.clone(),
            shutdown.clone(),
        ));
        assert_eq!(&body.next().await.unwrap().unwrap()[..], RETRY);
        assert!(body.next().await.unwrap().unwrap().starts_with(b"id: "));
        assert_eq!(&body.next().await.unwrap().unwrap()[..], HEARTBEAT);
        shutdown.cancel();
        assert!(body.next().await.is_none());
    }

    #[tokio::test]
    async fn streams_end_when_the_token_expires() {
        let (hub, _, _) = hub(8, 60_000);
        let sub = hub.subscribe("org".into(), None).await.unwrap();
        let mut body = Box::pin(sub.into_body_stream(
            Duration::from_secs(15),
            Some(Duration::from_millis(100)),
            hub.inner.metrics.clone(),
            CancellationToken::new(),
        ));
        body.next().await.unwrap().unwrap();
        body.next().await.unwrap().unwrap();
        let end = tokio::time::timeout(Duration::from_secs(2), body.next()).await;
        assert!(matches!(end, Ok(None)), "stream ends at expiry");
    }
}
