//! Keeping the scopes' figures current: notices mark scopes dirty, and the worker ([`Hub::run`])
//! reloads the scopes that are due (dirty past their coalescing window, or owed a periodic frame)
//! and pushes the frames whose figures changed to every client of the scope.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use futures::StreamExt;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::{Frame, Hub, Snapshot};

/// A reload the worker is about to do.
struct Job {
    scope: String,
    frame_id: u64,
    committed_at: Option<DateTime<Utc>>,
    /// Periodic: push even when nothing changed.
    force: bool,
}

impl Hub {
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

#[cfg(test)]
mod tests {
    use std::sync::atomic::Ordering;

    use super::super::test_support::{hub, pending_t3};
    use super::*;

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
}
