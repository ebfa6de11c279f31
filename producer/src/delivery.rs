//! Delivering one claimed follow-up until it is settled: accepted, finally failed, withdrawn, or
//! released at shutdown.
//!
//! Retry classes (see [`SendError`]):
//! - **Temporary** (4xx reply): retried after `base · 2^(n-1)` (capped at `max_delay`); each reply
//!   counts as an attempt, and after `max_attempts` the follow-up has finally failed.
//! - **Permanent** (5xx reply, invalid address): finally failed at once.
//! - **Unavailable** (connection refused or reset, timeout, TLS or authentication failure): the
//!   server, not the message, is the problem. Such failures do not count as attempts. They close a
//!   gate shared by all deliveries of the run: everybody waits (backoff from `base`, doubling, at
//!   most `max_delay` per wait) and the next attempt after the wait probes the server. Deliveries
//!   therefore wait out an outage of any length and go out when the server returns; nothing is
//!   marked failed because the relay was down. Only shutdown ends the wait, and then the
//!   follow-up is released unsent and stays due.
//!
//! Waiting never holds a send slot: the concurrency limit applies to attempts in progress only,
//! so a delivery in backoff does not block the others. Before every retry the lead is read again:
//! one who withdrew consent (or was converted, stopped, …) while their follow-up was waiting is
//! not mailed.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use followup_contract::FollowupKind;
use sqlx::PgPool;
use tokio::sync::Semaphore;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::mailer::{Mailer, SendError};
use crate::metrics::ProducerMetrics;
use crate::template::{Email, Renderer};

/// How deliveries are retried.
#[derive(Debug, Clone)]
pub struct RetryPolicy {
    /// First backoff (`SMTP_RETRY_BASE_MS`).
    pub base: Duration,
    /// Attempts with a server reply before a follow-up finally fails (`SMTP_MAX_ATTEMPTS`).
    pub max_attempts: u32,
    /// Longest single wait (`SMTP_RETRY_MAX_MS`), also while the server is unavailable.
    pub max_delay: Duration,
    /// Attempts in progress at once.
    pub concurrency: usize,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            base: Duration::from_millis(2000),
            max_attempts: 5,
            max_delay: Duration::from_secs(60),
            concurrency: 16,
        }
    }
}

impl RetryPolicy {
    /// The wait after the `n`-th consecutive failure (n ≥ 1).
    pub fn backoff(&self, n: u32) -> Duration {
        let factor = 2u32.saturating_pow(n.saturating_sub(1).min(20));
        self.base.saturating_mul(factor).min(self.max_delay)
    }
}

/// Everything a run needs to turn claimed leads into delivered e-mails.
#[derive(Debug, Clone)]
pub struct Delivery {
    pub mailer: Mailer,
    pub renderer: Arc<Renderer>,
    pub retry: RetryPolicy,
    /// A claim (pending delivery record) whose run has not shown a sign of life for this long is
    /// released by the next run, which sends the follow-up again (`FOLLOWUP_CLAIM_TIMEOUT_SECS`).
    pub claim_timeout: Duration,
}

impl Delivery {
    /// The `log` mailer (stdout) with the built-in templates, links signed with `unsubscribe_secret`
    /// and pointing at the development gateway, and the default retry policy: what other crates'
    /// tests and tools use to run the producer in-process.
    pub fn log_to_stdout(
        unsubscribe_secret: &[u8],
    ) -> Result<Delivery, crate::template::TemplateError> {
        let links = crate::template::UnsubscribeLinks::new(
            crate::config::DEV_UNSUBSCRIBE_BASE_URL,
            unsubscribe_secret.to_vec(),
        );
        Ok(Delivery {
            mailer: Mailer::Log,
            renderer: Arc::new(Renderer::embedded(links)?),
            retry: RetryPolicy::default(),
            claim_timeout: Duration::from_secs(300),
        })
    }
}

/// How a delivery ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Settled {
    /// The server accepted it.
    Sent { attempts: i32 },
    /// Finally failed: permanent reply or attempts exhausted.
    Failed { attempts: i32, reason: String },
    /// The lead is no longer eligible (consent withdrawn, status or clock changed) while the
    /// follow-up waited for a retry: not sent, counted as skipped, stays due by the rules.
    Withdrawn,
    /// Shutdown while waiting: not sent, not recorded, the follow-up stays due.
    Released,
}

