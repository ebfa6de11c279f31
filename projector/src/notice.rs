//! Sending the change notice ([`ChangeNotice`], whose shape the read model owns) after each
//! commit, on core NATS: not persisted, since a lost notice is covered by the gateway's periodic
//! refresh.

use chrono::{DateTime, Utc};
use followup_contract::COCKPIT_CHANGED_SUBJECT;
use followup_readmodel::ChangeNotice;

use crate::apply::BatchReport;

/// The notice for a committed batch, or `None` when it changed nothing anyone sees.
pub fn notice_for_batch(report: &BatchReport, committed_at: DateTime<Utc>) -> Option<ChangeNotice> {
    (report.org || !report.users.is_empty()).then(|| ChangeNotice {
        users: report.users.clone(),
        org: report.org,
        committed_at,
    })
}

/// How long a notice may wait for the client to take it.
const NOTICE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(1);

/// Publishes a notice. Failures are logged, not returned: the batch is committed and acked, and
/// a missing notice only delays a push.
pub async fn publish_notice(client: &async_nats::Client, notice: &ChangeNotice) {
    let body = match serde_json::to_vec(notice) {
        Ok(body) => body,
        Err(err) => {
            tracing::error!(error = %err, "serialising change notice");
            return;
        }
    };
    // With NATS away the publish waits for a reconnect once the client's buffer is full; the
    // projector must go on (and stop on SIGTERM) meanwhile, so a notice that cannot leave soon
    // is dropped: the gateway's periodic refresh covers it.
    match tokio::time::timeout(
        NOTICE_TIMEOUT,
        client.publish(COCKPIT_CHANGED_SUBJECT, body.into()),
    )
    .await
    {
        Ok(Ok(())) => {}
        Ok(Err(err)) => tracing::warn!(error = %err, "publishing change notice"),
        Err(_) => tracing::warn!("NATS not taking the change notice; dropped"),
    }
}
