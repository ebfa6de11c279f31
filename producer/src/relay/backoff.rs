//! The relays' retry delay: exponential from 100 ms to 30 s, cut short when NATS comes back.

use std::time::Duration;

use tokio_util::sync::CancellationToken;

/// Exponential backoff from 100 ms to 30 s.
pub(super) struct Backoff(Duration);

impl Backoff {
    /// Starts at the shortest delay.
    pub(super) fn new() -> Self {
        Backoff(Duration::from_millis(100))
    }
    /// The next wait.
    pub(super) fn current(&self) -> Duration {
        self.0
    }
    /// Back to the shortest delay, after a success.
    pub(super) fn reset(&mut self) {
        self.0 = Duration::from_millis(100);
    }
    /// Sleeps the current delay (or until `shutdown`), then doubles it.
    pub(super) async fn wait(&mut self, shutdown: &CancellationToken) {
        tokio::select! {
            _ = shutdown.cancelled() => {}
            _ = tokio::time::sleep(self.0) => {}
        }
        self.0 = (self.0 * 2).min(Duration::from_secs(30));
    }

    /// [`Backoff::wait`], cut short (and the backoff reset) when NATS was away at the start of
    /// the wait and the client has reconnected since: after a long outage the delay has grown to
    /// its maximum, and the backlog should not wait that long once the server is back (found by
    /// the fault suite: 25–30 s of extra recovery after a 60 s NATS outage).
    pub(super) async fn wait_or_reconnect(
        &mut self,
        shutdown: &CancellationToken,
        client: &async_nats::Client,
    ) {
        use async_nats::connection::State;
        if client.connection_state() == State::Connected {
            return self.wait(shutdown).await;
        }
        let until = tokio::time::Instant::now() + self.0;
        while tokio::time::Instant::now() < until {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tokio::time::sleep(Duration::from_millis(100)) => {}
            }
            if client.connection_state() == State::Connected {
                tracing::info!("NATS is back; relay retries now");
                self.reset();
                return;
            }
        }
        self.0 = (self.0 * 2).min(Duration::from_secs(30));
    }
}