/// A claimed follow-up on its way.
#[derive(Debug, Clone)]
pub struct Pending {
    pub lead_id: i64,
    pub owner_user_id: Option<String>,
    pub kind: FollowupKind,
    pub email: Email,
}

/// State shared by the deliveries of one run.
pub struct Sender<'a> {
    pub mailer: &'a Mailer,
    pub policy: &'a RetryPolicy,
    pub pool: &'a PgPool,
    pub metrics: &'a ProducerMetrics,
    pub shutdown: &'a CancellationToken,
    slots: Semaphore,
    gate: OutageGate,
}

impl<'a> Sender<'a> {
    pub fn new(
        mailer: &'a Mailer,
        policy: &'a RetryPolicy,
        pool: &'a PgPool,
        metrics: &'a ProducerMetrics,
        shutdown: &'a CancellationToken,
    ) -> Self {
        Sender {
            mailer,
            policy,
            pool,
            metrics,
            shutdown,
            slots: Semaphore::new(policy.concurrency.max(1)),
            gate: OutageGate::default(),
        }
    }

    /// Delivers `pending` until it is settled.
    pub async fn deliver(&self, pending: Pending) -> (Pending, Settled) {
        let mut attempts: u32 = 0;
        let mut tried = false;
        loop {
            // While the server is unavailable only one delivery at a time probes it; the others
            // wait for the probe's verdict.
            let probe = loop {
                match self.gate.pass(self.policy) {
                    Pass::Go(probe) => break probe,
                    Pass::WaitUntil(until) => {
                        if !self.sleep_until(until).await {
                            return (pending, Settled::Released);
                        }
                    }
                }
            };
            if self.shutdown.is_cancelled() {
                return (pending, Settled::Released);
            }
            if tried && !self.still_eligible(&pending).await {
                tracing::info!(
                    lead_id = pending.lead_id,
                    kind = pending.kind.as_str(),
                    "lead no longer eligible while its follow-up waited; not sent"
                );
                return (pending, Settled::Withdrawn);
            }
            let result = {
                let _slot = tokio::select! {
                    slot = self.slots.acquire() => slot.expect("semaphore never closed"),
                    _ = self.shutdown.cancelled() => return (pending, Settled::Released),
                };
                self.mailer.send(&pending.email).await
            };
            tried = true;
            // The verdict on the server's availability, given before the probe token goes.
            match &result {
                Err(SendError::Unavailable(reason)) => {
                    self.gate.close(self.policy, self.metrics, reason)
                }
                _ => self.gate.open(self.metrics),
            }
            drop(probe);
            match result {
                Ok(()) => {
                    return (
                        pending,
                        Settled::Sent {
                            attempts: attempts as i32 + 1,
                        },
                    );
                }
                Err(SendError::Unavailable(_)) => {
                    // Not an attempt: wait for the gate and try again.
                    self.metrics
                        .delivery_retries
                        .with_label_values(&["unavailable"])
                        .inc();
                }
                Err(SendError::Temporary(reason)) => {
                    attempts += 1;
                    if attempts >= self.policy.max_attempts {
                        return (
                            pending,
                            Settled::Failed {
                                attempts: attempts as i32,
                                reason: format!("{reason} (gave up after {attempts} attempts)"),
                            },
                        );
                    }
                    let wait = self.policy.backoff(attempts);
                    tracing::info!(
                        lead_id = pending.lead_id, kind = pending.kind.as_str(), attempts,
                        wait_ms = wait.as_millis() as u64, %reason, "temporary failure; retrying"
                    );
                    self.metrics
                        .delivery_retries
                        .with_label_values(&["temporary"])
                        .inc();
                    if !self.sleep_until(Instant::now() + wait).await {
                        return (pending, Settled::Released);
                    }
                }
                Err(SendError::Permanent(reason)) => {
                    return (
                        pending,
                        Settled::Failed {
                            attempts: attempts as i32 + 1,
                            reason,
                        },
                    );
                }
            }
        }
    }

    /// Sleeps until `until`; false when shutdown came first.
    async fn sleep_until(&self, until: Instant) -> bool {
        tokio::select! {
            _ = tokio::time::sleep_until(until) => true,
            _ = self.shutdown.cancelled() => false,
        }
    }

