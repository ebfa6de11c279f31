//! Which templates the producer needs and where their text comes from: the copies compiled into
//! the binary, or the files of `FOLLOWUP_TEMPLATE_DIR`. Also the placeholders a template may use.

use std::path::Path;

use followup_contract::FollowupKind;

use super::TemplateError;

/// The e-mail templates: subject and body per kind, a legal footer per territory.
pub(super) const SUBJECT_T3: &str = "t3_sample_request.subject.txt";
pub(super) const BODY_T3: &str = "t3_sample_request.body.txt";
pub(super) const SUBJECT_T7: &str = "t7_followup.subject.txt";
pub(super) const BODY_T7: &str = "t7_followup.body.txt";
pub(super) const FOOTER_DE: &str = "footer_de.txt";
pub(super) const FOOTER_CH: &str = "footer_ch.txt";

/// Every template the producer needs, with the copy compiled into the binary.
pub(super) const EMBEDDED: [(&str, &str); 6] = [
    (
        SUBJECT_T3,
        include_str!("../../../templates/t3_sample_request.subject.txt"),
    ),
    (
        BODY_T3,
        include_str!("../../../templates/t3_sample_request.body.txt"),
    ),
    (
        SUBJECT_T7,
        include_str!("../../../templates/t7_followup.subject.txt"),
    ),
    (
        BODY_T7,
        include_str!("../../../templates/t7_followup.body.txt"),
    ),
    (FOOTER_DE, include_str!("../../../templates/footer_de.txt")),
    (FOOTER_CH, include_str!("../../../templates/footer_ch.txt")),
];

/// Placeholders every template may use (README of `templates/` describes them).
pub(super) const PLACEHOLDERS: [&str; 15] = [
    "lead_id",
    "kind",
    "company",
    "contact_person",
    "email",
    "business_type",
    "discount_percent",
    "minimum_order",
    "month",
    "season",
    "seasonal_products",
    "territory",
    "unsubscribe_url",
    // Only in subjects and bodies: the rendered footer of the lead's territory.
    "footer",
    // Jinja's loop variable, which the analysis reports as undeclared.
    "loop",
];

/// The subject and body templates of `kind`.
pub(super) fn names(kind: FollowupKind) -> (&'static str, &'static str) {
    match kind {
        FollowupKind::T3 => (SUBJECT_T3, BODY_T3),
        FollowupKind::T7 => (SUBJECT_T7, BODY_T7),
    }
}

/// The templates compiled into the binary, as (name, text).
pub(super) fn embedded() -> Vec<(String, String)> {
    EMBEDDED
        .iter()
        .map(|(name, source)| (name.to_string(), source.to_string()))
        .collect()
}

/// The templates in `dir`, as (name, text): every file the producer needs must be there (a
/// misspelt file name must not silently fall back to the built-in text); further `*.txt` files
/// are loaded too, for `{% include %}`.
pub(super) fn read_dir(dir: &Path) -> Result<Vec<(String, String)>, TemplateError> {
    let mut sources: Vec<(String, String)> = Vec::new();
    for (name, _) in EMBEDDED {
        let path = dir.join(name);
        let text = std::fs::read_to_string(&path).map_err(|e| TemplateError::Unreadable {
            template: name.to_owned(),
            path: path.clone(),
            reason: e.to_string(),
        })?;
        sources.push((name.to_owned(), text));
    }
    let entries = std::fs::read_dir(dir).map_err(|e| TemplateError::Unreadable {
        template: "*".into(),
        path: dir.to_path_buf(),
        reason: e.to_string(),
    })?;
    for entry in entries.flatten() {
        let path = entry.path();
        let Some(name) = path.file_name().and_then(|n| n.to_str()).map(str::to_owned) else {
            continue;
        };
        if !name.ends_with(".txt") || sources.iter().any(|(n, _)| *n == name) {
            continue;
        }
        let text = std::fs::read_to_string(&path).map_err(|e| TemplateError::Unreadable {
            template: name.clone(),
            path: path.clone(),
            reason: e.to_string(),
        })?;
        sources.push((name, text));
    }
    Ok(sources)
}
