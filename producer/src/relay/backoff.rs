//! The relays' retry delay: infra's exponential [`Backoff`], from 100 ms to 30 s, and a wait cut
//! short when NATS comes back.

use std::time::Duration;

use followup_infra::Backoff;
use tokio_util::sync::CancellationToken;

/// Exponential backoff from 100 ms to 30 s: a relay pass is cheap to retry, and an outage of
/// minutes should not turn into a retry every 100 ms.
pub(super) const RELAY_BACKOFF: Backoff =
    Backoff::new(Duration::from_millis(100), Duration::from_secs(30));

/// [`Backoff::wait`], cut short (and the backoff reset) when NATS was away at the start of the
/// wait and the client has reconnected since: after a long outage the delay has grown to its
/// maximum, and the backlog should not wait that long once the server is back (found by the
/// fault suite: 25–30 s of extra recovery after a 60 s NATS outage).
pub(super) async fn wait_or_reconnect(
    backoff: &mut Backoff,
    shutdown: &CancellationToken,
    client: &async_nats::Client,
) {
    use async_nats::connection::State;
    if client.connection_state() == State::Connected {
        backoff.wait(shutdown).await;
        return;
    }
    let until = tokio::time::Instant::now() + backoff.current();
    while tokio::time::Instant::now() < until {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(Duration::from_millis(100)) => {}
        }
        if client.connection_state() == State::Connected {
            tracing::info!("NATS is back; relay retries now");
            backoff.reset();
            return;
        }
    }
    backoff.grow();
}
