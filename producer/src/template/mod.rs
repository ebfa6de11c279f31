//! Rendering of the T+3 ("sample request") and T+7 ("follow-up") e-mails from the editable
//! templates in `templates/` (MiniJinja, strict about undefined placeholders). The templates are
//! compiled into the binary; `FOLLOWUP_TEMPLATE_DIR` replaces them with the files of a directory.
//! Building a [`Renderer`] validates every template against a sample of each kind of lead, so a
//! typo in a placeholder stops the producer at start-up with the template's name and the
//! placeholder, not at 9 a.m. in the middle of a run.
//!
//! The parts: `sources` (which templates exist, the embedded copies, a template directory),
//! `terms` (the CRM's business terms and seasons the texts quote), `links` (the signed
//! unsubscribe link), `render` (the [`Renderer`]) and `validate` (the start-up check).

mod links;
mod render;
mod sources;
mod terms;
#[cfg(test)]
mod test_support;
mod validate;

pub use links::UnsubscribeLinks;
pub use render::Renderer;
pub use terms::{business_terms, season, seasonal_products};

use std::path::PathBuf;

use followup_contract::FollowupKind;
use serde::Serialize;

use sources::PLACEHOLDERS;

/// A rendered follow-up, ready for a mailer.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Email {
    pub lead_id: i64,
    pub kind: FollowupKind,
    pub to: String,
    pub subject: String,
    pub body: String,
    /// Stable per lead and kind, so a resend after a crash is recognisable downstream.
    pub message_id: String,
    /// The signed link that withdraws the lead's e-mail consent (also in the body's footer and
    /// the `List-Unsubscribe` header).
    pub unsubscribe_url: String,
}

/// The `Message-ID` of a lead's follow-up of `kind`: the same for every attempt and every resend.
pub fn message_id(lead_id: i64, kind: FollowupKind) -> String {
    format!("<followup-{lead_id}-{}@freshplan.leads>", kind.as_str())
}

/// Why the templates cannot be used. Every variant names the template.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TemplateError {
    #[error("template {template}: cannot read {path}: {reason}")]
    Unreadable {
        template: String,
        path: PathBuf,
        reason: String,
    },
    #[error("template {template}: {reason}")]
    Invalid { template: String, reason: String },
    #[error(
        "template {template}: unknown placeholder `{field}` (known: {})",
        PLACEHOLDERS[..PLACEHOLDERS.len() - 1].join(", ")
    )]
    UnknownPlaceholder { template: String, field: String },
    #[error("template {template}: cannot render for lead {lead_id}: {reason}")]
    Render {
        template: String,
        lead_id: i64,
        reason: String,
    },
    #[error(
        "template {template}: the rendered e-mail does not contain the unsubscribe link (use {{{{ footer }}}} or {{{{ unsubscribe_url }}}})"
    )]
    NoUnsubscribeLink { template: String },
    #[error("template {template}: renders an empty subject")]
    EmptySubject { template: String },
}
