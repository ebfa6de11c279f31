//! Caps on open SSE streams: per gateway process (`SSE_MAX_CONNECTIONS`) and per user
//! (`SSE_MAX_CONNECTIONS_PER_USER`, by the principal's user id). A stream holds an [`SseSlot`]
//! in its response body; the slot is given back when the body is dropped (the client went, the
//! token expired, the gateway shut down, the client was cut off).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// Seconds a refused client is asked to wait (`Retry-After`).
pub const SSE_RETRY_AFTER_SECS: u64 = 5;

/// The counters; cheap to clone.
#[derive(Clone)]
pub struct SseLimits {
    inner: Arc<Inner>,
}

struct Inner {
    max_total: usize,
    max_per_user: usize,
    counts: Mutex<Counts>,
}

#[derive(Default)]
struct Counts {
    total: usize,
    per_user: HashMap<String, usize>,
}

/// Why a stream was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// The gateway holds `SSE_MAX_CONNECTIONS` streams.
    Gateway { max: usize },
    /// The user holds `SSE_MAX_CONNECTIONS_PER_USER` streams.
    User { max: usize },
}

/// One open stream; gives its place back when dropped.
pub struct SseSlot {
    inner: Arc<Inner>,
    user: String,
}

impl SseLimits {
    pub fn new(max_total: usize, max_per_user: usize) -> SseLimits {
        SseLimits {
            inner: Arc::new(Inner {
                max_total,
                max_per_user,
                counts: Mutex::new(Counts::default()),
            }),
        }
    }

    /// Takes a place for a stream of `user`, or says which cap is reached (the gateway's first).
    pub fn acquire(&self, user: &str) -> Result<SseSlot, Refused> {
        let mut counts = self.inner.counts.lock().expect("sse limits lock");
        if counts.total >= self.inner.max_total {
            return Err(Refused::Gateway {
                max: self.inner.max_total,
            });
        }
        let held = counts.per_user.get(user).copied().unwrap_or(0);
        if held >= self.inner.max_per_user {
            return Err(Refused::User {
                max: self.inner.max_per_user,
            });
        }
        counts.total += 1;
        *counts.per_user.entry(user.to_owned()).or_insert(0) += 1;
        Ok(SseSlot {
            inner: self.inner.clone(),
            user: user.to_owned(),
        })
    }

    /// Open streams in this process.
    pub fn total(&self) -> usize {
        self.inner.counts.lock().expect("sse limits lock").total
    }

    /// Open streams of `user`.
    pub fn of_user(&self, user: &str) -> usize {
        let counts = self.inner.counts.lock().expect("sse limits lock");
        counts.per_user.get(user).copied().unwrap_or(0)
    }
}

impl Drop for SseSlot {
    fn drop(&mut self) {
        let mut counts = self.inner.counts.lock().expect("sse limits lock");
        counts.total = counts.total.saturating_sub(1);
        if let Some(held) = counts.per_user.get_mut(&self.user) {
            *held -= 1;
            if *held == 0 {
                counts.per_user.remove(&self.user);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn caps_per_user_then_per_gateway_and_slots_come_back() {
        let limits = SseLimits::new(3, 2);
        let a1 = limits.acquire("a").unwrap();
        let _a2 = limits.acquire("a").unwrap();
        assert_eq!(limits.acquire("a").err(), Some(Refused::User { max: 2 }));
        let _b1 = limits.acquire("b").unwrap();
        assert_eq!(limits.acquire("c").err(), Some(Refused::Gateway { max: 3 }));
        assert_eq!(limits.acquire("b").err(), Some(Refused::Gateway { max: 3 }));
        drop(a1);
        assert_eq!(limits.total(), 2);
        assert_eq!(limits.of_user("a"), 1);
        let _c1 = limits.acquire("c").unwrap();
        assert_eq!(limits.total(), 3);
    }

    #[test]
    fn a_user_without_streams_is_forgotten() {
        let limits = SseLimits::new(10, 1);
        drop(limits.acquire("a").unwrap());
        assert_eq!(limits.of_user("a"), 0);
        assert!(limits.inner.counts.lock().unwrap().per_user.is_empty());
        assert!(limits.acquire("a").is_ok());
    }
}
