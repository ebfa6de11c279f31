//! Waiting for a dependency: exponential [`Backoff`] and [`retry_until`], the loop every service
//! runs at start-up while its database, NATS or JetStream is not there yet (a service started
//! before its dependencies waits instead of crash-looping).

use std::fmt;
use std::future::Future;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

/// Exponential backoff: each wait doubles the delay, up to a ceiling.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    initial: Duration,
    max: Duration,
    current: Duration,
}

impl Backoff {
    /// What the start-up waits use: 200 ms doubling to 10 s. Short enough that a service
    /// started beside its dependencies is up moments after them, long enough not to hammer a
    /// dependency that is down for longer.
    pub const STARTUP: Backoff = Backoff::new(Duration::from_millis(200), Duration::from_secs(10));

    /// A backoff whose first delay is `initial`, doubling up to `max`.
    pub const fn new(initial: Duration, max: Duration) -> Backoff {
        Backoff {
            initial,
            max,
            current: initial,
        }
    }

    /// The delay the next [`wait`](Backoff::wait) sleeps.
    pub fn current(&self) -> Duration {
        self.current
    }

    /// Back to the first delay (after a success).
    pub fn reset(&mut self) {
        self.current = self.initial;
    }

    /// Doubles the delay, up to the ceiling, without waiting: for callers that wait in their own
    /// way.
    pub fn grow(&mut self) {
        self.current = (self.current * 2).min(self.max);
    }

    /// Sleeps the current delay, then grows it. Returns `false` when `shutdown` fired first.
    pub async fn wait(&mut self, shutdown: &CancellationToken) -> bool {
        let elapsed = tokio::select! {
            _ = shutdown.cancelled() => false,
            _ = tokio::time::sleep(self.current) => true,
        };
        self.grow();
        elapsed
    }
}

/// Runs `op` until it succeeds, waiting `backoff` between attempts, or until `shutdown` fires:
/// then the last attempt's error is returned. Every failed attempt is logged as a warning whose
/// message is `what` (e.g. "database not reachable"), with the fields `error` (the error, its
/// causes too for an `anyhow::Error`), `url` (when given) and `retry_in_ms`.
pub async fn retry_until<T, E, F, Fut>(
    shutdown: &CancellationToken,
    what: &str,
    url: Option<&str>,
    mut backoff: Backoff,
    mut op: F,
) -> Result<T, E>
where
    E: fmt::Display,
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, E>>,
{
    loop {
        let err = match op().await {
            Ok(value) => return Ok(value),
            Err(err) => err,
        };
        tracing::warn!(
            error = %Alternate(&err),
            url,
            retry_in_ms = backoff.current().as_millis() as u64,
            "{what}"
        );
        if !backoff.wait(shutdown).await {
            return Err(err);
        }
    }
}

/// Formats with `{:#}`: an `anyhow::Error` with its chain of causes, other errors as usual.
struct Alternate<'a, E>(&'a E);

impl<E: fmt::Display> fmt::Display for Alternate<'_, E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:#}", self.0)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU32, Ordering};

    use super::*;

    const QUICK: Backoff = Backoff::new(Duration::from_millis(1), Duration::from_millis(4));

    #[test]
    fn backoff_doubles_up_to_its_ceiling_and_resets() {
        let mut backoff = QUICK;
        let mut delays = Vec::new();
        for _ in 0..4 {
            delays.push(backoff.current().as_millis());
            backoff.grow();
        }
        assert_eq!(delays, [1, 2, 4, 4]);
        backoff.reset();
        assert_eq!(backoff.current(), Duration::from_millis(1));
    }

    #[tokio::test]
    async fn retries_until_the_operation_succeeds() {
        let attempts = AtomicU32::new(0);
        let result: Result<u32, String> =
            retry_until(&CancellationToken::new(), "test", None, QUICK, || async {
                match attempts.fetch_add(1, Ordering::Relaxed) {
                    n @ 0..=1 => Err(format!("attempt {n} failed")),
                    n => Ok(n),
                }
            })
            .await;
        assert_eq!(result, Ok(2));
    }

    #[tokio::test]
    async fn shutdown_ends_the_wait_with_the_last_error() {
        let shutdown = CancellationToken::new();
        shutdown.cancel();
        let attempts = AtomicU32::new(0);
        let long = Backoff::new(Duration::from_secs(3600), Duration::from_secs(3600));
        let result: Result<(), String> =
            retry_until(&shutdown, "test", Some("nats://x"), long, || async {
                let n = attempts.fetch_add(1, Ordering::Relaxed);
                Err(format!("attempt {n} failed"))
            })
            .await;
        assert_eq!(result, Err("attempt 0 failed".to_owned()));
        assert_eq!(attempts.load(Ordering::Relaxed), 1);
    }
}
