//! The core-NATS notice sent after each commit, so the gateway pushes new figures to exactly
//! the clients whose figures changed. Not persisted: a lost notice is covered by the gateway's
//! periodic refresh.

use chrono::{DateTime, Utc};
use followup_contract::COCKPIT_CHANGED_SUBJECT;

use crate::apply::BatchReport;

/// Body of a notice on `freshplan.cockpit.followup.changed`:
/// `{"users":[...],"org":true|false,"committedAt":"<RFC 3339>"}`.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ChangeNotice {
    /// Old and new owners and collaborators of the leads the commit changed.
    pub users: Vec<String>,
    /// Whether the organisation's figures or its recent runs may have changed.
    pub org: bool,
    pub committed_at: DateTime<Utc>,
}

impl ChangeNotice {
    /// The notice for a committed batch, or `None` when it changed nothing anyone sees.
    pub fn for_batch(report: &BatchReport, committed_at: DateTime<Utc>) -> Option<ChangeNotice> {
        (report.org || !report.users.is_empty()).then(|| ChangeNotice {
            users: report.users.clone(),
            org: report.org,
            committed_at,
        })
    }
}

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
    if let Err(err) = client.publish(COCKPIT_CHANGED_SUBJECT, body.into()).await {
        tracing::warn!(error = %err, "publishing change notice");
    }
}