    /// Whether the lead may still get this follow-up: the due rules' lead conditions and consent,
    /// read now. A database error counts as "yes" (the claim was valid when made).
    async fn still_eligible(&self, pending: &Pending) -> bool {
        let sql = match pending.kind {
            FollowupKind::T3 => STILL_ELIGIBLE_T3,
            FollowupKind::T7 => STILL_ELIGIBLE_T7,
        };
        match sqlx::query_scalar::<_, bool>(sql)
            .bind(pending.lead_id)
            .fetch_one(self.pool)
            .await
        {
            Ok(eligible) => eligible,
            Err(err) => {
                tracing::warn!(lead_id = pending.lead_id, %err, "cannot re-check the lead; sending");
                true
            }
        }
    }
}

// Read on the CRM's production schema: NULL flags as false, consent by the contactable rule
// (`followup_contactable_row` and `followup_email_opted_out`, as the claim).
const STILL_ELIGIBLE_T3: &str = "SELECT EXISTS (SELECT 1 FROM leads l WHERE l.id = $1
    AND l.status = 'ACTIVE' AND l.clock_stopped_at IS NULL AND l.t3_followup_sent IS NOT TRUE
    AND followup_contactable_row(l.email, l.metadata, l.contact_blocked,
                                 l.consent_revoked_at IS NOT NULL, l.gdpr_deleted)
    AND NOT followup_email_opted_out(l.id))";
const STILL_ELIGIBLE_T7: &str = "SELECT EXISTS (SELECT 1 FROM leads l WHERE l.id = $1
    AND l.status = 'ACTIVE' AND l.clock_stopped_at IS NULL AND l.t3_followup_sent IS TRUE
    AND l.t7_followup_sent IS NOT TRUE
    AND followup_contactable_row(l.email, l.metadata, l.contact_blocked,
                                 l.consent_revoked_at IS NOT NULL, l.gdpr_deleted)
    AND NOT followup_email_opted_out(l.id))";

/// Shared "the server is unavailable" state: one backoff for all deliveries of a run, and one
/// probe per wait, so an outage costs one connection attempt per wait instead of one per waiting
/// delivery.
#[derive(Default)]
struct OutageGate {
    state: Arc<Mutex<GateState>>,
}

#[derive(Default)]
struct GateState {
    /// Consecutive unavailable probes; 0 while the server is considered available.
    failures: u32,
    /// Nobody attempts before this instant.
    until: Option<Instant>,
    /// A delivery is probing the server after a wait.
    probing: bool,
}

/// The gate's answer to a delivery that wants to attempt.
enum Pass {
    /// Go ahead; with a probe token when this attempt probes an unavailable server.
    Go(Option<ProbeToken>),
    WaitUntil(Instant),
}

/// Held by the one delivery probing the server; dropping it lets the next one probe (should the
/// prober end without an attempt, e.g. at shutdown).
struct ProbeToken(Arc<Mutex<GateState>>);

impl Drop for ProbeToken {
    fn drop(&mut self) {
        if let Ok(mut state) = self.0.lock() {
            state.probing = false;
        }
    }
}

/// How often waiting deliveries look whether a running probe has settled.
const PROBE_POLL: Duration = Duration::from_millis(50);

impl OutageGate {
    fn pass(&self, policy: &RetryPolicy) -> Pass {
        let mut state = self.state.lock().expect("gate lock");
        if state.failures == 0 {
            return Pass::Go(None);
        }
        let now = Instant::now();
        if let Some(until) = state.until.filter(|u| *u > now) {
            return Pass::WaitUntil(until);
        }
        if state.probing {
            return Pass::WaitUntil(now + PROBE_POLL.min(policy.base));
        }
        state.probing = true;
        Pass::Go(Some(ProbeToken(self.state.clone())))
    }

    fn close(&self, policy: &RetryPolicy, metrics: &ProducerMetrics, reason: &str) {
        let mut state = self.state.lock().expect("gate lock");
        let now = Instant::now();
        // Attempts that started before the current wait was set do not extend it.
        if state.until.is_some_and(|u| u > now) {
            return;
        }
        state.failures += 1;
        state.probing = false;
        let wait = policy.backoff(state.failures);
        state.until = Some(now + wait);
        metrics.mailer_unavailable.set(1);
        tracing::warn!(
            probes = state.failures, wait_ms = wait.as_millis() as u64, %reason,
            "mail server unavailable; deliveries wait"
        );
    }

    fn open(&self, metrics: &ProducerMetrics) {
        let mut state = self.state.lock().expect("gate lock");
        if state.failures > 0 {
            tracing::info!(
                probes = state.failures,
                "mail server available again; deliveries resume"
            );
        }
        *state = GateState::default();
        metrics.mailer_unavailable.set(0);
    }
}
