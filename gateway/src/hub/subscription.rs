//! A stream client's side of the hub: [`Hub::subscribe`] registers it with its scope and gives it
//! the current figures as its first frame; [`Subscription::into_body_stream`] is the SSE response
//! body; dropping the subscription (the client went) unregisters it and forgets a scope left
//! without clients.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use bytes::Bytes;
use chrono::Utc;
use futures::Stream;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::scope::{ClientSlot, ScopeEntry};
use super::{Frame, HEARTBEAT, Hub, RETRY};
use crate::metrics::GatewayMetrics;

/// A stream client's registration; the stream ends when it is dropped.
pub struct Subscription {
    pub first: Arc<Frame>,
    pub(super) rx: mpsc::Receiver<Arc<Frame>>,
    pub(super) kicked: CancellationToken,
    _guard: ClientGuard,
}

/// Unregisters the client when its subscription, or the body stream that took it over, drops.
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

impl Hub {
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
    use futures::StreamExt;

    use super::super::test_support::{hub, pending_t3};
    use super::*;

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
