//! The body of the core-NATS notice the projector sends after each commit, so the gateway pushes
//! new figures to exactly the clients whose figures changed. Not persisted: a lost notice is
//! covered by the gateway's periodic refresh. Sending it is the projector's business; this is
//! only the shape both sides agree on.

use chrono::{DateTime, Utc};

/// Body of a notice on `freshplan.cockpit.followup.changed`
/// (`followup_contract::COCKPIT_CHANGED_SUBJECT`):
/// `{"users":[...],"org":true|false,"committedAt":"<RFC 3339>"}`.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ChangeNotice {
    /// Old and new owners and collaborators of the leads the commit changed.
    pub users: Vec<String>,
    /// Whether the organisation's figures or its recent runs may have changed.
    pub org: bool,
    /// When the projector committed the batch the notice is about.
    pub committed_at: DateTime<Utc>,
}
